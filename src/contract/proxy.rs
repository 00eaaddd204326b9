//! How the controller hands the egress proxy its configuration.

/// The variable that carries the egress proxy's configuration (JSON of `proxy::ProxyConfig`)
/// into its container.
pub const PROXY_CONFIG_VAR: &str = "PERSTACK_PROXY_CONFIG";
