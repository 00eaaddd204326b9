//! A fake Perstack Registry on the test HTTP server, for the unit tests of `registry/` and the
//! end-to-end runs of published Experts: `GET /api/registry/v1/experts/{key}` with the key
//! percent-decoded, answering an exact `name@version`, a `name@tag`, or a bare name with the
//! version tagged `latest` (else the highest); 404 and 401 with the Registry's error bodies.
//! Definitions can be replaced while it runs, to publish a changed one.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::http::{Recorded, Response, TestServer};

/// The running fake.
pub struct FakeRegistry {
    server: TestServer,
    experts: Arc<Mutex<Vec<Value>>>,
}

/// A published Expert with every field the schema requires; `skills` and `delegates` as given.
pub fn published(name: &str, version: &str, skills: Value, delegates: &[&str]) -> Value {
    json!({
        "type": "registryExpert",
        "id": "e2e0001",
        "key": format!("{name}@{version}"),
        "name": name,
        "minRuntimeVersion": "v1.0",
        "description": format!("{name}, published"),
        "owner": {"name": "acme", "organizationId": "org1", "createdAt": "2025-01-01T00:00:00Z"},
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": "2025-01-01T00:00:00Z",
        "version": version,
        "status": "available",
        "instruction": format!("You are {name}. Do what you are asked."),
        "skills": skills,
        "delegates": delegates,
        "tags": ["latest"],
    })
}

impl FakeRegistry {
    /// Serves `experts`; with `token`, only requests bearing it (401 otherwise).
    pub fn start(experts: Vec<Value>, token: Option<&str>) -> FakeRegistry {
        let experts = Arc::new(Mutex::new(experts));
        let served = experts.clone();
        let token = token.map(str::to_string);
        let server = TestServer::start(move |request: Recorded| {
            let answer = answer(&request, &lock(&served), token.as_deref());
            async move { answer }
        });
        FakeRegistry { server, experts }
    }

    /// The base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Replaces (or adds) the definition of that `name@version`.
    pub fn publish(&self, expert: Value) {
        let mut experts = lock(&self.experts);
        experts.retain(|e| e["name"] != expert["name"] || e["version"] != expert["version"]);
        experts.push(expert);
    }
}

fn lock(experts: &Mutex<Vec<Value>>) -> std::sync::MutexGuard<'_, Vec<Value>> {
    experts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn answer(request: &Recorded, experts: &[Value], token: Option<&str>) -> Response {
    if let Some(token) = token
        && request.header("authorization") != Some(&format!("Bearer {token}"))
    {
        return error(401, "Unauthorized", "Failed to authenticate");
    }
    let Some(encoded) = request.path.strip_prefix("/api/registry/v1/experts/") else {
        return error(404, "Not Found", "no such endpoint");
    };
    let key = percent_encoding::percent_decode_str(encoded)
        .decode_utf8_lossy()
        .into_owned();
    match find(experts, &key) {
        Some(expert) => Response::json(200, &json!({"data": {"expert": expert}})),
        None => error(404, "Not Found", &format!("Expert {key} not found")),
    }
}

fn find<'e>(experts: &'e [Value], key: &str) -> Option<&'e Value> {
    let scope = if key.starts_with('@') {
        key.find('/').map_or(0, |i| i + 1)
    } else {
        0
    };
    let (name, reference) = match key[scope..].split_once('@') {
        Some((name, reference)) => (&key[..scope + name.len()], Some(reference)),
        None => (key, None),
    };
    let versions: Vec<&Value> = experts.iter().filter(|e| e["name"] == name).collect();
    let tagged = |tag: &str| {
        versions
            .iter()
            .copied()
            .filter(|e| {
                e["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == tag))
            })
            .max_by_key(|e| semver(e))
    };
    match reference {
        Some(reference) if semver::Version::parse(reference).is_ok() => {
            versions.into_iter().find(|e| e["version"] == reference)
        }
        Some(tag) => tagged(tag),
        None => tagged("latest").or_else(|| versions.into_iter().max_by_key(|e| semver(e))),
    }
}

fn semver(expert: &Value) -> Option<semver::Version> {
    semver::Version::parse(expert["version"].as_str()?).ok()
}

fn error(code: u16, error: &str, reason: &str) -> Response {
    Response::json(
        code,
        &json!({"code": code, "error": error, "reason": reason}),
    )
}
