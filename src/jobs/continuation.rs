//! Which stored checkpoint a continued run starts from, and what it is asked
//! (PERSTACK-COMPAT.md §2 "Continuation", §5 "Init").
//!
//! - `--continue-job J --resume-from C`: checkpoint C of job J.
//! - `--continue-job J`: J's highest-step checkpoint of its coordinator (delegates' checkpoints
//!   are never resumed on their own).
//! - `--continue`: the same, for the job of the most recently updated run in this workspace.
//!
//! The checkpoint must belong to the Expert being run. Its status decides the input: a run
//! stopped by an interactive tool needs the answer (`-i`); a run interrupted while its delegates
//! worked runs them again; any other needs a query, which becomes a new user message.

use std::collections::BTreeMap;

use serde_json::Value;

use super::JobsError;
use super::store::{JobStore, StoredCheckpoint};
use crate::event::{Checkpoint, CheckpointStatus, InteractiveToolCallResult, MessageKind, Part};

/// What the user asked to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContinueFrom {
    /// `--continue`.
    LatestJob,
    /// `--continue-job <job>` with an optional `--resume-from <checkpoint>`.
    Job {
        /// The job.
        job_id: String,
        /// The checkpoint, when given.
        checkpoint_id: Option<String>,
    },
}

/// A combination of continuation flags that makes no sense, in the words `run`, `start` and a
/// standalone image's entrypoint all print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContinueFlagsError {
    /// `--resume-from` without `--continue-job`.
    #[error("--resume-from requires --continue-job")]
    ResumeFromWithoutJob,
    /// `-i` without a run to continue.
    #[error(
        "-i/--interactive-tool-call-result requires --continue or --continue-job\n  hint: -i answers the pending tool call of a stopped run; say which run to continue"
    )]
    AnswerWithoutContinue,
}

impl ContinueFrom {
    /// What `--continue` (`latest`), `--continue-job`, `--resume-from` and `-i` (`answer`) ask
    /// for, the same for `run`, `start` and a standalone image's entrypoint.
    pub(crate) fn from_flags(
        continue_job: Option<&str>,
        latest: bool,
        resume_from: Option<&str>,
        answer: bool,
    ) -> Result<Option<ContinueFrom>, ContinueFlagsError> {
        if resume_from.is_some() && continue_job.is_none() {
            return Err(ContinueFlagsError::ResumeFromWithoutJob);
        }
        let from = match (continue_job, latest) {
            (Some(job_id), _) => Some(ContinueFrom::Job {
                job_id: job_id.to_string(),
                checkpoint_id: resume_from.map(str::to_string),
            }),
            (None, true) => Some(ContinueFrom::LatestJob),
            (None, false) => None,
        };
        if answer && from.is_none() {
            return Err(ContinueFlagsError::AnswerWithoutContinue);
        }
        Ok(from)
    }
}

/// Finds the checkpoint to continue from and checks it belongs to `expert_key`.
pub(crate) fn select_checkpoint(
    store: &JobStore,
    from: &ContinueFrom,
    expert_key: &str,
) -> Result<StoredCheckpoint, JobsError> {
    let stored = match from {
        ContinueFrom::Job {
            job_id,
            checkpoint_id: Some(checkpoint_id),
        } => store.read_checkpoint(job_id, checkpoint_id)?,
        ContinueFrom::Job {
            job_id,
            checkpoint_id: None,
        } => latest_of_coordinator(store, job_id, expert_key)?.ok_or_else(|| {
            JobsError::NoCheckpoint {
                hint: format!(
                    "job `{job_id}` has no checkpoint of its coordinator in {}",
                    store.root().display()
                ),
            }
        })?,
        ContinueFrom::LatestJob => {
            let Some(run) = store.all_runs()?.into_iter().next() else {
                return Err(JobsError::NoCheckpoint {
                    hint: format!(
                        "no run has been stored in {} yet; start one without --continue",
                        store.root().display()
                    ),
                });
            };
            latest_of_coordinator(store, &run.job_id, expert_key)?.ok_or_else(|| {
                JobsError::NoCheckpoint {
                    hint: format!(
                        "the latest job, `{}`, has no checkpoint of its coordinator yet",
                        run.job_id
                    ),
                }
            })?
        }
    };
    if stored.checkpoint.expert.key != expert_key {
        return Err(JobsError::ExpertMismatch {
            checkpoint_id: stored.checkpoint.id.clone(),
            found: stored.checkpoint.expert.key.clone(),
            wanted: expert_key.to_string(),
        });
    }
    Ok(stored)
}

/// The highest-step checkpoint of a job's coordinator: the key in `job.json`, or — for a job
/// without one — the Expert being run.
fn latest_of_coordinator(
    store: &JobStore,
    job_id: &str,
    expert_key: &str,
) -> Result<Option<StoredCheckpoint>, JobsError> {
    let coordinator = match store.read_job(job_id) {
        Ok(Some(job)) => job.coordinator_expert_key,
        Ok(None) => expert_key.to_string(),
        Err(error @ JobsError::BadId { .. }) => return Err(error),
        Err(error) => {
            eprintln!("warning: {error}; taking `{expert_key}` as the job's coordinator");
            expert_key.to_string()
        }
    };
    Ok(store
        .checkpoints(job_id)?
        .into_iter()
        .rfind(|c| c.checkpoint.expert.key == coordinator))
}

