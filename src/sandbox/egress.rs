//! Who in a run may reach what outside it (issue 5): the principals of the egress proxy and
//! their allowlists. Pure data, like the rest of the plan.
//!
//! - The runtime reaches its provider (the vendor's API host, or exactly the base URL the user
//!   configured, which may be plain HTTP or on the host — Ollama), the endpoints of the
//!   closure's `mcpSseSkill`s, and those skills' `allowedDomains`.
//! - A stdio skill with `allowedDomains` reaches exactly those.
//! - Everything else — other skills, base-skill — has no network at all, and when no principal
//!   is left no proxy starts.

use url::Url;

use crate::config::{Config, ProviderName, ProviderSetting, Skill};
use crate::llm::providers::Endpoint;
use crate::proxy::TrustedEndpoint;
use crate::proxy::rules::DomainRule;

/// The principal name of the runtime.
pub(crate) const RUNTIME: &str = "runtime";

/// One client of the proxy, before its network exists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct PrincipalPlan {
    /// `runtime`, or the skill's service name.
    pub name: String,
    /// Its internal network, shared only with the proxy.
    pub network: String,
    /// Domains it may reach over `CONNECT`.
    pub allow: Vec<DomainRule>,
    /// Endpoints the user configured explicitly (the provider's base URL).
    pub trusted: Vec<TrustedEndpoint>,
}

/// What the runtime needs to reach its provider: the vendor's host when no base URL is
/// configured, else exactly the configured endpoint (trusted: it may be on the host or the LAN,
/// and plain HTTP when its URL says so). `setting` applies only when it is the file's provider.
pub(crate) fn provider_egress(
    provider: ProviderName,
    setting: Option<&ProviderSetting>,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Vec<DomainRule>, Vec<TrustedEndpoint>) {
    let info = provider.info();
    let no_setting = ProviderSetting::default();
    let setting = setting.unwrap_or(&no_setting);
    let explicit = info.configured_base_url(setting, env);
    if let Some(url) = explicit.as_deref().and_then(|u| Url::parse(u).ok())
        && let Some(host) = url.host_str()
    {
        let endpoint = TrustedEndpoint {
            host: host.to_string(),
            port: url.port_or_known_default().unwrap_or(443),
            plain_http: url.scheme() == "http",
        };
        return (vec![], vec![endpoint]);
    }
    let domains: Vec<String> = match info.endpoint {
        Endpoint::Vendor { host, .. } => vec![host.to_string()],
        Endpoint::PerResource { domain, .. } => vec![match info.resource(setting, env) {
            Some(resource) => format!("{resource}.{domain}"),
            None => format!("*.{domain}"),
        }],
        // Ollama's default is the runtime's own localhost: nothing to let out.
        Endpoint::Local { .. } | Endpoint::None => vec![],
    };
    (
        domains
            .iter()
            .filter_map(|d| DomainRule::parse(d).ok())
            .collect(),
        vec![],
    )
}

/// The runtime's allowlist beyond its provider: every `mcpSseSkill` endpoint in the closure
/// (`host:port`) and those skills' `allowedDomains`.
pub(crate) fn remote_skill_rules(config: &Config, closure: &[String]) -> Vec<DomainRule> {
    let mut rules = Vec::new();
    for skill in closure
        .iter()
        .filter_map(|k| config.experts.get(k))
        .flat_map(|e| e.skills.values())
    {
        let Skill::McpSse(sse) = skill else {
            continue;
        };
        if let Ok(url) = Url::parse(&sse.endpoint)
            && let Some(host) = url.host_str()
        {
            let port = url.port_or_known_default().unwrap_or(443);
            if let Ok(rule) = DomainRule::parse(&format!("{host}:{port}")) {
                rules.push(rule);
            }
        }
        rules.extend(
            sse.allowed_domains
                .iter()
                .filter_map(|d| DomainRule::parse(d).ok()),
        );
    }
    dedup(rules)
}

/// Rules for a stdio skill's `allowedDomains`.
pub(crate) fn skill_rules(allowed_domains: &[String]) -> Vec<DomainRule> {
    dedup(
        allowed_domains
            .iter()
            .filter_map(|d| DomainRule::parse(d).ok())
            .collect(),
    )
}

