//! `perstack-sandbox trust accept|status`: the workspace's trust record — the changes runs made
//! to the files runs trust, which keep every later run from starting until they are accepted.

use std::path::PathBuf;

use crate::cli::{TrustArgs, TrustCommand};
use crate::exit::Exit;
use crate::trust::{TrustError, watch};

/// Why `trust` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum TrustCommandError {
    /// The workspace does not exist or cannot be read.
    #[error("workspace {}: {source}\n  hint: give the folder the runs use, as `run --workspace` got it", path.display())]
    Workspace {
        /// As given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The record could not be read or written.
    #[error(transparent)]
    Record(#[from] TrustError),
}

impl From<&TrustCommandError> for Exit {
    fn from(_: &TrustCommandError) -> Exit {
        Exit::Usage
    }
}

/// Runs the subcommand; prints what it found or accepted.
pub fn run(command: TrustCommand) -> Result<Exit, TrustCommandError> {
    match command {
        TrustCommand::Accept(args) => accept(&args),
        TrustCommand::Status(args) => status(&args),
    }
}

fn workspace(args: &TrustArgs) -> Result<PathBuf, TrustCommandError> {
    let given = match &args.workspace {
        Some(path) => path.clone(),
        None => PathBuf::from("."),
    };
    std::fs::canonicalize(&given).map_err(|source| TrustCommandError::Workspace {
        path: given,
        source,
    })
}

fn accept(args: &TrustArgs) -> Result<Exit, TrustCommandError> {
    let workspace = workspace(args)?;
    let files = crate::trust::record_files(&workspace)?;
    let accepted = watch::accept(&files)?;
    if accepted.is_empty() {
        println!(
            "nothing to accept: no run changed what runs in {} trust",
            workspace.display()
        );
    }
    for change in &accepted {
        println!(
            "accepted: {} {} while job {} ran (run {})",
            change.path.display(),
            change.verb(),
            change.job_id,
            change.run_id
        );
    }
    Ok(Exit::Success)
}

fn status(args: &TrustArgs) -> Result<Exit, TrustCommandError> {
    let workspace = workspace(args)?;
    let files = crate::trust::record_files(&workspace)?;
    let record = watch::status(&files)?;
    println!(
        "trust record of {}: {}",
        workspace.display(),
        files.path().display()
    );
    if record.changes.is_empty() {
        println!("no change waits to be accepted");
    }
    for change in &record.changes {
        println!(
            "to accept: {} {} while job {} ran (run {}): {} -> {}",
            change.path.display(),
            change.verb(),
            change.job_id,
            change.run_id,
            change.before,
            change.after
        );
    }
    for run in &record.runs {
        println!(
            "under way: run {} of job {} (controller {})",
            run.run_id, run.job_id, run.controller
        );
    }
    if !record.changes.is_empty() {
        println!(
            "look at each file, undo what you did not make, then: {}",
            crate::trust::accept_command(&workspace)
        );
    }
    Ok(Exit::Success)
}
