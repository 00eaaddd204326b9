//! Shared helpers for the integration tests: running the real binary, reading its events, and
//! making sure nothing a test created stays in Docker.

#![allow(dead_code)]

pub mod forward;
pub mod mock_llm;
pub mod npm_registry;
pub mod registry;
pub mod terminal;
pub mod versioned;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use perstack_sandbox::test_support::docker::DockerGuard;
use serde_json::Value;

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_perstack-sandbox")
}

/// A fixture folder under tests/fixtures.
/// A JSON file's contents; panics naming the file when it is missing or not JSON.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// A fixture folder (under tests/fixtures) copied into a temporary folder, with every `{{NAME}}`
/// in its files replaced by the value of `NAME`: for fixtures that need what is only known when
/// the tests run, like a registry's host name ([`registry`]). Panics when a placeholder is left.
pub fn template(folder: &str, vars: &[(&str, String)]) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path, vars: &[(&str, String)]) {
        for entry in std::fs::read_dir(from).expect("read the fixture folder") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                std::fs::create_dir(&target).expect("mkdir");
                copy(&entry.path(), &target, vars);
                continue;
            }
            let mut text = std::fs::read_to_string(entry.path()).expect("a text fixture");
            for (name, value) in vars {
                text = text.replace(&format!("{{{{{name}}}}}"), value);
            }
            assert!(
                !text.contains("{{"),
                "{} keeps a placeholder: {text}",
                entry.path().display()
            );
            std::fs::write(&target, text).expect("write");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    copy(&fixture(folder), dir.path(), vars);
    dir
}

/// Docker must answer: in CI a missing engine is a failure, never a skip. Locally too — set
/// `PERSTACK_SANDBOX_SKIP_DOCKER_TESTS=1` to skip on purpose (refused when `CI` is set).
pub fn require_docker() -> bool {
    static CHECK: Once = Once::new();
    let skip = std::env::var_os("PERSTACK_SANDBOX_SKIP_DOCKER_TESTS").is_some();
    if skip && std::env::var_os("CI").is_none() {
        eprintln!("PERSTACK_SANDBOX_SKIP_DOCKER_TESTS is set: skipping a Docker test");
        return false;
    }
    CHECK.call_once(|| {
        let ok = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "no Docker engine answers (`docker version` failed). These tests need one; start dockerd."
        );
    });
    true
}

/// `docker <args>`, stdout as text; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A container a test runs with `docker run` and whose exit status it reads: named, and removed
/// when this is dropped, instead of `--rm`. The docker CLI's `run --rm` waits for the container's
/// removal, and against Podman 4.3 that wait answers 0 whatever the container's exit status.
pub struct NamedRun {
    /// The container's name.
    pub name: String,
}

impl NamedRun {
    /// `docker run --name <fresh name>`, for the caller's options, image and arguments.
    pub fn command() -> (Command, NamedRun) {
        NamedRun::command_of(&["docker"])
    }

    /// [`NamedRun::command`] through another client of the same engine: `cli` is its program
    /// and leading arguments (e.g. `podman --url …`).
    pub fn command_of(cli: &[&str]) -> (Command, NamedRun) {
        let name = format!(
            "psbx-e2e-run-{}",
            perstack_sandbox::test_support::internals::new_id()
        );
        let mut command = Command::new(cli[0]);
        command.args(&cli[1..]).args(["run", "--name", &name]);
        (command, NamedRun { name })
    }
}

