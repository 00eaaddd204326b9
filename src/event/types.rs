//! The value types that events carry: messages and their parts, tool calls and results, usage,
//! steps and checkpoints (PERSTACK-COMPAT.md §3 "Types" and §4 "Checkpoint").

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Token usage. Always cumulative on checkpoints, per generation elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Reasoning tokens (a subset of output on most providers).
    pub reasoning_tokens: u64,
    /// Input + output.
    pub total_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_input_tokens: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;

    /// The sum of two usages, field by field.
    fn add(self, other: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens + other.input_tokens,
            output_tokens: self.output_tokens + other.output_tokens,
            reasoning_tokens: self.reasoning_tokens + other.reasoning_tokens,
            total_tokens: self.total_tokens + other.total_tokens,
            cached_input_tokens: self.cached_input_tokens + other.cached_input_tokens,
        }
    }
}

/// A call the model asked for, routed to a skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolCall {
    /// The provider's call id.
    pub id: String,
    /// The skill that exposes the tool.
    pub skill_name: String,
    /// The tool's name.
    pub tool_name: String,
    /// The arguments (a JSON object).
    pub args: Value,
}

/// The result of one tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolResult {
    /// The id of the call this answers.
    pub id: String,
    /// The skill that ran it.
    pub skill_name: String,
    /// The tool's name.
    pub tool_name: String,
    /// What the tool returned, as parts.
    pub result: Vec<Part>,
}

/// The kinds of message in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
// The variants are Perstack's wire type names (`rename_all`), suffix included.
#[allow(clippy::enum_variant_names)]
pub(crate) enum MessageKind {
    /// The system prompt (text parts).
    InstructionMessage,
    /// The user's query, or a retry notice.
    UserMessage,
    /// The model's turn: thinking, text and tool calls.
    ExpertMessage,
    /// Tool results.
    ToolMessage,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Message {
    /// The kind of message.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// Unique id.
    pub id: String,
    /// The parts.
    pub contents: Vec<Part>,
    /// Whether providers may cache the prompt up to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
}

/// A piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
// The variants are Perstack's wire type names (`rename_all`), suffix included.
#[allow(clippy::enum_variant_names)]
pub(crate) enum Part {
    /// Plain text.
    #[serde(rename_all = "camelCase")]
    TextPart {
        /// Unique id.
        id: String,
        /// The text.
        text: String,
    },
    /// An image by URL.
    #[serde(rename_all = "camelCase")]
    ImageUrlPart {
        /// Unique id.
        id: String,
        /// Where the image is.
        url: String,
        /// Its MIME type.
        mime_type: String,
    },
    /// An image, base64-encoded.
    #[serde(rename_all = "camelCase")]
    ImageInlinePart {
        /// Unique id.
        id: String,
        /// Base64 data.
        encoded_data: String,
        /// Its MIME type.
        mime_type: String,
    },
    /// An image as a string of data (Perstack's "binary" part: in JSON its `data` is base64,
    /// which is how the providers are sent it).
    #[serde(rename_all = "camelCase")]
    ImageBinaryPart {
        /// Unique id.
        id: String,
        /// The data, base64.
        data: String,
        /// Its MIME type.
        mime_type: String,
    },
    /// A file by URL.
    #[serde(rename_all = "camelCase")]
    FileUrlPart {
        /// Unique id.
        id: String,
        /// Where the file is.
        url: String,
        /// Its MIME type.
        mime_type: String,
    },
    /// A file, base64-encoded.
    #[serde(rename_all = "camelCase")]
    FileInlinePart {
        /// Unique id.
        id: String,
        /// Base64 data.
        encoded_data: String,
        /// Its MIME type.
        mime_type: String,
    },
    /// A file as a string of data (Perstack's "binary" part: in JSON its `data` is base64).
    #[serde(rename_all = "camelCase")]
    FileBinaryPart {
        /// Unique id.
        id: String,
        /// The data, base64.
        data: String,
        /// Its MIME type.
        mime_type: String,
    },
    /// A tool call in an expert message.
    #[serde(rename_all = "camelCase")]
    ToolCallPart {
        /// Unique id.
        id: String,
        /// The provider's call id.
        tool_call_id: String,
        /// The tool's name.
        tool_name: String,
        /// The arguments.
        args: Value,
    },
    /// The model's reasoning.
    #[serde(rename_all = "camelCase")]
    ThinkingPart {
        /// Unique id.
        id: String,
        /// The reasoning text.
        thinking: String,
        /// Provider signature, needed to send thinking back (Anthropic).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A tool result in a tool message.
    #[serde(rename_all = "camelCase")]
    ToolResultPart {
        /// Unique id.
        id: String,
        /// The call this answers.
        tool_call_id: String,
        /// The tool's name.
        tool_name: String,
        /// What the tool returned.
        contents: Vec<Part>,
        /// True when the call failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
}

impl Part {
    /// A text part with a fresh id.
    pub(crate) fn text(text: impl Into<String>) -> Part {
        Part::TextPart {
            id: crate::ids::new_id(),
            text: text.into(),
        }
    }

    /// The text of a text part.
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Part::TextPart { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// The state of a checkpoint (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum CheckpointStatus {
    /// Before the first step.
    Init,
    /// Mid-run.
    Proceeding,
    /// Finished with a result.
    Completed,
    /// Waiting for the user to answer an interactive tool.
    StoppedByInteractiveTool,
    /// Waiting for delegates.
    StoppedByDelegate,
    /// Hit `maxSteps`.
    StoppedByExceededMaxSteps,
    /// Failed.
    StoppedByError,
}

/// An Expert's identity on a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExpertRef {
    /// Its key in `perstack.toml`.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// The error carried by `stopRunByError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunError {
    /// Error class, e.g. `AI_APICallError`.
    pub name: String,
    /// Human-readable message.
    pub message: String,
    /// HTTP status, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Whether retrying could help.
    pub is_retryable: bool,
}

/// A resumable snapshot of a run (§4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Checkpoint {
    /// Unique id.
    pub id: String,
    /// The job.
    pub job_id: String,
    /// The run segment.
    pub run_id: String,
    /// Where the run stands.
    pub status: CheckpointStatus,
    /// The step this checkpoint belongs to (job-global).
    pub step_number: u32,
    /// The whole conversation so far.
    pub messages: Vec<Message>,
    /// Whose run this is.
    pub expert: ExpertRef,
    /// The delegates this run waits on (`stoppedByDelegate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate_to: Option<Vec<DelegateTo>>,
    /// The parent run, when this run is a delegate's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_by: Option<DelegatedBy>,
    /// Cumulative usage.
    pub usage: Usage,
    /// The model's context window, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Fraction of the context window used, when known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "js_number::option"
    )]
    pub context_window_usage: Option<f64>,
    /// Calls still to run when resuming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_tool_calls: Option<Vec<ToolCall>>,
    /// Results already gathered when resuming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_tool_results: Option<Vec<ToolResult>>,
    /// Free-form metadata (`runtime`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Why the run failed (`stoppedByError`, on stored checkpoints; the event's own checkpoint
    /// leaves it out, as Perstack's does, and carries `error` beside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// Consecutive failed generations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
}

