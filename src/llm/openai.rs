//! OpenAI Chat Completions (`POST …/chat/completions`, streamed), and the OpenAI-compatible
//! endpoints that speak it: `openai`, `deepseek` and `azure-openai`.
//!
//! Where each one lives and which variables hold its key and settings is the provider table's
//! (setting > env > default, PERSTACK-COMPAT.md §7); what differs is how they are spoken to:
//! - openai: `Authorization: Bearer <key>`, `OpenAI-Organization` and `OpenAI-Project` from
//!   `organization` and `project` (or their variables).
//! - deepseek: Bearer key; no reasoning parameter (`deepseek-reasoner` always reasons, and its
//!   `reasoning_content` is streamed as reasoning).
//! - azure-openai: `api-key: <key>` at the resource's endpoint (or the base URL). Like the AI SDK:
//!   `{base}/v1/chat/completions?api-version={apiVersion}` (default `v1`), or with
//!   `useDeploymentBasedUrls` `{base}/deployments/{model}/chat/completions?api-version=…`
//!   (default `2024-10-21`, the latest GA version of that API). No reasoning parameter.

use serde_json::{Value, json};

use super::http::{self, StreamRequest};
use super::providers::SettingKey;
use super::sse::Framing;
use super::{
    DeltaSink, FinishReason, GenerateRequest, GeneratedPart, Generation, HttpSettings, LlmError,
    ProviderName, ProviderSetting, ProviderSetupError, StreamDelta, is_retryable_message,
    provider_http_client,
};
use crate::event::{MessageKind, Part, Usage};

const AZURE_V1_API_VERSION: &str = "v1";
const AZURE_DEPLOYMENT_API_VERSION: &str = "2024-10-21";

/// How the chat-completions URL is made from the model id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `{base}/chat/completions`.
    Plain,
    /// `{base}/v1/chat/completions?api-version=…`.
    AzureV1 { api_version: String },
    /// `{base}/deployments/{model}/chat/completions?api-version=…`.
    AzureDeployment { api_version: String },
}

/// A configured client for one OpenAI-compatible provider.
#[derive(Debug)]
pub(crate) struct OpenAiClient {
    http: reqwest::Client,
    provider: ProviderName,
    base_url: String,
    route: Route,
    headers: Vec<(String, String)>,
}

impl OpenAiClient {
    /// Reads keys, base URL and headers for `provider` (openai, deepseek or azure-openai).
    pub(crate) fn new(
        provider: ProviderName,
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
        http: &HttpSettings,
    ) -> Result<OpenAiClient, ProviderSetupError> {
        // Anything but deepseek and azure-openai is spoken to as openai.
        let provider = match provider {
            ProviderName::AzureOpenai | ProviderName::Deepseek => provider,
            _ => ProviderName::Openai,
        };
        let info = provider.info();
        let key = info.api_key(env)?;
        let mut headers = Vec::new();
        let route = match provider {
            ProviderName::AzureOpenai => {
                headers.push(("api-key".to_string(), key));
                let version = info.setting_or_env(SettingKey::ApiVersion, setting, env);
                if setting.use_deployment_based_urls == Some(true) {
                    Route::AzureDeployment {
                        api_version: version
                            .unwrap_or_else(|| AZURE_DEPLOYMENT_API_VERSION.to_string()),
                    }
                } else {
                    Route::AzureV1 {
                        api_version: version.unwrap_or_else(|| AZURE_V1_API_VERSION.to_string()),
                    }
                }
            }
            ProviderName::Deepseek => {
                headers.push(("authorization".to_string(), format!("Bearer {key}")));
                Route::Plain
            }
            _ => {
                headers.push(("authorization".to_string(), format!("Bearer {key}")));
                if let Some(org) = info.setting_or_env(SettingKey::Organization, setting, env) {
                    headers.push(("openai-organization".to_string(), org));
                }
                if let Some(project) = info.setting_or_env(SettingKey::Project, setting, env) {
                    headers.push(("openai-project".to_string(), project));
                }
                Route::Plain
            }
        };
        let base_url = info.base_url(setting, env)?;
        headers.extend(setting.headers.iter().map(|(n, v)| (n.clone(), v.clone())));
        Ok(OpenAiClient {
            http: provider_http_client(http, env)?,
            provider,
            base_url,
            route,
            headers,
        })
    }

