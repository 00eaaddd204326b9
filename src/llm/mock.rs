//! The scripted `mock` provider: replays assistant turns from a script file, so a run is
//! deterministic and needs no API key and no network. Used by `make demo` and the tests.
//!
//! # Script format
//!
//! A TOML file named by `[provider.setting] script = "…"` (relative to `perstack.toml`). The
//! controller reads and checks it before anything starts, and bakes it into the runtime image.
//! Each `[[turn]]` is one assistant reply; turns are played in file order.
//!
//! ```toml
//! [[turn]]
//! thinking = "The user wants a greeting file."   # optional: a thinking part
//! text = "Writing the file now."                 # optional: assistant text
//! [[turn.toolCalls]]                              # zero or more tool calls
//! name = "writeTextFile"
//! args = { path = "hello.txt", text = "Hello!" }
//!
//! [[turn]]
//! [[turn.toolCalls]]
//! name = "attemptCompletion"
//!
//! [[turn]]
//! text = "I wrote hello.txt."                     # text only: the final answer
//! ```
//!
//! Fields of a turn, all optional (but a turn must hold at least one of `text`, `thinking`,
//! `toolCalls` or `error`):
//! - `expert`: only this Expert consumes the turn. Turns without it go to whichever Expert asks
//!   next. Use it to script delegates, whose runs interleave with their parent's.
//! - `thinking`, `text`: reasoning and text parts.
//! - `toolCalls`: `{ name, args = {…}, id? }` — `args` defaults to `{}`; `id` to a fresh id.
//! - `error`: `{ status?, message, retryable? }` — the generation fails like an HTTP API error
//!   (`retryable` defaults to what the status implies: 429, 500, 502, 503, 504, 529 are).
//! - `finishReason`: `stop`, `toolCalls`, `length` or anything else; defaults to `toolCalls` when
//!   the turn calls tools, else `stop`.
//! - `usage`: `{ inputTokens?, outputTokens? }`; defaults to a count of characters / 4.
//! - `delayMs`: wait this long before answering (to test timeouts, interruptions and
//!   concurrency). Text and thinking then stream in word by word over the same time.
//!
//! A continued run (`--continue`, `-i`) replays the same script: before it starts, the turns
//! its Expert already played — as many as the checkpoint has expert messages — are dropped, and
//! so are the turns of each delegate's delegations that completed before that checkpoint
//! (`jobs::delegate_turns_played`, passed as `--mock-played`), so a delegate called again in a
//! later session plays its next turn.
//!
//! When an Expert asks for a turn and none is left for it, the generation fails with
//! `MockScriptExhausted` and the run stops with an error naming the turn count.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    DeltaSink, FinishReason, GenerateRequest, GeneratedPart, Generation, LlmError, StreamDelta,
};
use crate::event::{Message, Part, Usage};

/// A parsed script.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MockScript {
    /// The turns, in play order.
    #[serde(default, rename = "turn")]
    pub turns: Vec<MockTurn>,
}

/// One scripted assistant reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MockTurn {
    /// Only this Expert consumes the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert: Option<String>,
    /// A thinking part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// A text part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Tool calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<MockToolCall>,
    /// Fail the generation instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MockError>,
    /// Override the finish reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Override the token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<MockUsage>,
    /// Take this long to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// A scripted tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MockToolCall {
    /// The tool's name.
    pub name: String,
    /// Its arguments.
    #[serde(default = "empty_object")]
    pub args: Value,
    /// A fixed call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A scripted API failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MockError {
    /// HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The message.
    pub message: String,
    /// Override retryability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

/// Scripted token counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MockUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: Option<u64>,
}

/// Why a script could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MockScriptError {
    /// The file could not be read.
    #[error("cannot read mock script {path}: {source}")]
    Io {
        /// The script path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid script.
    #[error("{path}:{line}:{col}: {message}")]
    Invalid {
        /// The script path.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        message: String,
    },
}

