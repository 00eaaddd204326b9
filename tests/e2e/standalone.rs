//! Standalone images (`build --standalone --tag REF`), run the way the seed runs them: plain
//! `docker run --rm -e KEY -v DIR:/workspace IMAGE "query"`, no controller, no Docker socket.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use perstack_sandbox::test_support::docker::{DockerGuard, lines};
use serde_json::Value;

use crate::support::npm_registry::{NpmPackage, NpmRegistry};
use crate::support::{
    BOOKWORM_NODE_IMAGE, JobGuard, binary, fixture, require_bookworm_image,
    require_bookworm_node_image, require_docker, template,
};

/// A standalone image of `folder`'s Expert `expert`, removed when the guard drops.
pub struct Image {
    pub reference: String,
    _guard: DockerGuard,
}

/// Builds the standalone image of a fixture folder's Expert.
pub fn build(folder: &Path, expert: &str) -> Image {
    build_with(folder, expert, &[])
}

/// [`build`] with more options of `build` (`--standalone-base …`).
pub fn build_with(folder: &Path, expert: &str, options: &[&str]) -> Image {
    let id = perstack_sandbox::test_support::internals::new_id();
    let repository = format!("psbx-e2e-standalone-{id}");
    let reference = format!("{repository}:1.0");
    let mut guard = DockerGuard::new();
    // The reference, and the content-addressed tag the build made it from.
    guard
        .repository(&repository)
        .repository(&format!("perstack-sandbox/standalone-{expert}"));
    // The install stages of its skills' packages, which the engine keeps as build cache.
    let stages = format!("label=io.perstack.sandbox.cache-of=perstack-sandbox/standalone-{expert}");
    guard.images_found_by(move || lines(&["images", "-a", "-q", "--filter", &stages]));
    let built = Command::new(binary())
        .args(["build", expert, "--standalone", "--tag", &reference])
        .args(options)
        .current_dir(folder)
        .stdin(Stdio::null())
        .output()
        .expect("build");
    assert!(
        built.status.success(),
        "build failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&built.stdout).trim(), reference);
    Image {
        reference,
        _guard: guard,
    }
}

/// A workspace owned by a user other than root, as a user's folder is.
pub fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(1000), Some(1000)).expect("chown");
    dir
}

/// `docker run [-e NAME=VALUE…] -v WORKSPACE:/workspace IMAGE ARGS…`, labelled with the job
/// guard's id, the container removed when it ends, so that nothing outlives the test.
pub fn docker_run(
    image: &Image,
    job: &JobGuard,
    env: &[(&str, &str)],
    workspace: &Path,
    args: &[&str],
) -> Output {
    docker_run_with(image, job, &[], env, workspace, args)
}

/// [`docker_run`] with options of `docker run` itself (`--security-opt …`).
pub fn docker_run_with(
    image: &Image,
    job: &JobGuard,
    options: &[&str],
    env: &[(&str, &str)],
    workspace: &Path,
    args: &[&str],
) -> Output {
    // Not `--rm`: the exit status is read (see `NamedRun`).
    let cli = cli_for(options);
    let cli: Vec<&str> = cli.iter().map(String::as_str).collect();
    let (mut command, _removed) = crate::support::NamedRun::command_of(&cli);
    command
        .args(["--label", "io.perstack.sandbox.managed=true"])
        .args(options)
        .arg("--label")
        .arg(format!("io.perstack.sandbox.job-id={}", job.job_id));
    for (name, value) in env {
        command.arg("-e").arg(format!("{name}={value}"));
    }
    command
        .arg("-v")
        .arg(format!("{}:/workspace", workspace.display()))
        .arg(&image.reference)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker run")
}

/// The client that runs a container with `options`: the docker CLI, except for a seccomp
/// profile on Podman. The docker CLI sends a profile file's content, which Podman 4.3's Docker
/// endpoint reads as the path of a file; Podman's own client sends the path, which its service
/// (on this machine) reads.
fn cli_for(options: &[&str]) -> Vec<String> {
    let seccomp = options.iter().any(|o| o.starts_with("seccomp="));
    if !seccomp || perstack_sandbox::test_support::http::default_bridge() != "podman" {
        return vec!["docker".into()];
    }
    let host = std::env::var("DOCKER_HOST").expect("DOCKER_HOST names the Podman service");
    vec!["podman".into(), "--url".into(), host]
}

/// Every stdout line as JSON; panics naming a line that is not.
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// A run that exited 0: its output, its stderr as text and its stdout's events.
pub struct Ran {
    pub out: Output,
    pub stderr: String,
    pub events: Vec<Value>,
}

impl Ran {
    /// The run `out`, which has to have exited 0 (panics with its stderr otherwise) and
    /// printed JSON lines.
    pub fn ok(out: Output) -> Ran {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let events = json_lines(&out);
        Ran {
            out,
            stderr,
            events,
        }
    }

    /// Asserts that the run `out` exited with `code` before anything started (nothing on
    /// stdout), its stderr saying each of `words`.
    pub fn refused(out: &Output, code: i32, words: &[&str]) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        for words in words {
            assert!(stderr.contains(words), "{words}: {stderr}");
        }
        assert!(out.stdout.is_empty(), "nothing started");
    }
}

