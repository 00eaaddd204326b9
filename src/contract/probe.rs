//! `doctor`'s engine probe: what a probe container finds about itself, which the hidden
//! `engine-probe` role measures (`commands/engine_probe.rs`) and the controller judges
//! (`sandbox/engine/probe.rs`). The listener serves its report on a unix socket in a socket
//! volume; the connector prints the listener's report and its own on stdout, a JSON line each.

use serde::{Deserialize, Serialize};

/// The TCP port the listener also serves on, on the internal network (the egress proxy's).
pub(crate) const PROBE_PORT: u16 = 3128;

/// What the listener answers on TCP.
pub(crate) const TCP_GREETING: &str = "perstack-sandbox probe";

/// The file the listener writes into the workspace mount, whose owner the controller checks.
pub(crate) const PROBE_FILE: &str = ".perstack-sandbox-doctor-probe";

/// What one probe container found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProbeReport {
    /// `listener` or `connector`.
    pub who: String,
    /// Its uid and gid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Writing to `/` failed as on a read-only file system.
    pub root_read_only: bool,
    /// `/tmp` takes a file.
    pub tmp_writable: bool,
    /// Effective capabilities (`CapEff` of /proc/self/status).
    pub cap_eff: Option<u64>,
    /// `NoNewPrivs` is set.
    pub no_new_privs: bool,
    /// The memory limit its cgroup shows, in bytes (`None`: unlimited or unreadable).
    pub memory_limit: Option<u64>,
    /// The process limit its cgroup shows.
    pub pids_limit: Option<u64>,
    /// What writing the workspace probe file gave (listener only): `None` when not tried.
    pub workspace_write: Option<Result<(), String>>,
    /// What reaching the listener over TCP on the internal network gave (connector only).
    pub tcp: Option<Result<(), String>>,
}