impl Drop for NamedRun {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// The local Debian image `make test-images` builds; the workspace image of the tests that need
/// a shell in base-skill.
pub const BOOKWORM_IMAGE: &str = "perstack-sandbox/bookworm:local";

/// The same with Debian's nodejs and npm, also from `make test-images`: the Node base of the
/// tests' `npx` skills.
pub const BOOKWORM_NODE_IMAGE: &str = "perstack-sandbox/bookworm-node:local";

/// Docker (see [`require_docker`]) and [`BOOKWORM_IMAGE`]. A missing image is a failure that says
/// how to build it, never a skip.
pub fn require_bookworm_image() -> bool {
    require_test_image(BOOKWORM_IMAGE)
}

/// Docker and [`BOOKWORM_NODE_IMAGE`], like [`require_bookworm_image`].
pub fn require_bookworm_node_image() -> bool {
    require_test_image(BOOKWORM_NODE_IMAGE)
}

fn require_test_image(image: &str) -> bool {
    if !require_docker() {
        return false;
    }
    let found = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "the image {image} is missing; `make test` builds it before the tests (`make \
         test-images`: debootstrap, as root or with passwordless sudo), then run the tests again"
    );
    true
}

/// The variable that runs the tests' containers under another OCI runtime than the engine's
/// default: `.ci/run` runs the security suite a second time with `runsc` (gVisor). Every run a
/// test starts gets `--runtime-engine <it>`, and the containers tests start themselves
/// `--runtime <it>` ([`runtime_args`]).
pub const RUNTIME_VARIABLE: &str = "PERSTACK_SANDBOX_TEST_RUNTIME";

/// The OCI runtime the tests' containers start under ([`RUNTIME_VARIABLE`]); `None`: the
/// engine's default.
pub fn test_runtime() -> Option<String> {
    std::env::var(RUNTIME_VARIABLE)
        .ok()
        .filter(|r| !r.trim().is_empty())
}

/// Whether the tests run under gVisor.
pub fn under_gvisor() -> bool {
    test_runtime().as_deref() == Some("runsc")
}

/// `docker run` arguments that start a container under the tests' runtime (none for the
/// engine's default).
pub fn runtime_args() -> Vec<String> {
    match test_runtime() {
        Some(runtime) => vec!["--runtime".to_string(), runtime],
        None => vec![],
    }
}

/// The variable that gives every run a test starts `--allow-weaker-isolation`: `.ci/podman`
/// runs a subset of the tests so on rootless Podman on cgroup v1, which cannot hold the
/// containers' limits (the tests of those limits are left out there).
pub const WEAKER_ISOLATION_VARIABLE: &str = "PERSTACK_SANDBOX_TEST_ALLOW_WEAKER_ISOLATION";

/// Whether the tests' runs are given `--allow-weaker-isolation` ([`WEAKER_ISOLATION_VARIABLE`]).
pub fn allow_weaker_isolation() -> bool {
    std::env::var_os(WEAKER_ISOLATION_VARIABLE).is_some_and(|v| v == "1")
}

/// Asserts `doctor`'s verdict says a run will start on the engine the tests use: `ready.` and
/// exit 0; or, where the tests' runs get `--allow-weaker-isolation`
/// ([`allow_weaker_isolation`]: rootless on cgroup v1), `ready with --allow-weaker-isolation: …`
/// and exit 1, since a plain run refuses there — never `ready.`.
pub fn assert_doctor_ready(code: Option<i32>, stdout: &str) {
    let last = stdout.lines().last().unwrap_or_default();
    if allow_weaker_isolation() {
        assert_eq!(code, Some(1), "{stdout}");
        assert_eq!(
            last,
            "ready with --allow-weaker-isolation: no memory, process or CPU limits (rootless on cgroup v1)",
            "{stdout}"
        );
        assert!(stdout.contains("\n  ! limits "), "{stdout}");
    } else {
        assert_eq!(code, Some(0), "{stdout}");
        assert_eq!(last, "ready.", "{stdout}");
    }
}

/// `uid:gid` base-skill runs as inside its container for the files it writes to be `host_user`'s
/// on the host: `host_user` itself, or `0:0` on a rootless engine (Podman's or Docker's), whose
/// uid 0 is the engine's user outside.
pub fn base_skill_user_inside(host_user: (u32, u32)) -> (u32, u32) {
    perstack_sandbox::test_support::internals::base_skill_user(host_user)
        .expect("the engine answers")
}

