//! The agent loop (PERSTACK-COMPAT.md §5): instruction + query → model → tool calls → results →
//! … until `attemptCompletion` or a final answer, with `maxSteps` enforced.
//!
//! Each state of the loop emits exactly one event, in Perstack's order:
//!
//! ```text
//! startRun
//! ┌─► startGeneration ─┬─► callTools ─► resolveToolResults ─► finishToolCall ─┐
//! │                    ├─► callTools [attemptCompletion] ─► (attemptCompletion ─► final generation) ─► completeRun
//! │                    ├─► completeRun                      (text without tool calls)
//! │                    ├─► retry                            (nothing usable generated) ─┐
//! │                    └─► stopRunByError                                               │
//! └──────────── continueToNextStep ◄─┬───────────────────────────────────────────────────┘
//!                                    └─► stopRunByExceededMaxSteps (step = maxSteps)
//! ```

pub mod prompt;
pub mod tools;

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{BASE_SKILL_NAME, Expert};
use crate::event::{
    Checkpoint, CheckpointStatus, Event, EventSink, ExpertRef, Message, MessageKind, Part,
    RunError, RunPayload, Step, ToolCall, ToolResult, Usage,
};
use crate::ids::{new_id, now_ms};
use crate::llm::{
    FinishReason, GenerateRequest, GeneratedPart, Generation, LlmError, Provider, RetryPolicy,
    ToolSpec, models,
};
use crate::skill::result::ToolOutput;
use tools::ToolSet;

/// The knobs of one run.
#[derive(Debug, Clone)]
pub struct RunSettings {
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

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// `completeRun`, with the final text.
    Completed {
        /// The answer.
        text: String,
    },
    /// `stopRunByExceededMaxSteps`.
    StoppedByMaxSteps,
    /// `stopRunByError`.
    StoppedByError(RunError),
}

/// Everything one run of one Expert needs.
pub struct Agent<'a> {
    /// The model client.
    pub provider: &'a Provider,
    /// The Expert's tools.
    pub tools: &'a ToolSet,
    /// Where events go.
    pub sink: &'a EventSink,
    /// Limits and model.
    pub settings: &'a RunSettings,
    /// The job.
    pub job_id: &'a str,
    /// This run segment.
    pub run_id: &'a str,
}

/// The state carried from step to step.
struct Run<'a> {
    agent: &'a Agent<'a>,
    expert: &'a Expert,
    checkpoint: Checkpoint,
    retry_count: u32,
}

/// What a step decided.
enum StepEnd {
    /// Go on to the next step (or stop at `maxSteps`).
    Continue(Step),
    /// The run is over.
    Finished(RunOutcome),
}

impl Agent<'_> {
    /// Runs `expert` on `query` from step `first_step` until it completes or stops.
    pub async fn run(
        &self,
        expert: &Expert,
        delegates: &[&Expert],
        query: &str,
        first_step: u32,
    ) -> RunOutcome {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let instruction = Message {
            kind: MessageKind::InstructionMessage,
            id: new_id(),
            contents: vec![Part::text(prompt::system_prompt(expert, delegates, &now))],
            cache: Some(true),
        };
        let user = Message {
            kind: MessageKind::UserMessage,
            id: new_id(),
            contents: vec![Part::text(query)],
            cache: None,
        };
        let context_window = models::lookup(&self.settings.model).map(|m| m.context_window);
        let mut run = Run {
            agent: self,
            expert,
            checkpoint: Checkpoint {
                id: new_id(),
                job_id: self.job_id.to_string(),
                run_id: self.run_id.to_string(),
                status: CheckpointStatus::Init,
                step_number: first_step,
                messages: vec![],
                expert: ExpertRef {
                    key: expert.key.clone(),
                    name: expert.name.clone(),
                    version: expert.version.clone(),
                },
                usage: Usage::default(),
                context_window,
                context_window_usage: context_window.map(|_| 0.0),
                pending_tool_calls: None,
                partial_tool_results: None,
                retry_count: None,
                metadata: Some(json!({"runtime": "docker"})),
            },
            retry_count: 0,
        };
        let input = vec![instruction, user];
        run.emit(RunPayload::StartRun {
            initial_checkpoint: run.checkpoint.clone(),
            input_messages: input.clone(),
        });
        run.checkpoint.messages = input.clone();
        run.checkpoint.status = CheckpointStatus::Proceeding;
        let mut input_messages = Some(input);
        loop {
            let step = match run.step(input_messages.take()).await {
                StepEnd::Continue(step) => step,
                StepEnd::Finished(outcome) => return outcome,
            };
            if let Some(outcome) = run.finish_step(step) {
                return outcome;
            }
        }
    }
}

