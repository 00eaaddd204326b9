//! A fake Kubernetes API server for the backend's tests, behind `tower-test`'s mocked service:
//! it stores what is created, lists by label, deletes, plays a scripted run pod (its runtime's
//! log in chunks, one per log request; the container ends when the last chunk is served),
//! answers SelfSubjectAccessReviews and refuses what the script forbids with a real 403 Status.
//! Every request is recorded (`METHOD resource[/name][?since=…]`) for the tests to assert on.
//!
//! The pod's streams (`attach`, `exec`) need a websocket upgrade that `tower-test`'s mocked
//! service cannot give (hyper's upgrade handle cannot be made outside hyper), so the fake is
//! also the [`PodStreams`] of the tests: `ATTACH pods/<pod>/<container>` runs the init
//! container's command line as the pod spec has it (`workspace-in`, parsed by the real CLI, its
//! work done by the same function as the role's) into a folder that is the pod's workspace, and
//! until then the runtime waits (`PodInitializing`); `EXEC pods/<pod>/<container> …` does the
//! same with `workspace-out`, or answers the script's archive; `runtime-stop` exec'd in the
//! runtime's container ends it (143).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use super::client::{KubeApi, KubeError};
use super::workspace::{COPY_IN, PodStreams};

/// What the fake cluster does.
#[derive(Debug, Default, Clone)]
pub(super) struct Script {
    /// The runtime's log, one chunk per log request (lines with their times).
    pub log_chunks: Vec<Vec<String>>,
    /// The runtime's exit code once every chunk was served.
    pub exit_code: i32,
    /// The runtime's termination reason (`OOMKilled`).
    pub terminated_reason: Option<String>,
    /// `METHOD resource` pairs answered with 403.
    pub forbid: BTreeSet<(String, String)>,
    /// The runtime container waits with this reason forever (an image pull failure).
    pub waiting: Option<String>,
    /// Log requests never answer (a run that goes on until cancelled or timed out).
    pub hang_logs: bool,
    /// `verb resource` pairs the SelfSubjectAccessReview denies.
    pub denied: BTreeSet<String>,
    /// The namespace's labels.
    pub namespace_labels: BTreeMap<String, String>,
    /// What the run does to the pod's workspace before `workspace-out` reads it.
    pub run_changes: Option<fn(&std::path::Path)>,
    /// `exec` answers these bytes on stdout instead of running `workspace-out`.
    pub copy_back: Option<Vec<u8>>,
    /// `workspace-out`'s exec never answers (a copy back that hangs).
    pub hang_copy_back: bool,
}

impl Script {
    /// The runtime logs `lines` (one read), then ends with 0.
    pub(super) fn logging(lines: Vec<String>) -> Script {
        Script {
            log_chunks: vec![lines],
            ..Script::default()
        }
    }

    /// This script, the API answering `method resource` with 403.
    pub(super) fn forbidding(mut self, method: &str, resource: &str) -> Script {
        self.forbid
            .insert((method.to_string(), resource.to_string()));
        self
    }
}

#[derive(Default)]
struct State {
    script: Script,
    objects: BTreeMap<(String, String), Value>,
    calls: Vec<String>,
    chunks: VecDeque<Vec<String>>,
    uid: u64,
    hung: Vec<tower_test::mock::SendResponse<Response<Body>>>,
    /// The pod's workspace, once `workspace-in` has run.
    pod_workspace: Option<tempfile::TempDir>,
    /// `runtime-stop` was exec'd: the runtime ended (143).
    runtime_stopped: bool,
}

/// A running fake; cloned handles see the same state.
#[derive(Clone)]
pub(super) struct FakeCluster {
    state: Arc<Mutex<State>>,
}

