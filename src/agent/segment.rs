//! One run segment of one Expert: the §5 state machine from `startRun` to a stop, a completion,
//! or a hand-over to its delegates.
//!
//! Each state emits exactly one event and then updates the checkpoint, so the checkpoint an
//! event carries is always the state the run can be continued from.

use serde_json::{Value, json};

use super::stream::StreamRelay;
use super::tools::{NO_SKILL, ToolKind, ToolSet};
use super::{Job, ResumeError, ResumeInput, RunOutcome, Start, TOOL_NOT_FOUND, prompt};
use crate::config::{BASE_SKILL_NAME, Expert};
use crate::event::{
    Checkpoint, CheckpointStatus, DelegateTo, Event, ExpertRef, Message, MessageKind, Part,
    RunError, RunPayload, Step, ToolCall, ToolResult, Usage,
};
use crate::ids::{new_id, now_ms};
use crate::llm::{
    FinishReason, GenerateRequest, GeneratedPart, Generation, LlmError, RetryPolicy, ToolSpec,
    models,
};
use crate::skill::result::ToolOutput;

/// How a segment ended.
pub(super) enum SegmentEnd {
    /// The run is over (completed or stopped); its last checkpoint.
    Finished(RunOutcome, Checkpoint),
    /// The run waits for its delegates (`stopRunByDelegate`); the checkpoint to resume.
    Delegated(Checkpoint),
}

/// What a step decided.
enum StepEnd {
    /// Go on to the next step (or stop at `maxSteps`).
    Continue(Step),
    /// The run is over.
    Finished(RunOutcome),
    /// The run waits for its delegates.
    Delegated,
}

/// The state carried from step to step.
pub(super) struct Segment<'a> {
    job: &'a Job<'a>,
    expert: &'a Expert,
    tools: &'a ToolSet,
    run_id: String,
    checkpoint: Checkpoint,
    retry_count: u32,
    /// Interactive tools are offered (not in delegated runs).
    interactive: bool,
}

impl<'a> Segment<'a> {
    /// `Init` (§5): builds the segment's first checkpoint from `start`, emits `startRun`, and
    /// returns the messages the first step starts from.
    pub(super) fn start(
        job: &'a Job<'a>,
        expert: &'a Expert,
        tools: &'a ToolSet,
        run_id: String,
        start: Start,
    ) -> Result<(Segment<'a>, Option<Vec<Message>>), ResumeError> {
        let (initial, input) = match start {
            Start::Fresh {
                query,
                step_number,
                usage,
                delegated_by,
            } => {
                let context_window = models::lookup(&job.settings.model).map(|m| m.context_window);
                let checkpoint = Checkpoint {
                    id: new_id(),
                    job_id: job.job_id.to_string(),
                    run_id: run_id.clone(),
                    status: CheckpointStatus::Init,
                    step_number,
                    messages: vec![],
                    expert: expert_ref(expert),
                    delegate_to: None,
                    delegated_by,
                    usage,
                    context_window,
                    context_window_usage: context_window.map(|_| 0.0),
                    pending_tool_calls: None,
                    partial_tool_results: None,
                    metadata: Some(json!({"runtime": "docker"})),
                    error: None,
                    retry_count: Some(0),
                };
                let input = vec![instruction_message(job, expert), user_message(&query)];
                (checkpoint, input)
            }
            Start::Resume { checkpoint, input } => {
                if checkpoint.expert.key != expert.key {
                    return Err(ResumeError::OtherExpert {
                        checkpoint: checkpoint.expert.key,
                        expert: expert.key.clone(),
                    });
                }
                let mut resumed = Checkpoint {
                    id: new_id(),
                    job_id: job.job_id.to_string(),
                    run_id: run_id.clone(),
                    step_number: checkpoint.step_number + 1,
                    ..checkpoint
                };
                let input = resume_input(job, expert, &mut resumed, input)?;
                (resumed, input)
            }
        };
        let mut segment = Segment {
            job,
            expert,
            tools,
            run_id,
            retry_count: initial.retry_count.unwrap_or(0),
            interactive: initial.delegated_by.is_none(),
            checkpoint: initial.clone(),
        };
        segment.emit(RunPayload::StartRun {
            initial_checkpoint: initial,
            input_messages: input.clone(),
        });
        segment.checkpoint.messages.extend(input.iter().cloned());
        segment.checkpoint.status = CheckpointStatus::Proceeding;
        segment.checkpoint.delegate_to = None;
        segment.checkpoint.error = None;
        let first_input = (!input.is_empty()).then_some(input);
        Ok((segment, first_input))
    }

