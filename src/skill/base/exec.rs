//! `exec`: run a command (no shell) in the workspace.
//!
//! Like Node's `execFile`: the command is looked up on the child's `PATH` and executed with the
//! given arguments as they are. The child gets a cleared environment plus the safe variables of
//! this process and the caller's variables minus protected names, its own process group, no stdin,
//! and at most 10 MiB per output stream. On timeout the whole process group is killed. A command
//! that exits on its own may leave background processes running (as with Node); only a timeout, an
//! output overflow or a cancelled call kills the group. As with Node, the call ends when both
//! output pipes close, so a background process that keeps them open holds it until the timeout.
//! In the standalone image (`base-skill --confine-exec`) the child also enters a narrower
//! Landlock domain before it executes the command, which keeps the protected paths as they are
//! (`confine::workspace`; SECURITY.md, "Run data and protected paths").

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use indexmap::IndexMap;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::{Number, Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::paths::Workspace;
use crate::confine::policy::STANDARD_DEVICES;
use crate::confine::workspace::{self, ExecDomain};

/// Variables passed on from this process's environment when set and non-empty.
pub(crate) const SAFE_ENV_VARS: [&str; 14] = [
    "PATH",
    "HOME",
    "SHELL",
    "TERM",
    "NODE_PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "PERSTACK_PROXY_URL",
    "NPM_CONFIG_PROXY",
    "NPM_CONFIG_HTTPS_PROXY",
];

/// Variables the caller may not set (compared in upper case): they would change what runs.
pub(crate) const PROTECTED_ENV_VARS: [&str; 12] = [
    "PATH",
    "HOME",
    "SHELL",
    "NODE_PATH",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "DYLD_INSERT_LIBRARIES",
    "DYLD_LIBRARY_PATH",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PERL5LIB",
    "RUBYLIB",
];

/// Most bytes kept per output stream; more fails the command (Node's `maxBuffer`).
pub(crate) const MAX_OUTPUT: usize = 10 * 1024 * 1024;

/// Timeout when the caller gives none.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 60_000;

const NO_OUTPUT: &str = "Command executed successfully, but produced no output.";

/// Arguments of `exec`.
#[derive(Debug, Deserialize)]
pub(crate) struct ExecArgs {
    /// Program name (looked up on `PATH`) or path.
    pub command: String,
    /// Arguments, passed as they are.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: IndexMap<String, String>,
    /// Working directory, subject to the path rules.
    pub cwd: String,
    /// Include standard output in the result.
    pub stdout: bool,
    /// Include standard error in the result.
    pub stderr: bool,
    /// Milliseconds before the process group is killed; 0 means none. Default 60000.
    #[serde(default)]
    pub timeout: Option<Number>,
}

/// Runs the command and returns `{output}` or `{error, stdout?, stderr?}`.
pub(crate) async fn exec(ws: &Workspace, args: ExecArgs) -> Value {
    let inherited = |name: &str| std::env::var_os(name);
    match run(ws, &args, inherited).await {
        Ok((stdout, stderr)) => {
            let mut output = String::new();
            if args.stdout {
                output.push_str(&stdout);
            }
            if args.stderr {
                output.push_str(&stderr);
            }
            if output.trim().is_empty() {
                output = NO_OUTPUT.to_owned();
            }
            json!({ "output": output })
        }
        Err(failure) => {
            let mut result = json!({ "error": failure.error });
            if args.stdout && !failure.stdout.is_empty() {
                result["stdout"] = Value::from(failure.stdout);
            }
            if args.stderr && !failure.stderr.is_empty() {
                result["stderr"] = Value::from(failure.stderr);
            }
            result
        }
    }
}

/// The environment of the child: safe inherited variables, then the caller's minus protected
/// names. Fails on a name the OS cannot carry.
pub(crate) fn child_env(
    inherited: impl Fn(&str) -> Option<OsString>,
    given: &IndexMap<String, String>,
) -> Result<IndexMap<OsString, OsString>, String> {
    let mut env = IndexMap::new();
    for name in SAFE_ENV_VARS {
        if let Some(value) = inherited(name).filter(|v| !v.is_empty()) {
            env.insert(OsString::from(name), value);
        }
    }
    for (name, value) in given {
        // ASCII upper-casing suffices: the OS compares names byte for byte, so a non-ASCII look-
        // alike is a different variable anyway.
        if PROTECTED_ENV_VARS.contains(&name.to_ascii_uppercase().as_str()) {
            continue;
        }
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!("Invalid environment variable name: {name:?}"));
        }
        env.insert(OsString::from(name), OsString::from(value));
    }
    Ok(env)
}

