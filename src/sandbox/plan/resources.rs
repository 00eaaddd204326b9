//! The shapes of what a run creates — containers, their mounts and networks, socket volumes,
//! internal networks, the egress proxy — as `plan` decides them and `engine/docker.rs` creates
//! them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Limits;
use crate::contract::users::RUNTIME_GID;
use crate::sandbox::egress::PrincipalPlan;

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub(crate) enum MountSource {
    /// A named volume of this run.
    Volume {
        /// Its name.
        name: String,
    },
    /// A host folder.
    Bind {
        /// The host path.
        host: String,
    },
    /// A small empty tmpfs, mounted read-only to hide what is below the mount point.
    EmptyTmpfs,
}

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MountPlan {
    /// What is mounted.
    pub source: MountSource,
    /// Where.
    pub target: String,
    /// Read-only?
    pub read_only: bool,
}

/// A per-run volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VolumePlan {
    /// Its name.
    pub name: String,
    /// `local` driver options (a tmpfs owned by the skill's user, group = the runtime's).
    pub driver_opts: BTreeMap<String, String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

impl VolumePlan {
    /// A skill's socket volume: a 1 MiB tmpfs owned by `owner` with group = the runtime's and
    /// mode 0750, so those two alone can use the socket in it.
    pub(crate) fn socket(name: &str, owner: u32, labels: BTreeMap<String, String>) -> VolumePlan {
        VolumePlan {
            name: name.to_string(),
            driver_opts: BTreeMap::from([
                ("type".to_string(), "tmpfs".to_string()),
                ("device".to_string(), "tmpfs".to_string()),
                // 1 MiB as 256 pages: Podman's local driver reads `size` as a quota option
                // and refuses it; `nr_blocks` reaches the tmpfs on Docker and Podman alike.
                (
                    "o".to_string(),
                    format!("uid={owner},gid={RUNTIME_GID},mode=0750,nr_blocks=256"),
                ),
            ]),
            labels,
        }
    }
}

/// The network a container joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum NetworkPlan {
    /// No network at all.
    None,
    /// Docker's default bridge: only the egress proxy joins it.
    Bridge,
    /// One of the run's internal networks (no route out), shared only with the egress proxy.
    Internal(String),
}

impl NetworkPlan {
    /// Docker's `NetworkMode` value.
    pub(crate) fn mode(&self) -> &str {
        match self {
            NetworkPlan::None => "none",
            NetworkPlan::Bridge => "bridge",
            NetworkPlan::Internal(name) => name,
        }
    }
}

/// An internal network of the run (`internal: true`: no gateway out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InternalNetworkPlan {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// The egress proxy of a run: its container (on the default bridge; the controller connects it
/// to every internal network) and the principals it serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProxyPlan {
    /// The proxy container.
    pub container: ContainerPlan,
    /// Who may use it, and for what.
    pub principals: Vec<PrincipalPlan>,
}

/// One container to create.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerPlan {
    /// Container name.
    pub name: String,
    /// `runtime`, `skill:<name>` or `base-skill` (+ `:<expert>` when several Experts have one).
    pub service: String,
    /// Skill name, for `skillStderr` events.
    pub skill: Option<String>,
    /// Index into [`RunPlan::images`](super::RunPlan::images).
    pub image: usize,
    /// `uid:gid`.
    pub user: String,
    /// Environment, exactly.
    pub env: Vec<(String, String)>,
    /// Arguments after the image's ENTRYPOINT.
    pub cmd: Vec<String>,
    /// Mounts.
    pub mounts: Vec<MountPlan>,
    /// Network.
    pub network: NetworkPlan,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Limits.
    pub limits: Limits,
    /// The OCI runtime it starts under (`runsc`: gVisor), the same for every container of a
    /// run; `None`: the engine's default, and the engine is told no name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oci_runtime: Option<String>,
    /// What to write to the container's stdin (then close it); `None`: no stdin at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

impl ContainerPlan {
    /// Host folders that must exist before the container is created: mount points inside a
    /// bind-mounted host folder (the workspace's `perstack/`). Created by the controller, as the
    /// invoking user; Docker would otherwise create them as root.
    pub(crate) fn host_mount_points(&self) -> Vec<PathBuf> {
        let mut points = Vec::new();
        for inner in self
            .mounts
            .iter()
            .filter(|m| m.source == MountSource::EmptyTmpfs)
        {
            for outer in &self.mounts {
                let MountSource::Bind { host } = &outer.source else {
                    continue;
                };
                if let Ok(rel) = std::path::Path::new(&inner.target).strip_prefix(&outer.target) {
                    points.push(PathBuf::from(host).join(rel));
                }
            }
        }
        points
    }
}

/// An empty file or folder the controller makes in the workspace to hold the place of a
/// protected path that does not exist, so a run cannot create it there (`plan/workspace.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Placeholder {
    /// The host path.
    pub path: PathBuf,
    /// A folder (else a file).
    pub dir: bool,
}

impl Placeholder {
    /// `placeholders` as the value of [`crate::sandbox::labels::PLACEHOLDERS`].
    pub(crate) fn label(placeholders: &[Placeholder]) -> String {
        serde_json::to_string(placeholders).unwrap_or_default()
    }

    /// The placeholders a label value names; nothing when it does not parse.
    pub(crate) fn from_label(value: &str) -> Vec<Placeholder> {
        serde_json::from_str(value).unwrap_or_default()
    }
}

/// What a versioned run uses in place of building an image (`run --image`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrebuiltImage {
    /// The reference to use (and pull when it is missing).
    pub reference: String,
    /// The image id it must have.
    pub id: String,
}
