//! Google Gemini (`POST {baseUrl}/models/{model}:streamGenerateContent?alt=sse`).
//!
//! The key goes in `x-goog-api-key`; key variable, base-URL variable and default base URL are
//! the provider table's.
//!
//! Gemini pairs function responses with calls by name and order, not by id: calls get ids made
//! here (or Gemini's own when it sends one), and results go back as `functionResponse` parts in
//! the order of the calls. Thought signatures are kept: a signature on a thought travels in its
//! thinking part; a signature on a text or function-call part becomes an empty, signed thinking
//! part just before it, and is put back on that part when the conversation is sent again.

use serde_json::{Map, Value, json};

use super::http::{self, StreamRequest};
use super::sse::Framing;
use super::{
    DeltaSink, FinishReason, GenerateRequest, GeneratedPart, Generation, HttpSettings, LlmError,
    ProviderName, ProviderSetting, ProviderSetupError, StreamDelta, is_retryable_message,
    provider_http_client,
};
use crate::event::{MessageKind, Part, Usage};

/// A configured client.
#[derive(Debug)]
pub(crate) struct GoogleClient {
    http: reqwest::Client,
    base_url: String,
    headers: Vec<(String, String)>,
}

impl GoogleClient {
    /// Reads the key and base URL (setting > env > default).
    pub(crate) fn new(
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
        http: &HttpSettings,
    ) -> Result<GoogleClient, ProviderSetupError> {
        let info = ProviderName::Google.info();
        let key = info.api_key(env)?;
        let base_url = info.base_url(setting, env)?;
        let mut headers = vec![("x-goog-api-key".to_string(), key)];
        headers.extend(setting.headers.iter().map(|(n, v)| (n.clone(), v.clone())));
        Ok(GoogleClient {
            http: provider_http_client(http, env)?,
            base_url,
            headers,
        })
    }

    /// One streamed generation.
    pub(crate) async fn generate(
        &self,
        request: &GenerateRequest<'_>,
        on_delta: DeltaSink<'_>,
    ) -> Result<Generation, LlmError> {
        let body = request_body(request);
        let model = request.model.trim_start_matches("models/");
        let mut stream = GeminiStream::new(on_delta);
        http::post_streaming(
            &self.http,
            StreamRequest {
                url: format!(
                    "{}/models/{model}:streamGenerateContent?alt=sse",
                    self.base_url
                ),
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

/// The JSON body of a `streamGenerateContent` request.
pub(crate) fn request_body(request: &GenerateRequest<'_>) -> Value {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    for message in request.messages {
        let (role, parts) = match message.kind {
            MessageKind::InstructionMessage => {
                system.extend(
                    message
                        .contents
                        .iter()
                        .filter_map(Part::as_text)
                        .map(|t| json!({"text": t})),
                );
                continue;
            }
            MessageKind::UserMessage => ("user", user_parts(&message.contents)),
            MessageKind::ExpertMessage => ("model", model_parts(&message.contents)),
            MessageKind::ToolMessage => ("user", tool_result_parts(&message.contents)),
        };
        if parts.is_empty() {
            continue;
        }
        // Gemini wants user and model turns to alternate: merge neighbours of one role.
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(existing) = last["parts"].as_array_mut() {
                    existing.extend(parts);
                }
            }
            _ => contents.push(json!({"role": role, "parts": parts})),
        }
    }
    let mut body = json!({ "contents": contents });
    if !system.is_empty() {
        body["systemInstruction"] = json!({ "parts": system });
    }
    if !request.tools.is_empty() {
        body["tools"] = json!([{ "functionDeclarations": function_declarations(request) }]);
        body["toolConfig"] = json!({"functionCallingConfig": {"mode": "AUTO"}});
    }
    if let Some(budget) = request
        .reasoning_budget
        .filter(|b| *b > 0 && supports_thinking(request.model))
    {
        body["generationConfig"] = json!({
            "thinkingConfig": {"thinkingBudget": budget, "includeThoughts": true}
        });
    }
    body
}

/// A tool message's results as Gemini parts: one `functionResponse` each with its text, then the
/// images and files the tools returned, which only a user turn can carry.
fn tool_result_parts(results: &[Part]) -> Vec<Value> {
    let mut parts = Vec::new();
    let mut media = Vec::new();
    for part in results {
        if let Part::ToolResultPart {
            tool_name,
            contents,
            ..
        } = part
        {
            let text = super::openai::joined_text(contents);
            parts.push(json!({
                "functionResponse": {
                    "name": tool_name,
                    "response": {"name": tool_name, "content": text},
                }
            }));
            media.extend(
                user_parts(contents)
                    .into_iter()
                    .filter(|p| p.get("text").is_none()),
            );
        }
    }
    parts.extend(media);
    parts
}

/// The request's tools as Gemini function declarations, their schemas in Gemini's subset.
fn function_declarations(request: &GenerateRequest<'_>) -> Vec<Value> {
    request
        .tools
        .iter()
        .map(|t| {
            let mut declaration = json!({"name": t.name, "description": t.description});
            if let Some(parameters) = gemini_schema(&t.input_schema) {
                declaration["parameters"] = parameters;
            }
            declaration
        })
        .collect()
}

/// Whether the model takes `thinkingConfig`: Gemini 2.5 and later. Gemini 1.x and 2.0 answer
/// 400 to it, so with the default budget (`low`) they would never work.
pub(crate) fn supports_thinking(model: &str) -> bool {
    let model = model.trim_start_matches("models/");
    !(model.starts_with("gemini-1") || model.starts_with("gemini-2.0"))
}

fn user_parts(parts: &[Part]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|part| match part {
            Part::TextPart { text, .. } if !text.is_empty() => Some(json!({"text": text})),
            Part::ImageInlinePart {
                encoded_data,
                mime_type,
                ..
            }
            | Part::FileInlinePart {
                encoded_data,
                mime_type,
                ..
            }
            | Part::ImageBinaryPart {
                data: encoded_data,
                mime_type,
                ..
            }
            | Part::FileBinaryPart {
                data: encoded_data,
                mime_type,
                ..
            } => Some(json!({"inlineData": {"mimeType": mime_type, "data": encoded_data}})),
            Part::ImageUrlPart { url, mime_type, .. }
            | Part::FileUrlPart { url, mime_type, .. } => {
                Some(json!({"fileData": {"mimeType": mime_type, "fileUri": url}}))
            }
            _ => None,
        })
        .collect()
}

