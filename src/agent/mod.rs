//! The agent loop (PERSTACK-COMPAT.md §5): instruction + query → model → tool calls → results →
//! … until `attemptCompletion` or a final answer, with `maxSteps` enforced — and delegation,
//! interactive tools and continuation from a checkpoint.
//!
//! A *job* runs one coordinator Expert; each *run segment* (one `runId`) is announced by
//! `initializeRuntime` ([`initialize_runtime`]) and its skills' events ([`SegmentSkills`]),
//! emits `startRun` and ends with a stop or a completion. Each state of the loop emits exactly one event, in
//! Perstack's order:
//!
//! ```text
//! startRun
//! ┌─► startGeneration ─┬─► callTools ─┬─► resolveToolResults ─► finishToolCall ───────────────┐
//! │                    │              ├─► [attemptCompletion] ─► (attemptCompletion ─► final) ─► completeRun
//! │                    │              ├─► callDelegate ─► stopRunByDelegate   (children run; the parent resumes)
//! │                    │              └─► callInteractiveTool ─► stopRunByInteractiveTool
//! │                    ├─► completeRun                      (text without tool calls)
//! │                    ├─► retry                            (nothing usable generated) ───────┤
//! │                    └─► stopRunByError                                                      │
//! ├── resumeToolCalls ─► (pending calls, as after callTools)                                   │
//! ├── finishAllToolCalls ───────────────────────────────────────────────────────────────────────┤
//! └──────────── continueToNextStep ◄─┬──────────────────────────────────────────────────────────┘
//!                                    └─► stopRunByExceededMaxSteps (step = maxSteps)
//! ```
//!
//! Streaming events (`startStreamingReasoning` …) are emitted inside a generation as the
//! provider's deltas arrive (`stream.rs`). A generation that fails with a retryable error emits
//! `retry` (no new messages, no step spent) before each backoff.
//!
//! **Delegation.** Delegates are tools taking `{query}`. One delegate call runs its child
//! sequentially; two or more in one step run concurrently. A child is a fresh run (new
//! `runId`, its own context window, `delegatedBy` pointing at the parent's checkpoint) whose
//! events carry the child's `expertKey`. Its answer — the first text of its last expert
//! message — becomes the tool result (skill name `delegate/<key>`), and the parent resumes in a
//! new run segment. Steps are job-global: children go on from the parent's step, and the parent
//! resumes after the highest step a child reached. A sequential child that fails or runs out of
//! steps stops the parent the same way; a parallel child's failure becomes its tool result.

pub(crate) mod prompt;
mod segment;
mod stream;
pub(crate) mod tools;

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;
use indexmap::IndexMap;

use crate::config::Expert;
use crate::event::{
    Checkpoint, CheckpointStatus, DelegateTo, DelegatedBy, Event, InteractiveToolCall,
    InteractiveToolCallResult, MessageKind, Part, RunError, RunPayload, RuntimePayload, Step,
    ToolResult, Usage,
};
use crate::ids::{new_id, now_ms};
use crate::llm::Provider;
use segment::{Segment, SegmentEnd};
use tools::ToolSet;

/// The knobs of one run.
#[derive(Debug, Clone)]
pub(crate) struct RunSettings {
    /// Model id.
    pub model: String,
    /// Stop after this step (job-global).
    pub max_steps: u32,
    /// Retries per generation.
    pub max_retries: u32,
    /// Time limit of one generation.
    pub timeout: Duration,
    /// Reasoning budget in tokens; `None` is off.
    pub reasoning_budget: Option<u64>,
}