impl FakeCluster {
    /// Starts the fake in namespace `ns`; the connection to it.
    pub(super) fn start(script: Script) -> (KubeApi, FakeCluster) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = State {
            chunks: script.log_chunks.iter().cloned().collect(),
            script,
            ..State::default()
        };
        let fake = FakeCluster {
            state: Arc::new(Mutex::new(state)),
        };
        let serving = fake.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                serving.serve(request, respond).await;
            }
        });
        let client = kube::Client::new(service, "ci-agents");
        (KubeApi::with_client(client, "ci-agents"), fake)
    }

    /// Every request so far.
    pub(super) fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }

    /// The objects that exist now, as `resource/name`.
    pub(super) fn existing(&self) -> Vec<String> {
        let state = self.state.lock().expect("lock");
        state
            .objects
            .keys()
            .map(|(r, n)| format!("{r}/{n}"))
            .collect()
    }

    /// An object, if it exists.
    pub(super) fn object(&self, resource: &str, name: &str) -> Option<Value> {
        let state = self.state.lock().expect("lock");
        state.objects.get(&(resource.into(), name.into())).cloned()
    }

    /// The pod's workspace, once the workspace went in.
    pub(super) fn pod_workspace(&self) -> Option<std::path::PathBuf> {
        let state = self.state.lock().expect("lock");
        state.pod_workspace.as_ref().map(|d| d.path().to_path_buf())
    }

    /// Puts `object` into the cluster as if someone had created it.
    pub(super) fn insert(&self, resource: &str, object: Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let mut state = self.state.lock().expect("lock");
        state.objects.insert((resource.into(), name), object);
    }

    async fn serve(
        &self,
        request: Request<Body>,
        respond: tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let (parts, body) = request.into_parts();
        let body = body.collect_bytes().await.expect("request body");
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let route = Route::of(parts.method.as_str(), &parts.uri);
        let mut state = self.state.lock().expect("lock");
        state.calls.push(route.call());
        let forbidden = (route.method.clone(), route.resource.clone());
        if state.script.forbid.contains(&forbidden) {
            let status = status(403, "Forbidden", "forbidden by the test's RBAC");
            respond.send_response(response(StatusCode::FORBIDDEN, &status));
            return;
        }
        if route.resource == "pods/log" && state.script.hang_logs {
            state.hung.push(respond);
            return;
        }
        let (code, answer) = state.answer(&route, body);
        match answer {
            Answer::Json(value) => respond.send_response(response(code, &value)),
            Answer::Text(text) => respond.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(text.into_bytes()))
                    .expect("response"),
            ),
        }
    }
}

enum Answer {
    Json(Value),
    Text(String),
}

/// A request's method, resource (`pods`, `pods/log`, `namespaces`, …), name and query.
struct Route {
    method: String,
    resource: String,
    name: Option<String>,
    query: BTreeMap<String, String>,
}

impl Route {
    fn of(method: &str, uri: &http::Uri) -> Route {
        let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        let path = uri.path();
        let (resource, name) = match path.split_once("/namespaces/") {
            Some((_, rest)) => {
                let parts: Vec<&str> = rest.split('/').collect();
                match parts.as_slice() {
                    [ns] => ("namespaces".to_string(), Some(ns.to_string())),
                    [_, resource] => (resource.to_string(), None),
                    [_, resource, name] => (resource.to_string(), Some(name.to_string())),
                    [_, resource, name, sub] => {
                        (format!("{resource}/{sub}"), Some(name.to_string()))
                    }
                    _ => (path.to_string(), None),
                }
            }
            None => (path.rsplit('/').next().unwrap_or("").to_string(), None),
        };
        Route {
            method: method.to_string(),
            resource,
            name,
            query,
        }
    }

    fn call(&self) -> String {
        let mut call = format!("{} {}", self.method, self.resource);
        if let Some(name) = &self.name {
            call.push('/');
            call.push_str(name);
        }
        if let Some(since) = self.query.get("sinceTime") {
            call.push_str(&format!("?since={since}"));
        }
        if self.query.get("follow").is_some_and(|f| f == "true") {
            call.push_str(" follow");
        }
        call
    }
}

impl State {
    fn answer(&mut self, route: &Route, body: Value) -> (StatusCode, Answer) {
        let key = |name: &str| (route.resource.clone(), name.to_string());
        match (route.method.as_str(), route.resource.as_str(), &route.name) {
            ("POST", "selfsubjectaccessreviews", _) => {
                (StatusCode::CREATED, Answer::Json(self.review(body)))
            }
            ("GET", "namespaces", Some(name)) => (
                StatusCode::OK,
                Answer::Json(json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": self.script.namespace_labels}})),
            ),
            ("GET", "pods/log", Some(_)) => {
                let lines = self.chunks.pop_front().unwrap_or_default();
                let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
                (StatusCode::OK, Answer::Text(text))
            }
            ("POST", resource, None) => {
                let created = self.create(resource, body);
                (StatusCode::CREATED, Answer::Json(created))
            }
            ("PUT", _, Some(name)) => {
                self.objects.insert(key(name), body.clone());
                (StatusCode::OK, Answer::Json(body))
            }
            ("GET", "pods", Some(name)) => match self.objects.get(&key(name)).cloned() {
                Some(pod) => (StatusCode::OK, Answer::Json(self.with_status(pod))),
                None => not_found(),
            },
            ("GET", _, None) => {
                let items = self.list(&route.resource, route.query.get("labelSelector"));
                (
                    StatusCode::OK,
                    Answer::Json(json!({"apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": "1"}, "items": items})),
                )
            }
            ("DELETE", _, Some(name)) => match self.objects.remove(&key(name)) {
                Some(object) => (StatusCode::OK, Answer::Json(object)),
                None => not_found(),
            },
            _ => not_found(),
        }
    }

