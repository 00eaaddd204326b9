//! Starting a confined process, from the supervisor's side.
//!
//! We re-execute our own binary as the hidden `confine exec` role, which confines itself and then
//! executes the principal's program, rather than confining in a `pre_exec` hook. A `pre_exec`
//! closure runs between `fork` and `execve` in a copy of a multi-threaded (tokio) process, where
//! only async-signal-safe calls are allowed: no allocation, no locks. Building a Landlock ruleset
//! opens paths and allocates, the landlock crate does not promise to be async-signal-safe, and an
//! error there could only be a bare errno. The role instead is a fresh single-threaded process
//! that uses the crates as documented, reports exactly what held (the kernel's own answer to
//! `landlock_restrict_self`), and replaces the supervisor's memory image (with every principal's
//! secrets in it) at once. The cost is one more `execve` of a binary already in the page cache.
//! The only `pre_exec` work left is clearing close-on-exec on the report pipe and on the
//! descriptors the policy keeps: one `fcntl` each.
//!
//! The report comes back on a pipe (see [`super::report`]): [`Launch::spawn`] returns once the
//! program is executing, with the [`Enforcement`], or with the role's error.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

use nix::fcntl::OFlag;

use super::ConfineError;
use super::policy::Policy;
use super::report::{Enforcement, Message};
use super::role;
use super::sys;

/// A confined process, ready to spawn.
pub struct Launch {
    command: Command,
    principal: String,
    report: OwnedFd,
    report_writer: OwnedFd,
}

/// A confined process that is running its program.
#[derive(Debug)]
pub struct Confined<C> {
    /// The process.
    pub child: C,
    /// What holds for it.
    pub enforcement: Enforcement,
}

impl Launch {
    /// Prepares `confiner confine exec … -- program args…` with exactly the policy's
    /// environment. `confiner` is our own binary (`std::env::current_exe()` in the supervisor).
    pub fn new<I, S>(
        confiner: &Path,
        policy: &Policy,
        program: impl AsRef<OsStr>,
        args: I,
    ) -> Result<Launch, ConfineError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        policy.validate()?;
        for &fd in &policy.keep_fds {
            sys::check_open(fd).map_err(|source| ConfineError::KeepFd { fd, source })?;
        }
        let (report, report_writer) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ConfineError::Io {
                what: "creating the report pipe",
                source: e.into(),
            })?;
        let mut command = Command::new(confiner);
        command.args(role::exec_args(
            policy,
            Some(report_writer.as_raw_fd()),
            program.as_ref(),
            args,
        )?);
        command.env_clear().envs(&policy.env);
        let mut inherited = policy.keep_fds.clone();
        inherited.push(report_writer.as_raw_fd());
        // SAFETY: the closure only reads a vector allocated before the fork and calls fcntl,
        // which is async-signal-safe; its error is an errno, built without allocating.
        unsafe {
            command.pre_exec(move || {
                for &fd in &inherited {
                    sys::clear_cloexec(fd)?;
                }
                Ok(())
            });
        }
        Ok(Launch {
            command,
            principal: policy.principal.clone(),
            report,
            report_writer,
        })
    }

    /// The command, for stdio, working directory and process group. Its environment is the
    /// policy's; variables added here are dropped by the role unless the policy names them.
    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.command
    }

    /// Starts it and waits until its program is executing (or the role failed).
    pub fn spawn(self) -> Result<Confined<Child>, ConfineError> {
        let Launch {
            mut command,
            principal,
            report,
            report_writer,
        } = self;
        let mut child = command.spawn().map_err(|source| ConfineError::Spawn {
            principal: principal.clone(),
            source,
        })?;
        drop(command);
        drop(report_writer);
        match read_report(report, &principal) {
            Ok(enforcement) => Ok(Confined { child, enforcement }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// [`Launch::spawn`] for tokio: the child is killed when dropped.
    pub async fn spawn_async(self) -> Result<Confined<tokio::process::Child>, ConfineError> {
        let Launch {
            command,
            principal,
            report,
            report_writer,
        } = self;
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let child = command.spawn().map_err(|source| ConfineError::Spawn {
            principal: principal.clone(),
            source,
        })?;
        drop(command);
        drop(report_writer);
        let who = principal.clone();
        let enforcement = tokio::task::spawn_blocking(move || read_report(report, &who))
            .await
            .map_err(|e| ConfineError::Role {
                principal,
                message: format!("reading its report failed: {e}"),
            })??;
        Ok(Confined { child, enforcement })
    }
}

/// Reads the report pipe to its end: one [`Message::Enforced`] means the program runs.
fn read_report(report: OwnedFd, principal: &str) -> Result<Enforcement, ConfineError> {
    let mut text = String::new();
    File::from(report)
        .read_to_string(&mut text)
        .map_err(|e| ConfineError::Io {
            what: "reading the confinement report",
            source: e,
        })?;
    let role_error = |message: String| ConfineError::Role {
        principal: principal.to_string(),
        message,
    };
    let mut enforced = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Message>(line) {
            Ok(Message::Enforced(e)) => enforced = Some(*e),
            Ok(Message::Failed(message)) => return Err(role_error(message)),
            Err(e) => return Err(role_error(format!("unreadable report line ({e}): {line}"))),
        }
    }
    enforced.ok_or_else(|| {
        role_error("it ended before reporting (killed, or not our binary?)".to_string())
    })
}
