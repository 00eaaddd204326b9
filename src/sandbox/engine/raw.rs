//! The few engine calls bollard cannot make, over the same endpoint: the fields of `/info`
//! bollard's model drops (Podman's `Rootless`), and Podman's own network endpoint, the only way
//! to create a network without its DNS server (see `info.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::endpoint::Address;

/// A failed raw call: what we were doing and what happened.
#[derive(Debug, thiserror::Error)]
#[error("engine {action} failed: {message}")]
pub struct RawError {
    /// What we were doing.
    pub action: String,
    /// What happened.
    pub message: String,
}

/// A plain-HTTP client for one engine address.
#[derive(Debug, Clone)]
pub(crate) struct RawClient {
    http: reqwest::Client,
    base: String,
}

impl RawClient {
    /// A client for `address` (a unix socket or `host:port`).
    pub(crate) fn new(address: &Address) -> Result<RawClient, RawError> {
        // reqwest is built with rustls and no provider of its own (see llm/mod.rs).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60));
        let (builder, base) = match address {
            Address::Unix(path) => (builder.unix_socket(path.clone()), "http://localhost".into()),
            Address::Tcp(host) => (builder, format!("http://{host}")),
        };
        let http = builder.build().map_err(|e| RawError {
            action: "connect".into(),
            message: e.to_string(),
        })?;
        Ok(RawClient { http, base })
    }

    /// `GET /info` as JSON, every field the engine sent.
    pub(crate) async fn info(&self) -> Result<serde_json::Value, RawError> {
        self.send(
            "read /info",
            self.http.get(format!("{}/v1.41/info", self.base)),
        )
        .await
    }

    /// Creates an internal bridge network with Podman's own endpoint, DNS off; returns its
    /// IPv4 subnet.
    pub(crate) async fn create_podman_internal_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<String>, RawError> {
        let body = serde_json::json!({
            "name": name,
            "driver": "bridge",
            "internal": true,
            "dns_enabled": false,
            "labels": labels,
        });
        let created = self
            .send(
                &format!("create network {name}"),
                self.http
                    .post(format!("{}/v4.0.0/libpod/networks/create", self.base))
                    .json(&body),
            )
            .await?;
        Ok(created["subnets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["subnet"].as_str())
            .find(|s| s.contains('.'))
            .map(str::to_string))
    }

    async fn send(
        &self,
        action: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, RawError> {
        let failed = |message: String| RawError {
            action: action.to_string(),
            message,
        };
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| failed(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            return Err(failed(format!("{status}: {message}")));
        }
        serde_json::from_str(&text).map_err(|e| failed(format!("unreadable answer: {e}")))
    }
}
