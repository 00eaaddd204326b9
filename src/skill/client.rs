//! The runtime's side of a skill: an rmcp client over the skill's unix socket.
//!
//! The socket lives in a volume shared by the runtime container and that one skill container
//! (DESIGN.md, "Per-run topology"); the skill host inside the skill container relays it to the
//! server's stdio. The skill container may still be starting when the runtime comes up, so
//! connecting retries until a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::event::ServerInfo;
use crate::llm::ToolSpec;

/// Why a skill could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum SkillConnectError {
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
pub struct ConnectTimings {
    /// Waiting for the socket to accept.
    pub connect_ms: u64,
    /// MCP `initialize`.
    pub handshake_ms: u64,
    /// `tools/list`.
    pub discovery_ms: u64,
    /// All of it.
    pub total_ms: u64,
}

/// A connected MCP skill.
pub struct McpSkill {
    /// The skill's name in `perstack.toml`.
    pub name: String,
    /// What the server says it is.
    pub server_info: Option<ServerInfo>,
    /// The tools it offers (before `pick`/`omit`).
    pub tools: Vec<ToolSpec>,
    service: RunningService<RoleClient, ClientConfig>,
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

/// A failed call, as text for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure(pub String);

impl McpSkill {
    /// Connects to the server behind `socket`, retrying until `wait` has passed.
    pub async fn connect_unix(
        name: &str,
        socket: &Path,
        wait: Duration,
    ) -> Result<(McpSkill, ConnectTimings), SkillConnectError> {
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
        let (skill, mut timings) = McpSkill::handshake(name, stream).await?;
        timings.connect_ms = ms(connected - started);
        timings.total_ms = ms(started.elapsed());
        Ok((skill, timings))
    }

    /// Speaks MCP over an already-connected stream (a socket, or one end of a duplex in tests).
    pub async fn handshake<S>(
        name: &str,
        stream: S,
    ) -> Result<(McpSkill, ConnectTimings), SkillConnectError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let started = Instant::now();
        let client = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("perstack-sandbox", env!("CARGO_PKG_VERSION")),
        );
        let (read, write) = tokio::io::split(stream);
        let transport = rmcp::transport::async_rw::AsyncRwTransport::new_client(read, write)
            .with_max_line_length(super::MAX_MESSAGE_BYTES);
        let service = client
            .serve(transport)
            .await
            .map_err(|e| SkillConnectError::Handshake {
                skill: name.to_string(),
                message: e.to_string(),
            })?;
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
            McpSkill {
                name: name.to_string(),
                server_info,
                tools,
                service,
            },
            timings,
        ))
    }

    /// Calls a tool. `Ok` holds the MCP `CallToolResult` as JSON; `Err` is an MCP error or a
    /// broken connection (a crashed server), as text for the model.
    pub async fn call(&self, tool: &str, args: &Value) -> Result<Value, CallFailure> {
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Value::Object(map) = args {
            params.arguments = Some(map.clone());
        }
        match self.service.call_tool(params).await {
            Ok(result) => serde_json::to_value(&result)
                .map_err(|e| CallFailure(format!("Error calling tool {tool}: {e}"))),
            Err(rmcp::service::ServiceError::McpError(error)) => Err(CallFailure(format!(
                "Error calling tool {tool}: {}",
                error.message
            ))),
            Err(error) => Err(CallFailure(format!(
                "Error calling tool {tool}: skill `{}` is unavailable ({error})",
                self.name
            ))),
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}
