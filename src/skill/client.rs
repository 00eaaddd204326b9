//! The runtime's side of a skill: an rmcp client, over the skill's unix socket or over HTTP.
//!
//! A stdio skill's socket lives in a volume shared by the runtime container and that one skill
//! container (DESIGN.md, "Per-run topology"); the skill host inside the skill container relays it
//! to the server's stdio. The skill container may still be starting when the runtime comes up, so
//! connecting retries until a deadline.
//!
//! An `mcpSseSkill` is a remote server at an `endpoint` URL. We speak the MCP streamable HTTP
//! transport to it first (rmcp's client over our reqwest client), and fall back to the older
//! HTTP+SSE transport ([`super::legacy_sse`]) when the server refuses that first `POST` with a
//! 4xx status — the MCP specification's backwards-compatibility rule.

use std::error::Error as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use serde_json::Value;
use tokio::net::UnixStream;

use super::legacy_sse::LegacySseTransport;
use super::link::{Link, RECONNECT_WAIT, Session, Unavailable};
use crate::contract::supervision::{SERVER_EXITED, SKILL_DOWN};
use crate::event::ServerInfo;
use crate::llm::ToolSpec;

/// Why a skill could not be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SkillConnectError {
    /// Nothing listened on the socket in time.
    #[error(
        "skill `{skill}` did not open {socket} within {waited:?}: {source} (its container may have failed to start; see `skillStderr` events)"
    )]
    NotListening {
        /// The skill.
        skill: String,
        /// The socket path.
        socket: String,
        /// How long we waited.
        waited: Duration,
        /// The last connect error.
        #[source]
        source: std::io::Error,
    },
    /// The MCP handshake failed.
    #[error("skill `{skill}`: MCP handshake failed: {message}")]
    Handshake {
        /// The skill.
        skill: String,
        /// What failed.
        message: String,
    },
    /// The skill host answered for a server that is not there: it could not start, or exited
    /// after its last restart (`down`), or exited and is being started again.
    #[error("skill `{skill}`: {message}")]
    Refused {
        /// The skill.
        skill: String,
        /// The skill host's reason.
        message: String,
        /// No server will come this run.
        down: bool,
    },
    /// A remote skill's endpoint is not a URL.
    #[error("skill `{skill}`: endpoint `{endpoint}` is not a valid URL: {message}")]
    BadEndpoint {
        /// The skill.
        skill: String,
        /// The endpoint.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// A remote skill spoke neither MCP HTTP transport.
    #[error(
        "skill `{skill}`: cannot connect to {endpoint}: {message} (check the endpoint URL and that the server speaks MCP over streamable HTTP or HTTP+SSE)"
    )]
    Remote {
        /// The skill.
        skill: String,
        /// The endpoint.
        endpoint: String,
        /// What failed, per transport tried.
        message: String,
    },
    /// A remote skill did not finish connecting in time.
    #[error("skill `{skill}`: {endpoint} did not complete the MCP handshake within {waited:?}")]
    RemoteTimeout {
        /// The skill.
        skill: String,
        /// The endpoint.
        endpoint: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Listing tools failed.
    #[error("skill `{skill}`: listing tools failed: {message}")]
    ListTools {
        /// The skill.
        skill: String,
        /// What failed.
        message: String,
    },
}

/// How long each phase of connecting took, for `skillConnected`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConnectTimings {
    /// Waiting for the socket to accept.
    pub connect_ms: u64,
    /// MCP `initialize`.
    pub handshake_ms: u64,
    /// `tools/list`.
    pub discovery_ms: u64,
    /// All of it.
    pub total_ms: u64,
}

/// Which MCP transport a remote skill answered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoteTransport {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp,
    /// The older HTTP+SSE transport (MCP 2024-11-05).
    LegacySse,
}

/// A connected MCP skill.
pub(crate) struct McpSkill {
    /// The skill's name in `perstack.toml`.
    pub name: String,
    /// What the server says it is.
    pub server_info: Option<ServerInfo>,
    /// The tools it offers (before `pick`/`omit`).
    pub tools: Vec<ToolSpec>,
    /// The session calls go through, made again when a stdio skill's server is restarted.
    link: Arc<Link>,
}