    /// Runs steps until the segment ends.
    pub(super) async fn drive(mut self, mut input_messages: Option<Vec<Message>>) -> SegmentEnd {
        loop {
            let step = self.new_step(input_messages.take());
            let pending = self
                .checkpoint
                .pending_tool_calls
                .take()
                .unwrap_or_default();
            let end = if !pending.is_empty() {
                self.resume_tool_calls(step, pending).await
            } else if self
                .checkpoint
                .partial_tool_results
                .as_ref()
                .is_some_and(|p| !p.is_empty())
            {
                self.finish_all_tool_calls(step)
            } else {
                self.generate_step(step).await
            };
            match end {
                StepEnd::Continue(step) => {
                    if let Some(outcome) = self.finish_step(step) {
                        return SegmentEnd::Finished(outcome, self.checkpoint);
                    }
                }
                StepEnd::Finished(outcome) => {
                    return SegmentEnd::Finished(outcome, self.checkpoint);
                }
                StepEnd::Delegated => return SegmentEnd::Delegated(self.checkpoint),
            }
        }
    }

    fn emit(&self, payload: RunPayload) {
        self.job.sink.emit(Event::run(
            self.job.job_id,
            &self.run_id,
            &self.expert.key,
            self.checkpoint.step_number,
            payload,
        ));
    }

    fn new_step(&self, input_messages: Option<Vec<Message>>) -> Step {
        Step {
            step_number: self.checkpoint.step_number,
            input_messages,
            new_messages: vec![],
            tool_calls: None,
            tool_results: None,
            pending_tool_calls: None,
            partial_tool_results: None,
            usage: Usage::default(),
            started_at: now_ms(),
            finished_at: None,
        }
    }

    fn add_usage(&mut self, step: &mut Step, usage: Usage) {
        step.usage = step.usage + usage;
        self.checkpoint.usage = self.checkpoint.usage + usage;
        if let Some(window) = self.checkpoint.context_window.filter(|w| *w > 0) {
            let used = usage.input_tokens + usage.cached_input_tokens + usage.output_tokens;
            self.checkpoint.context_window_usage = Some(used as f64 / window as f64);
        }
    }

    fn push(&mut self, step: &mut Step, message: Message) {
        self.checkpoint.messages.push(message.clone());
        step.new_messages.push(message);
    }

    /// `GeneratingToolCall`: one generation and whatever it asks for.
    async fn generate_step(&mut self, mut step: Step) -> StepEnd {
        // `lazyInit` skills connect in the background; the first listing waits for them.
        if let Err(error) = self.tools.ready().await {
            let error = LlmError::fatal("SkillError", error.to_string());
            return StepEnd::Finished(self.stop_by_error(step, (error, 0)));
        }
        self.emit(RunPayload::StartGeneration {
            messages: self.checkpoint.messages.clone(),
        });
        let specs = self.tools.specs(self.interactive);
        let generation = match self.generate(&specs, false).await {
            Ok(generation) => generation,
            Err(error) => return StepEnd::Finished(self.stop_by_error(step, error)),
        };
        self.add_usage(&mut step, generation.usage);
        let text = generation.text();
        let calls = self.sorted_calls(&generation);

        if calls.is_empty() {
            if text.trim().is_empty() || generation.finish_reason == FinishReason::Length {
                return self.retry(step, &generation);
            }
            self.generated();
            self.push(&mut step, expert_message(&generation, &calls));
            return StepEnd::Finished(self.complete(step, text, generation.usage));
        }

        if let Some(outcome) = self.count_unknown_calls(&calls) {
            return StepEnd::Finished(self.stop_by_error(step, (outcome, 0)));
        }
        let message = expert_message(&generation, &calls);
        self.push(&mut step, message.clone());
        step.tool_calls = Some(calls.clone());

        self.emit(RunPayload::CallTools {
            new_message: message.clone(),
            tool_calls: calls.clone(),
            usage: generation.usage,
        });
        if let Some(completion) = calls.iter().find(|c| is_attempt_completion(c)) {
            return self
                .attempt_completion(step, &calls, completion, &text)
                .await;
        }
        self.call_tools(step, calls, message, generation.usage, true)
            .await
    }

    /// A generation the run can use: the count of failed ones in a row starts again.
    fn generated(&mut self) {
        self.retry_count = 0;
        self.checkpoint.retry_count = Some(0);
    }

    /// Calls to tools the Expert lacks are answered with an error, so the model can correct
    /// itself (docs/skills.md, "Calls to a tool the Expert lacks"). A generation whose every
    /// call is to such a tool is unusable like an empty one and spends a retry; past
    /// `maxRetries` the run stops with `Tool X not found`, as Perstack's does at once. Returns
    /// that stop's error.
    fn count_unknown_calls(&mut self, calls: &[ToolCall]) -> Option<LlmError> {
        let unknown: Vec<&ToolCall> = calls.iter().filter(|c| self.kind(c).is_none()).collect();
        if unknown.len() < calls.len() {
            self.generated();
            return None;
        }
        self.retry_count += 1;
        self.checkpoint.retry_count = Some(self.retry_count);
        let max_retries = self.job.settings.max_retries;
        if self.retry_count <= max_retries {
            return None;
        }
        let names: Vec<&str> = unknown.iter().map(|c| c.tool_name.as_str()).collect();
        let mut message = format!("Tool {} not found", names.join(", "));
        if max_retries > 0 {
            message.push_str(&format!(
                " (the model called only tools the Expert lacks {} times in a row)",
                self.retry_count
            ));
        }
        Some(LlmError::fatal(TOOL_NOT_FOUND, message))
    }

