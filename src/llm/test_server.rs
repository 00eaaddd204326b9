//! A local HTTP/1.1 server for provider tests: answers from a script and records every request.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify};

/// A message with a fixed id, for building request conversations in provider tests.
pub fn message(
    kind: crate::event::MessageKind,
    contents: Vec<crate::event::Part>,
) -> crate::event::Message {
    crate::event::Message {
        kind,
        id: "m".into(),
        contents,
        cache: None,
    }
}

/// One scripted response. The body goes out in `pieces`, each in its own write, and ends when
/// the server closes the connection.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body, piece by piece.
    pub pieces: Vec<String>,
    /// When set, the server waits for it after the first piece before sending the rest.
    pub gate: Option<Arc<Notify>>,
}

impl Reply {
    /// Any response in one piece.
    pub fn raw(status: u16, headers: Vec<(&str, &str)>, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            pieces: vec![body.into()],
            gate: None,
        }
    }

    /// A `text/event-stream` of raw pieces (each may hold part of an event or several).
    pub fn stream(pieces: Vec<String>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            pieces,
            gate: None,
        }
    }

    /// Server-Sent Events, one piece per event: `(event name or "", JSON data)`.
    pub fn sse(events: &[(&str, Value)]) -> Reply {
        Reply::stream(
            events
                .iter()
                .map(|(name, data)| {
                    if name.is_empty() {
                        format!("data: {data}\n\n")
                    } else {
                        format!("event: {name}\ndata: {data}\n\n")
                    }
                })
                .collect(),
        )
    }

    /// Holds everything after the first piece until `gate` is notified.
    pub fn gated(mut self, gate: Arc<Notify>) -> Reply {
        self.gate = Some(gate);
        self
    }
}

/// Cuts an ASCII `body` into pieces of `n` bytes, so events straddle TCP writes.
pub fn pieces(body: &str, n: usize) -> Vec<String> {
    body.as_bytes()
        .chunks(n)
        .map(|c| String::from_utf8(c.to_vec()).expect("ASCII test body"))
        .collect()
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `GET`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: String,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// The running server.
pub struct TestServer {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Listens on 127.0.0.1 and answers with `replies` in order (500 once they run out).
    pub async fn start(replies: Vec<Reply>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(std::collections::VecDeque::from(replies)));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some(request) = read_request(&mut stream).await else {
                    continue;
                };
                recorded.lock().await.push(request);
                let reply = replies
                    .lock()
                    .await
                    .pop_front()
                    .unwrap_or_else(|| Reply::raw(500, vec![], "test server: no reply left"));
                // No content-length: the body ends when the connection closes.
                let mut head = format!("HTTP/1.1 {} X\r\nconnection: close\r\n", reply.status);
                for (n, v) in &reply.headers {
                    head.push_str(&format!("{n}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes()).await;
                for (i, piece) in reply.pieces.iter().enumerate() {
                    let _ = stream.write_all(piece.as_bytes()).await;
                    let _ = stream.flush().await;
                    if i == 0
                        && let Some(gate) = &reply.gate
                    {
                        gate.notified().await;
                    }
                }
                let _ = stream.shutdown().await;
            }
        });
        TestServer {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub async fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().await.clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}
