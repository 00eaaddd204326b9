//! Anthropic Messages API (`POST {baseUrl}/messages`), with tool use and extended thinking.
//!
//! `baseUrl` follows the Vercel AI SDK that Perstack uses: it includes the version segment (the
//! default is in the provider table). `[provider.setting] baseUrl` beats the base-URL variable,
//! which beats the default.
//!
//! Streamed (`stream: true`): `content_block_delta`s are reported to the delta sink as they
//! arrive, tool arguments are assembled from `input_json_delta` pieces, and an `error` event
//! mid-stream becomes an [`LlmError`] (retryable for `overloaded_error`, `rate_limit_error`,
//! `api_error`). Extended thinking is `thinking: {type: "enabled", budget_tokens}` with the
//! API's rules: the budget is at least 1024 and below `max_tokens` (raised when needed), no
//! `temperature` is sent (thinking allows no other), and `tool_choice` stays `auto` (thinking
//! refuses forced tool use). Signed thinking blocks go back on later turns.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::http::{self, StreamRequest};
use super::sse::Framing;
use super::{
    DeltaSink, FinishReason, GenerateRequest, GeneratedPart, Generation, HttpSettings, LlmError,
    ProviderName, ProviderSetting, ProviderSetupError, StreamDelta, is_retryable_message, models,
    provider_http_client,
};
use crate::event::{MessageKind, Part, Usage};

const API_VERSION: &str = "2023-06-01";
/// Output budget for models missing from the table.
const DEFAULT_MAX_TOKENS: u64 = 8192;

/// A configured client.
#[derive(Debug)]
pub(crate) struct AnthropicClient {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    headers: BTreeMap<String, String>,
}

impl AnthropicClient {
    /// Reads the key and base URL (setting > env > default).
    pub(crate) fn new(
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
        http: &HttpSettings,
    ) -> Result<AnthropicClient, ProviderSetupError> {
        let info = ProviderName::Anthropic.info();
        Ok(AnthropicClient {
            api_key: info.api_key(env)?,
            base_url: info.base_url(setting, env)?,
            http: provider_http_client(http, env)?,
            headers: setting.headers.clone(),
        })
    }

    /// One streamed generation: text and thinking go to `on_delta` chunk by chunk.
    pub(crate) async fn generate(
        &self,
        request: &GenerateRequest<'_>,
        on_delta: DeltaSink<'_>,
    ) -> Result<Generation, LlmError> {
        let body = request_body(request);
        let mut headers = vec![
            ("x-api-key".to_string(), self.api_key.clone()),
            ("anthropic-version".to_string(), API_VERSION.to_string()),
            ("accept".to_string(), "text/event-stream".to_string()),
        ];
        headers.extend(self.headers.iter().map(|(n, v)| (n.clone(), v.clone())));
        let mut stream = MessageStream::new(on_delta);
        http::post_streaming(
            &self.http,
            StreamRequest {
                url: format!("{}/messages", self.base_url),
                headers,
                body: &body,
                framing: Framing::Sse,
            },
            |event| stream.event(&event.data),
        )
        .await?;
        stream.finish()
    }
}