fn dedup(rules: Vec<DomainRule>) -> Vec<DomainRule> {
    let mut out: Vec<DomainRule> = Vec::new();
    for rule in rules {
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    out
}

/// The environment that sends a principal's traffic through the proxy.
///
/// Node's `fetch` (and, in newer versions, `http`/`https`) ignores `HTTPS_PROXY` unless told;
/// Perstack misses this, so its allowlisted Node skills cannot actually reach their domains. We
/// tell it with `NODE_USE_ENV_PROXY=1` (understood since Node 24.0 and 22.21), not
/// `NODE_OPTIONS=--use-env-proxy`: that flag only exists since 24.5 and 22.21, and a Node that
/// does not know a flag in `NODE_OPTIONS` refuses to start at all ("is not allowed in
/// NODE_OPTIONS", exit 9 — measured with Debian bookworm's Node 18), while an unknown variable is
/// ignored. On an older Node the server starts, and only libraries that read the proxy variables
/// themselves use the proxy.
pub(crate) fn proxy_env(node: bool) -> Vec<(String, String)> {
    let url = format!("http://{}:{}", PROXY_ALIAS, crate::proxy::PROXY_PORT);
    let mut env = vec![
        ("HTTPS_PROXY".to_string(), url.clone()),
        ("HTTP_PROXY".to_string(), url.clone()),
        ("https_proxy".to_string(), url.clone()),
        ("http_proxy".to_string(), url),
        ("NO_PROXY".to_string(), "localhost,127.0.0.1".to_string()),
        ("no_proxy".to_string(), "localhost,127.0.0.1".to_string()),
    ];
    if node {
        env.push((NODE_USE_ENV_PROXY.to_string(), "1".to_string()));
    }
    env
}

/// The variable that makes Node's own HTTP clients use `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.
pub(crate) const NODE_USE_ENV_PROXY: &str = "NODE_USE_ENV_PROXY";

/// The proxy's name on every internal network.
pub(crate) const PROXY_ALIAS: &str = "egress-proxy";

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn names(rules: &[DomainRule]) -> Vec<String> {
        rules.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_provider_without_a_base_url_reaches_its_vendor_host_only() {
        let (rules, trusted) = provider_egress(ProviderName::Anthropic, None, &no_env);
        assert_eq!(names(&rules), ["api.anthropic.com"]);
        assert!(trusted.is_empty());
        let (rules, _) = provider_egress(ProviderName::AzureOpenai, None, &no_env);
        assert_eq!(names(&rules), ["*.openai.azure.com"]);
        let setting = ProviderSetting {
            resource_name: Some("acme".into()),
            ..Default::default()
        };
        let (rules, _) = provider_egress(ProviderName::AzureOpenai, Some(&setting), &no_env);
        assert_eq!(names(&rules), ["acme.openai.azure.com"]);
        let (rules, trusted) = provider_egress(ProviderName::Mock, None, &no_env);
        assert!(rules.is_empty() && trusted.is_empty());
    }

    #[test]
    fn a_configured_base_url_is_trusted_exactly_and_plain_http_only_when_it_says_so() {
        let ollama = |name: &str| {
            (name == "OLLAMA_BASE_URL").then(|| "http://host.docker.internal:11434/api".to_string())
        };
        let (rules, trusted) = provider_egress(ProviderName::Ollama, None, &ollama);
        assert!(rules.is_empty());
        assert_eq!(
            trusted,
            [TrustedEndpoint {
                host: "host.docker.internal".into(),
                port: 11434,
                plain_http: true
            }]
        );
        let setting = ProviderSetting {
            base_url: Some("https://gateway.example.com/anthropic".into()),
            ..Default::default()
        };
        let (_, trusted) = provider_egress(ProviderName::Anthropic, Some(&setting), &no_env);
        assert_eq!(
            trusted,
            [TrustedEndpoint {
                host: "gateway.example.com".into(),
                port: 443,
                plain_http: false
            }]
        );
    }

    #[test]
    fn remote_skills_add_their_endpoints_and_domains() {
        let text = "[experts.a]\ninstruction = \"x\"\ndelegates = [\"b\"]\n\
                    [experts.b]\ninstruction = \"x\"\n\
                    [experts.b.skills.web]\ntype = \"mcpSseSkill\"\n\
                    endpoint = \"https://mcp.example.com:8443/mcp\"\n\
                    allowedDomains = [\"api.example.com\", \"*.cdn.example.com\"]\n";
        let loaded =
            crate::config::load_str(std::path::Path::new("perstack.toml"), text).expect("valid");
        let rules = remote_skill_rules(&loaded.config, &["a".into(), "b".into()]);
        assert_eq!(
            names(&rules),
            [
                "mcp.example.com:8443",
                "api.example.com",
                "*.cdn.example.com"
            ]
        );
        assert!(remote_skill_rules(&loaded.config, &["a".into()]).is_empty());
    }

    #[test]
    fn node_skills_are_told_to_use_the_proxy_in_a_way_every_node_starts_with() {
        let env = proxy_env(true);
        assert!(env.contains(&(
            "HTTPS_PROXY".to_string(),
            "http://egress-proxy:3128".to_string()
        )));
        assert!(env.contains(&("NODE_USE_ENV_PROXY".to_string(), "1".to_string())));
        // A flag in NODE_OPTIONS that Node does not know stops it before any code runs (Node 18:
        // "--use-env-proxy is not allowed in NODE_OPTIONS", exit 9); a variable it does not know
        // is ignored.
        assert!(!env.iter().any(|(k, _)| k == "NODE_OPTIONS"));
        assert!(!proxy_env(false).iter().any(|(k, _)| k.starts_with("NODE_")));
    }
}
