//! The tests' one HTTP/1.1 server, on hyper: it records every request whole (method, target,
//! headers, body) and hands it to the test's handler, whose [`Response`] goes back whole or
//! streamed, each piece its own chunk. The provider tests' scripted replies
//! ([`super::replies`]), the MCP-over-HTTP fixture (`skill::http_fixture`) and the end-to-end
//! tests' mock LLM and npm registry are handlers on it. A handler may also take the connection
//! over as a websocket ([`Response::websocket`]): the upgrade is answered as RFC 6455 says, with
//! a subprotocol the client offered, as the Kubernetes API server answers `attach` and `exec`.
//!
//! Each server runs on a thread of its own with its own tokio runtime, so synchronous tests and
//! `#[tokio::test]`s start it alike; dropping it stops the thread and every connection.
//!
//! Containers on Docker's default bridge reach the host at the bridge's gateway
//! ([`bridge_gateway`]); the classic builder's `RUN` steps run on that bridge too. Plain HTTP to
//! the gateway is not intercepted by the host's TLS-intercepting proxy (checked with curl from a
//! container: the request arrives from the container's bridge address).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;

/// A request as the server received it (all of it).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When its body had arrived.
    pub at: Instant,
    /// `POST`, `GET`, …
    pub method: String,
    /// The request target as sent: `/path?query`, or the whole URL of a request to a proxy.
    pub target: String,
    /// The path without the query, still percent-encoded.
    pub path: String,
    /// The query string without `?` (empty when none).
    pub query: String,
    /// Headers, names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Bytes,
}

impl Recorded {
    /// A header's value (`name` lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What a handler answers: a status, headers and a body, whole or streamed.
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

enum Body {
    /// Sent with a `content-length`.
    Whole(Bytes),
    /// Sent chunked, each piece in its own write, as the stream yields it.
    Streamed(Pin<Box<dyn Stream<Item = Bytes> + Send>>),
    /// `101 Switching Protocols`, then the session on the connection.
    Upgrade {
        /// The subprotocols the server speaks.
        protocols: Vec<String>,
        /// What it does on the websocket.
        session: Session,
    },
}

/// The server's side of a websocket connection.
pub type WebSocket = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A websocket session: given the connection and the subprotocol chosen, it runs until it has
/// done what it does; the connection closes when it ends (dropped, unless it closed it).
type Session =
    Box<dyn FnOnce(WebSocket, String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

impl Response {
    /// `status` with no headers and an empty body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Whole(Bytes::new()),
        }
    }

    /// `status` with a `text/plain` body.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::new(status)
            .header("content-type", "text/plain")
            .body(text.into())
    }

    /// `status` with an `application/json` body.
    pub fn json(status: u16, value: &Value) -> Response {
        Response::new(status)
            .header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The whole body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Response {
        self.body = Body::Whole(body.into());
        self
    }

    /// A body streamed piece by piece: each piece is one chunk of a chunked body, sent as soon
    /// as the stream yields it (a client reads it before the next piece exists), and the body
    /// ends with the stream.
    pub fn stream(mut self, pieces: impl Stream<Item = Bytes> + Send + 'static) -> Response {
        self.body = Body::Streamed(Box::pin(pieces));
        self
    }

    /// Takes the connection over as a websocket: `101 Switching Protocols` with the first
    /// subprotocol the client offered (`Sec-WebSocket-Protocol`, in its order) that is one of
    /// `protocols`, then `session` on it. No subprotocol in common: `400`.
    pub fn websocket<F, Fut>(protocols: &[&str], session: F) -> Response
    where
        F: FnOnce(WebSocket, String) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let session: Session =
            Box::new(move |socket, protocol| Box::pin(session(socket, protocol)));
        Response {
            body: Body::Upgrade {
                protocols: protocols.iter().map(ToString::to_string).collect(),
                session,
            },
            ..Response::new(101)
        }
    }

    /// The answer to `request`; a websocket session's answer is the handshake's, and its
    /// session is spawned once hyper hands the connection over (`upgrade`).
    fn answer(
        self,
        request: &Recorded,
        upgrade: hyper::upgrade::OnUpgrade,
    ) -> hyper::Response<UnsyncBoxBody<Bytes, Infallible>> {
        let (protocols, session) = match self.body {
            Body::Upgrade { protocols, session } => (protocols, session),
            _ => return self.into_hyper(),
        };
        let offered = request.header("sec-websocket-protocol").unwrap_or_default();
        let chosen = offered
            .split(',')
            .map(str::trim)
            .find(|p| protocols.iter().any(|ours| ours == p));
        let (Some(chosen), Some(key)) = (chosen, request.header("sec-websocket-key")) else {
            return Response::text(400, format!("no subprotocol in common with {offered:?}"))
                .into_hyper();
        };
        let chosen = chosen.to_string();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let handshake = Response::new(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", &accept)
            .header("sec-websocket-protocol", &chosen);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            session(socket, chosen).await;
        });
        handshake.into_hyper()
    }

    fn into_hyper(self) -> hyper::Response<UnsyncBoxBody<Bytes, Infallible>> {
        let body = match self.body {
            Body::Whole(bytes) => Full::new(bytes).boxed_unsync(),
            Body::Streamed(pieces) => {
                let frames = pieces.map(|piece| Ok::<_, Infallible>(Frame::data(piece)));
                StreamBody::new(frames).boxed_unsync()
            }
            Body::Upgrade { .. } => Full::new(Bytes::new()).boxed_unsync(),
        };
        let mut response = hyper::Response::new(body);
        *response.status_mut() = hyper::StatusCode::from_u16(self.status)
            .unwrap_or_else(|e| panic!("test server: status {}: {e}", self.status));
        for (name, value) in &self.headers {
            let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .unwrap_or_else(|e| panic!("test server: header name {name:?}: {e}"));
            let value = hyper::header::HeaderValue::from_str(value)
                .unwrap_or_else(|e| panic!("test server: header value {value:?}: {e}"));
            response.headers_mut().append(name, value);
        }
        response
    }
}