/// A delegate a run waits on (§4 `delegateTo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegateTo {
    /// The delegate.
    pub expert: ExpertRef,
    /// The parent's tool call that asked for it.
    pub tool_call_id: String,
    /// That call's tool name.
    pub tool_name: String,
    /// What the delegate is asked.
    pub query: String,
}

/// The parent of a delegated run (§4 `delegatedBy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DelegatedBy {
    /// The parent Expert.
    pub expert: ExpertRef,
    /// The parent's tool call.
    pub tool_call_id: String,
    /// That call's tool name.
    pub tool_name: String,
    /// The parent's checkpoint that stopped for the delegation.
    pub checkpoint_id: String,
    /// The parent's run segment.
    pub run_id: String,
}

/// One step of a run (§3 "Step").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Step {
    /// Job-global step number.
    pub step_number: u32,
    /// Messages that went into the step's generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_messages: Option<Vec<Message>>,
    /// Messages the step added.
    pub new_messages: Vec<Message>,
    /// Calls the model made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Their results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_results: Option<Vec<ToolResult>>,
    /// Calls still waiting when the step stopped for delegates or the user: the delegate and
    /// interactive calls (on `stopRunByDelegate` / `stopRunByInteractiveTool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_tool_calls: Option<Vec<ToolCall>>,
    /// Results the step had gathered when it stopped (the MCP calls run before it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_tool_results: Option<Vec<ToolResult>>,
    /// Usage of the step.
    pub usage: Usage,
    /// Start, ms since the epoch.
    pub started_at: u64,
    /// End, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

/// The answer to a pending tool call, given with `-i/--interactive-tool-call-result`
/// (PERSTACK-COMPAT.md §2, §5). It resumes a run stopped by an interactive tool (or, inside the
/// runtime, a parent waiting on its delegate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractiveToolCallResult {
    /// The pending call it answers.
    pub tool_call_id: String,
    /// That call's tool.
    pub tool_name: String,
    /// The skill the tool belongs to ("" when unknown).
    #[serde(default)]
    pub skill_name: String,
    /// The answer.
    pub text: String,
}

/// Numbers written as JavaScript writes them: a float with no fractional part is an integer
/// (`0`, not `0.0`), so a value Perstack wrote reads back and writes out unchanged.
pub(crate) mod js_number {
    use serde::Serializer;

    /// The largest integer a JavaScript number holds exactly (2^53).
    const MAX_SAFE: f64 = 9_007_199_254_740_992.0;

    /// Serializes `value` as an integer when it is one, else as a float.
    pub(crate) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() && value.fract() == 0.0 && value.abs() <= MAX_SAFE {
            // Exact: the value is an integer within ±2^53.
            serializer.serialize_i64(*value as i64)
        } else {
            serializer.serialize_f64(*value)
        }
    }

    /// [`serialize`] for an optional field (used with `skip_serializing_if = "Option::is_none"`).
    pub(crate) fn option<S: Serializer>(
        value: &Option<f64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }
}