impl MockScript {
    /// Reads and checks a script file.
    pub(crate) fn load(path: &Path) -> Result<MockScript, MockScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| MockScriptError::Io {
            path: path.display().to_string(),
            source,
        })?;
        MockScript::parse(path, &text)
    }

    /// Parses and checks script text; `path` is only used in messages.
    pub(crate) fn parse(path: &Path, text: &str) -> Result<MockScript, MockScriptError> {
        let invalid = |offset: usize, message: String| {
            let (line, col) = line_col(text, offset);
            MockScriptError::Invalid {
                path: path.display().to_string(),
                line,
                col,
                message,
            }
        };
        let script: MockScript = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            invalid(offset, e.message().trim().to_string())
        })?;
        if script.turns.is_empty() {
            return Err(invalid(0, "the script has no [[turn]]".to_string()));
        }
        for (i, turn) in script.turns.iter().enumerate() {
            let empty = turn.text.is_none()
                && turn.thinking.is_none()
                && turn.tool_calls.is_empty()
                && turn.error.is_none();
            if empty {
                let offset = nth_turn_offset(text, i).unwrap_or(0);
                return Err(invalid(
                    offset,
                    format!(
                        "turn {} is empty: give it `text`, `thinking`, `toolCalls` or `error`",
                        i + 1
                    ),
                ));
            }
            for call in &turn.tool_calls {
                if !call.args.is_object() {
                    let offset = nth_turn_offset(text, i).unwrap_or(0);
                    return Err(invalid(
                        offset,
                        format!(
                            "turn {}: `args` of tool call `{}` must be a table",
                            i + 1,
                            call.name
                        ),
                    ));
                }
            }
        }
        Ok(script)
    }

    /// The Experts named by `expert` fields, for checking them against the config.
    pub(crate) fn named_experts(&self) -> impl Iterator<Item = &str> {
        self.turns.iter().filter_map(|t| t.expert.as_deref())
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn nth_turn_offset(text: &str, n: usize) -> Option<usize> {
    text.match_indices("[[turn]]").nth(n).map(|(i, _)| i)
}

/// The provider: a queue of turns shared by every Expert of the run.
#[derive(Debug)]
pub(crate) struct MockProvider {
    turns: Mutex<VecDeque<MockTurn>>,
    total: usize,
}

impl MockProvider {
    /// A provider that will play `script`.
    pub(crate) fn new(script: MockScript) -> MockProvider {
        MockProvider {
            total: script.turns.len(),
            turns: Mutex::new(script.turns.into()),
        }
    }

    /// Drops the first `played` turns `expert_key` would take: a continued run has already
    /// played them (they are its checkpoint's expert messages), so one script serves a run and
    /// its continuations.
    pub(crate) fn skip_played(&self, expert_key: &str, played: usize) {
        let Ok(mut turns) = self.turns.lock() else {
            return;
        };
        for _ in 0..played {
            let next = turns
                .iter()
                .position(|t| t.expert.as_deref().is_none_or(|e| e == expert_key));
            match next {
                Some(i) => {
                    turns.remove(i);
                }
                None => break,
            }
        }
    }

    /// Plays the next turn meant for `request.expert_key`, streaming its thinking and text to
    /// `on_delta` word by word (spread over `delayMs` when the turn has one).
    pub(crate) async fn generate(
        &self,
        request: &GenerateRequest<'_>,
        on_delta: DeltaSink<'_>,
    ) -> Result<Generation, LlmError> {
        let turn = self.next_turn(request.expert_key)?;
        stream(&turn, on_delta).await;
        if let Some(error) = turn.error {
            let mut err = LlmError::api(error.status.unwrap_or(500), error.message, None);
            if let Some(retryable) = error.retryable {
                err.is_retryable = retryable;
            }
            return Err(err);
        }
        let finish = turn.finish_reason.clone();
        let usage = turn.usage;
        let parts = parts_of(turn);
        let finish_reason = finish_reason(finish.as_deref(), &parts);
        let input_tokens = usage
            .and_then(|u| u.input_tokens)
            .unwrap_or_else(|| estimate_tokens(request.messages));
        let output_tokens = usage
            .and_then(|u| u.output_tokens)
            .unwrap_or_else(|| parts.iter().map(part_chars).sum::<u64>().div_ceil(4));
        Ok(Generation {
            parts,
            finish_reason,
            usage: Usage {
                input_tokens,
                output_tokens,
                reasoning_tokens: 0,
                total_tokens: input_tokens + output_tokens,
                cached_input_tokens: 0,
            },
        })
    }

    /// Takes the first turn left that is meant for `expert_key` (or for any Expert).
    fn next_turn(&self, expert_key: &str) -> Result<MockTurn, LlmError> {
        let turn = {
            let mut turns = self
                .turns
                .lock()
                .map_err(|_| LlmError::fatal("MockProviderError", "mock script state poisoned"))?;
            let index = turns
                .iter()
                .position(|t| t.expert.as_deref().is_none_or(|e| e == expert_key));
            index.and_then(|i| turns.remove(i))
        };
        turn.ok_or_else(|| {
            LlmError::fatal(
                "MockScriptExhausted",
                format!(
                    "the mock script has no turn left for expert `{expert_key}` ({} turns in the \
                     script)",
                    self.total
                ),
            )
        })
    }
}

/// Streams the turn's thinking, then its text, word by word, spread over its `delayMs`.
async fn stream(turn: &MockTurn, on_delta: DeltaSink<'_>) {
    let chunks: Vec<StreamDelta> = turn
        .thinking
        .iter()
        .flat_map(|t| words(t).map(|w| StreamDelta::Reasoning(w.to_string())))
        .chain(
            turn.text
                .iter()
                .flat_map(|t| words(t).map(|w| StreamDelta::Text(w.to_string()))),
        )
        .collect();
    let delay = std::time::Duration::from_millis(turn.delay_ms.unwrap_or(0));
    let pause = delay / (chunks.len() as u32 + 1);
    tokio::time::sleep(pause).await;
    for chunk in chunks {
        on_delta(chunk);
        tokio::time::sleep(pause).await;
    }
}

/// The turn's thinking, text and tool calls as generated parts; a call without an id gets one.
fn parts_of(turn: MockTurn) -> Vec<GeneratedPart> {
    let mut parts = Vec::new();
    if let Some(thinking) = turn.thinking {
        parts.push(GeneratedPart::Thinking {
            text: thinking,
            signature: None,
        });
    }
    if let Some(text) = turn.text {
        parts.push(GeneratedPart::Text(text));
    }
    for call in turn.tool_calls {
        parts.push(GeneratedPart::ToolCall {
            id: call
                .id
                .unwrap_or_else(|| format!("toolu_mock_{}", crate::ids::new_id())),
            name: call.name,
            args: call.args,
        });
    }
    parts
}

/// The finish reason the turn names; else tool calls when it has any, else stop.
fn finish_reason(named: Option<&str>, parts: &[GeneratedPart]) -> FinishReason {
    match named {
        Some("stop") => FinishReason::Stop,
        Some("toolCalls") | Some("tool-calls") => FinishReason::ToolCalls,
        Some("length") => FinishReason::Length,
        Some(other) => FinishReason::Other(other.to_string()),
        None if parts
            .iter()
            .any(|p| matches!(p, GeneratedPart::ToolCall { .. })) =>
        {
            FinishReason::ToolCalls
        }
        None => FinishReason::Stop,
    }
}

fn part_chars(part: &GeneratedPart) -> u64 {
    match part {
        GeneratedPart::Thinking { text, .. } | GeneratedPart::Text(text) => text.len() as u64,
        GeneratedPart::ToolCall { name, args, .. } => (name.len() + args.to_string().len()) as u64,
    }
}

fn estimate_tokens(messages: &[Message]) -> u64 {
    let chars: usize = messages
        .iter()
        .flat_map(|m| &m.contents)
        .map(|p| match p {
            Part::TextPart { text, .. } => text.len(),
            other => serde_json::to_string(other).map(|s| s.len()).unwrap_or(0),
        })
        .sum();
    (chars as u64).div_ceil(4)
}

/// Splits `text` into chunks that end after each run of whitespace, so the chunks join back
/// into `text` exactly.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let end = rest[word_end..]
            .find(|c: char| !c.is_whitespace())
            .map_or(rest.len(), |i| word_end + i);
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(expert: &'a str, messages: &'a [Message]) -> GenerateRequest<'a> {
        GenerateRequest {
            expert_key: expert,
            model: "mock",
            messages,
            tools: &[],
            reasoning_budget: None,
        }
    }

    const SCRIPT: &str = r#"