    fn create(&mut self, resource: &str, mut object: Value) -> Value {
        self.uid += 1;
        object["metadata"]["uid"] = json!(format!("uid-{}", self.uid));
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if resource == "jobs" {
            let template = &object["spec"]["template"];
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-pod"), "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
            });
            self.objects
                .insert(("pods".into(), format!("{name}-pod")), pod);
        }
        self.objects.insert((resource.into(), name), object.clone());
        object
    }

    fn list(&self, resource: &str, selector: Option<&String>) -> Vec<Value> {
        let wanted: Vec<(&str, &str)> = selector
            .map(|s| s.split(',').filter_map(|kv| kv.split_once('=')).collect())
            .unwrap_or_default();
        self.objects
            .iter()
            .filter(|((r, _), _)| r == resource)
            .map(|(_, o)| o)
            .filter(|o| {
                wanted
                    .iter()
                    .all(|(k, v)| o["metadata"]["labels"][*k] == json!(v))
            })
            .map(|o| {
                if resource == "pods" {
                    self.with_status(o.clone())
                } else {
                    o.clone()
                }
            })
            .collect()
    }

    /// A pod with the scripted state of its first container (the runtime), which waits while
    /// the workspace has not gone into its first init container (`workspace-in`).
    fn with_status(&self, mut pod: Value) -> Value {
        let container = pod["spec"]["containers"][0]["name"].clone();
        let copies = pod["spec"]["initContainers"][0]["name"] == COPY_IN;
        let fed = self.pod_workspace.is_some();
        let state = match (&self.script.waiting, self.chunks.is_empty()) {
            (_, _) if copies && !fed => json!({"waiting": {"reason": "PodInitializing"}}),
            (_, _) if self.runtime_stopped => {
                json!({"terminated": {"exitCode": 143, "reason": "Error"}})
            }
            (Some(reason), _) => json!({"waiting": {"reason": reason}}),
            (None, false) => json!({"running": {}}),
            (None, true) => json!({"terminated": {"exitCode": self.script.exit_code,
                "reason": self.script.terminated_reason}}),
        };
        let status = |name: &Value, state: Value| {
            json!({"name": name, "state": state, "ready": true, "restartCount": 0,
                "image": "i", "imageID": ""})
        };
        pod["status"] = json!({"phase": "Running",
            "containerStatuses": [status(&container, state)]});
        if copies {
            let copy_in = if fed {
                json!({"terminated": {"exitCode": 0}})
            } else {
                json!({"running": {}})
            };
            pod["status"]["initContainerStatuses"] = json!([status(&json!(COPY_IN), copy_in)]);
        }
        pod
    }

    /// The command line of `container` in pod `pod`, as its spec has it.
    fn command_of(&self, pod: &str, container: &str) -> Vec<String> {
        let spec = self
            .objects
            .get(&("pods".to_string(), pod.to_string()))
            .map(|p| p["spec"].clone())
            .unwrap_or_default();
        ["initContainers", "containers"]
            .iter()
            .filter_map(|k| spec[k].as_array())
            .flatten()
            .find(|c| c["name"] == container)
            .and_then(|c| serde_json::from_value(c["command"].clone()).ok())
            .unwrap_or_default()
    }

    /// The runtime's container of pod `pod` (its first container).
    fn runtime_of(&self, pod: &str) -> String {
        let key = ("pods".to_string(), pod.to_string());
        let name = self
            .objects
            .get(&key)
            .map(|p| p["spec"]["containers"][0]["name"].clone());
        name.and_then(|n| n.as_str().map(String::from))
            .unwrap_or_default()
    }

    fn review(&self, mut review: Value) -> Value {
        let attributes = &review["spec"]["resourceAttributes"];
        let mut resource = attributes["resource"].as_str().unwrap_or("").to_string();
        if let Some(sub) = attributes["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let asked = format!("{} {resource}", attributes["verb"].as_str().unwrap_or(""));
        review["status"] = json!({"allowed": !self.script.denied.contains(&asked)});
        review
    }
}

