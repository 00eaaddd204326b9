//! What a run must not be able to change for the next run or for the host: the workspace is
//! written by a model that may be prompt-injected, and the controller, git and the user's tools
//! read it afterwards (SECURITY.md, "The workspace is untrusted input").
//!
//! - `inputs.rs` is the one list of the files the controller reads and trusts, and of the
//!   workspace paths that are protected from the containers that mount the workspace.
//! - Detection, for what mounts cannot cover: a run records the digests of its trusted inputs
//!   as it starts (`digest.rs`) and compares them as it ends (`watch.rs`); a change is kept in
//!   the workspace's trust record (`record.rs`), in the user's state folder outside every
//!   workspace (`state.rs`), and the next run refuses to start until the user accepts it
//!   (`perstack-sandbox trust accept`).

pub(crate) mod digest;
pub(crate) mod inputs;
pub(crate) mod record;
pub(crate) mod state;
pub(crate) mod watch;

use std::path::{Path, PathBuf};

use record::{Change, RecordFiles};

/// The command that accepts the changes found in `workspace`.
pub(crate) fn accept_command(workspace: &Path) -> String {
    format!(
        "perstack-sandbox trust accept --workspace {}",
        workspace.display()
    )
}

/// The trust record of `workspace` (canonical), in the user's state folder; fails when there is
/// no state folder, it cannot be written, or it lies inside the workspace.
pub(crate) fn record_files(workspace: &Path) -> Result<RecordFiles, TrustError> {
    let dir = state::StateEnv::detect()
        .state_dir()
        .ok_or(TrustError::NoStateDir)?;
    RecordFiles::open(&dir, workspace, crate::files::Owner::detect())
}

/// What can keep a run from starting, or `trust` from answering.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// Runs changed trusted inputs and the user has not accepted the changes.
    #[error("{}", pending(workspace, changes))]
    Pending {
        /// The workspace.
        workspace: PathBuf,
        /// The changes, oldest first.
        changes: Vec<Change>,
    },
    /// Nothing names a state folder.
    #[error(
        "cannot tell where to keep the trust record of this workspace: none of {var}, XDG_STATE_HOME or HOME is an absolute path, and the user database has no home for this user\n  hint: set {var} to a folder outside the workspace",
        var = state::STATE_DIR_VARIABLE
    )]
    NoStateDir,
    /// The state folder cannot be made or written.
    #[error(
        "cannot write the trust record in {}: {source}\n  hint: a run records what it may not change before it starts, so it does not start without it; make the folder writable, or choose another with {var}=<folder outside the workspace>",
        dir.display(), var = state::STATE_DIR_VARIABLE
    )]
    Unwritable {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state folder lies inside the workspace, where a run could forge the record.
    #[error(
        "the state folder {} lies inside the workspace {}, where a run could forge its own trust record\n  hint: choose a workspace that does not hold it, or set {var} to a folder outside the workspace",
        dir.display(), workspace.display(), var = state::STATE_DIR_VARIABLE
    )]
    InsideWorkspace {
        /// The state folder.
        dir: PathBuf,
        /// The workspace.
        workspace: PathBuf,
    },
    /// The record is not what we write.
    #[error(
        "the trust record {} is not readable: {message}\n  hint: look at it; remove it to start a new record (changes it listed are then forgotten)",
        path.display()
    )]
    Corrupt {
        /// The record.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// A file of the record could not be reached.
    #[error(transparent)]
    File(crate::files::FileError),
}

/// The refusal that lists the changes and says how to accept them.
fn pending(workspace: &Path, changes: &[Change]) -> String {
    let mut text = format!(
        "a run changed what runs in {} trust; nothing starts until you look:",
        workspace.display()
    );
    for change in changes {
        let what = inputs::Rule::from_name(&change.kind)
            .map(|rule| rule.describe())
            .unwrap_or("a trusted input");
        text.push_str(&format!(
            "\n  - {} ({what}) was {} while job {} ran (run {})",
            change.path.display(),
            change.verb(),
            change.job_id,
            change.run_id
        ));
    }
    text.push_str(&format!(
        "\n  hint: look at each file (e.g. `git diff -- <file>`: a run can plant a base URL, a skill or a variable there), undo what you did not make, then accept the rest: {}",
        accept_command(workspace)
    ));
    text
}