/// The narrower Landlock domain of the program when the workspace asks for one
/// ([`Workspace::confined_exec`]): the workspace's unprotected entries, its home and the devices
/// every program writes are all it may change.
fn exec_domain(ws: &Workspace) -> Result<Option<ExecDomain>, String> {
    let Some(protected) = ws.confined_exec() else {
        return Ok(None);
    };
    let private: Vec<PathBuf> = ["HOME", "TMPDIR"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .chain(STANDARD_DEVICES.iter().map(PathBuf::from))
        .collect();
    ExecDomain::prepare(ws.root(), &protected, &private)
        .map(Some)
        .map_err(|e| format!("cannot confine the command to the workspace's rules: {e}"))
}

/// A failed run, with whatever output was captured.
#[derive(Debug, Default)]
struct Failure {
    error: String,
    stdout: String,
    stderr: String,
}

impl Failure {
    fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            ..Self::default()
        }
    }
}

/// How the wait for the child ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut,
    Overflow(&'static str),
    Io(std::io::Error),
}

async fn run(
    ws: &Workspace,
    args: &ExecArgs,
    inherited: impl Fn(&str) -> Option<OsString>,
) -> Result<(String, String), Failure> {
    let timeout = timeout_of(args.timeout.as_ref())?;
    let (mut child, mut group) = spawn(ws, args, inherited)?;
    let (ending, stdout, stderr) = wait_capped(&mut child, timeout).await;
    if let Ending::Exited(_) = ending {
        // Exited on its own: leave anything it started in the background alone, as Node does.
        group.0 = None;
    } else {
        group.kill();
        // Reap it; the SIGKILL to its group already ended it, so this returns at once.
        let _ = child.wait().await;
    }
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    match failure_message(args, ending, &stderr) {
        None => Ok((stdout, stderr)),
        Some(error) => Err(Failure {
            error,
            stdout,
            stderr,
        }),
    }
}

/// Starts the command in the workspace folder it names, in a process group of its own, with only
/// the variables it may see; the guard kills the group if the call is dropped mid-run (the
/// client cancelled it).
fn spawn(
    ws: &Workspace,
    args: &ExecArgs,
    inherited: impl Fn(&str) -> Option<OsString>,
) -> Result<(tokio::process::Child, GroupGuard), Failure> {
    let cwd = ws.resolve(&args.cwd).map_err(|e| Failure::new(e.message))?;
    let env = child_env(inherited, &args.env).map_err(Failure::new)?;
    let domain = exec_domain(ws).map_err(Failure::new)?;
    let mut command = Command::new(&args.command);
    command
        .args(&args.args)
        .current_dir(&cwd.target)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(fd) = domain.as_ref().and_then(ExecDomain::raw_fd) {
        // SAFETY: `restrict` makes two system calls on an integer and allocates nothing.
        unsafe {
            command.pre_exec(move || workspace::restrict(fd));
        }
    }
    let child = command
        .spawn()
        .map_err(|e| Failure::new(spawn_error(&args.command, &e)))?;
    let group = GroupGuard(child.id());
    Ok((child, group))
}

/// Reads the child's stdout and stderr, each up to its cap, and waits for it to exit, all within
/// `timeout` (`None`: forever); gives how that ended and what was read.
async fn wait_capped(
    child: &mut tokio::process::Child,
    timeout: Option<Duration>,
) -> (Ending, Vec<u8>, Vec<u8>) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let (out_pipe, err_pipe) = (child.stdout.take(), child.stderr.take());
    let wait = async {
        let read_both = async {
            tokio::try_join!(
                read_capped(out_pipe, &mut stdout, "stdout"),
                read_capped(err_pipe, &mut stderr, "stderr"),
            )
        };
        if let Err(ending) = read_both.await {
            return ending;
        }
        match child.wait().await {
            Ok(status) => Ending::Exited(status),
            Err(e) => Ending::Io(e),
        }
    };
    let ending = match timeout {
        Some(limit) => tokio::time::timeout(limit, wait)
            .await
            .unwrap_or(Ending::TimedOut),
        None => wait.await,
    };
    (ending, stdout, stderr)
}

/// The error of a run that did not succeed, as Node words it; `None` for a success.
fn failure_message(args: &ExecArgs, ending: Ending, stderr: &str) -> Option<String> {
    Some(match ending {
        Ending::Exited(status) if status.success() => return None,
        // Node puts stderr into the message too (and again in the `stderr` field).
        Ending::Exited(status) => format!(
            "Command failed: {}\n{}{stderr}",
            command_line(args),
            killed_note(status)
        ),
        Ending::TimedOut => {
            let shown = args
                .timeout
                .clone()
                .unwrap_or_else(|| Number::from(DEFAULT_TIMEOUT_MS));
            format!("Command timed out after {shown}ms.")
        }
        Ending::Overflow(stream) => format!("{stream} maxBuffer length exceeded"),
        Ending::Io(e) => format!("Command failed: {}\n{e}", command_line(args)),
    })
}