/// A request to stop the job at the next step boundary: the runtime's answer to the first
/// Ctrl-C. The step under way finishes and its checkpoint is emitted, so a continuation starts
/// from a complete step; no new step begins.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopRequest(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl StopRequest {
    /// Asks every run of the job to stop after its step under way.
    pub(crate) fn request(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub(crate) fn requested(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The `error.name` of the `stopRunByError` a stop request ends a run with.
pub(crate) const INTERRUPTED: &str = "Interrupted";

/// The `error.name` of the `stopRunByError` that ends a run whose model kept calling tools its
/// Expert lacks (docs/skills.md, "Calls to a tool the Expert lacks").
pub(crate) const TOOL_NOT_FOUND: &str = "ToolNotFound";

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunOutcome {
    /// `completeRun`, with the final text.
    Completed {
        /// The answer.
        text: String,
    },
    /// `stopRunByExceededMaxSteps`.
    StoppedByMaxSteps,
    /// `stopRunByInteractiveTool`: waiting for the user's answer (`-i`).
    StoppedByInteractiveTool,
    /// `stopRunByError`.
    StoppedByError(RunError),
}

/// Where a run starts.
// Built once per run segment and moved straight in; boxing the checkpoint would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Start {
    /// A new run on a query: a new job's coordinator, or a delegate's child run.
    Fresh {
        /// What the Expert is asked.
        query: String,
        /// The job-global step the run starts at.
        step_number: u32,
        /// Usage carried over (a sequential child continues its parent's).
        usage: Usage,
        /// The parent, for a child run.
        delegated_by: Option<DelegatedBy>,
    },
    /// A new run segment continuing a checkpoint (§5 `Init`): it is cloned with a new id, the
    /// next step number and this segment's run id.
    Resume {
        /// The checkpoint to continue.
        checkpoint: Checkpoint,
        /// What the continuation brings.
        input: ResumeInput,
    },
}

/// What a continued run brings (§5 `Init`).
#[derive(Debug, Clone)]
pub(crate) enum ResumeInput {
    /// A new user message (for a completed or stopped run), or nothing new for a run that was
    /// interrupted while its delegates worked (they run again).
    Query(String),
    /// The answer to one pending interactive tool call.
    Answer(InteractiveToolCallResult),
    /// Nothing: the delegates' results are already on the checkpoint.
    Continue,
}

/// Why a checkpoint cannot be continued the way it was asked to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ResumeError {
    /// The checkpoint belongs to another Expert.
    #[error(
        "the checkpoint is `{checkpoint}`'s, not `{expert}`'s; continue it with `{checkpoint}`"
    )]
    OtherExpert {
        /// The checkpoint's Expert.
        checkpoint: String,
        /// The Expert asked for.
        expert: String,
    },
    /// The run waits for an interactive answer but got a query.
    #[error(
        "the run is waiting for the answer to {}; continue it with -i and the answer",
        .0.join(", ")
    )]
    NeedsAnswer(Vec<String>),
    /// An answer for a call that is not pending.
    #[error("tool call `{tool_call_id}` is not pending (pending: {})", if .pending.is_empty() { "none".to_string() } else { .pending.join(", ") })]
    NotPending {
        /// The answered call.
        tool_call_id: String,
        /// What is pending.
        pending: Vec<String>,
    },
    /// An answer, but the run is not waiting for one.
    #[error(
        "the run is not waiting for a tool call answer (its status is {0:?}); continue it with a query instead of -i"
    )]
    NotWaiting(CheckpointStatus),
    /// A continuation of a finished run without a query.
    #[error("continuing this run needs a query: what should the Expert do next?")]
    NeedsQuery,
    /// The Expert is not part of this runtime's closure.
    #[error("expert `{0}` is not known to this runtime")]
    UnknownExpert(String),
}

