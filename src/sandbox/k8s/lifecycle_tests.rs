//! A controlled run's whole lifecycle, `gc` and `doctor` against the fake API server
//! (`fake.rs`): what is created in which order and owned by what, that removal follows every
//! ending, the log's reconnects and de-duplication, and the messages of refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;

use super::client::KubeError;
use super::doctor::{self, Finding};
use super::fake::{FakeCluster, Script};
use super::logs::{LogCursor, Pacing};
use super::manifest::Workspace;
use super::session::{self, Finished, RunObjects, SessionError, Timing};
use super::tests::{export, request};
use crate::sandbox::plan::plan;

const RUN: &str = "psb-run1";

fn run_objects() -> RunObjects {
    let plan = plan(&request()).expect("plan");
    let mut export = export(&plan, Workspace::EmptyDir("1Gi".into()));
    export.name = RUN.into();
    export.secret = RUN.into();
    export.secrets.clear();
    let secrets = BTreeMap::from([("query".to_string(), "the query".to_string())]);
    RunObjects::new(&plan, &export, &secrets, "host:42", 15).expect("objects")
}

fn timing(limit: Duration) -> Timing {
    Timing {
        pacing: Pacing {
            poll: Duration::from_millis(1),
            max_reconnects: 3,
        },
        renew: Duration::from_secs(3600),
        limit,
    }
}

/// A log line at second `s`.
fn at(s: u32, text: &str) -> String {
    format!("2026-12-05T20:00:{s:02}.000000000Z {text}")
}