type BoxedHandler =
    dyn Fn(Recorded) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync;

/// A running server; stops, with every connection, when dropped.
pub struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Listens on 127.0.0.1 at an ephemeral port and answers every request with `handler`.
    pub fn start<F, Fut>(handler: F) -> TestServer
    where
        F: Fn(Recorded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        TestServer::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), handler)
    }

    /// Listens on `ip` (`0.0.0.0` for every address, the bridge gateway for containers only) at
    /// an ephemeral port and answers every request with `handler`.
    pub fn start_on<F, Fut>(ip: IpAddr, handler: F) -> TestServer
    where
        F: Fn(Recorded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        // Podman's default bridge exists only while a container is on it: until then its
        // gateway is nobody's address. Then listen on every address, at the port the gateway
        // will be reached on.
        let listener = match std::net::TcpListener::bind((ip, 0)) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
            }
            bound => bound,
        }
        .unwrap_or_else(|e| panic!("test server: bind {ip}:0: {e}"));
        let addr = listener
            .local_addr()
            .map(|a| std::net::SocketAddr::new(ip, a.port()))
            .unwrap_or_else(|e| panic!("test server: local address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("test server: non-blocking listener: {e}"));
        let handler: Arc<BoxedHandler> = Arc::new(move |request| Box::pin(handler(request)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let recorded = requests.clone();
        let thread = std::thread::Builder::new()
            .name(format!("test-http-{}", addr.port()))
            .spawn(move || serve(listener, recorded, handler, stopped))
            .unwrap_or_else(|e| panic!("test server: spawn its thread: {e}"));
        TestServer {
            addr,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://<ip>:<port>`, with `127.0.0.1` for a server listening on every address.
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{host}:{}", self.port())
    }

    /// `http://<docker bridge gateway>:<port>`: where containers on the default bridge (and
    /// image builds) reach a server listening on every address or on the gateway itself.
    pub fn url_for_containers(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => bridge_gateway(),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", self.port())
    }

    /// Every request received so far, in the order their bodies arrived.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server's thread: accepts connections until told to stop, then drops its runtime, which
/// ends every connection still open.
fn serve(
    listener: std::net::TcpListener,
    requests: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<BoxedHandler>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("test server: runtime: {e}"));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .unwrap_or_else(|e| panic!("test server: listener: {e}"));
        let accept = async {
            while let Ok((stream, _)) = listener.accept().await {
                let (requests, handler) = (requests.clone(), handler.clone());
                let service = hyper::service::service_fn(move |request| {
                    answer(request, requests.clone(), handler.clone())
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = stopped => {}
        }
    });
}

/// Reads one request whole, records it and asks the handler for the answer.
async fn answer(
    mut request: hyper::Request<Incoming>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    handler: Arc<BoxedHandler>,
) -> Result<hyper::Response<UnsyncBoxBody<Bytes, Infallible>>, hyper::Error> {
    // Taken before the request is consumed; it resolves only if a `101` is sent.
    let upgrade = hyper::upgrade::on(&mut request);
    let (head, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let recorded = Recorded {
        at: Instant::now(),
        method: head.method.to_string(),
        target: head.uri.to_string(),
        path: head.uri.path().to_string(),
        query: head.uri.query().unwrap_or_default().to_string(),
        headers: head
            .headers
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_ascii_lowercase(), value)
            })
            .collect(),
        body,
    };
    match requests.lock() {
        Ok(mut log) => log.push(recorded.clone()),
        Err(poisoned) => poisoned.into_inner().push(recorded.clone()),
    }
    let response = handler(recorded.clone()).await;
    Ok(response.answer(&recorded, upgrade))
}

/// The gateway of the engine's default bridge network (Docker's `bridge`, usually 172.17.0.1;
/// Podman's `podman`, 10.88.0.1).
pub fn bridge_gateway() -> String {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            default_bridge(),
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
        ])
        .output()
        .unwrap_or_else(|e| panic!("docker network inspect bridge: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|g| g.parse::<Ipv4Addr>().is_ok())
        .unwrap_or("172.17.0.1")
        .to_string()
}

/// The name of the engine's default bridge network: `podman` on Podman, else `bridge`.
pub fn default_bridge() -> &'static str {
    static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let podman = Command::new("docker")
            .args(["network", "inspect", "podman", "--format", "{{.Name}}"])
            .output()
            .is_ok_and(|o| o.status.success());
        if podman { "podman" } else { "bridge" }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    #[tokio::test]
    async fn records_each_request_whole_and_answers_with_the_handler() {
        let server = TestServer::start(|request: Recorded| async move {
            Response::json(201, &serde_json::json!({"got": request.json()["n"]}))
                .header("x-seen", &request.query)
        });
        let response = client()
            .post(format!("{}/a/b%2fc?x=1", server.url()))
            .header("X-Team", "core")
            .body(r#"{"n": 7}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["x-seen"], "x=1");
        assert_eq!(response.text().await.expect("body"), r#"{"got":7}"#);
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.target.as_str()),
            ("POST", "/a/b%2fc", "/a/b%2fc?x=1")
        );
        assert_eq!(r.header("x-team"), Some("core"));
        assert_eq!(r.json()["n"], 7);
    }

    #[tokio::test]
    async fn a_streamed_body_arrives_piece_by_piece_as_it_is_produced() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let rx = Arc::new(Mutex::new(Some(rx)));
        let server = TestServer::start(move |_| {
            let rx = rx.lock().expect("lock").take().expect("one request");
            let pieces = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|piece| (piece, rx))
            });
            async move { Response::new(200).stream(pieces) }
        });
        tx.send(Bytes::from("first")).expect("send");
        let mut response = client().get(server.url()).send().await.expect("send");
        let first = response.chunk().await.expect("read").expect("a piece");
        assert_eq!(
            first, "first",
            "the first piece came before the second exists"
        );
        tx.send(Bytes::from("second")).expect("send");
        drop(tx);
        let second = response.chunk().await.expect("read").expect("a piece");
        assert_eq!(second, "second");
        assert!(response.chunk().await.expect("read").is_none());
    }

    #[tokio::test]
    async fn pieces_ready_at_once_still_arrive_as_chunks_of_their_own() {
        let server = TestServer::start(|_| async {
            let pieces = ["da", "ta: 1\n", "\n"].map(Bytes::from);
            Response::new(200).stream(futures::stream::iter(pieces))
        });
        let mut response = client().get(server.url()).send().await.expect("send");
        let mut chunks = Vec::new();
        while let Some(chunk) = response.chunk().await.expect("read") {
            chunks.push(chunk);
        }
        assert_eq!(chunks, ["da", "ta: 1\n", "\n"]);
    }

    #[test]
    fn stopping_ends_the_connections_it_had_open() {
        let server =
            TestServer::start(|_| async { Response::new(200).stream(futures::stream::pending()) });
        let url = server.url();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let mut response =
            runtime.block_on(async { client().get(&url).send().await.expect("send") });
        drop(server);
        let end = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), response.chunk()).await
        });
        assert!(
            matches!(end, Ok(Err(_)) | Ok(Ok(None))),
            "the open body ended: {end:?}"
        );
    }
}