    /// The model's calls, in Perstack's order: MCP tools, then delegates, then interactive tools.
    /// A call to a tool the Expert lacks names [`NO_SKILL`] as its skill.
    fn sorted_calls(&self, generation: &Generation) -> Vec<ToolCall> {
        let mut calls: Vec<ToolCall> = generation
            .parts
            .iter()
            .filter_map(|p| match p {
                GeneratedPart::ToolCall { id, name, args } => Some(ToolCall {
                    id: id.clone(),
                    skill_name: self.tools.skill_of(name).unwrap_or(NO_SKILL).to_string(),
                    tool_name: name.clone(),
                    args: args.clone(),
                }),
                _ => None,
            })
            .map(|mut call| {
                if self.kind(&call).is_none() {
                    call.skill_name = NO_SKILL.to_string();
                }
                call
            })
            .collect();
        calls.sort_by_key(|c| match self.kind(c) {
            Some(ToolKind::Delegate(_)) => 1,
            Some(ToolKind::Interactive) => 2,
            _ => 0,
        });
        calls
    }

    /// What answers `call` in this segment. Interactive tools are not on offer in delegated
    /// runs; a call to one there is an unknown tool.
    fn kind(&self, call: &ToolCall) -> Option<&ToolKind> {
        match self.tools.kind_of(&call.tool_name) {
            Some(ToolKind::Interactive) if !self.interactive => None,
            kind => kind,
        }
    }

    /// `CallingTool` with `attemptCompletion` among the calls: only it runs.
    async fn attempt_completion(
        &mut self,
        mut step: Step,
        calls: &[ToolCall],
        completion: &ToolCall,
        text: &str,
    ) -> StepEnd {
        let output = self
            .tools
            .call(&completion.tool_name, &completion.args)
            .await;
        if !remaining_todos(&output) {
            return StepEnd::Finished(
                self.complete_after_attempt(step, completion, output, text)
                    .await,
            );
        }
        // Unfinished todos: the model must go on. Its other calls were not run, and each still
        // needs a result or the provider rejects the next request.
        let results: Vec<(ToolCall, ToolOutput)> = calls
            .iter()
            .map(|c| {
                if c.id == completion.id {
                    (c.clone(), output.clone())
                } else {
                    (
                        c.clone(),
                        ToolOutput::error(format!(
                            "Not executed: {} was called together with attemptCompletion.",
                            c.tool_name
                        )),
                    )
                }
            })
            .collect();
        let tool_results: Vec<ToolResult> = results.iter().map(tool_result).collect();
        self.emit(RunPayload::ResolveToolResults {
            tool_results: tool_results.clone(),
        });
        let message = tool_message(&tool_results, &self.output_errors(&results));
        self.emit(RunPayload::FinishToolCall {
            new_messages: vec![message.clone()],
        });
        self.push(&mut step, message);
        step.tool_results = Some(tool_results);
        StepEnd::Continue(step)
    }

    fn output_errors(&self, results: &[(ToolCall, ToolOutput)]) -> Vec<String> {
        results
            .iter()
            .filter(|(_, o)| o.is_error)
            .map(|(c, _)| c.id.clone())
            .collect()
    }

    /// `CallingTool`: MCP calls run concurrently; then delegates stop the run for their child
    /// runs, interactive tools stop it for the user, or the results go back to the model.
    /// `fresh` is false when the calls were pending from a checkpoint (`resumeToolCalls`).
    async fn call_tools(
        &mut self,
        mut step: Step,
        calls: Vec<ToolCall>,
        message: Message,
        usage: Usage,
        fresh: bool,
    ) -> StepEnd {
        let (mut delegates, mut interactive, mut mcp, mut unknown) =
            (vec![], vec![], vec![], vec![]);
        for call in calls {
            match self.kind(&call) {
                Some(ToolKind::Delegate(_)) => delegates.push(call),
                Some(ToolKind::Interactive) => interactive.push(call),
                Some(ToolKind::Mcp(_)) => mcp.push(call),
                None => unknown.push(call),
            }
        }
        let results = self.run_calls(mcp, unknown).await;
        let errors = self.output_errors(&results);
        let new_results: Vec<ToolResult> = results.iter().map(tool_result).collect();
        let mut partial = self
            .checkpoint
            .partial_tool_results
            .take()
            .unwrap_or_default();
        partial.extend(new_results.iter().cloned());

        if !delegates.is_empty() {
            self.stop_for_delegates(step, message, usage, delegates, interactive, partial);
            return StepEnd::Delegated;
        }
        if !interactive.is_empty() {
            self.stop_for_interactive(step, message, usage, interactive, partial);
            return StepEnd::Finished(RunOutcome::StoppedByInteractiveTool);
        }
        self.finish_tool_calls(&mut step, new_results, partial, &errors, fresh);
        StepEnd::Continue(step)
    }

