//! Per-principal proxy tokens: the credential that names a principal when several share one
//! network (the containers of a Kubernetes pod, the processes of a standalone image, Docker
//! containers joined to one "pause" network namespace).
//!
//! The controller [`issue`]s one token per principal. The principal gets it inside its proxy URL
//! (`HTTPS_PROXY=http://<principal>:<token>@host:port`), from which every common client (curl,
//! Python's urllib and requests, undici, Go's net/http) sends `Proxy-Authorization: Basic
//! base64(<principal>:<token>)` on `CONNECT` and on plain-HTTP proxy requests. The proxy's
//! configuration holds only the token's SHA-256 ([`TokenDigest`]), and the proxy compares digests
//! in constant time.
//!
//! A token is a secret: [`ProxyUrl`] and [`Issued`] print it as `***`, serialize nowhere, and no
//! error of this module contains it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Random bytes in a token: 256 bits, beyond guessing.
const TOKEN_BYTES: usize = 32;

/// What a principal's name is percent-encoded with in a proxy URL's user part: everything but
/// the unreserved characters, so `skill:web` cannot end the user part at its colon.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The SHA-256 of a principal's token: what the proxy's configuration carries instead of the
/// token (`tokenSha256`, lowercase hex).
///
/// Equality is constant-time ([`subtle`]); the bytes are private, so no other comparison of
/// digests exists.
#[derive(Clone, Copy)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `token` is the one this is the digest of. The presented token is hashed first and
    /// the two digests are compared in constant time, so how long this takes says nothing about
    /// how much of a guess was right.
    pub fn verifies(&self, token: &str) -> bool {
        *self == TokenDigest::of(token)
    }
}

impl PartialEq for TokenDigest {
    fn eq(&self, other: &TokenDigest) -> bool {
        #[cfg(test)]
        tests::count_comparison();
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TokenDigest {}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenDigest({})", hex::encode(self.0))
    }
}

impl serde::Serialize for TokenDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for TokenDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&text, &mut bytes).map_err(|_| {
            serde::de::Error::custom("tokenSha256 must be 64 hexadecimal digits (a SHA-256)")
        })?;
        Ok(TokenDigest(bytes))
    }
}

/// A principal's proxy URL with its token: the value of its `HTTPS_PROXY`/`HTTP_PROXY`.
/// Printed with the token masked; [`ProxyUrl::expose`] is the one way to the text.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// `http://<principal>:<token>@host:port`.
    url: String,
    /// Where the token starts and ends in `url`, for masking.
    token: std::ops::Range<usize>,
}

impl ProxyUrl {
    /// The URL, token included: for a container's environment (or a Kubernetes Secret), nowhere
    /// else.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProxyUrl({}***{})",
            &self.url[..self.token.start],
            &self.url[self.token.end..]
        )
    }
}

/// What [`issue`] gives the controller for one principal.
#[derive(Debug, Clone)]
pub struct Issued {
    /// For the principal's environment only.
    pub url: ProxyUrl,
    /// For the proxy's configuration ([`Identity::TokenSha256`](super::Identity)).
    pub digest: TokenDigest,
}

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The operating system's random source failed.
    #[error("cannot draw random bytes for a proxy token: {0}")]
    Random(getrandom::Error),
}

/// Makes a fresh random token for `principal` and returns its proxy URL (the proxy at
/// `proxy_host:proxy_port`) and its digest. The token itself is kept nowhere else.
pub fn issue(principal: &str, proxy_host: &str, proxy_port: u16) -> Result<Issued, TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let user = utf8_percent_encode(principal, USERINFO).to_string();
    let start = "http://".len() + user.len() + 1;
    let host = if proxy_host.contains(':') && !proxy_host.starts_with('[') {
        format!("[{proxy_host}]")
    } else {
        proxy_host.to_string()
    };
    let url = format!("http://{user}:{token}@{host}:{proxy_port}");
    Ok(Issued {
        digest: TokenDigest::of(&token),
        url: ProxyUrl {
            token: start..start + token.len(),
            url,
        },
    })
}

/// A credential as a client presented it: the principal it claims to be and its token.
#[derive(PartialEq, Eq)]
pub struct Presented {
    /// The claimed principal, as sent (clients percent-decode the URL's user part; some may not).
    pub principal: String,
    /// The token.
    pub token: String,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("principal", &"***")
            .field("token", &"***")
            .finish()
    }
}

impl Presented {
    /// Parses a `Proxy-Authorization` value: `Basic base64(<principal>:<token>)`. Tokens never
    /// hold a colon, so the last one separates them and a principal's name may contain colons
    /// (`skill:web`). `None` for anything else.
    pub fn parse(value: &str) -> Option<Presented> {
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (principal, token) = text.rsplit_once(':')?;
        if principal.is_empty() || token.is_empty() {
            return None;
        }
        Some(Presented {
            principal: principal.to_string(),
            token: token.to_string(),
        })
    }

