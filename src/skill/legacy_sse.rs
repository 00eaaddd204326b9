//! The older MCP HTTP+SSE transport (protocol 2024-11-05), client side, as an rmcp [`Transport`].
//!
//! rmcp dropped its own client for it, and servers that only speak it are still common. The
//! protocol: `GET` the endpoint with `Accept: text/event-stream`; the server keeps that response
//! open and first sends an `endpoint` event whose data is the URL to `POST` JSON-RPC messages to
//! (usually relative, with a session id in the query). Each `POST` is answered with `202
//! Accepted`; the server's messages — responses, requests, notifications — arrive as `message`
//! events on the open stream.
//!
//! The `POST` URL must have the endpoint's origin: a server cannot send our messages elsewhere
//! (where the egress rules or the user's trust would not follow them).

use std::borrow::Cow;

use futures::{Stream, StreamExt};
use reqwest::Url;
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use sse_stream::{Sse, SseStream};
use tokio::sync::mpsc;

/// How many server messages may wait for the client to read them.
const INCOMING_BUFFER: usize = 64;

/// Why the legacy transport failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LegacySseError {
    /// The request could not be sent or its answer not read.
    #[error("{method} {url}: {source}")]
    Request {
        /// `GET` or `POST`.
        method: &'static str,
        /// Where to.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{method} {url} answered HTTP {status}")]
    Status {
        /// `GET` or `POST`.
        method: &'static str,
        /// Where to.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The `GET` answer is not an event stream.
    #[error("GET {url} answered with content type {content_type:?}, not text/event-stream")]
    NotEventStream {
        /// The endpoint.
        url: String,
        /// What it sent.
        content_type: Option<String>,
    },
    /// The stream ended or broke before the `endpoint` event.
    #[error("{url} sent no `endpoint` event before its event stream {how}")]
    NoEndpoint {
        /// The endpoint.
        url: String,
        /// `ended` or `broke: …`.
        how: String,
    },
    /// The `endpoint` event does not name a URL of the same origin.
    #[error(
        "{url} told us to post messages to `{endpoint}`, which is not a URL on the same host and port"
    )]
    ForeignEndpoint {
        /// The endpoint.
        url: String,
        /// What the event said.
        endpoint: String,
    },
}

/// A connected legacy HTTP+SSE session.
pub(crate) struct LegacySseTransport {
    http: reqwest::Client,
    post_url: Url,
    incoming: mpsc::Receiver<ServerJsonRpcMessage>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LegacySseTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySseTransport")
            .field("post_url", &self.post_url.as_str())
            .finish()
    }
}

impl LegacySseTransport {
    /// Opens the event stream at `url` and waits for its `endpoint` event.
    pub(crate) async fn connect(
        http: &reqwest::Client,
        url: &Url,
    ) -> Result<LegacySseTransport, LegacySseError> {
        let response = open_stream(http, url).await?;
        let mut events = SseStream::from_bytes_stream(response.bytes_stream());
        let post_url = endpoint(&mut events, url).await?;
        let (tx, incoming) = mpsc::channel(INCOMING_BUFFER);
        let reader = tokio::spawn(relay(events, tx, url.to_string()));
        Ok(LegacySseTransport {
            http: http.clone(),
            post_url,
            incoming,
            reader,
        })
    }
}

/// `GET url` as an event stream: an answer with a success status and the event stream's content
/// type.
async fn open_stream(
    http: &reqwest::Client,
    url: &Url,
) -> Result<reqwest::Response, LegacySseError> {
    let request = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "text/event-stream");
    let response = answered("GET", url, request).await?;
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !content_type
        .as_deref()
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"))
    {
        return Err(LegacySseError::NotEventStream {
            url: url.to_string(),
            content_type,
        });
    }
    Ok(response)
}

