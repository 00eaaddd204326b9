//! Domain rules of an allowlist (PERSTACK-COMPAT.md §1 `allowedDomains`): exact names, a
//! leading `*.` wildcard, trailing dots ignored, punycode refused, port 443 unless the rule
//! names one (`host:port`).

use serde::{Deserialize, Serialize};

use crate::config::patterns::{DomainProblem, check_allowed_domain};

/// The port a rule allows when it names none.
pub(crate) const DEFAULT_PORT: u16 = 443;

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainRule {
    /// The name, lowercase, without `*.` or a trailing dot.
    name: String,
    /// `*.name`: the name's subdomains — and, as Perstack's Squid rule `.name` does, the name
    /// itself.
    wildcard: bool,
    /// The one port allowed.
    port: u16,
}

/// Why a rule is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Not a domain pattern.
    #[error(
        "`{0}` is not a domain rule (expected a name like api.example.com, *.example.com or host:8443)"
    )]
    Shape(String),
    /// A punycode label.
    #[error(
        "`{0}` has a punycode (xn--) label, which could spoof a lookalike name; write the rule for the name you mean in ASCII"
    )]
    Punycode(String),
    /// A bad port.
    #[error("`{0}` has an invalid port")]
    Port(String),
}

impl DomainRule {
    /// Parses `name`, `*.name`, `name.`, `name:port`.
    pub fn parse(text: &str) -> Result<DomainRule, RuleError> {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| RuleError::Port(text.to_string()))?,
            ),
            None => (text, DEFAULT_PORT),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        match check_allowed_domain(host) {
            Ok(()) => {}
            Err(DomainProblem::Shape) => return Err(RuleError::Shape(text.to_string())),
            Err(DomainProblem::Punycode) => return Err(RuleError::Punycode(text.to_string())),
        }
        let (name, wildcard) = match host.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (host, false),
        };
        Ok(DomainRule {
            name: name.to_ascii_lowercase(),
            wildcard,
            port,
        })
    }

    /// Whether this rule lets a client reach `host` (already normalised by [`normalize_host`])
    /// on `port`.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        if port != self.port {
            return false;
        }
        if host == self.name {
            return true;
        }
        self.wildcard
            && host
                .strip_suffix(self.name.as_str())
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
    }
}

impl TryFrom<String> for DomainRule {
    type Error = RuleError;
    fn try_from(text: String) -> Result<DomainRule, RuleError> {
        DomainRule::parse(&text)
    }
}

impl From<DomainRule> for String {
    fn from(rule: DomainRule) -> String {
        rule.to_string()
    }
}

impl std::fmt::Display for DomainRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)?;
        if self.port != DEFAULT_PORT {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// Why a requested host is refused before any rule is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostError {
    /// Not a DNS name.
    #[error("not a valid host name")]
    Shape,
    /// A punycode label.
    #[error("punycode (xn--) names are refused")]
    Punycode,
}

/// Lowercases `host`, drops one trailing dot, and refuses what is not a plain ASCII DNS name —
/// punycode included, so a lookalike of an allowed name can never match it.
pub(crate) fn normalize_host(host: &str) -> Result<String, HostError> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 || host.starts_with("*.") {
        return Err(HostError::Shape);
    }
    match check_allowed_domain(host) {
        Ok(()) => Ok(host.to_ascii_lowercase()),
        Err(DomainProblem::Shape) => Err(HostError::Shape),
        Err(DomainProblem::Punycode) => Err(HostError::Punycode),
    }
}

/// A principal's allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowlist {
    /// The rules; any one allowing is enough.
    pub rules: Vec<DomainRule>,
}

impl Allowlist {
    /// The first rule allowing `host:port`.
    pub fn find(&self, host: &str, port: u16) -> Option<&DomainRule> {
        self.rules.iter().find(|r| r.allows(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(rule: &str, host: &str, port: u16) -> bool {
        let host = normalize_host(host).expect("host");
        DomainRule::parse(rule).expect("rule").allows(&host, port)
    }

    #[test]
    fn exact_names_match_only_themselves_on_443() {
        assert!(allows("api.github.com", "api.github.com", 443));
        assert!(allows("api.github.com", "API.GitHub.com", 443));
        assert!(!allows("api.github.com", "github.com", 443));
        assert!(!allows("api.github.com", "evil-api.github.com", 443));
        assert!(!allows("api.github.com", "api.github.com.evil.com", 443));
        assert!(!allows("api.github.com", "api.github.com", 80));
        assert!(!allows("api.github.com", "api.github.com", 8443));
    }

    #[test]
    fn wildcards_match_subdomains_and_the_name_itself() {
        assert!(allows("*.github.com", "api.github.com", 443));
        assert!(allows("*.github.com", "a.b.github.com", 443));
        assert!(allows("*.github.com", "github.com", 443));
        assert!(!allows("*.github.com", "evilgithub.com", 443));
        assert!(!allows("*.github.com", "github.com.evil.com", 443));
    }

    #[test]
    fn trailing_dots_are_ignored_on_both_sides() {
        assert!(allows("api.github.com.", "api.github.com", 443));
        assert!(allows("api.github.com", "api.github.com.", 443));
        assert!(allows("*.github.com.", "x.github.com.", 443));
    }

    #[test]
    fn a_rule_with_a_port_allows_that_port_only() {
        assert!(allows("git.example.com:8443", "git.example.com", 8443));
        assert!(!allows("git.example.com:8443", "git.example.com", 443));
        assert_eq!(
            DomainRule::parse("git.example.com:8443")
                .expect("rule")
                .to_string(),
            "git.example.com:8443"
        );
        assert!(matches!(
            DomainRule::parse("x.com:0"),
            Err(RuleError::Port(_))
        ));
        assert!(matches!(
            DomainRule::parse("x.com:99999"),
            Err(RuleError::Port(_))
        ));
    }

    #[test]
    fn punycode_and_malformed_names_are_refused() {
        assert!(matches!(
            DomainRule::parse("xn--80ak6aa92e.com"),
            Err(RuleError::Punycode(_))
        ));
        assert!(matches!(
            DomainRule::parse("a.*.com"),
            Err(RuleError::Shape(_))
        ));
        assert!(matches!(DomainRule::parse(""), Err(RuleError::Shape(_))));
        assert_eq!(normalize_host("xn--pple-43d.com"), Err(HostError::Punycode));
        assert_eq!(normalize_host("exa mple.com"), Err(HostError::Shape));
        assert_eq!(normalize_host("*.example.com"), Err(HostError::Shape));
        assert_eq!(normalize_host(""), Err(HostError::Shape));
    }

    #[test]
    fn rules_round_trip_through_json_as_strings() {
        let list: Allowlist =
            serde_json::from_str(r#"{"rules":["*.github.com","api.example.com:8443"]}"#)
                .expect("parse");
        assert_eq!(
            serde_json::to_string(&list).expect("json"),
            r#"{"rules":["*.github.com","api.example.com:8443"]}"#
        );
        assert!(serde_json::from_str::<Allowlist>(r#"{"rules":["xn--a.com"]}"#).is_err());
    }
}
