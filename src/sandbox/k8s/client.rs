//! The one caller of the Kubernetes API (`kube`): finding the cluster as kubectl does, and the
//! few calls a run, `gc` and `doctor` make. Everything else in `sandbox/k8s/` works on
//! `serde_json::Value` objects (what `manifest` builds) and on this module's small answers.

use std::path::PathBuf;

use futures::AsyncBufRead;
use k8s_openapi::api::core::v1::{ContainerState, Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, AttachParams, DeleteParams, DynamicObject, ListParams, LogParams, PostParams,
};
use kube::client::UpgradeConnectionError;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// Where the cluster is, as kubectl finds it: `--kubeconfig`, else `KUBECONFIG`, else
/// `~/.kube/config`, else the pod's service account (in-cluster); `--context` picks a context.
#[derive(Debug, Clone, Default)]
pub(crate) struct KubeTarget {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `-n`; `None`: the context's namespace, else `default`.
    pub namespace: Option<String>,
}

/// Why the cluster did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No kubeconfig and not in a pod, or a broken kubeconfig.
    #[error(
        "cannot find the Kubernetes cluster: {0}\n  hint: pass --kubeconfig PATH or --context NAME, set KUBECONFIG, or write ~/.kube/config (what `kubectl config view` shows)"
    )]
    Config(String),
    /// The API refused: RBAC.
    #[error(
        "the cluster refused to {verb} {resource} in namespace {namespace} (403 Forbidden: {message})\n  hint: bind the Role of README \"Running on Kubernetes\" to your user in {namespace}; `perstack-sandbox doctor --backend kubernetes -n {namespace}` lists every permission a run needs"
    )]
    Forbidden {
        /// `create`, `delete`, …
        verb: String,
        /// `pods`, `leases`, …
        resource: String,
        /// The namespace.
        namespace: String,
        /// The API's message.
        message: String,
    },
    /// Any other failure of a call.
    #[error("Kubernetes API: cannot {verb} {resource} in namespace {namespace}: {message}")]
    Api {
        /// `create`, `delete`, …
        verb: String,
        /// `pods`, `leases`, …
        resource: String,
        /// The namespace.
        namespace: String,
        /// What the API or the connection said.
        message: String,
    },
    /// The plan cannot run on Kubernetes (as this backend stands).
    #[error("cannot run this on Kubernetes: {0}")]
    Plan(String),
    /// The run pod could not start or failed before its runtime ran.
    #[error("the run pod {pod} did not start: {reason}")]
    PodFailed {
        /// The pod.
        pod: String,
        /// Its status' reason and message.
        reason: String,
    },
    /// The workspace is bigger than the pod's workspace can hold.
    #[error(
        "the workspace {} holds {bytes} bytes in {entries} entries; a Kubernetes run's workspace (an emptyDir) takes at most {max_bytes} bytes and {max_entries} entries\n  hint: run in a smaller folder (--workspace), or move build outputs and caches out of it; nothing was created in the cluster",
        workspace.display()
    )]
    WorkspaceTooBig {
        /// The workspace.
        workspace: PathBuf,
        /// Bytes of its files.
        bytes: u64,
        /// Its files, folders and links.
        entries: u64,
        /// The emptyDir's size limit.
        max_bytes: u64,
        /// The most entries a copy takes.
        max_entries: u64,
    },
    /// The workspace could not be copied into the run pod.
    #[error("cannot copy the workspace into the run pod: {0}")]
    CopyIn(String),
    /// The workspace could not be copied back (or was refused).
    #[error(
        "the workspace was not copied back from pod {pod}: {why}\n  hint: when the archive is refused, nothing of it is written to {}; the run's events and checkpoints are stored as usual",
        workspace.display()
    )]
    CopyBack {
        /// The pod.
        pod: String,
        /// The host's workspace.
        workspace: PathBuf,
        /// Why.
        why: String,
    },
    /// The runtime's log could not be read back after several attempts.
    #[error(
        "lost the runtime's log of pod {pod} after {attempts} reconnects: {last}\n  hint: the events so far are stored; the pod keeps running until its deadline or `perstack-sandbox gc --backend kubernetes`"
    )]
    LogLost {
        /// The pod.
        pod: String,
        /// Reconnects tried.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// A kind of object this program makes, with what its API path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    /// `group/version`, or `v1`.
    pub api_version: &'static str,
    /// `Pod`, …
    pub kind: &'static str,
    /// The resource (`pods`).
    pub plural: &'static str,
}