    /// `callDelegate` and `stopRunByDelegate`: the run waits on its children, then on the
    /// `interactive` calls of the same step.
    fn stop_for_delegates(
        &mut self,
        mut step: Step,
        message: Message,
        usage: Usage,
        delegates: Vec<ToolCall>,
        interactive: Vec<ToolCall>,
        partial: Vec<ToolResult>,
    ) {
        self.emit(RunPayload::CallDelegate {
            new_message: message,
            tool_calls: delegates.clone(),
            usage,
        });
        self.checkpoint.delegate_to = Some(self.delegations(&delegates));
        let pending = delegates.into_iter().chain(interactive).collect();
        self.wait(
            &mut step,
            CheckpointStatus::StoppedByDelegate,
            pending,
            partial,
        );
        self.emit(RunPayload::StopRunByDelegate {
            checkpoint: self.checkpoint.clone(),
            step,
        });
    }

    /// `callInteractiveTool` (the first of `interactive`) and `stopRunByInteractiveTool`: the
    /// run waits on the user.
    fn stop_for_interactive(
        &mut self,
        mut step: Step,
        message: Message,
        usage: Usage,
        interactive: Vec<ToolCall>,
        partial: Vec<ToolResult>,
    ) {
        if let Some(first) = interactive.first() {
            self.emit(RunPayload::CallInteractiveTool {
                new_message: message,
                tool_call: first.clone(),
                usage,
            });
        }
        self.wait(
            &mut step,
            CheckpointStatus::StoppedByInteractiveTool,
            interactive,
            partial,
        );
        self.emit(RunPayload::StopRunByInteractiveTool {
            checkpoint: self.checkpoint.clone(),
            step,
        });
    }

    /// The results go back to the model: `resolveToolResults` of the calls just made, then the
    /// tool message of every result of the step, in call order (`finishToolCall`, or
    /// `finishAllToolCalls` for calls resumed from a checkpoint).
    fn finish_tool_calls(
        &mut self,
        step: &mut Step,
        new_results: Vec<ToolResult>,
        partial: Vec<ToolResult>,
        errors: &[String],
        fresh: bool,
    ) {
        if !new_results.is_empty() {
            self.emit(RunPayload::ResolveToolResults {
                tool_results: new_results,
            });
        }
        let ordered = self.in_call_order(partial);
        let message = tool_message(&ordered, errors);
        if fresh {
            self.emit(RunPayload::FinishToolCall {
                new_messages: vec![message.clone()],
            });
        } else {
            self.emit(RunPayload::FinishAllToolCalls {
                new_messages: vec![message.clone()],
            });
        }
        self.push(step, message);
        step.tool_results = Some(ordered);
    }

    /// Runs the MCP calls, concurrently, and answers the calls to tools the Expert lacks.
    async fn run_calls(
        &self,
        mcp: Vec<ToolCall>,
        unknown: Vec<ToolCall>,
    ) -> Vec<(ToolCall, ToolOutput)> {
        let outputs =
            futures::future::join_all(mcp.iter().map(|c| self.tools.call(&c.tool_name, &c.args)))
                .await;
        let not_found: Vec<ToolOutput> = unknown.iter().map(|c| self.not_found(c)).collect();
        mcp.into_iter()
            .zip(outputs)
            .chain(unknown.into_iter().zip(not_found))
            .collect()
    }

    /// What the parent waits on: one delegation per delegate call.
    fn delegations(&self, delegates: &[ToolCall]) -> Vec<DelegateTo> {
        delegates
            .iter()
            .filter_map(|call| {
                let Some(ToolKind::Delegate(key)) = self.kind(call) else {
                    return None;
                };
                let expert = self.job.experts.get(key)?;
                Some(DelegateTo {
                    expert: expert_ref(expert),
                    tool_call_id: call.id.clone(),
                    tool_name: call.tool_name.clone(),
                    query: query_of(call),
                })
            })
            .collect()
    }