/// A model turn; an empty signed thinking part lends its signature to the part after it.
fn model_parts(parts: &[Part]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut pending_signature: Option<&str> = None;
    for part in parts {
        let mut value = match part {
            Part::ThinkingPart {
                thinking,
                signature,
                ..
            } => {
                if thinking.is_empty() {
                    pending_signature = signature.as_deref().or(pending_signature);
                    continue;
                }
                let mut v = json!({"text": thinking, "thought": true});
                if let Some(sig) = signature {
                    v["thoughtSignature"] = json!(sig);
                }
                out.push(v);
                continue;
            }
            Part::TextPart { text, .. } if !text.is_empty() => json!({"text": text}),
            Part::ToolCallPart {
                tool_name, args, ..
            } => json!({"functionCall": {"name": tool_name, "args": args}}),
            _ => continue,
        };
        if let Some(sig) = pending_signature.take() {
            value["thoughtSignature"] = json!(sig);
        }
        out.push(value);
    }
    out
}

/// Keys of Gemini's `Schema` object (an OpenAPI 3.0 subset); anything else is rejected by the
/// API, so it is dropped.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// A tool's JSON Schema as Gemini `parameters`; `None` for an object without properties,
/// which Gemini refuses and the AI SDK leaves out too.
pub(crate) fn gemini_schema(schema: &Value) -> Option<Value> {
    let is_empty_object = schema["type"] == "object"
        && schema["properties"]
            .as_object()
            .is_none_or(|p| p.is_empty());
    if is_empty_object {
        return None;
    }
    Some(convert_schema(schema))
}