/// Checks that the input fits the checkpoint (§5 `Init`), as the runtime will:
/// - a run stopped by an interactive tool needs its answer (`-i`);
/// - `-i` needs a run that waits for an answer (stopped by an interactive tool, or interrupted
///   while its delegates worked);
/// - otherwise the query becomes a new message, so it must not be blank — except for a run
///   interrupted while its delegates worked, whose delegates simply run again.
pub(crate) fn check_input(
    checkpoint: &Checkpoint,
    interactive: bool,
    query: &str,
) -> Result<(), JobsError> {
    let status = checkpoint.status;
    let waits_for_delegates = status == CheckpointStatus::StoppedByDelegate;
    let waits_for_user = status == CheckpointStatus::StoppedByInteractiveTool;
    if waits_for_user && !interactive {
        return Err(JobsError::AnswerNeeded {
            checkpoint_id: checkpoint.id.clone(),
            tool: checkpoint
                .pending_tool_calls
                .iter()
                .flatten()
                .next()
                .map(|c| c.tool_name.clone())
                .or_else(|| first_tool_call(checkpoint).map(|(_, name)| name))
                .unwrap_or_else(|| "a tool".to_string()),
        });
    }
    if interactive && !(waits_for_user || waits_for_delegates) {
        return Err(JobsError::NothingToAnswer {
            checkpoint_id: checkpoint.id.clone(),
            status: serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        });
    }
    if !interactive && !waits_for_delegates && query.trim().is_empty() {
        return Err(JobsError::QueryNeeded {
            checkpoint_id: checkpoint.id.clone(),
        });
    }
    Ok(())
}

/// The `-i` answer: the query itself when it is the JSON object
/// `{toolCallId, toolName, skillName, text}`; otherwise the query is the text, answering the
/// checkpoint's first pending call — or, on a checkpoint that lists none, the first tool call of
/// its last expert message. (Perstack takes that first tool call even when it is an MCP call
/// answered already, which happens whenever one step mixes MCP and interactive calls.)
pub(crate) fn interactive_answer(
    checkpoint: &Checkpoint,
    query: &str,
) -> Result<InteractiveToolCallResult, JobsError> {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(query)
        && let Ok(answer) = serde_json::from_value(Value::Object(map))
    {
        return Ok(answer);
    }
    if let Some(call) = checkpoint.pending_tool_calls.iter().flatten().next() {
        return Ok(InteractiveToolCallResult {
            tool_call_id: call.id.clone(),
            tool_name: call.tool_name.clone(),
            skill_name: call.skill_name.clone(),
            text: query.to_string(),
        });
    }
    let (tool_call_id, tool_name) =
        first_tool_call(checkpoint).ok_or_else(|| JobsError::NoPendingCall {
            checkpoint_id: checkpoint.id.clone(),
        })?;
    let skill_name = String::new();
    Ok(InteractiveToolCallResult {
        tool_call_id,
        tool_name,
        skill_name,
        text: query.to_string(),
    })
}

/// `(toolCallId, toolName)` of the first tool call in the checkpoint's last expert message.
fn first_tool_call(checkpoint: &Checkpoint) -> Option<(String, String)> {
    checkpoint
        .messages
        .iter()
        .rfind(|m| m.kind == MessageKind::ExpertMessage)?
        .contents
        .iter()
        .find_map(|part| match part {
            Part::ToolCallPart {
                tool_call_id,
                tool_name,
                ..
            } => Some((tool_call_id.clone(), tool_name.clone())),
            _ => None,
        })
}

/// The turns each delegate had played in the job by the time of `from` (a coordinator's
/// checkpoint), for the scripted `mock` provider: a delegate called again in a continued job
/// plays its next turn, not its first. A delegate run counts when it completed at or before
/// `from`'s step (its steps follow its parent's); a run the continuation does again — one cut
/// off, or one after `from` — is not counted, so it replays. The coordinator's own turns are the
/// expert messages of `from` itself, which the runtime counts.
pub(crate) fn delegate_turns_played(
    checkpoints: &[StoredCheckpoint],
    from: &Checkpoint,
) -> BTreeMap<String, usize> {
    let mut runs: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    for stored in checkpoints {
        let c = &stored.checkpoint;
        if c.expert.key == from.expert.key
            || c.status != CheckpointStatus::Completed
            || c.step_number > from.step_number
        {
            continue;
        }
        let played = c
            .messages
            .iter()
            .filter(|m| m.kind == MessageKind::ExpertMessage)
            .count();
        let run = runs.entry(&c.run_id).or_insert((&c.expert.key, 0));
        run.1 = run.1.max(played);
    }
    let mut played: BTreeMap<String, usize> = BTreeMap::new();
    for (expert, turns) in runs.into_values() {
        *played.entry(expert.to_string()).or_default() += turns;
    }
    played
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_flags_name_one_run_or_are_refused() {
        assert_eq!(ContinueFrom::from_flags(None, false, None, false), Ok(None));
        assert_eq!(
            ContinueFrom::from_flags(None, true, None, true),
            Ok(Some(ContinueFrom::LatestJob))
        );
        assert_eq!(
            ContinueFrom::from_flags(Some("j"), true, Some("c"), false),
            Ok(Some(ContinueFrom::Job {
                job_id: "j".into(),
                checkpoint_id: Some("c".into()),
            }))
        );
        assert_eq!(
            ContinueFrom::from_flags(None, true, Some("c"), false),
            Err(ContinueFlagsError::ResumeFromWithoutJob)
        );
        assert_eq!(
            ContinueFrom::from_flags(None, false, None, true),
            Err(ContinueFlagsError::AnswerWithoutContinue)
        );
    }
}
