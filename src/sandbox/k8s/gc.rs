//! `gc --backend kubernetes`: the runs whose controller stopped renewing their Lease (killed,
//! lost its connection) are deleted, Lease and all.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::client::{KINDS, KubeApi, KubeError};
use super::manifest::MANAGED_SELECTOR;
use super::session::remove;

/// A run whose Lease expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaleRun {
    /// The run's name (its Lease's).
    pub name: String,
    /// Who held the Lease.
    pub holder: String,
}

/// What a sweep found and did.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// The runs whose Lease expired (removed unless a dry run).
    pub stale: Vec<StaleRun>,
    /// Runs whose Lease is still renewed.
    pub live: usize,
    /// Deletions that failed.
    pub failures: Vec<KubeError>,
}

/// Whether `lease` was last renewed more than its duration before `now`. A Lease without a
/// renewal time or duration is expired: this program always writes both.
pub(crate) fn expired(lease: &Value, now: Timestamp) -> bool {
    let spec = &lease["spec"];
    let renewed = spec["renewTime"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let seconds = spec["leaseDurationSeconds"].as_i64();
    match (renewed, seconds) {
        (Some(renewed), Some(seconds)) => renewed + SignedDuration::from_secs(seconds) < now,
        _ => true,
    }
}

/// Finds this program's Leases in the namespace and removes the runs of the expired ones
/// (only reports them when `dry_run`).
pub(crate) async fn sweep(api: &KubeApi, dry_run: bool) -> Result<Sweep, KubeError> {
    let leases = api.list(KINDS[6], MANAGED_SELECTOR).await?;
    let now = Timestamp::now();
    let mut sweep = Sweep::default();
    for lease in leases {
        if !expired(&lease, now) {
            sweep.live += 1;
            continue;
        }
        let name = lease["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !dry_run {
            sweep.failures.extend(remove(api, &name).await);
        }
        sweep.stale.push(StaleRun {
            name,
            holder: lease["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        });
    }
    Ok(sweep)
}
