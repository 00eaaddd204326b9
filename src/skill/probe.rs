//! Probes for the security tests: what an attacker who controls a skill would try. The fixture
//! server exposes them as tools; every answer is a JSON object stating the concrete outcome
//! (`connected`, `status`, `addresses`, `content`, or `error`), so tests assert facts, not
//! words.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a TCP connection to `host:port` directly, ignoring any proxy settings.
pub(crate) async fn tcp_connect(host: &str, port: u16) -> Value {
    match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => json!({
            "connected": true,
            "peer": stream.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        }),
        Ok(Err(error)) => json!({"connected": false, "error": error.to_string()}),
        Err(_) => json!({"connected": false, "error": "timed out"}),
    }
}

/// Resolves `host` with the system resolver; reports the addresses (or the error) and how long
/// the lookup took, in milliseconds (`ms`).
pub(crate) async fn resolve(host: &str) -> Value {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::lookup_host((host, 0))).await;
    let ms = started.elapsed().as_millis();
    match outcome {
        Ok(Ok(addresses)) => {
            let addresses: Vec<String> = addresses.map(|a| a.ip().to_string()).collect();
            json!({"addresses": addresses, "ms": ms})
        }
        Ok(Err(error)) => json!({"addresses": [], "error": error.to_string(), "ms": ms}),
        Err(_) => json!({"addresses": [], "error": "timed out", "ms": ms}),
    }
}

/// Makes one `confine attempt` move in a child of ours (it inherits our confinement), with
/// every `{pid:TEXT}` argument replaced by the pid of the first other process whose command line
/// holds `TEXT`. Reports `{"label", "args", "outcome"}`, or `{"label", "error"}` when a target
/// or the attempt itself cannot be found.
pub(crate) async fn attempt(label: &str, args: &[String]) -> Value {
    let mut resolved = Vec::new();
    for arg in args {
        match arg.strip_prefix("{pid:").and_then(|a| a.strip_suffix('}')) {
            Some(text) => match pid_of(text) {
                Some(pid) => resolved.push(pid.to_string()),
                None => {
                    return json!({"label": label, "error": format!("no process holds `{text}`")});
                }
            },
            None => resolved.push(arg.clone()),
        }
    }
    // In a root of its own there is no /proc (so no /proc/self/exe): our binary is where every
    // image has it.
    let exe = std::env::current_exe()
        .unwrap_or_else(|_| std::path::PathBuf::from(crate::contract::paths::BINARY_PATH));
    // A pipe, closed at once, rather than /dev/null: a recipe's root on a `nodev` filesystem
    // (fuse-overlayfs) has a /dev/null that cannot be opened.
    let run = tokio::process::Command::new(exe)
        .args(["confine", "attempt"])
        .args(&resolved)
        .stdin(std::process::Stdio::piped())
        .output();
    match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let outcome = serde_json::from_str::<Value>(text.trim()).unwrap_or_else(
                |_| json!({"unparsed": text, "stderr": String::from_utf8_lossy(&out.stderr)}),
            );
            json!({"label": label, "args": resolved, "outcome": outcome})
        }
        Ok(Err(e)) => json!({"label": label, "error": e.to_string()}),
        Err(_) => json!({"label": label, "error": "timed out"}),
    }
}

/// The lowest pid other than ours whose command line (arguments joined by spaces) holds `text`.
fn pid_of(text: &str) -> Option<u32> {
    let own = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != own)
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .contains(text)
            })
            .unwrap_or(false)
    })
}

/// Asks the proxy named by `HTTPS_PROXY` (or `https_proxy`) for a tunnel to `host:port` and
/// reports its answer: `status` 200 means the tunnel is open. Through an open tunnel it then
/// sends a TLS ClientHello for `host` and reports whether a TLS server answered
/// (`tlsServerHello`): bytes really flow both ways to the destination.
pub(crate) async fn proxy_connect(host: &str, port: u16) -> Value {
    let request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
    ask_proxy(&["HTTPS_PROXY", "https_proxy"], &request, Some(host)).await
}

/// Sends a plain-HTTP `GET url` (absolute form) to the proxy named by `HTTP_PROXY` (or
/// `http_proxy`) and reports the status it answered with.
pub(crate) async fn proxy_get(url: &str) -> Value {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let request = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    ask_proxy(&["HTTP_PROXY", "http_proxy"], &request, None).await
}

