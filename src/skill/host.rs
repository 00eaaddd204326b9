//! The `skill-host` role: PID 1 of every skill container.
//!
//! ```text
//! perstack-sandbox skill-host --socket /run/perstack/skill/mcp.sock [--pass-env NAME]… -- <command> [args…]
//! ```
//!
//! It starts the MCP server with a cleared environment (`PATH`, `HOME`, the CA bundle
//! variables of the contract and exactly the `--pass-env` variables), listens on the unix socket in the volume it shares with the runtime
//! container, and relays newline-delimited JSON-RPC (the MCP stdio framing) between one runtime
//! connection and the server's stdin/stdout. The server's stderr goes to the container's stderr,
//! where the controller turns each line into a `skillStderr` event.
//!
//! As PID 1 it also reaps every orphan that gets reparented to it, and forwards SIGTERM/SIGINT
//! to the server's process group. It exits with the server's exit code (128 + signal when the
//! server was killed), when the server exits or the runtime hangs up.
//!
//! The server is spawned with `std::process` rather than `tokio::process` on purpose: tokio's
//! child handling reaps only its own children, while PID 1 must `waitpid(-1)` for everyone — and
//! the two would race for the server's exit status.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::pipe;
use tokio::signal::unix::{SignalKind, signal};

use crate::contract::paths::CA_BUNDLE_VARIABLES;

/// Used when the container's image sets no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long the server gets to exit after its stdin closes or it is signalled.
const GRACE: Duration = Duration::from_secs(5);

/// What to run and where to listen.
#[derive(Debug, Clone)]
pub(crate) struct HostOptions {
    /// The unix socket to create.
    pub socket: PathBuf,
    /// Variables passed through to the server (the skill's `requiredEnv`).
    pub pass_env: Vec<String>,
    /// The server's program.
    pub command: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// Why the skill host could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The server could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The socket could not be created.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// The socket path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Signal handling or pipes could not be set up.
    #[error("skill host setup failed: {0}")]
    Setup(#[source] std::io::Error),
}

/// The server's environment: `PATH`, `HOME`, the CA bundle variables
/// ([`CA_BUNDLE_VARIABLES`]: trust settings an image sets, never secrets) and the
/// passed-through variables, those that are set.
pub(crate) fn server_env(
    pass_env: &[String],
    own: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            own("PATH").unwrap_or_else(|| DEFAULT_PATH.to_string()),
        ),
        (
            "HOME".to_string(),
            own("HOME").unwrap_or_else(|| "/tmp".to_string()),
        ),
    ];
    let trust = CA_BUNDLE_VARIABLES.iter().map(|name| name.to_string());
    for name in trust.chain(pass_env.iter().cloned()) {
        if let Some(value) = own(&name) {
            env.retain(|(n, _)| *n != name);
            env.push((name, value));
        }
    }
    env
}

