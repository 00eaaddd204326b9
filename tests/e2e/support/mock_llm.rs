//! A mock LLM for end-to-end runs: it speaks the streamed wire formats of Anthropic
//! Messages, OpenAI Chat Completions and Gemini `streamGenerateContent`, answers from a per-test
//! script of turns, and records every request.
//!
//! It is a handler on the tests' one HTTP server ([`TestServer`]), listening on `0.0.0.0` on an
//! ephemeral port of the host; runtime containers on Docker's default bridge reach it through
//! the bridge gateway ([`MockLlm::url_for_containers`]). Point the runtime at it with the
//! provider's base-URL variable (`ANTHROPIC_BASE_URL`, …).
//!
//! The format of an answer follows the request path: `…/messages` → Anthropic,
//! `…/chat/completions` → OpenAI, `…:streamGenerateContent` → Gemini, `…/api/chat` → Ollama's
//! JSON lines. Bodies go out chunked, one event per chunk, optionally with a pause between
//! chunks.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use perstack_sandbox::test_support::http::{Response, TestServer};
use serde_json::{Value, json};

pub use perstack_sandbox::test_support::http::Recorded;

/// One scripted answer.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// Reasoning streamed before everything else (Anthropic: a signed thinking block; OpenAI:
    /// `reasoning_content`; Gemini: thought parts).
    pub thinking: Option<String>,
    /// Answer text, streamed word by word.
    pub text: Option<String>,
    /// Tool calls: name and arguments.
    pub tool_calls: Vec<(String, Value)>,
    /// Answer with this HTTP error instead.
    pub error: Option<HttpError>,
    /// Pause between streamed chunks.
    pub chunk_delay: Duration,
}

/// An HTTP error answer.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// Status code.
    pub status: u16,
    /// Extra headers, e.g. `retry-after`.
    pub headers: Vec<(String, String)>,
    /// The error message, wrapped in the provider's error body.
    pub message: String,
}

impl Turn {
    /// A text answer.
    pub fn text(text: &str) -> Turn {
        Turn {
            text: Some(text.to_string()),
            ..Turn::default()
        }
    }

    /// One tool call.
    pub fn tool_call(name: &str, args: Value) -> Turn {
        Turn {
            tool_calls: vec![(name.to_string(), args)],
            ..Turn::default()
        }
    }

    /// An HTTP error with `message` in the provider's error body.
    pub fn error(status: u16, message: &str) -> Turn {
        Turn {
            error: Some(HttpError {
                status,
                headers: Vec::new(),
                message: message.to_string(),
            }),
            ..Turn::default()
        }
    }

    /// Adds a header to an error answer.
    pub fn header(mut self, name: &str, value: &str) -> Turn {
        if let Some(error) = &mut self.error {
            error.headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    /// Streams `thinking` first.
    pub fn thinking(mut self, thinking: &str) -> Turn {
        self.thinking = Some(thinking.to_string());
        self
    }

    /// Pauses this long between chunks.
    pub fn delay(mut self, delay: Duration) -> Turn {
        self.chunk_delay = delay;
        self
    }
}

/// The wire format of a request, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Chat Completions.
    OpenAi,
    /// Gemini streamGenerateContent.
    Gemini,
    /// Ollama's native `/api/chat` (JSON lines).
    Ollama,
}

impl Wire {
    fn of(path: &str) -> Option<Wire> {
        if path.ends_with("/messages") {
            Some(Wire::Anthropic)
        } else if path.ends_with("/chat/completions") {
            Some(Wire::OpenAi)
        } else if path.ends_with(":streamGenerateContent") {
            Some(Wire::Gemini)
        } else if path.ends_with("/api/chat") {
            Some(Wire::Ollama)
        } else {
            None
        }
    }
}

struct State {
    turns: VecDeque<Turn>,
    calls: u64,
}

/// The running server; stops accepting when dropped.
pub struct MockLlm {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl MockLlm {
    /// Starts answering with `turns`, in order (a 500 once they run out).
    pub fn start(turns: Vec<Turn>) -> MockLlm {
        let state = Arc::new(Mutex::new(State {
            turns: turns.into(),
            calls: 0,
        }));
        let st = state.clone();
        let server = TestServer::start_on(IpAddr::V4(Ipv4Addr::UNSPECIFIED), move |request| {
            let response = answer(&request, &st);
            async move { response }
        });
        MockLlm { server, state }
    }

