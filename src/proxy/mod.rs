//! The `egress-proxy` role: the one way out of a run's internal networks.
//!
//! It carries HTTP `CONNECT` tunnels to allowlisted `host:port`s, and forwards plain HTTP only
//! to a provider endpoint the user configured explicitly (Ollama on `http://host:11434`).
//! Each principal (the runtime, each skill with `allowedDomains`) is identified in one of two
//! ways, which the configuration says per principal ([`Identity`]):
//! - **by network**: it has an internal network of its own, shared only with the proxy, so the
//!   proxy's own address on that network says who is asking — nothing the client sends can claim
//!   another identity;
//! - **by token**, where principals share a network (a Kubernetes pod, a standalone image, Docker
//!   containers joined to one "pause" network namespace): its proxy URL carries its name and a
//!   token of its own, which clients send as `Proxy-Authorization`. The proxy knows only the
//!   token's SHA-256 (given as `tokenSha256`, or as `tokenEnv`: a variable holding the token,
//!   hashed when the configuration is read, as a Kubernetes Secret delivers it), compares in constant time ([`token`]), answers anything else with `407`
//!   (`auth.rs`), and never forwards the header.
//!
//! Names are resolved by the proxy itself, every address is checked ([`address`]) and the
//! connection goes to an address that was checked, so DNS rebinding gets nowhere. The one
//! exception to the address check is a provider endpoint configured explicitly, which may well
//! live on the host or the LAN.
//!
//! Every decision is written to stdout as one JSON line (an [`Access`]); the controller turns
//! them into `proxyAccess` events.

pub(crate) mod address;
mod auth;
pub(crate) mod rules;
mod server;
pub mod token;

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

pub(crate) use server::{serve, system_resolver};

use rules::Allowlist;

/// The port the proxy listens on.
pub const PROXY_PORT: u16 = 3128;

/// What the controller tells the proxy (JSON, passed in the variable
/// `contract::proxy::PROXY_CONFIG_VAR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Who may use the proxy, each by the network it comes from or by its token.
    pub principals: Vec<Principal>,
}

/// One client of the proxy and what it may reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PrincipalWire", into = "PrincipalWire")]
pub struct Principal {
    /// `runtime`, or the skill's name: reported in every access record, and the user part of
    /// the proxy URL of a principal identified by token.
    pub name: String,
    /// How the proxy knows a connection is this principal's.
    pub identity: Identity,
    /// The domains it may reach over `CONNECT`.
    pub allow: Allowlist,
    /// Provider endpoints configured explicitly: reachable whatever they resolve to, and — when
    /// `plainHttp` — over plain HTTP.
    pub trusted: Vec<TrustedEndpoint>,
}

/// How the proxy tells a principal's connections from everyone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// By network (`subnet` in the configuration): the principal has an internal network of its
    /// own (CIDR, e.g. `172.30.4.0/24`), shared only with the proxy, and a connection whose local
    /// address — the proxy's own address on that network — lies in it is this principal's,
    /// whatever it sends.
    Network(Subnet),
    /// By token (`tokenSha256`): for principals that share a network (a Kubernetes pod, a
    /// standalone image, containers joined to one network namespace). A connection is this
    /// principal's when its `Proxy-Authorization` names it with the token whose SHA-256 this is
    /// ([`token`]).
    Token(token::TokenDigest),
}

/// A [`Principal`] as JSON: exactly one of `subnet` and `tokenSha256`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrincipalWire {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet: Option<Subnet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_sha256: Option<token::TokenDigest>,
    #[serde(default)]
    allow: Allowlist,
    #[serde(default)]
    trusted: Vec<TrustedEndpoint>,
}

impl TryFrom<PrincipalWire> for Principal {
    type Error = String;
    fn try_from(wire: PrincipalWire) -> Result<Principal, String> {
        let identity = match (wire.subnet, wire.token_sha256) {
            (Some(subnet), None) => Identity::Network(subnet),
            (None, Some(digest)) => Identity::Token(digest),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "principal `{}` has both `subnet` and `tokenSha256`; it is identified by one",
                    wire.name
                ));
            }
            (None, None) => {
                return Err(format!(
                    "principal `{}` needs `subnet` (identified by network), or `tokenSha256` \
                     or `tokenEnv` (identified by token)",
                    wire.name
                ));
            }
        };
        Ok(Principal {
            name: wire.name,
            identity,
            allow: wire.allow,
            trusted: wire.trusted,
        })
    }
}

impl From<Principal> for PrincipalWire {
    fn from(principal: Principal) -> PrincipalWire {
        let (subnet, token_sha256) = match principal.identity {
            Identity::Network(subnet) => (Some(subnet), None),
            Identity::Token(digest) => (None, Some(digest)),
        };
        PrincipalWire {
            name: principal.name,
            subnet,
            token_sha256,
            allow: principal.allow,
            trusted: principal.trusted,
        }
    }
}