/// What the model should know about a command a signal ended: which signal, and for SIGKILL
/// (which nobody in the sandbox but the kernel sends) the usual cause, the container's memory
/// limit. Empty for a command that exited.
fn killed_note(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        None => String::new(),
        Some(9) => "Killed by SIGKILL: the command most likely ran out of memory (the sandbox's \
                    memory limit); use less memory, or ask the user to raise --memory\n"
            .to_string(),
        Some(signal) => {
            let name = Signal::try_from(signal)
                .map(Signal::as_str)
                .unwrap_or("a signal");
            format!("Killed by {name} ({signal})\n")
        }
    }
}

/// The timeout as a duration (`None`: wait forever), or a failure for a negative one.
fn timeout_of(timeout: Option<&Number>) -> Result<Option<Duration>, Failure> {
    let Some(ms) = timeout else {
        return Ok(Some(Duration::from_millis(DEFAULT_TIMEOUT_MS)));
    };
    match ms.as_f64() {
        Some(0.0) => Ok(None),
        Some(ms) if ms > 0.0 && ms.is_finite() => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        _ => Err(Failure::new(format!(
            "Invalid timeout {ms}: must be a non-negative number of milliseconds"
        ))),
    }
}

/// Node's message for a command that could not be started, e.g. `spawn nosuch ENOENT`.
fn spawn_error(command: &str, err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(raw) => format!("spawn {command} {:?}", nix::errno::Errno::from_raw(raw)),
        None => format!("spawn {command} {err}"),
    }
}