fn not_found() -> (StatusCode, Answer) {
    (
        StatusCode::NOT_FOUND,
        Answer::Json(status(404, "NotFound", "not found")),
    )
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

fn response(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).expect("json")))
        .expect("response")
}

/// Parses `command` (our binary's command line, as a pod has it) with the real CLI.
/// A container's command line as the executable our images carry reads it.
pub(super) fn parse(command: &[String]) -> crate::cli::RoleCommand {
    use clap::Parser;
    crate::cli::RolesCli::try_parse_from(command)
        .unwrap_or_else(|e| panic!("{command:?} does not parse: {e}"))
        .command
}

fn refused(what: &str, message: String) -> KubeError {
    KubeError::Api {
        verb: "create".into(),
        resource: what.into(),
        namespace: "ci-agents".into(),
        message,
    }
}

impl PodStreams for FakeCluster {
    fn attach_stdin<'a>(
        &'a self,
        pod: &'a str,
        container: &'a str,
        mut input: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    ) -> futures::future::BoxFuture<'a, Result<(), KubeError>> {
        Box::pin(async move {
            let command = {
                let mut state = self.state.lock().expect("lock");
                state.calls.push(format!("ATTACH pods/{pod}/{container}"));
                let forbidden = ("POST".to_string(), "pods/attach".to_string());
                if state.script.forbid.contains(&forbidden) {
                    return Err(refused("pods/attach", "403 Forbidden".into()));
                }
                state.command_of(pod, container)
            };
            let mut tar = Vec::new();
            while let Some(chunk) = input.recv().await {
                tar.extend_from_slice(&chunk);
            }
            let crate::cli::RoleCommand::WorkspaceIn(mut args) = parse(&command) else {
                return Err(refused(
                    "pods/attach",
                    format!("{container} runs {command:?}"),
                ));
            };
            let dir = tempfile::tempdir().expect("tempdir");
            args.workspace = dir.path().to_path_buf();
            crate::commands::roles::copy_in(&args, &tar[..])
                .map_err(|e| refused("pods/attach", e.to_string()))?;
            self.state.lock().expect("lock").pod_workspace = Some(dir);
            Ok(())
        })
    }

    fn exec_stdout<'a>(
        &'a self,
        pod: &'a str,
        container: &'a str,
        command: Vec<String>,
        output: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> futures::future::BoxFuture<'a, Result<(), KubeError>> {
        Box::pin(async move {
            let (scripted, changes, dir, hang) = {
                let mut state = self.state.lock().expect("lock");
                let role = command.get(1).cloned().unwrap_or_default();
                state
                    .calls
                    .push(format!("EXEC pods/{pod}/{container} {role}"));
                if matches!(parse(&command), crate::cli::RoleCommand::RuntimeStop) {
                    state.runtime_stopped = container == state.runtime_of(pod);
                    return Ok(());
                }
                let dir = state.pod_workspace.as_ref().map(|d| d.path().to_path_buf());
                (
                    state.script.copy_back.clone(),
                    state.script.run_changes,
                    dir,
                    state.script.hang_copy_back,
                )
            };
            if hang {
                std::future::pending::<()>().await;
            }
            let dir = dir.ok_or_else(|| refused("pods/exec", "no workspace went in".into()))?;
            let bytes = match scripted {
                Some(bytes) => bytes,
                None => {
                    if let Some(change) = changes {
                        change(&dir);
                    }
                    let crate::cli::RoleCommand::WorkspaceOut(mut args) = parse(&command) else {
                        return Err(refused("pods/exec", format!("{command:?}")));
                    };
                    args.workspace = dir;
                    let mut out = Vec::new();
                    crate::commands::roles::copy_out(&args, &mut out)
                        .map_err(|e| refused("pods/exec", e.to_string()))?;
                    out
                }
            };
            for chunk in bytes.chunks(4096) {
                if output
                    .send(bytes::Bytes::copy_from_slice(chunk))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Ok(())
        })
    }
}