    /// `http://<docker bridge gateway>:<port>`: the address containers on the default bridge
    /// reach this server at.
    pub fn url_for_containers(&self) -> String {
        self.server.url_for_containers()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url_local(&self) -> String {
        self.server.url()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Turns not used yet.
    pub fn turns_left(&self) -> usize {
        self.state.lock().expect("state").turns.len()
    }
}

/// Answers one request with the next scripted turn, in the wire format its path asks for.
fn answer(request: &Recorded, state: &Mutex<State>) -> Response {
    let wire = Wire::of(&request.path);
    let (turn, call) = {
        let mut st = state.lock().expect("state");
        st.calls += 1;
        (st.turns.pop_front(), st.calls)
    };
    let (Some(wire), Some(turn)) = (wire, turn) else {
        return Response::text(500, "mock LLM: unknown path or no scripted turn left");
    };
    if let Some(error) = &turn.error {
        let response = Response::json(error.status, &error_body(wire, error));
        return error
            .headers
            .iter()
            .fold(response, |r, (n, v)| r.header(n, v));
    }
    let content_type = if wire == Wire::Ollama {
        "application/x-ndjson"
    } else {
        "text/event-stream"
    };
    let delay = turn.chunk_delay;
    let chunks = events(wire, &turn, call).into_iter().enumerate();
    let chunks = futures::stream::iter(chunks).then(move |(i, event)| async move {
        if i > 0 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Bytes::from(event)
    });
    Response::new(200)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .stream(chunks)
}

fn error_body(wire: Wire, error: &HttpError) -> Value {
    match wire {
        Wire::Anthropic => {
            let kind = match error.status {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                400 => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": error.message}})
        }
        Wire::OpenAi => {
            json!({"error": {"message": error.message, "type": "server_error", "code": null}})
        }
        Wire::Gemini => {
            json!({"error": {"code": error.status, "message": error.message, "status": "UNAVAILABLE"}})
        }
        Wire::Ollama => json!({"error": error.message}),
    }
}

/// Text in pieces of one word (with its following space).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if c == ' ' {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Arguments as JSON text, cut in two so clients must assemble them.
fn split_args(args: &Value) -> (String, String) {
    let text = args.to_string();
    let mid = text
        .char_indices()
        .map(|(i, _)| i)
        .nth(text.chars().count() / 2)
        .unwrap_or(0);
    (text[..mid].to_string(), text[mid..].to_string())
}

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

fn events(wire: Wire, turn: &Turn, call: u64) -> Vec<String> {
    match wire {
        Wire::Anthropic => anthropic_events(turn, call),
        Wire::OpenAi => openai_events(turn, call),
        Wire::Gemini => gemini_events(turn, call),
        Wire::Ollama => ollama_lines(turn),
    }
}

fn anthropic_events(turn: &Turn, call: u64) -> Vec<String> {
    let ev = |data: Value| sse(data["type"].as_str(), &data);
    let mut out = vec![ev(json!({
        "type": "message_start",
        "message": {"id": format!("msg_{call}"), "type": "message", "role": "assistant", "content": [],
                    "model": "mock", "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 100, "output_tokens": 1}},
    }))];
    let mut index = 0;
    if let Some(thinking) = &turn.thinking {
        out.push(ev(json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})));
        for piece in words(thinking) {
            out.push(ev(json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": piece}})));
        }
        out.push(ev(json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": format!("sig-{call}")}})));
        out.push(ev(json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    if let Some(text) = &turn.text {
        out.push(ev(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
        for piece in words(text) {
            out.push(ev(json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})));
        }
        out.push(ev(json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    for (n, (name, args)) in turn.tool_calls.iter().enumerate() {
        let (a, b) = split_args(args);
        out.push(ev(json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": format!("toolu_{call}_{n}"), "name": name, "input": {}}})));
        out.push(ev(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": a}})));
        out.push(ev(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": b}})));
        out.push(ev(json!({"type": "content_block_stop", "index": index})));
        index += 1;
    }
    let stop = if turn.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    out.push(ev(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 20}})));
    out.push(ev(json!({"type": "message_stop"})));
    out
}

fn openai_events(turn: &Turn, call: u64) -> Vec<String> {
    let id = format!("chatcmpl-{call}");
    let chunk = |delta: Value, finish: Value| {
        sse(
            None,
            &json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": "mock",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(thinking) = &turn.thinking {
        for piece in words(thinking) {
            out.push(chunk(json!({"reasoning_content": piece}), Value::Null));
        }
    }
    if let Some(text) = &turn.text {
        for piece in words(text) {
            out.push(chunk(json!({"content": piece}), Value::Null));
        }
    }
    for (n, (name, args)) in turn.tool_calls.iter().enumerate() {
        let (a, b) = split_args(args);
        out.push(chunk(
            json!({"tool_calls": [{"index": n, "id": format!("call_{call}_{n}"), "type": "function", "function": {"name": name, "arguments": a}}]}),
            Value::Null,
        ));
        out.push(chunk(
            json!({"tool_calls": [{"index": n, "function": {"arguments": b}}]}),
            Value::Null,
        ));
    }
    let finish = if turn.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    out.push(chunk(json!({}), json!(finish)));
    out.push(sse(
        None,
        &json!({"id": id, "object": "chat.completion.chunk", "choices": [],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}),
    ));
    out.push("data: [DONE]\n\n".to_string());
    out
}

fn gemini_events(turn: &Turn, _call: u64) -> Vec<String> {
    let chunk = |parts: Value| {
        sse(
            None,
            &json!({"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}]}),
        )
    };
    let mut out = Vec::new();
    if let Some(thinking) = &turn.thinking {
        for piece in words(thinking) {
            out.push(chunk(json!([{"text": piece, "thought": true}])));
        }
    }
    if let Some(text) = &turn.text {
        for piece in words(text) {
            out.push(chunk(json!([{"text": piece}])));
        }
    }
    let calls: Vec<Value> = turn
        .tool_calls
        .iter()
        .map(|(name, args)| json!({"functionCall": {"name": name, "args": args}}))
        .collect();
    out.push(sse(
        None,
        &json!({
            "candidates": [{"content": {"role": "model", "parts": calls}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
        }),
    ));
    out
}

fn ollama_lines(turn: &Turn) -> Vec<String> {
    let line = |message: Value, done: bool| {
        let mut v = json!({"model": "mock", "created_at": "2025-01-01T00:00:00Z", "message": message, "done": done});
        if done {
            v["done_reason"] = json!("stop");
            v["prompt_eval_count"] = json!(100);
            v["eval_count"] = json!(20);
        }
        format!("{v}\n")
    };
    let mut out = Vec::new();
    if let Some(thinking) = &turn.thinking {
        for piece in words(thinking) {
            out.push(line(
                json!({"role": "assistant", "content": "", "thinking": piece}),
                false,
            ));
        }
    }
    if let Some(text) = &turn.text {
        for piece in words(text) {
            out.push(line(json!({"role": "assistant", "content": piece}), false));
        }
    }
    if !turn.tool_calls.is_empty() {
        let calls: Vec<Value> = turn
            .tool_calls
            .iter()
            .map(|(name, args)| json!({"function": {"name": name, "arguments": args}}))
            .collect();
        out.push(line(
            json!({"role": "assistant", "content": "", "tool_calls": calls}),
            false,
        ));
    }
    out.push(line(json!({"role": "assistant", "content": ""}), true));
    out
}