/// The JSON body of a Messages API request.
pub(crate) fn request_body(request: &GenerateRequest<'_>) -> Value {
    let max_output = models::lookup(request.model)
        .map(|m| m.max_output)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for message in request.messages {
        if message.kind == MessageKind::InstructionMessage {
            for part in &message.contents {
                if let Some(text) = part.as_text() {
                    let mut block = json!({"type": "text", "text": text});
                    if message.cache == Some(true) {
                        block["cache_control"] = json!({"type": "ephemeral"});
                    }
                    system.push(block);
                }
            }
            continue;
        }
        let role = match message.kind {
            MessageKind::ExpertMessage => "assistant",
            _ => "user",
        };
        let content: Vec<Value> = message.contents.iter().filter_map(content_block).collect();
        if content.is_empty() {
            continue;
        }
        // The API wants user and assistant turns to alternate; a tool result followed by a
        // retry notice are both "user", so merge them into one turn.
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(blocks) = last["content"].as_array_mut() {
                    blocks.extend(content);
                }
            }
            _ => messages.push(json!({"role": role, "content": content})),
        }
    }
    let mut body = json!({
        "model": request.model,
        "max_tokens": max_output,
        "messages": messages,
        "stream": true,
    });
    if !system.is_empty() {
        body["system"] = Value::Array(system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                })
            })
            .collect();
        body["tool_choice"] = json!({"type": "auto"});
    }
    // Anthropic's minimum thinking budget is 1024 tokens, and it must stay below max_tokens.
    if let Some(budget) = request
        .reasoning_budget
        .filter(|b| *b > 0 && supports_thinking(request.model))
    {
        let budget = budget.max(1024);
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        if budget >= max_output {
            body["max_tokens"] = json!(budget + DEFAULT_MAX_TOKENS);
        }
    }
    body
}

/// Whether the model takes `thinking`: every Claude from 3.7 Sonnet on. The older Claude 3 and
/// 3.5 models answer 400 to it, so with the default budget (`low`) they would never work.
/// Unknown names (a gateway's aliases) get what the config asks for.
pub(crate) fn supports_thinking(model: &str) -> bool {
    !model.starts_with("claude-3-") || model.starts_with("claude-3-7")
}

fn content_block(part: &Part) -> Option<Value> {
    match part {
        Part::TextPart { text, .. } if !text.is_empty() => {
            Some(json!({"type": "text", "text": text}))
        }
        Part::TextPart { .. } => None,
        Part::ImageInlinePart {
            encoded_data,
            mime_type,
            ..
        }
        | Part::ImageBinaryPart {
            data: encoded_data,
            mime_type,
            ..
        } => Some(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": mime_type, "data": encoded_data},
        })),
        Part::ImageUrlPart { url, .. } => {
            Some(json!({"type": "image", "source": {"type": "url", "url": url}}))
        }
        Part::FileInlinePart {
            encoded_data,
            mime_type,
            ..
        }
        | Part::FileBinaryPart {
            data: encoded_data,
            mime_type,
            ..
        } => Some(json!({
            "type": "document",
            "source": {"type": "base64", "media_type": mime_type, "data": encoded_data},
        })),
        Part::FileUrlPart { url, .. } => {
            Some(json!({"type": "document", "source": {"type": "url", "url": url}}))
        }
        Part::ToolCallPart {
            tool_call_id,
            tool_name,
            args,
            ..
        } => Some(json!({
            "type": "tool_use",
            "id": tool_call_id,
            "name": tool_name,
            "input": args,
        })),
        // Thinking can only be sent back with the signature Anthropic gave it.
        Part::ThinkingPart {
            thinking,
            signature: Some(signature),
            ..
        } => Some(json!({"type": "thinking", "thinking": thinking, "signature": signature})),
        Part::ThinkingPart { .. } => None,
        Part::ToolResultPart {
            tool_call_id,
            contents,
            is_error,
            ..
        } => {
            let mut block = json!({
                "type": "tool_result",
                "tool_use_id": tool_call_id,
                "content": contents.iter().filter_map(content_block).collect::<Vec<_>>(),
            });
            if *is_error == Some(true) {
                block["is_error"] = json!(true);
            }
            Some(block)
        }
    }
}

/// A content block as it builds up.
#[derive(Debug)]
enum Block {
    Text(String),
    Thinking {
        text: String,
        signature: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        json: String,
    },
    /// redacted_thinking, server tools: nothing the loop can use.
    Ignored,
}

/// The state of one streamed Messages API answer.
struct MessageStream<'a> {
    on_delta: DeltaSink<'a>,
    blocks: Vec<Block>,
    stop_reason: Option<String>,
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    output: u64,
    stopped: bool,
}

