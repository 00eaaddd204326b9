//! The event stream: perstack-sandbox's one wire format.
//!
//! `perstack-sandbox run --json` writes one JSON object per line to stdout (JSON Lines, UTF-8,
//! `\n`-terminated), and nothing else goes to stdout. The objects are Perstack's events
//! (PERSTACK-COMPAT.md §3), so a consumer of `perstack run` reads ours unchanged.
//!
//! There are two families, told apart by the presence of `expertKey`:
//!
//! * **Run events** — keys `type, id, expertKey, timestamp, jobId, runId, stepNumber`, then the
//!   payload. They describe the agent loop: `startRun`, `startGeneration`, `retry`, `callTools`,
//!   `callInteractiveTool`, `callDelegate`, `resolveToolResults`, `attemptCompletion`,
//!   `finishToolCall`, `resumeToolCalls`, `finishAllToolCalls`, `continueToNextStep`, the stops
//!   `stopRunByInteractiveTool`, `stopRunByDelegate`, `stopRunByExceededMaxSteps`,
//!   `stopRunByError`, and `completeRun`; plus the streaming events `startStreamingReasoning`,
//!   `streamReasoning`, `completeStreamingReasoning`, `startStreamingRunResult`,
//!   `streamRunResult`, `completeStreamingRunResult`.
//! * **Runtime events** — keys `type, id, timestamp, jobId, runId`, then the payload. They describe
//!   the machinery: `initializeRuntime`, `skillStarting`, `skillConnected`, `skillStderr`,
//!   `skillDisconnected`, `dockerBuildProgress`, `dockerContainerStatus`, `proxyAccess`,
//!   `trustedInputChanged`, `isolationReport` (ours: a run with `--allow-weaker-isolation` on an
//!   engine that lacks part of the isolation, first, saying what is missing), and
//!   `toolDefinitions` (ours: only `install`'s listing run emits it, and `install` reads it; no
//!   job records it).
//!
//! Who writes what: the runtime container emits the run events, `initializeRuntime` and the
//! `skill*` connection events on its stdout; the host controller relays each line as it arrives
//! and adds its own `dockerBuildProgress`, `dockerContainerStatus` and `skillStderr` (read from
//! the skill containers' stderr), with the job's `jobId` and its first `runId`.
//!
//! `trustedInputChanged` is ours alone: after a run's containers are gone, one per trusted input
//! (the config, a dotenv file, the mock script) whose digest is not what it was when the run
//! started — `path`, `kind` (`config`, `dotenv`, `mock-script`), `change` (`created`,
//! `changed`, `removed`), `before` and `after` (`absent`, `sha256:<hex>`, `link:<target> -> …`)
//! and `acceptCommand`, the command that accepts it. The next run in that workspace refuses to
//! start until it is accepted (README, "When a run changed what runs trust").
//!
//! Run segments: every segment of a job — the coordinator's first, each delegate's run, each
//! segment a parent resumes in after its delegates — has its own `runId`, announced by its own
//! `initializeRuntime` (whose `expertName` says whose run it is), then `skillStarting` and
//! `skillConnected` for the MCP skills of that Expert, and ends with `skillDisconnected` for
//! them after its last run event. Connections live for the whole job: the first segment told of
//! one gets its durations, a later one a `skillConnected` without them (docs/skills.md,
//! "Events"). A `skillStderr` whose `message` begins with [`RUNTIME_WARNING_PREFIX`] is the
//! runtime's own warning about that skill (a `pick` or `omit` naming a tool it lacks), under
//! the segment's `runId`.
//!
//! Values as Perstack writes them (its zod schemas in `packages/core/src/schemas/`; fixtures in
//! `tests/fixtures/upstream/` read back unchanged):
//! * `retry.reason` is the JSON text `{"error": name, "message": …}`.
//! * Message parts include `imageBinaryPart` / `fileBinaryPart` (`{id, data, mimeType}`, the
//!   data base64 in JSON); we never make them but read, keep and send them like inline parts.
//! * The `step` of `stopRunByDelegate` and `stopRunByInteractiveTool` carries
//!   `pendingToolCalls` (the delegate and interactive calls waiting) and `partialToolResults`
//!   (what the step's MCP calls returned), as does the checkpoint.
//! * Checkpoints carry `retryCount`: unusable generations in a row, 0 after a usable one.
//! * `initializeRuntime.interactiveToolCall` carries `skillName` too, as Perstack's runtime
//!   emits it (its schema leaves it out).
//! * A number with no fractional part is written as an integer (`contextWindowUsage: 0`).
//!
//! Where we differ from Perstack, on purpose:
//! * `retry` is also emitted before each backoff after a retryable API error (429, 5xx,
//!   overloaded…): its `reason`'s `error` is the error's name, its `message` the error's message
//!   with the retry's number and the wait; `newMessages` is empty and no step is spent, because
//!   the model saw nothing of the failed attempt. The `retry` that costs a step (Perstack's) is
//!   kept for generations with nothing usable in them (`error` `NoToolCallOrText` or
//!   `OutputLengthExceeded`; the model is told the same JSON text).
//! * A parent whose sequential delegate fails or runs out of steps emits its own
//!   `stopRunByError` / `stopRunByExceededMaxSteps` after the child's, so the coordinator's
//!   terminal event always says how the job ended.
//! * A run stopped by the user's first Ctrl-C ends, after the step under way, with
//!   `stopRunByError` whose `error.name` is `"Interrupted"`, in place of that step's
//!   `continueToNextStep`: its checkpoint is the finished step's, which `--continue` resumes.
//! * A call to a tool the Expert lacks does not stop the run (Perstack's throws `Tool X not
//!   found`): its `ToolCall` and `ToolResult` have `skillName` `"(none)"` and the result is an
//!   error naming the tools there are. Only when every call of `maxRetries + 1` generations in a
//!   row is such a call does the run stop, with `stopRunByError` `error.name` `"ToolNotFound"`
//!   (docs/skills.md, "Calls to a tool the Expert lacks").
//! * `skillStarting` of a skill granted the workspace (`[sandbox.skills."x"] workspace`)
//!   carries `workspace`: `"read-only"` or `"read-write"`, the grant (docs/skills.md).
//!
//! Timestamps are milliseconds since the Unix epoch. Ids are opaque strings.

