//! Scripted replies: a [`TestServer`] that answers its requests with a list of responses, in
//! order, and a 500 once they run out. The provider clients' unit tests talk to it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Notify;

use super::http::{Response, TestServer};

/// One scripted response. The body goes out in `pieces`, each its own chunk.
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

    fn into_response(self) -> Response {
        let response = self
            .headers
            .iter()
            .fold(Response::new(self.status), |r, (n, v)| r.header(n, v));
        let pieces = self.pieces.into_iter().map(Bytes::from).enumerate();
        let gate = self.gate;
        response.stream(futures::stream::iter(pieces).then(move |(i, piece)| {
            let gate = gate.clone();
            async move {
                if i == 1
                    && let Some(gate) = gate
                {
                    gate.notified().await;
                }
                piece
            }
        }))
    }
}

/// Cuts an ASCII `body` into pieces of `n` bytes, so events straddle the chunks a client reads.
pub fn pieces(body: &str, n: usize) -> Vec<String> {
    body.as_bytes()
        .chunks(n)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

impl TestServer {
    /// Listens on 127.0.0.1 and answers with `replies` in order (500 once they run out).
    pub fn replying(replies: Vec<Reply>) -> TestServer {
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        TestServer::start(move |_| {
            let next = replies.lock().ok().and_then(|mut r| r.pop_front());
            async move {
                match next {
                    Some(reply) => reply.into_response(),
                    None => Response::text(500, "test server: no reply left"),
                }
            }
        })
    }
}
