//! Anthropic Messages API (`POST {baseUrl}/messages`), with tool use and extended thinking.
//!
//! `baseUrl` follows the Vercel AI SDK that Perstack uses: it includes the version segment, so the
//! default is `https://api.anthropic.com/v1`. `[provider.setting] baseUrl` beats
//! `ANTHROPIC_BASE_URL`, which beats the default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    DeltaSink, FinishReason, GenerateRequest, GeneratedPart, Generation, HttpSettings, LlmError,
    ProviderSetupError, http_client, models,
};
use crate::config::{ProviderName, ProviderSetting};
use crate::event::{MessageKind, Part, Usage};

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
const API_VERSION: &str = "2023-06-01";
/// Output budget for models missing from the table.
const DEFAULT_MAX_TOKENS: u64 = 8192;

/// A configured client.
#[derive(Debug)]
pub struct AnthropicClient {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    headers: BTreeMap<String, String>,
}

impl AnthropicClient {
    /// Reads the key and base URL (setting > env > default).
    pub fn new(
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
        http: &HttpSettings,
    ) -> Result<AnthropicClient, ProviderSetupError> {
        let api_key = env("ANTHROPIC_API_KEY").filter(|k| !k.is_empty()).ok_or(
            ProviderSetupError::MissingVar {
                provider: ProviderName::Anthropic,
                var: "ANTHROPIC_API_KEY".into(),
            },
        )?;
        let base_url = setting
            .base_url
            .clone()
            .or_else(|| env("ANTHROPIC_BASE_URL").filter(|u| !u.is_empty()))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        Ok(AnthropicClient {
            http: http_client(http)?,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            headers: setting.headers.clone(),
        })
    }

    /// One non-streaming generation (`on_delta` is not called yet).
    pub async fn generate(
        &self,
        request: &GenerateRequest<'_>,
        _on_delta: DeltaSink<'_>,
    ) -> Result<Generation, LlmError> {
        let body = request_body(request);
        let mut call = self
            .http
            .post(format!("{}/messages", self.base_url))
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", API_VERSION)
            .json(&body);
        for (name, value) in &self.headers {
            call = call.header(name, value);
        }
        let response = call.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let text = response.text().await.map_err(transport_error)?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| truncate(&text, 500));
            return Err(LlmError::api(status, message, retry_after));
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            LlmError::fatal(
                "AI_APICallError",
                format!("invalid JSON from the Messages API: {e}"),
            )
        })?;
        parse_response(&value)
    }
}

fn transport_error(error: reqwest::Error) -> LlmError {
    LlmError {
        name: "AI_APICallError".into(),
        message: format!("request failed: {error}"),
        status_code: None,
        // Connection resets and timeouts are the network's fault, not the request's.
        is_retryable: error.is_timeout() || error.is_connect() || error.is_request(),
        retry_after: None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The JSON body of a Messages API request.
pub fn request_body(request: &GenerateRequest<'_>) -> Value {
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
    if let Some(budget) = request.reasoning_budget.filter(|b| *b > 0) {
        let budget = budget.max(1024);
        body["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        if budget >= max_output {
            body["max_tokens"] = json!(budget + DEFAULT_MAX_TOKENS);
        }
    }
    body
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

/// Turns a Messages API response into a [`Generation`].
pub fn parse_response(value: &Value) -> Result<Generation, LlmError> {
    let blocks = value["content"].as_array().ok_or_else(|| {
        LlmError::fatal(
            "AI_APICallError",
            "Messages API response has no `content` array",
        )
    })?;
    let mut parts = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => parts.push(GeneratedPart::Text(
                block["text"].as_str().unwrap_or_default().to_string(),
            )),
            Some("thinking") => parts.push(GeneratedPart::Thinking {
                text: block["thinking"].as_str().unwrap_or_default().to_string(),
                signature: block["signature"].as_str().map(str::to_string),
            }),
            Some("tool_use") => parts.push(GeneratedPart::ToolCall {
                id: block["id"].as_str().unwrap_or_default().to_string(),
                name: block["name"].as_str().unwrap_or_default().to_string(),
                args: match &block["input"] {
                    Value::Object(_) => block["input"].clone(),
                    _ => json!({}),
                },
            }),
            // redacted_thinking and server tools carry nothing the loop can use.
            _ => {}
        }
    }
    let finish_reason = match value["stop_reason"].as_str() {
        Some("end_turn") | Some("stop_sequence") => FinishReason::Stop,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("max_tokens") => FinishReason::Length,
        Some(other) => FinishReason::Other(other.to_string()),
        None => FinishReason::Other("unknown".into()),
    };
    let u = &value["usage"];
    let count = |k: &str| u[k].as_u64().unwrap_or(0);
    let cached = count("cache_read_input_tokens");
    let input = count("input_tokens") + count("cache_creation_input_tokens");
    let output = count("output_tokens");
    Ok(Generation {
        parts,
        finish_reason,
        usage: Usage {
            input_tokens: input,
            output_tokens: output,
            reasoning_tokens: 0,
            total_tokens: input + cached + output,
            cached_input_tokens: cached,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Message;
    use crate::llm::ToolSpec;
    use crate::llm::test_server::{Reply, TestServer};

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
            })
        );
    }

    #[tokio::test]
    async fn sends_key_version_and_custom_headers_and_parses_tool_use() {
        let server = TestServer::start(vec![Reply::json(
            200,
            json!({
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_9", "name": "readTextFile", "input": {"path": "b"}}
                ],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3}
            }),
        )])
        .await;
        let setting = ProviderSetting {
            base_url: Some(format!("{}/v1", server.url())),
            headers: [("x-team".to_string(), "core".to_string())].into(),
            ..Default::default()
        };
        let env = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk-test".to_string());
        let client =
            AnthropicClient::new(&setting, &env, &HttpSettings::default()).expect("client");
        let messages = conversation();
        let generation = client
            .generate(
                &GenerateRequest {
                    expert_key: "x",
                    model: "claude-haiku-4-5",
                    messages: &messages,
                    tools: &[],
                    reasoning_budget: None,
                },
                &|_| {},
            )
            .await
            .expect("generation");
        assert_eq!(generation.finish_reason, FinishReason::ToolCalls);
        assert_eq!(generation.text(), "Reading.");
        assert_eq!(
            generation.parts[0],
            GeneratedPart::Thinking {
                text: "hmm".into(),
                signature: Some("sig".into())
            }
        );
        assert_eq!(generation.usage.total_tokens, 18);
        let requests = server.requests().await;
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some("sk-test"));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header("x-team"), Some("core"));
        assert_eq!(r.json()["model"], "claude-haiku-4-5");
        assert_eq!(r.json()["max_tokens"], 8192);
    }

    #[tokio::test]
    async fn api_errors_keep_status_message_and_retry_after() {
        let server = TestServer::start(vec![Reply {
            status: 529,
            headers: vec![("retry-after".into(), "2".into())],
            body: r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                .into(),
        }])
        .await;
        let setting = ProviderSetting {
            base_url: Some(server.url()),
            ..Default::default()
        };
        let env = |_: &str| Some("sk".to_string());
        let client =
            AnthropicClient::new(&setting, &env, &HttpSettings::default()).expect("client");
        let err = client
            .generate(
                &GenerateRequest {
                    expert_key: "x",
                    model: "m",
                    messages: &[],
                    tools: &[],
                    reasoning_budget: None,
                },
                &|_| {},
            )
            .await
            .expect_err("529");
        assert_eq!(err.status_code, Some(529));
        assert_eq!(err.message, "Overloaded");
        assert!(err.is_retryable);
        assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
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