mod sink;
mod types;

pub(crate) use sink::EventSink;

pub(crate) use types::*;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How a `skillStderr` line the runtime writes itself begins: a warning about the skill found
/// when connecting it (a `pick` or `omit` naming a tool it does not offer), not its server's
/// output.
pub(crate) const RUNTIME_WARNING_PREFIX: &str = "perstack-sandbox: warning: ";

/// One event: the common header and a payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    /// Unique id.
    pub id: String,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
    /// The job.
    pub job_id: String,
    /// The run segment.
    pub run_id: String,
    /// Run or runtime payload.
    pub body: EventBody,
}

/// The two families of events.
// Events are built once and moved once (to the writer); boxing the big variants would only add
// allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EventBody {
    /// An event of the agent loop, tied to an Expert and a step.
    Run {
        /// Which Expert's run.
        expert_key: String,
        /// Job-global step number.
        step_number: u32,
        /// What happened.
        payload: RunPayload,
    },
    /// An event of the machinery around the loop.
    Runtime(RuntimePayload),
}

/// Payloads of run events (§3 "State events" and "Streaming").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[allow(missing_docs)] // Field names are Perstack's; §3 documents them.
#[allow(clippy::large_enum_variant)] // See `EventBody`.
pub(crate) enum RunPayload {
    #[serde(rename_all = "camelCase")]
    StartRun {
        initial_checkpoint: Checkpoint,
        input_messages: Vec<Message>,
    },
    #[serde(rename_all = "camelCase")]
    StartGeneration {
        messages: Vec<Message>,
    },
    #[serde(rename_all = "camelCase")]
    Retry {
        reason: String,
        new_messages: Vec<Message>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_results: Option<Vec<ToolResult>>,
        usage: Usage,
    },
    #[serde(rename_all = "camelCase")]
    CallTools {
        new_message: Message,
        tool_calls: Vec<ToolCall>,
        usage: Usage,
    },
    #[serde(rename_all = "camelCase")]
    CallInteractiveTool {
        new_message: Message,
        tool_call: ToolCall,
        usage: Usage,
    },
    #[serde(rename_all = "camelCase")]
    CallDelegate {
        new_message: Message,
        tool_calls: Vec<ToolCall>,
        usage: Usage,
    },
    #[serde(rename_all = "camelCase")]
    ResolveToolResults {
        tool_results: Vec<ToolResult>,
    },
    #[serde(rename_all = "camelCase")]
    AttemptCompletion {
        tool_result: ToolResult,
    },
    #[serde(rename_all = "camelCase")]
    FinishToolCall {
        new_messages: Vec<Message>,
    },
    #[serde(rename_all = "camelCase")]
    ResumeToolCalls {
        pending_tool_calls: Vec<ToolCall>,
        partial_tool_results: Vec<ToolResult>,
    },
    #[serde(rename_all = "camelCase")]
    FinishAllToolCalls {
        new_messages: Vec<Message>,
    },
    #[serde(rename_all = "camelCase")]
    ContinueToNextStep {
        checkpoint: Checkpoint,
        step: Step,
        next_checkpoint: Checkpoint,
    },
    #[serde(rename_all = "camelCase")]
    StopRunByInteractiveTool {
        checkpoint: Checkpoint,
        step: Step,
    },
    #[serde(rename_all = "camelCase")]
    StopRunByDelegate {
        checkpoint: Checkpoint,
        step: Step,
    },
    #[serde(rename_all = "camelCase")]
    StopRunByExceededMaxSteps {
        checkpoint: Checkpoint,
        step: Step,
    },
    #[serde(rename_all = "camelCase")]
    StopRunByError {
        checkpoint: Checkpoint,
        step: Step,
        error: RunError,
    },
    #[serde(rename_all = "camelCase")]
    CompleteRun {
        checkpoint: Checkpoint,
        step: Step,
        text: String,
        usage: Usage,
    },
    StartStreamingReasoning {},
    StreamReasoning {
        delta: String,
    },
    CompleteStreamingReasoning {
        text: String,
    },
    StartStreamingRunResult {},
    StreamRunResult {
        delta: String,
    },
    CompleteStreamingRunResult {
        text: String,
    },
}

