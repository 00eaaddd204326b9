//! Who owns a run's resources: the controller process, identified well enough that `gc` can
//! tell a live run from one whose controller was killed — even after a reboot or pid reuse.

use std::fmt;

/// A controller process: host name, kernel boot id, pid and the pid's start time (clock
/// ticks since boot, from `/proc/<pid>/stat`), so a recycled pid is not mistaken for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControllerId {
    /// `gethostname`.
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// The process id.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`.
    pub start_ticks: u64,
}

/// What became of the controller named on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Still running: its resources are in use.
    Alive,
    /// Gone (exited, killed, or the machine rebooted): its resources are orphans.
    Gone,
    /// On another machine sharing this engine: we cannot tell.
    Elsewhere,
}

impl ControllerId {
    /// This process.
    pub(crate) fn current() -> ControllerId {
        let pid = std::process::id();
        ControllerId {
            host: host_name(),
            boot_id: boot_id(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Reads a label value written by [`fmt::Display`]; `None` if it is not one.
    pub(crate) fn parse(label: &str) -> Option<ControllerId> {
        let mut parts = label.rsplitn(4, '/');
        let start_ticks = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let boot_id = parts.next()?.to_string();
        let host = parts.next()?.to_string();
        Some(ControllerId {
            host,
            boot_id,
            pid,
            start_ticks,
        })
    }

    /// Whether that controller still runs, seen from this machine.
    pub(crate) fn liveness(&self) -> Liveness {
        let here = ControllerId::current();
        if self.host != here.host {
            return Liveness::Elsewhere;
        }
        if self.boot_id != here.boot_id {
            return Liveness::Gone;
        }
        match start_ticks(self.pid) {
            Some(ticks) if ticks == self.start_ticks => Liveness::Alive,
            _ => Liveness::Gone,
        }
    }
}

impl fmt::Display for ControllerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.host, self.boot_id, self.pid, self.start_ticks
        )
    }
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .replace('/', "_")
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The start time of `pid`, or `None` when no such process exists.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_round_trips_through_its_label() {
        let me = ControllerId::current();
        assert!(me.start_ticks > 0);
        let parsed = ControllerId::parse(&me.to_string()).expect("parse");
        assert_eq!(parsed, me);
        assert_eq!(parsed.liveness(), Liveness::Alive);
    }

    #[test]
    fn a_dead_or_recycled_pid_and_a_rebooted_machine_are_gone() {
        let me = ControllerId::current();
        let recycled = ControllerId {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert_eq!(recycled.liveness(), Liveness::Gone);
        let dead = ControllerId {
            pid: u32::MAX - 1,
            ..me.clone()
        };
        assert_eq!(dead.liveness(), Liveness::Gone);
        let rebooted = ControllerId {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert_eq!(rebooted.liveness(), Liveness::Gone);
        let elsewhere = ControllerId {
            host: "another-host".into(),
            ..me
        };
        assert_eq!(elsewhere.liveness(), Liveness::Elsewhere);
        assert_eq!(ControllerId::parse("garbage"), None);
    }
}