async fn drive(
    script: Script,
    limit: Duration,
    cancel_after: Option<Duration>,
) -> (Finished, Vec<String>, FakeCluster) {
    let (api, fake) = FakeCluster::start(script);
    let mut lines = Vec::new();
    let cancel = async move {
        match cancel_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    let finished = session::run(&api, &run_objects(), timing(limit), cancel, &mut |l| {
        lines.push(l)
    })
    .await;
    (finished, lines, fake)
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
async fn a_run_creates_its_objects_in_order_under_its_lease_relays_the_log_and_removes_everything()
{
    let script = Script {
        log_chunks: vec![vec![at(1, "{\"a\":1}"), at(2, "{\"b\":2}")]],
        exit_code: 0,
        ..Script::default()
    };
    let (finished, lines, fake) = drive(script, Duration::from_secs(10), None).await;
    assert_eq!(finished.result.expect("ran"), (0, None));
    assert!(finished.leftovers.is_empty(), "{:?}", finished.leftovers);
    assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}"]);
    // The Lease first, the fences before the proxy, the proxy before the Job that runs code.
    assert_eq!(
        created(&fake),
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
    assert_eq!(fake.existing(), Vec::<String>::new());
    assert_eq!(
        deleted(&fake),
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
async fn every_object_a_run_creates_is_owned_by_its_lease_and_the_secret_holds_the_query() {
    let (api, fake) = FakeCluster::start(Script::default());
    let objects = run_objects();
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
    let secret = fake.object("secrets", RUN).expect("secret");
    assert_eq!(secret["stringData"]["query"], "the query");
}

#[tokio::test]
async fn a_dropped_log_is_reconnected_from_the_last_lines_second_and_each_line_is_passed_on_once() {
    let script = Script {
        log_chunks: vec![
            vec![at(1, "a"), at(2, "b")],
            // The API repeats the whole second 2 after a reconnect; `c` is new in it.
            vec![at(2, "b"), at(2, "c"), at(3, "d")],
        ],
        exit_code: 3,
        ..Script::default()
    };
    let (finished, lines, fake) = drive(script, Duration::from_secs(10), None).await;
    assert_eq!(finished.result.expect("ran"), (3, None));
    assert_eq!(lines, ["a", "b", "c", "d"]);
    let logs: Vec<String> = fake
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
    assert_eq!(fake.existing(), Vec::<String>::new());
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
async fn a_log_that_never_comes_back_gives_up_after_the_reconnects_and_removes_the_run() {
    let script = Script {
        log_chunks: vec![
            vec![at(1, "a")],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        ],
        ..Script::default()
    };
    let (finished, lines, fake) = drive(script, Duration::from_secs(10), None).await;
    let error = finished.result.expect_err("lost");
    assert!(
        matches!(
            error,
            SessionError::Kube(KubeError::LogLost { attempts: 3, .. })
        ),
        "{error}"
    );
    assert_eq!(lines, ["a"]);
    assert_eq!(fake.existing(), Vec::<String>::new());
}

#[tokio::test]
async fn a_refused_creation_stops_the_launch_says_which_permission_and_removes_what_was_made() {
    let script = Script {
        forbid: BTreeSet::from([("POST".to_string(), "deployments".to_string())]),
        ..Script::default()
    };
    let (finished, _, fake) = drive(script, Duration::from_secs(10), None).await;
    let message = finished.result.expect_err("refused").to_string();
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
        !created(&fake).contains(&"POST jobs".to_string()),
        "nothing runs after a refusal"
    );
    assert_eq!(fake.existing(), Vec::<String>::new());
}

#[tokio::test]
async fn a_refused_log_is_an_actionable_error_not_a_reconnect_loop() {
    let script = Script {
        log_chunks: vec![vec![at(1, "a")]],
        forbid: BTreeSet::from([("GET".to_string(), "pods/log".to_string())]),
        ..Script::default()
    };
    let (finished, _, fake) = drive(script, Duration::from_secs(10), None).await;
    let message = finished.result.expect_err("refused").to_string();
    assert!(message.contains("refused to get pods/log"), "{message}");
    let logs = fake
        .calls()
        .into_iter()
        .filter(|c| c.contains("pods/log"))
        .count();
    assert_eq!(logs, 1);
    assert_eq!(fake.existing(), Vec::<String>::new());
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_ends_the_run_with_the_reason_and_removes_it() {
    let script = Script {
        waiting: Some("ImagePullBackOff".into()),
        log_chunks: vec![vec![at(1, "never")]],
        ..Script::default()
    };
    let (finished, lines, fake) = drive(script, Duration::from_secs(10), None).await;
    let message = finished.result.expect_err("failed").to_string();
    assert_eq!(
        message,
        "the run pod psb-run1-pod did not start: ImagePullBackOff"
    );
    assert!(lines.is_empty());
    assert_eq!(fake.existing(), Vec::<String>::new());
}

#[tokio::test]
async fn ctrl_c_while_the_run_is_watched_removes_everything() {
    let script = Script {
        log_chunks: vec![vec![at(1, "a")]],
        hang_logs: true,
        ..Script::default()
    };
    let (finished, _, fake) = drive(
        script,
        Duration::from_secs(30),
        Some(Duration::from_millis(300)),
    )
    .await;
    assert!(
        matches!(finished.result, Err(SessionError::Interrupted)),
        "{:?}",
        finished.result
    );
    assert!(
        fake.calls().iter().any(|c| c.contains("pods/log")),
        "cancelled while following"
    );
    assert!(fake.existing().is_empty(), "{:?}", fake.existing());
    assert!(finished.leftovers.is_empty());
}

#[tokio::test]
async fn the_time_limit_while_the_run_is_watched_removes_everything() {
    let script = Script {
        log_chunks: vec![vec![at(1, "a")]],
        hang_logs: true,
        ..Script::default()
    };
    let (finished, _, fake) = drive(script, Duration::from_millis(300), None).await;
    assert!(
        matches!(finished.result, Err(SessionError::TimedOut(_))),
        "{:?}",
        finished.result
    );
    assert!(fake.calls().iter().any(|c| c.contains("pods/log")));
    assert!(fake.existing().is_empty(), "{:?}", fake.existing());
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
    let (api, _) = FakeCluster::start(Script {
        forbid: BTreeSet::from([("GET".to_string(), "namespaces".to_string())]),
        ..Script::default()
    });
    assert!(
        matches!(doctor::pod_security(&api).await, Finding::Unknown(m) if m.contains("may not read namespace ci-agents"))
    );
}
