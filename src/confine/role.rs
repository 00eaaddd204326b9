//! The hidden `confine` role of our binary, and the command line that reaches it.
//!
//! - `confine exec --policy JSON [--report-fd N] -- PROGRAM ARGS…`: confine this process and
//!   execute PROGRAM ([`super::launch`] builds this line; the policy's JSON carries variable
//!   names, never values, since any process can read a command line). Exits 126 when confinement
//!   fails and 127 when the program cannot be executed, saying why on stderr and the report pipe.
//! - `confine check [--json]`: what this kernel offers ([`super::probe`]); exits 1 when a
//!   protection a supervisor requires is missing.
//! - `confine attempt …`: one breakout attempt and its outcome ([`super::attempt`]).
//!
//! `main` dispatches here before it starts any thread: Landlock and seccomp bind the calling
//! thread, and a single-threaded process is what the confinement reasons about.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use super::ConfineError;
use super::apply;
use super::attempt::{self, AttemptArgs};
use super::policy::Policy;
use super::probe::Protections;
use super::report::Message;

/// `confine`.
#[derive(Debug, Args)]
pub struct ConfineArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfineAction,
}

/// The `confine` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfineAction {
    /// Confine this process by a policy, then execute a program.
    Exec(ExecArgs),
    /// Report the protections this kernel offers.
    Check {
        /// The typed value as JSON instead of one line.
        #[arg(long)]
        json: bool,
    },
    /// (tests) Make one breakout attempt and print its outcome as JSON.
    #[command(subcommand)]
    Attempt(AttemptArgs),
}

/// `confine exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The policy and the names of the variables to pass, as JSON.
    #[arg(long)]
    pub policy: String,
    /// Inherited descriptor to write the report to.
    #[arg(long)]
    pub report_fd: Option<i32>,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<OsString>,
}

/// What crosses the command line: the policy (whose `env` is never serialized) and the names.
#[derive(Debug, Serialize, Deserialize)]
struct Spec {
    policy: Policy,
    env: Vec<String>,
}

/// The arguments after our binary's path that run `program` confined by `policy`.
pub fn exec_args<I, S>(
    policy: &Policy,
    report_fd: Option<i32>,
    program: &OsStr,
    args: I,
) -> Result<Vec<OsString>, ConfineError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let spec = Spec {
        policy: policy.clone(),
        env: policy.env.keys().cloned().collect(),
    };
    let json = serde_json::to_string(&spec).map_err(|e| ConfineError::Role {
        principal: policy.principal.clone(),
        message: format!("cannot serialize its policy: {e}"),
    })?;
    let mut line: Vec<OsString> = vec![
        "confine".into(),
        "exec".into(),
        "--policy".into(),
        json.into(),
    ];
    if let Some(fd) = report_fd {
        line.push("--report-fd".into());
        line.push(fd.to_string().into());
    }
    line.push("--".into());
    line.push(program.to_os_string());
    line.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
    Ok(line)
}

/// Runs the role; returns the exit code (`exec` returns only on failure).
pub fn main(args: ConfineArgs) -> i32 {
    match args.action {
        ConfineAction::Exec(exec) => run_exec(exec),
        ConfineAction::Check { json } => check(json),
        ConfineAction::Attempt(attempt) => attempt::run(attempt),
    }
}

fn check(json: bool) -> i32 {
    let protections = Protections::probe();
    if json {
        match serde_json::to_string(&protections) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("confine check: {e}");
                return 1;
            }
        }
    } else {
        println!("{}", protections.summary());
    }
    i32::from(!protections.is_sufficient())
}

fn run_exec(args: ExecArgs) -> i32 {
    // SAFETY: the launcher passed us this descriptor for the report and nothing else owns it.
    let mut report = args.report_fd.map(|fd| unsafe { File::from_raw_fd(fd) });
    let mut send = |message: &Message| {
        if let Some(file) = report.as_mut()
            && let Ok(line) = serde_json::to_string(message)
        {
            let _ = writeln!(file, "{line}");
        }
    };
    let spec: Spec = match serde_json::from_str(&args.policy) {
        Ok(spec) => spec,
        Err(e) => {
            let error = format!("--policy is not a confinement policy: {e}");
            eprintln!("confine: {error}");
            send(&Message::Failed(error));
            return 126;
        }
    };
    let (enforcement, target) = match apply::confine(&spec.policy, &spec.env, &args.command) {
        Ok(done) => done,
        Err(error) => {
            eprintln!("confine: {}: {error}", spec.policy.principal);
            send(&Message::Failed(error.to_string()));
            return 126;
        }
    };
    send(&Message::Enforced(Box::new(enforcement)));
    let error = apply::exec(&target);
    eprintln!("confine: {}: {error}", spec.policy.principal);
    send(&Message::Failed(error.to_string()));
    127
}
