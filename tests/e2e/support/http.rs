//! The tests' one HTTP/1.1 server, on a std `TcpListener` with a thread per connection: it reads
//! each request whole (request line, headers, a `content-length` body), records it, and hands it
//! to the test's handler, which writes the answer. [`MockLlm`](super::mock_llm::MockLlm) and
//! [`NpmRegistry`](super::npm_registry::NpmRegistry) are handlers on it.
//!
//! Containers on Docker's default bridge reach the host at the bridge's gateway
//! ([`bridge_gateway`]); the classic builder's `RUN` steps run on that bridge too. Plain HTTP to
//! the gateway is not intercepted by the host's TLS-intercepting proxy (checked with curl from a
//! container: the request arrives from the container's bridge address).

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When it arrived (all of it).
    pub at: Instant,
    /// `POST`, …
    pub method: String,
    /// The path without the query, as sent (still percent-encoded).
    pub path: String,
    /// The query string, without `?` (empty when none).
    pub query: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What answers a request: it gets the request and the connection to write the response to.
pub type Handler = dyn Fn(&Recorded, &mut TcpStream) -> std::io::Result<()> + Send + Sync;

/// A running server; stops accepting when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// Listens on `ip` at an ephemeral port and answers every request with `handler`.
    pub fn start(
        ip: IpAddr,
        handler: impl Fn(&Recorded, &mut TcpStream) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> HttpServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind the test HTTP server");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (recorded, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (recorded, handler) = (recorded.clone(), handler.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &recorded, handler.as_ref());
                });
            }
        });
        HttpServer {
            addr,
            requests,
            stop,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://<docker bridge gateway>:<port>`: where containers on the default bridge (and
    /// image builds) reach this server. Listening on all addresses or on the gateway itself.
    pub fn url_for_containers(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => bridge_gateway(),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", self.port())
    }

    /// `http://127.0.0.1:<port>` (for a server listening on all addresses).
    pub fn url_local(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let wake = match self.addr.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let _ = TcpStream::connect((wake, self.port()));
    }
}

/// The gateway of Docker's default bridge network (usually 172.17.0.1).
pub fn bridge_gateway() -> String {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
        ])
        .output()
        .expect("docker network inspect bridge");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|g| g.parse::<Ipv4Addr>().is_ok())
        .unwrap_or("172.17.0.1")
        .to_string()
}

fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<Recorded>>,
    handler: &Handler,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let request = Recorded {
        at: Instant::now(),
        method,
        path,
        query,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    requests.lock().expect("requests").push(request.clone());
    let mut out = stream;
    handler(&request, &mut out)
}