/// Sends `request` (`method` to `url`); its answer, when it came with a success status.
async fn answered(
    method: &'static str,
    url: &Url,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, LegacySseError> {
    let response = request
        .send()
        .await
        .map_err(|source| LegacySseError::Request {
            method,
            url: url.to_string(),
            source,
        })?;
    if !response.status().is_success() {
        return Err(LegacySseError::Status {
            method,
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    Ok(response)
}

/// Reads `events` up to the `endpoint` event and gives the URL it names, which must be on `url`'s
/// origin.
async fn endpoint<S>(events: &mut S, url: &Url) -> Result<Url, LegacySseError>
where
    S: Stream<Item = Result<Sse, sse_stream::Error>> + Unpin,
{
    loop {
        match events.next().await {
            Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                let target = event.data.unwrap_or_default();
                return same_origin_join(url, target.trim());
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                return Err(LegacySseError::NoEndpoint {
                    url: url.to_string(),
                    how: format!("broke: {error}"),
                });
            }
            None => {
                return Err(LegacySseError::NoEndpoint {
                    url: url.to_string(),
                    how: "ended".to_string(),
                });
            }
        }
    }
}

/// Hands the server's JSON-RPC messages on the rest of `events` to `tx` until the stream ends or
/// breaks, or the client stops reading; what is not JSON-RPC is logged and passed over.
async fn relay<S>(mut events: S, tx: mpsc::Sender<ServerJsonRpcMessage>, stream_url: String)
where
    S: Stream<Item = Result<Sse, sse_stream::Error>> + Unpin,
{
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!("event stream of {stream_url} broke: {error}");
                break;
            }
        };
        // Messages come as `message` events; an event without a name is one too.
        if !matches!(event.event.as_deref(), None | Some("message")) {
            continue;
        }
        let Some(data) = event.data else { continue };
        match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
            Ok(message) => {
                if tx.send(message).await.is_err() {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!("{stream_url} sent a message that is not JSON-RPC: {error}")
            }
        }
    }
    // Dropping `tx` ends `receive`, which rmcp reads as the connection closing.
}

impl Drop for LegacySseTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Transport<RoleClient> for LegacySseTransport {
    type Error = LegacySseError;

    fn name() -> Cow<'static, str> {
        "legacy-sse".into()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), LegacySseError>> + Send + 'static {
        let http = self.http.clone();
        let url = self.post_url.clone();
        async move {
            answered("POST", &url, http.post(url.clone()).json(&item)).await?;
            Ok(())
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), LegacySseError> {
        self.reader.abort();
        self.incoming.close();
        Ok(())
    }
}

/// `target` (absolute, or relative to `base`) if it has `base`'s scheme, host and port.
fn same_origin_join(base: &Url, target: &str) -> Result<Url, LegacySseError> {
    let foreign = || LegacySseError::ForeignEndpoint {
        url: base.to_string(),
        endpoint: target.to_string(),
    };
    let joined = base.join(target).map_err(|_| foreign())?;
    if joined.origin() != base.origin() {
        return Err(foreign());
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_url_resolves_against_the_endpoint_and_keeps_its_origin() {
        let base = Url::parse("https://mcp.example.com/v1/sse").expect("url");
        assert_eq!(
            same_origin_join(&base, "/messages?sessionId=abc")
                .expect("relative")
                .as_str(),
            "https://mcp.example.com/messages?sessionId=abc"
        );
        assert_eq!(
            same_origin_join(&base, "messages")
                .expect("relative")
                .as_str(),
            "https://mcp.example.com/v1/messages"
        );
        assert!(same_origin_join(&base, "https://mcp.example.com/m").is_ok());
        for foreign in [
            "https://evil.example.com/messages",
            "http://mcp.example.com/messages",
            "https://mcp.example.com:8443/messages",
            "//evil.example.com/messages",
        ] {
            assert!(
                matches!(
                    same_origin_join(&base, foreign),
                    Err(LegacySseError::ForeignEndpoint { .. })
                ),
                "{foreign}"
            );
        }
    }
}