/// Payloads of runtime events (§3 "Runtime").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[allow(missing_docs)] // Field names are Perstack's; §3 documents them.
pub(crate) enum RuntimePayload {
    #[serde(rename_all = "camelCase")]
    InitializeRuntime {
        runtime_version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runtime: Option<String>,
        expert_name: String,
        experts: Vec<String>,
        model: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_steps: Option<u32>,
        max_retries: u32,
        timeout: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interactive_tool_call: Option<InteractiveToolCall>,
    },
    #[serde(rename_all = "camelCase")]
    SkillStarting {
        skill_name: String,
        command: String,
        args: Vec<String>,
        /// Ours: `"read-only"` or `"read-write"` when the skill mounts the workspace
        /// (`[sandbox.skills."x"] workspace`); absent for base-skill and every other skill.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    SkillConnected {
        skill_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_info: Option<ServerInfo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spawn_duration_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handshake_duration_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_discovery_duration_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connect_duration_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_duration_ms: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    SkillStderr { skill_name: String, message: String },
    #[serde(rename_all = "camelCase")]
    SkillDisconnected { skill_name: String },
    #[serde(rename_all = "camelCase")]
    DockerBuildProgress {
        stage: BuildStage,
        service: String,
        message: String,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            serialize_with = "types::js_number::option"
        )]
        progress: Option<f64>,
    },
    #[serde(rename_all = "camelCase")]
    DockerContainerStatus {
        status: ContainerStatus,
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Ours: what `install`'s listing run (`runtime --list-tools`) found for one Expert: its
    /// MCP skills' tools after `pick`/`omit`, as perstack.lock's `toolDefinitions` entries
    /// (`{skillName, name, description?, inputSchema}`). `expert`, not `expertKey`, which marks
    /// a run event.
    #[serde(rename_all = "camelCase")]
    ToolDefinitions {
        expert: String,
        tool_definitions: Vec<serde_json::Value>,
    },
    /// Ours: a run changed (or created, or removed) a file the controller trusts.
    #[serde(rename_all = "camelCase")]
    TrustedInputChanged {
        path: String,
        kind: String,
        change: String,
        before: String,
        after: String,
        accept_command: String,
    },
    /// Ours: the run goes on without part of its isolation (`run --allow-weaker-isolation` on
    /// an engine that cannot hold it): the engine, what is `missing` (`memory limit`,
    /// `process limit`, `CPU limit`) and why. The first event of such a run. A standalone
    /// image's `isolationReport` (`standalone/report.rs`) has the same `type` and `missing`,
    /// with the kernel's protections instead of an engine.
    #[serde(rename_all = "camelCase")]
    IsolationReport {
        #[serde(default)]
        engine: String,
        missing: Vec<String>,
        #[serde(default)]
        reason: String,
    },
    #[serde(rename_all = "camelCase")]
    ProxyAccess {
        action: ProxyAction,
        domain: String,
        port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Ours: who asked, `runtime` or the skill's service name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
}

/// The answer a continued run starts with (`initializeRuntime.interactiveToolCall`).
///
/// Perstack's schema declares `{toolName, toolCallId, text}`, but its runtime emits the run's
/// whole `interactiveToolCallResult` there, `skillName` included; so do we, and a line without
/// it reads back without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InteractiveToolCall {
    /// The tool answered.
    pub tool_name: String,
    /// The call answered.
    pub tool_call_id: String,
    /// The skill of the tool answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill_name: Option<String>,
    /// The answer.
    pub text: String,
}

