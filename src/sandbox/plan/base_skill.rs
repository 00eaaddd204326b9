//! What base-skill's container mounts besides its socket: the workspace, read-write, and over
//! its reserved run-data folder an empty read-only tmpfs, so neither the tools nor `exec`'d
//! programs can read or change the jobs and checkpoints the controller writes there.

use super::{MountPlan, MountSource, RunRequest};
use crate::contract::paths::{RESERVED_DIR, WORKSPACE_MOUNT};

/// The workspace and the tmpfs hiding its reserved folder. The tmpfs's mount point is created
/// on the host beforehand ([`ContainerPlan::host_mount_points`](super::ContainerPlan::host_mount_points)).
pub(super) fn mounts(request: &RunRequest) -> [MountPlan; 2] {
    [
        MountPlan {
            source: MountSource::Bind {
                host: request.workspace.display().to_string(),
            },
            target: WORKSPACE_MOUNT.to_string(),
            read_only: false,
        },
        MountPlan {
            source: MountSource::EmptyTmpfs,
            target: format!("{WORKSPACE_MOUNT}/{RESERVED_DIR}"),
            read_only: true,
        },
    ]
}