fn convert_schema(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        match key.as_str() {
            "type" => match value {
                // ["string", "null"] → "string" + nullable
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    if non_null.len() < types.len() {
                        out.insert("nullable".into(), json!(true));
                    }
                    if let Some(first) = non_null.first() {
                        out.insert("type".into(), (*first).clone());
                    }
                }
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "properties" => {
                let props: Map<String, Value> = value
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(k, v)| (k.clone(), convert_schema(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" => {
                out.insert(key.clone(), convert_schema(value));
            }
            "anyOf" | "oneOf" => {
                let variants: Vec<Value> = value
                    .as_array()
                    .map(|a| a.iter().map(convert_schema).collect())
                    .unwrap_or_default();
                out.insert("anyOf".into(), Value::Array(variants));
            }
            k if SCHEMA_KEYS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// One piece of the answer as it accumulates.
#[derive(Debug)]
enum Piece {
    Thought(String, Option<String>),
    Text(String),
    Call {
        id: String,
        name: String,
        args: Value,
    },
}

struct GeminiStream<'a> {
    on_delta: DeltaSink<'a>,
    pieces: Vec<Piece>,
    finish_reason: Option<String>,
    usage: Usage,
}

impl<'a> GeminiStream<'a> {
    fn new(on_delta: DeltaSink<'a>) -> GeminiStream<'a> {
        GeminiStream {
            on_delta,
            pieces: Vec::new(),
            finish_reason: None,
            usage: Usage::default(),
        }
    }

    fn event(&mut self, data: &str) -> Result<(), LlmError> {
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| http::bad_chunk("Gemini", data, e))?;
        if chunk["error"].is_object() {
            let error = &chunk["error"];
            let message = error["message"].as_str().unwrap_or("error").to_string();
            return Err(
                match error["code"].as_u64().and_then(|c| u16::try_from(c).ok()) {
                    Some(code) => LlmError::api(code, message, None),
                    None => LlmError {
                        name: http::API_CALL_ERROR.into(),
                        is_retryable: is_retryable_message(&message),
                        message,
                        status_code: None,
                        retry_after: None,
                    },
                },
            );
        }
        if let Some(u) = chunk.get("usageMetadata").filter(|u| u.is_object()) {
            let n = |k: &str| u[k].as_u64().unwrap_or(0);
            let input = n("promptTokenCount");
            let output = n("candidatesTokenCount");
            let reasoning = n("thoughtsTokenCount");
            self.usage = Usage {
                input_tokens: input,
                output_tokens: output,
                reasoning_tokens: reasoning,
                total_tokens: u["totalTokenCount"]
                    .as_u64()
                    .unwrap_or(input + output + reasoning),
                cached_input_tokens: n("cachedContentTokenCount"),
            };
        }
        if let Some(reason) = chunk["promptFeedback"]["blockReason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        let candidate = &chunk["candidates"][0];
        for part in candidate["content"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            self.part(part);
        }
        if let Some(reason) = candidate["finishReason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        Ok(())
    }

    fn part(&mut self, part: &Value) {
        let signature = part["thoughtSignature"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if let Some(call) = part.get("functionCall") {
            if let Some(sig) = signature {
                self.pieces.push(Piece::Thought(String::new(), Some(sig)));
            }
            let args = if call["args"].is_object() {
                call["args"].clone()
            } else {
                json!({})
            };
            self.pieces.push(Piece::Call {
                id: call["id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("call_{}", crate::ids::new_id())),
                name: call["name"].as_str().unwrap_or_default().to_string(),
                args,
            });
            return;
        }
        let text = part["text"].as_str().unwrap_or_default();
        if part["thought"] == json!(true) {
            if !text.is_empty() {
                (self.on_delta)(StreamDelta::Reasoning(text.to_string()));
            }
            match self.pieces.last_mut() {
                Some(Piece::Thought(t, sig)) if sig.is_none() => {
                    t.push_str(text);
                    *sig = signature;
                }
                _ => self
                    .pieces
                    .push(Piece::Thought(text.to_string(), signature)),
            }
            return;
        }
        if let Some(sig) = signature {
            self.pieces.push(Piece::Thought(String::new(), Some(sig)));
            self.pieces.push(Piece::Text(String::new()));
        }
        if text.is_empty() {
            return;
        }
        (self.on_delta)(StreamDelta::Text(text.to_string()));
        match self.pieces.last_mut() {
            Some(Piece::Text(t)) => t.push_str(text),
            _ => self.pieces.push(Piece::Text(text.to_string())),
        }
    }

    fn finish(self) -> Result<Generation, LlmError> {
        let Some(reason) = self.finish_reason else {
            return Err(LlmError {
                name: http::API_CALL_ERROR.into(),
                message: "the Gemini stream ended without a finishReason".into(),
                status_code: None,
                is_retryable: true,
                retry_after: None,
            });
        };
        let has_calls = self.pieces.iter().any(|p| matches!(p, Piece::Call { .. }));
        let parts = self
            .pieces
            .into_iter()
            .filter_map(|p| match p {
                Piece::Thought(text, signature) => {
                    Some(GeneratedPart::Thinking { text, signature })
                }
                Piece::Text(t) if t.is_empty() => None,
                Piece::Text(t) => Some(GeneratedPart::Text(t)),
                Piece::Call { id, name, args } => Some(GeneratedPart::ToolCall { id, name, args }),
            })
            .collect();
        let finish_reason = match reason.as_str() {
            _ if has_calls => FinishReason::ToolCalls,
            "STOP" => FinishReason::Stop,
            "MAX_TOKENS" => FinishReason::Length,
            other => FinishReason::Other(other.to_string()),
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
    use crate::llm::test_message as message;
    use crate::test_support::http::TestServer;
    use crate::test_support::replies::{Reply, pieces};
    use std::sync::Mutex;

    fn call(id: &str, name: &str, args: Value) -> Part {
        Part::ToolCallPart {
            id: "p".into(),
            tool_call_id: id.into(),
            tool_name: name.into(),
            args,
        }
    }

    fn result(id: &str, name: &str, text: &str) -> Part {
        Part::ToolResultPart {
            id: "p".into(),
            tool_call_id: id.into(),
            tool_name: name.into(),
            contents: vec![Part::text(text)],
            is_error: None,
        }
    }

    fn request<'a>(
        messages: &'a [Message],
        tools: &'a [ToolSpec],
        budget: Option<u64>,
    ) -> GenerateRequest<'a> {
        GenerateRequest {
            expert_key: "x",
            model: "gemini-2.5-flash",
            messages,
            tools,
            reasoning_budget: budget,
        }
    }

    #[test]
    fn request_body_maps_system_tools_calls_responses_and_thinking() {
        let messages = vec![
            message(
                MessageKind::InstructionMessage,
                vec![Part::text("You are terse.")],
            ),
            message(MessageKind::UserMessage, vec![Part::text("Read a and b")]),
            message(
                MessageKind::ExpertMessage,
                vec![
                    Part::ThinkingPart {
                        id: "t".into(),
                        thinking: "Both.".into(),
                        signature: None,
                    },
                    Part::ThinkingPart {
                        id: "t".into(),
                        thinking: String::new(),
                        signature: Some("sig-1".into()),
                    },
                    call("c1", "readTextFile", json!({"path": "a"})),
                    call("c2", "readTextFile", json!({"path": "b"})),
                ],
            ),
            message(
                MessageKind::ToolMessage,
                vec![
                    result("c1", "readTextFile", "A"),
                    result("c2", "readTextFile", "B"),
                ],
            ),
        ];
        let tools = [
            ToolSpec {
                name: "readTextFile".into(),
                description: "Read a file".into(),
                input_schema: json!({
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "path": {"type": "string", "description": "Where"},
                        "from": {"type": ["integer", "null"]},
                        "mode": {"const": "text"},
                    },
                    "required": ["path"],
                }),
            },
            ToolSpec {
                name: "healthCheck".into(),
                description: "Check".into(),
                input_schema: json!({"type": "object", "properties": {}}),
            },
        ];
        let body = request_body(&request(&messages, &tools, Some(2048)));
        assert_eq!(
            body,
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "Read a and b"}]},
                    {"role": "model", "parts": [
                        {"text": "Both.", "thought": true},
                        {"functionCall": {"name": "readTextFile", "args": {"path": "a"}}, "thoughtSignature": "sig-1"},
                        {"functionCall": {"name": "readTextFile", "args": {"path": "b"}}},
                    ]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "readTextFile", "response": {"name": "readTextFile", "content": "A"}}},
                        {"functionResponse": {"name": "readTextFile", "response": {"name": "readTextFile", "content": "B"}}},
                    ]},
                ],
                "systemInstruction": {"parts": [{"text": "You are terse."}]},
                "tools": [{"functionDeclarations": [
                    {"name": "readTextFile", "description": "Read a file", "parameters": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string", "description": "Where"},
                            "from": {"nullable": true, "type": "integer"},
                            "mode": {"enum": ["text"]},
                        },
                        "required": ["path"],
                    }},
                    {"name": "healthCheck", "description": "Check"},
                ]}],
                "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}},
            })
        );
        assert!(
            request_body(&request(&messages, &[], None))
                .get("generationConfig")
                .is_none()
        );
    }

    #[tokio::test]
    async fn streams_thoughts_text_and_function_calls_with_made_up_ids() {
        let chunks = [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Plan", "thought": true}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ning.", "thought": true}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Reading "}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "both."}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "readTextFile", "args": {"path": "a"}}, "thoughtSignature": "sig-9"},
                {"functionCall": {"name": "readTextFile", "args": {"path": "b"}}},
            ]}, "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 12, "thoughtsTokenCount": 7, "totalTokenCount": 49, "cachedContentTokenCount": 5}}),
        ];
        let body: String = chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect();
        let server = TestServer::replying(vec![Reply::stream(pieces(&body, 13))]);
        let setting = ProviderSetting {
            base_url: Some(format!("{}/v1beta", server.url())),
            headers: [("x-team".to_string(), "core".to_string())].into(),
            ..Default::default()
        };
        let env = |k: &str| (k == "GOOGLE_GENERATIVE_AI_API_KEY").then(|| "g-key".to_string());
        let client = GoogleClient::new(&setting, &env, &HttpSettings::default()).expect("client");
        let deltas = Mutex::new(Vec::new());
        let generation = client
            .generate(&request(&[], &[], None), &|d| {
                deltas.lock().unwrap().push(d)
            })
            .await
            .expect("generation");
        assert_eq!(
            *deltas.lock().unwrap(),
            [
                StreamDelta::Reasoning("Plan".into()),
                StreamDelta::Reasoning("ning.".into()),
                StreamDelta::Text("Reading ".into()),
                StreamDelta::Text("both.".into()),
            ]
        );
        let ids: Vec<&str> = generation
            .parts
            .iter()
            .filter_map(|p| match p {
                GeneratedPart::ToolCall { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1], "each call needs its own id");
        assert_eq!(
            generation.parts,
            [
                GeneratedPart::Thinking {
                    text: "Planning.".into(),
                    signature: None
                },
                GeneratedPart::Text("Reading both.".into()),
                GeneratedPart::Thinking {
                    text: String::new(),
                    signature: Some("sig-9".into())
                },
                GeneratedPart::ToolCall {
                    id: ids[0].into(),
                    name: "readTextFile".into(),
                    args: json!({"path": "a"})
                },
                GeneratedPart::ToolCall {
                    id: ids[1].into(),
                    name: "readTextFile".into(),
                    args: json!({"path": "b"})
                },
            ]
        );
        assert_eq!(generation.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            generation.usage,
            Usage {
                input_tokens: 30,
                output_tokens: 12,
                reasoning_tokens: 7,
                total_tokens: 49,
                cached_input_tokens: 5
            }
        );
        let r = &server.requests()[0];
        assert_eq!(
            r.target,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(r.header("x-goog-api-key"), Some("g-key"));
        assert_eq!(r.header("x-team"), Some("core"));
    }

    #[tokio::test]
    async fn http_errors_keep_status_and_a_stream_without_finish_reason_is_retryable() {
        let server = TestServer::replying(vec![
            Reply::raw(
                503,
                vec![("retry-after", "1")],
                r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
            ),
            Reply::sse(&[(
                "",
                json!({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}),
            )]),
        ]);
        let setting = ProviderSetting {
            base_url: Some(server.url()),
            ..Default::default()
        };
        let env = |k: &str| (k == "GOOGLE_GENERATIVE_AI_API_KEY").then(|| "k".to_string());
        let client = GoogleClient::new(&setting, &env, &HttpSettings::default()).expect("client");
        let err = client
            .generate(&request(&[], &[], None), &|_| {})
            .await
            .expect_err("503");
        assert_eq!((err.status_code, err.is_retryable), (Some(503), true));
        assert_eq!(err.message, "The model is overloaded.");
        let cut = client
            .generate(&request(&[], &[], None), &|_| {})
            .await
            .expect_err("cut");
        assert!(cut.is_retryable);
    }

    #[test]
    fn missing_key_names_the_variable() {
        let err = GoogleClient::new(
            &ProviderSetting::default(),
            &|_| None,
            &HttpSettings::default(),
        )
        .expect_err("no key");
        assert_eq!(
            err.to_string(),
            "GOOGLE_GENERATIVE_AI_API_KEY is not set (provider `google` needs it)"
        );
    }
}
