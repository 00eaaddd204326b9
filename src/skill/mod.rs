//! MCP skills: the runtime's client side, the skill host that runs in each skill container, and
//! the servers we ship (base-skill, the test fixture).

pub mod client;
pub mod host;
pub mod result;
