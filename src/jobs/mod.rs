//! Jobs and checkpoints on the host (PERSTACK-COMPAT.md §4): the controller stores every run it
//! relays under `<workspace>/perstack/jobs/<jobId>/`, and continues a job by handing a stored
//! checkpoint to a fresh runtime container (`--continue`, `--continue-job`, `--resume-from`,
//! `-i`).
//!
//! - [`store`]: the files and their layout; listing; reached without following links, written
//!   atomically (`files::beneath`).
//! - [`job`]: `job.json`. [`run_setting`]: `run-setting.json`, secrets redacted, its Experts
//!   in the shape Perstack's runtime holds them ([`setting_expert`]).
//! - [`recorder`]: storing a run while its events are relayed.
//! - [`continuation`]: which checkpoint a continued run starts from, and its input.

pub(crate) mod continuation;
pub(crate) mod job;
pub(crate) mod recorder;
pub(crate) mod run_setting;
pub(crate) mod setting_expert;
pub(crate) mod store;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub(crate) use continuation::{
    ContinueFlagsError, ContinueFrom, check_input, delegate_turns_played, interactive_answer,
    select_checkpoint,
};
pub(crate) use job::Job;
pub(crate) use recorder::Recorder;
pub(crate) use run_setting::{RunInput, RunSetting, RunSettingSource};
pub(crate) use store::JobStore;

/// What can go wrong storing or finding jobs and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// A file or folder could not be reached beneath the workspace: a link on the way, the wrong
    /// kind of file, or the system refused.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored file is not what it should be.
    #[error("{}: not readable: {message}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// An id that cannot be a file name.
    #[error(
        "`{id}` is not a valid {kind} id (letters, digits, `_`, `-` and `.`, not starting with `.`)"
    )]
    BadId {
        /// job, run, checkpoint, event type.
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// Nothing to continue from.
    #[error("No checkpoint found\n  hint: {hint}")]
    NoCheckpoint {
        /// Where we looked and what to do.
        hint: String,
    },
    /// `--resume-from` names a checkpoint the job does not have.
    #[error(
        "No checkpoint found: job `{job_id}` has no checkpoint `{checkpoint_id}`\n  hint: {}",
        if known.is_empty() { "the job has no checkpoints at all".to_string() } else { format!("its checkpoints, by step: {}", known.join(", ")) }
    )]
    CheckpointNotFound {
        /// The job.
        job_id: String,
        /// The checkpoint asked for.
        checkpoint_id: String,
        /// The job's checkpoints, by step.
        known: Vec<String>,
    },
    /// The checkpoint is another Expert's.
    #[error(
        "checkpoint `{checkpoint_id}` belongs to Expert `{found}`, not `{wanted}`\n  hint: run `{found}` to continue it"
    )]
    ExpertMismatch {
        /// The checkpoint.
        checkpoint_id: String,
        /// Its Expert.
        found: String,
        /// The Expert given on the command line.
        wanted: String,
    },
    /// The checkpoint waits for a tool's answer but none was given.
    #[error(
        "checkpoint `{checkpoint_id}` waits for the answer to `{tool}`\n  hint: pass the answer as the query with -i/--interactive-tool-call-result"
    )]
    AnswerNeeded {
        /// The checkpoint.
        checkpoint_id: String,
        /// The pending tool.
        tool: String,
    },
    /// `-i` was given but the checkpoint waits for no answer.
    #[error(
        "-i/--interactive-tool-call-result answers a pending tool call, but checkpoint `{checkpoint_id}` has status `{status}`\n  hint: continue without -i; the query becomes a new message"
    )]
    NothingToAnswer {
        /// The checkpoint.
        checkpoint_id: String,
        /// Its status.
        status: String,
    },
    /// A continuation that needs a query got a blank one.
    #[error(
        "continuing from checkpoint `{checkpoint_id}` needs a query: what should the Expert do next?"
    )]
    QueryNeeded {
        /// The checkpoint.
        checkpoint_id: String,
    },
    /// `-i` with a plain-text answer, but the checkpoint has no tool call to answer.
    #[error(
        "checkpoint `{checkpoint_id}` has no tool call to answer\n  hint: give the answer as JSON: {{\"toolCallId\",\"toolName\",\"skillName\",\"text\"}}"
    )]
    NoPendingCall {
        /// The checkpoint.
        checkpoint_id: String,
    },
}
