//! A principal's resource bounds ([`ResourceLimits`]): set on the confinement role's process
//! before its identity is switched (its `/proc/self` files are root's then, and a non-dumpable
//! process of another uid cannot write them), inherited by the program and everything it
//! starts, and read back from the kernel for the report.
//!
//! Why these and not others (measured in the Node base, Debian bookworm's Node 18 and
//! Python 3.11):
//! - `RLIMIT_NPROC` fails `fork`/`clone` with `EAGAIN` once the uid has that many tasks;
//! - `RLIMIT_DATA` fails an allocation (`MemoryError`, "Array buffer allocation failed") once a
//!   process's private writable memory would pass it, while Node — WebAssembly included — and
//!   Python start under 64 MiB. `RLIMIT_AS` of 2 GiB already keeps Node from starting
//!   WebAssembly (its reservations are address space, not memory), so it is not used. Thread
//!   stacks count: Python's 64 threads need more than 128 MiB (8 MiB each);
//! - `oom_score_adj` only raised: when the container's memory runs out, the kernel picks a
//!   principal with a higher value first.

use std::io::Write;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde::{Deserialize, Serialize};

use super::ConfineError;
use super::policy::ResourceLimits;

const OOM_SCORE_ADJ: &str = "/proc/self/oom_score_adj";

/// The bounds the policy set, as the kernel reports them once set (`None`: not set by the
/// policy; what the process inherited then holds, and is not reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsOutcome {
    /// `RLIMIT_NPROC`.
    pub processes: Option<u64>,
    /// `RLIMIT_DATA`, bytes.
    pub data_bytes: Option<u64>,
    /// `oom_score_adj`.
    pub oom_score_adj: Option<i32>,
}

/// Sets `limits` on this process (soft and hard alike, so the program cannot raise them back).
pub(crate) fn apply(limits: &ResourceLimits) -> Result<LimitsOutcome, ConfineError> {
    if let Some(n) = limits.processes {
        setrlimit(Resource::RLIMIT_NPROC, n, n).map_err(|e| io("setrlimit(RLIMIT_NPROC)", e))?;
    }
    if let Some(bytes) = limits.data_bytes {
        setrlimit(Resource::RLIMIT_DATA, bytes, bytes)
            .map_err(|e| io("setrlimit(RLIMIT_DATA)", e))?;
    }
    if let Some(adj) = limits.oom_score_adj {
        std::fs::OpenOptions::new()
            .write(true)
            .open(OOM_SCORE_ADJ)
            .and_then(|mut f| f.write_all(adj.to_string().as_bytes()))
            .map_err(|source| ConfineError::Io {
                what: "writing /proc/self/oom_score_adj",
                source,
            })?;
    }
    let kernel = in_force();
    Ok(LimitsOutcome {
        processes: kernel.processes.filter(|_| limits.processes.is_some()),
        data_bytes: kernel.data_bytes.filter(|_| limits.data_bytes.is_some()),
        oom_score_adj: kernel
            .oom_score_adj
            .filter(|_| limits.oom_score_adj.is_some()),
    })
}

/// What the kernel says holds for this process (`None`: unlimited, or unreadable).
pub(crate) fn in_force() -> LimitsOutcome {
    let soft = |resource| match getrlimit(resource) {
        Ok((soft, _)) if soft != libc::RLIM_INFINITY => Some(soft),
        _ => None,
    };
    LimitsOutcome {
        processes: soft(Resource::RLIMIT_NPROC),
        data_bytes: soft(Resource::RLIMIT_DATA),
        oom_score_adj: std::fs::read_to_string(OOM_SCORE_ADJ)
            .ok()
            .and_then(|text| text.trim().parse().ok()),
    }
}

fn io(what: &'static str, errno: nix::errno::Errno) -> ConfineError {
    ConfineError::Io {
        what,
        source: errno.into(),
    }
}

impl LimitsOutcome {
    /// "at most 256 processes, 2048 MiB of data per process, oom_score_adj 500", or `None` when
    /// nothing bounds it.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(n) = self.processes {
            parts.push(format!("at most {n} processes"));
        }
        if let Some(bytes) = self.data_bytes {
            parts.push(format!("{} MiB of data per process", bytes >> 20));
        }
        if let Some(adj) = self.oom_score_adj.filter(|&a| a != 0) {
            parts.push(format!("oom_score_adj {adj}"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_each_bound_in_force() {
        let outcome = LimitsOutcome {
            processes: Some(64),
            data_bytes: Some(512 << 20),
            oom_score_adj: Some(500),
        };
        assert_eq!(
            outcome.summary().as_deref(),
            Some("at most 64 processes, 512 MiB of data per process, oom_score_adj 500")
        );
        assert_eq!(LimitsOutcome::default().summary(), None);
    }

    /// In a child process (a bound set here would stay with the test process): the bounds are
    /// in force once applied, and an allocation past the data bound fails.
    #[test]
    fn applied_bounds_hold_for_the_process() {
        // SAFETY: the child only makes system calls and exits; it touches no lock another
        // thread of the test harness may hold.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                // Lowering needs no privilege; this one leaves room for the harness's threads.
                let processes = in_force().processes.unwrap_or(100_000);
                let limits = ResourceLimits {
                    processes: Some(processes),
                    data_bytes: Some(256 << 20),
                    oom_score_adj: None,
                };
                let ok = apply(&limits).is_ok_and(|o| {
                    o.processes == Some(processes) && o.data_bytes == Some(256 << 20)
                });
                // SAFETY: anonymous private mapping of fresh memory; unmapped when it succeeds.
                let big = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        512 << 20,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                let refused = big == libc::MAP_FAILED;
                // SAFETY: leaves the child at once, without running the harness's code.
                unsafe { libc::_exit(i32::from(!ok) + 2 * i32::from(!refused)) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