/// An MCP server's self-description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServerInfo {
    /// Server name.
    pub name: String,
    /// Server version.
    pub version: String,
}

/// Stages of `dockerBuildProgress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BuildStage {
    /// Fetching a base image.
    Pulling,
    /// Building.
    Building,
    /// Done (built, or found in the cache).
    Complete,
    /// Failed.
    Error,
}

/// States of `dockerContainerStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ContainerStatus {
    /// Being created.
    Starting,
    /// Started.
    Running,
    /// Passed its readiness check.
    Healthy,
    /// Failed its readiness check.
    Unhealthy,
    /// Exited or removed.
    Stopped,
    /// Failed.
    Error,
}

/// Decisions of `proxyAccess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProxyAction {
    /// Let through.
    Allowed,
    /// Refused.
    Blocked,
}

/// Why a line could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EventParseError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object with our header fields and a known `type`.
    #[error("not a perstack event: {0}")]
    NotEvent(String),
}

impl Event {
    /// A run event stamped now, with a fresh id.
    pub(crate) fn run(
        job_id: &str,
        run_id: &str,
        expert_key: &str,
        step_number: u32,
        payload: RunPayload,
    ) -> Event {
        Event {
            id: crate::ids::new_id(),
            timestamp: crate::ids::now_ms(),
            job_id: job_id.to_string(),
            run_id: run_id.to_string(),
            body: EventBody::Run {
                expert_key: expert_key.to_string(),
                step_number,
                payload,
            },
        }
    }

    /// A runtime event stamped now, with a fresh id.
    pub(crate) fn runtime(job_id: &str, run_id: &str, payload: RuntimePayload) -> Event {
        Event {
            id: crate::ids::new_id(),
            timestamp: crate::ids::now_ms(),
            job_id: job_id.to_string(),
            run_id: run_id.to_string(),
            body: EventBody::Runtime(payload),
        }
    }