impl<'a> MessageStream<'a> {
    fn new(on_delta: DeltaSink<'a>) -> MessageStream<'a> {
        MessageStream {
            on_delta,
            blocks: Vec::new(),
            stop_reason: None,
            input: 0,
            cache_creation: 0,
            cache_read: 0,
            output: 0,
            stopped: false,
        }
    }

    fn usage(&mut self, usage: &Value) {
        let set = |field: &mut u64, key: &str| {
            if let Some(n) = usage[key].as_u64() {
                *field = n;
            }
        };
        set(&mut self.input, "input_tokens");
        set(&mut self.cache_creation, "cache_creation_input_tokens");
        set(&mut self.cache_read, "cache_read_input_tokens");
        set(&mut self.output, "output_tokens");
    }

    fn block(&mut self, index: &Value) -> Option<&mut Block> {
        self.blocks.get_mut(usize::try_from(index.as_u64()?).ok()?)
    }

    /// One `data:` payload. The event's `type` field names it, like the `event:` line does.
    fn event(&mut self, data: &str) -> Result<(), LlmError> {
        let value: Value =
            serde_json::from_str(data).map_err(|e| http::bad_chunk("Anthropic", data, e))?;
        match value["type"].as_str().unwrap_or_default() {
            // A whole, non-streamed message (a gateway ignoring `stream`): replay it as events.
            "message" => return self.whole_message(&value),
            "message_start" => self.usage(&value["message"]["usage"]),
            "content_block_start" => self.block_start(&value),
            "content_block_delta" => self.block_delta(&value),
            "message_delta" => {
                if let Some(reason) = value["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_string());
                }
                self.usage(&value["usage"]);
            }
            "message_stop" => self.stopped = true,
            "error" => return Err(stream_error(&value["error"])),
            // ping, content_block_stop and event types added later carry nothing we need.
            _ => {}
        }
        Ok(())
    }

    /// `content_block_start`: a text, thinking or tool-use block begins at its index (a text
    /// block's first text is a delta already).
    fn block_start(&mut self, value: &Value) {
        let block = &value["content_block"];
        let new = match block["type"].as_str() {
            Some("text") => {
                let text = block["text"].as_str().unwrap_or_default().to_string();
                if !text.is_empty() {
                    (self.on_delta)(StreamDelta::Text(text.clone()));
                }
                Block::Text(text)
            }
            Some("thinking") => Block::Thinking {
                text: block["thinking"].as_str().unwrap_or_default().to_string(),
                signature: block["signature"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            },
            Some("tool_use") => Block::ToolUse {
                id: block["id"].as_str().unwrap_or_default().to_string(),
                name: block["name"].as_str().unwrap_or_default().to_string(),
                json: String::new(),
            },
            _ => Block::Ignored,
        };
        let index = value["index"].as_u64().unwrap_or(self.blocks.len() as u64);
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        while self.blocks.len() < index {
            self.blocks.push(Block::Ignored);
        }
        if index < self.blocks.len() {
            self.blocks[index] = new;
        } else {
            self.blocks.push(new);
        }
    }

    /// `content_block_delta`: more of the block at its index, passed on as it arrives.
    fn block_delta(&mut self, value: &Value) {
        let delta = &value["delta"];
        let on_delta = self.on_delta;
        let Some(block) = self.block(&value["index"]) else {
            return;
        };
        match (delta["type"].as_str().unwrap_or_default(), block) {
            ("text_delta", Block::Text(text)) => {
                let chunk = delta["text"].as_str().unwrap_or_default();
                text.push_str(chunk);
                on_delta(StreamDelta::Text(chunk.to_string()));
            }
            ("thinking_delta", Block::Thinking { text, .. }) => {
                let chunk = delta["thinking"].as_str().unwrap_or_default();
                text.push_str(chunk);
                on_delta(StreamDelta::Reasoning(chunk.to_string()));
            }
            ("signature_delta", Block::Thinking { signature, .. }) => {
                let chunk = delta["signature"].as_str().unwrap_or_default();
                signature.get_or_insert_with(String::new).push_str(chunk);
            }
            ("input_json_delta", Block::ToolUse { json, .. }) => {
                json.push_str(delta["partial_json"].as_str().unwrap_or_default());
            }
            _ => {}
        }
    }

    fn whole_message(&mut self, message: &Value) -> Result<(), LlmError> {
        let mut events =
            vec![json!({"type": "message_start", "message": {"usage": message["usage"]}})];
        for (index, block) in message["content"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mut start = block.clone();
            let mut deltas = Vec::new();
            match block["type"].as_str() {
                Some("text") => {
                    start["text"] = json!("");
                    deltas.push(json!({"type": "text_delta", "text": block["text"]}));
                }
                Some("thinking") => {
                    start["thinking"] = json!("");
                    deltas.push(json!({"type": "thinking_delta", "thinking": block["thinking"]}));
                }
                Some("tool_use") => {
                    deltas.push(json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}));
                }
                _ => {}
            }
            events.push(
                json!({"type": "content_block_start", "index": index, "content_block": start}),
            );
            for delta in deltas {
                events.push(json!({"type": "content_block_delta", "index": index, "delta": delta}));
            }
        }
        events.push(json!({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]}, "usage": message["usage"]}));
        events.push(json!({"type": "message_stop"}));
        for event in events {
            self.event(&event.to_string())?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Generation, LlmError> {
        if !self.stopped && self.stop_reason.is_none() {
            return Err(LlmError {
                name: http::API_CALL_ERROR.into(),
                message: "the Messages API stream ended before message_stop".into(),
                status_code: None,
                is_retryable: true,
                retry_after: None,
            });
        }
        let mut parts = Vec::new();
        for block in self.blocks {
            match block {
                Block::Text(text) => parts.push(GeneratedPart::Text(text)),
                Block::Thinking { text, signature } => {
                    parts.push(GeneratedPart::Thinking { text, signature })
                }
                Block::ToolUse { id, name, json } => {
                    let args = if json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str::<Value>(&json).map_err(|e| {
                            LlmError::fatal(
                                "AI_InvalidToolArgumentsError",
                                format!("arguments of tool call `{name}` are not valid JSON ({e}): {json}"),
                            )
                        })?
                    };
                    let args = if args.is_object() { args } else { json!({}) };
                    parts.push(GeneratedPart::ToolCall { id, name, args });
                }
                Block::Ignored => {}
            }
        }
        let finish_reason = match self.stop_reason.as_deref() {
            Some("end_turn") | Some("stop_sequence") => FinishReason::Stop,
            Some("tool_use") => FinishReason::ToolCalls,
            Some("max_tokens") => FinishReason::Length,
            Some(other) => FinishReason::Other(other.to_string()),
            None => FinishReason::Other("unknown".into()),
        };
        let input = self.input + self.cache_creation;
        let cached = self.cache_read;
        Ok(Generation {
            parts,
            finish_reason,
            usage: Usage {
                input_tokens: input,
                output_tokens: self.output,
                reasoning_tokens: 0,
                total_tokens: input + cached + self.output,
                cached_input_tokens: cached,
            },
        })
    }
}

