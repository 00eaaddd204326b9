//! Test support: an in-process HTTP/1.1 server that serves a [`ToolServer`] (the fixture, the
//! base skill) at `http://127.0.0.1:<port>/mcp` over one of the two MCP HTTP transports, so the
//! runtime's remote-skill client can be tested against both without a network.
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

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, WriteHalf};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use super::server::{Handler, ToolServer};
use rmcp::ServiceExt;

/// Which transport the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Streamable HTTP only, responses as JSON.
    StreamableHttp,
    /// Streamable HTTP only, responses as an event stream.
    StreamableHttpEvents,
    /// The older HTTP+SSE transport only.
    LegacySse,
}

/// A running server; stops when dropped.
pub struct McpHttpServer {
    /// The endpoint to give the client.
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl McpHttpServer {
    /// Every request so far, as `"METHOD /path"`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
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
    events: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// Serves `server` over `mode` on a free loopback port.
pub async fn serve<T: ToolServer>(server: T, mode: Mode) -> McpHttpServer {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let mcp = tokio::spawn(async move {
        if let Ok(service) = Handler(server).serve(theirs).await {
            let _ = service.waiting().await;
        }
    });
    let (from_server, to_server) = tokio::io::split(ours);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(State {
        mode,
        to_server: tokio::sync::Mutex::new(to_server),
        pending: Mutex::new(HashMap::new()),
        events: tokio::sync::Mutex::new(Some(events_rx)),
        requests: requests.clone(),
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
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accept = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(connection(socket, state.clone()));
        }
    });
    McpHttpServer {
        url: format!("http://127.0.0.1:{port}/mcp"),
        requests,
        tasks: vec![mcp, reader, accept],
    }
}

/// Serves requests on one connection until the client closes it.
async fn connection(socket: tokio::net::TcpStream, state: Arc<State>) {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if read.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).to_string();
        if let Ok(mut log) = state.requests.lock() {
            log.push(format!("{method} {path}"));
        }
        let keep_open = match (state.mode, method.as_str(), path.as_str()) {
            (Mode::StreamableHttp | Mode::StreamableHttpEvents, "POST", "/mcp") => {
                streamable_post(&state, &body, &mut write).await
            }
            (Mode::StreamableHttp | Mode::StreamableHttpEvents, "DELETE", "/mcp") => {
                respond(&mut write, 200, "", &[]).await
            }
            (Mode::LegacySse, "GET", "/mcp") => {
                event_stream(&state, &mut write).await;
                return;
            }
            (Mode::LegacySse, "POST", p) if p.starts_with("/messages?sessionId=1") => {
                forward(&state, &body).await;
                respond(&mut write, 202, "", &[]).await
            }
            (_, _, "/mcp") => respond(&mut write, 405, "Method Not Allowed", &[]).await,
            _ => respond(&mut write, 404, "Not Found", &[]).await,
        };
        if !keep_open {
            return;
        }
    }
}

async fn forward(state: &State, body: &str) {
    let mut to_server = state.to_server.lock().await;
    let _ = to_server.write_all(format!("{body}\n").as_bytes()).await;
}

async fn streamable_post(state: &State, body: &str, write: &mut OwnedWriteHalf) -> bool {
    let message: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let session = [("mcp-session-id", "s1")];
    if message.get("method").is_none() || message.get("id").is_none() {
        forward(state, body).await;
        return respond(write, 202, "", &session).await;
    }
    let (tx, rx) = oneshot::channel();
    if let Ok(mut pending) = state.pending.lock() {
        pending.insert(message["id"].to_string(), tx);
    }
    forward(state, body).await;
    let Ok(response) = rx.await else {
        return respond(write, 500, "server gone", &[]).await;
    };
    if state.mode == Mode::StreamableHttpEvents {
        return respond(
            write,
            200,
            &format!("event: message\ndata: {response}\n\n"),
            &[("content-type", "text/event-stream"), session[0]],
        )
        .await;
    }
    respond(
        write,
        200,
        &response,
        &[("content-type", "application/json"), session[0]],
    )
    .await
}

/// The legacy event stream: the `endpoint` event, then every server message, until the end.
async fn event_stream(state: &State, write: &mut OwnedWriteHalf) {
    let Some(mut events) = state.events.lock().await.take() else {
        let _ = respond(write, 409, "one event stream per server", &[]).await;
        return;
    };
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
    let first = ": a comment first, as real servers send keep-alives\n\nevent: endpoint\ndata: /messages?sessionId=1\n\n";
    if write
        .write_all(format!("{head}{first}").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    while let Some(line) = events.recv().await {
        let event = format!("event: message\ndata: {line}\n\n");
        if write.write_all(event.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Writes one response; false when the connection is gone.
async fn respond(
    write: &mut OwnedWriteHalf,
    status: u16,
    body: &str,
    headers: &[(&str, &str)],
) -> bool {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers.iter().any(|(n, _)| *n == "content-type") && !body.is_empty() {
        head.push_str("content-type: text/plain\r\n");
    }
    head.push_str("\r\n");
    write
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .is_ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Error",
    }
}