impl Run<'_> {
    fn emit(&self, payload: RunPayload) {
        self.agent.sink.emit(Event::run(
            self.agent.job_id,
            self.agent.run_id,
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

    /// One generation and whatever it asks for.
    async fn step(&mut self, input_messages: Option<Vec<Message>>) -> StepEnd {
        let mut step = self.new_step(input_messages);
        // `lazyInit` skills connect in the background; the first listing waits for them.
        if let Err(error) = self.agent.tools.ready().await {
            let error = LlmError::fatal("SkillError", error.to_string());
            return StepEnd::Finished(self.stop_by_error(step, (error, 0)));
        }
        self.emit(RunPayload::StartGeneration {
            messages: self.checkpoint.messages.clone(),
        });
        let specs = self.agent.tools.specs();
        let generation = match self.generate(&specs).await {
            Ok(generation) => generation,
            Err(error) => return StepEnd::Finished(self.stop_by_error(step, error)),
        };
        self.add_usage(&mut step, generation.usage);
        let expert_message = expert_message(&generation);
        let calls: Vec<ToolCall> = generation
            .parts
            .iter()
            .filter_map(|p| match p {
                GeneratedPart::ToolCall { id, name, args } => Some(ToolCall {
                    id: id.clone(),
                    skill_name: self.agent.tools.skill_of(name).unwrap_or("").to_string(),
                    tool_name: name.clone(),
                    args: args.clone(),
                }),
                _ => None,
            })
            .collect();
        let text = generation.text();

        if calls.is_empty() {
            if text.trim().is_empty() || generation.finish_reason == FinishReason::Length {
                return self.retry(step, &generation);
            }
            self.retry_count = 0;
            self.push(&mut step, expert_message);
            return StepEnd::Finished(self.complete(step, text, generation.usage));
        }

        self.retry_count = 0;
        self.emit(RunPayload::CallTools {
            new_message: expert_message.clone(),
            tool_calls: calls.clone(),
            usage: generation.usage,
        });
        self.push(&mut step, expert_message);
        step.tool_calls = Some(calls.clone());

        let results = match calls.iter().find(|c| is_attempt_completion(c)) {
            Some(completion) => {
                let output = self
                    .agent
                    .tools
                    .call(&completion.tool_name, &completion.args)
                    .await;
                if remaining_todos(&output) {
                    // Unfinished todos: the model must go on. Its other calls were not run, and
                    // each still needs a result or the provider rejects the next request.
                    calls
                        .iter()
                        .map(|c| {
                            if c.id == completion.id {
                                (c.clone(), output.clone())
                            } else {
                                (c.clone(), ToolOutput::error(format!(
                                    "Not executed: {} was called together with attemptCompletion.",
                                    c.tool_name
                                )))
                            }
                        })
                        .collect()
                } else {
                    return StepEnd::Finished(
                        self.complete_after_attempt(step, completion, output, &text)
                            .await,
                    );
                }
            }
            None => {
                let outputs = futures::future::join_all(
                    calls
                        .iter()
                        .map(|c| self.agent.tools.call(&c.tool_name, &c.args)),
                )
                .await;
                calls.iter().cloned().zip(outputs).collect::<Vec<_>>()
            }
        };
        let tool_results: Vec<ToolResult> = results.iter().map(tool_result).collect();
        self.emit(RunPayload::ResolveToolResults {
            tool_results: tool_results.clone(),
        });
        let message = tool_message(&results);
        self.emit(RunPayload::FinishToolCall {
            new_messages: vec![message.clone()],
        });
        self.push(&mut step, message);
        step.tool_results = Some(tool_results);
        StepEnd::Continue(step)
    }

    /// `attemptCompletion` with nothing left to do: the text the model gave with it is the
    /// answer; without text, one more generation (no tools) writes the answer.
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
        self.emit(RunPayload::AttemptCompletion {
            tool_result: tool_result(&pair),
        });
        self.push(&mut step, tool_message(std::slice::from_ref(&pair)));
        let generation = match self.generate(&[]).await {
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
        if self.retry_count > self.agent.settings.max_retries {
            let error = LlmError::fatal(
                "MaxRetriesExceeded",
                format!(
                    "Max retries ({}) exceeded: {message}",
                    self.agent.settings.max_retries
                ),
            );
            return StepEnd::Finished(self.stop_by_error(step, (error, 0)));
        }
        let notice = Message {
            kind: MessageKind::UserMessage,
            id: new_id(),
            contents: vec![Part::text(
                json!({"error": error, "message": message}).to_string(),
            )],
            cache: None,
        };
        self.checkpoint.retry_count = Some(self.retry_count);
        self.emit(RunPayload::Retry {
            reason: message.to_string(),
            new_messages: vec![notice.clone()],
            tool_calls: None,
            tool_results: None,
            usage: generation.usage,
        });
        self.push(&mut step, notice);
        StepEnd::Continue(step)
    }

    /// `FinishingStep`: stop at `maxSteps`, else `continueToNextStep`.
    fn finish_step(&mut self, mut step: Step) -> Option<RunOutcome> {
        step.finished_at = Some(now_ms());
        if self.checkpoint.step_number >= self.agent.settings.max_steps {
            self.checkpoint.status = CheckpointStatus::StoppedByExceededMaxSteps;
            self.emit(RunPayload::StopRunByExceededMaxSteps {
                checkpoint: self.checkpoint.clone(),
                step,
            });
            return Some(RunOutcome::StoppedByMaxSteps);
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
        RunOutcome::StoppedByError(error)
    }

    /// One generation with the run's retry policy and per-generation timeout.
    async fn generate(&self, tools: &[ToolSpec]) -> Result<Generation, (LlmError, u32)> {
        let settings = self.agent.settings;
        let request = GenerateRequest {
            expert_key: &self.expert.key,
            model: &settings.model,
            messages: &self.checkpoint.messages,
            tools,
            reasoning_budget: settings.reasoning_budget,
        };
        RetryPolicy::new(settings.max_retries)
            .run(|| async {
                match tokio::time::timeout(
                    settings.timeout,
                    self.agent.provider.generate(&request, &|_| {}),
                )
                .await
                {
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
            })
            .await
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

fn expert_message(generation: &Generation) -> Message {
    let contents = generation
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
            GeneratedPart::ToolCall { id, name, args } => Some(Part::ToolCallPart {
                id: new_id(),
                tool_call_id: id.clone(),
                tool_name: name.clone(),
                args: args.clone(),
            }),
        })
        .collect();
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

fn tool_message(results: &[(ToolCall, ToolOutput)]) -> Message {
    Message {
        kind: MessageKind::ToolMessage,
        id: new_id(),
        contents: results
            .iter()
            .map(|(call, output)| Part::ToolResultPart {
                id: new_id(),
                tool_call_id: call.id.clone(),
                tool_name: call.tool_name.clone(),
                contents: output.parts.clone(),
                is_error: output.is_error.then_some(true),
            })
            .collect(),
        cache: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::mock::{MockProvider, MockScript};
    use indexmap::IndexMap;

    fn expert() -> Expert {
        Expert {
            key: "main".into(),
            name: "main".into(),
            version: "1.0.0".into(),
            instruction: "Do it.".into(),
            description: None,
            min_runtime_version: None,
            delegates: vec![],
            tags: vec![],
            skills: IndexMap::new(),
        }
    }

    async fn run(script: &str, max_steps: u32) -> (RunOutcome, Vec<Event>) {
        let script = MockScript::parse(std::path::Path::new("s.toml"), script).expect("script");
        let provider = Provider::Mock(MockProvider::new(script));
        let tools = ToolSet::new();
        let (sink, mut rx) = EventSink::channel();
        let settings = RunSettings {
            model: "mock".into(),
            max_steps,
            max_retries: 1,
            timeout: Duration::from_secs(5),
            reasoning_budget: None,
        };
        let agent = Agent {
            provider: &provider,
            tools: &tools,
            sink: &sink,
            settings: &settings,
            job_id: "j",
            run_id: "r",
        };
        let outcome = agent.run(&expert(), &[], "go", 1).await;
        drop(sink);
        let mut events = vec![];
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        (outcome, events)
    }

    fn types(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match &e.body {
                crate::event::EventBody::Run { step_number, .. } => {
                    format!("{}@{step_number}", e.type_name())
                }
                crate::event::EventBody::Runtime(_) => e.type_name(),
            })
            .collect()
    }

    #[tokio::test]
    async fn text_without_tool_calls_completes() {
        let (outcome, events) = run("[[turn]]\ntext = \"All done.\"\n", 10).await;
        assert_eq!(
            outcome,
            RunOutcome::Completed {
                text: "All done.".into()
            }
        );
        assert_eq!(
            types(&events),
            ["startRun@1", "startGeneration@1", "completeRun@1"]
        );
    }

    #[tokio::test]
    async fn unknown_tools_become_error_results_and_steps_continue() {
        let script = "[[turn]]\n[[turn.toolCalls]]\nname = \"nope\"\n\n[[turn]]\ntext = \"ok\"\n";
        let (outcome, events) = run(script, 10).await;
        assert!(matches!(outcome, RunOutcome::Completed { .. }));
        assert_eq!(
            types(&events),
            [
                "startRun@1",
                "startGeneration@1",
                "callTools@1",
                "resolveToolResults@1",
                "finishToolCall@1",
                "continueToNextStep@1",
                "startGeneration@2",
                "completeRun@2"
            ]
        );
        let Some(RunPayload::ResolveToolResults { tool_results }) = events[3].run_payload() else {
            panic!("expected resolveToolResults");
        };
        assert!(
            tool_results[0].result[0]
                .as_text()
                .is_some_and(|t| t.starts_with("Error calling tool nope: no such tool"))
        );
        // The completed checkpoint holds the whole conversation.
        let Some(RunPayload::CompleteRun { checkpoint, .. }) = events[7].run_payload() else {
            panic!("expected completeRun");
        };
        let kinds: Vec<MessageKind> = checkpoint.messages.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MessageKind::InstructionMessage,
                MessageKind::UserMessage,
                MessageKind::ExpertMessage,
                MessageKind::ToolMessage,
                MessageKind::ExpertMessage
            ]
        );
        assert_eq!(checkpoint.status, CheckpointStatus::Completed);
        assert_eq!(checkpoint.step_number, 2);
    }

    #[tokio::test]
    async fn max_steps_stops_the_run() {
        let script =
            "[[turn]]\n[[turn.toolCalls]]\nname = \"nope\"\n\n[[turn]]\ntext = \"never\"\n";
        let (outcome, events) = run(script, 1).await;
        assert_eq!(outcome, RunOutcome::StoppedByMaxSteps);
        assert_eq!(
            types(&events).last().map(String::as_str),
            Some("stopRunByExceededMaxSteps@1")
        );
    }

    #[tokio::test]
    async fn fatal_api_errors_stop_with_the_error_shape() {
        let script = "[[turn]]\nerror = { status = 400, message = \"bad request\" }\n";
        let (outcome, events) = run(script, 10).await;
        let RunOutcome::StoppedByError(error) = outcome else {
            panic!("expected an error");
        };
        assert_eq!(error.status_code, Some(400));
        assert_eq!(error.message, "bad request");
        assert_eq!(
            types(&events),
            ["startRun@1", "startGeneration@1", "stopRunByError@1"]
        );
    }

    #[tokio::test]
    async fn truncated_output_is_retried_in_the_next_step() {
        let script =
            "[[turn]]\ntext = \"cut\"\nfinishReason = \"length\"\n\n[[turn]]\ntext = \"fine\"\n";
        let (outcome, events) = run(script, 10).await;
        assert_eq!(
            outcome,
            RunOutcome::Completed {
                text: "fine".into()
            }
        );
        assert_eq!(
            types(&events),
            [
                "startRun@1",
                "startGeneration@1",
                "retry@1",
                "continueToNextStep@1",
                "startGeneration@2",
                "completeRun@2"
            ]
        );
    }
}
