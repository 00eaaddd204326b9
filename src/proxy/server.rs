//! Accepting connections, reading one request head, deciding, and splicing bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::auth::{self, Refusal};
use super::rules::normalize_host;
use super::{Access, Principal, ProxyConfig, address};
use crate::event::ProxyAction;

/// Longest request head read before giving up.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait.
const MAX_CONNECTIONS: usize = 512;
/// How many times in all a name is looked up before the proxy refuses with "cannot resolve".
const LOOKUP_ATTEMPTS: u32 = 3;
/// The pause before lookup attempt `n + 1` is `n` times this.
const LOOKUP_PAUSE: Duration = Duration::from_millis(200);

/// Resolves `host:port` to addresses (injectable so tests can play DNS rebinding).
pub(crate) type Resolver =
    Arc<dyn Fn(String, u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// The system resolver (getaddrinfo).
pub(crate) fn system_resolver() -> Resolver {
    Arc::new(|host, port| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    })
}

/// Looks `host:port` up with `resolver`, again after a short pause when a lookup fails, at most
/// [`LOOKUP_ATTEMPTS`] times in all. A resolver under load (a container's DNS forwarder, the
/// host's stub) can fail one lookup of a name that it answered a moment before; a client
/// refused for that would see the same 403 as for a name that does not exist. An empty answer
/// is an answer and is not asked again.
async fn lookup(resolver: &Resolver, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let mut attempt = 1;
    loop {
        match resolver(host.to_string(), port).await {
            Err(error) if attempt < LOOKUP_ATTEMPTS => {
                tracing::debug!(%error, host, attempt, "lookup failed; asking again");
                tokio::time::sleep(LOOKUP_PAUSE * attempt).await;
                attempt += 1;
            }
            answer => return answer,
        }
    }
}

/// Serves `listener` until the process ends.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Arc<ProxyConfig>,
    log: mpsc::UnboundedSender<Access>,
    resolver: Resolver,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (config, log, resolver) = (config.clone(), log.clone(), resolver.clone());
        tokio::spawn(async move {
            handle(client, &config, &log, &resolver).await;
            drop(permit);
        });
    }
}

/// A request the proxy understood.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `CONNECT host:port`.
    Connect { host: String, port: u16 },
    /// An absolute-form plain HTTP request, to forward as origin-form.
    Forward {
        host: String,
        port: u16,
        /// The head rewritten for the origin server.
        head: Vec<u8>,
    },
}

async fn handle(
    mut client: TcpStream,
    config: &ProxyConfig,
    log: &mpsc::UnboundedSender<Access>,
    resolver: &Resolver,
) {
    let (head, rest) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(read)) => read,
        _ => {
            let _ = respond(&mut client, 400, "Bad Request", "could not read a request").await;
            return;
        }
    };
    let request = match parse_head(&head) {
        Ok(request) => request,
        Err(why) => {
            let _ = respond(&mut client, 400, "Bad Request", why).await;
            return;
        }
    };
    let (host, port) = match &request {
        Request::Connect { host, port } | Request::Forward { host, port, .. } => {
            (host.clone(), *port)
        }
    };
    let record = |action, reason: Option<String>, client: &str| Access {
        action,
        domain: host.clone(),
        port,
        reason,
        client: client.to_string(),
    };
    let authorization = header_values(&head, "proxy-authorization");
    let principal = match auth::identify(config, client.local_addr().ok(), &authorization) {
        Ok(principal) => principal,
        Err(refusal) => {
            let why = refusal.reason();
            let _ = log.send(record(ProxyAction::Blocked, Some(why.into()), "unknown"));
            let _ = match refusal {
                Refusal::Unserved => respond(&mut client, 403, "Forbidden", why).await,
                Refusal::Unauthenticated(_) => challenge(&mut client, why).await,
            };
            return;
        }
    };
    let record = |action, reason| record(action, reason, &principal.name);
    let plain = matches!(request, Request::Forward { .. });
    let targets = match decide(principal, &host, port, plain, resolver).await {
        Ok(targets) => targets,
        Err(why) => {
            let _ = log.send(record(ProxyAction::Blocked, Some(why.clone())));
            let _ = respond(&mut client, 403, "Forbidden", &why).await;
            return;
        }
    };
    let mut upstream = match connect_any(&targets).await {
        Ok(upstream) => upstream,
        Err(error) => {
            let why = format!("cannot connect: {error}");
            let _ = log.send(record(ProxyAction::Blocked, Some(why.clone())));
            let _ = respond(&mut client, 502, "Bad Gateway", &why).await;
            return;
        }
    };
    let _ = log.send(record(ProxyAction::Allowed, None));
    let ready = match &request {
        Request::Connect { .. } => {
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
        }
        // The rewritten head, without Proxy-Authorization (see `parse_head`).
        Request::Forward { head, .. } => upstream.write_all(head).await,
    };
    if ready.is_err() || upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Where `principal` may go for `host:port`: checked addresses, or why not.