/// Runs the skill host; returns the exit code for the process.
pub(crate) async fn run(options: HostOptions) -> Result<i32, HostError> {
    // Signal streams first, so a server that dies at once still wakes the reaper.
    let mut sigchld = signal(SignalKind::child()).map_err(HostError::Setup)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(HostError::Setup)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(HostError::Setup)?;

    let listener = listen(&options.socket)?;

    let mut command = std::process::Command::new(&options.command);
    command
        .args(&options.args)
        .env_clear()
        .envs(server_env(&options.pass_env, |k| std::env::var(k).ok()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a forwarded signal reaches everything it started.
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(source) => {
            let error = HostError::Spawn {
                command: options.command.to_string_lossy().into_owned(),
                source,
            };
            eprintln!("skill-host: {error}");
            // Tell the runtime instead of leaving it to wait for a socket that never answers.
            refuse_handshake(&listener, &error.to_string(), &mut sigterm, &mut sigint).await;
            return Err(error);
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(HostError::Setup(std::io::Error::other(
            "child pipes missing",
        )));
    };
    let server_in = pipe::Sender::from_owned_fd(OwnedFd::from(stdin)).map_err(HostError::Setup)?;
    let server_out =
        pipe::Receiver::from_owned_fd(OwnedFd::from(stdout)).map_err(HostError::Setup)?;
    let server_err =
        pipe::Receiver::from_owned_fd(OwnedFd::from(stderr)).map_err(HostError::Setup)?;
    // `child` is never waited on through std: the reaper below collects its status.
    drop(child);

    let stderr_task = tokio::spawn(async move {
        let mut lines = BufReader::new(server_err).lines();
        let mut out = tokio::io::stderr();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = out.write_all(format!("{line}\n").as_bytes()).await;
            let _ = out.flush().await;
        }
    });

    let mut exit: Option<i32> = None;
    let mut connection = None;
    // Phase 1: wait for the runtime to connect (or the server to die, or a signal).
    while connection.is_none() && exit.is_none() {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => connection = Some(stream),
                Err(e) => eprintln!("skill-host: accept failed: {e}"),
            },
            _ = sigchld.recv() => exit = reap(pid),
            _ = sigterm.recv() => exit = Some(stop(pid, Signal::SIGTERM, &mut sigchld).await),
            _ = sigint.recv() => exit = Some(stop(pid, Signal::SIGINT, &mut sigchld).await),
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&options.socket);

    // Phase 2: relay until either side is done.
    if let (Some(stream), None) = (connection, exit) {
        let (socket_read, mut socket_write) = stream.into_split();
        // Owns the server's stdin: when the runtime hangs up, this future ends and dropping the
        // sender closes the server's stdin, which tells a stdio MCP server to exit.
        let to_server = async move {
            let mut server_in = server_in;
            let mut lines = BufReader::new(socket_read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if server_in
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        let from_server = async {
            let mut lines = BufReader::new(server_out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if socket_write
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let _ = socket_write.shutdown().await;
        };
        tokio::pin!(to_server, from_server);
        let mut to_done = false;
        let mut from_done = false;
        while exit.is_none() && !(to_done && from_done) {
            tokio::select! {
                _ = &mut to_server, if !to_done => {
                    // The runtime hung up: stop feeding the server; it should exit on EOF.
                    to_done = true;
                    exit = Some(wait_or_kill(pid, &mut sigchld).await);
                }
                _ = &mut from_server, if !from_done => from_done = true,
                _ = sigchld.recv() => exit = reap(pid),
                _ = sigterm.recv() => exit = Some(stop(pid, Signal::SIGTERM, &mut sigchld).await),
                _ = sigint.recv() => exit = Some(stop(pid, Signal::SIGINT, &mut sigchld).await),
            }
        }
        if exit.is_none() {
            exit = Some(wait_or_kill(pid, &mut sigchld).await);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr_task).await;
    Ok(exit.unwrap_or(1))
}

/// Answers the runtime's first request (MCP `initialize`) with a JSON-RPC error saying why the
/// server could not start, so the run fails at once with the cause instead of timing out.
async fn refuse_handshake(
    listener: &UnixListener,
    reason: &str,
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
) {
    let answer = async {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let Ok(Some(line)) = lines.next_line().await else {
            return;
        };
        let id = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or(serde_json::Value::Null);
        let reply = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32000, "message": format!("the skill's server could not start: {reason}")},
        });
        let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
        let _ = write.shutdown().await;
    };
    // The runtime normally connects within a second; don't outlive a run that never comes.
    tokio::select! {
        _ = answer => {}
        _ = tokio::time::sleep(Duration::from_secs(120)) => {}
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
}

fn listen(path: &Path) -> Result<UnixListener, HostError> {
    let err = |source| HostError::Listen {
        path: path.display().to_string(),
        source,
    };
    // A socket left by an earlier container of the same run would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(err)?;
    // The directory (a tmpfs volume, mode 0750, group = the runtime's) is the access control;
    // the socket itself must be writable by the runtime's user to connect.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(err)?;
    Ok(listener)
}

/// Reaps every exited child; returns the server's exit code if it was among them.
fn reap(server: Pid) -> Option<i32> {
    let mut server_exit = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == server => server_exit = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == server => {
                server_exit = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return server_exit,
            Ok(_) => {}
        }
    }
}

/// Waits for the server to exit by itself, then kills its group.
async fn wait_or_kill(server: Pid, sigchld: &mut tokio::signal::unix::Signal) -> i32 {
    if let Some(code) = wait_for(server, sigchld, GRACE).await {
        return code;
    }
    let _ = killpg(server, Signal::SIGKILL);
    wait_for(server, sigchld, GRACE).await.unwrap_or(137)
}

/// Forwards `sig` to the server's group, then waits, then kills.
async fn stop(server: Pid, sig: Signal, sigchld: &mut tokio::signal::unix::Signal) -> i32 {
    let _ = killpg(server, sig);
    wait_or_kill(server, sigchld).await
}

async fn wait_for(
    server: Pid,
    sigchld: &mut tokio::signal::unix::Signal,
    limit: Duration,
) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(code) = reap(server) {
            return Some(code);
        }
        // SIGCHLD can coalesce; poll as a safety net.
        tokio::select! {
            _ = sigchld.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::time::sleep_until(deadline) => return reap(server),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_env_is_path_home_and_passed_variables_only() {
        let own = |k: &str| match k {
            "PATH" => Some("/bin".to_string()),
            "EXA_API_KEY" => Some("exa".to_string()),
            "ANTHROPIC_API_KEY" => Some("sk".to_string()),
            "SSL_CERT_FILE" | "NODE_EXTRA_CA_CERTS" => Some("/etc/ca.crt".to_string()),
            _ => None,
        };
        let env = server_env(&["EXA_API_KEY".into(), "UNSET".into()], own);
        assert_eq!(
            env,
            [
                ("PATH".to_string(), "/bin".to_string()),
                ("HOME".to_string(), "/tmp".to_string()),
                ("SSL_CERT_FILE".to_string(), "/etc/ca.crt".to_string()),
                ("NODE_EXTRA_CA_CERTS".to_string(), "/etc/ca.crt".to_string()),
                ("EXA_API_KEY".to_string(), "exa".to_string()),
            ]
        );
    }
}
