//! One controlled run on a cluster, as a pipeline of stages: [`RunObjects`] (what to create,
//! from `manifest`'s builders, the same ones `export kubernetes` uses), [`launch`] (create them
//! in order under a Lease), the workspace copied in (to the init container `workspace-in`,
//! before any other container starts), watch (wait for the runtime,
//! [`follow`](super::logs::follow) its log while the Lease is renewed), the workspace copied
//! back (after the runtime's end, from base-skill; or, on Ctrl-C or the time limit while the
//! runtime runs, after `runtime-stop` has ended it), and [`remove`] (delete everything of the
//! run by label), which the controller calls after every ending (`k8s/backend.rs`).

use std::time::Duration;

use serde_json::{Value, json};

use super::client::{ContainerPhase, KINDS, KubeApi, KubeError};
use super::logs::{Pacing, follow};
use super::manifest::{self, Export, ManifestError};
use super::workspace::{COPY_IN, CopiedBack, PodStreams, WorkspaceCopy};
use crate::contract::paths::BINARY_PATH;
use crate::sandbox::plan::RunPlan;

/// What a controlled run creates: the Lease first, then the objects it owns in the order they
/// are created (the Secret, the fences, the proxy, the Job).
#[derive(Debug, Clone)]
pub(crate) struct RunObjects {
    /// The run's name: every object's `app.kubernetes.io/instance` and the Lease's name.
    pub name: String,
    /// The Lease.
    pub lease: Value,
    /// The rest, in creation order.
    pub owned: Vec<Value>,
    /// The runtime's container in the run pod.
    pub runtime_container: String,
}

impl RunObjects {
    /// The objects of `plan` as `export` names them, with a Secret holding `secrets` (query,
    /// variables, tokens) and a Lease held by `holder` for `lease_seconds`.
    pub(crate) fn new(
        plan: &RunPlan,
        export: &Export,
        secrets: &std::collections::BTreeMap<String, String>,
        holder: &str,
        lease_seconds: u32,
    ) -> Result<RunObjects, ManifestError> {
        let mut owned = vec![manifest::secret(export, secrets)];
        owned.extend(manifest::objects(plan, export)?);
        Ok(RunObjects {
            name: export.name.clone(),
            lease: manifest::lease(export, holder, lease_seconds, &now()),
            owned,
            runtime_container: manifest::runtime_container(plan),
        })
    }
}

/// The current time as the Lease's fields write it (RFC 3339, microseconds).
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// How the runtime ended: its exit code and reason.
pub(crate) type RuntimeEnd = (i32, Option<String>);

/// How the watch of a run ended.
#[derive(Debug)]
pub(crate) enum Watched {
    /// The runtime ended; what the workspace's copy back did (`None`: no copy).
    Ended(RuntimeEnd, Option<CopiedBack>),
    /// The run was stopped before its runtime's end; the copy back's result (`None`: nothing
    /// to bring back — no copy, or the runtime had not started).
    Stopped(Why, Option<Result<CopiedBack, KubeError>>),
}

/// Why a run was stopped before its runtime's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// Ctrl-C.
    Interrupted,
    /// Its time limit.
    TimedOut,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Why::Interrupted => "interrupted",
            Why::TimedOut => "the run's time limit is reached",
        })
    }
}

/// How long a copy back may take, the stop of the runtime before it included: the pod's
/// `workspace-hold` outlives the time limit by more (`backend.rs`).
pub(crate) const COPY_BACK_LIMIT: Duration = Duration::from_secs(300);

/// How long the runtime may take to show it ended after `runtime-stop`.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Ctrl-C's word to the run under way. While its runtime runs with a workspace to bring back
/// (armed), the first Ctrl-C stops it and brings the workspace back; otherwise there is
/// nothing to wait for and the controller stops at once.
#[derive(Debug)]
pub(crate) struct StopRequest {
    armed: std::sync::atomic::AtomicBool,
    asked: tokio::sync::watch::Sender<bool>,
}