/// The variable `.ci/run` sets to a token of its own (a plain name): every job id a test makes
/// then starts with `test-<token>-`, so its leftover check counts only the resources of the runs
/// its own tests started, not those of another job sharing the engine.
pub const SESSION_VARIABLE: &str = "PERSTACK_SANDBOX_TEST_SESSION";

/// A job id for a test's run, and the guard that removes every container, volume and network
/// labelled with it when dropped, panics included.
pub struct JobGuard {
    pub job_id: String,
    resources: DockerGuard,
}

impl JobGuard {
    pub fn new() -> JobGuard {
        let id = perstack_sandbox::test_support::internals::new_id();
        let job_id = match std::env::var(SESSION_VARIABLE) {
            Ok(session) => format!("test-{session}-{id}"),
            Err(_) => format!("test-{id}"),
        };
        assert!(
            perstack_sandbox::test_support::internals::is_safe_id(&job_id),
            "{SESSION_VARIABLE} must be a plain name ([A-Za-z0-9_.-]): job id {job_id:?}"
        );
        JobGuard {
            resources: DockerGuard::for_job(&job_id),
            job_id,
        }
    }

    /// Containers, volumes and networks of this job still in Docker.
    pub fn leftovers(&self) -> Vec<String> {
        self.resources.leftovers()
    }
}

/// One invocation of `perstack-sandbox run`.
pub struct TestRun {
    pub config: PathBuf,
    pub expert: String,
    pub query: String,
    pub workspace: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// `--workspace` value; the temporary workspace when `None`.
    pub workspace_arg: Option<PathBuf>,
    /// `--runtime-engine` value: [`test_runtime`] unless the test says otherwise.
    pub runtime: Option<String>,
    pub guard: JobGuard,
    /// The filled-in copy of a templated fixture, kept as long as the run.
    pub templated: Option<tempfile::TempDir>,
    /// The state folder (`PERSTACK_SANDBOX_STATE_DIR`: the trust record), outside the workspace.
    pub state: tempfile::TempDir,
    /// The folder the command runs in (where dotenv files are read); the workspace when `None`.
    pub current_dir: Option<PathBuf>,
}

/// What a finished run left.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<Value>,
}

impl TestRun {
    pub fn new(config: &str, expert: &str) -> TestRun {
        TestRun {
            config: fixture(config),
            expert: expert.to_string(),
            query: "go".to_string(),
            workspace: tempfile::tempdir().expect("tempdir"),
            env: Vec::new(),
            args: Vec::new(),
            workspace_arg: None,
            runtime: test_runtime(),
            guard: JobGuard::new(),
            templated: None,
            state: tempfile::tempdir().expect("tempdir"),
            current_dir: None,
        }
    }

    /// A run of `folder`'s perstack.toml after [`template`] filled in `vars`.
    pub fn templated(folder: &str, expert: &str, vars: &[(&str, String)]) -> TestRun {
        let dir = template(folder, vars);
        TestRun {
            config: dir.path().join("perstack.toml"),
            templated: Some(dir),
            ..TestRun::new("unused", expert)
        }
    }

    /// A run of the config at `config` (a file the test wrote) rather than a fixture.
    pub fn with_config(config: &Path, expert: &str) -> TestRun {
        TestRun {
            config: config.to_path_buf(),
            ..TestRun::new("unused", expert)
        }
    }