/// An `error` event in the middle of a stream: `{type: "overloaded_error", message}`. The HTTP
/// status was 200, so there is no status code; the type says whether trying again can help.
fn stream_error(error: &Value) -> LlmError {
    let kind = error["type"].as_str().unwrap_or("error");
    let message = error["message"].as_str().unwrap_or(kind).to_string();
    LlmError {
        name: http::API_CALL_ERROR.into(),
        is_retryable: matches!(kind, "overloaded_error" | "rate_limit_error" | "api_error")
            || is_retryable_message(&message),
        message,
        status_code: None,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Message;
    use crate::llm::ToolSpec;
    use crate::test_support::http::TestServer;
    use crate::test_support::replies::{Reply, pieces};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn text_message(kind: MessageKind, text: &str) -> Message {
        Message {
            kind,
            id: "m".into(),
            contents: vec![Part::text(text)],
            cache: (kind == MessageKind::InstructionMessage).then_some(true),
        }
    }

    fn conversation() -> Vec<Message> {
        vec![
            text_message(MessageKind::InstructionMessage, "You are terse."),
            text_message(MessageKind::UserMessage, "Read a.txt"),
            Message {
                kind: MessageKind::ExpertMessage,
                id: "m3".into(),
                contents: vec![
                    Part::ThinkingPart {
                        id: "p".into(),
                        thinking: "unsigned".into(),
                        signature: None,
                    },
                    Part::ToolCallPart {
                        id: "p".into(),
                        tool_call_id: "toolu_1".into(),
                        tool_name: "readTextFile".into(),
                        args: json!({"path": "a.txt"}),
                    },
                ],
                cache: None,
            },
            Message {
                kind: MessageKind::ToolMessage,
                id: "m4".into(),
                contents: vec![Part::ToolResultPart {
                    id: "p".into(),
                    tool_call_id: "toolu_1".into(),
                    tool_name: "readTextFile".into(),
                    contents: vec![Part::text("hello")],
                    is_error: None,
                }],
                cache: None,
            },
        ]
    }

    #[test]
    fn request_body_maps_system_tools_results_and_thinking() {
        let messages = conversation();
        let tools = [ToolSpec {
            name: "readTextFile".into(),
            description: "Read a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }];
        let body = request_body(&GenerateRequest {
            expert_key: "x",
            model: "claude-sonnet-4-5",
            messages: &messages,
            tools: &tools,
            reasoning_budget: Some(2048),
        });
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 64000,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Read a.txt"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "readTextFile", "input": {"path": "a.txt"}}
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "hello"}]}
                    ]},
                ],
                "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
                "tools": [{"name": "readTextFile", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
                "tool_choice": {"type": "auto"},
                "thinking": {"type": "enabled", "budget_tokens": 2048},
                "stream": true,
            })
        );
    }

    /// The events of one streamed answer: thinking (signed), text, a tool call whose
    /// arguments arrive in three pieces.
    fn tool_use_stream() -> String {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-haiku-4-5", "stop_reason": null, "usage": {"input_tokens": 10, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Need the "}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "file."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "ping"}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Read"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "ing."}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "readTextFile", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"path\": "}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"b.txt\"}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 5}}),
            json!({"type": "message_stop"}),
        ];
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect()
    }

    fn client(server: &TestServer) -> AnthropicClient {
        let setting = ProviderSetting {
            base_url: Some(format!("{}/v1", server.url())),
            headers: [("x-team".to_string(), "core".to_string())].into(),
            ..Default::default()
        };
        let env = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk-test".to_string());
        AnthropicClient::new(&setting, &env, &HttpSettings::default()).expect("client")
    }

    fn request<'a>(messages: &'a [Message], tools: &'a [ToolSpec]) -> GenerateRequest<'a> {
        GenerateRequest {
            expert_key: "x",
            model: "claude-haiku-4-5",
            messages,
            tools,
            reasoning_budget: None,
        }
    }

    #[tokio::test]
    async fn streams_thinking_text_and_a_tool_call_split_across_reads() {
        let server = TestServer::replying(vec![Reply::stream(pieces(&tool_use_stream(), 7))]);
        let deltas = Mutex::new(Vec::new());
        let messages = conversation();
        let generation = client(&server)
            .generate(&request(&messages, &[]), &|d| {
                deltas.lock().unwrap().push(d)
            })
            .await
            .expect("generation");
        assert_eq!(
            *deltas.lock().unwrap(),
            [
                StreamDelta::Reasoning("Need the ".into()),
                StreamDelta::Reasoning("file.".into()),
                StreamDelta::Text("Read".into()),
                StreamDelta::Text("ing.".into()),
            ]
        );
        assert_eq!(
            generation,
            Generation {
                parts: vec![
                    GeneratedPart::Thinking {
                        text: "Need the file.".into(),
                        signature: Some("EqQBCgIYAhIM".into()),
                    },
                    GeneratedPart::Text("Reading.".into()),
                    GeneratedPart::ToolCall {
                        id: "toolu_9".into(),
                        name: "readTextFile".into(),
                        args: json!({"path": "b.txt"}),
                    },
                ],
                finish_reason: FinishReason::ToolCalls,
                usage: Usage {
                    input_tokens: 10,
                    output_tokens: 5,
                    reasoning_tokens: 0,
                    total_tokens: 18,
                    cached_input_tokens: 3,
                },
            }
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some("sk-test"));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header("x-team"), Some("core"));
        assert_eq!(r.json()["model"], "claude-haiku-4-5");
        assert_eq!(r.json()["max_tokens"], 8192);
        assert_eq!(r.json()["stream"], true);
    }

    #[tokio::test]
    async fn each_delta_is_reported_before_the_stream_ends() {
        // The server sends the first text delta, then holds the rest of the answer until the
        // client has reported that delta. A client that only reports at the end never gets
        // the rest, and the guard below fails the test.
        let gate = Arc::new(tokio::sync::Notify::new());
        let first = [
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 1, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
        ];
        let rest = [
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
            json!({"type": "message_stop"}),
        ];
        let sse = |events: &[Value]| -> String {
            events.iter().map(|e| format!("data: {e}\n\n")).collect()
        };
        let server = TestServer::replying(vec![
            Reply::stream(vec![sse(&first), sse(&rest)]).gated(gate.clone()),
        ]);
        let deltas = Mutex::new(Vec::new());
        let on_delta = |d: StreamDelta| {
            deltas.lock().unwrap().push(d);
            gate.notify_one();
        };
        let client = client(&server);
        let generation = tokio::time::timeout(
            Duration::from_secs(20),
            client.generate(&request(&[], &[]), &on_delta),
        )
        .await
        .expect("the first delta was not reported while the stream was open")
        .expect("generation");
        assert_eq!(generation.text(), "Hello");
        assert_eq!(generation.finish_reason, FinishReason::Stop);
        assert_eq!(
            *deltas.lock().unwrap(),
            [
                StreamDelta::Text("Hel".into()),
                StreamDelta::Text("lo".into())
            ]
        );
    }

    #[tokio::test]
    async fn an_overloaded_error_event_mid_stream_is_retryable() {
        let body = format!(
            "event: message_start\ndata: {}\n\nevent: error\ndata: {}\n\n",
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        let server = TestServer::replying(vec![Reply::stream(vec![body])]);
        let err = client(&server)
            .generate(&request(&[], &[]), &|_| {})
            .await
            .expect_err("error event");
        assert_eq!(err.name, "AI_APICallError");
        assert_eq!(err.message, "Overloaded");
        assert!(err.is_retryable);
    }

    #[tokio::test]
    async fn a_stream_cut_before_message_stop_is_retryable() {
        let body = format!(
            "data: {}\n\n",
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 1}}})
        );
        let server = TestServer::replying(vec![Reply::stream(vec![body])]);
        let err = client(&server)
            .generate(&request(&[], &[]), &|_| {})
            .await
            .expect_err("cut");
        assert!(err.is_retryable, "{err}");
    }

    #[tokio::test]
    async fn api_errors_keep_status_message_and_retry_after() {
        let server = TestServer::replying(vec![Reply::raw(
            529,
            vec![("retry-after", "2")],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )]);
        let err = client(&server)
            .generate(&request(&[], &[]), &|_| {})
            .await
            .expect_err("529");
        assert_eq!(err.status_code, Some(529));
        assert_eq!(err.message, "Overloaded");
        assert!(err.is_retryable);
        assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn base_url_from_the_environment_unless_the_setting_has_one() {
        let server = TestServer::replying(vec![Reply::stream(vec![tool_use_stream()])]);
        let url = format!("{}/gateway", server.url());
        let env = |k: &str| match k {
            "ANTHROPIC_API_KEY" => Some("sk".to_string()),
            "ANTHROPIC_BASE_URL" => Some(url.clone()),
            _ => None,
        };
        let client =
            AnthropicClient::new(&ProviderSetting::default(), &env, &HttpSettings::default())
                .expect("client");
        client
            .generate(&request(&[], &[]), &|_| {})
            .await
            .expect("generation");
        assert_eq!(server.requests()[0].target, "/gateway/messages");

        let setting = ProviderSetting {
            base_url: Some("https://setting.example/v1".into()),
            ..Default::default()
        };
        let client =
            AnthropicClient::new(&setting, &env, &HttpSettings::default()).expect("client");
        assert_eq!(client.base_url, "https://setting.example/v1");
    }

    #[tokio::test]
    async fn a_gateway_answering_with_one_json_message_still_works() {
        let server = TestServer::replying(vec![Reply::raw(
            200,
            vec![("content-type", "application/json")],
            json!({
                "type": "message",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_9", "name": "readTextFile", "input": {"path": "b"}}
                ],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 10, "output_tokens": 5}
            })
            .to_string(),
        )]);
        let deltas = Mutex::new(Vec::new());
        let generation = client(&server)
            .generate(&request(&[], &[]), &|d| deltas.lock().unwrap().push(d))
            .await
            .expect("generation");
        assert_eq!(
            generation.parts,
            [
                GeneratedPart::Thinking {
                    text: "hmm".into(),
                    signature: Some("sig".into())
                },
                GeneratedPart::Text("Reading.".into()),
                GeneratedPart::ToolCall {
                    id: "toolu_9".into(),
                    name: "readTextFile".into(),
                    args: json!({"path": "b"})
                },
            ]
        );
        assert_eq!(generation.finish_reason, FinishReason::ToolCalls);
        assert_eq!(generation.usage.total_tokens, 15);
        assert_eq!(
            *deltas.lock().unwrap(),
            [
                StreamDelta::Reasoning("hmm".into()),
                StreamDelta::Text("Reading.".into())
            ]
        );
    }

    #[test]
    fn thinking_budget_is_at_least_1024_and_below_max_tokens() {
        let mut req = request(&[], &[]);
        req.reasoning_budget = Some(10_000);
        let body = request_body(&req);
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 10000})
        );
        assert_eq!(
            body["max_tokens"], 18192,
            "haiku's 8192 would not exceed the budget"
        );
        req.reasoning_budget = Some(100);
        assert_eq!(request_body(&req)["thinking"]["budget_tokens"], 1024);
        req.reasoning_budget = None;
        assert!(request_body(&req).get("thinking").is_none());
        // Claude 3.5 and older refuse `thinking`: it is left out rather than failing every run.
        req.reasoning_budget = Some(2048);
        req.model = "claude-3-5-haiku-latest";
        assert!(request_body(&req).get("thinking").is_none());
        req.model = "claude-3-7-sonnet-20250219";
        assert!(request_body(&req).get("thinking").is_some());
    }

    #[test]
    fn missing_key_names_the_variable() {
        let env = |_: &str| None;
        let err = AnthropicClient::new(&ProviderSetting::default(), &env, &HttpSettings::default())
            .expect_err("no key");
        assert_eq!(
            err.to_string(),
            "ANTHROPIC_API_KEY is not set (provider `anthropic` needs it)"
        );
    }
}