    /// Ends the step waiting (for delegates or the user) with `pending` calls and the `partial`
    /// results gathered, kept on the checkpoint and on the step alike, as Perstack keeps them.
    fn wait(
        &mut self,
        step: &mut Step,
        status: CheckpointStatus,
        pending: Vec<ToolCall>,
        partial: Vec<ToolResult>,
    ) {
        self.checkpoint.status = status;
        self.checkpoint.pending_tool_calls = Some(pending.clone());
        self.checkpoint.partial_tool_results = Some(partial.clone());
        step.pending_tool_calls = Some(pending);
        step.partial_tool_results = Some(partial);
        step.finished_at = Some(now_ms());
    }

    /// The answer to a call of a tool the Expert lacks: what it can call instead.
    fn not_found(&self, call: &ToolCall) -> ToolOutput {
        let offered: Vec<String> = self
            .tools
            .specs(self.interactive)
            .into_iter()
            .map(|s| s.name)
            .collect();
        ToolOutput::error(format!(
            "Error calling tool {0}: Tool {0} not found. The tools you have: {1}.",
            call.tool_name,
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        ))
    }

    /// `PreparingForStep` with pending calls: `resumeToolCalls`, then call them.
    async fn resume_tool_calls(&mut self, step: Step, pending: Vec<ToolCall>) -> StepEnd {
        let partial = self
            .checkpoint
            .partial_tool_results
            .clone()
            .unwrap_or_default();
        self.emit(RunPayload::ResumeToolCalls {
            pending_tool_calls: pending.clone(),
            partial_tool_results: partial,
        });
        let message = self.last_expert_message().cloned().unwrap_or(Message {
            kind: MessageKind::ExpertMessage,
            id: new_id(),
            contents: vec![],
            cache: None,
        });
        self.call_tools(step, pending, message, Usage::default(), false)
            .await
    }

    /// `PreparingForStep` with only results left: `finishAllToolCalls` (one tool message).
    fn finish_all_tool_calls(&mut self, mut step: Step) -> StepEnd {
        let partial = self
            .checkpoint
            .partial_tool_results
            .take()
            .unwrap_or_default();
        let ordered = self.in_call_order(partial);
        let message = tool_message(&ordered, &[]);
        self.emit(RunPayload::FinishAllToolCalls {
            new_messages: vec![message.clone()],
        });
        self.push(&mut step, message);
        step.tool_results = Some(ordered);
        StepEnd::Continue(step)
    }

    fn last_expert_message(&self) -> Option<&Message> {
        self.checkpoint
            .messages
            .iter()
            .rev()
            .find(|m| m.kind == MessageKind::ExpertMessage)
    }

