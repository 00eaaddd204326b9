//! The few engine calls bollard cannot make, over the same endpoint: the fields of `/info`
//! bollard's model drops (Podman's `Rootless`), Podman's own network endpoint, the only way
//! to create a network without its DNS server (see `info.rs`), and the container listing and
//! inspection whose `State` bollard cannot read from Podman (below).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::docker::Labelled;
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

    /// Every container (running or not) matching the label filter `filter`, with its labels.
    pub(crate) async fn containers(&self, filter: &str) -> Result<Vec<Labelled>, RawError> {
        let filters = serde_json::json!({ "label": [filter] });
        Ok(self
            .list_containers(Some(&filters))
            .await?
            .iter()
            .filter_map(|c| {
                Some(Labelled {
                    id: c["Id"].as_str()?.to_string(),
                    labels: labels_of(&c["Labels"]),
                })
            })
            .collect())
    }

    /// The image ids of every container on the engine, running or not.
    pub(crate) async fn container_images(&self) -> Result<HashSet<String>, RawError> {
        Ok(self
            .list_containers(None)
            .await?
            .iter()
            .filter_map(|c| Some(c["ImageID"].as_str()?.to_string()))
            .collect())
    }

    /// `GET /containers/json?all=true`, with `filters` when given. Read here rather than
    /// through bollard: Podman lists a container that has exited but whose cleanup has not run
    /// yet in state `stopped`, which bollard's model does not know, so one such container on
    /// the engine would fail the whole listing (and a run's removal, `gc` with it) for as long
    /// as Podman's cleanup takes, seconds on a busy machine. Docker's answer is the same list.
    async fn list_containers(
        &self,
        filters: Option<&serde_json::Value>,
    ) -> Result<Vec<serde_json::Value>, RawError> {
        let action = "list containers";
        let mut url = self.url("/v1.41/containers/json", action)?;
        url.query_pairs_mut().append_pair("all", "true");
        if let Some(filters) = filters {
            url.query_pairs_mut()
                .append_pair("filters", &filters.to_string());
        }
        match self.send(action, self.http.get(url)).await? {
            serde_json::Value::Array(listed) => Ok(listed),
            other => Err(RawError {
                action: action.to_string(),
                message: format!("unreadable answer: not a list: {other}"),
            }),
        }
    }

    /// Whether the kernel killed container `id` for exceeding its memory limit
    /// (`State.OOMKilled`). Read here for the reason [`RawClient::list_containers`] gives: the
    /// container has just exited, which is when Podman says `stopped`.
    pub(crate) async fn oom_killed(&self, id: &str) -> Result<bool, RawError> {
        let action = format!("inspect container {id}");
        let url = self.url(&format!("/v1.41/containers/{id}/json"), &action)?;
        let inspected = self.send(&action, self.http.get(url)).await?;
        Ok(inspected["State"]["OOMKilled"].as_bool().unwrap_or(false))
    }

    /// `path` on this client's engine.
    fn url(&self, path: &str, action: &str) -> Result<url::Url, RawError> {
        url::Url::parse(&format!("{}{path}", self.base)).map_err(|e| RawError {
            action: action.to_string(),
            message: e.to_string(),
        })
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

/// A `Labels` object of the engine's answer as a map (none: empty; non-string values skipped).
fn labels_of(value: &serde_json::Value) -> HashMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::http::{Recorded, Response, TestServer};

    /// Podman's answer to `GET /containers/json` while one of two containers has exited and
    /// its cleanup has not run yet (as Podman 4.3.1 sent it; fields we do not read left out).
    fn podman_listing() -> serde_json::Value {
        serde_json::json!([
            {"Id": "aaa", "ImageID": "sha256:1", "Labels": {"io.perstack.sandbox.run-id": "r1"},
             "State": "stopped", "Status": "Exited (0) 1 second ago"},
            {"Id": "bbb", "ImageID": "sha256:2", "Labels": {"io.perstack.sandbox.run-id": "r1"},
             "State": "running", "Status": "Up 3 seconds"}
        ])
    }

    fn engine() -> (TestServer, RawClient) {
        let server =
            TestServer::start(|_: Recorded| async { Response::json(200, &podman_listing()) });
        let address = Address::Tcp(server.url().trim_start_matches("http://").to_string());
        let client = RawClient::new(&address).expect("client");
        (server, client)
    }

    #[test]
    fn bollards_model_cannot_read_podmans_stopped_state() {
        // Why the listing is raw: if this ever passes, bollard reads it and raw.rs can let go.
        let read =
            serde_json::from_value::<Vec<bollard::models::ContainerSummary>>(podman_listing());
        assert!(read.is_err(), "{read:?}");
    }

    #[tokio::test]
    async fn a_listing_with_a_stopped_container_is_read_with_every_id_and_label() {
        let (server, client) = engine();
        let listed = client
            .containers("io.perstack.sandbox.run-id=r1")
            .await
            .expect("list");
        let ids: Vec<&str> = listed.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["aaa", "bbb"]);
        assert_eq!(listed[0].labels["io.perstack.sandbox.run-id"], "r1");
        let request = &server.requests()[0];
        assert_eq!(request.path, "/v1.41/containers/json");
        let query: HashMap<String, String> = url::form_urlencoded::parse(request.query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(query["all"], "true");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&query["filters"]).expect("json"),
            serde_json::json!({"label": ["io.perstack.sandbox.run-id=r1"]})
        );
    }

    #[tokio::test]
    async fn the_images_in_use_are_read_from_every_container_unfiltered() {
        let (server, client) = engine();
        let images = client.container_images().await.expect("list");
        assert_eq!(
            images,
            HashSet::from(["sha256:1".into(), "sha256:2".into()])
        );
        let query = &server.requests()[0].query;
        assert!(!query.contains("filters"), "{query}");
    }
}
