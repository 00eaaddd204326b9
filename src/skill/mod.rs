//! MCP skills.
//!
//! - [`client`]: the runtime's side, an rmcp client over a skill's unix socket.
//! - [`result`]: MCP tool results turned into the parts the model sees.
//! - [`host`]: the skill host, PID 1 of every skill container (socket ↔ stdio relay).
//! - [`base`]: `@perstack/base`, the workspace tools, served in the base-skill container.
//! - [`fixture`]: a small server for isolation tests.
//! - [`server`]: what our servers share (tools as data, stdio serving).

pub mod base;
pub mod client;
pub mod fixture;
pub mod host;
#[cfg(test)]
pub mod http_fixture;
pub mod lazy;
pub mod legacy_sse;
pub mod result;
pub mod server;