    /// The chat-completions URL for `model`.
    fn url(&self, model: &str) -> String {
        let base = &self.base_url;
        match &self.route {
            Route::Plain => format!("{base}/chat/completions"),
            Route::AzureV1 { api_version } => {
                format!("{base}/v1/chat/completions?api-version={api_version}")
            }
            // Deployment names are letters, digits, `-`, `_` and `.`: nothing to escape.
            Route::AzureDeployment { api_version } => {
                format!("{base}/deployments/{model}/chat/completions?api-version={api_version}")
            }
        }
    }

    /// One streamed generation.
    pub(crate) async fn generate(
        &self,
        request: &GenerateRequest<'_>,
        on_delta: DeltaSink<'_>,
    ) -> Result<Generation, LlmError> {
        let body = request_body(self.provider, request);
        let mut stream = ChatStream::new(on_delta);
        http::post_streaming(
            &self.http,
            StreamRequest {
                url: self.url(request.model),
                headers: self.headers.clone(),
                body: &body,
                framing: Framing::Sse,
            },
            |event| stream.event(&event.data),
        )
        .await?;
        stream.finish()
    }
}

/// `reasoning_effort` for a budget in tokens (§7): ≤2048 low, ≤5000 medium, else high.
pub(crate) fn reasoning_effort(budget: u64) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=5000 => "medium",
        _ => "high",
    }
}

/// Whether an OpenAI model takes `reasoning_effort`: the o-series and GPT-5 (not
/// `gpt-5-chat-*`). Others (gpt-4.1, gpt-4o) answer 400 "Unsupported parameter", so with the
/// default budget (`low`) they would never work.
pub(crate) fn is_reasoning_model(model: &str) -> bool {
    let o_series = model.starts_with('o') && model[1..].starts_with(|c: char| c.is_ascii_digit());
    o_series || (model.starts_with("gpt-5") && !model.starts_with("gpt-5-chat"))
}

/// Tools in the function-calling shape that Chat Completions and Ollama share.
pub(crate) fn function_tools(tools: &[super::ToolSpec]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema,
                },
            })
        })
        .collect()
}

/// The JSON body of a streamed Chat Completions request.
pub(crate) fn request_body(provider: ProviderName, request: &GenerateRequest<'_>) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": chat_messages(request, provider == ProviderName::Deepseek),
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !request.tools.is_empty() {
        body["tools"] = function_tools(request.tools);
        body["tool_choice"] = json!("auto");
    }
    if provider == ProviderName::Openai
        && is_reasoning_model(request.model)
        && let Some(budget) = request.reasoning_budget.filter(|b| *b > 0)
    {
        body["reasoning_effort"] = json!(reasoning_effort(budget));
    }
    body
}

/// The conversation as Chat Completions messages. `reasoning_content` is sent back on assistant
/// turns when `with_reasoning` (DeepSeek wants its reasoning back during a tool-call loop).
pub(crate) fn chat_messages(request: &GenerateRequest<'_>, with_reasoning: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for message in request.messages {
        match message.kind {
            MessageKind::InstructionMessage => {
                let text = joined_text(&message.contents);
                if !text.is_empty() {
                    out.push(json!({"role": "system", "content": text}));
                }
            }
            MessageKind::UserMessage => {
                let content = user_content(&message.contents);
                if content != json!([]) {
                    out.push(json!({"role": "user", "content": content}));
                }
            }
            MessageKind::ExpertMessage => {
                out.extend(assistant_turn(&message.contents, with_reasoning));
            }
            MessageKind::ToolMessage => {
                // Tool messages carry text only; images and files a tool returned follow in a
                // user message so the model still sees them.
                let mut media = Vec::new();
                for part in &message.contents {
                    if let Part::ToolResultPart {
                        tool_call_id,
                        contents,
                        ..
                    } = part
                    {
                        let text = joined_text(contents);
                        out.push(json!({
                            "role": "tool",
                            "tool_call_id": tool_call_id,
                            "content": text,
                        }));
                        media.extend(contents.iter().filter(|p| p.as_text().is_none()).cloned());
                    }
                }
                if !media.is_empty() {
                    out.push(json!({"role": "user", "content": user_content(&media)}));
                }
            }
        }
    }
    out
}