impl std::fmt::Debug for McpSkill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpSkill")
            .field("name", &self.name)
            .field("server_info", &self.server_info)
            .field("tools", &self.tools.len())
            .finish()
    }
}

/// One handshake's outcome: what the server said and the session to talk to it.
pub(crate) struct Connection {
    /// What the server says it is.
    pub server_info: Option<ServerInfo>,
    /// The tools it offers.
    pub tools: Vec<ToolSpec>,
    /// The session.
    pub session: Arc<Session>,
}

/// A failed call, as text for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallFailure(pub String);

impl McpSkill {
    /// Connects to the server behind `socket`, retrying until `wait` has passed. The skill is
    /// supervised: when its session ends, something (the runtime's supervisor) connects again.
    pub(crate) async fn connect_unix(
        name: &str,
        socket: &Path,
        wait: Duration,
    ) -> Result<(McpSkill, ConnectTimings), SkillConnectError> {
        let (connection, timings) = Self::session_unix(name, socket, wait).await?;
        Ok((McpSkill::new(name, connection, true), timings))
    }

    /// A new session with the server behind `socket`, retrying to connect until `wait` has
    /// passed.
    pub(crate) async fn session_unix(
        name: &str,
        socket: &Path,
        wait: Duration,
    ) -> Result<(Connection, ConnectTimings), SkillConnectError> {
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(socket).await {
                Ok(stream) => break stream,
                Err(error) if started.elapsed() >= wait => {
                    return Err(SkillConnectError::NotListening {
                        skill: name.to_string(),
                        socket: socket.display().to_string(),
                        waited: wait,
                        source: error,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        };
        let connected = Instant::now();
        let (connection, mut timings) = McpSkill::open(name, stream).await?;
        timings.connect_ms = ms(connected - started);
        timings.total_ms = ms(started.elapsed());
        Ok((connection, timings))
    }

    /// Speaks MCP over an already-connected stream (one end of a duplex in tests). Nothing
    /// reconnects the skill.
    #[cfg(test)]
    pub(crate) async fn handshake<S>(
        name: &str,
        stream: S,
    ) -> Result<(McpSkill, ConnectTimings), SkillConnectError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (connection, timings) = McpSkill::open(name, stream).await?;
        Ok((McpSkill::new(name, connection, false), timings))
    }

    fn new(name: &str, connection: Connection, supervised: bool) -> McpSkill {
        McpSkill {
            name: name.to_string(),
            server_info: connection.server_info,
            tools: connection.tools,
            link: Link::new(connection.session, supervised),
        }
    }

    /// The MCP handshake and tool listing over `stream`.
    async fn open<S>(
        name: &str,
        stream: S,
    ) -> Result<(Connection, ConnectTimings), SkillConnectError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let started = Instant::now();
        let (read, write) = tokio::io::split(stream);
        let transport = rmcp::transport::async_rw::AsyncRwTransport::new_client(read, write)
            .with_max_line_length(super::MAX_MESSAGE_BYTES);
        let service = client_config()
            .serve(transport)
            .await
            .map_err(|e| handshake_error(name, e))?;
        McpSkill::discover(name, service, started).await
    }

    /// Connects to a remote skill at `endpoint`: streamable HTTP, else (on a 4xx answer to the
    /// first `POST`) the older HTTP+SSE transport. Gives up after `wait`.
    pub(crate) async fn connect_http(
        name: &str,
        endpoint: &str,
        http: &reqwest::Client,
        wait: Duration,
    ) -> Result<(McpSkill, ConnectTimings, RemoteTransport), SkillConnectError> {
        let url = Url::parse(endpoint).map_err(|e| SkillConnectError::BadEndpoint {
            skill: name.to_string(),
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
        let started = Instant::now();
        let (service, transport, handshake_started) =
            tokio::time::timeout(wait, connect_remote(name, &url, http))
                .await
                .map_err(|_| SkillConnectError::RemoteTimeout {
                    skill: name.to_string(),
                    endpoint: endpoint.to_string(),
                    waited: wait,
                })??;
        let (connection, mut timings) =
            McpSkill::discover(name, service, handshake_started).await?;
        // Connecting includes a refused streamable attempt before a legacy fallback.
        timings.connect_ms = ms(handshake_started - started);
        timings.total_ms = ms(started.elapsed());
        Ok((McpSkill::new(name, connection, false), timings, transport))
    }

    /// Reads what the server said about itself and lists its tools. `started` is when the
    /// handshake began.
    async fn discover(
        name: &str,
        service: RunningService<RoleClient, ClientConfig>,
        started: Instant,
    ) -> Result<(Connection, ConnectTimings), SkillConnectError> {
        let handshake_ms = ms(started.elapsed());
        let server_info = service.peer_info().and_then(|info| {
            serde_json::to_value(&*info).ok().and_then(|v| {
                Some(ServerInfo {
                    name: v["serverInfo"]["name"].as_str()?.to_string(),
                    version: v["serverInfo"]["version"].as_str()?.to_string(),
                })
            })
        });
        let discovery_started = Instant::now();
        let tools = service
            .list_all_tools()
            .await
            .map_err(|e| SkillConnectError::ListTools {
                skill: name.to_string(),
                message: e.to_string(),
            })?
            .into_iter()
            .map(|tool| ToolSpec {
                name: tool.name.to_string(),
                description: tool.description.map(|d| d.to_string()).unwrap_or_default(),
                input_schema: Value::Object((*tool.input_schema).clone()),
            })
            .collect();
        let timings = ConnectTimings {
            connect_ms: 0,
            handshake_ms,
            discovery_ms: ms(discovery_started.elapsed()),
            total_ms: ms(started.elapsed()),
        };
        Ok((
            Connection {
                server_info,
                tools,
                session: Session::start(service),
            },
            timings,
        ))
    }

    /// Calls a tool. `Ok` holds the MCP `CallToolResult` as JSON; `Err` is an MCP error (with
    /// a dead server's cause, from its skill host) or an unavailable skill, as text for the
    /// model. While the skill reconnects the call waits; one that lost its session before a
    /// server read it is sent again on the next session.
    pub(crate) async fn call(&self, tool: &str, args: &Value) -> Result<Value, CallFailure> {
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Value::Object(map) = args {
            params.arguments = Some(map.clone());
        }
        let unavailable = |why: String| {
            CallFailure(format!(
                "Error calling tool {tool}: skill `{}` is {why}",
                self.name
            ))
        };
        let mut resent = false;
        loop {
            let session = self.link.session().await.map_err(|why| {
                unavailable(match why {
                    Unavailable::Down(reason) => format!("down: {reason}"),
                    Unavailable::Closed => "unavailable (its connection is closed)".to_string(),
                    Unavailable::StillReconnecting => format!(
                        "unavailable (it did not reconnect within {}s)",
                        RECONNECT_WAIT.as_secs()
                    ),
                })
            })?;
            match session.peer.call_tool(params.clone()).await {
                Ok(result) => {
                    return serde_json::to_value(&result)
                        .map_err(|e| CallFailure(format!("Error calling tool {tool}: {e}")));
                }
                Err(rmcp::service::ServiceError::McpError(error)) => {
                    if self.link.is_supervised() && hangs_up(&error) {
                        session.retire();
                    }
                    return Err(CallFailure(format!(
                        "Error calling tool {tool}: {}",
                        error.message
                    )));
                }
                Err(
                    rmcp::service::ServiceError::TransportSend(_)
                    | rmcp::service::ServiceError::TransportClosed,
                ) if !resent && self.link.is_supervised() => {
                    resent = true;
                    session.retire();
                    self.link.replaced(&session).await;
                }
                Err(error) => return Err(unavailable(format!("unavailable ({error})"))),
            }
        }
    }
}

/// What we tell servers about ourselves.
fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("perstack-sandbox", env!("CARGO_PKG_VERSION")),
    )
}

type HttpService = RunningService<RoleClient, ClientConfig>;

/// The MCP handshake with a remote server, streamable HTTP first. Returns the service, the
/// transport it runs on, and when its (successful) handshake began.
async fn connect_remote(
    name: &str,
    url: &Url,
    http: &reqwest::Client,
) -> Result<(HttpService, RemoteTransport, Instant), SkillConnectError> {
    let remote_error = |message: String| SkillConnectError::Remote {
        skill: name.to_string(),
        endpoint: url.to_string(),
        message,
    };
    let started = Instant::now();
    let streamable = StreamableHttpClientTransport::with_client(
        http.clone(),
        StreamableHttpClientTransportConfig::with_uri(url.as_str()),
    );
    let refusal = match client_config().serve(streamable).await {
        Ok(service) => return Ok((service, RemoteTransport::StreamableHttp, started)),
        Err(error) => match refused_with_client_error(&error) {
            Some(status) => status,
            None => {
                return Err(remote_error(format!(
                    "streamable HTTP: {}",
                    describe_init_error(&error)
                )));
            }
        },
    };
    let legacy_started = Instant::now();
    let legacy = LegacySseTransport::connect(http, url).await.map_err(|e| {
        remote_error(format!(
            "streamable HTTP: the POST was refused with HTTP {refusal}; HTTP+SSE: {e}"
        ))
    })?;
    let service = client_config().serve(legacy).await.map_err(|e| {
        remote_error(format!(
            "streamable HTTP: the POST was refused with HTTP {refusal}; HTTP+SSE handshake: {}",
            describe_init_error(&e)
        ))
    })?;
    Ok((service, RemoteTransport::LegacySse, legacy_started))
}

/// A handshake failure in words: for a transport failure, the transport's error and its causes
/// (rmcp's own wording names internal types).
fn describe_init_error(error: &ClientInitializeError) -> String {
    let ClientInitializeError::TransportError { error, .. } = error else {
        return error.to_string();
    };
    let mut words = error.error.to_string();
    // rmcp's `Client(reqwest::Error)` does not expose the reqwest error as its source.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = match error
        .error
        .downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        Some(StreamableHttpError::Client(inner)) => inner.source(),
        _ => error.error.source(),
    };
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !words.contains(&text) {
            words.push_str(": ");
            words.push_str(&text);
        }
        cause = inner.source();
    }
    words
}