[[turn]]
text = "Writing."
[[turn.toolCalls]]
name = "writeTextFile"
args = { path = "a.txt", text = "hi" }
id = "call-1"

[[turn]]
expert = "helper"
text = "helper's answer"

[[turn]]
error = { status = 529, message = "Overloaded" }

[[turn]]
text = "Done."
"#;

    #[tokio::test]
    async fn plays_turns_in_order_and_by_expert() {
        let script = MockScript::parse(Path::new("s.toml"), SCRIPT).expect("valid");
        let mock = MockProvider::new(script);
        let msgs = [];
        let first = mock
            .generate(&request("main", &msgs), &|_| {})
            .await
            .expect("turn 1");
        assert_eq!(first.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            first.parts[1],
            GeneratedPart::ToolCall {
                id: "call-1".into(),
                name: "writeTextFile".into(),
                args: serde_json::json!({"path": "a.txt", "text": "hi"}),
            }
        );
        // `main` skips the helper's turn and gets the scripted error.
        let err = mock
            .generate(&request("main", &msgs), &|_| {})
            .await
            .expect_err("turn 3");
        assert_eq!(err.status_code, Some(529));
        assert!(err.is_retryable);
        let helper = mock
            .generate(&request("helper", &msgs), &|_| {})
            .await
            .expect("turn 2");
        assert_eq!(helper.text(), "helper's answer");
        assert_eq!(
            mock.generate(&request("main", &msgs), &|_| {})
                .await
                .expect("turn 4")
                .text(),
            "Done."
        );
        let exhausted = mock
            .generate(&request("main", &msgs), &|_| {})
            .await
            .expect_err("none left");
        assert_eq!(exhausted.name, "MockScriptExhausted");
    }

    #[tokio::test]
    async fn thinking_and_text_stream_word_by_word_and_join_back() {
        let script = MockScript::parse(
            Path::new("s.toml"),
            "[[turn]]\nthinking = \"Let me see.\"\ntext = \"All  done.\\n\"\n",
        )
        .expect("valid");
        let mock = MockProvider::new(script);
        let seen = std::sync::Mutex::new(Vec::new());
        let generation = mock
            .generate(&request("main", &[]), &|d| {
                seen.lock().expect("lock").push(d)
            })
            .await
            .expect("turn");
        let seen = seen.into_inner().expect("lock");
        assert_eq!(
            seen,
            [
                StreamDelta::Reasoning("Let ".into()),
                StreamDelta::Reasoning("me ".into()),
                StreamDelta::Reasoning("see.".into()),
                StreamDelta::Text("All  ".into()),
                StreamDelta::Text("done.\n".into()),
            ]
        );
        assert_eq!(generation.text(), "All  done.\n");
    }

    #[test]
    fn bad_scripts_name_line_and_column() {
        let err = MockScript::parse(Path::new("s.toml"), "[[turn]]\ntext = 1\n").expect_err("bad");
        assert!(err.to_string().starts_with("s.toml:2:8: "), "{err}");
        let err = MockScript::parse(Path::new("s.toml"), "[[turn]]\ntxt = \"x\"\n")
            .expect_err("unknown field");
        assert!(err.to_string().contains("s.toml:2:1"), "{err}");
        let err = MockScript::parse(Path::new("s.toml"), "[[turn]]\ntext = \"a\"\n\n[[turn]]\n")
            .expect_err("empty turn");
        assert_eq!(
            err.to_string(),
            "s.toml:4:1: turn 2 is empty: give it `text`, `thinking`, `toolCalls` or `error`"
        );
        let err = MockScript::parse(Path::new("s.toml"), "").expect_err("no turns");
        assert!(err.to_string().contains("no [[turn]]"), "{err}");
    }
}