/// An Expert message as an assistant turn: its text, its tool calls and (`with_reasoning`) its
/// reasoning; `None` when it has neither text nor tool calls.
fn assistant_turn(contents: &[Part], with_reasoning: bool) -> Option<Value> {
    let text = joined_text(contents);
    let calls: Vec<Value> = contents
        .iter()
        .filter_map(|p| match p {
            Part::ToolCallPart {
                tool_call_id,
                tool_name,
                args,
                ..
            } => Some(json!({
                "id": tool_call_id,
                "type": "function",
                "function": {"name": tool_name, "arguments": args.to_string()},
            })),
            _ => None,
        })
        .collect();
    let mut turn = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        turn["tool_calls"] = Value::Array(calls);
    }
    let reasoning: String = contents
        .iter()
        .filter_map(|p| match p {
            Part::ThinkingPart { thinking, .. } => Some(thinking.as_str()),
            _ => None,
        })
        .collect();
    if with_reasoning && !reasoning.is_empty() {
        turn["reasoning_content"] = json!(reasoning);
    }
    if turn["content"].is_null() && turn.get("tool_calls").is_none() {
        return None;
    }
    Some(turn)
}

/// The text parts of `parts`, joined with newlines.
pub(crate) fn joined_text(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(Part::as_text)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A user turn's content: a plain string when it is all text, else content parts.
fn user_content(parts: &[Part]) -> Value {
    if parts.iter().all(|p| p.as_text().is_some()) {
        let text = joined_text(parts);
        return if text.is_empty() {
            json!([])
        } else {
            json!(text)
        };
    }
    let items: Vec<Value> = parts
        .iter()
        .filter_map(|part| match part {
            Part::TextPart { text, .. } if !text.is_empty() => {
                Some(json!({"type": "text", "text": text}))
            }
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
                "type": "image_url",
                "image_url": {"url": format!("data:{mime_type};base64,{encoded_data}")},
            })),
            Part::ImageUrlPart { url, .. } => {
                Some(json!({"type": "image_url", "image_url": {"url": url}}))
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
                "type": "file",
                "file": {
                    "filename": if mime_type == "application/pdf" { "file.pdf" } else { "file" },
                    "file_data": format!("data:{mime_type};base64,{encoded_data}"),
                },
            })),
            Part::FileUrlPart { url, .. } => Some(json!({"type": "text", "text": url})),
            _ => None,
        })
        .collect();
    Value::Array(items)
}

/// A streamed tool call as its pieces arrive (assembled by `index`).
#[derive(Debug, Default)]
struct PendingCall {
    id: String,
    name: String,
    arguments: String,
}

/// The state of one streamed Chat Completions answer.
struct ChatStream<'a> {
    on_delta: DeltaSink<'a>,
    reasoning: String,
    text: String,
    calls: Vec<(u64, PendingCall)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