impl Default for StopRequest {
    fn default() -> StopRequest {
        StopRequest {
            armed: std::sync::atomic::AtomicBool::new(false),
            asked: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl StopRequest {
    /// Asks the run to stop; `false`: nothing is armed, so nothing will be brought back.
    pub(crate) fn ask(&self) -> bool {
        let armed = self.armed.load(std::sync::atomic::Ordering::SeqCst);
        if armed {
            self.asked.send_replace(true);
        }
        armed
    }

    /// Armed (when `on`) until the guard is dropped; a stale request is forgotten.
    fn arm(&self, on: bool) -> Disarm<'_> {
        self.asked.send_replace(false);
        self.armed.store(on, std::sync::atomic::Ordering::SeqCst);
        Disarm(self)
    }

    async fn asked(&self) {
        let mut asked = self.asked.subscribe();
        if asked.wait_for(|asked| *asked).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

struct Disarm<'a>(&'a StopRequest);

impl Drop for Disarm<'_> {
    fn drop(&mut self) {
        self.0
            .armed
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How a run is watched.
pub(crate) struct Watching<'a> {
    /// The workspace's copy and the pod's streams it goes over.
    pub copy: Option<(&'a WorkspaceCopy, &'a dyn PodStreams)>,
    /// Log following.
    pub pacing: Pacing,
    /// How often the Lease is renewed.
    pub renew_every: Duration,
    /// Ctrl-C's word.
    pub stop: &'a StopRequest,
    /// The run's time limit.
    pub deadline: tokio::time::Instant,
}

/// Launches `objects` and watches the run to the runtime's end: the workspace goes in first,
/// the runtime's log lines go to `on_line`, and after its end the workspace comes back. Ctrl-C
/// ([`StopRequest::ask`]) or the deadline while the runtime runs stops it (`runtime-stop`)
/// and brings the workspace back all the same, under [`COPY_BACK_LIMIT`]. The Lease is renewed
/// meanwhile. Never removes anything, also when dropped midway (a second Ctrl-C): the
/// controller calls [`remove`] after every ending (`Backend::remove_run`).
pub(crate) async fn launch_and_watch(
    api: &KubeApi,
    objects: &RunObjects,
    how: Watching<'_>,
    on_line: &mut (dyn FnMut(String) + Send),
) -> Result<Watched, KubeError> {
    let Ok(lease) = tokio::time::timeout_at(how.deadline, launch(api, objects)).await else {
        return Ok(Watched::Stopped(Why::TimedOut, None));
    };
    let lease = lease?;
    let watch = async {
        let started = started_runtime(api, objects, how.copy, how.pacing.poll);
        let Ok(pod) = tokio::time::timeout_at(how.deadline, started).await else {
            return Ok(Watched::Stopped(Why::TimedOut, None));
        };
        let pod = pod?;
        let _armed = how.stop.arm(how.copy.is_some());
        let stopped = async {
            tokio::select! {
                () = how.stop.asked() => Why::Interrupted,
                () = tokio::time::sleep_until(how.deadline) => Why::TimedOut,
            }
        };
        let container = &objects.runtime_container;
        let ended = tokio::select! {
            ended = follow(api, &pod, container, how.pacing, on_line) => ended?,
            why = stopped => {
                let copied = match how.copy {
                    Some((copy, streams)) => Some(
                        stop_and_copy_back(api, copy, streams, &pod, container, how.pacing.poll, why).await,
                    ),
                    None => None,
                };
                return Ok(Watched::Stopped(why, copied));
            }
        };
        let copied = match how.copy {
            Some((copy, streams)) => {
                Some(bounded(copy, &pod, copy.copy_back(streams, &pod)).await?)
            }
            None => None,
        };
        Ok(Watched::Ended(ended, copied))
    };
    tokio::select! {
        ended = watch => ended,
        failed = renew(api, lease, how.renew_every) => Err(failed),
    }
}

/// The workspace copied in (when there is a copy), then the run pod's name once its runtime
/// has started.
async fn started_runtime(
    api: &KubeApi,
    objects: &RunObjects,
    copy: Option<(&WorkspaceCopy, &dyn PodStreams)>,
    poll: Duration,
) -> Result<String, KubeError> {
    if let Some((copy, streams)) = copy {
        let pod = started_pod(api, objects, COPY_IN, poll).await?;
        copy.copy_in(streams, &pod).await?;
    }
    started_pod(api, objects, &objects.runtime_container, poll).await
}

/// `copying` under [`COPY_BACK_LIMIT`].
async fn bounded(
    copy: &WorkspaceCopy,
    pod: &str,
    copying: impl std::future::Future<Output = Result<CopiedBack, KubeError>>,
) -> Result<CopiedBack, KubeError> {
    tokio::time::timeout(COPY_BACK_LIMIT, copying)
        .await
        .unwrap_or_else(|_| {
            Err(copy.failed(
                pod,
                format!(
                    "it took more than {} s; nothing of it was written",
                    COPY_BACK_LIMIT.as_secs()
                ),
            ))
        })
}

/// A run stopped while its runtime runs: the runtime stopped, so nothing writes the workspace
/// any more (base-skill gets no calls), then the workspace copied back as after a runtime's
/// end — or, when the runtime cannot be stopped, nothing read back.
async fn stop_and_copy_back(
    api: &KubeApi,
    copy: &WorkspaceCopy,
    streams: &dyn PodStreams,
    pod: &str,
    runtime: &str,
    poll: Duration,
    why: Why,
) -> Result<CopiedBack, KubeError> {
    tracing::warn!(
        "{why}: stopping the runtime of pod {pod}, then copying the workspace back (at most {} s; Ctrl-C again skips it)",
        COPY_BACK_LIMIT.as_secs()
    );
    let work = async {
        stop_runtime(api, streams, pod, runtime, poll)
            .await
            .map_err(|e| {
                copy.failed(
                    pod,
                    format!("the runtime could not be stopped, so nothing was read back: {e}"),
                )
            })?;
        copy.copy_back(streams, pod).await
    };
    bounded(copy, pod, work).await
}

/// Ends the runtime at once: `runtime-stop` exec'd in its container (SIGTERM to its PID 1,
/// which the runtime handles), then waits until the pod shows it ended.
async fn stop_runtime(
    api: &KubeApi,
    streams: &dyn PodStreams,
    pod: &str,
    container: &str,
    poll: Duration,
) -> Result<(), KubeError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
    let command = vec![BINARY_PATH.to_string(), "runtime-stop".to_string()];
    let drain = async { while receiver.recv().await.is_some() {} };
    // The exec may end without its Status when the container goes down under it; the pod's
    // state is the word that the runtime ended.
    let (signalled, ()) = tokio::join!(streams.exec_stdout(pod, container, command, sender), drain);
    let give_up = tokio::time::Instant::now() + STOP_WAIT;
    loop {
        if let Some(ContainerPhase::Terminated(..)) = api.pod(pod, container).await?.container {
            return Ok(());
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(match signalled {
                Err(e) => KubeError::Plan(format!("runtime-stop failed: {e}")),
                Ok(()) => KubeError::Plan(format!(
                    "the runtime still runs {} s after runtime-stop",
                    STOP_WAIT.as_secs()
                )),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Creates the Lease, then each owned object with the Lease as its owner (so the cluster
/// deletes them with it); the created Lease comes back.
pub(crate) async fn launch(api: &KubeApi, objects: &RunObjects) -> Result<Value, KubeError> {
    let lease = api.create(&objects.lease).await?;
    let owner = json!([{
        "apiVersion": lease["apiVersion"],
        "kind": "Lease",
        "name": lease["metadata"]["name"],
        "uid": lease["metadata"]["uid"],
    }]);
    for object in &objects.owned {
        let mut object = object.clone();
        object["metadata"]["ownerReferences"] = owner.clone();
        api.create(&object).await?;
    }
    Ok(lease)
}

/// Renews `lease` every `every` until a renewal fails (a refusal, or the Lease is gone: gc
/// took the run); never ends otherwise.
async fn renew(api: &KubeApi, mut lease: Value, every: Duration) -> KubeError {
    loop {
        tokio::time::sleep(every).await;
        lease["spec"]["renewTime"] = json!(now());
        if let Some(metadata) = lease["metadata"].as_object_mut() {
            metadata.remove("resourceVersion");
        }
        if let Err(e) = api.replace(&lease).await {
            return e;
        }
    }
}

/// Image pull and configuration failures a pod does not recover from by itself.
const FATAL_WAITING: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Waits until the Job's pod has started `container` (or it has ended already); its name.
async fn started_pod(
    api: &KubeApi,
    objects: &RunObjects,
    container: &str,
    poll: Duration,
) -> Result<String, KubeError> {
    let selector = format!(
        "{},sandbox.perstack.io/role=run",
        manifest::instance_selector(&objects.name)
    );
    loop {
        for pod in api.pods(&selector, container).await? {
            let failed = |reason: String| KubeError::PodFailed {
                pod: pod.name.clone(),
                reason,
            };
            match &pod.container {
                Some(ContainerPhase::Running | ContainerPhase::Terminated(..)) => {
                    return Ok(pod.name);
                }
                Some(ContainerPhase::Waiting(Some(reason)))
                    if FATAL_WAITING.contains(&reason.as_str()) =>
                {
                    return Err(failed(reason.clone()));
                }
                _ if pod.phase == "Failed" => {
                    return Err(failed(
                        pod.reason.clone().unwrap_or_else(|| "Failed".into()),
                    ));
                }
                _ => {}
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// Deletes every object of run `name`, kind by kind ([`KINDS`]' order: what runs code first,
/// the Lease last); what failed comes back (what is gone already is no failure).
pub(crate) async fn remove(api: &KubeApi, name: &str) -> Vec<KubeError> {
    let selector = manifest::instance_selector(name);
    let mut failures = Vec::new();
    for kind in KINDS {
        let found = match api.list(kind, &selector).await {
            Ok(found) => found,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        for object in found {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            if let Err(e) = api.delete(kind, name).await {
                failures.push(e);
            }
        }
    }
    failures
}