    /// The event's `type`, e.g. `completeRun`.
    #[cfg(test)]
    pub(crate) fn type_name(&self) -> String {
        let value = match &self.body {
            EventBody::Run { payload, .. } => serde_json::to_value(payload),
            EventBody::Runtime(payload) => serde_json::to_value(payload),
        };
        value
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default()
    }

    /// The event as a JSON object with Perstack's key order: `type`, the header, the payload.
    pub(crate) fn to_value(&self) -> Value {
        let (payload, run_header) = match &self.body {
            EventBody::Run {
                expert_key,
                step_number,
                payload,
            } => (
                serde_json::to_value(payload),
                Some((expert_key, *step_number)),
            ),
            EventBody::Runtime(payload) => (serde_json::to_value(payload), None),
        };
        let mut payload = match payload {
            Ok(Value::Object(map)) => map,
            // Every payload is a struct variant of an internally tagged enum, which always
            // serializes to an object; keep the header even if that ever changed.
            _ => Map::new(),
        };
        let mut out = Map::new();
        out.insert(
            "type".into(),
            payload.shift_remove("type").unwrap_or(Value::Null),
        );
        out.insert("id".into(), Value::from(self.id.clone()));
        if let Some((expert_key, _)) = run_header {
            out.insert("expertKey".into(), Value::from(expert_key.clone()));
        }
        out.insert("timestamp".into(), Value::from(self.timestamp));
        out.insert("jobId".into(), Value::from(self.job_id.clone()));
        out.insert("runId".into(), Value::from(self.run_id.clone()));
        if let Some((_, step_number)) = run_header {
            out.insert("stepNumber".into(), Value::from(step_number));
        }
        out.extend(payload);
        Value::Object(out)
    }

    /// The event as one JSON Lines record, without the trailing newline.
    pub(crate) fn to_line(&self) -> String {
        self.to_value().to_string()
    }

    /// Reads one JSON Lines record.
    pub(crate) fn from_line(line: &str) -> Result<Event, EventParseError> {
        let value: Value = serde_json::from_str(line).map_err(EventParseError::NotJson)?;
        Event::from_value(value)
    }

    /// Reads an event from a JSON object.
    pub(crate) fn from_value(value: Value) -> Result<Event, EventParseError> {
        let Value::Object(map) = &value else {
            return Err(EventParseError::NotEvent("expected a JSON object".into()));
        };
        let field = |name: &str| {
            map.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| EventParseError::NotEvent(format!("missing string field `{name}`")))
        };
        let id = field("id")?;
        let job_id = field("jobId")?;
        let run_id = field("runId")?;
        let timestamp = map
            .get("timestamp")
            .and_then(Value::as_u64)
            .ok_or_else(|| EventParseError::NotEvent("missing numeric `timestamp`".into()))?;
        let expert_key = map
            .get("expertKey")
            .and_then(Value::as_str)
            .map(str::to_string);
        let body = match expert_key {
            Some(expert_key) => {
                let step_number = map
                    .get("stepNumber")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| EventParseError::NotEvent("missing `stepNumber`".into()))?;
                let payload = RunPayload::deserialize(&value)
                    .map_err(|e| EventParseError::NotEvent(e.to_string()))?;
                EventBody::Run {
                    expert_key,
                    step_number,
                    payload,
                }
            }
            None => EventBody::Runtime(
                RuntimePayload::deserialize(&value)
                    .map_err(|e| EventParseError::NotEvent(e.to_string()))?,
            ),
        };
        Ok(Event {
            id,
            timestamp,
            job_id,
            run_id,
            body,
        })
    }

    /// The run payload, if this is a run event.
    #[cfg(test)]
    pub(crate) fn run_payload(&self) -> Option<&RunPayload> {
        match &self.body {
            EventBody::Run { payload, .. } => Some(payload),
            EventBody::Runtime(_) => None,
        }
    }
}

