//! The agent loop's behaviour, driven by the mock provider: each test reads like a piece of §5.

use super::*;
use crate::config::{InteractiveSkill, InteractiveTool, Skill};
use crate::event::{EventBody, Message, RuntimePayload, ToolCall};
use crate::llm::mock::{MockProvider, MockScript};
use indexmap::IndexMap;
use serde_json::Value;

fn expert_with(key: &str, delegates: &[&str]) -> Expert {
    Expert {
        key: key.into(),
        name: key.into(),
        version: "1.0.0".into(),
        instruction: format!("You are {key}."),
        description: Some(format!("The {key} Expert.")),
        min_runtime_version: None,
        delegates: delegates.iter().map(|d| d.to_string()).collect(),
        tags: vec![],
        skills: IndexMap::new(),
    }
}

fn expert() -> Expert {
    expert_with("main", &[])
}

/// An Expert with an interactive skill `ask` offering the tool `askUser`.
fn interactive_expert() -> Expert {
    let mut expert = expert();
    let tool = InteractiveTool {
        description: Some("Ask the user.".into()),
        input_json_schema: serde_json::json!({"type": "object", "properties": {"question": {"type": "string"}}}),
    };
    expert.skills.insert(
        "ask".into(),
        Skill::Interactive(InteractiveSkill {
            name: "ask".into(),
            description: None,
            rule: None,
            tools: IndexMap::from([("askUser".to_string(), tool)]),
        }),
    );
    expert
}

/// The segments' begins and ends, as `begin <expert> <run>` / `end <expert> <run>`.
#[derive(Default)]
struct Segments(std::sync::Mutex<Vec<String>>);

impl SegmentSkills for Segments {
    fn begin(&self, expert_key: &str, run_id: &str) {
        self.log(format!("begin {expert_key} {run_id}"));
    }

    fn end(&self, expert_key: &str, run_id: &str) {
        self.log(format!("end {expert_key} {run_id}"));
    }
}

impl Segments {
    fn log(&self, entry: String) {
        self.0.lock().expect("log").push(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().expect("log").clone()
    }
}

/// A job over `experts` (the first is the coordinator), each with its interactive tools and
/// delegates as the runtime builds them.
struct TestJob {
    experts: IndexMap<String, Expert>,
    tools: HashMap<String, ToolSet>,
    segments: Segments,
    provider: Provider,
    settings: RunSettings,
    stop: StopRequest,
}

impl TestJob {
    fn new(experts: Vec<Expert>, script: &str, max_steps: u32) -> TestJob {
        let script = MockScript::parse(std::path::Path::new("s.toml"), script).expect("script");
        let experts: IndexMap<String, Expert> =
            experts.into_iter().map(|e| (e.key.clone(), e)).collect();
        let mut tools = HashMap::new();
        for expert in experts.values() {
            let mut set = ToolSet::new();
            for skill in expert.skills.values() {
                if let Skill::Interactive(s) = skill {
                    set.add_interactive(s).expect("interactive");
                }
            }
            for delegate in &expert.delegates {
                set.add_delegate(&experts[delegate]).expect("delegate");
            }
            tools.insert(expert.key.clone(), set);
        }
        TestJob {
            experts,
            tools,
            segments: Segments::default(),
            provider: Provider::Mock(MockProvider::new(script)),
            settings: RunSettings {
                model: "mock".into(),
                max_steps,
                max_retries: 1,
                timeout: Duration::from_secs(5),
                reasoning_budget: None,
            },
            stop: StopRequest::default(),
        }
    }

    fn mock(&self) -> &MockProvider {
        match &self.provider {
            Provider::Mock(mock) => mock,
            _ => unreachable!("tests use the mock"),
        }
    }

    async fn start(&self, start: Start) -> (Result<RunOutcome, ResumeError>, Vec<Event>) {
        let (sink, mut rx) = EventSink::channel();
        let coordinator = self.experts.keys().next().expect("an expert").clone();
        let job = Job {
            provider: &self.provider,
            experts: &self.experts,
            tools: &self.tools,
            skills: &self.segments,
            sink: &sink,
            settings: &self.settings,
            job_id: "j",
            stop: &self.stop,
        };
        let run_id = match start {
            Start::Fresh { .. } => "r",
            Start::Resume { .. } => "r-resumed",
        };
        let outcome = job.run(&coordinator, run_id, start).await;
        drop(sink);
        let mut events = vec![];
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        (outcome, events)
    }

    async fn query(&self, query: &str) -> (RunOutcome, Vec<Event>) {
        let (outcome, events) = self.start(fresh(query)).await;
        (outcome.expect("started"), events)
    }
}

fn fresh(query: &str) -> Start {
    Start::Fresh {
        query: query.into(),
        step_number: 1,
        usage: Usage::default(),
        delegated_by: None,
    }
}

async fn run(script: &str, max_steps: u32) -> (RunOutcome, Vec<Event>) {
    TestJob::new(vec![expert()], script, max_steps)
        .query("go")
        .await
}

/// The state events, without the streaming ones.
fn state_events(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .filter(|e| !e.type_name().contains("Stream") && !e.type_name().starts_with("stream"))
        .cloned()
        .collect()
}

fn types(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| !e.type_name().contains("Streaming") && !e.type_name().starts_with("stream"))
        .map(|e| match &e.body {
            EventBody::Run { step_number, .. } => {
                format!("{}@{step_number}", e.type_name())
            }
            EventBody::Runtime(_) => e.type_name(),
        })
        .collect()
}

