//! MCP skills: the servers we ship (base-skill, the test fixture) and, later, the client side.
