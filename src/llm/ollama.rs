//! Ollama's native chat API (`POST {baseUrl}/chat`, newline-delimited JSON stream).
//!
//! The native API rather than Ollama's OpenAI-compatible one, because Perstack's provider (the
//! `ollama-ai-provider` of the AI SDK) uses it: the base URL therefore means the same thing
//! here — it includes `/api` (variable and default in the provider table) — and reasoning is
//! `think: true`, which only the native API takes. No key; `[provider.setting] headers` are sent
//! as they are (for a gateway in front of Ollama).

use serde_json::{Value, json};

use super::http::{self, StreamRequest};
use super::openai::joined_text;
use super::sse::Framing;
use super::{
    DeltaSink, FinishReason, GenerateRequest, GeneratedPart, Generation, HttpSettings, LlmError,
    ProviderName, ProviderSetting, ProviderSetupError, StreamDelta, provider_http_client,
};
use crate::event::{MessageKind, Part, Usage};

/// A configured client.
#[derive(Debug)]
pub(crate) struct OllamaClient {
    http: reqwest::Client,
    base_url: String,
    headers: Vec<(String, String)>,
}

impl OllamaClient {
    /// Reads the base URL (setting > variable > default).
    pub(crate) fn new(
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
        http: &HttpSettings,
    ) -> Result<OllamaClient, ProviderSetupError> {
        let base_url = ProviderName::Ollama.info().base_url(setting, env)?;
        Ok(OllamaClient {
            http: provider_http_client(http, env)?,
            base_url,
            headers: setting
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
        })
    }

    /// One streamed generation. A model that cannot think (Ollama answers 400 "… does not
    /// support thinking") is asked again without `think`: the default budget turns reasoning
    /// on, and most local models have none.
    pub(crate) async fn generate(
        &self,
        request: &GenerateRequest<'_>,
        on_delta: DeltaSink<'_>,
    ) -> Result<Generation, LlmError> {
        let mut body = request_body(request);
        match self.chat(&body, on_delta).await {
            Err(error)
                if body.get("think").is_some()
                    && error.message.contains("does not support thinking") =>
            {
                if let Some(map) = body.as_object_mut() {
                    map.remove("think");
                }
                self.chat(&body, on_delta).await
            }
            result => result,
        }
    }

    async fn chat(&self, body: &Value, on_delta: DeltaSink<'_>) -> Result<Generation, LlmError> {
        let mut stream = ChatStream::new(on_delta);
        http::post_streaming(
            &self.http,
            StreamRequest {
                url: format!("{}/chat", self.base_url),
                headers: self.headers.clone(),
                body,
                framing: Framing::JsonLines,
            },
            |event| stream.line(&event.data),
        )
        .await?;
        stream.finish()
    }
}

/// The JSON body of a streamed `/api/chat` request.
pub(crate) fn request_body(request: &GenerateRequest<'_>) -> Value {
    let mut messages = Vec::new();
    for message in request.messages {
        match message.kind {
            MessageKind::InstructionMessage => {
                messages.push(json!({"role": "system", "content": joined_text(&message.contents)}))
            }
            MessageKind::UserMessage => messages.push(user_turn(&message.contents)),
            MessageKind::ExpertMessage => {
                let mut turn = json!({
                    "role": "assistant",
                    "content": joined_text(&message.contents),
                });
                let thinking: String = message
                    .contents
                    .iter()
                    .filter_map(|p| match p {
                        Part::ThinkingPart { thinking, .. } => Some(thinking.as_str()),
                        _ => None,
                    })
                    .collect();
                if !thinking.is_empty() {
                    turn["thinking"] = json!(thinking);
                }
                let calls: Vec<Value> = message
                    .contents
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCallPart {
                            tool_name, args, ..
                        } => Some(json!({"function": {"name": tool_name, "arguments": args}})),
                        _ => None,
                    })
                    .collect();
                if !calls.is_empty() {
                    turn["tool_calls"] = Value::Array(calls);
                }
                messages.push(turn);
            }
            MessageKind::ToolMessage => {
                for part in &message.contents {
                    if let Part::ToolResultPart {
                        tool_name,
                        contents,
                        ..
                    } = part
                    {
                        let mut turn = user_turn(contents);
                        turn["role"] = json!("tool");
                        turn["tool_name"] = json!(tool_name);
                        messages.push(turn);
                    }
                }
            }
        }
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
    });
    if !request.tools.is_empty() {
        body["tools"] = super::openai::function_tools(request.tools);
    }
    if request.reasoning_budget.is_some_and(|b| b > 0) {
        body["think"] = json!(true);
    }
    body
}