/// A provider endpoint the user configured explicitly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedEndpoint {
    /// Host name or IP literal, as in the configured URL.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The URL is `http://`: forward plain HTTP requests to it.
    #[serde(default)]
    pub plain_http: bool,
}

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Subnet {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(text: String) -> Result<Subnet, String> {
        let bad = || format!("`{text}` is not a CIDR network (e.g. 172.30.4.0/24)");
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Subnet { addr, prefix })
    }
}

impl From<Subnet> for String {
    fn from(subnet: Subnet) -> String {
        format!("{}/{}", subnet.addr, subnet.prefix)
    }
}

impl ProxyConfig {
    /// Reads the configuration the controller wrote, and checks what serde cannot: every
    /// principal's name is its own (a token names its principal, and access records say who).
    pub fn parse(text: &str) -> Result<ProxyConfig, String> {
        ProxyConfig::parse_with(text, |name| std::env::var(name).ok())
    }

    /// [`ProxyConfig::parse`], with a principal's `tokenEnv` (the name of a variable holding its
    /// token, as a Kubernetes `secretKeyRef` sets it) read through `env` and replaced by the
    /// token's digest at once: the configuration keeps only digests, whichever way they came.
    pub(crate) fn parse_with(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ProxyConfig, String> {
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(principals) = value
            .get_mut("principals")
            .and_then(serde_json::Value::as_array_mut)
        {
            for principal in principals.iter_mut().filter_map(|p| p.as_object_mut()) {
                resolve_token_env(principal, &env)?;
            }
        }
        let config: ProxyConfig = serde_json::from_value(value).map_err(|e| e.to_string())?;
        for (i, principal) in config.principals.iter().enumerate() {
            if config.principals[..i]
                .iter()
                .any(|p| p.name == principal.name)
            {
                return Err(format!("principal `{}` is listed twice", principal.name));
            }
        }
        Ok(config)
    }

    /// The principal identified by network whose network `local` (the proxy's address the
    /// connection arrived at) belongs to.
    pub fn principal_at(&self, local: SocketAddr) -> Option<&Principal> {
        let ip = match local.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.principals
            .iter()
            .find(|p| matches!(p.identity, Identity::Network(subnet) if subnet.contains(ip)))
    }

    /// Whether any principal is identified by token.
    pub fn has_token_principals(&self) -> bool {
        self.principals
            .iter()
            .any(|p| matches!(p.identity, Identity::Token(_)))
    }
}

/// Replaces a principal's `tokenEnv` by the `tokenSha256` of that variable's value.
fn resolve_token_env(
    principal: &mut serde_json::Map<String, serde_json::Value>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let Some(variable) = principal.remove("tokenEnv") else {
        return Ok(());
    };
    let name = principal
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("?")
        .to_string();
    let Some(variable) = variable.as_str() else {
        return Err(format!(
            "principal `{name}`: `tokenEnv` must be a variable's name"
        ));
    };
    if principal.contains_key("tokenSha256") {
        return Err(format!(
            "principal `{name}` has both `tokenEnv` and `tokenSha256`; it is identified by one"
        ));
    }
    let token = env(variable)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            format!(
                "principal `{name}`: its token variable {variable} is not set or empty (its \
             secretKeyRef names a missing Secret key?)"
            )
        })?;
    let digest =
        serde_json::to_value(token::TokenDigest::of(token.trim())).map_err(|e| e.to_string())?;
    principal.insert("tokenSha256".to_string(), digest);
    Ok(())
}

/// One decision of the proxy: a line of its stdout, a `proxyAccess` event for the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Access {
    /// `allowed` or `blocked`.
    pub action: crate::event::ProxyAction,
    /// The host asked for, as asked.
    pub domain: String,
    /// The port asked for.
    pub port: u16,
    /// Why (always given when blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked: `runtime` or a skill's name (`unknown` for a connection from no known network).
    pub client: String,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No or a bad configuration.
    #[error("bad egress proxy configuration in {var}: {0}", var = crate::contract::proxy::PROXY_CONFIG_VAR)]
    Config(String),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the role: listens on every interface on [`PROXY_PORT`] and serves until killed.