/// The `initializeRuntime` that announces run segment `run_id` of `expert`: Perstack emits one
/// per segment (PERSTACK-COMPAT.md §3), carrying what the segment starts with — a query, or the
/// answer to an interactive tool call; a parent resuming with its delegates' results has neither.
pub(crate) fn initialize_runtime(
    job_id: &str,
    run_id: &str,
    expert: &Expert,
    experts: &IndexMap<String, Expert>,
    settings: &RunSettings,
    start: &Start,
) -> Event {
    let (query, answer) = match start {
        Start::Fresh { query, .. }
        | Start::Resume {
            input: ResumeInput::Query(query),
            ..
        } => (Some(query.clone()), None),
        Start::Resume {
            input: ResumeInput::Answer(answer),
            checkpoint,
        } => {
            // An answer given as plain text has no skill name; the pending call it answers has.
            let skill_name = match answer.skill_name.as_str() {
                "" => checkpoint
                    .pending_tool_calls
                    .iter()
                    .flatten()
                    .find(|c| c.id == answer.tool_call_id)
                    .map(|c| c.skill_name.clone())
                    .unwrap_or_default(),
                named => named.to_string(),
            };
            (
                None,
                Some(InteractiveToolCall {
                    tool_name: answer.tool_name.clone(),
                    tool_call_id: answer.tool_call_id.clone(),
                    skill_name: Some(skill_name),
                    text: answer.text.clone(),
                }),
            )
        }
        Start::Resume {
            input: ResumeInput::Continue,
            ..
        } => (None, None),
    };
    Event::runtime(
        job_id,
        run_id,
        RuntimePayload::InitializeRuntime {
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime: Some("docker".to_string()),
            expert_name: expert.name.clone(),
            experts: experts.keys().cloned().collect(),
            model: settings.model.clone(),
            max_steps: Some(settings.max_steps),
            max_retries: settings.max_retries,
            timeout: u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX),
            query,
            interactive_tool_call: answer,
        },
    )
}

/// Tells which skills a run segment holds: the `skillStarting`, `skillConnected` and
/// `skillDisconnected` events under its `runId` (docs/skills.md, "Events"), so a consumer knows
/// whose skill connected. The runtime's `SkillRoster` implements it over connections that live
/// for the whole job.
pub(crate) trait SegmentSkills: Send + Sync {
    /// Segment `run_id` of `expert_key` begins: right after its `initializeRuntime`.
    fn begin(&self, expert_key: &str, run_id: &str);
    /// Segment `run_id` of `expert_key` has ended: right after its last event.
    fn end(&self, expert_key: &str, run_id: &str);
}

/// One job: the coordinator's runs and its delegates', sharing a provider, the tools of every
/// Expert of the closure, the event sink and the settings.
pub(crate) struct Job<'a> {
    /// The model client.
    pub provider: &'a Provider,
    /// Every Expert of the delegation closure, by key.
    pub experts: &'a IndexMap<String, Expert>,
    /// Each Expert's tools (its skills, interactive tools and delegates), by key.
    pub tools: &'a HashMap<String, ToolSet>,
    /// Told when each segment begins and ends, for its skill events.
    pub skills: &'a dyn SegmentSkills,
    /// Where events go.
    pub sink: &'a EventSink,
    /// Limits and model.
    pub settings: &'a RunSettings,
    /// The job.
    pub job_id: &'a str,
    /// Set when the job should stop at the next step boundary.
    pub stop: &'a StopRequest,
}

use crate::event::EventSink;

impl<'a> Job<'a> {
    /// Runs `expert_key` from `start` in run segment `run_id` (and, with delegation, the
    /// segments after it) until it completes or stops. The first segment's `initializeRuntime`
    /// and [`SegmentSkills::begin`] are the caller's (they come before the skills connect);
    /// every later segment's are done here, and every segment's end.
    pub(crate) async fn run(
        &'a self,
        expert_key: &str,
        run_id: &str,
        start: Start,
    ) -> Result<RunOutcome, ResumeError> {
        self.run_expert(expert_key.to_string(), run_id.to_string(), start, false)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// One Expert's run through all its segments. Boxed: a child run is a nested call.
    fn run_expert(
        &'a self,
        expert_key: String,
        run_id: String,
        start: Start,
        announce: bool,
    ) -> BoxFuture<'a, Result<(RunOutcome, Checkpoint), ResumeError>> {
        Box::pin(async move {
            let (expert, tools) = match (self.experts.get(&expert_key), self.tools.get(&expert_key))
            {
                (Some(expert), Some(tools)) => (expert, tools),
                _ => return Err(ResumeError::UnknownExpert(expert_key)),
            };
            let mut run_id = run_id;
            if announce {
                self.announce(expert, &run_id, &start);
            }
            let (mut segment, mut input) = self.started(
                expert,
                &run_id,
                Segment::start(self, expert, tools, run_id.clone(), start),
            )?;
            loop {
                let end = segment.drive(input.take()).await;
                self.skills.end(&expert.key, &run_id);
                let checkpoint = match end {
                    SegmentEnd::Finished(outcome, checkpoint) => return Ok((outcome, checkpoint)),
                    SegmentEnd::Delegated(checkpoint) => checkpoint,
                };
                let resumed = match self.delegate(checkpoint).await? {
                    Ok(resumed) => resumed,
                    Err(stopped) => return Ok(stopped),
                };
                run_id = new_id();
                let start = Start::Resume {
                    checkpoint: resumed,
                    input: ResumeInput::Continue,
                };
                self.announce(expert, &run_id, &start);
                (segment, input) = self.started(
                    expert,
                    &run_id,
                    Segment::start(self, expert, tools, run_id.clone(), start),
                )?;
            }
        })
    }

