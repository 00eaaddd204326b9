//! What a container that mounts the workspace gets — base-skill, and a skill granted the
//! workspace (`[sandbox.skills."x"] workspace`): the workspace at `/workspace` (read-write or
//! read-only), each protected path (`trust::inputs`) bound read-only onto itself, the folders
//! above a nested one bound onto themselves so they cannot be renamed away, and an empty
//! read-only tmpfs over the reserved run-data folder, so neither tools nor `exec`'d programs can
//! read or change the jobs and checkpoints the controller writes there.
//!
//! A protected path that does not exist is held by a placeholder — an empty file or folder the
//! controller makes before the containers and removes after them — bound read-only like the
//! others: a run cannot create `.env` where there was none. Placeholders are needed only when
//! some container may write the workspace.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{MountPlan, MountSource, Placeholder, RunRequest};
use crate::config::WorkspaceGrant;
use crate::config::workspace::RESERVED_DIR;
use crate::contract::paths::WORKSPACE_MOUNT;
use crate::sandbox::preflight::ProtectedEntry;
use crate::trust::inputs::Rule;

/// The mounts of a container with `access` to the workspace. The tmpfs's mount point is
/// created on the host beforehand
/// ([`ContainerPlan::host_mount_points`](super::ContainerPlan::host_mount_points)); so are the
/// placeholders ([`placeholders`]) when `placeholders` says the run has them.
pub(super) fn mounts(
    request: &RunRequest,
    access: WorkspaceGrant,
    placeholders: bool,
) -> Vec<MountPlan> {
    let read_only = access == WorkspaceGrant::ReadOnly;
    let bind = |relative: &Path, read_only: bool| MountPlan {
        source: MountSource::Bind {
            host: request.workspace.join(relative).display().to_string(),
        },
        target: Path::new(WORKSPACE_MOUNT)
            .join(relative)
            .display()
            .to_string(),
        read_only,
    };
    let mut mounts = vec![MountPlan {
        source: MountSource::Bind {
            host: request.workspace.display().to_string(),
        },
        target: WORKSPACE_MOUNT.to_string(),
        read_only,
    }];
    let entries = &request.protected.entries;
    if !read_only {
        mounts.extend(pinned(entries).iter().map(|folder| bind(folder, false)));
    }
    for entry in entries {
        // The run data is hidden whatever the layout says, below.
        if entry.path.rule != Rule::RunData && (entry.exists || placeholders) {
            mounts.push(bind(&entry.path.relative, true));
        }
    }
    mounts.push(MountPlan {
        source: MountSource::EmptyTmpfs,
        target: format!("{WORKSPACE_MOUNT}/{RESERVED_DIR}"),
        read_only: true,
    });
    mounts
}

/// The folders above nested protected paths (`conf` of `conf/dev.env`, `.git` of `.git/hooks`
/// when `.git` itself is writable). A mount point cannot be renamed or removed, so binding each
/// onto itself keeps the protected path where the controller reads it.
fn pinned(entries: &[ProtectedEntry]) -> BTreeSet<PathBuf> {
    let mut folders = BTreeSet::new();
    for entry in entries {
        let mut above = PathBuf::new();
        let parents: Vec<&Path> = entry.path.relative.parent().into_iter().collect();
        for component in parents.iter().flat_map(|p| p.components()) {
            above.push(component);
            folders.insert(above.clone());
        }
    }
    folders
}

/// What the controller makes in the workspace before the containers, outermost first: the
/// missing folders above protected paths, then an empty file or folder for each missing
/// protected path. Nothing when no container may write the workspace (`any_writer` false).
pub(super) fn placeholders(request: &RunRequest, any_writer: bool) -> Vec<Placeholder> {
    if !any_writer {
        return Vec::new();
    }
    let layout = &request.protected;
    let folders = layout.missing_dirs.iter().map(|relative| Placeholder {
        path: request.workspace.join(relative),
        dir: true,
    });
    let entries = layout
        .entries
        .iter()
        .filter(|e| !e.exists && e.path.rule != Rule::RunData)
        .map(|e| Placeholder {
            path: request.workspace.join(&e.path.relative),
            dir: e.path.rule.is_dir(),
        });
    folders.chain(entries).collect()
}

/// base-skill's command-line arguments naming each protected path and its rule, so its tools
/// answer a write there with the rule rather than a bare `EROFS`.
pub(super) fn protected_args(request: &RunRequest) -> Vec<String> {
    request
        .protected
        .entries
        .iter()
        .flat_map(|e| ["--protected".to_string(), e.path.to_arg()])
        .collect()
}
