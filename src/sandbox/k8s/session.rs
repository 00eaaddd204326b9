//! One controlled run on a cluster, as a pipeline of stages: [`RunObjects`] (what to create,
//! from `manifest`'s builders, the same ones `export kubernetes` uses), [`launch`] (create them
//! in order under a Lease), the workspace copied in (to the init container `workspace-in`,
//! before any other container starts), watch (wait for the runtime,
//! [`follow`](super::logs::follow) its log while the Lease is renewed), the workspace copied
//! back (after the runtime's end, from base-skill), and [`remove`] (delete everything of the
//! run by label), which the controller calls after every ending (`k8s/backend.rs`).

use std::time::Duration;

use serde_json::{Value, json};

use super::client::{ContainerPhase, KINDS, KubeApi, KubeError};
use super::logs::{Pacing, follow};
use super::manifest::{self, Export, ManifestError};
use super::workspace::{COPY_IN, CopiedBack, PodStreams, WorkspaceCopy};
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

/// How the runtime ended (exit code, reason), and what the workspace's copy back did (`None`:
/// the run has no workspace copy).
pub(crate) type Ended = ((i32, Option<String>), Option<CopiedBack>);

/// Launches `objects` and watches the run to the runtime's end: the workspace goes in first
/// (`copy`, over `streams`), the runtime's log lines go to `on_line`, and after its end the
/// workspace comes back; its exit code and reason come back. The Lease is renewed every
/// `renew` meanwhile. Never removes anything, also when dropped midway (Ctrl-C, the time
/// limit): the controller calls [`remove`] after every ending (`Backend::remove_run`).
pub(crate) async fn launch_and_watch(
    api: &KubeApi,
    objects: &RunObjects,
    copy: Option<(&WorkspaceCopy, &dyn PodStreams)>,
    pacing: Pacing,
    renew_every: Duration,
    on_line: &mut (dyn FnMut(String) + Send),
) -> Result<Ended, KubeError> {
    let lease = launch(api, objects).await?;
    let watch = async {
        if let Some((copy, streams)) = copy {
            let pod = started_pod(api, objects, COPY_IN, pacing.poll).await?;
            copy.copy_in(streams, &pod).await?;
        }
        let pod = started_pod(api, objects, &objects.runtime_container, pacing.poll).await?;
        let ended = follow(api, &pod, &objects.runtime_container, pacing, on_line).await?;
        let copied = match copy {
            Some((copy, streams)) => Some(copy.copy_back(streams, &pod).await?),
            None => None,
        };
        Ok((ended, copied))
    };
    tokio::select! {
        ended = watch => ended,
        failed = renew(api, lease, renew_every) => Err(failed),
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