/// The 4xx status with which a server refused our streamable-HTTP `initialize` POST, if that is
/// why the handshake failed: the sign of a server that only speaks the older HTTP+SSE transport.
fn refused_with_client_error(error: &ClientInitializeError) -> Option<u16> {
    let ClientInitializeError::TransportError { error, .. } = error else {
        return None;
    };
    let status = match error
        .error
        .downcast_ref::<StreamableHttpError<reqwest::Error>>()?
    {
        // rmcp words a non-JSON-RPC error answer as "HTTP <code> <reason>: <body>".
        StreamableHttpError::UnexpectedServerResponse(message) => message
            .strip_prefix("HTTP ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok()),
        StreamableHttpError::Client(error) => error.status().map(|s| s.as_u16()),
        _ => None,
    }?;
    // 401 and 403 are about credentials, not the transport.
    ((400..500).contains(&status) && status != 401 && status != 403).then_some(status)
}

impl McpSkill {
    /// Ends the connection (a server that outlives it sees its transport close).
    pub(crate) fn close(&self) {
        self.link.close();
    }

    /// The link its calls go through, for whoever supervises it.
    pub(crate) fn link(&self) -> Arc<Link> {
        self.link.clone()
    }

    /// Resolves once the skill is finished: its connection closed by us, or the server went
    /// away and no new connection will follow.
    pub(crate) fn ended(&self) -> impl Future<Output = ()> + Send + 'static {
        self.link.ended()
    }
}