    /// A variable in the controller's environment.
    pub fn host_env(mut self, name: &str, value: &str) -> TestRun {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Passes this `--workspace` instead of the temporary one.
    pub fn workspace_arg(mut self, path: &str) -> TestRun {
        self.workspace_arg = Some(PathBuf::from(path));
        self
    }

    /// No `--runtime-engine` from [`RUNTIME_VARIABLE`]: the run's runtime is what its config
    /// (or its own arguments) say.
    pub fn without_test_runtime(mut self) -> TestRun {
        self.runtime = None;
        self
    }

    /// An extra CLI argument.
    pub fn arg(mut self, arg: &str) -> TestRun {
        self.args.push(arg.to_string());
        self
    }

    fn command(&self) -> Command {
        self.command_with(&[])
    }

    /// The command with `extra` arguments after this run's own (before the Expert and query).
    fn command_with(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--workspace")
            .arg(
                self.workspace_arg
                    .as_deref()
                    .unwrap_or(self.workspace.path()),
            )
            .arg("--job-id")
            .arg(&self.guard.job_id)
            .arg("--json")
            .args(
                self.runtime
                    .iter()
                    .filter(|_| !self.args.iter().any(|a| a == "--runtime-engine"))
                    .flat_map(|r| ["--runtime-engine", r.as_str()]),
            )
            .args(allow_weaker_isolation().then_some("--allow-weaker-isolation"))
            .args(&self.args)
            .args(extra)
            .arg(&self.expert)
            .arg(&self.query)
            // The test process's own dotenv lookups must not depend on where tests run from.
            .current_dir(self.current_dir.as_deref().unwrap_or(self.workspace.path()))
            .env_remove("ANTHROPIC_API_KEY")
            .env("PERSTACK_SANDBOX_STATE_DIR", self.state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs to the end.
    pub fn run(&self) -> Finished {
        let out = self.command().output().expect("run the binary");
        finished(out.status.code(), out.stdout, out.stderr)
    }

    /// Runs to the end again, in the same workspace and job, with `extra` arguments (e.g.
    /// `--continue`).
    pub fn run_with(&self, extra: &[&str]) -> Finished {
        let out = self.command_with(extra).output().expect("run the binary");
        finished(out.status.code(), out.stdout, out.stderr)
    }

    /// Starts without waiting.
    pub fn spawn(&self) -> Child {
        self.command().spawn().expect("spawn the binary")
    }
}

/// Waits for a spawned run whose first output `seen` was already read, and parses all of it.
pub fn finish_after(child: Child, seen: Vec<u8>) -> Finished {
    let out = child.wait_with_output().expect("wait");
    let mut stdout = seen;
    stdout.extend_from_slice(&out.stdout);
    finished(out.status.code(), stdout, out.stderr)
}

pub fn finished(code: Option<i32>, stdout: Vec<u8>, stderr: Vec<u8>) -> Finished {
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let events = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\nstderr:\n{stderr}"))
        })
        .collect();
    Finished {
        code,
        stdout,
        stderr,
        events,
    }
}

impl Finished {
    /// `type` of each run event (those with an `expertKey`), with its step: `callTools@2`.
    pub fn run_event_types(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.get("expertKey").is_some())
            .map(|e| format!("{}@{}", e["type"].as_str().unwrap_or("?"), e["stepNumber"]))
            .collect()
    }