/// Every kind a run makes, in the order a run's cleanup deletes them: what runs code first
/// (the Job and its pod, the proxy), then the fences and the Secret, the Lease last.
pub(crate) const KINDS: [Kind; 7] = [
    Kind::new("batch/v1", "Job", "jobs"),
    Kind::new("v1", "Pod", "pods"),
    Kind::new("apps/v1", "Deployment", "deployments"),
    Kind::new("v1", "Service", "services"),
    Kind::new("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind::new("v1", "Secret", "secrets"),
    Kind::new("coordination.k8s.io/v1", "Lease", "leases"),
];

impl Kind {
    const fn new(api_version: &'static str, kind: &'static str, plural: &'static str) -> Kind {
        Kind {
            api_version,
            kind,
            plural,
        }
    }

    /// The kind of `object` (by `apiVersion` and `kind`), if it is one of [`KINDS`].
    pub(crate) fn of(object: &Value) -> Option<Kind> {
        let version = object["apiVersion"].as_str()?;
        let kind = object["kind"].as_str()?;
        KINDS
            .into_iter()
            .find(|k| k.api_version == version && k.kind == kind)
    }

    fn resource(self) -> ApiResource {
        let (group, version) = self.api_version.split_once('/').unwrap_or(("", "v1"));
        let gvk = GroupVersionKind::gvk(group, version, self.kind);
        ApiResource::from_gvk_with_plural(&gvk, self.plural)
    }
}

/// The state of one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContainerPhase {
    /// Not started; the reason (`ContainerCreating`, `ErrImagePull`, …) if any.
    Waiting(Option<String>),
    /// Running.
    Running,
    /// Ended with this exit code (and reason, e.g. `OOMKilled`).
    Terminated(i32, Option<String>),
}

/// A pod as the run watches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodView {
    /// Its name.
    pub name: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    pub phase: String,
    /// The pod's reason and message, when it failed as a whole (e.g. `DeadlineExceeded`).
    pub reason: Option<String>,
    /// The watched container; `None`: no status for it yet.
    pub container: Option<ContainerPhase>,
}

/// A connection to one namespace of a cluster.
#[derive(Clone)]
pub(crate) struct KubeApi {
    client: kube::Client,
    namespace: String,
}

impl KubeApi {
    /// Finds the cluster as [`KubeTarget`] says and connects (no request is made yet).
    pub(crate) async fn connect(target: &KubeTarget) -> Result<KubeApi, KubeError> {
        let options = KubeConfigOptions {
            context: target.context.clone(),
            ..Default::default()
        };
        let config = match &target.kubeconfig {
            Some(path) => {
                let file =
                    Kubeconfig::read_from(path).map_err(|e| KubeError::Config(e.to_string()))?;
                kube::Config::from_custom_kubeconfig(file, &options).await
            }
            None if target.context.is_some() => kube::Config::from_kubeconfig(&options).await,
            None => return Self::inferred(target).await,
        }
        .map_err(|e| KubeError::Config(e.to_string()))?;
        Self::from_config(config, target)
    }

    async fn inferred(target: &KubeTarget) -> Result<KubeApi, KubeError> {
        let config = kube::Config::infer()
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?;
        Self::from_config(config, target)
    }

