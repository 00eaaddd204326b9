//! Test support: serves a [`ToolServer`] (the fixture, the base skill) at
//! `http://127.0.0.1:<port>/mcp` over one of the two MCP HTTP transports, so the runtime's
//! remote-skill client can be tested against both without a network. It is a handler on the
//! tests' one HTTP server ([`crate::test_support::http::TestServer`]).
//!
//! - [`Mode::StreamableHttp`]: `POST /mcp` carries one JSON-RPC message; a request is answered
//!   with its JSON-RPC response as `application/json`, anything else with `202`. The first answer
//!   carries an `mcp-session-id`. `GET /mcp` (the optional server stream) is refused with `405`.
//! - [`Mode::StreamableHttpEvents`]: the same, but a request's response comes as a one-event
//!   `text/event-stream` (what many servers send).
//! - [`Mode::LegacySse`]: `GET /mcp` opens the event stream, which first names the message URL in
//!   an `endpoint` event; `POST /messages?sessionId=1` is answered `202` and the server's reply
//!   comes as a `message` event. `POST /mcp` is refused with `405`, as a server that predates
//!   streamable HTTP does.
//!
//! One MCP session per server, which is all a test needs. Every request line is recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, WriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::server::{Handler, ToolServer};
use crate::test_support::http::{Recorded, Response, TestServer};
use rmcp::ServiceExt;

/// Which transport the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Streamable HTTP only, responses as JSON.
    StreamableHttp,
    /// Streamable HTTP only, responses as an event stream.
    StreamableHttpEvents,
    /// The older HTTP+SSE transport only.
    LegacySse,
}

/// A running server; stops when dropped.
pub(crate) struct McpHttpServer {
    /// The endpoint to give the client.
    pub url: String,
    http: TestServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl McpHttpServer {
    /// Every request so far, as `"METHOD /path?query"`.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.http
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}

impl Drop for McpHttpServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct State {
    mode: Mode,
    to_server: tokio::sync::Mutex<WriteHalf<tokio::io::DuplexStream>>,
    /// Streamable: requests waiting for their response, by JSON id.
    pending: Mutex<HashMap<String, oneshot::Sender<String>>>,
    /// Legacy: the server's messages, taken by the one event stream.
    events: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

/// Serves `server` over `mode` on a free loopback port.
pub(crate) async fn serve<T: ToolServer>(server: T, mode: Mode) -> McpHttpServer {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let mcp = tokio::spawn(async move {
        if let Ok(service) = Handler(server).serve(theirs).await {
            let _ = service.waiting().await;
        }
    });
    let (from_server, to_server) = tokio::io::split(ours);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        mode,
        to_server: tokio::sync::Mutex::new(to_server),
        pending: Mutex::new(HashMap::new()),
        events: Mutex::new(Some(events_rx)),
    });
    let reader_state = state.clone();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(from_server).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match reader_state.mode {
                Mode::LegacySse => {
                    let _ = events_tx.send(line);
                }
                Mode::StreamableHttp | Mode::StreamableHttpEvents => {
                    let Ok(message) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let waiter = reader_state
                        .pending
                        .lock()
                        .ok()
                        .and_then(|mut p| p.remove(&message["id"].to_string()));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(line);
                    }
                }
            }
        }
    });
    let http = TestServer::start(move |request| answer(state.clone(), request));
    McpHttpServer {
        url: format!("{}/mcp", http.url()),
        http,
        tasks: vec![mcp, reader],
    }
}

/// Answers one request as the mode's transport does.
async fn answer(state: Arc<State>, request: Recorded) -> Response {
    let streamable = matches!(
        state.mode,
        Mode::StreamableHttp | Mode::StreamableHttpEvents
    );
    let legacy = state.mode == Mode::LegacySse;
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/mcp") if streamable => streamable_post(&state, &request.text()).await,
        ("DELETE", "/mcp") if streamable => Response::new(200),
        ("GET", "/mcp") if legacy => event_stream(&state),
        ("POST", "/messages") if legacy && request.query == "sessionId=1" => {
            forward(&state, &request.text()).await;
            Response::new(202)
        }
        (_, "/mcp") => Response::text(405, "Method Not Allowed"),
        _ => Response::text(404, "Not Found"),
    }
}

async fn forward(state: &State, body: &str) {
    let mut to_server = state.to_server.lock().await;
    let _ = to_server.write_all(format!("{body}\n").as_bytes()).await;
}

async fn streamable_post(state: &State, body: &str) -> Response {
    let message: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let session = ("mcp-session-id", "s1");
    if message.get("method").is_none() || message.get("id").is_none() {
        forward(state, body).await;
        return Response::new(202).header(session.0, session.1);
    }
    let (tx, rx) = oneshot::channel();
    if let Ok(mut pending) = state.pending.lock() {
        pending.insert(message["id"].to_string(), tx);
    }
    forward(state, body).await;
    let Ok(response) = rx.await else {
        return Response::text(500, "server gone");
    };
    if state.mode == Mode::StreamableHttpEvents {
        return Response::new(200)
            .header("content-type", "text/event-stream")
            .header(session.0, session.1)
            .body(format!("event: message\ndata: {response}\n\n"));
    }
    Response::new(200)
        .header("content-type", "application/json")
        .header(session.0, session.1)
        .body(response)
}

/// The legacy event stream: the `endpoint` event, then every server message, until the end.
fn event_stream(state: &State) -> Response {
    let Some(events) = state.events.lock().ok().and_then(|mut e| e.take()) else {
        return Response::text(409, "one event stream per server");
    };
    let first = Bytes::from_static(
        b": a comment first, as real servers send keep-alives\n\nevent: endpoint\ndata: /messages?sessionId=1\n\n",
    );
    let messages = futures::stream::unfold(events, |mut events| async move {
        let line = events.recv().await?;
        Some((
            Bytes::from(format!("event: message\ndata: {line}\n\n")),
            events,
        ))
    });
    Response::new(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .stream(futures::StreamExt::chain(
            futures::stream::once(async { first }),
            messages,
        ))
}