impl<'a> ChatStream<'a> {
    fn new(on_delta: DeltaSink<'a>) -> ChatStream<'a> {
        ChatStream {
            on_delta,
            reasoning: String::new(),
            text: String::new(),
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            done: false,
        }
    }

    fn event(&mut self, data: &str) -> Result<(), LlmError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| http::bad_chunk("the provider", data, e))?;
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return Err(stream_error(&chunk["error"]));
        }
        if chunk["usage"].is_object() {
            self.usage = Some(chunk["usage"].clone());
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return Ok(());
        };
        // A non-streamed answer (a gateway ignoring `stream`) has the whole `message` instead.
        let delta = if choice["message"].is_object() {
            &choice["message"]
        } else {
            &choice["delta"]
        };
        // DeepSeek calls it reasoning_content; Ollama, vLLM and OpenRouter call it reasoning.
        for key in ["reasoning_content", "reasoning"] {
            if let Some(chunk) = delta[key].as_str().filter(|c| !c.is_empty()) {
                self.reasoning.push_str(chunk);
                (self.on_delta)(StreamDelta::Reasoning(chunk.to_string()));
            }
        }
        if let Some(chunk) = delta["content"].as_str().filter(|c| !c.is_empty()) {
            self.text.push_str(chunk);
            (self.on_delta)(StreamDelta::Text(chunk.to_string()));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(self.calls.len() as u64);
            let pending = match self.calls.iter().position(|(i, _)| *i == index) {
                Some(at) => &mut self.calls[at].1,
                None => {
                    self.calls.push((index, PendingCall::default()));
                    let last = self.calls.len() - 1;
                    &mut self.calls[last].1
                }
            };
            if let Some(id) = call["id"].as_str().filter(|s| !s.is_empty()) {
                pending.id = id.to_string();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                pending.name.push_str(name);
            }
            if let Some(args) = call["function"]["arguments"].as_str() {
                pending.arguments.push_str(args);
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Generation, LlmError> {
        if !self.done && self.finish_reason.is_none() {
            return Err(LlmError {
                name: http::API_CALL_ERROR.into(),
                message: "the chat completions stream ended before its finish_reason".into(),
                status_code: None,
                is_retryable: true,
                retry_after: None,
            });
        }
        let mut parts = Vec::new();
        if !self.reasoning.is_empty() {
            parts.push(GeneratedPart::Thinking {
                text: self.reasoning,
                signature: None,
            });
        }
        if !self.text.is_empty() {
            parts.push(GeneratedPart::Text(self.text));
        }
        self.calls.sort_by_key(|(i, _)| *i);
        let has_calls = !self.calls.is_empty();
        for (_, call) in self.calls {
            parts.push(GeneratedPart::ToolCall {
                id: if call.id.is_empty() {
                    format!("call_{}", crate::ids::new_id())
                } else {
                    call.id
                },
                args: parse_arguments(&call.name, &call.arguments)?,
                name: call.name,
            });
        }
        let finish_reason = match self.finish_reason.as_deref() {
            _ if has_calls => FinishReason::ToolCalls,
            Some("stop") | None => FinishReason::Stop,
            Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
            Some("length") => FinishReason::Length,
            Some(other) => FinishReason::Other(other.to_string()),
        };
        Ok(Generation {
            parts,
            finish_reason,
            usage: self.usage.as_ref().map(chat_usage).unwrap_or_default(),
        })
    }
}

/// A tool call's `arguments` string as a JSON object (`{}` when empty).
pub(crate) fn parse_arguments(name: &str, arguments: &str) -> Result<Value, LlmError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    let args: Value = serde_json::from_str(arguments).map_err(|e| {
        LlmError::fatal(
            "AI_InvalidToolArgumentsError",
            format!("arguments of tool call `{name}` are not valid JSON ({e}): {arguments}"),
        )
    })?;
    Ok(if args.is_object() { args } else { json!({}) })
}

/// Chat Completions `usage` → [`Usage`] (prompt tokens include the cached ones).
fn chat_usage(usage: &Value) -> Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let input = n(&usage["prompt_tokens"]);
    let output = n(&usage["completion_tokens"]);
    Usage {
        input_tokens: input,
        output_tokens: output,
        reasoning_tokens: n(&usage["completion_tokens_details"]["reasoning_tokens"]),
        total_tokens: usage["total_tokens"].as_u64().unwrap_or(input + output),
        cached_input_tokens: n(&usage["prompt_tokens_details"]["cached_tokens"]),
    }
}

