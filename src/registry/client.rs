//! The Registry's HTTP API, as Perstack's api-client speaks it: `GET
//! {base}/api/registry/v1/experts/{encodeURIComponent(key)}`, `Content-Type: application/json`,
//! and `Authorization: Bearer $PERSTACK_API_KEY` only when that variable is set. Only the
//! controller on the host talks to it; no container ever does (see `preflight/registry.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use url::Url;

use super::definition::{DefinitionError, RegistryExpert};

/// Perstack's default base URL.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.perstack.ai";
/// Beats `perstackApiBaseUrl` (not in Perstack, which has no override).
pub(crate) const BASE_URL_VAR: &str = "PERSTACK_API_BASE_URL";
/// Set to `1` to let [`BASE_URL_VAR`] be plain `http://127.0.0.1:<port>`: a test's fake registry.
pub(crate) const TEST_REGISTRY_VAR: &str = "PERSTACK_SANDBOX_TEST_REGISTRY";
/// The bearer token, when set.
pub(crate) const API_KEY_VAR: &str = "PERSTACK_API_KEY";
/// Perstack's client gives up after 30 s.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Characters `encodeURIComponent` leaves alone besides letters and digits.
const URI_COMPONENT: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Why the Registry gave no usable definition.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The base URL cannot be used.
    #[error("{0}")]
    BaseUrl(String),
    /// Nothing answered, or not in time.
    #[error(
        "the Perstack Registry at {url} did not answer: {detail}\n  hint: check the network \
         (HTTPS_PROXY); a pinned version (name@1.2.3) that was fetched before runs offline from the \
         cache, and so does everything in perstack.lock"
    )]
    Unreachable {
        /// The request's URL.
        url: String,
        /// reqwest's reason.
        detail: String,
    },
    /// A status other than 2xx, with the body's `error` and `reason` when it had them.
    #[error("{}", status_message(url, *status, error, reason.as_deref()))]
    Status {
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The body's `error`, else the status text.
        error: String,
        /// The body's `reason`.
        reason: Option<String>,
    },
    /// A 2xx whose body is not a definition.
    #[error(
        "the Perstack Registry at {url} answered with a body that is not an Expert definition: {source}"
    )]
    Schema {
        /// The request's URL.
        url: String,
        /// What is wrong with it.
        #[source]
        source: DefinitionError,
    },
}

fn status_message(url: &str, status: u16, error: &str, reason: Option<&str>) -> String {
    let reason = reason.map_or(String::new(), |r| format!(" ({r})"));
    let hint = match status {
        401 | 403 => "\n  hint: set PERSTACK_API_KEY to a key that may read this Expert",
        404 => "\n  hint: check the key's spelling, scope and version",
        _ => "",
    };
    format!("the Perstack Registry answered {status} {error}{reason} for {url}{hint}")
}

/// Error bodies: `{"code":404,"error":"Not Found","reason":"…"}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    reason: Option<serde_json::Value>,
}

/// A client for one base URL.
pub(crate) struct Registry {
    base: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl Registry {
    /// The Registry `perstackApiBaseUrl` names (else Perstack's), unless
    /// [`BASE_URL_VAR`] overrides it; the token from `env`.
    pub(crate) fn new(
        configured: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> Result<Registry, RegistryError> {
        let base = base_url(configured, env)?;
        // Exactly one rustls crypto provider is compiled in (ring); make it the process default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("perstack-sandbox/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| RegistryError::BaseUrl(format!("cannot make an HTTP client: {e}")))?;
        Ok(Registry {
            base,
            api_key: env.get(API_KEY_VAR).filter(|k| !k.is_empty()).cloned(),
            http,
        })
    }

    /// The base URL, for the cache's folder and for messages.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET …/experts/{key}`: the definition, checked against the schema.
    pub(crate) async fn fetch(&self, key: &str) -> Result<RegistryExpert, RegistryError> {
        let url = format!(
            "{}/api/registry/v1/experts/{}",
            self.base,
            utf8_percent_encode(key, URI_COMPONENT)
        );
        let mut request = self
            .http
            .get(&url)
            .header("content-type", "application/json");
        if let Some(token) = &self.api_key {
            request = request.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            url: url.clone(),
            detail: error_chain(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            let (error, reason) = parsed.map_or((None, None), |b| (b.error, b.reason));
            return Err(RegistryError::Status {
                url,
                status: status.as_u16(),
                error: error.unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string()),
                reason: reason.map(|r| match r {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }),
            });
        }
        RegistryExpert::from_response(&body).map_err(|source| RegistryError::Schema { url, source })
    }
}

/// reqwest's error and its causes, which say what actually failed (refused, DNS, TLS).
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// [`BASE_URL_VAR`], else `perstackApiBaseUrl`, else Perstack's; `https://` only, except a
/// loopback `http://127.0.0.1` when [`TEST_REGISTRY_VAR`] says this is a test. No trailing `/`.
pub(crate) fn base_url(
    configured: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Result<String, RegistryError> {
    let (chosen, by) = match env.get(BASE_URL_VAR).filter(|v| !v.is_empty()) {
        Some(url) => (url.as_str(), BASE_URL_VAR),
        None => (configured.unwrap_or(DEFAULT_BASE_URL), "perstackApiBaseUrl"),
    };
    let url = Url::parse(chosen)
        .map_err(|e| RegistryError::BaseUrl(format!("{by} \"{chosen}\" is not a URL ({e})")))?;
    let test = env.get(TEST_REGISTRY_VAR).is_some_and(|v| v == "1");
    let loopback = url.scheme() == "http" && url.host_str() == Some("127.0.0.1");
    if url.scheme() != "https" && !(test && loopback) {
        return Err(RegistryError::BaseUrl(format!(
            "{by} \"{chosen}\" must be an https:// URL (plain http://127.0.0.1 only with \
             {TEST_REGISTRY_VAR}=1, for a test's fake registry)"
        )));
    }
    Ok(chosen.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_base_url_is_https_and_loopback_http_only_in_a_test() {
        assert_eq!(
            base_url(None, &env(&[])).expect("default"),
            DEFAULT_BASE_URL
        );
        assert_eq!(
            base_url(Some("https://r.example/"), &env(&[])).expect("file"),
            "https://r.example"
        );
        let fake = [(BASE_URL_VAR, "http://127.0.0.1:9/")];
        let refused = base_url(Some("https://r.example"), &env(&fake)).expect_err("no test flag");
        assert!(refused.to_string().contains(TEST_REGISTRY_VAR), "{refused}");
        let test = [
            (BASE_URL_VAR, "http://127.0.0.1:9/"),
            (TEST_REGISTRY_VAR, "1"),
        ];
        assert_eq!(
            base_url(None, &env(&test)).expect("test"),
            "http://127.0.0.1:9"
        );
        // Even in a test, plain HTTP goes nowhere but the loopback address.
        let elsewhere = [
            (BASE_URL_VAR, "http://10.0.0.1:9"),
            (TEST_REGISTRY_VAR, "1"),
        ];
        assert!(base_url(None, &env(&elsewhere)).is_err());
    }

    #[test]
    fn keys_are_encoded_as_encode_uri_component_does() {
        let encoded = utf8_percent_encode("@acme/r@1.2.3", URI_COMPONENT).to_string();
        assert_eq!(encoded, "%40acme%2Fr%401.2.3");
    }
}