    /// Whether this claims to be `name`: as sent, or percent-decoded for a client that sent the
    /// URL's user part without decoding it.
    pub fn claims(&self, name: &str) -> bool {
        self.principal == name
            || percent_encoding::percent_decode_str(&self.principal)
                .decode_utf8()
                .is_ok_and(|decoded| decoded == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    /// Counts digest comparisons, so tests can see that a decision went through them.
    pub(super) fn count_comparison() {
        COMPARISONS.with(|c| c.set(c.get() + 1));
    }

    /// How many constant-time digest comparisons this thread made so far.
    pub(crate) fn comparisons() -> usize {
        COMPARISONS.with(Cell::get)
    }

    /// The token inside an issued URL (tests only: the code never takes it apart).
    pub(crate) fn token_of(issued: &Issued) -> String {
        issued.url.expose()[issued.url.token.clone()].to_string()
    }

    #[test]
    fn an_issued_url_carries_the_principal_and_a_fresh_token_whose_digest_verifies() {
        let issued = issue("runtime", "egress-proxy", 3128).expect("issue");
        let token = token_of(&issued);
        assert_eq!(token.len(), 43, "256 bits, base64url without padding");
        assert!(!token.contains(':') && !token.contains('@') && !token.contains('/'));
        assert_eq!(
            issued.url.expose(),
            format!("http://runtime:{token}@egress-proxy:3128")
        );
        assert!(issued.digest.verifies(&token));
        let again = issue("runtime", "egress-proxy", 3128).expect("issue");
        assert_ne!(token_of(&again), token);
        assert!(!again.digest.verifies(&token));
    }

    #[test]
    fn names_with_colons_are_percent_encoded_in_the_url_and_clients_decode_them() {
        let issued = issue("skill:web:@org/x", "127.0.0.1", 3128).expect("issue");
        let url = url::Url::parse(issued.url.expose()).expect("a valid URL");
        assert_eq!(url.username(), "skill%3Aweb%3A%40org%2Fx");
        assert_eq!(url.password(), Some(token_of(&issued).as_str()));
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.port(), Some(3128));
        let v6 = issue("runtime", "fd00::2", 3128).expect("issue");
        assert!(v6.url.expose().ends_with("@[fd00::2]:3128"));
        // What a client sends: the decoded name (curl, urllib), or the raw one.
        let token = token_of(&issued);
        for user in ["skill:web:@org/x", "skill%3Aweb%3A%40org%2Fx"] {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
            let presented = Presented::parse(&format!("Basic {basic}")).expect("parsed");
            assert!(presented.claims("skill:web:@org/x"), "{user}");
            assert!(!presented.claims("skill:web"), "{user}");
            assert_eq!(presented.token, token);
        }
    }

    #[test]
    fn nothing_prints_the_token() {
        let issued = issue("skill:web", "egress-proxy", 3128).expect("issue");
        let token = token_of(&issued);
        let printed = format!("{issued:?} {:?}", issued.url);
        assert!(!printed.contains(&token), "{printed}");
        assert!(
            printed.contains("skill%3Aweb:***@egress-proxy:3128"),
            "{printed}"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("runtime:{token}"));
        let presented = Presented::parse(&format!("Basic {basic}")).expect("parsed");
        assert!(!format!("{presented:?}").contains(&token));
    }

    #[test]
    fn only_basic_credentials_with_a_principal_and_a_token_parse() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(Presented::parse(&format!("basic  {}", b64("runtime:t0k"))).is_some());
        for bad in [
            format!("Bearer {}", b64("runtime:t0k")),
            format!("Basic {}", b64("runtime")),
            format!("Basic {}", b64(":t0k")),
            format!("Basic {}", b64("runtime:")),
            "Basic not-base64!".to_string(),
            "Basic".to_string(),
            String::new(),
        ] {
            assert_eq!(Presented::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn digests_compare_in_constant_time_and_round_trip_as_hex() {
        let digest = TokenDigest::of("secret-token");
        let before = comparisons();
        assert!(digest.verifies("secret-token"));
        assert!(!digest.verifies("secret-tokeN"));
        assert!(!digest.verifies(""));
        assert_eq!(comparisons(), before + 3);
        let json = serde_json::to_string(&digest).expect("json");
        assert_eq!(
            json,
            format!("\"{}\"", hex::encode(Sha256::digest(b"secret-token")))
        );
        let back: TokenDigest = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, digest);
        let error = serde_json::from_str::<TokenDigest>("\"abc\"").expect_err("short");
        assert!(
            error.to_string().contains("64 hexadecimal digits"),
            "{error}"
        );
    }
}