/// The isolation report's entry of principal `name` (`runtime`, ``skill `x` ``, …).
fn principal<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events[0]["principals"]
        .as_array()
        .expect("principals")
        .iter()
        .find(|p| p["principal"] == name)
        .unwrap_or_else(|| panic!("no principal {name}: {}", events[0]))
}

#[test]
fn the_demo_runs_with_plain_docker_run_and_continues_in_a_second_container() {
    if !require_docker() {
        return;
    }
    let image = build(&fixture("e2e/standalone"), "demo");
    let labels: Value = serde_json::from_str(&crate::support::docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &image.reference,
    ]))
    .expect("labels");
    assert_eq!(labels["io.perstack.expert"], "demo");
    assert_eq!(labels["io.perstack.expert.version"], "1.0.0");
    assert_eq!(labels["io.perstack.sandbox.standalone"], "true");
    assert!(
        labels["io.perstack.sandbox.config-digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );

    let ws = workspace();
    let job = JobGuard::new();
    let token = ("DEMO_TOKEN", "demo-token-for-the-inspector");
    let Ran { stderr, events, .. } = Ran::ok(docker_run(
        &image,
        &job,
        &[token],
        ws.path(),
        &["Say hello"],
    ));
    // The protections come first, as an event and as lines on stderr.
    assert_eq!(events[0]["type"], "isolationReport", "{:?}", events[0]);
    let principals = events[0]["principals"].as_array().expect("principals");
    let names: Vec<&str> = principals
        .iter()
        .map(|p| p["principal"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["base tools", "skill `inspector`", "runtime"]);
    for principal in principals {
        assert_eq!(principal["seccomp"], true, "{principal}");
        assert_eq!(principal["no_new_privs"], true, "{principal}");
        assert_eq!(principal["identity"]["capabilities_empty"], true);
        assert_eq!(principal["dumpable"]["after_exec"], "non-dumpable");
        assert!(
            principal["landlock"]["enforced"]
                .as_array()
                .expect("enforced")
                .contains(&Value::from("scopes"))
        );
    }
    // Each its own uid; base tools as the workspace's owner, so its files are theirs.
    let uids: Vec<u64> = principals
        .iter()
        .map(|p| p["identity"]["uid"].as_u64().expect("uid"))
        .collect();
    assert_eq!(uids[0], 1000);
    assert!(
        uids[1] != uids[2] && uids[1] != 1000 && uids[2] != 1000,
        "{uids:?}"
    );
    assert!(
        stderr.contains("runtime: /usr/local/bin/perstack-sandbox"),
        "{stderr}"
    );
    // Only its requiredEnv (and PATH, HOME, TMPDIR) reached the skill.
    assert_eq!(
        principals[1]["env"],
        serde_json::json!(["DEMO_TOKEN", "HOME", "PATH", "TMPDIR"])
    );
    assert_eq!(of_type(&events, "completeRun").len(), 1);
    let hello = ws.path().join("hello.md");
    assert!(
        std::fs::read_to_string(&hello)
            .expect("hello.md")
            .contains("Hello from perstack-sandbox")
    );
    assert_eq!(std::fs::metadata(&hello).expect("meta").uid(), 1000);
    let job_id = events[1]["jobId"].as_str().expect("job").to_string();
    let stored = ws.path().join("perstack/jobs").join(&job_id);
    let job_json: Value =
        serde_json::from_slice(&std::fs::read(stored.join("job.json")).expect("job.json"))
            .expect("JSON");
    assert_eq!(job_json["status"], "completed", "{job_json}");
    assert_eq!(std::fs::metadata(&stored).expect("meta").uid(), 1000);

    // A second container continues the same job from what the first stored.
    let second = docker_run(
        &image,
        &job,
        &[token],
        ws.path(),
        &["--continue", "Is it still there?"],
    );
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let events = json_lines(&second);
    let completed = of_type(&events, "completeRun");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["jobId"], job_id.as_str());
    assert!(
        completed[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Continued in a second container")),
        "{}",
        completed[0]
    );
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}

#[test]
fn a_standalone_image_says_what_is_missing_before_anything_starts() {
    if !require_docker() {
        return;
    }
    let image = build(&fixture("e2e/standalone"), "demo");
    let ws = workspace();
    let job = JobGuard::new();
    // The skill's requiredEnv is not given: preflight names it, and nothing runs.
    let missing = docker_run(&image, &job, &[], ws.path(), &["Say hello"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("DEMO_TOKEN"), "{stderr}");
    assert!(missing.stdout.is_empty());
    // Nothing to continue in an empty workspace.
    let nothing = docker_run(
        &image,
        &job,
        &[("DEMO_TOKEN", "x")],
        ws.path(),
        &["--continue", "more"],
    );
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("no run has been stored"),
        "{}",
        String::from_utf8_lossy(&nothing.stderr)
    );
}

/// The outcome of each `attempt` the attacker made, by label.
pub fn attempts(events: &[Value]) -> BTreeMap<String, Value> {
    results_of(events, "attempt")
        .into_iter()
        .map(|value| (value["label"].as_str().expect("label").to_string(), value))
        .collect()
}

/// Asserts that each attempt `label` ran and the kernel refused it with `errno`.
fn assert_refused(outcomes: &BTreeMap<String, Value>, expected: &[(&str, i64)]) {
    for &(label, errno) in expected {
        let attempt = &outcomes[label];
        assert!(attempt["error"].is_null(), "{label}: {attempt}");
        assert_eq!(attempt["outcome"]["ok"], false, "{label}: {attempt}");
        assert_eq!(attempt["outcome"]["errno"], errno, "{label}: {attempt}");
    }
}

/// What each `proxy_connect_as` call got from the in-container proxy, by the claim it made.
fn proxy_claims(events: &[Value]) -> BTreeMap<String, Value> {
    results_of(events, "proxy_connect_as")
        .into_iter()
        .map(|v| (v["claim"].as_str().expect("claim").to_string(), v))
        .collect()
}

/// A probing Expert's run: the standalone image of `folder`'s Expert `expert`, run once on
/// `query` with `env` in a workspace holding the user's `secret.txt` (what a hostile skill goes
/// after), exited 0. The image and the job's containers go when it drops.
struct ProbeRun {
    ws: tempfile::TempDir,
    ran: Ran,
    _job: JobGuard,
    _image: Image,
}

fn probe_run(folder: &str, expert: &str, env: &[(&str, &str)], query: &str) -> ProbeRun {
    let image = build(&fixture(folder), expert);
    let ws = workspace();
    std::fs::write(ws.path().join("secret.txt"), "the user's secret").expect("write");
    let job = JobGuard::new();
    let ran = Ran::ok(docker_run(&image, &job, env, ws.path(), &[query]));
    ProbeRun {
        ws,
        ran,
        _job: job,
        _image: image,
    }
}

#[test]
fn a_hostile_skill_inside_one_standalone_container_is_walled_off() {
    if !require_docker() {
        return;
    }
    let tokens = [
        ("ATTACKER_TOKEN", "attacker-token"),
        ("VICTIM_TOKEN", "victim-token"),
    ];
    let run = probe_run("e2e/standalone-hostile", "hostile", &tokens, "Break out");
    let events = &run.ran.events;
    let outcomes = attempts(events);
    // Controls: the attempts work where the policy grants.
    assert_eq!(
        outcomes["own-status"]["outcome"]["ok"], true,
        "{outcomes:?}"
    );
    assert_eq!(outcomes["system-file"]["outcome"]["ok"], true);
    const EPERM: i64 = 1;
    const EACCES: i64 = 13;
    let expected = [
        // Another process's environment and memory: non-dumpable, another uid, another domain.
        ("runtime-environ", EACCES),
        ("runtime-mem", EACCES),
        ("victim-environ", EACCES),
        ("victim-mem", EACCES),
        ("base-tools-environ", EACCES),
        // ptrace: seccomp.
        ("runtime-ptrace", EPERM),
        // Signals to the runtime, another skill and the supervisor: Landlock's signal scope.
        ("runtime-signal", EPERM),
        ("victim-signal", EPERM),
        ("supervisor-signal", EPERM),
        // The workspace without a grant, the run data, another principal's home: Landlock.
        ("workspace-read", EACCES),
        ("workspace-write", EACCES),
        ("jobs-read", EACCES),
        ("other-home", EACCES),
        // Direct TCP, anywhere: Landlock refuses the connect itself (not a refused connection).
        ("tcp-direct", EACCES),
        ("tcp-loopback", EACCES),
        // UDP, raw and packet sockets, user namespaces: seccomp.
        ("udp-socket", EPERM),
        ("raw-socket", EPERM),
        ("packet-socket", EPERM),
        ("user-namespace", EPERM),
    ];
    assert_refused(&outcomes, &expected);
    // PID 1 waits for orphans: the attacker's orphan ended and left no zombie behind.
    assert_eq!(outcomes["orphan"]["outcome"]["ok"], true, "{outcomes:?}");
    assert_eq!(
        outcomes["zombies"]["outcome"],
        serde_json::json!({"ok": true, "value": []}),
        "{outcomes:?}"
    );
    // The in-container proxy knows each principal by its own token: the attacker's token under
    // the victim's name, or no credentials, get 407; its own token does not open the victim's
    // domain (403).
    let claims = proxy_claims(events);
    assert_eq!(claims["skill:victim"]["status"], 407, "{claims:?}");
    assert_eq!(claims["none"]["status"], 407, "{claims:?}");
    assert_eq!(claims["self"]["status"], 403, "{claims:?}");
    let blocked: Vec<&str> = of_type(events, "proxyAccess")
        .iter()
        .filter(|a| a["action"] == "blocked")
        .filter_map(|a| a["reason"].as_str())
        .collect();
    assert!(
        blocked
            .iter()
            .any(|r| r.contains("wrong token for principal `skill:victim`")),
        "{blocked:?}"
    );
    assert_eq!(principal(events, "egress proxy")["identity"]["uid"], 65534);
    // The victim's proxy URL (its token) reached nobody else: the attacker printed its own
    // environment (`own-status`), and no report carries a token.
    let stdout = String::from_utf8_lossy(&run.ran.out.stdout);
    assert!(
        stdout.contains("skill%3Aattacker:"),
        "the control shows its own URL"
    );
    assert!(!stdout.contains("skill%3Avictim:"));
    assert!(!events[0].to_string().contains("@127.0.0.1"));
    // DNS: no UDP, so no lookup, although the container's network has a resolver.
    let resolved = result_of(events, "resolve");
    assert_eq!(resolved["addresses"], serde_json::json!([]), "{resolved}");
    assert!(!run.ws.path().join("planted.txt").exists());
    assert!(!stdout.contains("victim-token"));
}

#[test]
fn without_landlock_it_refuses_to_start_unless_told_and_then_says_what_is_missing() {
    if !require_docker() {
        return;
    }
    let image = build(&fixture("e2e/standalone"), "demo");
    // A kernel without Landlock, as gVisor is one: a seccomp profile that refuses its calls.
    let profile = tempfile::tempdir().expect("tempdir");
    let profile_path = profile.path().join("no-landlock.json");
    std::fs::write(
        &profile_path,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["landlock_create_ruleset",
        "landlock_add_rule","landlock_restrict_self"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .expect("write");
    let option = format!("seccomp={}", profile_path.display());
    let options = ["--security-opt", option.as_str()];
    let ws = workspace();
    let job = JobGuard::new();
    let token = [("DEMO_TOKEN", "x")];
    let refused = docker_run_with(&image, &job, &options, &token, ws.path(), &["Say hello"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot wall the Expert's processes off"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Landlock: its system call is refused (EPERM)"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-weaker-isolation"), "{stderr}");
    assert!(refused.stdout.is_empty());
    assert!(!ws.path().join("perstack").exists(), "nothing may start");

    let Ran { stderr, events, .. } = Ran::ok(docker_run_with(
        &image,
        &job,
        &options,
        &token,
        ws.path(),
        &["--allow-weaker-isolation", "Say hello"],
    ));
    assert!(
        stderr.contains("warning: weaker isolation: Landlock"),
        "{stderr}"
    );
    assert_eq!(events[0]["type"], "isolationReport");
    assert!(
        events[0]["missing"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("Landlock")),
        "{}",
        events[0]
    );
    for principal in events[0]["principals"].as_array().expect("principals") {
        assert_eq!(principal["landlock"]["enforced"], serde_json::json!([]));
        assert_eq!(principal["seccomp"], true);
    }
    assert_eq!(of_type(&events, "completeRun").len(), 1);
}

#[test]
fn with_docker_run_t_it_shows_the_human_view_and_the_docker_run_that_continues() {
    if !require_docker() {
        return;
    }
    let image = build(&fixture("e2e/standalone"), "demo");
    let ws = workspace();
    let job = JobGuard::new();
    let out = docker_run_with(
        &image,
        &job,
        &["-t"],
        &[("DEMO_TOKEN", "x"), ("NO_COLOR", "1")],
        ws.path(),
        &["Say hello"],
    );
    // With a terminal, stdout and stderr arrive together on it.
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("demo completed in 4 steps"), "{shown}");
    assert!(
        !shown.contains("\"type\":"),
        "no JSON on a terminal: {shown}"
    );
    assert!(
        shown.contains("continue with: docker run … <image> --continue-job"),
        "{shown}"
    );
}

#[test]
fn uvx_and_npx_skills_run_in_one_standalone_image_each_walled_off_in_its_own_folder() {
    if !require_bookworm_image() || !require_bookworm_node_image() {
        return;
    }
    let registry = NpmRegistry::start(vec![NpmPackage::pack(&fixture("npm/node-info"))]);
    let dir = template("e2e/standalone-packages", &registry.fixture_vars());

    // The skills' images have different bases (Python, Node): one has to be chosen.
    let refused = Command::new(binary())
        .args([
            "build",
            "packages",
            "--standalone",
            "--tag",
            "psbx-e2e-refused:1",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("build");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("--standalone-base IMAGE"), "{stderr}");
    assert!(
        stderr.contains("skill:time") && stderr.contains("skill:node"),
        "{stderr}"
    );

    let image = build_with(
        dir.path(),
        "packages",
        &["--standalone-base", BOOKWORM_NODE_IMAGE],
    );
    let base = crate::support::docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.perstack.sandbox.standalone-base\"}}",
        &image.reference,
    ]);
    assert_eq!(base.trim(), BOOKWORM_NODE_IMAGE);
    let requests_after_build = registry.requests().len();

    let ws = workspace();
    let job = JobGuard::new();
    let Ran { stderr, events, .. } = Ran::ok(docker_run(
        &image,
        &job,
        &[],
        ws.path(),
        &["What time is it?"],
    ));
    assert_eq!(
        registry.requests().len(),
        requests_after_build,
        "fetched at run time"
    );
    assert_eq!(events[0]["base"], BOOKWORM_NODE_IMAGE, "{}", events[0]);
    assert!(
        stderr.contains(&format!("base image: {BOOKWORM_NODE_IMAGE}")),
        "{stderr}"
    );

    // The packages installed at build time answer, each skill under its own uid.
    assert_eq!(result_of(&events, "get_current_time")["timezone"], "UTC");
    let node = result_of(&events, "node_info");
    assert_eq!(node["reversed"], "kcatsrep", "{node}");
    assert_eq!(node["execPath"], "/usr/bin/node", "{node}");

    // Another skill cannot read them: neither the Python venv nor the Node package, nor list
    // their folders. A system file stays readable (the control).
    let outcomes = attempts(&events);
    assert_eq!(
        outcomes["system-file"]["outcome"]["ok"], true,
        "{outcomes:?}"
    );
    const EACCES: i64 = 13;
    let closed = ["time-venv", "time-folder", "node-package", "node-folder"];
    assert_refused(&outcomes, &closed.map(|label| (label, EACCES)));
}

/// Every result of `tool`, in the order the runtime resolved them, as JSON.
pub fn results_of(events: &[Value], tool: &str) -> Vec<Value> {
    of_type(events, "resolveToolResults")
        .iter()
        .flat_map(|e| e["toolResults"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["toolName"] == tool)
        .map(|r| {
            let text = r["result"][0]["text"].as_str().expect("text");
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{tool}: {e}: {text}"))
        })
        .collect()
}

#[test]
fn local_skills_run_from_their_own_folders_and_each_skill_is_bounded_by_the_run_limits() {
    if !require_bookworm_image() || !require_bookworm_node_image() {
        return;
    }
    // Threads count against a skill's process bound (perstack.toml: pids = 128); the skill
    // host starts one async worker per CPU.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus < 96, "{cpus} CPUs: raise the fixture's pids");
    let image = build_with(
        &fixture("e2e/local-skills"),
        "local",
        &[
            "--config",
            "standalone.toml",
            "--standalone-base",
            BOOKWORM_NODE_IMAGE,
        ],
    );
    let ws = workspace();
    let job = JobGuard::new();
    let Ran { stderr, events, .. } = Ran::ok(docker_run(
        &image,
        &job,
        &[],
        ws.path(),
        &["Where do you run?"],
    ));
    assert_eq!(of_type(&events, "completeRun").len(), 1, "{stderr}");

    // The Python server runs on what its requirements.txt installed, from the folder its files
    // came from, in the skill's own folder; so does the Node one.
    let own = "/opt/perstack-skills/local-py";
    let py = results_of(&events, "py_where");
    assert_eq!(py.len(), 2, "{py:?}");
    assert_eq!(py[0]["cwd"], format!("{own}/files/py"), "{}", py[0]);
    assert_eq!(py[0]["file"], format!("{own}/files/py/server.py"));
    assert_eq!(py[0]["python"], format!("{own}/packages/bin/python3"));
    assert_eq!(py[0]["greeting"], "hello from a data file");
    let js = results_of(&events, "js_where");
    assert_eq!(js[0]["cwd"], "/opt/perstack-skills/local-js/files/tools/js");
    assert_eq!(js[0]["text"], "SANDBOX");
    assert_eq!(js[0]["greeting"], "hello from node");

    // Each skill's bounds are reported: the pids limit for its own uid, the memory limit per
    // process, first in line for the OOM killer; the runtime gets the memory bound only.
    let limits = |name: &str| principal(&events, name)["limits"].clone();
    assert_eq!(
        limits("skill `attacker`"),
        serde_json::json!({"processes": 128, "data_bytes": 512u64 << 20, "oom_score_adj": 500})
    );
    assert_eq!(limits("runtime")["processes"], Value::Null);
    assert_eq!(limits("runtime")["data_bytes"], 512u64 << 20);
    assert!(
        stderr.contains("skill `attacker`")
            && stderr.contains("at most 128 processes, 512 MiB of data per process"),
        "{stderr}"
    );

    // The attacker can fork and allocate a little; past its bounds the kernel refuses.
    let outcomes = attempts(&events);
    assert_eq!(
        outcomes["fork-few"]["outcome"],
        serde_json::json!({"ok": true, "value": 8})
    );
    assert_eq!(outcomes["allocate-little"]["outcome"]["ok"], true);
    const EAGAIN: i64 = 11;
    const ENOMEM: i64 = 12;
    assert_eq!(
        outcomes["fork-bomb"]["outcome"]["errno"], EAGAIN,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes["allocate-much"]["outcome"]["errno"], ENOMEM,
        "{outcomes:?}"
    );
    // So does the Python skill's own allocation, and it keeps answering.
    let hog = results_of(&events, "hog");
    assert_eq!(hog[0]["memoryError"], true, "{hog:?}");
    // Once the bomb is over, everything still answers: the skills, the attacker's next forks, the
    // runtime (which completed the run).
    assert_eq!(py[1]["text"], "after");
    assert_eq!(js.len(), 2);
    assert_eq!(
        outcomes["fork-after"]["outcome"],
        serde_json::json!({"ok": true, "value": 8})
    );
    // Another principal's files stay closed: the Python skill runs under a uid of its own.
    let uid = py[0]["uid"].as_u64().expect("uid");
    assert!(uid >= 20000, "{uid}");
}

/// A uv project (`uv run --directory tools/x server.py`, the fixture the multi-container test
/// runs) and a `uvx` package in one standalone image on `pythonImage`, run with no network at
/// all: uv runs the environment `uv sync` made at build time from the skill's own folder, offline;
/// the attacker can read neither skill's files.
#[test]
fn a_uv_project_and_a_uvx_package_run_offline_in_one_standalone_image_each_in_its_own_folder() {
    if !require_bookworm_image() {
        return;
    }
    let image = build(&fixture("e2e/local-uv"), "uv-standalone");
    let ws = workspace();
    let job = JobGuard::new();
    // No network for the container: nothing can be fetched at run time.
    let Ran { stderr, events, .. } = Ran::ok(docker_run_with(
        &image,
        &job,
        &["--network", "none"],
        &[],
        ws.path(),
        &["Where do you run?"],
    ));
    assert_eq!(events[0]["base"], "perstack-sandbox/bookworm:local");
    let completed = of_type(&events, "completeRun");
    assert_eq!(
        completed[0]["text"], "The uv project and the clock answered.",
        "{stderr}"
    );

    // uv ran the project from the skill's own folder, on the environment synced at build time.
    let own = "/opt/perstack-skills/uv-project";
    let uv = results_of(&events, "uv_where");
    assert_eq!(uv[0]["text"], "standalone", "{uv:?}");
    assert_eq!(uv[0]["cwd"], format!("{own}/files/tools/x"));
    assert_eq!(uv[0]["file"], format!("{own}/files/tools/x/server.py"));
    assert_eq!(uv[0]["prefix"], format!("{own}/packages/uv-project"));
    assert!(
        uv[0]["mcp"].as_str().is_some_and(|v| v.starts_with("1.")),
        "{}",
        uv[0]
    );
    assert_eq!(
        results_of(&events, "get_current_time")[0]["timezone"],
        "UTC"
    );
    // The skill host got uv's offline settings besides HOME, PATH and TMPDIR, under a uid of
    // its own.
    let skill = principal(&events, "skill `uv-project`");
    for name in [
        "UV_OFFLINE",
        "UV_NO_SYNC",
        "UV_PROJECT_ENVIRONMENT",
        "UV_PYTHON",
    ] {
        assert!(
            skill["env"]
                .as_array()
                .expect("env")
                .contains(&Value::from(name)),
            "{name}: {skill}"
        );
    }
    assert!(skill["identity"]["uid"].as_u64().expect("uid") >= 20000);

    // Neither skill's files are another's to read: the project, its environment, uv's venv and
    // the uvx venv. A system file stays readable (the control).
    let outcomes = attempts(&events);
    assert_eq!(
        outcomes["system-file"]["outcome"]["ok"], true,
        "{outcomes:?}"
    );
    const EACCES: i64 = 13;
    let closed = ["uv-environment", "uv-project", "uv-venv", "time-venv"];
    assert_refused(&outcomes, &closed.map(|label| (label, EACCES)));
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}

/// The text result of the first call of `tool`, as JSON.
fn result_of(events: &[Value], tool: &str) -> Value {
    let results = results_of(events, tool);
    let first = results
        .first()
        .unwrap_or_else(|| panic!("no result of {tool}"));
    first.clone()
}

/// A test's turn at the standalone image of an Expert named `recipe`, with the guard of its
/// skill's recipe image `perstack-sandbox/recipe-<skill>`. Those builds `COPY --from` the recipe
/// image, which is one image for every test of a fixture (its tag is its content's), and every
/// such test's guards remove it, `perstack-sandbox/standalone-recipe` and its install stages
/// when they end: one test at a time, so that none removes them under another's build (seen on
/// rootful Podman: `COPY --from=perstack-sandbox/recipe-prober:…: no stage or image found`).
/// Held for the whole test: the recipe's guard goes first, then the turn.
pub struct RecipeTurn {
    _recipe: DockerGuard,
    _turn: MutexGuard<'static, ()>,
}

pub fn recipe_turn(skill: &str) -> RecipeTurn {
    static RECIPE: Mutex<()> = Mutex::new(());
    let turn = RECIPE.lock().unwrap_or_else(PoisonError::into_inner);
    let mut recipe = DockerGuard::new();
    recipe.repository(&format!("perstack-sandbox/recipe-{skill}"));
    RecipeTurn {
        _recipe: recipe,
        _turn: turn,
    }
}

#[test]
fn a_skill_built_from_its_own_dockerfile_runs_in_its_recipe_s_root_and_cannot_leave_it() {
    if !require_docker() || !require_bookworm_image() {
        return;
    }
    // The recipe's image, which the build makes first and copies whole into the standalone one.
    let _recipe = recipe_turn("prober");
    let tokens = [
        ("PROBER_TOKEN", "prober-token"),
        ("VICTIM_TOKEN", "victim-token"),
    ];
    let run = probe_run("e2e/standalone-recipe", "recipe", &tokens, "Probe");
    let (events, stderr) = (&run.ran.events, &run.ran.stderr);

    // It runs confined like every skill, in its own root.
    let prober = principal(events, "skill `prober`");
    assert_eq!(
        prober["root"], "/opt/perstack-skills/prober/rootfs",
        "{prober}"
    );
    assert!(
        prober["identity"]["uid"].as_u64().expect("uid") >= 20000,
        "{prober}"
    );
    assert_eq!(prober["identity"]["capabilities_empty"], true, "{prober}");
    assert_eq!(prober["identity"]["bounding_set_empty"], true, "{prober}");
    assert_eq!(prober["no_new_privs"], true);
    assert_eq!(prober["seccomp"], true);
    assert!(
        stderr.contains("in its own root /opt/perstack-skills/prober/rootfs"),
        "{stderr}"
    );

    // It answers from its root: the recipe's variable and working directory, its own secret,
    // its own proxy URL; the recipe's file read relative to its WORKDIR.
    let env = result_of(events, "get_env");
    assert_eq!(env["PROBER_GREETING"], "hello from the recipe", "{env}");
    assert_eq!(env["PROBER_TOKEN"], "prober-token");
    assert_eq!(env["HOME"], "/tmp");
    assert!(env.get("VICTIM_TOKEN").is_none(), "{env}");
    assert!(
        env["HTTPS_PROXY"]
            .as_str()
            .expect("proxy")
            .contains("skill%3Aprober:")
    );
    let marker = result_of(events, "read_file");
    assert_eq!(marker["content"], "inside the recipe's root\n", "{marker}");
    // The other skill is unaffected.
    assert!(result_of(events, "whoami")["uid"].as_u64().expect("uid") >= 20000);

    let outcomes = attempts(events);
    assert_eq!(outcomes["own-tmp"]["outcome"]["ok"], true, "{outcomes:?}");
    const EPERM: i64 = 1;
    const ENOENT: i64 = 2;
    const EACCES: i64 = 13;
    let expected = [
        // Nothing outside the root has a path from inside it: no /proc (so no other process's
        // environ, the supervisor's holding every secret), no image file of ours, no `..` above
        // its `/`, no other principal's home, no workspace.
        ("supervisor-environ", ENOENT),
        ("proc", ENOENT),
        ("outside-manifest", ENOENT),
        ("dotdot", ENOENT),
        ("other-home", ENOENT),
        ("workspace-read", ENOENT),
        // Its root is read-only but for /tmp, world-writable folders included: Landlock.
        ("write-root", EACCES),
        // A chroot of its own (the first step out of one), mounts, namespaces: seccomp.
        ("chroot", EPERM),
        ("mount", EPERM),
        ("user-namespace", EPERM),
        // The supervisor: Landlock's signal scope, seccomp.
        ("supervisor-signal", EPERM),
        ("supervisor-ptrace", EPERM),
        // TCP only to the proxy's port; no UDP.
        ("tcp-direct", EACCES),
        ("tcp-loopback", EACCES),
        ("udp-socket", EPERM),
    ];
    assert_refused(&outcomes, &expected);
    // The proxy's port is reachable from the root, with its own token only.
    let claims = proxy_claims(events);
    assert_eq!(claims["skill:victim"]["status"], 407, "{claims:?}");
    assert_eq!(claims["self"]["status"], 403, "{claims:?}");
    assert!(!String::from_utf8_lossy(&run.ran.out.stdout).contains("victim-token"));
    assert!(!run.ws.path().join("planted.txt").exists());
}

#[test]
fn a_skill_in_its_own_root_is_refused_at_start_without_cap_sys_chroot_naming_it() {
    if !require_docker() || !require_bookworm_image() {
        return;
    }
    let _recipe = recipe_turn("prober");
    let image = build(&fixture("e2e/standalone-recipe"), "recipe");
    let ws = workspace();
    let job = JobGuard::new();
    let out = docker_run_with(
        &image,
        &job,
        &["--cap-drop", "SYS_CHROOT"],
        &[("PROBER_TOKEN", "p"), ("VICTIM_TOKEN", "v")],
        ws.path(),
        &["Probe"],
    );
    Ran::refused(
        &out,
        1,
        &[
            "skill `prober` is built from its own Dockerfile",
            "without CAP_SYS_CHROOT",
            "run --image REF",
        ],
    );
}

/// A copy of `e2e/standalone-recipe-granted` whose recipe skill is named `skill` (so that its
/// recipe's image, `perstack-sandbox/recipe-<skill>`, is the test's own) and whose perstack.toml
/// `edit` changed.
fn granted_recipe_project(skill: &str, edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let project = template("e2e/standalone-recipe-granted", &[]);
    let toml = project.path().join("perstack.toml");
    let text = std::fs::read_to_string(&toml).expect("read");
    let text = edit(text.replace("\"rooted\"", &format!("\"{skill}\"")));
    std::fs::write(&toml, text).expect("write");
    project
}

/// The skill of `e2e/standalone-recipe-granted`, named `skill` (its recipe's image
/// `perstack-sandbox/recipe-<skill>`, so that two tests do not share it) and granted the workspace
/// as `grant` says, run by plain `docker run` in a workspace of uid 1000's with `.git/config` and
/// a `work` folder; gives the run's events, its stderr and the workspace.
fn run_granted_recipe(skill: &str, grant: &str) -> (Vec<Value>, String, tempfile::TempDir) {
    let _recipe = recipe_turn(skill);
    let project = granted_recipe_project(skill, |text| {
        text.replace(
            "workspace = \"read-write\"",
            &format!("workspace = \"{grant}\""),
        )
    });
    let image = build(project.path(), "recipe");
    let ws = crate::standalone_workspace::owned_workspace(&[
        (".git/config", "[remote]\n"),
        ("work/keep", ""),
    ]);
    let job = JobGuard::new();
    let Ran { events, stderr, .. } = Ran::ok(docker_run(&image, &job, &[], ws.path(), &["Work"]));
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
    (events, stderr, ws)
}

#[test]
fn a_skill_built_from_its_own_dockerfile_and_granted_the_workspace_runs_in_the_container_s_root() {
    if !require_docker() || !require_bookworm_image() {
        return;
    }
    let (events, stderr, ws) = run_granted_recipe("rooted", "read-write");
    // The base is its recipe; it runs in the container's root as the workspace's owner.
    let report = &events[0];
    let base = report["base"].as_str().expect("base");
    assert!(
        base.starts_with("perstack-sandbox/recipe-rooted:"),
        "{report}"
    );
    assert_eq!(report["baseRecipeOf"], "skill:rooted", "{report}");
    assert!(
        stderr.contains("the recipe of skill:rooted: it runs in the container's root"),
        "{stderr}"
    );
    let prober = principal(&events, "skill `rooted`");
    assert!(prober["root"].is_null(), "{prober}");
    assert_eq!(prober["identity"]["uid"], 1000, "{prober}");
    assert_eq!(prober["identity"]["capabilities_empty"], true, "{prober}");
    assert_eq!(prober["seccomp"], true, "{prober}");
    // The recipe's variable, working directory and files, at their own paths.
    let env = result_of(&events, "get_env");
    assert_eq!(env["PROBER_GREETING"], "hello from the recipe", "{env}");
    assert!(
        env["HOME"]
            .as_str()
            .expect("home")
            .starts_with("/run/perstack/home/")
    );
    let marker = result_of(&events, "read_file");
    assert_eq!(marker["content"], "inside the recipe's root\n", "{marker}");

    let outcomes = attempts(&events);
    for label in ["work-write", "recipe-exec"] {
        assert_eq!(
            outcomes[label]["outcome"]["ok"], true,
            "{label}: {outcomes:?}"
        );
    }
    let written = ws.path().join("work/out.txt");
    assert_eq!(std::fs::metadata(&written).expect("written").uid(), 1000);
    const EACCES: i64 = 13;
    let closed = [
        // The protected paths, as for every skill granted the workspace read-write.
        "git-config-write",
        // Another skill's folder, and the folder of them all (EISDIR if it could open it).
        "other-skill-file",
        "skills-folder",
        // The supervisor's folder (EISDIR if it could open it) and environment.
        "run-perstack",
        "supervisor-environ",
        // Its recipe's files: read and executed, not written.
        "recipe-write",
    ];
    assert_refused(&outcomes, &closed.map(|label| (label, EACCES)));
    assert_eq!(
        std::fs::read_to_string(ws.path().join(".git/config")).expect("config"),
        "[remote]\n"
    );
}

#[test]
fn a_skill_built_from_its_own_dockerfile_granted_the_workspace_read_only_cannot_write_it() {
    if !require_docker() || !require_bookworm_image() {
        return;
    }
    let (events, _, ws) = run_granted_recipe("reader", "read-only");
    let outcomes = attempts(&events);
    let attempt = &outcomes["work-write"];
    assert_eq!(attempt["outcome"]["ok"], false, "{attempt}");
    assert_eq!(attempt["outcome"]["errno"], 13, "{attempt}");
    assert!(!ws.path().join("work/out.txt").exists());
    // It still reads its recipe's files.
    let marker = result_of(&events, "read_file");
    assert_eq!(marker["content"], "inside the recipe's root\n", "{marker}");
}

#[test]
fn a_recipe_base_without_the_runtime_of_another_skill_s_install_says_so() {
    if !require_docker() || !require_bookworm_image() {
        return;
    }
    // The recipe (Debian with Python, no Node) is the base; an npx skill installs on it.
    let _recipe = recipe_turn("nonode");
    let project = granted_recipe_project("nonode", |text| {
        text + "\n[experts.\"recipe\".skills.\"web\"]\ntype = \"mcpStdioSkill\"\n\
                command = \"npx\"\nargs = [\"-y\", \"@scope/web\"]\n"
    });
    let mut guard = DockerGuard::new();
    guard.repository("perstack-sandbox/standalone-recipe");
    let stages = "label=io.perstack.sandbox.cache-of=perstack-sandbox/standalone-recipe";
    guard.images_found_by(move || lines(&["images", "-a", "-q", "--filter", stages]));
    let id = perstack_sandbox::test_support::internals::new_id();
    let built = Command::new(binary())
        .args(["build", "recipe", "--standalone", "--tag"])
        .arg(format!("psbx-e2e-standalone-{id}:1.0"))
        .current_dir(project.path())
        .stdin(Stdio::null())
        .output()
        .expect("build");
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(!built.status.success(), "{stderr}");
    for words in [
        "the standalone image's base is the recipe of skill:nonode",
        "The packages of skill:web are installed on that base too",
        "node with npm for npx",
    ] {
        assert!(stderr.contains(words), "{words}: {stderr}");
    }
}