impl Drop for McpSkill {
    fn drop(&mut self) {
        self.close();
    }
}

/// The skill host answered for a server that is gone ([`SERVER_EXITED`], [`SKILL_DOWN`]): it
/// hangs up after answering, so the session is over.
fn hangs_up(error: &rmcp::model::ErrorData) -> bool {
    error.code.0 == SERVER_EXITED || error.code.0 == SKILL_DOWN
}

/// A failed handshake; the skill host's answer for a server that is not there is its own
/// error, with the host's reason.
fn handshake_error(name: &str, error: ClientInitializeError) -> SkillConnectError {
    if let ClientInitializeError::JsonRpcError(data) = &error
        && hangs_up(data)
    {
        return SkillConnectError::Refused {
            skill: name.to_string(),
            message: data.message.to_string(),
            down: data.code.0 == SKILL_DOWN,
        };
    }
    SkillConnectError::Handshake {
        skill: name.to_string(),
        message: error.to_string(),
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill::fixture::{DEFAULT_FAIL_MESSAGE, FixtureServer, SERVER_NAME};
    use crate::skill::http_fixture::{Mode, serve};
    use serde_json::json;

    const WAIT: Duration = Duration::from_secs(20);

    fn http() -> reqwest::Client {
        crate::llm::http_client(&crate::llm::HttpSettings::default()).expect("http client")
    }

    /// Lists, echoes and fails through a connected remote skill, as the agent would.
    async fn exercise(skill: &McpSkill) {
        assert_eq!(
            skill.server_info.as_ref().map(|i| i.name.as_str()),
            Some(SERVER_NAME)
        );
        let names: Vec<&str> = skill.tools.iter().map(|t| t.name.as_str()).collect();
        assert!(
            names.contains(&"echo") && names.contains(&"fail"),
            "{names:?}"
        );
        let echoed = skill
            .call("echo", &json!({"text": "over http"}))
            .await
            .expect("echo");
        assert_eq!(echoed["content"][0]["text"], "over http");
        let failed = skill.call("fail", &json!({})).await.expect_err("fail");
        assert_eq!(
            failed.0,
            format!("Error calling tool fail: {DEFAULT_FAIL_MESSAGE}")
        );
    }

    #[tokio::test]
    async fn a_remote_skill_is_reached_over_streamable_http() {
        let server = serve(FixtureServer, Mode::StreamableHttp).await;
        let (skill, timings, transport) =
            McpSkill::connect_http("remote", &server.url, &http(), WAIT)
                .await
                .expect("connects");
        assert_eq!(transport, RemoteTransport::StreamableHttp);
        assert!(timings.total_ms >= timings.handshake_ms);
        exercise(&skill).await;
        let requests = server.requests();
        assert_eq!(requests[0], "POST /mcp", "{requests:?}");
        assert!(
            !requests.iter().any(|r| r.contains("/messages")),
            "{requests:?}"
        );
    }

    #[tokio::test]
    async fn streamable_http_responses_may_come_as_event_streams() {
        let server = serve(FixtureServer, Mode::StreamableHttpEvents).await;
        let (skill, _, transport) = McpSkill::connect_http("remote", &server.url, &http(), WAIT)
            .await
            .expect("connects");
        assert_eq!(transport, RemoteTransport::StreamableHttp);
        exercise(&skill).await;
    }

    #[tokio::test]
    async fn a_server_that_refuses_streamable_http_is_reached_over_legacy_sse() {
        let server = serve(FixtureServer, Mode::LegacySse).await;
        let (skill, _, transport) = McpSkill::connect_http("remote", &server.url, &http(), WAIT)
            .await
            .expect("falls back");
        assert_eq!(transport, RemoteTransport::LegacySse);
        exercise(&skill).await;
        let requests = server.requests();
        // The refused streamable POST, then the event stream, then messages to its endpoint.
        assert_eq!(requests[..2], ["POST /mcp", "GET /mcp"], "{requests:?}");
        assert!(
            requests[2..]
                .iter()
                .all(|r| r == "POST /messages?sessionId=1"),
            "{requests:?}"
        );
    }

    #[tokio::test]
    async fn a_server_speaking_neither_transport_fails_with_both_reasons() {
        let server = serve(FixtureServer, Mode::StreamableHttp).await;
        let elsewhere = server.url.replace("/mcp", "/nothing-here");
        let error = McpSkill::connect_http("remote", &elsewhere, &http(), WAIT)
            .await
            .expect_err("nothing speaks MCP there");
        let message = error.to_string();
        assert!(
            matches!(error, SkillConnectError::Remote { .. }),
            "{message}"
        );
        assert!(message.contains("refused with HTTP 404"), "{message}");
        assert!(message.contains("HTTP+SSE: GET"), "{message}");
        assert!(message.contains("answered HTTP 404"), "{message}");
    }

    #[tokio::test]
    async fn a_server_error_is_not_mistaken_for_an_old_server() {
        // Nothing listens here: a connection failure, not a 4xx, so no fallback is tried.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let error = McpSkill::connect_http(
            "remote",
            &format!("http://127.0.0.1:{port}/mcp"),
            &http(),
            WAIT,
        )
        .await
        .expect_err("nobody listens");
        let message = error.to_string();
        assert!(message.contains("streamable HTTP: "), "{message}");
        assert!(message.contains("Connection refused"), "{message}");
        assert!(!message.contains("refused with HTTP"), "{message}");
    }
}
