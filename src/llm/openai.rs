//! OpenAI Chat Completions (`POST …/chat/completions`, streamed), and the OpenAI-compatible
//! endpoints that speak it: `openai`, `deepseek` and `azure-openai`.
//!
//! Where each one lives (setting > env > default, PERSTACK-COMPAT.md §7):
//! - openai: `baseUrl` / `OPENAI_BASE_URL` / `https://api.openai.com/v1`; `Authorization:
//!   Bearer $OPENAI_API_KEY`, `OpenAI-Organization` and `OpenAI-Project` from `organization` /
//!   `OPENAI_ORGANIZATION` and `project` / `OPENAI_PROJECT`.
//! - deepseek: `baseUrl` / `DEEPSEEK_BASE_URL` / `https://api.deepseek.com/v1`; Bearer
//!   `$DEEPSEEK_API_KEY`; no reasoning parameter (`deepseek-reasoner` always reasons, and its
//!   `reasoning_content` is streamed as reasoning).
//! - azure-openai: `baseUrl` / `AZURE_BASE_URL`, else `https://{resourceName}.openai.azure.com/openai`
//!   (`resourceName` / `AZURE_RESOURCE_NAME`); `api-key: $AZURE_API_KEY`. Like the AI SDK:
//!   `{base}/v1/chat/completions?api-version={apiVersion}` (default `v1`), or with
//!   `useDeploymentBasedUrls` `{base}/deployments/{model}/chat/completions?api-version=…`
//!   (default `2024-10-21`, the latest GA version of that API). No reasoning parameter.

use serde_json::{Value, json};

use super::http::{self, StreamRequest};
use super::sse::Framing;
use super::{
    DeltaSink, FinishReason, GenerateRequest, GeneratedPart, Generation, HttpSettings, LlmError,
    ProviderSetupError, StreamDelta, http_client, is_retryable_message, required_var,
    setting_or_env,
};
use crate::config::{ProviderName, ProviderSetting};
use crate::event::{MessageKind, Part, Usage};

const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const DEEPSEEK_BASE_URL: &str = "https://api.deepseek.com/v1";
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
pub struct OpenAiClient {
    http: reqwest::Client,
    provider: ProviderName,
    base_url: String,
    route: Route,
    headers: Vec<(String, String)>,
}

impl OpenAiClient {
    /// Reads keys, base URL and headers for `provider` (openai, deepseek or azure-openai).
    pub fn new(
        provider: ProviderName,
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
        http: &HttpSettings,
    ) -> Result<OpenAiClient, ProviderSetupError> {
        let mut headers = Vec::new();
        let (base_url, route) = match provider {
            ProviderName::AzureOpenai => {
                let key = required_var(provider, "AZURE_API_KEY", env)?;
                headers.push(("api-key".to_string(), key));
                let base = match setting_or_env(&setting.base_url, "AZURE_BASE_URL", env) {
                    Some(base) => base,
                    None => {
                        let resource =
                            setting_or_env(&setting.resource_name, "AZURE_RESOURCE_NAME", env)
                                .ok_or_else(|| ProviderSetupError::MissingVar {
                                    provider,
                                    var: "AZURE_RESOURCE_NAME".into(),
                                })?;
                        format!("https://{resource}.openai.azure.com/openai")
                    }
                };
                let version = setting_or_env(&setting.api_version, "AZURE_API_VERSION", env);
                let route = if setting.use_deployment_based_urls == Some(true) {
                    Route::AzureDeployment {
                        api_version: version
                            .unwrap_or_else(|| AZURE_DEPLOYMENT_API_VERSION.to_string()),
                    }
                } else {
                    Route::AzureV1 {
                        api_version: version.unwrap_or_else(|| AZURE_V1_API_VERSION.to_string()),
                    }
                };
                (base, route)
            }
            ProviderName::Deepseek => {
                let key = required_var(provider, "DEEPSEEK_API_KEY", env)?;
                headers.push(("authorization".to_string(), format!("Bearer {key}")));
                let base = setting_or_env(&setting.base_url, "DEEPSEEK_BASE_URL", env)
                    .unwrap_or_else(|| DEEPSEEK_BASE_URL.to_string());
                (base, Route::Plain)
            }
            _ => {
                let key = required_var(ProviderName::Openai, "OPENAI_API_KEY", env)?;
                headers.push(("authorization".to_string(), format!("Bearer {key}")));
                if let Some(org) =
                    setting_or_env(&setting.organization, "OPENAI_ORGANIZATION", env)
                {
                    headers.push(("openai-organization".to_string(), org));
                }
                if let Some(project) = setting_or_env(&setting.project, "OPENAI_PROJECT", env) {
                    headers.push(("openai-project".to_string(), project));
                }
                let base = setting_or_env(&setting.base_url, "OPENAI_BASE_URL", env)
                    .unwrap_or_else(|| OPENAI_BASE_URL.to_string());
                (base, Route::Plain)
            }
        };
        headers.extend(setting.headers.iter().map(|(n, v)| (n.clone(), v.clone())));
        Ok(OpenAiClient {
            http: http_client(http)?,
            provider,
            base_url: base_url.trim_end_matches('/').to_string(),
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
    pub async fn generate(
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
pub fn reasoning_effort(budget: u64) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=5000 => "medium",
        _ => "high",
    }
}

/// The JSON body of a streamed Chat Completions request.
pub fn request_body(provider: ProviderName, request: &GenerateRequest<'_>) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": chat_messages(request, provider == ProviderName::Deepseek),
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
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
            .collect();
        body["tool_choice"] = json!("auto");
    }
    if provider == ProviderName::Openai
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
                let text = joined_text(&message.contents);
                let calls: Vec<Value> = message
                    .contents
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
                let reasoning: String = message
                    .contents
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
                    continue;
                }
                out.push(turn);
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
        let delta = &choice["delta"];
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
                    t.contains("server_error") || t.contains("rate_limit") || t.contains("overloaded")
                }),
            message,
            status_code: None,
            retry_after: None,
        },
    }
}