    /// Results ordered as the calls of the last expert message (providers pair them by
    /// position as well as by id).
    fn in_call_order(&self, mut results: Vec<ToolResult>) -> Vec<ToolResult> {
        let order: Vec<&str> = self
            .last_expert_message()
            .map(|m| {
                m.contents
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCallPart { tool_call_id, .. } => Some(tool_call_id.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        results.sort_by_key(|r| {
            order
                .iter()
                .position(|id| *id == r.id)
                .unwrap_or(usize::MAX)
        });
        results
    }

    /// `attemptCompletion` with nothing left to do: the text the model gave with it is the
    /// answer; without text, one more generation (no tools, streamed) writes the answer.
    async fn complete_after_attempt(
        &mut self,
        mut step: Step,
        completion: &ToolCall,
        output: ToolOutput,
        text: &str,
    ) -> RunOutcome {
        let usage = step.usage;
        if !text.trim().is_empty() {
            return self.complete(step, text.to_string(), usage);
        }
        let pair = (completion.clone(), output);
        let result = tool_result(&pair);
        self.emit(RunPayload::AttemptCompletion {
            tool_result: result.clone(),
        });
        let errors = self.output_errors(std::slice::from_ref(&pair));
        self.push(&mut step, tool_message(&[result], &errors));
        let generation = match self.generate(&[], true).await {
            Ok(generation) => generation,
            Err(error) => return self.stop_by_error(step, error),
        };
        self.add_usage(&mut step, generation.usage);
        let text = generation.text();
        let answer = Message {
            kind: MessageKind::ExpertMessage,
            id: new_id(),
            contents: vec![Part::text(text.clone())],
            cache: None,
        };
        self.push(&mut step, answer);
        self.complete(step, text, generation.usage)
    }

    /// Nothing usable came back: tell the model and try again in the next step (§5: a retry
    /// costs a step).
    fn retry(&mut self, mut step: Step, generation: &Generation) -> StepEnd {
        self.retry_count += 1;
        let (error, message) = if generation.finish_reason == FinishReason::Length {
            (
                "OutputLengthExceeded",
                "Your reply hit the output token limit and was cut off. Reply again, shorter, or split the work into several tool calls.",
            )
        } else {
            (
                "NoToolCallOrText",
                "Your reply had neither a tool call nor text. Call a tool, or call attemptCompletion when you are done.",
            )
        };
        if self.retry_count > self.job.settings.max_retries {
            let error = LlmError::fatal(
                "MaxRetriesExceeded",
                format!(
                    "Max retries ({}) exceeded: {message}",
                    self.job.settings.max_retries
                ),
            );
            return StepEnd::Finished(self.stop_by_error(step, (error, 0)));
        }
        // Perstack's form: the reason is the JSON `{"error","message"}`, and the model is told
        // the same text.
        let reason = retry_reason(error, message);
        let notice = user_message(&reason);
        self.checkpoint.retry_count = Some(self.retry_count);
        self.emit(RunPayload::Retry {
            reason,
            new_messages: vec![notice.clone()],
            tool_calls: None,
            tool_results: None,
            usage: generation.usage,
        });
        self.push(&mut step, notice);
        StepEnd::Continue(step)
    }

    /// `FinishingStep`: stop at `maxSteps` or on a stop request, else `continueToNextStep`.
    fn finish_step(&mut self, mut step: Step) -> Option<RunOutcome> {
        step.finished_at = Some(now_ms());
        if self.checkpoint.step_number >= self.job.settings.max_steps {
            self.checkpoint.status = CheckpointStatus::StoppedByExceededMaxSteps;
            self.emit(RunPayload::StopRunByExceededMaxSteps {
                checkpoint: self.checkpoint.clone(),
                step,
            });
            return Some(RunOutcome::StoppedByMaxSteps);
        }
        if self.job.stop.requested() {
            // Like the max-steps stop: this finished step's checkpoint is where a continuation
            // starts (`--continue` clones it into the next step).
            let error = RunError {
                name: super::INTERRUPTED.into(),
                message: format!(
                    "stopped on request after step {}; continue with --continue",
                    self.checkpoint.step_number
                ),
                status_code: None,
                is_retryable: false,
            };
            self.checkpoint.status = CheckpointStatus::StoppedByError;
            self.emit(RunPayload::StopRunByError {
                checkpoint: self.checkpoint.clone(),
                step,
                error: error.clone(),
            });
            self.checkpoint.error = Some(error.clone());
            return Some(RunOutcome::StoppedByError(error));
        }
        let next = Checkpoint {
            id: new_id(),
            step_number: self.checkpoint.step_number + 1,
            ..self.checkpoint.clone()
        };
        self.emit(RunPayload::ContinueToNextStep {
            checkpoint: self.checkpoint.clone(),
            step,
            next_checkpoint: next.clone(),
        });
        self.checkpoint = next;
        None
    }

    fn complete(&mut self, mut step: Step, text: String, usage: Usage) -> RunOutcome {
        step.finished_at = Some(now_ms());
        self.checkpoint.status = CheckpointStatus::Completed;
        self.emit(RunPayload::CompleteRun {
            checkpoint: self.checkpoint.clone(),
            step,
            text: text.clone(),
            usage,
        });
        RunOutcome::Completed { text }
    }

    fn stop_by_error(&mut self, mut step: Step, (error, retries): (LlmError, u32)) -> RunOutcome {
        step.finished_at = Some(now_ms());
        let message = if error.is_retryable && retries > 0 {
            format!("Max retries ({retries}) exceeded: {}", error.message)
        } else {
            error.message
        };
        let error = RunError {
            name: error.name,
            message,
            status_code: error.status_code,
            is_retryable: false,
        };
        self.checkpoint.status = CheckpointStatus::StoppedByError;
        self.emit(RunPayload::StopRunByError {
            checkpoint: self.checkpoint.clone(),
            step,
            error: error.clone(),
        });
        self.checkpoint.error = Some(error.clone());
        RunOutcome::StoppedByError(error)
    }

    /// One generation with the run's retry policy and per-generation timeout, its deltas
    /// streamed as events, and a `retry` event before each retried attempt.
    async fn generate(
        &self,
        tools: &[ToolSpec],
        final_result: bool,
    ) -> Result<Generation, (LlmError, u32)> {
        let settings = self.job.settings;
        let request = GenerateRequest {
            expert_key: &self.expert.key,
            model: &settings.model,
            messages: &self.checkpoint.messages,
            tools,
            reasoning_budget: settings.reasoning_budget,
        };
        let ids = (
            self.job.job_id,
            self.run_id.as_str(),
            self.expert.key.as_str(),
        );
        RetryPolicy::new(settings.max_retries)
            .run_notifying(
                || async {
                    let relay = StreamRelay::new(
                        self.job.sink,
                        ids,
                        self.checkpoint.step_number,
                        final_result,
                    );
                    let on_delta = |delta| relay.delta(delta);
                    let result = tokio::time::timeout(
                        settings.timeout,
                        self.job.provider.generate(&request, &on_delta),
                    )
                    .await;
                    relay.finish();
                    match result {
                        Ok(result) => result,
                        Err(_) => Err(LlmError {
                            name: "TimeoutError".into(),
                            message: format!(
                                "generation timed out after {} ms",
                                settings.timeout.as_millis()
                            ),
                            status_code: None,
                            is_retryable: true,
                            retry_after: None,
                        }),
                    }
                },
                |error, retry, delay| {
                    // The model saw nothing of the failed attempt, so the conversation is
                    // unchanged and no step is spent; the event tells the watcher why it waits.
                    self.emit(RunPayload::Retry {
                        reason: retry_reason(
                            &error.name,
                            &format!(
                                "{} (retry {retry} of {}, in {} ms)",
                                error.message,
                                settings.max_retries,
                                delay.as_millis()
                            ),
                        ),
                        new_messages: vec![],
                        tool_calls: None,
                        tool_results: None,
                        usage: Usage::default(),
                    });
                },
            )
            .await
    }
}

/// Applies the continuation input to a checkpoint being resumed (§5 `Init`) and returns the
/// messages it adds.
fn resume_input(
    job: &Job<'_>,
    expert: &Expert,
    checkpoint: &mut Checkpoint,
    input: ResumeInput,
) -> Result<Vec<Message>, ResumeError> {
    let waiting = matches!(
        checkpoint.status,
        CheckpointStatus::StoppedByInteractiveTool | CheckpointStatus::StoppedByDelegate
    );
    if checkpoint.status == CheckpointStatus::StoppedByDelegate {
        pend_delegations(checkpoint);
    }
    match input {
        ResumeInput::Answer(answer) if waiting => {
            let pending = checkpoint.pending_tool_calls.get_or_insert_with(Vec::new);
            let Some(index) = pending.iter().position(|c| c.id == answer.tool_call_id) else {
                return Err(ResumeError::NotPending {
                    tool_call_id: answer.tool_call_id,
                    pending: pending
                        .iter()
                        .map(|c| format!("{} ({})", c.id, c.tool_name))
                        .collect(),
                });
            };
            let call = pending.remove(index);
            let skill_name = if answer.skill_name.is_empty() {
                call.skill_name
            } else {
                answer.skill_name
            };
            checkpoint
                .partial_tool_results
                .get_or_insert_with(Vec::new)
                .push(ToolResult {
                    id: call.id,
                    skill_name,
                    tool_name: call.tool_name,
                    result: vec![Part::text(answer.text)],
                });
            Ok(vec![])
        }
        ResumeInput::Answer(_) => Err(ResumeError::NotWaiting(checkpoint.status)),
        ResumeInput::Query(_)
            if checkpoint.status == CheckpointStatus::StoppedByInteractiveTool =>
        {
            Err(ResumeError::NeedsAnswer(
                checkpoint
                    .pending_tool_calls
                    .iter()
                    .flatten()
                    .map(|c| c.tool_name.clone())
                    .collect(),
            ))
        }
        // A run interrupted while its delegates worked: they run again.
        ResumeInput::Query(_) | ResumeInput::Continue if waiting => Ok(vec![]),
        ResumeInput::Continue => Ok(vec![]),
        ResumeInput::Query(query) if query.trim().is_empty() => Err(ResumeError::NeedsQuery),
        ResumeInput::Query(query) if checkpoint.status == CheckpointStatus::Init => {
            Ok(vec![instruction_message(job, expert), user_message(&query)])
        }
        ResumeInput::Query(query) => {
            checkpoint.pending_tool_calls = None;
            checkpoint.partial_tool_results = None;
            Ok(vec![user_message(&query)])
        }
    }
}

/// Perstack's `stoppedByDelegate` checkpoint keeps the delegations in `delegateTo` only and lists
/// the other waiting calls as pending; ours lists both. Puts each delegation not yet answered back
/// in front of the pending calls, so a checkpoint of either kind continues the same way: its
/// delegates run again, or `-i` answers one of them.
fn pend_delegations(checkpoint: &mut Checkpoint) {
    let Some(delegations) = &checkpoint.delegate_to else {
        return;
    };
    let answered = |id: &str| {
        checkpoint
            .partial_tool_results
            .iter()
            .flatten()
            .any(|r| r.id == id)
    };
    let pending = checkpoint.pending_tool_calls.get_or_insert_with(Vec::new);
    let missing: Vec<ToolCall> = delegations
        .iter()
        .filter(|d| !answered(&d.tool_call_id) && !pending.iter().any(|c| c.id == d.tool_call_id))
        .map(|d| ToolCall {
            id: d.tool_call_id.clone(),
            skill_name: d.expert.name.clone(),
            tool_name: d.tool_name.clone(),
            args: json!({"query": d.query}),
        })
        .collect();
    pending.splice(0..0, missing);
}

/// `retry.reason` as Perstack writes it: the JSON string `{"error": name, "message": …}`.
fn retry_reason(error: &str, message: &str) -> String {
    json!({"error": error, "message": message}).to_string()
}

fn expert_ref(expert: &Expert) -> ExpertRef {
    ExpertRef {
        key: expert.key.clone(),
        name: expert.name.clone(),
        version: expert.version.clone(),
    }
}

fn instruction_message(job: &Job<'_>, expert: &Expert) -> Message {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let delegates: Vec<&Expert> = expert
        .delegates
        .iter()
        .filter_map(|k| job.experts.get(k))
        .collect();
    Message {
        kind: MessageKind::InstructionMessage,
        id: new_id(),
        contents: vec![Part::text(prompt::system_prompt(expert, &delegates, &now))],
        cache: Some(true),
    }
}

fn user_message(text: &str) -> Message {
    Message {
        kind: MessageKind::UserMessage,
        id: new_id(),
        contents: vec![Part::text(text)],
        cache: None,
    }
}

/// A delegate call's `query` (the whole arguments as JSON when the model left it out).
pub(super) fn query_of(call: &ToolCall) -> String {
    match call.args.get("query") {
        Some(Value::String(query)) => query.clone(),
        _ => call.args.to_string(),
    }
}

fn is_attempt_completion(call: &ToolCall) -> bool {
    call.tool_name == "attemptCompletion" && call.skill_name == BASE_SKILL_NAME
}

/// `attemptCompletion` answers `{}` or `{"remainingTodos":[…]}` (§6).
fn remaining_todos(output: &ToolOutput) -> bool {
    output
        .parts
        .iter()
        .filter_map(Part::as_text)
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .any(|v| {
            v["remainingTodos"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
}

/// The model's message: thinking, text, then its calls in `calls` order.
fn expert_message(generation: &Generation, calls: &[ToolCall]) -> Message {
    let mut contents: Vec<Part> = generation
        .parts
        .iter()
        .filter_map(|p| match p {
            GeneratedPart::Thinking { text, signature } => Some(Part::ThinkingPart {
                id: new_id(),
                thinking: text.clone(),
                signature: signature.clone(),
            }),
            GeneratedPart::Text(text) if text.is_empty() => None,
            GeneratedPart::Text(text) => Some(Part::text(text.clone())),
            GeneratedPart::ToolCall { .. } => None,
        })
        .collect();
    contents.extend(calls.iter().map(|c| Part::ToolCallPart {
        id: new_id(),
        tool_call_id: c.id.clone(),
        tool_name: c.tool_name.clone(),
        args: c.args.clone(),
    }));
    Message {
        kind: MessageKind::ExpertMessage,
        id: new_id(),
        contents,
        cache: None,
    }
}

fn tool_result((call, output): &(ToolCall, ToolOutput)) -> ToolResult {
    ToolResult {
        id: call.id.clone(),
        skill_name: call.skill_name.clone(),
        tool_name: call.tool_name.clone(),
        result: output.parts.clone(),
    }
}

/// One tool message answering `results`; the calls in `errors` are flagged `isError`.
fn tool_message(results: &[ToolResult], errors: &[String]) -> Message {
    Message {
        kind: MessageKind::ToolMessage,
        id: new_id(),
        contents: results
            .iter()
            .map(|r| Part::ToolResultPart {
                id: new_id(),
                tool_call_id: r.id.clone(),
                tool_name: r.tool_name.clone(),
                contents: r.result.iter().filter_map(result_content).collect(),
                is_error: errors.contains(&r.id).then_some(true),
            })
            .collect(),
        cache: None,
    }
}

/// A tool result's part as a `toolResultPart` may hold it: Perstack's schema allows text, inline
/// images and inline files there. A binary part (only ever read from a Perstack checkpoint) is
/// the same base64 data, so it becomes the inline one; a URL part becomes its URL as text
/// (Perstack drops both); anything else — a result has no calls or thinking — is left out.
fn result_content(part: &Part) -> Option<Part> {
    Some(match part {
        Part::TextPart { .. } | Part::ImageInlinePart { .. } | Part::FileInlinePart { .. } => {
            part.clone()
        }
        Part::ImageBinaryPart {
            id,
            data,
            mime_type,
        } => Part::ImageInlinePart {
            id: id.clone(),
            encoded_data: data.clone(),
            mime_type: mime_type.clone(),
        },
        Part::FileBinaryPart {
            id,
            data,
            mime_type,
        } => Part::FileInlinePart {
            id: id.clone(),
            encoded_data: data.clone(),
            mime_type: mime_type.clone(),
        },
        Part::ImageUrlPart { id, url, mime_type } | Part::FileUrlPart { id, url, mime_type } => {
            Part::TextPart {
                id: id.clone(),
                text: format!("{url} ({mime_type})"),
            }
        }
        Part::ToolCallPart { .. } | Part::ThinkingPart { .. } | Part::ToolResultPart { .. } => {
            return None;
        }
    })
}