    /// Emits the `initializeRuntime` of a segment and begins its skills.
    fn announce(&self, expert: &Expert, run_id: &str, start: &Start) {
        self.sink.emit(initialize_runtime(
            self.job_id,
            run_id,
            expert,
            self.experts,
            self.settings,
            start,
        ));
        self.skills.begin(&expert.key, run_id);
    }

    /// A segment that could not start has ended before its first event.
    fn started<T>(
        &self,
        expert: &Expert,
        run_id: &str,
        started: Result<T, ResumeError>,
    ) -> Result<T, ResumeError> {
        if started.is_err() {
            self.skills.end(&expert.key, run_id);
        }
        started
    }

    /// Runs the children a `stopRunByDelegate` checkpoint waits on. Returns the checkpoint to
    /// resume the parent from (results added, delegates no longer pending), or — when a
    /// sequential child did not complete — the parent's own stop.
    async fn delegate(
        &'a self,
        parent: Checkpoint,
    ) -> Result<Result<Checkpoint, (RunOutcome, Checkpoint)>, ResumeError> {
        let delegations = parent.delegate_to.clone().unwrap_or_default();
        let sequential = delegations.len() == 1;
        let finished = self.run_children(&parent, &delegations).await;
        let mut last_step = parent.step_number;
        // A single child continued the parent's usage; parallel ones are summed onto it.
        let mut usage = if sequential {
            Usage::default()
        } else {
            parent.usage
        };
        let mut results = Vec::new();
        for (delegation, child) in delegations.iter().zip(finished) {
            let (outcome, checkpoint) = child?;
            last_step = last_step.max(checkpoint.step_number);
            usage = usage + checkpoint.usage;
            if sequential && !matches!(outcome, RunOutcome::Completed { .. }) {
                let mut stopped = parent.clone();
                stopped.step_number = checkpoint.step_number;
                stopped.usage = checkpoint.usage;
                return Ok(Err(self.stop_parent(
                    stopped,
                    &delegation.expert.key,
                    outcome,
                )));
            }
            results.push(delegate_result(delegation, &outcome, &checkpoint));
        }
        Ok(Ok(resume_after_delegates(
            parent,
            &delegations,
            results,
            last_step,
            usage,
        )))
    }

    /// Runs a child run for each of `delegations` at once, each delegated by `parent`, to their
    /// ends.
    async fn run_children(
        &'a self,
        parent: &Checkpoint,
        delegations: &[DelegateTo],
    ) -> Vec<Result<(RunOutcome, Checkpoint), ResumeError>> {
        let children = delegations.iter().map(|d| {
            let delegated_by = DelegatedBy {
                expert: parent.expert.clone(),
                tool_call_id: d.tool_call_id.clone(),
                tool_name: d.tool_name.clone(),
                checkpoint_id: parent.id.clone(),
                run_id: parent.run_id.clone(),
            };
            // A single child continues the parent's usage; parallel ones count from zero and
            // are summed afterwards.
            let usage = if delegations.len() == 1 {
                parent.usage
            } else {
                Usage::default()
            };
            self.run_expert(
                d.expert.key.clone(),
                new_id(),
                Start::Fresh {
                    query: d.query.clone(),
                    step_number: parent.step_number + 1,
                    usage,
                    delegated_by: Some(delegated_by),
                },
                true,
            )
        });
        futures::future::join_all(children).await
    }