/// Access records go to stdout, one JSON line each.
pub(crate) async fn run(config_json: Option<String>) -> Result<(), ProxyError> {
    let text = config_json.ok_or_else(|| ProxyError::Config("not set".into()))?;
    let config = ProxyConfig::parse(&text).map_err(ProxyError::Config)?;
    let addr = SocketAddr::from(([0, 0, 0, 0], PROXY_PORT));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Listen { addr, source })?;
    let (log, mut records) = tokio::sync::mpsc::unbounded_channel::<Access>();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut stdout = tokio::io::stdout();
        while let Some(record) = records.recv().await {
            let Ok(mut line) = serde_json::to_string(&record) else {
                continue;
            };
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    serve(
        listener,
        std::sync::Arc::new(config),
        log,
        system_resolver(),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_found_by_the_network_a_connection_arrived_on() {
        let config: ProxyConfig = serde_json::from_value(serde_json::json!({
            "principals": [
                {"name": "runtime", "subnet": "172.30.1.0/24", "allow": {"rules": ["api.anthropic.com"]}},
                {"name": "web", "subnet": "172.30.2.0/24", "allow": {"rules": ["*.exa.ai"]}}
            ]
        }))
        .expect("config");
        let at = |ip: &str| {
            config
                .principal_at(SocketAddr::new(ip.parse().expect("ip"), PROXY_PORT))
                .map(|p| p.name.as_str())
        };
        assert_eq!(at("172.30.1.2"), Some("runtime"));
        assert_eq!(at("172.30.2.254"), Some("web"));
        assert_eq!(at("::ffff:172.30.2.3"), Some("web"));
        assert_eq!(at("172.30.3.2"), None);
        assert_eq!(at("10.0.0.1"), None);
    }

    #[test]
    fn the_configuration_carries_a_tokens_digest_never_the_token() {
        let issued = token::issue("skill:web", "egress-proxy", PROXY_PORT).expect("issue");
        let secret = token::tests::token_of(&issued);
        let config = ProxyConfig {
            principals: vec![
                Principal {
                    name: "runtime".into(),
                    identity: Identity::Network(
                        Subnet::try_from("172.30.1.0/24".to_string()).expect("subnet"),
                    ),
                    allow: Allowlist::default(),
                    trusted: vec![],
                },
                Principal {
                    name: "skill:web".into(),
                    identity: Identity::Token(issued.digest),
                    allow: Allowlist::default(),
                    trusted: vec![],
                },
            ],
        };
        let json = serde_json::to_string(&config).expect("json");
        assert!(!json.contains(&secret), "{json}");
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes()));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).expect("json"),
            serde_json::json!({"principals": [
                {"name": "runtime", "subnet": "172.30.1.0/24", "allow": {"rules": []}, "trusted": []},
                {"name": "skill:web", "tokenSha256": digest, "allow": {"rules": []}, "trusted": []}
            ]})
        );
        assert_eq!(ProxyConfig::parse(&json).expect("parse"), config);
    }

    #[test]
    fn a_principal_is_identified_one_way_and_named_once() {
        let digest = "0".repeat(64);
        for (principals, why) in [
            (
                serde_json::json!([{"name": "a", "subnet": "10.0.0.0/24", "tokenSha256": digest}]),
                "has both `subnet` and `tokenSha256`",
            ),
            (serde_json::json!([{"name": "a"}]), "needs `subnet`"),
            (
                serde_json::json!([{"name": "a", "tokenSha256": "secret-token"}]),
                "64 hexadecimal digits",
            ),
            (
                serde_json::json!([
                    {"name": "a", "subnet": "10.0.0.0/24"},
                    {"name": "a", "tokenSha256": digest}
                ]),
                "listed twice",
            ),
        ] {
            let text = serde_json::json!({ "principals": principals }).to_string();
            let error = ProxyConfig::parse(&text).expect_err(why);
            assert!(error.contains(why), "{error}");
        }
    }

    #[test]
    fn a_token_from_a_variable_becomes_its_digest_and_a_missing_one_is_an_error() {
        let text = serde_json::json!({"principals": [
            {"name": "runtime", "tokenEnv": "PSB_TOKEN_RUNTIME", "allow": {"rules": ["api.anthropic.com"]}}
        ]})
        .to_string();
        let config = ProxyConfig::parse_with(&text, |name| {
            (name == "PSB_TOKEN_RUNTIME").then(|| "s3cret\n".to_string())
        })
        .expect("parse");
        let Identity::Token(digest) = config.principals[0].identity else {
            panic!("{config:?}");
        };
        assert!(digest.verifies("s3cret"));
        assert!(
            !serde_json::to_string(&config)
                .expect("json")
                .contains("s3cret")
        );
        for (env, why) in [
            (None, "is not set or empty"),
            (Some(" "), "is not set or empty"),
        ] {
            let error = ProxyConfig::parse_with(&text, |_| env.map(str::to_string)).expect_err(why);
            assert!(
                error.contains(why) && error.contains("PSB_TOKEN_RUNTIME"),
                "{error}"
            );
        }
        let both = serde_json::json!({"principals": [
            {"name": "a", "tokenEnv": "T", "tokenSha256": "0".repeat(64)}
        ]})
        .to_string();
        let error = ProxyConfig::parse_with(&both, |_| Some("t".into())).expect_err("both");
        assert!(
            error.contains("both `tokenEnv` and `tokenSha256`"),
            "{error}"
        );
    }

    #[test]
    fn subnets_parse_and_contain() {
        let net = Subnet::try_from("10.1.0.0/16".to_string()).expect("subnet");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        let all = Subnet::try_from("0.0.0.0/0".to_string()).expect("subnet");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        let v6 = Subnet::try_from("fd00:1::/64".to_string()).expect("subnet");
        assert!(v6.contains("fd00:1::5".parse().expect("ip")));
        assert!(!v6.contains("10.1.0.1".parse().expect("ip")));
        assert!(Subnet::try_from("10.0.0.0/33".to_string()).is_err());
        assert!(Subnet::try_from("10.0.0.0".to_string()).is_err());
    }
}