/// `type@step` of one Expert's events.
fn types_of(events: &[Event], key: &str) -> Vec<String> {
    let mine: Vec<Event> = events
        .iter()
        .filter(|e| matches!(&e.body, EventBody::Run { expert_key, .. } if expert_key == key))
        .cloned()
        .collect();
    types(&mine)
}

fn last_checkpoint(events: &[Event], key: &str) -> Checkpoint {
    events
        .iter()
        .rev()
        .filter(|e| matches!(&e.body, EventBody::Run { expert_key, .. } if expert_key == key))
        .find_map(|e| match e.run_payload() {
            Some(
                RunPayload::CompleteRun { checkpoint, .. }
                | RunPayload::StopRunByInteractiveTool { checkpoint, .. }
                | RunPayload::StopRunByDelegate { checkpoint, .. }
                | RunPayload::StopRunByError { checkpoint, .. }
                | RunPayload::StopRunByExceededMaxSteps { checkpoint, .. }
                | RunPayload::ContinueToNextStep { checkpoint, .. },
            ) => Some(checkpoint.clone()),
            _ => None,
        })
        .expect("a checkpoint")
}

fn tool_texts(message: &Message) -> Vec<(String, String)> {
    message
        .contents
        .iter()
        .filter_map(|p| match p {
            Part::ToolResultPart {
                tool_name,
                contents,
                ..
            } => Some((
                tool_name.clone(),
                contents
                    .iter()
                    .find_map(Part::as_text)
                    .unwrap_or("")
                    .to_string(),
            )),
            _ => None,
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
async fn a_stop_request_ends_the_run_after_the_step_under_way_with_its_checkpoint() {
    let script =
        "[[turn]]\n[[turn.toolCalls]]\nname = \"nope\"\n\n[[turn]]\ntext = \"never asked\"\n";
    let job = TestJob::new(vec![expert()], script, 10);
    job.stop.request();
    let (outcome, events) = job.query("go").await;
    let RunOutcome::StoppedByError(error) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(error.name, INTERRUPTED);
    // Step 1 finished (its tool result is in), then the run stopped instead of going on.
    assert_eq!(
        types(&events),
        [
            "startRun@1",
            "startGeneration@1",
            "callTools@1",
            "resolveToolResults@1",
            "finishToolCall@1",
            "stopRunByError@1"
        ]
    );
    let checkpoint = last_checkpoint(&events, "main");
    assert_eq!(checkpoint.status, CheckpointStatus::StoppedByError);
    assert_eq!(checkpoint.step_number, 1);
    assert_eq!(
        checkpoint.messages.last().map(|m| m.kind),
        Some(MessageKind::ToolMessage)
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
    let Some(RunPayload::CallTools { tool_calls, .. }) = events[2].run_payload() else {
        panic!("expected callTools");
    };
    // No skill offers it, and the call says so rather than leaving the name empty.
    assert_eq!(tool_calls[0].skill_name, tools::NO_SKILL);
    let Some(RunPayload::ResolveToolResults { tool_results }) = events[3].run_payload() else {
        panic!("expected resolveToolResults");
    };
    assert_eq!(tool_results[0].skill_name, tools::NO_SKILL);
    assert_eq!(
        tool_results[0].result[0].as_text(),
        Some("Error calling tool nope: Tool nope not found. The tools you have: none.")
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
async fn a_model_calling_only_tools_it_lacks_is_stopped_after_max_retries() {
    let script = "[[turn]]\n[[turn.toolCalls]]\nname = \"nope\"\n\n\
                  [[turn]]\n[[turn.toolCalls]]\nname = \"nada\"\n\n[[turn]]\ntext = \"never\"\n";
    // maxRetries is 1: one step answered with "not found", the second in a row stops the run.
    let (outcome, events) = run(script, 10).await;
    let RunOutcome::StoppedByError(error) = outcome else {
        panic!("expected a stop by error, got {outcome:?}");
    };
    assert_eq!(error.name, TOOL_NOT_FOUND);
    assert_eq!(
        error.message,
        "Tool nada not found (the model called only tools the Expert lacks 2 times in a row)"
    );
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
            "stopRunByError@2"
        ]
    );
    let stopped = last_checkpoint(&events, "main");
    assert_eq!(stopped.retry_count, Some(2));

    // With maxRetries 0 the first such call stops the run, as Perstack's does.
    let mut job = TestJob::new(vec![expert()], script, 10);
    job.settings.max_retries = 0;
    let (outcome, _) = job.query("go").await;
    assert!(
        matches!(&outcome, RunOutcome::StoppedByError(e) if e.message == "Tool nope not found"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn max_steps_stops_the_run() {
    let script = "[[turn]]\n[[turn.toolCalls]]\nname = \"nope\"\n\n[[turn]]\ntext = \"never\"\n";
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
    // The reason is Perstack's JSON string, and the model is told the same text.
    let Some(RunPayload::Retry {
        reason,
        new_messages,
        ..
    }) = events[2].run_payload()
    else {
        panic!("retry");
    };
    let parsed: Value = serde_json::from_str(reason).expect("a JSON reason");
    assert_eq!(parsed["error"], "OutputLengthExceeded");
    assert!(parsed["message"].is_string());
    assert_eq!(new_messages[0].contents[0].as_text(), Some(reason.as_str()));
    // The checkpoint counts the failed generation, and a good one sets it back to 0.
    let Some(RunPayload::ContinueToNextStep { checkpoint, .. }) = events[3].run_payload() else {
        panic!("continueToNextStep");
    };
    assert_eq!(checkpoint.retry_count, Some(1));
    assert_eq!(last_checkpoint(&events, "main").retry_count, Some(0));
}

const ONE_DELEGATE: &str = r#"
[[turn]]
expert = "main"
thinking = "The helper knows."
[[turn.toolCalls]]
name = "helper"
id = "call-1"
args = { query = "Find X" }

[[turn]]
expert = "helper"
text = "X is 42."

[[turn]]
expert = "main"
text = "The answer is 42."
"#;

#[tokio::test]
async fn one_delegate_runs_as_a_child_and_the_parent_resumes_with_its_answer() {
    let job = TestJob::new(
        vec![expert_with("main", &["helper"]), expert_with("helper", &[])],
        ONE_DELEGATE,
        10,
    );
    let (outcome, all) = job.query("What is X?").await;
    let events = state_events(&all);
    assert_eq!(
        outcome,
        RunOutcome::Completed {
            text: "The answer is 42.".into()
        }
    );
    assert_eq!(
        types(&events),
        [
            "startRun@1",
            "startGeneration@1",
            "callTools@1",
            "callDelegate@1",
            "stopRunByDelegate@1",
            // The child: its own run, steps going on from the parent's.
            "initializeRuntime",
            "startRun@2",
            "startGeneration@2",
            "completeRun@2",
            // The parent, resumed in a new segment after the child's last step.
            "initializeRuntime",
            "startRun@3",
            "finishAllToolCalls@3",
            "continueToNextStep@3",
            "startGeneration@4",
            "completeRun@4",
        ]
    );
    let runs: Vec<&str> = events.iter().map(|e| e.run_id.as_str()).collect();
    assert_eq!(runs[0], "r");
    let child_run = runs[6];
    let resumed_run = runs[10];
    assert!(child_run != "r" && resumed_run != "r" && child_run != resumed_run);
    // Each later segment is announced by its own initializeRuntime (the first one is the
    // runtime's, before its skills connect): the child's with its query, the resumed parent's
    // with nothing new.
    let announced: Vec<(&str, &str, Option<&str>)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Runtime(RuntimePayload::InitializeRuntime {
                expert_name,
                query,
                interactive_tool_call: None,
                max_steps: Some(10),
                ..
            }) => Some((e.run_id.as_str(), expert_name.as_str(), query.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        announced,
        [
            (child_run, "helper", Some("Find X")),
            (resumed_run, "main", None)
        ]
    );
    assert_eq!(
        types_of(&events, "helper").len(),
        3,
        "child events carry its key"
    );

    // The parent's stop says whom it waits for; the child points back at that checkpoint.
    let stopped = last_checkpoint(&events[..5], "main");
    assert_eq!(stopped.status, CheckpointStatus::StoppedByDelegate);
    let delegate_to = stopped.delegate_to.clone().expect("delegateTo");
    assert_eq!(delegate_to[0].expert.key, "helper");
    assert_eq!(delegate_to[0].query, "Find X");
    assert_eq!(delegate_to[0].tool_call_id, "call-1");
    let Some(RunPayload::StartRun {
        initial_checkpoint,
        input_messages,
    }) = events[6].run_payload()
    else {
        panic!("child startRun");
    };
    let by = initial_checkpoint
        .delegated_by
        .clone()
        .expect("delegatedBy");
    assert_eq!(
        (by.checkpoint_id.as_str(), by.run_id.as_str()),
        (stopped.id.as_str(), "r")
    );
    assert_eq!(by.tool_call_id, "call-1");
    // Its own context window: its prompt and the query, none of the parent's history.
    assert_eq!(input_messages.len(), 2);
    assert_eq!(input_messages[1].contents[0].as_text(), Some("Find X"));
    assert!(
        input_messages[0].contents[0]
            .as_text()
            .is_some_and(|t| t.contains("You are helper."))
    );

    // The answer comes back as the delegate tool's result.
    let Some(RunPayload::FinishAllToolCalls { new_messages }) = events[11].run_payload() else {
        panic!("finishAllToolCalls");
    };
    assert_eq!(
        tool_texts(&new_messages[0]),
        [("helper".to_string(), "X is 42.".to_string())]
    );
    let done = last_checkpoint(&events, "main");
    assert_eq!(done.step_number, 4);
    assert!(done.delegate_to.is_none() && done.pending_tool_calls.is_none());
    // Usage: the parent's two generations and the child's one, counted once each.
    let per_turn: Vec<u64> = events
        .iter()
        .filter_map(|e| match e.run_payload() {
            Some(RunPayload::CompleteRun { usage, .. } | RunPayload::CallTools { usage, .. }) => {
                Some(usage.total_tokens)
            }
            _ => None,
        })
        .collect();
    assert_eq!(done.usage.total_tokens, per_turn.iter().sum::<u64>());
}

#[tokio::test]
async fn every_segment_begins_and_ends_its_skills_under_its_own_run_id() {
    let job = TestJob::new(
        vec![expert_with("main", &["helper"]), expert_with("helper", &[])],
        ONE_DELEGATE,
        10,
    );
    let (_, events) = job.query("What is X?").await;
    let later: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Runtime(RuntimePayload::InitializeRuntime { expert_name, .. }) => {
                Some((expert_name.clone(), e.run_id.clone()))
            }
            _ => None,
        })
        .collect();
    let [(child, child_run), (parent, parent_run)] = &later[..] else {
        panic!("two later segments, got {later:?}");
    };
    assert_eq!((child.as_str(), parent.as_str()), ("helper", "main"));
    // The first segment was begun by the caller (the runtime, before its skills connect).
    assert_eq!(
        job.segments.entries(),
        [
            "end main r".to_string(),
            format!("begin helper {child_run}"),
            format!("end helper {child_run}"),
            format!("begin main {parent_run}"),
            format!("end main {parent_run}"),
        ]
    );
}

#[tokio::test]
async fn two_delegates_in_one_step_run_concurrently() {
    let script = r#"
[[turn]]
expert = "main"
[[turn.toolCalls]]
name = "a"
id = "call-a"
args = { query = "part a" }
[[turn.toolCalls]]
name = "b"
id = "call-b"
args = { query = "part b" }

[[turn]]
expert = "a"
text = "A done"
delayMs = 300

[[turn]]
expert = "b"
[[turn.toolCalls]]
name = "nope"

[[turn]]
expert = "b"
text = "B done"
delayMs = 100

[[turn]]
expert = "main"
text = "Both done."
"#;
    let job = TestJob::new(
        vec![
            expert_with("main", &["a", "b"]),
            expert_with("a", &[]),
            expert_with("b", &[]),
        ],
        script,
        10,
    );
    let (outcome, events) = job.query("Do both").await;
    assert_eq!(
        outcome,
        RunOutcome::Completed {
            text: "Both done.".into()
        }
    );
    // Both children started before either finished.
    let position = |key: &str, ty: &str| {
        events
            .iter()
            .position(|e| {
                e.type_name() == ty
                    && matches!(&e.body, EventBody::Run { expert_key, .. } if expert_key == key)
            })
            .expect("event")
    };
    let first_done = position("a", "completeRun").min(position("b", "completeRun"));
    assert!(position("a", "startRun") < first_done && position("b", "startRun") < first_done);
    // Both start at the parent's next step; b takes two steps, a one.
    assert_eq!(
        types_of(&events, "a"),
        ["startRun@2", "startGeneration@2", "completeRun@2"]
    );
    assert_eq!(
        types_of(&events, "b").last().map(String::as_str),
        Some("completeRun@3")
    );
    // The parent resumes after the highest step, with both answers in call order.
    let main = types_of(&events, "main");
    assert_eq!(
        main[5..],
        [
            "startRun@4",
            "finishAllToolCalls@4",
            "continueToNextStep@4",
            "startGeneration@5",
            "completeRun@5"
        ]
    );
    let message = events
        .iter()
        .find_map(|e| match e.run_payload() {
            Some(RunPayload::FinishAllToolCalls { new_messages }) => Some(new_messages[0].clone()),
            _ => None,
        })
        .expect("results");
    assert_eq!(
        tool_texts(&message),
        [
            ("a".to_string(), "A done".to_string()),
            ("b".to_string(), "B done".to_string())
        ]
    );
    // Children count usage from zero; the parent sums them.
    let a = last_checkpoint(&events, "a").usage.total_tokens;
    let b = last_checkpoint(&events, "b").usage.total_tokens;
    let stopped = last_checkpoint(&events[..5], "main").usage.total_tokens;
    let Some(RunPayload::StartRun {
        initial_checkpoint, ..
    }) = events[position("main", "finishAllToolCalls") - 1].run_payload()
    else {
        panic!("resumed startRun");
    };
    assert_eq!(initial_checkpoint.usage.total_tokens, stopped + a + b);
}

#[tokio::test]
async fn delegation_nests_two_deep() {
    let script = r#"
[[turn]]
expert = "main"
[[turn.toolCalls]]
name = "mid"
args = { query = "ask the leaf" }

[[turn]]
expert = "mid"
[[turn.toolCalls]]
name = "leaf"
args = { query = "the deepest question" }

[[turn]]
expert = "leaf"
text = "deep answer"

[[turn]]
expert = "mid"
text = "mid heard: deep answer"

[[turn]]
expert = "main"
text = "main heard: mid heard: deep answer"
"#;
    let job = TestJob::new(
        vec![
            expert_with("main", &["mid"]),
            expert_with("mid", &["leaf"]),
            expert_with("leaf", &[]),
        ],
        script,
        20,
    );
    let (outcome, events) = job.query("go deep").await;
    assert_eq!(
        outcome,
        RunOutcome::Completed {
            text: "main heard: mid heard: deep answer".into()
        }
    );
    assert_eq!(
        types_of(&events, "leaf"),
        ["startRun@3", "startGeneration@3", "completeRun@3"]
    );
    assert_eq!(
        types_of(&events, "mid"),
        [
            "startRun@2",
            "startGeneration@2",
            "callTools@2",
            "callDelegate@2",
            "stopRunByDelegate@2",
            "startRun@4",
            "finishAllToolCalls@4",
            "continueToNextStep@4",
            "startGeneration@5",
            "completeRun@5"
        ]
    );
    let leaf = last_checkpoint(&events, "leaf");
    assert_eq!(leaf.delegated_by.expect("by").expert.key, "mid");
    assert_eq!(last_checkpoint(&events, "main").step_number, 7);
}

#[tokio::test]
async fn a_failing_sequential_delegate_stops_its_parent() {
    let script = r#"
[[turn]]
expert = "main"
[[turn.toolCalls]]
name = "helper"
args = { query = "try" }

[[turn]]
expert = "helper"
error = { status = 400, message = "bad request" }
"#;
    let job = TestJob::new(
        vec![expert_with("main", &["helper"]), expert_with("helper", &[])],
        script,
        10,
    );
    let (outcome, events) = job.query("go").await;
    let RunOutcome::StoppedByError(error) = outcome else {
        panic!("expected an error, got {outcome:?}");
    };
    assert_eq!(error.message, "delegate `helper` failed: bad request");
    assert_eq!(error.status_code, Some(400));
    assert_eq!(
        types(&events)[5..],
        [
            "initializeRuntime",
            "startRun@2",
            "startGeneration@2",
            "stopRunByError@2",
            "stopRunByError@2"
        ]
    );
    let main = last_checkpoint(&events, "main");
    assert_eq!(main.status, CheckpointStatus::StoppedByError);
}

const ASK: &str = r#"
[[turn]]
text = "I need to ask."
[[turn.toolCalls]]
name = "askUser"
id = "ask-1"
args = { question = "Which colour?" }

[[turn]]
text = "You chose blue."
"#;

#[tokio::test]
async fn an_interactive_tool_stops_the_run_and_an_answer_resumes_it() {
    let job = TestJob::new(vec![interactive_expert()], ASK, 10);
    let (outcome, events) = job.query("Paint it").await;
    assert_eq!(outcome, RunOutcome::StoppedByInteractiveTool);
    assert_eq!(
        types(&events),
        [
            "startRun@1",
            "startGeneration@1",
            "callTools@1",
            "callInteractiveTool@1",
            "stopRunByInteractiveTool@1"
        ]
    );
    let Some(RunPayload::CallInteractiveTool { tool_call, .. }) = events[3].run_payload() else {
        panic!("callInteractiveTool");
    };
    assert_eq!(
        (tool_call.tool_name.as_str(), tool_call.skill_name.as_str()),
        ("askUser", "ask")
    );
    let stopped = last_checkpoint(&events, "main");
    assert_eq!(stopped.status, CheckpointStatus::StoppedByInteractiveTool);
    assert_eq!(stopped.pending_tool_calls.as_ref().map(Vec::len), Some(1));

    // A new runtime, the same script: the played turn is skipped, the answer resumes the run.
    let resumed = TestJob::new(vec![interactive_expert()], ASK, 10);
    resumed.mock().skip_played("main", 1);
    let (outcome, events) = resumed
        .start(Start::Resume {
            checkpoint: stopped.clone(),
            input: ResumeInput::Answer(InteractiveToolCallResult {
                tool_call_id: "ask-1".into(),
                tool_name: "askUser".into(),
                skill_name: String::new(),
                text: "blue".into(),
            }),
        })
        .await;
    assert_eq!(
        outcome.expect("resumed"),
        RunOutcome::Completed {
            text: "You chose blue.".into()
        }
    );
    assert_eq!(
        types(&events),
        [
            "startRun@2",
            "finishAllToolCalls@2",
            "continueToNextStep@2",
            "startGeneration@3",
            "completeRun@3"
        ]
    );
    let Some(RunPayload::FinishAllToolCalls { new_messages }) = events[1].run_payload() else {
        panic!("finishAllToolCalls");
    };
    assert_eq!(
        tool_texts(&new_messages[0]),
        [("askUser".to_string(), "blue".to_string())]
    );
    let done = last_checkpoint(&events, "main");
    assert_eq!(done.job_id, "j");
    assert_ne!(done.run_id, stopped.run_id);

    // A query instead of an answer, or an answer to another call, is refused before any event.
    let (refused, events) = TestJob::new(vec![interactive_expert()], ASK, 10)
        .start(Start::Resume {
            checkpoint: stopped.clone(),
            input: ResumeInput::Query("blue".into()),
        })
        .await;
    assert_eq!(
        refused,
        Err(ResumeError::NeedsAnswer(vec!["askUser".into()]))
    );
    assert!(events.is_empty());
    let (refused, _) = TestJob::new(vec![interactive_expert()], ASK, 10)
        .start(Start::Resume {
            checkpoint: stopped,
            input: ResumeInput::Answer(InteractiveToolCallResult {
                tool_call_id: "other".into(),
                tool_name: "askUser".into(),
                skill_name: String::new(),
                text: "x".into(),
            }),
        })
        .await;
    assert!(
        matches!(refused, Err(ResumeError::NotPending { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_continued_runs_initialize_runtime_names_the_answered_calls_skill() {
    let job = TestJob::new(vec![interactive_expert()], ASK, 10);
    let (_, events) = job.query("Paint it").await;
    let stopped = last_checkpoint(&events, "main");
    // The answer came as plain text: its skill is the pending call's.
    let start = Start::Resume {
        checkpoint: stopped,
        input: ResumeInput::Answer(InteractiveToolCallResult {
            tool_call_id: "ask-1".into(),
            tool_name: "askUser".into(),
            skill_name: String::new(),
            text: "blue".into(),
        }),
    };
    let event = initialize_runtime(
        "j",
        "r2",
        &job.experts["main"],
        &job.experts,
        &job.settings,
        &start,
    );
    let line: Value = serde_json::from_str(&event.to_line()).expect("json");
    assert_eq!(
        line["interactiveToolCall"],
        serde_json::json!({"toolName": "askUser", "toolCallId": "ask-1", "skillName": "ask", "text": "blue"})
    );
}

#[tokio::test]
async fn calls_are_ordered_mcp_then_delegates_then_interactive() {
    let script = r#"
[[turn]]
expert = "main"
[[turn.toolCalls]]
name = "askUser"
id = "c-ask"
[[turn.toolCalls]]
name = "helper"
id = "c-help"
args = { query = "q" }
[[turn.toolCalls]]
name = "nope"
id = "c-mcp"

[[turn]]
expert = "helper"
text = "helped"
"#;
    let mut main = interactive_expert();
    main.delegates = vec!["helper".into()];
    let job = TestJob::new(vec![main, expert_with("helper", &[])], script, 10);
    let (outcome, events) = job.query("go").await;
    assert_eq!(outcome, RunOutcome::StoppedByInteractiveTool);
    let Some(RunPayload::CallTools {
        new_message,
        tool_calls,
        ..
    }) = events[2].run_payload()
    else {
        panic!("callTools");
    };
    let order: Vec<&str> = tool_calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(order, ["c-mcp", "c-help", "c-ask"]);
    let parts: Vec<&str> = new_message
        .contents
        .iter()
        .filter_map(|p| match p {
            Part::ToolCallPart { tool_call_id, .. } => Some(tool_call_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(parts, ["c-mcp", "c-help", "c-ask"]);
    // The delegate ran first; the parent then resumed the still-pending interactive call.
    assert_eq!(
        types_of(&events, "main"),
        [
            "startRun@1",
            "startGeneration@1",
            "callTools@1",
            "callDelegate@1",
            "stopRunByDelegate@1",
            "startRun@3",
            "resumeToolCalls@3",
            "callInteractiveTool@3",
            "stopRunByInteractiveTool@3"
        ]
    );
    let stopped = last_checkpoint(&events, "main");
    let pending: Vec<&str> = stopped
        .pending_tool_calls
        .iter()
        .flatten()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(pending, ["c-ask"]);
    let partial: Vec<(&str, &str)> = stopped
        .partial_tool_results
        .iter()
        .flatten()
        .map(|r| (r.id.as_str(), r.skill_name.as_str()))
        .collect();
    assert_eq!(
        partial,
        [("c-mcp", tools::NO_SKILL), ("c-help", "delegate/helper")]
    );
    // Each stop's step keeps what was waiting and what was gathered, as Perstack's does.
    let ids = |calls: &Option<Vec<ToolCall>>| -> Vec<String> {
        calls.iter().flatten().map(|c| c.id.clone()).collect()
    };
    let result_ids = |results: &Option<Vec<ToolResult>>| -> Vec<String> {
        results.iter().flatten().map(|r| r.id.clone()).collect()
    };
    let steps: Vec<&Step> = events
        .iter()
        .filter_map(|e| match e.run_payload() {
            Some(
                RunPayload::StopRunByDelegate { step, .. }
                | RunPayload::StopRunByInteractiveTool { step, .. },
            ) => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 2);
    assert_eq!(ids(&steps[0].pending_tool_calls), ["c-help", "c-ask"]);
    assert_eq!(result_ids(&steps[0].partial_tool_results), ["c-mcp"]);
    assert_eq!(ids(&steps[1].pending_tool_calls), ["c-ask"]);
    assert_eq!(
        result_ids(&steps[1].partial_tool_results),
        ["c-mcp", "c-help"]
    );
    // …and reads them back from the event line.
    let stop = events
        .iter()
        .find(|e| e.type_name() == "stopRunByDelegate")
        .expect("stopRunByDelegate");
    assert_eq!(Event::from_line(&stop.to_line()).ok().as_ref(), Some(stop));
}

#[tokio::test]
async fn a_perstack_delegating_checkpoint_continues_its_delegation() {
    // Perstack keeps the delegations of a `stoppedByDelegate` checkpoint in `delegateTo` only
    // and lists the other waiting calls as pending; the answer to the delegation resumes it.
    let script = r#"
[[turn]]
expert = "main"
[[turn.toolCalls]]
name = "askUser"
id = "c-ask"
[[turn.toolCalls]]
name = "helper"
id = "c-help"
args = { query = "q" }
"#;
    let mut main = interactive_expert();
    main.delegates = vec!["helper".into()];
    let experts = || vec![main.clone(), expert_with("helper", &[])];
    let job = TestJob::new(experts(), script, 10);
    let (_, events) = job.query("go").await;
    let mut upstream = events
        .iter()
        .find_map(|e| match e.run_payload() {
            Some(RunPayload::StopRunByDelegate { checkpoint, .. }) => Some(checkpoint.clone()),
            _ => None,
        })
        .expect("stopRunByDelegate");
    upstream
        .pending_tool_calls
        .as_mut()
        .expect("pending")
        .retain(|c| c.id == "c-ask");

    let resumed = TestJob::new(experts(), script, 10);
    resumed.mock().skip_played("main", 1);
    let (outcome, events) = resumed
        .start(Start::Resume {
            checkpoint: upstream,
            input: ResumeInput::Answer(InteractiveToolCallResult {
                tool_call_id: "c-help".into(),
                tool_name: "helper".into(),
                skill_name: "delegate/helper".into(),
                text: "helped".into(),
            }),
        })
        .await;
    assert_eq!(outcome, Ok(RunOutcome::StoppedByInteractiveTool));
    let stopped = last_checkpoint(&events, "main");
    let partial: Vec<(&str, &str)> = stopped
        .partial_tool_results
        .iter()
        .flatten()
        .map(|r| (r.id.as_str(), r.skill_name.as_str()))
        .collect();
    assert_eq!(partial, [("c-help", "delegate/helper")]);
    let pending: Vec<&str> = stopped
        .pending_tool_calls
        .iter()
        .flatten()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(pending, ["c-ask"]);
}

#[tokio::test]
async fn a_finished_run_continues_with_a_new_query_in_the_same_job() {
    let script = "[[turn]]\ntext = \"first\"\n\n[[turn]]\ntext = \"second\"\n";
    let job = TestJob::new(vec![expert()], script, 10);
    let (_, events) = job.query("one").await;
    let done = last_checkpoint(&events, "main");
    let again = TestJob::new(vec![expert()], script, 10);
    again.mock().skip_played("main", 1);
    let (outcome, events) = again
        .start(Start::Resume {
            checkpoint: done.clone(),
            input: ResumeInput::Query("two".into()),
        })
        .await;
    assert_eq!(
        outcome.expect("resumed"),
        RunOutcome::Completed {
            text: "second".into()
        }
    );
    assert_eq!(
        types(&events),
        ["startRun@2", "startGeneration@2", "completeRun@2"]
    );
    let Some(RunPayload::StartRun {
        input_messages,
        initial_checkpoint,
    }) = events[0].run_payload()
    else {
        panic!("startRun");
    };
    assert_eq!(input_messages.len(), 1);
    assert_eq!(input_messages[0].contents[0].as_text(), Some("two"));
    assert_eq!(initial_checkpoint.step_number, 2);
    assert_ne!(initial_checkpoint.id, done.id);
    let messages = last_checkpoint(&events, "main").messages;
    assert_eq!(messages.len(), 5, "instruction, one, first, two, second");
}

#[tokio::test]
async fn reasoning_streams_before_the_step_ends() {
    let script = "[[turn]]\nthinking = \"Let me think\"\ntext = \"Done.\"\n";
    let (_, events) = run(script, 10).await;
    let names: Vec<String> = events.iter().map(Event::type_name).collect();
    assert_eq!(
        names,
        [
            "startRun",
            "startGeneration",
            "startStreamingReasoning",
            "streamReasoning",
            "streamReasoning",
            "streamReasoning",
            "completeStreamingReasoning",
            "completeRun"
        ]
    );
    let Some(RunPayload::CompleteStreamingReasoning { text }) = events[6].run_payload() else {
        panic!("complete");
    };
    assert_eq!(text, "Let me think");
}

#[tokio::test]
async fn a_retryable_api_error_is_retried_with_a_retry_event_and_no_step_spent() {
    let script = "[[turn]]\nerror = { status = 429, message = \"rate limited\" }\n\n[[turn]]\ntext = \"ok\"\n";
    let (outcome, events) = run(script, 10).await;
    assert_eq!(outcome, RunOutcome::Completed { text: "ok".into() });
    assert_eq!(
        types(&events),
        [
            "startRun@1",
            "startGeneration@1",
            "retry@1",
            "completeRun@1"
        ]
    );
    let Some(RunPayload::Retry {
        reason,
        new_messages,
        ..
    }) = events[2].run_payload()
    else {
        panic!("retry");
    };
    assert!(new_messages.is_empty());
    // Perstack's form: the JSON string `{"error","message"}`.
    let reason: Value = serde_json::from_str(reason).expect("a JSON reason");
    assert_eq!(reason["error"], "AI_APICallError");
    let message = reason["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("rate limited") && message.contains("retry 1 of 1"),
        "{message}"
    );
}

#[tokio::test]
async fn attempt_completion_with_open_todos_sends_the_model_back_to_work() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let base = crate::skill::server::testing::skill(
        crate::config::BASE_SKILL_NAME,
        crate::skill::base::BaseSkill::new(workspace.path()).expect("workspace"),
    )
    .await;
    let script = r#"
[[turn]]
[[turn.toolCalls]]
name = "todo"
args = { newTodos = ["write the report"] }

[[turn]]
[[turn.toolCalls]]
name = "attemptCompletion"
[[turn.toolCalls]]
name = "healthCheck"

[[turn]]
[[turn.toolCalls]]
name = "todo"
args = { completedTodos = [0] }

[[turn]]
[[turn.toolCalls]]
name = "attemptCompletion"

[[turn]]
text = "Report written."
"#;
    let mut job = TestJob::new(vec![expert()], script, 20);
    let mut set = ToolSet::new();
    set.add_mcp(base, &[], &[]).expect("base");
    job.tools.insert("main".into(), set);
    let (outcome, all) = job.query("Write the report").await;
    assert_eq!(
        outcome,
        RunOutcome::Completed {
            text: "Report written.".into()
        }
    );
    let events = state_events(&all);
    assert_eq!(
        types(&events),
        [
            "startRun@1",
            "startGeneration@1",
            "callTools@1",
            "resolveToolResults@1",
            "finishToolCall@1",
            "continueToNextStep@1",
            // attemptCompletion with an open todo: it answers with the todo, the sibling call
            // is not run, and the loop goes on.
            "startGeneration@2",
            "callTools@2",
            "resolveToolResults@2",
            "finishToolCall@2",
            "continueToNextStep@2",
            "startGeneration@3",
            "callTools@3",
            "resolveToolResults@3",
            "finishToolCall@3",
            "continueToNextStep@3",
            // Nothing left: the final-result generation writes the answer.
            "startGeneration@4",
            "callTools@4",
            "attemptCompletion@4",
            "completeRun@4",
        ]
    );
    let Some(RunPayload::ResolveToolResults { tool_results }) = events[8].run_payload() else {
        panic!("resolveToolResults");
    };
    let completion: Value =
        serde_json::from_str(tool_results[0].result[0].as_text().expect("text")).expect("json");
    assert_eq!(completion["remainingTodos"][0]["title"], "write the report");
    assert!(
        tool_results[1].result[0]
            .as_text()
            .is_some_and(|t| t.starts_with("Not executed: healthCheck")),
        "{tool_results:?}"
    );
    // The answer streamed as the run's result.
    let streamed: String = all
        .iter()
        .filter_map(|e| match e.run_payload() {
            Some(RunPayload::StreamRunResult { delta }) => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, "Report written.");
}

/// A tool server whose `meet` returns "met" only once two calls are inside it at the same time
/// (and "alone" if the other never comes): proof that calls run concurrently, without timing.
#[derive(Default)]
struct Rendezvous {
    inside: std::sync::atomic::AtomicUsize,
    both: tokio::sync::Notify,
}

impl crate::skill::server::ToolServer for Rendezvous {
    const NAME: &'static str = "rendezvous";
    const TOOLS: &'static [crate::skill::server::ToolDef] = &[crate::skill::server::ToolDef {
        name: "meet",
        title: "Meet",
        description: "Wait for the other caller.",
        input_schema: || crate::skill::server::object_schema(serde_json::json!({}), &[]),
    }];

    async fn call_tool(
        &self,
        _name: &str,
        _args: Option<rmcp::model::JsonObject>,
    ) -> Result<rmcp::model::CallToolResult, rmcp::ErrorData> {
        // Registered before counting, so a partner arriving in between still wakes us.
        let notified = self.both.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let arrived = self
            .inside
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if arrived >= 2 {
            self.both.notify_waiters();
            return Ok(crate::skill::server::text_result("met"));
        }
        let met = tokio::time::timeout(Duration::from_secs(10), notified).await;
        Ok(crate::skill::server::text_result(if met.is_ok() {
            "met"
        } else {
            "alone"
        }))
    }
}

#[tokio::test]
async fn mcp_calls_of_one_step_run_concurrently() {
    let skill = crate::skill::server::testing::skill("rendezvous", Rendezvous::default()).await;
    let script = r#"
[[turn]]
[[turn.toolCalls]]
name = "meet"
[[turn.toolCalls]]
name = "meet"

[[turn]]
text = "We met."
"#;
    let mut job = TestJob::new(vec![expert()], script, 5);
    let mut set = ToolSet::new();
    set.add_mcp(skill, &[], &[]).expect("skill");
    job.tools.insert("main".into(), set);
    let (_, events) = job.query("meet").await;
    let results: Vec<String> = events
        .iter()
        .find_map(|e| match e.run_payload() {
            Some(RunPayload::ResolveToolResults { tool_results }) => Some(
                tool_results
                    .iter()
                    .map(|r| r.result[0].as_text().unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .expect("results");
    assert_eq!(results, ["met", "met"]);
}

#[tokio::test]
async fn a_perstack_checkpoint_with_binary_results_continues_and_stays_in_its_schema() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream/checkpoints/cp02interactive.json");
    let checkpoint: Checkpoint =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("parses");
    let mut coordinator = interactive_expert();
    coordinator.key = "coordinator".into();
    coordinator.name = "coordinator".into();
    let Some(Skill::Interactive(ask)) = coordinator.skills.shift_remove("ask") else {
        panic!("the interactive skill");
    };
    coordinator.skills.insert(
        "user".into(),
        Skill::Interactive(InteractiveSkill {
            name: "user".into(),
            ..ask
        }),
    );
    let job = TestJob::new(
        vec![coordinator],
        "[[turn]]\nexpert = \"coordinator\"\ntext = \"PDF it is.\"\n",
        10,
    );
    let (outcome, events) = job
        .start(Start::Resume {
            checkpoint,
            input: ResumeInput::Answer(InteractiveToolCallResult {
                tool_call_id: "toolu_ask".into(),
                tool_name: "askUser".into(),
                skill_name: String::new(),
                text: "PDF".into(),
            }),
        })
        .await;
    assert_eq!(
        outcome,
        Ok(RunOutcome::Completed {
            text: "PDF it is.".into()
        })
    );
    let Some(RunPayload::FinishAllToolCalls { new_messages }) = events
        .iter()
        .find(|e| e.type_name() == "finishAllToolCalls")
        .and_then(Event::run_payload)
    else {
        panic!("finishAllToolCalls");
    };
    // Perstack's toolResultPart holds text, inline images and inline files only: the binary
    // parts of a stored result go to the model as the inline ones they are.
    let mut kinds = vec![];
    for part in &new_messages[0].contents {
        let Part::ToolResultPart { contents, .. } = part else {
            panic!("a tool result part: {part:?}");
        };
        for inner in contents {
            kinds.push(match inner {
                Part::TextPart { .. } => "text",
                Part::ImageInlinePart { .. } => "imageInline",
                Part::FileInlinePart { .. } => "fileInline",
                other => panic!("not allowed in a toolResultPart: {other:?}"),
            });
        }
    }
    // In call order (readImageFile, the delegate, the answer), then the result of no call of
    // that message (the binary ones).
    assert_eq!(
        kinds,
        [
            "imageInline",
            "text",
            "text",
            "text",
            "fileInline",
            "imageInline"
        ]
    );
}