    /// A sequential child ended without an answer: the parent stops the same way, so the
    /// coordinator always reports how the job ended.
    fn stop_parent(
        &self,
        mut checkpoint: Checkpoint,
        child: &str,
        outcome: RunOutcome,
    ) -> (RunOutcome, Checkpoint) {
        let step = Step {
            step_number: checkpoint.step_number,
            input_messages: None,
            new_messages: vec![],
            tool_calls: None,
            tool_results: None,
            pending_tool_calls: None,
            partial_tool_results: None,
            usage: Usage::default(),
            started_at: now_ms(),
            finished_at: Some(now_ms()),
        };
        let (payload, outcome) = match outcome {
            RunOutcome::StoppedByMaxSteps => {
                checkpoint.status = CheckpointStatus::StoppedByExceededMaxSteps;
                (
                    RunPayload::StopRunByExceededMaxSteps {
                        checkpoint: checkpoint.clone(),
                        step,
                    },
                    RunOutcome::StoppedByMaxSteps,
                )
            }
            other => {
                let error = match other {
                    RunOutcome::StoppedByError(error) => RunError {
                        message: format!("delegate `{child}` failed: {}", error.message),
                        ..error
                    },
                    _ => RunError {
                        name: "DelegateError".into(),
                        message: format!("delegate `{child}` stopped without an answer"),
                        status_code: None,
                        is_retryable: false,
                    },
                };
                checkpoint.status = CheckpointStatus::StoppedByError;
                (
                    RunPayload::StopRunByError {
                        checkpoint: checkpoint.clone(),
                        step,
                        error: error.clone(),
                    },
                    RunOutcome::StoppedByError(error),
                )
            }
        };
        self.sink.emit(Event::run(
            self.job_id,
            &checkpoint.run_id,
            &checkpoint.expert.key,
            checkpoint.step_number,
            payload,
        ));
        if let RunOutcome::StoppedByError(error) = &outcome {
            checkpoint.error = Some(error.clone());
        }
        (outcome, checkpoint)
    }
}

/// The first text of a run's last expert message (a delegate's answer).
fn last_text(checkpoint: &Checkpoint) -> Option<String> {
    checkpoint
        .messages
        .iter()
        .rev()
        .find(|m| m.kind == MessageKind::ExpertMessage)
        .and_then(|m| m.contents.iter().find_map(Part::as_text))
        .map(str::to_string)
}

/// The tool result a delegate's run gives its parent: its answer; when it stopped without
/// one, its last text or (failed) what went wrong.
fn delegate_result(
    delegation: &DelegateTo,
    outcome: &RunOutcome,
    checkpoint: &Checkpoint,
) -> ToolResult {
    let text = match outcome {
        RunOutcome::Completed { text } => text.clone(),
        RunOutcome::StoppedByError(error) => last_text(checkpoint).unwrap_or_else(|| {
            format!(
                "Error: delegate `{}` failed: {}",
                delegation.expert.key, error.message
            )
        }),
        _ => last_text(checkpoint).unwrap_or_default(),
    };
    ToolResult {
        id: delegation.tool_call_id.clone(),
        skill_name: format!("delegate/{}", delegation.expert.key),
        tool_name: delegation.tool_name.clone(),
        result: vec![Part::text(text)],
    }
}

/// The checkpoint the parent resumes from: the delegates' `results` added, their calls no
/// longer pending, at the children's last step and with their usage.
fn resume_after_delegates(
    mut resumed: Checkpoint,
    delegations: &[DelegateTo],
    results: Vec<ToolResult>,
    last_step: u32,
    usage: Usage,
) -> Checkpoint {
    let done: Vec<&str> = delegations
        .iter()
        .map(|d| d.tool_call_id.as_str())
        .collect();
    if let Some(pending) = resumed.pending_tool_calls.as_mut() {
        pending.retain(|c| !done.contains(&c.id.as_str()));
    }
    resumed
        .partial_tool_results
        .get_or_insert_with(Vec::new)
        .extend(results);
    resumed.step_number = last_step;
    resumed.usage = usage;
    resumed.delegate_to = None;
    resumed
}

#[cfg(test)]
mod tests;