    fn from_config(config: kube::Config, target: &KubeTarget) -> Result<KubeApi, KubeError> {
        let namespace = target
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client =
            kube::Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))?;
        Ok(KubeApi { client, namespace })
    }

    /// A connection over `client` (the tests' mocked API server).
    #[cfg(test)]
    pub(crate) fn with_client(client: kube::Client, namespace: &str) -> KubeApi {
        KubeApi {
            client,
            namespace: namespace.to_string(),
        }
    }

    /// The namespace every call is in.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &kind.resource())
    }

    /// Classifies a failed call: 403 becomes [`KubeError::Forbidden`].
    pub(crate) fn error(&self, verb: &str, resource: &str, error: kube::Error) -> KubeError {
        let (verb, resource, namespace) = (verb.into(), resource.into(), self.namespace.clone());
        match error {
            kube::Error::Api(status) if status.code == 403 => KubeError::Forbidden {
                verb,
                resource,
                namespace,
                message: status.message,
            },
            // `attach` and `exec` are websocket upgrades: kube reads only the status of a
            // refused one, not the API's Status in its body.
            kube::Error::UpgradeConnection(UpgradeConnectionError::ProtocolSwitch(code))
                if code.as_u16() == 403 =>
            {
                KubeError::Forbidden {
                    verb,
                    resource,
                    namespace,
                    message: "the API server refused the stream's upgrade".into(),
                }
            }
            other => KubeError::Api {
                verb,
                resource,
                namespace,
                message: other.to_string(),
            },
        }
    }

    /// A failure of a stream of `resource` (`pods/attach`, `pods/exec`) once it was opened.
    fn stream_error(&self, resource: &str, error: std::io::Error) -> KubeError {
        KubeError::Api {
            verb: "create".into(),
            resource: resource.into(),
            namespace: self.namespace.clone(),
            message: error.to_string(),
        }
    }

    /// Creates `object` (one of [`KINDS`]); the created object (with its `uid`) comes back.
    pub(crate) async fn create(&self, object: &Value) -> Result<Value, KubeError> {
        let kind = Kind::of(object).ok_or_else(|| KubeError::Api {
            verb: "create".into(),
            resource: object["kind"].to_string(),
            namespace: self.namespace.clone(),
            message: "not a kind this program makes".into(),
        })?;
        let typed: DynamicObject = serde_json::from_value(object.clone())
            .map_err(|e| self.error("create", kind.plural, kube::Error::SerdeError(e)))?;
        let created = self
            .api(kind)
            .create(&PostParams::default(), &typed)
            .await
            .map_err(|e| self.error("create", kind.plural, e))?;
        serde_json::to_value(created)
            .map_err(|e| self.error("create", kind.plural, kube::Error::SerdeError(e)))
    }

    /// Replaces `object` (by name): the Lease's renewal.
    pub(crate) async fn replace(&self, object: &Value) -> Result<(), KubeError> {
        let kind = Kind::of(object).unwrap_or(KINDS[6]);
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let typed: DynamicObject = serde_json::from_value(object.clone())
            .map_err(|e| self.error("update", kind.plural, kube::Error::SerdeError(e)))?;
        self.api(kind)
            .replace(name, &PostParams::default(), &typed)
            .await
            .map(|_| ())
            .map_err(|e| self.error("update", kind.plural, e))
    }

    /// The objects of `kind` matching `selector`.
    pub(crate) async fn list(&self, kind: Kind, selector: &str) -> Result<Vec<Value>, KubeError> {
        let list = self
            .api(kind)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| self.error("list", kind.plural, e))?;
        list.items
            .into_iter()
            .map(|o| {
                serde_json::to_value(o)
                    .map_err(|e| self.error("list", kind.plural, kube::Error::SerdeError(e)))
            })
            .collect()
    }

    /// Deletes `kind` `name`, its dependents in the background; gone already is no error.
    pub(crate) async fn delete(&self, kind: Kind, name: &str) -> Result<(), KubeError> {
        match self
            .api(kind)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.error("delete", kind.plural, e)),
        }
    }

    /// The pods matching `selector`, with `container`'s state (a container or an init
    /// container).
    pub(crate) async fn pods(
        &self,
        selector: &str,
        container: &str,
    ) -> Result<Vec<PodView>, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| self.error("list", "pods", e))?;
        Ok(pods.items.iter().map(|p| pod_view(p, container)).collect())
    }

    /// Pod `name`, with `container`'s state.
    pub(crate) async fn pod(&self, name: &str, container: &str) -> Result<PodView, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod = api
            .get(name)
            .await
            .map_err(|e| self.error("get", "pods", e))?;
        Ok(pod_view(&pod, container))
    }

    /// `container`'s log of `pod`, each line with its timestamp (`timestamps=true`), from
    /// `since` on (whole seconds: the API may repeat lines of that second); `follow`: until the
    /// container ends or the connection drops.
    pub(crate) async fn log(
        &self,
        pod: &str,
        container: &str,
        since: Option<Timestamp>,
        follow: bool,
    ) -> Result<impl AsyncBufRead + Unpin + use<>, KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = LogParams {
            container: Some(container.to_string()),
            follow,
            timestamps: true,
            since_time: since,
            ..Default::default()
        };
        let reader = api
            .log_stream(pod, &params)
            .await
            .map_err(|e| self.error("get", "pods/log", e))?;
        Ok(Box::pin(reader))
    }

    /// Whether the caller may `verb` `resource` (`group`: `""` for the core API) in the
    /// namespace (`resource/subresource` for a subresource): a SelfSubjectAccessReview. `Err`:
    /// the review itself failed.
    pub(crate) async fn may(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
    ) -> Result<bool, KubeError> {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (resource, None),
        };
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(self.namespace.clone()),
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    subresource,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| self.error("create", "selfsubjectaccessreviews", e))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// The namespace's labels (the Pod Security levels are among them).
    pub(crate) async fn namespace_labels(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, KubeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespace = api
            .get(&self.namespace)
            .await
            .map_err(|e| self.error("get", "namespaces", e))?;
        Ok(namespace.metadata.labels.unwrap_or_default())
    }
}

