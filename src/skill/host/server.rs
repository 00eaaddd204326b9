//! One life of the skill's server process: starting it with a cleared environment in a process
//! group of its own, copying its stderr to ours (keeping the last lines), reaping it and every
//! orphan, and stopping it.
//!
//! The server is spawned with `std::process` rather than `tokio::process` on purpose: tokio's
//! child handling reaps only its own children, while PID 1 must `waitpid(-1)` for everyone — and
//! the two would race for the server's exit status.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::signal::unix::{SignalKind, signal};

use super::cause::{Cgroup, Exit};
use super::{HostError, HostOptions, server_env};

/// How long the server gets to exit after its stdin closes or it is signalled.
const GRACE: Duration = Duration::from_secs(5);

/// How many of the server's last stderr lines are kept for diagnosis.
const TAIL_LINES: usize = 20;

/// The signals PID 1 handles. Set up before the first server starts, so a server that dies at
/// once still wakes the reaper.
pub(super) struct Signals {
    /// A child exited.
    pub child: tokio::signal::unix::Signal,
    /// `docker stop`.
    pub terminate: tokio::signal::unix::Signal,
    /// Ctrl-C of an attached terminal.
    pub interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn new() -> Result<Signals, HostError> {
        let setup = |kind| signal(kind).map_err(HostError::Setup);
        Ok(Signals {
            child: setup(SignalKind::child())?,
            terminate: setup(SignalKind::terminate())?,
            interrupt: setup(SignalKind::interrupt())?,
        })
    }
}

/// A running server and its pipes.
pub(super) struct Server {
    pid: Pid,
    /// Its stdin, until the relay takes it.
    pub stdin: Option<pipe::Sender>,
    /// Its stdout, until the relay takes it.
    pub stdout: Option<pipe::Receiver>,
    stderr: tokio::task::JoinHandle<()>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// The cgroup's OOM kill count when it started.
    pub oom_kills_at_start: Option<u64>,
}

impl Server {
    /// Starts the server of `options`.
    pub(super) fn spawn(options: &HostOptions, cgroup: &Cgroup) -> Result<Server, HostError> {
        let oom_kills_at_start = cgroup.oom_kills();
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
        let mut child = command.spawn().map_err(|source| HostError::Spawn {
            command: options.command.to_string_lossy().into_owned(),
            source,
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(HostError::Setup(std::io::Error::other(
                "child pipes missing",
            )));
        };
        // `child` is never waited on through std: the reaper collects its status.
        drop(child);
        let stdin = pipe::Sender::from_owned_fd(OwnedFd::from(stdin)).map_err(HostError::Setup)?;
        let stdout =
            pipe::Receiver::from_owned_fd(OwnedFd::from(stdout)).map_err(HostError::Setup)?;
        let stderr =
            pipe::Receiver::from_owned_fd(OwnedFd::from(stderr)).map_err(HostError::Setup)?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        Ok(Server {
            pid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: tokio::spawn(copy_stderr(stderr, tail.clone())),
            tail,
            oom_kills_at_start,
        })
    }

    /// Its exit, if it has exited; reaps every other exited child too.
    pub(super) fn reap(&self) -> Option<Exit> {
        reap(self.pid)
    }

    /// After it exited: ends what it left in its process group, then waits (briefly) until its
    /// stderr is copied out, and gives its last lines.
    pub(super) async fn last_words(&mut self) -> Vec<String> {
        let _ = killpg(self.pid, Signal::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.stderr).await;
        self.tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Waits for it to exit by itself (its stdin closed), then kills its group.
    pub(super) async fn wait_or_kill(&self, signals: &mut Signals) -> i32 {
        if let Some(exit) = wait_for(self.pid, &mut signals.child, GRACE).await {
            return exit.code();
        }
        let _ = killpg(self.pid, Signal::SIGKILL);
        wait_for(self.pid, &mut signals.child, GRACE)
            .await
            .map_or(137, Exit::code)
    }

    /// Forwards `sig` to its group, then waits, then kills.
    pub(super) async fn stop(&self, sig: Signal, signals: &mut Signals) -> i32 {
        let _ = killpg(self.pid, sig);
        self.wait_or_kill(signals).await
    }
}

/// Copies the server's stderr to ours line by line, keeping the last [`TAIL_LINES`].
async fn copy_stderr(from: pipe::Receiver, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(from).lines();
    let mut out = tokio::io::stderr();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = out.write_all(format!("{line}\n").as_bytes()).await;
        let _ = out.flush().await;
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Reaps every exited child; returns the server's exit if it was among them.
pub(super) fn reap(server: Pid) -> Option<Exit> {
    let mut server_exit = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == server => {
                server_exit = Some(Exit::Code(code))
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == server => {
                server_exit = Some(Exit::Signal(sig))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return server_exit,
            Ok(_) => {}
        }
    }
}

/// Reaps orphans; for when no server runs.
pub(super) fn reap_orphans() {
    let _ = reap(Pid::from_raw(0));
}

async fn wait_for(
    server: Pid,
    sigchld: &mut tokio::signal::unix::Signal,
    limit: Duration,
) -> Option<Exit> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(exit) = reap(server) {
            return Some(exit);
        }
        // SIGCHLD can coalesce; poll as a safety net.
        tokio::select! {
            _ = sigchld.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::time::sleep_until(deadline) => return reap(server),
        }
    }
}