/// Asks the `HTTPS_PROXY` (a URL with a principal's name and token, as a standalone image or a
/// pod gives them) for a tunnel to `host:port`, presenting `claim`: `self` its own name and
/// token, `none` no credentials, any other name that name with its own token (a stolen name).
/// Reports `{"status", "body"}` or `{"error"}`.
pub(crate) async fn proxy_connect_as(host: &str, port: u16, claim: &str) -> Value {
    use base64::Engine as _;
    let Some(proxy) = ["HTTPS_PROXY", "https_proxy"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    else {
        return json!({"error": "no HTTPS_PROXY in this environment"});
    };
    let Ok(url) = url::Url::parse(&proxy) else {
        return json!({"error": "HTTPS_PROXY is not a URL"});
    };
    let address = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port().unwrap_or(80)
    );
    let own = percent_encoding::percent_decode_str(url.username())
        .decode_utf8_lossy()
        .into_owned();
    let token = url.password().unwrap_or_default();
    let credentials = match claim {
        "none" => None,
        "self" => Some(format!("{own}:{token}")),
        other => Some(format!("{other}:{token}")),
    };
    let mut request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    if let Some(credentials) = credentials {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    let attempt = async {
        let mut stream = TcpStream::connect(address.as_str()).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = vec![0u8; 1024];
        let n = stream.read(&mut answer).await?;
        answer.truncate(n);
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(answer)) => {
            let status = answer.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            json!({"claim": claim, "status": status, "body": body})
        }
        Ok(Err(error)) => json!({"claim": claim, "error": error.to_string()}),
        Err(_) => json!({"claim": claim, "error": "timed out"}),
    }
}

/// Sends `request` to the proxy the first of `vars` names, and reads its answer:
/// `{"proxy", "status", "body"}`, or `{"error"}`.
async fn ask_proxy(vars: &[&str], request: &str, tls_host: Option<&str>) -> Value {
    let Some(proxy) = vars
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    else {
        return json!({"error": format!("no {} in this environment", vars[0])});
    };
    let Some(address) = proxy
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/').to_string())
    else {
        return json!({"proxy": proxy, "error": "the proxy is not an http:// URL"});
    };
    let attempt = async {
        let mut stream = TcpStream::connect(address.as_str()).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = vec![0u8; 1024];
        let n = stream.read(&mut answer).await?;
        answer.truncate(n);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
        let server_hello = match tls_host {
            Some(host) if status == Some(200) => Some(tls_server_hello(&mut stream, host).await),
            _ => None,
        };
        Ok::<_, std::io::Error>((answer, status, server_hello))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok((answer, status, server_hello))) => {
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            let mut out = json!({"proxy": proxy, "status": status, "body": body});
            if let Some(hello) = server_hello {
                out["tlsServerHello"] = json!(hello);
            }
            out
        }
        Ok(Err(error)) => json!({"proxy": proxy, "error": error.to_string()}),
        Err(_) => json!({"proxy": proxy, "error": "timed out"}),
    }
}

/// Sends a TLS ClientHello for `host` and reports whether the answer is a TLS handshake record
/// (what a TLS server sends back). No certificate is checked: the probe only shows that a TLS
/// server is at the other end.
async fn tls_server_hello(stream: &mut TcpStream, host: &str) -> bool {
    let Ok(config) = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions() else {
        return false;
    };
    let config = config
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_string()) else {
        return false;
    };
    let Ok(mut client) = rustls::ClientConnection::new(std::sync::Arc::new(config), name) else {
        return false;
    };
    let mut hello = Vec::new();
    if client.write_tls(&mut hello).is_err() || stream.write_all(&hello).await.is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    // 0x16: a TLS handshake record (the ServerHello).
    matches!(stream.read(&mut first).await, Ok(1) if first[0] == 0x16)
}

/// Reads up to 64 KiB of `path`.
pub(crate) fn read_file(path: &str) -> Value {
    use std::io::Read;
    let mut content = Vec::new();
    match std::fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut content)) {
        Ok(_) => json!({"content": String::from_utf8_lossy(&content)}),
        Err(error) => json!({"error": error.to_string(), "kind": format!("{:?}", error.kind())}),
    }
}

/// Makes a symlink to `target` in the temporary folder and reads through it.
pub(crate) fn symlink_read(target: &str) -> Value {
    let link = std::env::temp_dir().join(format!("probe-{}", crate::ids::new_id()));
    if let Err(error) = std::os::unix::fs::symlink(target, &link) {
        return json!({"error": format!("cannot make a symlink: {error}")});
    }
    let result = read_file(&link.display().to_string());
    let _ = std::fs::remove_file(&link);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_port_is_reported_as_not_connected() {
        // Bind, learn the port, close: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let out = tcp_connect("127.0.0.1", port).await;
        assert_eq!(out["connected"], false);
        assert!(out["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    #[tokio::test]
    async fn a_listening_port_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(tcp_connect("127.0.0.1", port).await["connected"], true);
    }

    #[test]
    fn files_and_symlinks_report_content_or_the_error_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f.txt");
        std::fs::write(&file, "hello").expect("write");
        assert_eq!(read_file(&file.display().to_string())["content"], "hello");
        assert_eq!(
            symlink_read(&file.display().to_string())["content"],
            "hello"
        );
        assert_eq!(read_file("/nonexistent/x")["kind"], "NotFound");
    }
}
