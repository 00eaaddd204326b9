//! Kubernetes: a run's [`RunPlan`](crate::sandbox::plan::RunPlan) as Kubernetes objects.
//!
//! - [`manifest`]: the plan as a Job (skills and base-skill as native sidecars of the runtime),
//!   the egress proxy's Deployment and Service, and the NetworkPolicies that fence them — pure,
//!   snapshot- and invariant-tested; what `export kubernetes` writes.
//! - `yaml`: those objects as one YAML stream.
//!
//! With the `kubernetes` feature (on by default), a controlled run on a cluster
//! (`run`/`gc`/`doctor --backend kubernetes`, experimental):
//! - `backend`: the `Backend` of `run --backend kubernetes`.
//! - `client`: the one caller of the API (`kube`); kubeconfig found as kubectl finds it.
//! - `session`: a run as stages — its objects (from `manifest`, under a Lease), launch, watch,
//!   removal on every ending.
//! - `logs`: the runtime's log followed with reconnects, each line passed on once.
//! - `workspace`: the workspace copied into the pod (attach) and back (exec), the copy back
//!   checked whole under base-skill's path rules before it is applied.
//! - `gc`: the runs of expired Leases; `doctor`: RBAC, Pod Security, NetworkPolicy.
//!
//! The mapping of each Docker guarantee onto Kubernetes, and what is lost, is in ARCHITECTURE.md
//! ("Kubernetes") and SECURITY.md.

#[cfg(feature = "kubernetes")]
pub(crate) mod backend;
#[cfg(feature = "kubernetes")]
pub(crate) mod client;
#[cfg(feature = "kubernetes")]
pub(crate) mod doctor;
#[cfg(test)]
#[cfg(feature = "kubernetes")]
mod fake;
#[cfg(feature = "kubernetes")]
pub(crate) mod gc;
#[cfg(test)]
#[cfg(feature = "kubernetes")]
mod lifecycle_tests;
#[cfg(feature = "kubernetes")]
pub(crate) mod logs;
pub(crate) mod manifest;
#[cfg(feature = "kubernetes")]
pub(crate) mod session;
#[cfg(test)]
#[cfg(feature = "kubernetes")]
mod streams_tests;
#[cfg(test)]
mod tests;
#[cfg(feature = "kubernetes")]
pub(crate) mod workspace;
pub(crate) mod yaml;

use std::path::Path;

use crate::contract::paths::WORKSPACE_MOUNT;
use crate::sandbox::preflight::{ProtectedEntry, ProtectedLayout};

/// The protected paths of a workspace the controller never sees (a claim, or an emptyDir that
/// starts empty): `.git` and the run-data folder, as on Docker, less `writable`. Each is mounted
/// read-only (a `subPath` of the workspace), so each counts as present: the kubelet makes a
/// missing one as an empty folder, which holds its place as the placeholder does on Docker.
pub(crate) fn protected_layout(writable: &[String]) -> ProtectedLayout {
    let entries = crate::trust::inputs::protected_paths(&[], Path::new(WORKSPACE_MOUNT), writable)
        .into_iter()
        .map(|path| ProtectedEntry { path, exists: true })
        .collect();
    ProtectedLayout {
        entries,
        missing_dirs: Vec::new(),
    }
}
