//! The way out of a standalone container: the egress proxy runs as one more principal, on
//! loopback port [`PROXY_PORT`], and — since every principal's connection now comes from the
//! same address — knows each by a token of its own (`proxy::token`, shared with the Kubernetes
//! backend): a random token per principal, only its digest in the proxy's configuration, the
//! token only in that principal's `HTTPS_PROXY`. A token presented under another principal's
//! name, or no token, gets `407`.

use std::collections::BTreeMap;

use crate::proxy::rules::Allowlist;
use crate::proxy::{Identity, PROXY_PORT, Principal, ProxyConfig, token};
use crate::sandbox::plan::ProxyPlan;

/// Where the principals reach the proxy.
pub(crate) const PROXY_HOST: &str = "127.0.0.1";

/// The variables whose value is the proxy's URL (`sandbox::egress::proxy_env`).
pub(crate) const PROXY_URL_VARIABLES: [&str; 4] =
    ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"];

/// Each principal's proxy URL, token included, and the proxy's configuration, which holds only
/// the tokens' digests.
pub(crate) struct Tokens {
    /// By the principal's name (the plan's service name: `runtime`, `skill:web`).
    pub urls: BTreeMap<String, String>,
    /// The proxy's configuration (JSON) for its `PERSTACK_PROXY_CONFIG`.
    pub config: String,
}

/// Issues a fresh token to every principal of the proxy.
pub(crate) fn issue(proxy: &ProxyPlan) -> Result<Tokens, String> {
    let mut urls = BTreeMap::new();
    let mut principals = Vec::new();
    for principal in &proxy.principals {
        let issued =
            token::issue(&principal.name, PROXY_HOST, PROXY_PORT).map_err(|e| e.to_string())?;
        urls.insert(principal.name.clone(), issued.url.expose().to_string());
        principals.push(Principal {
            name: principal.name.clone(),
            identity: Identity::Token(issued.digest),
            allow: Allowlist {
                rules: principal.allow.clone(),
            },
            trusted: principal.trusted.clone(),
        });
    }
    let config = serde_json::to_string(&ProxyConfig { principals })
        .map_err(|e| format!("cannot write the proxy's configuration: {e}"))?;
    Ok(Tokens { urls, config })
}

/// `env` with the proxy URL variables pointing at `url` (the principal's own, with its token).
pub(crate) fn with_proxy_url(env: &mut BTreeMap<String, String>, url: &str) {
    for name in PROXY_URL_VARIABLES {
        env.insert(name.to_string(), url.to_string());
    }
}
