//! MCP skills: the servers we ship (base-skill, the test fixture) and, later, the client side.
//!
//! - [`base`]: `@perstack/base`, the workspace tools, served in the base-skill container.
//! - [`fixture`]: a small server for isolation tests.
//! - [`server`]: what both share (tools as data, stdio serving).

pub mod base;
pub mod fixture;
pub mod server;