/// `pod` as the run watches it, with `container`'s state.
fn pod_view(pod: &Pod, container: &str) -> PodView {
    let status = pod.status.clone().unwrap_or_default();
    let reason = match (&status.reason, &status.message) {
        (None, None) => None,
        (r, m) => Some(format!(
            "{}{}",
            r.as_deref().unwrap_or(""),
            m.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        )),
    };
    // Init containers (sidecars, the workspace's copy) are looked at too.
    let container = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(status.init_container_statuses.unwrap_or_default())
        .find(|c| c.name == container)
        .and_then(|c| c.state)
        .map(container_phase);
    PodView {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status.phase.unwrap_or_default(),
        reason,
        container,
    }
}

fn container_phase(state: ContainerState) -> ContainerPhase {
    if let Some(t) = state.terminated {
        ContainerPhase::Terminated(t.exit_code, t.reason)
    } else if state.running.is_some() {
        ContainerPhase::Running
    } else {
        ContainerPhase::Waiting(state.waiting.and_then(|w| w.reason))
    }
}

/// The pod's byte streams over the API's websockets (`attach`, `exec`; kube offers the
/// subprotocols `v5.channel.k8s.io` and `v4.channel.k8s.io`): bytes in, bytes out, and the
/// API's Status on channel 3, which is the only word that a stream ran to its end. Tested
/// against a websocket server on loopback that answers as the API server does
/// (`sandbox/k8s/streams_tests.rs`).
impl super::workspace::PodStreams for KubeApi {
    fn attach_stdin<'a>(
        &'a self,
        pod: &'a str,
        container: &'a str,
        mut input: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    ) -> futures::future::BoxFuture<'a, Result<(), KubeError>> {
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            let failed = |e: std::io::Error| self.stream_error("pods/attach", e);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
            let params = AttachParams::default()
                .container(container)
                .stdin(true)
                .stdout(false)
                .stderr(false);
            let mut attached = api
                .attach(pod, &params)
                .await
                .map_err(|e| self.error("create", "pods/attach", e))?;
            let (Some(mut stdin), Some(status)) = (attached.stdin(), attached.take_status()) else {
                return Err(failed(std::io::Error::other("no stdin")));
            };
            while let Some(chunk) = input.recv().await {
                stdin.write_all(&chunk).await.map_err(failed)?;
            }
            // Dropping stdin ends it: v5 sends the close signal for stdin, v4 closes the
            // websocket (and so loses the Status: its absence is no failure here; the init
            // container's exit is the pod's to report).
            stdin.shutdown().await.map_err(failed)?;
            drop(stdin);
            attached
                .join()
                .await
                .map_err(|e| failed(std::io::Error::other(e)))?;
            match status.await {
                Some(status) => succeeded(status, &[]).map_err(failed),
                None => Ok(()),
            }
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
            use tokio::io::AsyncReadExt;
            let failed = |e: std::io::Error| self.stream_error("pods/exec", e);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
            let params = AttachParams::default()
                .container(container)
                .stdin(false)
                .stdout(true)
                .stderr(true);
            let mut process = api
                .exec(pod, command, &params)
                .await
                .map_err(|e| self.error("create", "pods/exec", e))?;
            let (Some(mut stdout), Some(mut stderr), Some(status)) =
                (process.stdout(), process.stderr(), process.take_status())
            else {
                return Err(failed(std::io::Error::other("no stdout")));
            };
            let relay = async {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let read = stdout.read(&mut buffer).await?;
                    if read == 0 {
                        return Ok::<(), std::io::Error>(());
                    }
                    let chunk = bytes::Bytes::copy_from_slice(&buffer[..read]);
                    if output.send(chunk).await.is_err() {
                        // The reader gave up (over its cap): stop reading.
                        return Ok(());
                    }
                }
            };
            let mut said = Vec::new();
            let (relayed, _) = tokio::join!(relay, stderr.read_to_end(&mut said));
            relayed.map_err(failed)?;
            drop(output);
            // The API server's Status on the error channel is the only word that the command
            // ran to its end; a connection that drops without one is a failure (a cut archive
            // must never pass for a whole one).
            match status.await {
                Some(status) => succeeded(status, &said).map_err(failed),
                None => Err(failed(std::io::Error::other(format!(
                    "the exec ended without its status ({})",
                    String::from_utf8_lossy(&said).trim()
                )))),
            }
        })
    }
}

/// `Ok` for a `Success` Status; else its message, with what the command said on stderr.
fn succeeded(
    status: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
    stderr: &[u8],
) -> std::io::Result<()> {
    if status.status.as_deref() == Some("Success") {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "{} ({})",
        status.message.unwrap_or_default(),
        String::from_utf8_lossy(stderr).trim()
    )))
}