/// `{role: "user", content, images?}`: Ollama takes images as bare base64 strings.
fn user_turn(parts: &[Part]) -> Value {
    let mut turn = json!({"role": "user", "content": joined_text(parts)});
    let images: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Part::ImageInlinePart { encoded_data, .. }
            | Part::ImageBinaryPart {
                data: encoded_data, ..
            } => Some(encoded_data.as_str()),
            _ => None,
        })
        .collect();
    if !images.is_empty() {
        turn["images"] = json!(images);
    }
    turn
}

struct ChatStream<'a> {
    on_delta: DeltaSink<'a>,
    thinking: String,
    text: String,
    calls: Vec<(String, Value)>,
    done_reason: Option<String>,
    usage: Usage,
    done: bool,
}

impl<'a> ChatStream<'a> {
    fn new(on_delta: DeltaSink<'a>) -> ChatStream<'a> {
        ChatStream {
            on_delta,
            thinking: String::new(),
            text: String::new(),
            calls: Vec::new(),
            done_reason: None,
            usage: Usage::default(),
            done: false,
        }
    }

    fn line(&mut self, data: &str) -> Result<(), LlmError> {
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| http::bad_chunk("Ollama", data, e))?;
        if let Some(error) = chunk["error"].as_str() {
            return Err(LlmError {
                name: http::API_CALL_ERROR.into(),
                message: error.to_string(),
                status_code: None,
                is_retryable: super::is_retryable_message(error),
                retry_after: None,
            });
        }
        let message = &chunk["message"];
        if let Some(piece) = message["thinking"].as_str().filter(|s| !s.is_empty()) {
            self.thinking.push_str(piece);
            (self.on_delta)(StreamDelta::Reasoning(piece.to_string()));
        }
        if let Some(piece) = message["content"].as_str().filter(|s| !s.is_empty()) {
            self.text.push_str(piece);
            (self.on_delta)(StreamDelta::Text(piece.to_string()));
        }
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            let name = call["function"]["name"].as_str().unwrap_or_default();
            let args = match &call["function"]["arguments"] {
                Value::Object(_) => call["function"]["arguments"].clone(),
                Value::String(s) => super::openai::parse_arguments(name, s)?,
                _ => json!({}),
            };
            self.calls.push((name.to_string(), args));
        }
        if chunk["done"] == json!(true) {
            self.done = true;
            self.done_reason = chunk["done_reason"].as_str().map(str::to_string);
            let input = chunk["prompt_eval_count"].as_u64().unwrap_or(0);
            let output = chunk["eval_count"].as_u64().unwrap_or(0);
            self.usage = Usage {
                input_tokens: input,
                output_tokens: output,
                reasoning_tokens: 0,
                total_tokens: input + output,
                cached_input_tokens: 0,
            };
        }
        Ok(())
    }

    fn finish(self) -> Result<Generation, LlmError> {
        if !self.done {
            return Err(LlmError {
                name: http::API_CALL_ERROR.into(),
                message: "the Ollama stream ended before `done`".into(),
                status_code: None,
                is_retryable: true,
                retry_after: None,
            });
        }
        let mut parts = Vec::new();
        if !self.thinking.is_empty() {
            parts.push(GeneratedPart::Thinking {
                text: self.thinking,
                signature: None,
            });
        }
        if !self.text.is_empty() {
            parts.push(GeneratedPart::Text(self.text));
        }
        let has_calls = !self.calls.is_empty();
        // Ollama gives calls no ids; the loop needs one per call to pair results with calls.
        for (name, args) in self.calls {
            parts.push(GeneratedPart::ToolCall {
                id: format!("call_{}", crate::ids::new_id()),
                name,
                args,
            });
        }
        let finish_reason = match self.done_reason.as_deref() {
            _ if has_calls => FinishReason::ToolCalls,
            Some("stop") | None => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some(other) => FinishReason::Other(other.to_string()),
        };
        Ok(Generation {
            parts,
            finish_reason,
            usage: self.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Message;
    use crate::llm::ToolSpec;
    use crate::test_support::http::TestServer;
    use crate::test_support::replies::{Reply, pieces};
    use std::sync::Mutex;

    #[tokio::test]
    async fn native_chat_with_think_tools_and_streamed_lines() {
        let lines = [
            json!({"model": "gpt-oss:20b", "message": {"role": "assistant", "content": "", "thinking": "Hmm"}, "done": false}),
            json!({"model": "gpt-oss:20b", "message": {"role": "assistant", "content": "Reading."}, "done": false}),
            json!({"model": "gpt-oss:20b", "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "readTextFile", "arguments": {"path": "a"}}}]}, "done": false}),
            json!({"model": "gpt-oss:20b", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop", "prompt_eval_count": 11, "eval_count": 6}),
        ];
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let server = TestServer::replying(vec![Reply::stream(pieces(&body, 9))]);
        let url = format!("{}/api", server.url());
        let env = |k: &str| (k == "OLLAMA_BASE_URL").then(|| url.clone());
        let client = OllamaClient::new(&ProviderSetting::default(), &env, &HttpSettings::default())
            .expect("client");
        let messages = vec![
            Message {
                kind: MessageKind::InstructionMessage,
                id: "m".into(),
                contents: vec![Part::text("Be brief.")],
                cache: Some(true),
            },
            Message {
                kind: MessageKind::UserMessage,
                id: "m".into(),
                contents: vec![Part::text("Read a")],
                cache: None,
            },
        ];
        let tools = [ToolSpec {
            name: "readTextFile".into(),
            description: "Read".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }];
        let deltas = Mutex::new(Vec::new());
        let generation = client
            .generate(
                &GenerateRequest {
                    expert_key: "x",
                    model: "gpt-oss:20b",
                    messages: &messages,
                    tools: &tools,
                    reasoning_budget: Some(2048),
                },
                &|d| deltas.lock().unwrap().push(d),
            )
            .await
            .expect("generation");
        assert_eq!(
            *deltas.lock().unwrap(),
            [
                StreamDelta::Reasoning("Hmm".into()),
                StreamDelta::Text("Reading.".into())
            ]
        );
        assert_eq!(generation.finish_reason, FinishReason::ToolCalls);
        assert!(matches!(
            &generation.parts[2],
            GeneratedPart::ToolCall { name, args, id } if name == "readTextFile" && args == &json!({"path": "a"}) && !id.is_empty()
        ));
        assert_eq!(generation.usage.total_tokens, 17);
        let r = &server.requests()[0];
        assert_eq!(r.target, "/api/chat");
        assert_eq!(
            r.json(),
            json!({
                "model": "gpt-oss:20b",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Read a"},
                ],
                "stream": true,
                "tools": [{"type": "function", "function": {"name": "readTextFile", "description": "Read", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
                "think": true,
            })
        );
    }

    #[tokio::test]
    async fn a_model_that_cannot_think_is_asked_again_without_think() {
        let done = json!({"message": {"role": "assistant", "content": "Hi"}, "done": true, "done_reason": "stop"});
        let server = TestServer::replying(vec![
            Reply::raw(
                400,
                vec![],
                r#"{"error":"\"gemma3:1b\" does not support thinking"}"#,
            ),
            Reply::stream(vec![format!("{done}\n")]),
        ]);
        let setting = ProviderSetting {
            base_url: Some(format!("{}/api", server.url())),
            ..Default::default()
        };
        let client =
            OllamaClient::new(&setting, &|_| None, &HttpSettings::default()).expect("client");
        let generation = client
            .generate(
                &GenerateRequest {
                    expert_key: "x",
                    model: "gemma3:1b",
                    messages: &[],
                    tools: &[],
                    reasoning_budget: Some(2048),
                },
                &|_| {},
            )
            .await
            .expect("second try");
        assert_eq!(generation.text(), "Hi");
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].json()["think"], true);
        assert!(requests[1].json().get("think").is_none());
    }

    #[test]
    fn default_base_url_is_the_local_native_api() {
        let client = OllamaClient::new(
            &ProviderSetting::default(),
            &|_| None,
            &HttpSettings::default(),
        )
        .expect("client");
        assert_eq!(client.base_url, "http://localhost:11434/api");
    }
}