/// `command arg1 arg2`, as Node prints it in `Command failed: …`.
fn command_line(args: &ExecArgs) -> String {
    std::iter::once(args.command.as_str())
        .chain(args.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads `pipe` to EOF into `buf`, failing once more than [`MAX_OUTPUT`] bytes arrive (the first
/// `MAX_OUTPUT` are kept).
async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    buf: &mut Vec<u8>,
    stream: &'static str,
) -> Result<(), Ending> {
    let Some(mut pipe) = pipe else { return Ok(()) };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut chunk).await.map_err(Ending::Io)?;
        if n == 0 {
            return Ok(());
        }
        let room = MAX_OUTPUT - buf.len();
        if n > room {
            buf.extend_from_slice(&chunk[..room]);
            return Err(Ending::Overflow(stream));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Owns the child's process group (its id is the child's pid, by `process_group(0)`): SIGKILLs it
/// on drop unless disarmed by clearing the id.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take().and_then(|id| i32::try_from(id).ok()) {
            // ESRCH just means everyone in it has already exited.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn ws() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let ws = Workspace::new(dir.path()).unwrap();
        (dir, ws)
    }

    fn args(command: &str, argv: &[&str]) -> ExecArgs {
        ExecArgs {
            command: command.into(),
            args: argv.iter().map(|s| s.to_string()).collect(),
            env: IndexMap::new(),
            cwd: ".".into(),
            stdout: true,
            stderr: true,
            timeout: None,
        }
    }

    #[tokio::test]
    async fn returns_the_output() {
        let (_dir, ws) = ws();
        assert_eq!(
            exec(&ws, args("echo", &["hello"])).await,
            json!({"output": "hello\n"})
        );
    }

    #[tokio::test]
    async fn arguments_are_not_interpreted_by_a_shell() {
        let (_dir, ws) = ws();
        let out = exec(&ws, args("echo", &["$HOME", "a;b", "*", "`id`"])).await;
        assert_eq!(out, json!({"output": "$HOME a;b * `id`\n"}));
    }

    #[tokio::test]
    async fn stdout_and_stderr_follow_the_flags() {
        let (_dir, ws) = ws();
        let script = ["-c", "echo out; echo err >&2"];
        let mut only_err = args("sh", &script);
        only_err.stdout = false;
        assert_eq!(exec(&ws, only_err).await, json!({"output": "err\n"}));
        let mut neither = args("sh", &script);
        (neither.stdout, neither.stderr) = (false, false);
        assert_eq!(exec(&ws, neither).await, json!({"output": NO_OUTPUT}));
    }

    #[tokio::test]
    async fn runs_in_the_validated_cwd() {
        let (_dir, ws) = ws();
        let mut pwd = args("pwd", &[]);
        pwd.cwd = "sub".into();
        let expected = format!("{}\n", ws.root().join("sub").display());
        assert_eq!(exec(&ws, pwd).await, json!({"output": expected}));
        let mut escape = args("pwd", &[]);
        escape.cwd = "..".into();
        let out = exec(&ws, escape).await;
        assert!(
            out["error"].as_str().unwrap().starts_with("Access denied"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn environment_is_filtered() {
        let (_dir, ws) = ws();
        let mut env = args("env", &[]);
        env.env = IndexMap::from([
            ("LD_PRELOAD".to_owned(), "/evil.so".to_owned()),
            ("path".to_owned(), "/evil".to_owned()),
            ("CUSTOM_VAR".to_owned(), "kept".to_owned()),
        ]);
        let out = exec(&ws, env).await;
        let output = out["output"].as_str().unwrap();
        let names: Vec<&str> = output
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        assert!(names.contains(&"CUSTOM_VAR"), "{output}");
        assert!(
            !names.contains(&"LD_PRELOAD") && !names.contains(&"path"),
            "{output}"
        );
        // Nothing of the test process's own environment (CARGO_*, RUST_*, …) leaks through.
        for name in names {
            assert!(
                SAFE_ENV_VARS.contains(&name) || name == "CUSTOM_VAR",
                "unexpected {name}"
            );
        }
        if let Some(path) = std::env::var_os("PATH") {
            assert!(
                output.contains(&format!("PATH={}\n", path.to_string_lossy())),
                "{output}"
            );
        }
    }

    #[test]
    fn child_env_keeps_safe_vars_and_drops_protected_ones() {
        let inherited = |name: &str| match name {
            "PATH" => Some(OsString::from("/usr/bin")),
            "HOME" => Some(OsString::new()),
            "SECRET_TOKEN" => Some(OsString::from("s3cret")),
            _ => None,
        };
        let given = IndexMap::from([
            ("Ld_Preload".to_owned(), "x".to_owned()),
            ("PATH".to_owned(), "/evil".to_owned()),
            ("FOO".to_owned(), "bar".to_owned()),
        ]);
        let env = child_env(inherited, &given).unwrap();
        assert_eq!(
            env,
            IndexMap::from([
                (OsString::from("PATH"), OsString::from("/usr/bin")),
                (OsString::from("FOO"), OsString::from("bar")),
            ])
        );
        let bad = IndexMap::from([("A=B".to_owned(), "x".to_owned())]);
        assert!(child_env(|_| None, &bad).is_err());
    }

    #[tokio::test]
    async fn failing_command_reports_output() {
        let (_dir, ws) = ws();
        let out = exec(&ws, args("sh", &["-c", "echo out; echo err >&2; exit 3"])).await;
        assert_eq!(
            out,
            json!({
                "error": "Command failed: sh -c echo out; echo err >&2; exit 3\nerr\n",
                "stdout": "out\n",
                "stderr": "err\n",
            })
        );
    }

    #[tokio::test]
    async fn missing_command_fails_to_spawn() {
        let (_dir, ws) = ws();
        let out = exec(&ws, args("no-such-command-xyz", &[])).await;
        assert_eq!(out, json!({"error": "spawn no-such-command-xyz ENOENT"}));
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let (dir, ws) = ws();
        let pidfile = dir.path().join("bg.pid");
        let script = format!(
            "sleep 30 & echo $! > {}; echo started; wait",
            pidfile.display()
        );
        let mut slow = args("sh", &["-c", &script]);
        slow.timeout = Some(Number::from(300));
        let started = Instant::now();
        let out = exec(&ws, slow).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(
            out,
            json!({"error": "Command timed out after 300ms.", "stdout": "started\n"})
        );
        // The backgrounded grandchild went with the group.
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "background process {pid} survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Running, not a zombie waiting for its (new) parent to reap it.
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z'),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn output_beyond_the_cap_fails() {
        let (_dir, ws) = ws();
        let script = format!("head -c {} /dev/zero", MAX_OUTPUT + 1);
        let mut big = args("sh", &["-c", &script]);
        big.stdout = false;
        assert_eq!(
            exec(&ws, big).await,
            json!({"error": "stdout maxBuffer length exceeded"})
        );
    }

    #[test]
    fn a_killed_command_is_reported_with_its_signal_and_sigkill_with_its_likely_cause() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(killed_note(ExitStatus::from_raw(3 << 8)), "");
        assert!(
            killed_note(ExitStatus::from_raw(9))
                .starts_with("Killed by SIGKILL: the command most likely ran out of memory")
        );
        assert_eq!(
            killed_note(ExitStatus::from_raw(15)),
            "Killed by SIGTERM (15)\n"
        );
    }

    #[tokio::test]
    async fn negative_timeout_is_refused() {
        let (_dir, ws) = ws();
        let mut bad = args("true", &[]);
        bad.timeout = Some(Number::from(-1));
        let out = exec(&ws, bad).await;
        assert!(
            out["error"]
                .as_str()
                .unwrap()
                .starts_with("Invalid timeout"),
            "{out}"
        );
    }
}