async fn decide(
    principal: &Principal,
    host: &str,
    port: u16,
    plain_http: bool,
    resolver: &Resolver,
) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let trusted = principal.trusted.iter().find(|t| {
        t.port == port
            && t.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(bare)
    });
    if let Some(trusted) = trusted {
        if plain_http && !trusted.plain_http {
            return Err("plain HTTP to this endpoint is not configured; use HTTPS".into());
        }
        // The user named this endpoint: it may resolve anywhere, the host or the LAN included.
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        return lookup(resolver, bare, port)
            .await
            .map_err(|e| format!("cannot resolve: {e}"));
    }
    if plain_http {
        return Err(
            "plain HTTP is only forwarded to a provider endpoint configured explicitly".into(),
        );
    }
    if bare.parse::<IpAddr>().is_ok() {
        return Err("IP address literals are refused; the allowlist names domains".into());
    }
    let name = normalize_host(bare).map_err(|e| e.to_string())?;
    if principal.allow.find(&name, port).is_none() {
        return Err(
            if principal
                .allow
                .find(&name, super::rules::DEFAULT_PORT)
                .is_some()
            {
                format!("port {port} is not allowed for this domain")
            } else {
                "Domain not in allowlist".into()
            },
        );
    }
    let resolved = lookup(resolver, &name, port)
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?;
    let mut refusal = None;
    let public: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|a| match address::check(a.ip()) {
            Ok(()) => true,
            Err(why) => {
                refusal.get_or_insert(why);
                false
            }
        })
        .collect();
    match (public.is_empty(), refusal) {
        (false, _) => Ok(public),
        (true, Some(why)) => Err(why.reason().to_string()),
        (true, None) => Err("cannot resolve: no addresses".into()),
    }
}

async fn connect_any(targets: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
    for target in targets {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => last = error,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
        }
    }
    Err(last)
}

/// Reads up to the blank line ending the head; returns the head and any bytes after it.
async fn read_head(client: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// Parses a request head: `CONNECT host:port`, or an absolute-form `http://` request.
fn parse_head(head: &[u8]) -> Result<Request, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("only HTTP/1.x is spoken here");
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_host_port(target).ok_or("CONNECT needs host:port")?;
        return Ok(Request::Connect { host, port });
    }
    let url = url::Url::parse(target).map_err(|_| "expected an absolute http:// URL")?;
    if url.scheme() != "http" {
        return Err("only http:// URLs are forwarded; use CONNECT for HTTPS");
    }
    let host = url.host_str().ok_or("the URL has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut path = url.path().to_string();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    let mut rewritten = format!("{method} {path} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim();
        // Hop-by-hop and proxy headers stay here; one request per connection keeps the
        // decision per request.
        if [
            "proxy-connection",
            "proxy-authorization",
            "connection",
            "keep-alive",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    Ok(Request::Forward {
        host,
        port,
        head: rewritten.into_bytes(),
    })
}

/// `host:port` or `[v6]:port`.
fn split_host_port(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p != 0)?;
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    Some((host.to_string(), port))
}

/// The values of every header called `name` (any case) in a request head.
fn header_values<'h>(head: &'h [u8], name: &str) -> Vec<&'h str> {
    let Ok(text) = std::str::from_utf8(head) else {
        return vec![];
    };
    text.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
        .collect()
}

async fn respond(
    client: &mut TcpStream,
    status: u16,
    reason: &str,
    body: &str,
) -> std::io::Result<()> {
    respond_with(client, status, reason, "", body).await
}

