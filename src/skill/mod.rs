//! MCP skills.
//!
//! - [`client`]: the runtime's side, an rmcp client over a skill's unix socket.
//! - [`link`]: the session a skill's calls go through, made again when its server restarts.
//! - [`result`]: MCP tool results turned into the parts the model sees.
//! - [`host`]: the skill host, PID 1 of every skill container (socket ↔ stdio relay).
//! - [`base`]: `@perstack/base`, the workspace tools, served in the base-skill container.
//! - [`fixture`]: a small server for isolation tests.
//! - [`server`]: what our servers share (tools as data, stdio serving).

pub(crate) mod base;
pub(crate) mod client;

/// The largest JSON-RPC message (one line) our MCP clients accept from a skill. rmcp's default,
/// 16 MiB, is too small for what the base skill returns at its limits: a 30 MiB PDF is 40 MiB of
/// base64. The runtime relays events up to 64 MiB a line (`sandbox/relay.rs`).
pub(crate) const MAX_MESSAGE_BYTES: usize = 48 * 1024 * 1024;
pub(crate) mod fixture;
pub(crate) mod host;
#[cfg(test)]
pub(crate) mod http_fixture;
pub(crate) mod lazy;
pub(crate) mod legacy_sse;
pub(crate) mod link;
pub(crate) mod probe;
pub(crate) mod result;
pub(crate) mod server;
