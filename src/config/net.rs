//! URL rules: `https://` base URLs and public SSE endpoints (§1).
//!
//! URLs are parsed with the WHATWG rules of the `url` crate, the same rules a fetch in the
//! runtime applies, so `https://0x7f.1/` is seen as the 127.0.0.1 it really is.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a URL is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum UrlProblem {
    /// Not a URL at all.
    Malformed(String),
    /// A scheme other than the ones allowed.
    Scheme(String),
    /// A host that reaches this machine or a private network.
    PrivateHost(String),
}

/// A URL with one of `schemes` (written without `:`).
pub(super) fn check_url(s: &str, schemes: &[&str]) -> Result<Url, UrlProblem> {
    let url = Url::parse(s).map_err(|e| UrlProblem::Malformed(e.to_string()))?;
    if !schemes.contains(&url.scheme()) {
        return Err(UrlProblem::Scheme(url.scheme().to_string()));
    }
    if url.host().is_none() {
        return Err(UrlProblem::Malformed("no host".to_string()));
    }
    Ok(url)
}

/// An `https:` URL whose host is not loopback, private, link-local or unspecified.
pub(super) fn check_public_https_url(s: &str) -> Result<Url, UrlProblem> {
    let url = check_url(s, &["https"])?;
    if let Some(host) = url.host()
        && let Some(why) = private_host(&host)
    {
        return Err(UrlProblem::PrivateHost(why));
    }
    Ok(url)
}

/// Describes why `host` is not public, or `None` when it is.
fn private_host(host: &Host<&str>) -> Option<String> {
    match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.');
            // RFC 6761 reserves every name under `localhost` for loopback.
            (name == "localhost" || name.ends_with(".localhost"))
                .then(|| format!("{name} is this machine"))
        }
        Host::Ipv4(ip) => private_v4(*ip).map(|kind| format!("{ip} is {kind}")),
        Host::Ipv6(ip) => private_v6(*ip).map(|kind| format!("{ip} is {kind}")),
    }
}

fn private_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private-network address")
    } else if ip.is_link_local() {
        Some("a link-local address, where cloud metadata services live")
    } else if ip.octets()[0] == 0 {
        Some("an unspecified (\"this network\") address")
    } else {
        None
    }
}

fn private_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a unique-local (private) address")
    } else if let Some(v4) = ip.to_ipv4_mapped() {
        private_v4(v4)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(s: &str) -> bool {
        matches!(check_public_https_url(s), Err(UrlProblem::PrivateHost(_)))
    }

    #[test]
    fn public_https_endpoints_pass() {
        for ok in [
            "https://mcp.example.com/sse",
            "https://8.8.8.8/x",
            "https://[2001:db8::1]/",
            "https://172.32.0.1/",
            "https://localhost.example.com/",
        ] {
            assert!(check_public_https_url(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn private_and_loopback_hosts_are_rejected() {
        for bad in [
            "https://localhost/sse",
            "https://LOCALHOST./sse",
            "https://api.localhost/",
            "https://127.0.0.1/",
            "https://127.9.9.9/",
            "https://0x7f.1/",
            "https://2130706433/",
            "https://0.0.0.0/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://172.31.255.255/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::]/",
            "https://[fe80::1]/",
            "https://[fc00::1]/",
            "https://[fd12:3456::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            assert!(rejected(bad), "{bad}");
        }
    }

    #[test]
    fn scheme_and_shape_are_checked() {
        assert_eq!(
            check_public_https_url("http://example.com/").err(),
            Some(UrlProblem::Scheme("http".to_string()))
        );
        assert!(matches!(
            check_public_https_url("example.com/sse"),
            Err(UrlProblem::Malformed(_))
        ));
        assert!(matches!(
            check_url("https://", &["https"]),
            Err(UrlProblem::Malformed(_))
        ));
        assert!(check_url("http://localhost:11434", &["http", "https"]).is_ok());
    }
}