/// `407` with a Basic challenge, so a client knows to send its proxy URL's credentials.
async fn challenge(client: &mut TcpStream, body: &str) -> std::io::Result<()> {
    let header = format!("Proxy-Authenticate: Basic realm=\"{}\"\r\n", auth::REALM);
    respond_with(client, 407, "Proxy Authentication Required", &header, body).await
}

/// Answers and closes; `headers` are complete lines (`Name: value\r\n`).
async fn respond_with(
    client: &mut TcpStream,
    status: u16,
    reason: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let body = format!("perstack-sandbox egress proxy: {body}\n");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n{headers}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::rules::{Allowlist, DomainRule};
    use crate::proxy::{Identity, TrustedEndpoint};

    fn principal(rules: &[&str], trusted: Vec<TrustedEndpoint>) -> Principal {
        Principal {
            name: "runtime".into(),
            identity: Identity::Network("127.0.0.0/8".to_string().try_into().expect("subnet")),
            allow: Allowlist {
                rules: rules
                    .iter()
                    .map(|r| DomainRule::parse(r).expect("rule"))
                    .collect(),
            },
            trusted,
        }
    }

    /// A resolver that answers every name with `ip`.
    fn resolving_to(ip: &str) -> Resolver {
        let ip: IpAddr = ip.parse().expect("ip");
        Arc::new(move |_, port| Box::pin(async move { Ok(vec![SocketAddr::new(ip, port)]) }))
    }

    #[tokio::test]
    async fn allowlisted_names_resolving_to_public_addresses_are_allowed() {
        let p = principal(&["api.anthropic.com"], vec![]);
        let targets = decide(
            &p,
            "api.anthropic.com",
            443,
            false,
            &resolving_to("160.79.104.10"),
        )
        .await
        .expect("allowed");
        assert_eq!(targets, [SocketAddr::from(([160, 79, 104, 10], 443))]);
    }

    #[tokio::test]
    async fn what_the_allowlist_does_not_name_is_blocked() {
        let p = principal(&["api.anthropic.com"], vec![]);
        let public = resolving_to("1.1.1.1");
        let blocked = |host: &'static str, port: u16| {
            let (p, public) = (p.clone(), public.clone());
            async move {
                decide(&p, host, port, false, &public)
                    .await
                    .expect_err(host)
            }
        };
        assert_eq!(
            blocked("evil.example.com", 443).await,
            "Domain not in allowlist"
        );
        assert_eq!(
            blocked("api.anthropic.com", 80).await,
            "port 80 is not allowed for this domain"
        );
        assert!(
            blocked("1.1.1.1", 443)
                .await
                .contains("IP address literals")
        );
        assert!(
            blocked("[2606:4700::1111]", 443)
                .await
                .contains("IP address literals")
        );
        assert!(
            blocked("xn--nthropic-5ya.com", 443)
                .await
                .contains("punycode")
        );
    }

    /// A resolver that fails its first `failures` lookups, then answers with a public address;
    /// and how many lookups it was asked.
    fn failing_first(failures: u32) -> (Resolver, Arc<std::sync::atomic::AtomicU32>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        let asked = Arc::new(AtomicU32::new(0));
        let counter = asked.clone();
        let resolver: Resolver = Arc::new(move |_, port| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n < failures {
                    Err(std::io::Error::other(
                        "Temporary failure in name resolution",
                    ))
                } else {
                    Ok(vec![SocketAddr::from(([160, 79, 104, 10], port))])
                }
            })
        });
        (resolver, asked)
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_fails_is_asked_again_and_only_up_to_the_bound() {
        use std::sync::atomic::Ordering;
        let p = principal(&["api.anthropic.com"], vec![]);
        let (flaky, asked) = failing_first(LOOKUP_ATTEMPTS - 1);
        let targets = decide(&p, "api.anthropic.com", 443, false, &flaky)
            .await
            .expect("allowed once the resolver answers");
        assert_eq!(targets, [SocketAddr::from(([160, 79, 104, 10], 443))]);
        assert_eq!(asked.load(Ordering::SeqCst), LOOKUP_ATTEMPTS);

        let (down, asked) = failing_first(u32::MAX);
        let error = decide(&p, "api.anthropic.com", 443, false, &down)
            .await
            .expect_err("a resolver that keeps failing");
        assert!(
            error.starts_with("cannot resolve: Temporary failure"),
            "{error}"
        );
        assert_eq!(asked.load(Ordering::SeqCst), LOOKUP_ATTEMPTS);

        // A name the allowlist refuses is never looked up.
        let (resolver, asked) = failing_first(0);
        decide(&p, "evil.example.com", 443, false, &resolver)
            .await
            .expect_err("not allowed");
        assert_eq!(asked.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_allowed_name_that_resolves_inside_is_refused_dns_rebinding() {
        let p = principal(&["*.example.com"], vec![]);
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.17.0.1", "private"),
            ("::ffff:10.0.0.1", "IPv4-mapped"),
        ] {
            let error = decide(&p, "rebind.example.com", 443, false, &resolving_to(ip))
                .await
                .expect_err(ip);
            assert!(error.contains(why), "{ip}: {error}");
        }
    }

    #[tokio::test]
    async fn plain_http_goes_only_to_a_configured_provider_endpoint() {
        let ollama = TrustedEndpoint {
            host: "host.docker.internal".into(),
            port: 11434,
            plain_http: true,
        };
        let p = principal(&["example.com:80"], vec![ollama]);
        // The configured endpoint may be on the host: no address check for it.
        let targets = decide(
            &p,
            "host.docker.internal",
            11434,
            true,
            &resolving_to("172.17.0.1"),
        )
        .await
        .expect("allowed");
        assert_eq!(targets, [SocketAddr::from(([172, 17, 0, 1], 11434))]);
        let error = decide(&p, "example.com", 80, true, &resolving_to("1.1.1.1"))
            .await
            .expect_err("plain http elsewhere");
        assert!(error.contains("plain HTTP is only forwarded"), "{error}");
        let error = decide(
            &p,
            "host.docker.internal",
            11435,
            true,
            &resolving_to("172.17.0.1"),
        )
        .await
        .expect_err("other port");
        assert!(error.contains("plain HTTP"), "{error}");
    }

    #[test]
    fn request_heads_parse() {
        assert_eq!(
            parse_head(b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n"),
            Ok(Request::Connect {
                host: "api.github.com".into(),
                port: 443
            })
        );
        assert_eq!(
            parse_head(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n"),
            Ok(Request::Connect {
                host: "[::1]".into(),
                port: 443
            })
        );
        let Ok(Request::Forward { host, port, head }) = parse_head(
            b"POST http://ollama:11434/api/chat?x=1 HTTP/1.1\r\nHost: ollama:11434\r\nProxy-Connection: keep-alive\r\nContent-Length: 2\r\n\r\n",
        ) else {
            panic!("forward");
        };
        assert_eq!((host.as_str(), port), ("ollama", 11434));
        assert_eq!(
            String::from_utf8(head).expect("utf8"),
            "POST /api/chat?x=1 HTTP/1.1\r\nHost: ollama:11434\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
        assert!(parse_head(b"GET https://x.com/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"CONNECT x.com HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"CONNECT x.com:443 SPDY/3\r\n\r\n").is_err());
        assert!(parse_head(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }

    /// The whole path over real sockets: a tunnel to a configured endpoint carries bytes both
    /// ways; a refused request gets a 403 and an access record.
    #[tokio::test]
    async fn tunnels_carry_bytes_and_refusals_are_logged() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream_port = upstream.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.expect("accept");
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.expect("read");
            s.write_all(&buf.map(|b| b.to_ascii_uppercase()))
                .await
                .expect("write");
        });
        let trusted = TrustedEndpoint {
            host: "127.0.0.1".into(),
            port: upstream_port,
            plain_http: false,
        };
        let config = Arc::new(ProxyConfig {
            principals: vec![principal(&["api.example.com"], vec![trusted])],
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = listener.local_addr().expect("addr");
        let (log, mut records) = mpsc::unbounded_channel();
        tokio::spawn(serve(listener, config, log, resolving_to("1.1.1.1")));

        let mut client = TcpStream::connect(proxy).await.expect("connect");
        client
            .write_all(format!("CONNECT 127.0.0.1:{upstream_port} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut established = [0u8; 39];
        client.read_exact(&mut established).await.expect("200");
        assert!(established.starts_with(b"HTTP/1.1 200"));
        client.write_all(b"ping").await.expect("write");
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).await.expect("read");
        assert_eq!(&pong, b"PING");
        let allowed = records.recv().await.expect("record");
        assert_eq!(allowed.action, ProxyAction::Allowed);
        assert_eq!(allowed.client, "runtime");

        let mut client = TcpStream::connect(proxy).await.expect("connect");
        client
            .write_all(b"CONNECT evil.example.net:443 HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut response = String::new();
        client.read_to_string(&mut response).await.expect("read");
        assert!(response.starts_with("HTTP/1.1 403"), "{response}");
        let blocked = records.recv().await.expect("record");
        assert_eq!(
            blocked,
            Access {
                action: ProxyAction::Blocked,
                domain: "evil.example.net".into(),
                port: 443,
                reason: Some("Domain not in allowlist".into()),
                client: "runtime".into(),
            }
        );
    }
}

/// Principals that share one network and say who they are with their token.
#[cfg(test)]
mod token_tests {
    use super::*;
    use crate::proxy::rules::{Allowlist, DomainRule};
    use crate::proxy::token::{self, Issued};
    use crate::proxy::{Identity, TrustedEndpoint};

    /// A proxy serving `principals` on loopback, which is no principal's network.
    async fn proxy(
        principals: Vec<Principal>,
        resolver: Resolver,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Access>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (log, records) = mpsc::unbounded_channel();
        let config = Arc::new(ProxyConfig { principals });
        tokio::spawn(serve(listener, config, log, resolver));
        (addr, records)
    }

    fn by_token(name: &str, issued: &Issued, rules: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            identity: Identity::Token(issued.digest),
            allow: Allowlist {
                rules: rules
                    .iter()
                    .map(|r| DomainRule::parse(r).expect("rule"))
                    .collect(),
            },
            trusted: vec![],
        }
    }

    /// `Proxy-Authorization` as curl makes it from a proxy URL.
    fn authorization(user: &str, token: &str) -> String {
        use base64::Engine as _;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        format!("Proxy-Authorization: Basic {pair}\r\n")
    }

    /// Sends one request head and reads the answer up to the end of its head.
    async fn ask(proxy: SocketAddr, request: &str) -> (TcpStream, String) {
        let mut client = TcpStream::connect(proxy).await.expect("connect");
        client.write_all(request.as_bytes()).await.expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if client.read(&mut byte).await.expect("read") == 0 {
                break;
            }
            head.push(byte[0]);
        }
        (client, String::from_utf8(head).expect("utf8"))
    }

    fn connect(host: &str, credentials: &str) -> String {
        format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n{credentials}\r\n")
    }

    /// A public address for every name: the tests here are refused before any connection.
    fn public() -> Resolver {
        Arc::new(|_, port| {
            Box::pin(async move { Ok(vec![SocketAddr::from(([192, 0, 2, 1], port))]) })
        })
    }

    #[tokio::test]
    async fn a_good_token_gets_its_own_allowlist_and_only_that() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream_port = upstream.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.expect("accept");
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.expect("read");
            s.write_all(&buf.map(|b| b.to_ascii_uppercase()))
                .await
                .expect("write");
        });
        let web = token::issue("skill:web", "egress-proxy", 3128).expect("issue");
        let git = token::issue("skill:git", "egress-proxy", 3128).expect("issue");
        // web may reach the upstream (as a configured endpoint: loopback passes no address
        // check otherwise) and *.exa.ai; git only api.github.com.
        let mut web_principal = by_token("skill:web", &web, &["*.exa.ai"]);
        web_principal.trusted = vec![TrustedEndpoint {
            host: "127.0.0.1".into(),
            port: upstream_port,
            plain_http: false,
        }];
        let (proxy, mut records) = proxy(
            vec![
                web_principal,
                by_token("skill:git", &git, &["api.github.com"]),
            ],
            public(),
        )
        .await;
        let web_auth = authorization("skill:web", &token::tests::token_of(&web));
        let git_auth = authorization("skill:git", &token::tests::token_of(&git));
        let target = format!("127.0.0.1:{upstream_port}");

        let (mut tunnel, answer) = ask(proxy, &connect(&target, &web_auth)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tunnel.write_all(b"ping").await.expect("write");
        let mut pong = [0u8; 4];
        tunnel.read_exact(&mut pong).await.expect("read");
        assert_eq!(&pong, b"PING");
        let allowed = records.recv().await.expect("record");
        assert_eq!(
            (allowed.action, allowed.client.as_str()),
            (ProxyAction::Allowed, "skill:web")
        );

        // Each token grants its own principal's allowlist, never the other's.
        for (auth, host, client) in [
            (&web_auth, "api.github.com:443", "skill:web"),
            (&git_auth, "api.exa.ai:443", "skill:git"),
            (&git_auth, target.as_str(), "skill:git"),
        ] {
            let (_, answer) = ask(proxy, &connect(host, auth)).await;
            assert!(answer.starts_with("HTTP/1.1 403"), "{host}: {answer}");
            let blocked = records.recv().await.expect("record");
            assert_eq!(
                (blocked.action, blocked.client.as_str()),
                (ProxyAction::Blocked, client),
                "{host}"
            );
        }
    }

    #[tokio::test]
    async fn without_the_right_token_a_client_gets_407_a_challenge_and_a_blocked_record() {
        let web = token::issue("skill:web", "egress-proxy", 3128).expect("issue");
        let git = token::issue("skill:git", "egress-proxy", 3128).expect("issue");
        let (web_token, git_token) = (token::tests::token_of(&web), token::tests::token_of(&git));
        let (proxy, mut records) = proxy(
            vec![
                by_token("skill:web", &web, &["*.exa.ai"]),
                by_token("skill:git", &git, &["api.github.com"]),
            ],
            public(),
        )
        .await;
        for (credentials, why) in [
            (String::new(), "no proxy credentials"),
            (authorization("skill:web", "not-the-token"), "wrong token"),
            // Another principal's token with one's own name.
            (authorization("skill:web", &git_token), "wrong token"),
            (
                authorization("skill:nobody", &web_token),
                "unknown principal",
            ),
            // The token where the name goes, as a confused client might send it.
            (authorization(&web_token, "x"), "unknown principal"),
        ] {
            let (_, answer) = ask(proxy, &connect("api.exa.ai:443", &credentials)).await;
            assert!(
                answer.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
                "{why}: {answer}"
            );
            assert!(
                answer.contains("\r\nProxy-Authenticate: Basic realm=\"perstack-sandbox\"\r\n"),
                "{answer}"
            );
            let record = records.recv().await.expect("record");
            assert_eq!(record.action, ProxyAction::Blocked, "{why}");
            assert_eq!(record.client, "unknown", "{why}");
            assert_eq!((record.domain.as_str(), record.port), ("api.exa.ai", 443));
            let line = serde_json::to_string(&record).expect("json");
            assert!(line.contains(why), "{line}");
            assert!(
                !line.contains(&web_token) && !line.contains(&git_token),
                "{line}"
            );
        }
    }

    /// Plain HTTP to a configured endpoint: the origin server sees the request without the
    /// principal's credentials.
    #[tokio::test]
    async fn the_credentials_are_stripped_before_anything_is_forwarded() {
        let origin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin_port = origin.local_addr().expect("addr").port();
        let seen = tokio::spawn(async move {
            let (mut s, _) = origin.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.expect("read");
                head.push(byte[0]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .expect("write");
            String::from_utf8(head).expect("utf8")
        });
        let runtime = token::issue("runtime", "egress-proxy", 3128).expect("issue");
        let mut principal = by_token("runtime", &runtime, &[]);
        principal.trusted = vec![TrustedEndpoint {
            host: "127.0.0.1".into(),
            port: origin_port,
            plain_http: true,
        }];
        let (proxy, _records) = proxy(vec![principal], public()).await;
        let token = token::tests::token_of(&runtime);
        let request = format!(
            "POST http://127.0.0.1:{origin_port}/api/chat HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n{}Content-Length: 0\r\n\r\n",
            // Header names are case-insensitive: so is the stripping.
            authorization("runtime", &token).replace("Proxy-Authorization", "proxy-AUTHORIZATION")
        );
        let (_, answer) = ask(proxy, &request).await;
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        let head = seen.await.expect("origin");
        assert!(head.starts_with("POST /api/chat HTTP/1.1\r\n"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("proxy-authorization"),
            "{head}"
        );
        assert!(!head.contains(&token), "{head}");
    }
}