#[cfg(test)]
mod upstream_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_events_put_type_then_header_then_payload() {
        let event = Event {
            id: "e1".into(),
            timestamp: 1_735_000_000_000,
            job_id: "j1".into(),
            run_id: "r1".into(),
            body: EventBody::Run {
                expert_key: "rev".into(),
                step_number: 1,
                payload: RunPayload::ResolveToolResults {
                    tool_results: vec![ToolResult {
                        id: "t1".into(),
                        skill_name: "@perstack/base".into(),
                        tool_name: "readTextFile".into(),
                        result: vec![Part::TextPart {
                            id: "p4".into(),
                            text: "{}".into(),
                        }],
                    }],
                },
            },
        };
        assert_eq!(
            event.to_line(),
            r#"{"type":"resolveToolResults","id":"e1","expertKey":"rev","timestamp":1735000000000,"jobId":"j1","runId":"r1","stepNumber":1,"toolResults":[{"id":"t1","skillName":"@perstack/base","toolName":"readTextFile","result":[{"type":"textPart","id":"p4","text":"{}"}]}]}"#
        );
        assert_eq!(Event::from_line(&event.to_line()).ok(), Some(event));
    }

    #[test]
    fn runtime_events_have_no_expert_key() {
        let line = r#"{"type":"skillConnected","id":"e2","timestamp":1,"jobId":"j1","runId":"r1","skillName":"web","serverInfo":{"name":"exa","version":"1.0.0"},"spawnDurationMs":5,"handshakeDurationMs":850,"toolDiscoveryDurationMs":30,"connectDurationMs":855,"totalDurationMs":890}"#;
        let event = Event::from_line(line).expect("parses");
        assert!(matches!(
            event.body,
            EventBody::Runtime(RuntimePayload::SkillConnected { .. })
        ));
        assert_eq!(event.to_line(), line);
        assert_eq!(event.type_name(), "skillConnected");
    }

    #[test]
    fn perstack_examples_parse() {
        for line in [
            r#"{"type":"initializeRuntime","id":"e0","timestamp":1735000000000,"jobId":"j1","runId":"r1","runtimeVersion":"0.0.76","runtime":"local","expertName":"rev","experts":["rev"],"model":"claude-sonnet-4-5","maxSteps":100,"maxRetries":5,"timeout":300000,"query":"Review README.md"}"#,
            r#"{"type":"dockerBuildProgress","id":"x","timestamp":1,"jobId":"j1","runId":"r1","stage":"building","service":"runtime","message":"Building Docker images..."}"#,
            r#"{"type":"proxyAccess","id":"x","timestamp":1,"jobId":"j1","runId":"r1","action":"blocked","domain":"evil.example.com","port":443,"reason":"Domain not in allowlist"}"#,
            r#"{"type":"callTools","id":"e3","expertKey":"rev","timestamp":1735000002000,"jobId":"j1","runId":"r1","stepNumber":1,"newMessage":{"type":"expertMessage","id":"m3","contents":[{"type":"toolCallPart","id":"p3","toolCallId":"t1","toolName":"readTextFile","args":{"path":"README.md"}}]},"toolCalls":[{"id":"t1","skillName":"@perstack/base","toolName":"readTextFile","args":{"path":"README.md"}}],"usage":{"inputTokens":1,"outputTokens":2,"reasoningTokens":0,"totalTokens":3,"cachedInputTokens":0}}"#,
        ] {
            let event = Event::from_line(line).expect(line);
            assert_eq!(event.to_line(), line);
        }
    }

    #[test]
    fn garbage_is_reported_not_panicked_on() {
        assert!(matches!(
            Event::from_line("hello"),
            Err(EventParseError::NotJson(_))
        ));
        assert!(matches!(
            Event::from_line(r#"{"type":"nope"}"#),
            Err(EventParseError::NotEvent(_))
        ));
    }
}
