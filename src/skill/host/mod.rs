//! The `skill-host` role: PID 1 of every skill container, and the skill's supervisor.
//!
//! ```text
//! perstack-sandbox skill-host --socket /run/perstack/skill/mcp.sock [--pass-env NAME]… -- <command> [args…]
//! ```
//!
//! It starts the MCP server with a cleared environment (`PATH`, `HOME`, the CA bundle
//! variables of the contract and exactly the `--pass-env` variables), listens on the unix socket
//! in the volume it shares with the runtime container, and relays newline-delimited JSON-RPC (the
//! MCP stdio framing) between the runtime's connection and the server's stdin/stdout
//! ([`relay`]). The server's stderr goes to the container's stderr, where the controller turns
//! each line into a `skillStderr` event; the host's own lines there begin with
//! [`HOST_LINE_PREFIX`].
//!
//! When the server exits while the run goes on (a crash, an OOM kill, a plain `exit`), the host
//! answers the requests it left unanswered with an error naming the cause ([`cause`]), hangs up,
//! and starts the server again after a backoff, up to [`restarts::MAX_RESTARTS`] times a run
//! ([`restarts`]); the runtime connects again. A server that exits before it ever answered a
//! handshake, or after the last restart, leaves the skill down: every later handshake is
//! answered with the reason (and, for one that could not start, hints from [`diagnosis`]).
//!
//! As PID 1 it also reaps every orphan that gets reparented to it, and forwards SIGTERM/SIGINT
//! to the server's process group. It exits when the runtime hangs up (the run is over) or it is
//! told to stop, with the server's exit code (128 + signal when the server was killed).

mod cause;
mod diagnosis;
mod relay;
mod requests;
pub(crate) mod restarts;
mod server;

use std::ffi::OsString;
use std::os::fd::FromRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use crate::contract::paths::{CA_BUNDLE_VARIABLES, WORKSPACE_MOUNT};
use crate::contract::supervision::{HOST_LINE_PREFIX, SERVER_EXITED, SKILL_DOWN};
use cause::Cgroup;
use relay::Ended;
use restarts::{Next, Restarts};
use server::{Server, Signals};

/// Used when the container's image sets no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run and where to listen.
#[derive(Debug, Clone)]
pub(crate) struct HostOptions {
    /// Where it listens.
    pub socket: Listen,
    /// Variables passed through to the server (the skill's `requiredEnv`).
    pub pass_env: Vec<String>,
    /// The server's program.
    pub command: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// Where the skill host listens for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listen {
    /// A unix socket it creates at this path.
    Path(PathBuf),
    /// A listening unix socket it inherited as this descriptor (`--socket-fd`): its launcher
    /// bound it where the runtime looks, outside the root the host runs in.
    Inherited(i32),
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
    let mut signals = Signals::new()?;
    let listener = listen(&options.socket)?;
    let cgroup = Cgroup::default();
    let mut restarts = Restarts::default();
    loop {
        let mut server = match Server::spawn(&options, &cgroup) {
            Ok(server) => server,
            Err(error) => {
                let mut reason = format!("its server could not start: {error}");
                if let HostError::Spawn { source, .. } = &error
                    && let Some(hint) = diagnosis::cannot_spawn(&options.command, source)
                {
                    reason.push_str(&format!("\nhint: {hint}"));
                }
                say(&reason);
                return Ok(stay_down(&listener, &reason, &mut signals, 127).await);
            }
        };
        let (exit, runtime) = match relay::serve(&listener, &mut server, &mut signals).await {
            Ended::Over(code) => return Ok(code),
            Ended::Died { exit, runtime } => (exit, runtime),
        };
        let last_words = server.last_words().await;
        if runtime
            .as_ref()
            .is_some_and(relay::Runtime::answered_handshake)
        {
            restarts.started();
        }
        let cause = cgroup.cause(exit, server.oom_kills_at_start).to_string();
        match restarts.next(&cause) {
            Next::Restart { nth, after } => {
                let message = restarts::restarting(&cause, nth, after);
                say(&message);
                if let Some(runtime) = runtime {
                    runtime.fail_pending(SERVER_EXITED, &message).await;
                }
                if let Some(code) = pause(after, &mut signals).await {
                    return Ok(code);
                }
            }
            Next::Down(why) => {
                let mut reason = why;
                for hint in diagnosis::hints(
                    &options.command,
                    &options.args,
                    &last_words,
                    std::path::Path::new(WORKSPACE_MOUNT).exists(),
                ) {
                    reason.push_str(&format!("\nhint: {hint}"));
                }
                say(&reason);
                if let Some(runtime) = runtime {
                    runtime.fail_pending(SKILL_DOWN, &reason).await;
                }
                return Ok(stay_down(&listener, &reason, &mut signals, exit.code()).await);
            }
        }
    }
}

/// Writes the host's own lines to stderr, each with [`HOST_LINE_PREFIX`].
fn say(text: &str) {
    for line in text.lines() {
        eprintln!("{HOST_LINE_PREFIX}{line}");
    }
}

/// Waits `after` before a restart, reaping orphans; `Some(code)` when told to stop meanwhile.
async fn pause(after: Duration, signals: &mut Signals) -> Option<i32> {
    let until = tokio::time::Instant::now() + after;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return None,
            _ = signals.child.recv() => server::reap_orphans(),
            _ = signals.terminate.recv() => return Some(128 + Signal::SIGTERM as i32),
            _ = signals.interrupt.recv() => return Some(128 + Signal::SIGINT as i32),
        }
    }
}

/// The skill is down: answers every connection's first request with [`SKILL_DOWN`] and
/// `reason`, so the runtime learns why at once instead of waiting for a server that will not
/// come, until told to stop; then exits with `code`.
async fn stay_down(listener: &UnixListener, reason: &str, signals: &mut Signals, code: i32) -> i32 {
    loop {
        tokio::select! {
            accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                // A connection that never speaks does not hold up the next one.
                let _ = tokio::time::timeout(Duration::from_secs(5), refuse(stream, reason)).await;
            },
            _ = signals.child.recv() => server::reap_orphans(),
            _ = signals.terminate.recv() => return code,
            _ = signals.interrupt.recv() => return code,
        }
    }
}

/// Answers the first request on `stream` (the runtime's `initialize`) with [`SKILL_DOWN`].
async fn refuse(stream: tokio::net::UnixStream, reason: &str) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(line)) = lines.next_line().await else {
        return;
    };
    let id = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(serde_json::Value::Null);
    let _ = write
        .write_all(requests::error_line(&id, SKILL_DOWN, reason).as_bytes())
        .await;
    let _ = write.shutdown().await;
}

fn listen(socket: &Listen) -> Result<UnixListener, HostError> {
    let path = match socket {
        Listen::Path(path) => path,
        Listen::Inherited(fd) => return inherited(*fd),
    };
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

/// The listening socket at descriptor `fd`, which must be one.
fn inherited(fd: i32) -> Result<UnixListener, HostError> {
    let err = |source| HostError::Listen {
        path: format!("descriptor {fd}"),
        source,
    };
    // SAFETY: only borrowed for the call; an fd that is not open makes it fail with EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let kind = nix::sys::socket::getsockopt(&borrowed, nix::sys::socket::sockopt::AcceptConn)
        .map_err(|e| err(e.into()))?;
    if !kind {
        return Err(err(std::io::Error::other("not a listening socket")));
    }
    // SAFETY: `fd` is open (getsockopt answered for it), a listening socket, and owned by
    // nothing else in this process: it was inherited for this alone.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    listener.set_nonblocking(true).map_err(err)?;
    UnixListener::from_std(listener).map_err(err)
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
