//! `doctor`'s probe of an OCI runtime (gVisor's `runsc` above all): does a container start
//! under it, hardened as a run's are, with no network and on an internal network? Each probe
//! runs our own executable (`--version`) in a scratch image imported for the probe, labelled
//! like a run's so `gc` finds it if we die, and removed with its network and image afterwards.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use super::controller::ControllerId;
use super::docker::{DockerClient, DockerError};
use crate::config::Limits;
use crate::contract::paths::BINARY_PATH;
use crate::sandbox::images::{ContextFile, ImageConfig, ImageRole, ImageSpec, base_labels};
use crate::sandbox::labels;
use crate::sandbox::plan::{ContainerPlan, InternalNetworkPlan, NetworkPlan};

/// How one probe container fared.
#[derive(Debug)]
pub(crate) struct Probed {
    /// `none`, or `an internal network`.
    pub network: &'static str,
    /// From creating the container to its exit.
    pub took: Duration,
    /// What failed, in words.
    pub result: Result<(), String>,
}

/// Starts our executable under `runtime` with no network, then on an internal network of its
/// own; removes everything it made, whatever happened.
pub(crate) async fn probe_runtime(
    docker: &DockerClient,
    runtime: &str,
    binary: Bytes,
) -> Result<Vec<Probed>, DockerError> {
    let image = probe_image(binary);
    let tag = image.tag("scratch");
    docker.import_image(&image, &tag).await?;
    let run_id = crate::ids::new_id();
    let labels = BTreeMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::RUN_ID.to_string(), run_id.clone()),
        (labels::ROLE.to_string(), "doctor".to_string()),
        (
            labels::CONTROLLER.to_string(),
            ControllerId::current().to_string(),
        ),
    ]);
    let probes = probe_both(docker, runtime, &tag, &run_id, &labels).await;
    let removed = docker.remove_run(&run_id).await;
    let _ = docker.remove_image(&tag).await;
    removed?;
    probes
}

async fn probe_both(
    docker: &DockerClient,
    runtime: &str,
    tag: &str,
    run_id: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<Probed>, DockerError> {
    let network = InternalNetworkPlan {
        name: format!("psbx-doctor-{run_id}-net"),
        labels: labels.clone(),
    };
    docker.create_internal_network(&network).await?;
    let mut probed = Vec::new();
    for (kind, suffix, plan) in [
        ("none", "none", NetworkPlan::None),
        (
            "an internal network",
            "net",
            NetworkPlan::Internal(network.name.clone()),
        ),
    ] {
        let container = ContainerPlan {
            name: format!("psbx-doctor-{run_id}-{suffix}"),
            service: "doctor".to_string(),
            skill: None,
            image: 0,
            user: "65534:65534".to_string(),
            env: vec![],
            cmd: vec![],
            mounts: vec![],
            network: plan,
            labels: labels.clone(),
            limits: Limits::default(),
            oci_runtime: Some(runtime.to_string()),
            stdin: None,
        };
        let started = Instant::now();
        let result = start_and_wait(docker, &container, tag).await;
        probed.push(Probed {
            network: kind,
            took: started.elapsed(),
            result,
        });
    }
    Ok(probed)
}

/// Creates, starts and waits for one probe; it must exit 0 having printed our version.
async fn start_and_wait(
    docker: &DockerClient,
    container: &ContainerPlan,
    tag: &str,
) -> Result<(), String> {
    let id = docker
        .create_container(container, tag, &[])
        .await
        .map_err(|e| e.to_string())?;
    let mut output = docker.attach(&id).await.map_err(|e| e.to_string())?;
    docker
        .start(&id, &container.name)
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    while let Some(Ok(chunk)) = output.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    let code = docker.wait(&id).await.map_err(|e| e.to_string())?;
    let expected = format!("perstack-sandbox {}", env!("CARGO_PKG_VERSION"));
    match (code, text.contains(&expected)) {
        (0, true) => Ok(()),
        (code, _) => Err(format!(
            "exited {code}, printing {:?} (expected {expected:?})",
            text.trim()
        )),
    }
}

/// A scratch image holding our executable, which prints its version.
fn probe_image(binary: Bytes) -> ImageSpec {
    ImageSpec {
        role: ImageRole::Runtime,
        service: "doctor".to_string(),
        repository: "perstack-sandbox/doctor-runtime-probe".to_string(),
        base: "scratch".to_string(),
        files: vec![
            ContextFile {
                path: BINARY_PATH.to_string(),
                mode: 0o755,
                contents: binary,
            },
            // A tag of its own: two doctors at once must not import and remove the same one.
            ContextFile {
                path: "/probe".to_string(),
                mode: 0o644,
                contents: Bytes::from(crate::ids::new_id()),
            },
        ],
        config: ImageConfig {
            entrypoint: vec![BINARY_PATH.to_string(), "--version".to_string()],
            ..ImageConfig::default()
        },
        labels: base_labels(ImageRole::Runtime),
        install: None,
    }
}
