//! How a container's process limit (`--pids`, `[sandbox] pids`) is given to the engine.
//!
//! Under runc the container's processes are host processes: the host's pids cgroup
//! (`HostConfig.PidsLimit`) counts exactly them. Under gVisor they are tasks of the sandbox's own
//! kernel, and the host's cgroup counts the sandbox's host threads instead — the Sentry's and,
//! on the ptrace platform, the stubs that run each task. Measured on this kind of machine
//! (Debian's runsc 2022-12, `--platform=ptrace`): 46 host threads for an idle shell, about 10
//! for each sleeping process, peaks of about 16 a process during a fork bomb. A host limit of
//! 64 killed the whole sandbox when its shell started its fifth background job.
//!
//! So under gVisor the limit asked for becomes the sandbox kernel's `RLIMIT_NPROC` for the
//! container's user (an OCI rlimit, which runsc applies and its kernel enforces per user, for
//! every process of the container: `fork` fails with `EAGAIN`, as under runc), and the host's
//! cgroup limit a backstop sized for the Sentry ([`GVISOR_HOST_PER_PROCESS`] per process plus
//! [`GVISOR_HOST_BASE`]). Under runc `RLIMIT_NPROC` would count the user's processes on the
//! whole host, so it is not used there.

use crate::config::GVISOR_RUNTIME;

/// Host threads allowed per process of a gVisor sandbox: the peak measured during a fork bomb
/// (about 16), with room for a loaded machine.
pub(crate) const GVISOR_HOST_PER_PROCESS: i64 = 24;
/// Host threads allowed for the Sentry itself (46 measured at rest), with room.
pub(crate) const GVISOR_HOST_BASE: i64 = 256;

/// The process limit as the engine takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessLimit {
    /// `HostConfig.PidsLimit`: the host's pids cgroup.
    pub host_pids: i64,
    /// `RLIMIT_NPROC` for the container's processes, when the runtime's kernel counts them.
    pub nproc: Option<i64>,
}

/// The limit of `pids` processes for a container started under `oci_runtime` (`None`: the
/// engine's default, runc).
pub(crate) fn process_limit(pids: i64, oci_runtime: Option<&str>) -> ProcessLimit {
    if oci_runtime == Some(GVISOR_RUNTIME) {
        ProcessLimit {
            host_pids: pids.saturating_mul(GVISOR_HOST_PER_PROCESS) + GVISOR_HOST_BASE,
            nproc: Some(pids),
        }
    } else {
        ProcessLimit {
            host_pids: pids,
            nproc: None,
        }
    }
}

/// The engine's own `ulimits` (`engine/info.rs`) with `nproc` set to `limit.nproc` when there
/// is one; empty: the engine's defaults.
pub(crate) fn ulimits(engine: &[(&str, i64)], limit: ProcessLimit) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = engine
        .iter()
        .filter(|(name, _)| limit.nproc.is_none() || *name != "nproc")
        .map(|(name, value)| (name.to_string(), *value))
        .collect();
    out.extend(limit.nproc.map(|n| ("nproc".to_string(), n)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_runc_the_host_counts_the_processes_and_no_rlimit_is_set() {
        let limit = process_limit(64, None);
        assert_eq!(
            limit,
            ProcessLimit {
                host_pids: 64,
                nproc: None
            }
        );
        assert_eq!(process_limit(64, Some("runc")), limit);
        assert_eq!(
            ulimits(&[("nofile", 8192), ("nproc", 32768)], limit),
            [("nofile".to_string(), 8192), ("nproc".to_string(), 32768)]
        );
        assert!(ulimits(&[], limit).is_empty());
    }

    #[test]
    fn under_gvisor_the_sandbox_kernel_counts_them_and_the_host_leaves_the_sentry_room() {
        let limit = process_limit(64, Some("runsc"));
        assert_eq!(limit.nproc, Some(64));
        assert_eq!(limit.host_pids, 64 * 24 + 256);
        assert!(limit.host_pids > 64 * 16 + 46, "above the measured peak");
        assert_eq!(
            ulimits(&[("nofile", 8192), ("nproc", 32768)], limit),
            [("nofile".to_string(), 8192), ("nproc".to_string(), 64)]
        );
        assert_eq!(ulimits(&[], limit), [("nproc".to_string(), 64)]);
    }
}
