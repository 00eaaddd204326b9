//! Whose a connection is: by the network it arrived on, else by the token it presents.

use std::net::SocketAddr;

use super::token::Presented;
use super::{Identity, Principal, ProxyConfig};

/// The realm of the `Proxy-Authenticate` challenge.
pub(super) const REALM: &str = "perstack-sandbox";

/// Why a connection belongs to no principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// From a network no principal has, and no principal can say who it is with a token: `403`.
    Unserved,
    /// A principal identified by token did not prove it: `407`. The reason never holds what the
    /// client sent, so never a token.
    Unauthenticated(String),
}

impl Refusal {
    /// The reason, for the access record and the response body.
    pub(super) fn reason(&self) -> &str {
        match self {
            Refusal::Unserved => "connection from a network the proxy does not serve",
            Refusal::Unauthenticated(why) => why,
        }
    }
}

/// The principal a connection is: the one whose network its local address is on (whatever the
/// client sends), else the principal identified by token that its one `Proxy-Authorization`
/// header names, with that principal's token.
pub(super) fn identify<'c>(
    config: &'c ProxyConfig,
    local: Option<SocketAddr>,
    authorization: &[&str],
) -> Result<&'c Principal, Refusal> {
    if let Some(principal) = local.and_then(|local| config.principal_at(local)) {
        return Ok(principal);
    }
    if !config.has_token_principals() {
        return Err(Refusal::Unserved);
    }
    let refuse = |why: &str| Err(Refusal::Unauthenticated(why.to_string()));
    let value = match authorization {
        [] => {
            return refuse(
                "no proxy credentials: this proxy knows its clients by the <principal>:<token> of their proxy URL",
            );
        }
        [value] => value,
        _ => return refuse("more than one Proxy-Authorization header"),
    };
    let Some(presented) = Presented::parse(value) else {
        return refuse("Proxy-Authorization is not Basic credentials of <principal>:<token>");
    };
    let claimed = config.principals.iter().find_map(|p| match &p.identity {
        Identity::Token(digest) if presented.claims(&p.name) => Some((p, digest)),
        _ => None,
    });
    let Some((principal, digest)) = claimed else {
        // Not echoed: a client that put its token where the name goes would see it recorded.
        return refuse("unknown principal in Proxy-Authorization");
    };
    if digest.verifies(&presented.token) {
        Ok(principal)
    } else {
        Err(Refusal::Unauthenticated(format!(
            "wrong token for principal `{}`",
            principal.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::rules::{Allowlist, DomainRule};
    use crate::proxy::token::{self, TokenDigest};
    use base64::Engine as _;

    fn basic(principal: &str, token: &str) -> String {
        let pair = format!("{principal}:{token}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    fn principal(name: &str, identity: Identity, rule: &str) -> Principal {
        Principal {
            name: name.into(),
            identity,
            allow: Allowlist {
                rules: vec![DomainRule::parse(rule).expect("rule")],
            },
            trusted: vec![],
        }
    }

    /// The runtime on a network of its own; two skills sharing one, by token.
    fn config() -> ProxyConfig {
        let subnet = "172.30.1.0/24".to_string().try_into().expect("subnet");
        ProxyConfig {
            principals: vec![
                principal("runtime", Identity::Network(subnet), "api.anthropic.com"),
                principal(
                    "skill:web",
                    Identity::Token(TokenDigest::of("web-token")),
                    "*.exa.ai",
                ),
                principal(
                    "skill:git",
                    Identity::Token(TokenDigest::of("git-token")),
                    "api.github.com",
                ),
            ],
        }
    }

    fn at(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().expect("ip"), 3128))
    }

    fn who(result: Result<&Principal, Refusal>) -> Result<&str, Refusal> {
        result.map(|p| p.name.as_str())
    }

    #[test]
    fn a_principal_with_its_own_token_is_itself_and_nobody_else() {
        let config = config();
        let before = token::tests::comparisons();
        let web = basic("skill:web", "web-token");
        assert_eq!(
            who(identify(&config, at("10.0.0.5"), &[&web])),
            Ok("skill:web")
        );
        // The client left the URL's user part percent-encoded.
        let raw = basic("skill%3Agit", "git-token");
        assert_eq!(
            who(identify(&config, at("10.0.0.5"), &[&raw])),
            Ok("skill:git")
        );
        assert_eq!(
            token::tests::comparisons(),
            before + 2,
            "constant-time path"
        );
    }

    #[test]
    fn no_token_a_wrong_token_another_principals_token_or_an_unknown_name_gets_407() {
        let config = config();
        let cases = [
            (vec![], "no proxy credentials"),
            (
                vec![basic("skill:web", "guess")],
                "wrong token for principal `skill:web`",
            ),
            // Another principal's token with one's own name, or its name with one's own token.
            (vec![basic("skill:web", "git-token")], "wrong token"),
            (vec![basic("skill:git", "web-token")], "wrong token"),
            (vec![basic("skill:evil", "web-token")], "unknown principal"),
            // Identified by network, the runtime has no token to present on a shared network.
            (vec![basic("runtime", "web-token")], "unknown principal"),
            (vec!["Bearer web-token".to_string()], "not Basic"),
            (
                vec![
                    basic("skill:web", "web-token"),
                    basic("skill:web", "web-token"),
                ],
                "more than one",
            ),
        ];
        for (headers, why) in cases {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let refusal = identify(&config, at("10.0.0.5"), &headers).expect_err(why);
            let Refusal::Unauthenticated(reason) = &refusal else {
                panic!("{why}: {refusal:?}");
            };
            assert!(reason.contains(why), "{reason}");
            for token in ["web-token", "git-token", "guess"] {
                assert!(!reason.contains(token), "{reason}");
            }
        }
    }

    #[test]
    fn a_principals_own_network_decides_whatever_the_client_sends() {
        let config = config();
        let web = basic("skill:web", "web-token");
        assert_eq!(
            who(identify(&config, at("172.30.1.2"), &[&web])),
            Ok("runtime")
        );
        assert_eq!(who(identify(&config, at("172.30.1.2"), &[])), Ok("runtime"));
    }

    #[test]
    fn without_token_principals_a_foreign_network_is_unserved_as_before() {
        let mut config = config();
        config
            .principals
            .retain(|p| matches!(p.identity, Identity::Network(_)));
        let web = basic("skill:web", "web-token");
        assert_eq!(
            identify(&config, at("10.0.0.5"), &[&web]),
            Err(Refusal::Unserved)
        );
        assert_eq!(identify(&config, None, &[]), Err(Refusal::Unserved));
    }
}