    /// All events of a type.
    pub fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }

    /// The text of the result of the first call to `tool`.
    pub fn tool_result(&self, tool: &str) -> String {
        self.of_type("resolveToolResults")
            .iter()
            .flat_map(|e| e["toolResults"].as_array().cloned().unwrap_or_default())
            .find(|r| r["toolName"] == tool)
            .map(|r| {
                r["result"]
                    .as_array()
                    .map(|parts| {
                        parts
                            .iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect::<Vec<_>>()
                            .join("")
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_else(|| panic!("no result for tool {tool}; events:\n{}", self.stdout))
    }

    /// The `dockerBuildProgress` messages of one service, but the builder's own lines.
    pub fn build_messages(&self, service: &str) -> Vec<String> {
        self.of_type("dockerBuildProgress")
            .iter()
            .filter(|e| e["service"] == service)
            .filter_map(|e| e["message"].as_str())
            .filter(|m| {
                ["Building image ", "Built image ", "Using cached image "]
                    .iter()
                    .any(|p| m.starts_with(p))
            })
            .map(str::to_string)
            .collect()
    }

    /// The image tag the run used for `service` (from "Built image T in …" or "Using cached
    /// image T").
    pub fn image_tag(&self, service: &str) -> String {
        self.build_messages(service)
            .iter()
            .find_map(|m| {
                m.strip_prefix("Built image ")
                    .and_then(|r| r.split(' ').next())
                    .or_else(|| m.strip_prefix("Using cached image "))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no image for {service}; events:\n{}", self.stdout))
    }

    /// The result parts of every call to `tool`, in the order the results were resolved.
    pub fn tool_results(&self, tool: &str) -> Vec<Vec<Value>> {
        self.of_type("resolveToolResults")
            .iter()
            .flat_map(|e| e["toolResults"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["toolName"] == tool)
            .map(|r| r["result"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The text a tool answered with (its text parts, joined), by the call's id.
    pub fn tool_text(&self, id: &str) -> String {
        self.try_tool_text(id)
            .unwrap_or_else(|| panic!("no result for {id}; events:\n{}", self.stdout))
    }

    /// [`Self::tool_text`], or `None` when the call `id` has no result.
    pub fn try_tool_text(&self, id: &str) -> Option<String> {
        self.of_type("resolveToolResults")
            .iter()
            .flat_map(|e| e["toolResults"].as_array().cloned().unwrap_or_default())
            .find(|r| r["id"] == id)
            .and_then(|r| {
                r["result"].as_array().map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<String>()
                })
            })
    }

    /// The JSON a tool answered with, by the call's id.
    pub fn tool_json(&self, id: &str) -> Value {
        let text = self.tool_text(id);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the result of {id} is not JSON ({e}): {text}"))
    }

    /// The keys of a JSON object.
    pub fn keys(value: &Value) -> BTreeSet<String> {
        value
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Asserts the exit code, showing stderr when it differs.
    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr,
            self.stdout
        );
    }
}

/// Waits until `child`'s stdout shows a line containing `needle`; returns what was read.
pub fn read_until(child: &mut Child, needle: &str, limit: Duration) -> Vec<u8> {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    read_stream_until(stdout, "stdout", needle, limit)
}

/// Waits until `child`'s stderr shows `needle`; returns what was read.
pub fn read_stderr_until(child: &mut Child, needle: &str, limit: Duration) -> Vec<u8> {
    let stderr = child.stderr.as_mut().expect("piped stderr");
    read_stream_until(stderr, "stderr", needle, limit)
}

fn read_stream_until(
    stream: &mut impl std::io::Read,
    name: &str,
    needle: &str,
    limit: Duration,
) -> Vec<u8> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        let n = stream.read(&mut buf).expect("read the child's output");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains(needle) {
            return seen;
        }
    }
    panic!(
        "`{needle}` did not appear on {name} within {limit:?}; got:\n{}",
        String::from_utf8_lossy(&seen)
    );
}

/// Podman's default capability set, which its inspect lists as `CapDrop` for `--cap-drop ALL`
/// (Docker keeps `["ALL"]`).
const PODMAN_DEFAULT_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// An inspected container's `HostConfig` drops every capability, adds none and sets
/// no-new-privileges, as Docker (`CapDrop: ["ALL"]`, `no-new-privileges:true`) or Podman (every
/// default capability listed, `no-new-privileges`) reports it.
pub fn assert_no_capabilities_and_no_new_privileges(host: &serde_json::Value, what: &str) {
    let dropped: Vec<&str> = host["CapDrop"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .map(|c| c.trim_start_matches("CAP_"))
        .collect();
    assert!(
        dropped == ["ALL"]
            || PODMAN_DEFAULT_CAPABILITIES
                .iter()
                .all(|c| dropped.contains(c)),
        "{what}: CapDrop {}",
        host["CapDrop"]
    );
    assert!(
        host["CapAdd"].is_null() || host["CapAdd"] == serde_json::json!([]),
        "{what}: CapAdd {}",
        host["CapAdd"]
    );
    let options = &host["SecurityOpt"];
    assert!(
        *options == serde_json::json!(["no-new-privileges:true"])
            || *options == serde_json::json!(["no-new-privileges"]),
        "{what}: SecurityOpt {options}"
    );
}

/// Whether the engine the tests run against is Podman (its default bridge is `podman`).
pub(crate) fn on_podman() -> bool {
    perstack_sandbox::test_support::http::default_bridge() == "podman"
}