/// An `error` object inside a 200 stream.
fn stream_error(error: &Value) -> LlmError {
    let message = error["message"]
        .as_str()
        .or_else(|| error.as_str())
        .unwrap_or("the provider reported an error mid-stream")
        .to_string();
    let code = error["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .or_else(|| error["code"].as_str().and_then(|c| c.parse().ok()));
    match code {
        Some(status) => LlmError::api(status, message, None),
        None => LlmError {
            name: http::API_CALL_ERROR.into(),
            is_retryable: is_retryable_message(&message)
                || error["type"].as_str().is_some_and(|t| {
                    t.contains("server_error")
                        || t.contains("rate_limit")
                        || t.contains("overloaded")
                }),
            message,
            status_code: None,
            retry_after: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Message;
    use crate::llm::ToolSpec;
    use crate::llm::test_message as message;
    use crate::test_support::http::TestServer;
    use crate::test_support::replies::{Reply, pieces};
    use std::sync::Mutex;

    fn conversation() -> Vec<Message> {
        vec![
            message(
                MessageKind::InstructionMessage,
                vec![Part::text("You are terse.")],
            ),
            message(MessageKind::UserMessage, vec![Part::text("Read a.txt")]),
            message(
                MessageKind::ExpertMessage,
                vec![
                    Part::ThinkingPart {
                        id: "p".into(),
                        thinking: "need it".into(),
                        signature: None,
                    },
                    Part::ToolCallPart {
                        id: "p".into(),
                        tool_call_id: "call_1".into(),
                        tool_name: "readTextFile".into(),
                        args: json!({"path": "a.txt"}),
                    },
                ],
            ),
            message(
                MessageKind::ToolMessage,
                vec![Part::ToolResultPart {
                    id: "p".into(),
                    tool_call_id: "call_1".into(),
                    tool_name: "readTextFile".into(),
                    contents: vec![
                        Part::text("hello"),
                        Part::ImageInlinePart {
                            id: "i".into(),
                            encoded_data: "iVBOR".into(),
                            mime_type: "image/png".into(),
                        },
                    ],
                    is_error: None,
                }],
            ),
        ]
    }

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "readTextFile".into(),
            description: "Read a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        }]
    }

    fn request<'a>(
        messages: &'a [Message],
        tools: &'a [ToolSpec],
        budget: Option<u64>,
    ) -> GenerateRequest<'a> {
        GenerateRequest {
            expert_key: "x",
            model: "gpt-5",
            messages,
            tools,
            reasoning_budget: budget,
        }
    }

    fn sse(chunks: &[Value]) -> String {
        let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        body.push_str("data: [DONE]\n\n");
        body
    }

    /// Text, then two tool calls whose names and arguments arrive in pieces, by index.
    fn tool_call_stream() -> String {
        let chunk = |delta: Value, finish: Value| json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        sse(&[
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"reasoning_content": "Think"}), Value::Null),
            chunk(json!({"content": "Let me "}), Value::Null),
            chunk(json!({"content": "look."}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "readTextFile", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "listDirectory", "arguments": "{\"path\":"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\": \"a"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ".txt\"}"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "function": {"arguments": " \".\"}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
            json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28, "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}}),
        ])
    }

    #[test]
    fn request_body_maps_system_tools_results_and_reasoning_effort() {
        let messages = conversation();
        let tools = tools();
        let body = request_body(
            ProviderName::Openai,
            &request(&messages, &tools, Some(5000)),
        );
        assert_eq!(
            body,
            json!({
                "model": "gpt-5",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Read a.txt"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "readTextFile", "arguments": "{\"path\":\"a.txt\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "hello"},
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "tools": [{"type": "function", "function": {"name": "readTextFile", "description": "Read a file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}],
                "tool_choice": "auto",
                "reasoning_effort": "medium",
            })
        );
    }

    #[test]
    fn reasoning_effort_follows_the_budget_and_only_openai_gets_it() {
        assert_eq!(reasoning_effort(1024), "low"); // minimal
        assert_eq!(reasoning_effort(2048), "low");
        assert_eq!(reasoning_effort(2049), "medium");
        assert_eq!(reasoning_effort(5000), "medium");
        assert_eq!(reasoning_effort(5001), "high");
        let messages = conversation();
        for provider in [ProviderName::Deepseek, ProviderName::AzureOpenai] {
            let body = request_body(provider, &request(&messages, &[], Some(10_000)));
            assert!(body.get("reasoning_effort").is_none(), "{provider}");
        }
        assert!(
            request_body(ProviderName::Openai, &request(&messages, &[], None))
                .get("reasoning_effort")
                .is_none()
        );
        // DeepSeek wants its reasoning back during a tool-call loop.
        let body = request_body(ProviderName::Deepseek, &request(&messages, &[], None));
        assert_eq!(body["messages"][2]["reasoning_content"], "need it");
    }

    #[tokio::test]
    async fn openai_streams_text_and_assembles_tool_calls_by_index() {
        let server = TestServer::replying(vec![Reply::stream(pieces(&tool_call_stream(), 11))]);
        let setting = ProviderSetting {
            base_url: Some(format!("{}/v1", server.url())),
            organization: Some("org-setting".into()),
            headers: [("x-team".to_string(), "core".to_string())].into(),
            ..Default::default()
        };
        let env = |k: &str| match k {
            "OPENAI_API_KEY" => Some("sk-openai".to_string()),
            "OPENAI_ORGANIZATION" => Some("org-env".to_string()),
            "OPENAI_PROJECT" => Some("proj-env".to_string()),
            "OPENAI_BASE_URL" => Some("https://ignored.example/v1".to_string()),
            _ => None,
        };
        let client = OpenAiClient::new(
            ProviderName::Openai,
            &setting,
            &env,
            &HttpSettings::default(),
        )
        .expect("client");
        let deltas = Mutex::new(Vec::new());
        let messages = conversation();
        let tools = tools();
        let generation = client
            .generate(&request(&messages, &tools, None), &|d| {
                deltas.lock().unwrap().push(d)
            })
            .await
            .expect("generation");
        assert_eq!(
            *deltas.lock().unwrap(),
            [
                StreamDelta::Reasoning("Think".into()),
                StreamDelta::Text("Let me ".into()),
                StreamDelta::Text("look.".into()),
            ]
        );
        assert_eq!(
            generation.parts,
            [
                GeneratedPart::Thinking {
                    text: "Think".into(),
                    signature: None
                },
                GeneratedPart::Text("Let me look.".into()),
                GeneratedPart::ToolCall {
                    id: "call_a".into(),
                    name: "readTextFile".into(),
                    args: json!({"path": "a.txt"})
                },
                GeneratedPart::ToolCall {
                    id: "call_b".into(),
                    name: "listDirectory".into(),
                    args: json!({"path": "."})
                },
            ]
        );
        assert_eq!(generation.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            generation.usage,
            Usage {
                input_tokens: 20,
                output_tokens: 8,
                reasoning_tokens: 2,
                total_tokens: 28,
                cached_input_tokens: 4
            }
        );
        let r = &server.requests()[0];
        assert_eq!(r.target, "/v1/chat/completions");
        assert_eq!(r.header("authorization"), Some("Bearer sk-openai"));
        assert_eq!(
            r.header("openai-organization"),
            Some("org-setting"),
            "setting beats env"
        );
        assert_eq!(r.header("openai-project"), Some("proj-env"));
        assert_eq!(r.header("x-team"), Some("core"));
        assert_eq!(r.json()["stream_options"], json!({"include_usage": true}));
    }

    #[tokio::test]
    async fn deepseek_uses_its_key_and_base_url() {
        let server = TestServer::replying(vec![Reply::stream(vec![tool_call_stream()])]);
        let url = server.url();
        let env = |k: &str| match k {
            "DEEPSEEK_API_KEY" => Some("sk-ds".to_string()),
            "DEEPSEEK_BASE_URL" => Some(url.clone()),
            _ => None,
        };
        let client = OpenAiClient::new(
            ProviderName::Deepseek,
            &ProviderSetting::default(),
            &env,
            &HttpSettings::default(),
        )
        .expect("client");
        client
            .generate(&request(&[], &[], Some(10_000)), &|_| {})
            .await
            .expect("generation");
        let r = &server.requests()[0];
        assert_eq!(r.target, "/chat/completions");
        assert_eq!(r.header("authorization"), Some("Bearer sk-ds"));
        assert!(r.json().get("reasoning_effort").is_none());
    }

    #[tokio::test]
    async fn azure_v1_and_deployment_urls_with_api_key_header() {
        let server = TestServer::replying(vec![
            Reply::stream(vec![tool_call_stream()]),
            Reply::stream(vec![tool_call_stream()]),
        ]);
        let url = format!("{}/openai", server.url());
        let env = |k: &str| match k {
            "AZURE_API_KEY" => Some("az-key".to_string()),
            "AZURE_BASE_URL" => Some(url.clone()),
            _ => None,
        };
        let v1 = OpenAiClient::new(
            ProviderName::AzureOpenai,
            &ProviderSetting::default(),
            &env,
            &HttpSettings::default(),
        )
        .expect("client");
        v1.generate(&request(&[], &[], None), &|_| {})
            .await
            .expect("v1");
        let setting = ProviderSetting {
            use_deployment_based_urls: Some(true),
            api_version: Some("2025-01-01-preview".into()),
            ..Default::default()
        };
        let deployment = OpenAiClient::new(
            ProviderName::AzureOpenai,
            &setting,
            &env,
            &HttpSettings::default(),
        )
        .expect("client");
        deployment
            .generate(&request(&[], &[], None), &|_| {})
            .await
            .expect("deployment");
        let requests = server.requests();
        assert_eq!(
            requests[0].target,
            "/openai/v1/chat/completions?api-version=v1"
        );
        assert_eq!(
            requests[1].target,
            "/openai/deployments/gpt-5/chat/completions?api-version=2025-01-01-preview"
        );
        for r in &requests {
            assert_eq!(r.header("api-key"), Some("az-key"));
            assert_eq!(r.header("authorization"), None);
        }
    }

    #[test]
    fn azure_resource_name_makes_the_url_and_is_required_without_a_base_url() {
        let env = |k: &str| match k {
            "AZURE_API_KEY" => Some("k".to_string()),
            "AZURE_RESOURCE_NAME" => Some("env-res".to_string()),
            _ => None,
        };
        let setting = ProviderSetting {
            resource_name: Some("my-res".into()),
            ..Default::default()
        };
        let client = OpenAiClient::new(
            ProviderName::AzureOpenai,
            &setting,
            &env,
            &HttpSettings::default(),
        )
        .expect("client");
        assert_eq!(
            client.url("gpt-4.1"),
            "https://my-res.openai.azure.com/openai/v1/chat/completions?api-version=v1"
        );
        let only_key = |k: &str| (k == "AZURE_API_KEY").then(|| "k".to_string());
        let err = OpenAiClient::new(
            ProviderName::AzureOpenai,
            &ProviderSetting::default(),
            &only_key,
            &HttpSettings::default(),
        )
        .expect_err("no resource");
        assert_eq!(
            err.to_string(),
            "AZURE_RESOURCE_NAME is not set (provider `azure-openai` needs it)"
        );
    }

    #[tokio::test]
    async fn http_errors_and_error_chunks_map_to_llm_errors() {
        let server = TestServer::replying(vec![
            Reply::raw(
                429,
                vec![("retry-after-ms", "250")],
                r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
            ),
            Reply::stream(vec![format!(
                "data: {}\n\n",
                json!({"error": {"message": "The server had an error", "type": "server_error"}})
            )]),
            Reply::raw(
                401,
                vec![],
                r#"{"error":{"message":"Incorrect API key provided"}}"#,
            ),
        ]);
        let env = |k: &str| (k == "OPENAI_API_KEY").then(|| "k".to_string());
        let setting = ProviderSetting {
            base_url: Some(server.url()),
            ..Default::default()
        };
        let client = OpenAiClient::new(
            ProviderName::Openai,
            &setting,
            &env,
            &HttpSettings::default(),
        )
        .expect("client");
        let limited = client
            .generate(&request(&[], &[], None), &|_| {})
            .await
            .expect_err("429");
        assert_eq!(
            (limited.status_code, limited.is_retryable),
            (Some(429), true)
        );
        assert_eq!(
            limited.retry_after,
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(limited.message, "Rate limit reached");
        let mid = client
            .generate(&request(&[], &[], None), &|_| {})
            .await
            .expect_err("chunk");
        assert!(mid.is_retryable, "{mid:?}");
        let auth = client
            .generate(&request(&[], &[], None), &|_| {})
            .await
            .expect_err("401");
        assert_eq!((auth.status_code, auth.is_retryable), (Some(401), false));
    }

    #[tokio::test]
    async fn a_gateway_answering_with_one_chat_completion_still_works() {
        let server = TestServer::replying(vec![Reply::raw(
            200,
            vec![("content-type", "application/json; charset=utf-8")],
            json!({
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant",
                    "content": "Looking.",
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "readTextFile", "arguments": "{\"path\":\"a\"}"}}]
                }}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            })
            .to_string(),
        )]);
        let env = |k: &str| (k == "OPENAI_API_KEY").then(|| "k".to_string());
        let setting = ProviderSetting {
            base_url: Some(server.url()),
            ..Default::default()
        };
        let client = OpenAiClient::new(
            ProviderName::Openai,
            &setting,
            &env,
            &HttpSettings::default(),
        )
        .expect("client");
        let generation = client
            .generate(&request(&[], &[], None), &|_| {})
            .await
            .expect("generation");
        assert_eq!(
            generation.parts,
            [
                GeneratedPart::Text("Looking.".into()),
                GeneratedPart::ToolCall {
                    id: "call_1".into(),
                    name: "readTextFile".into(),
                    args: json!({"path": "a"})
                },
            ]
        );
        assert_eq!(generation.usage.total_tokens, 5);
    }

    #[test]
    fn missing_keys_name_their_variables() {
        let env = |_: &str| None;
        for (provider, var) in [
            (ProviderName::Openai, "OPENAI_API_KEY"),
            (ProviderName::Deepseek, "DEEPSEEK_API_KEY"),
            (ProviderName::AzureOpenai, "AZURE_API_KEY"),
        ] {
            let err = OpenAiClient::new(
                provider,
                &ProviderSetting::default(),
                &env,
                &HttpSettings::default(),
            )
            .expect_err("no key");
            assert!(
                err.to_string().starts_with(&format!("{var} is not set")),
                "{err}"
            );
        }
    }
}
