//! Why a server process ended, in words a person can act on, to follow "the server":
//! `exited with code 3`, `was killed by SIGSEGV`, `was killed: out of memory (limit 512m)`.
//!
//! Out of memory is told by the kernel's own count, not guessed from the signal: the container's
//! memory cgroup counts the processes its OOM killer killed (`oom_kill` in `memory.events` under
//! cgroup v2, in `memory/memory.oom_control` under v1; the container's cgroup namespace puts its
//! own cgroup at `/sys/fs/cgroup`). A server that ended while that count rose was killed for
//! memory — itself (SIGKILL) or a process of its own, which it then exited over.

use std::path::Path;

use nix::sys::signal::Signal;

/// Where the container's cgroup is mounted.
pub(super) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How a process ended, from `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(Signal),
}

impl Exit {
    /// The exit code a shell would report: the code, or 128 + the signal.
    pub(super) fn code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal as i32,
        }
    }
}

/// Why the server ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cause {
    /// How it ended.
    pub exit: Exit,
    /// The kernel's OOM killer killed a process of the container while it ran.
    pub out_of_memory: bool,
    /// The container's memory limit in bytes, when it has one.
    pub limit: Option<u64>,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let memory = || match self.limit {
            Some(limit) => format!("out of memory (limit {})", size(limit)),
            None => "out of memory".to_string(),
        };
        match (self.exit, self.out_of_memory) {
            (Exit::Signal(Signal::SIGKILL), true) => write!(f, "was killed: {}", memory()),
            (Exit::Code(code), false) => write!(f, "exited with code {code}"),
            (Exit::Signal(signal), false) => write!(f, "was killed by {}", signal.as_str()),
            (Exit::Code(code), true) => write!(
                f,
                "exited with code {code} after a process of it was killed: {}",
                memory()
            ),
            (Exit::Signal(signal), true) => write!(
                f,
                "was killed by {} after a process of it was killed: {}",
                signal.as_str(),
                memory()
            ),
        }
    }
}

/// The container's memory cgroup, as the skill host reads it.
#[derive(Debug, Clone)]
pub(super) struct Cgroup {
    root: std::path::PathBuf,
}

impl Default for Cgroup {
    fn default() -> Cgroup {
        Cgroup::at(Path::new(CGROUP_ROOT))
    }
}

impl Cgroup {
    /// The cgroup mounted at `root` (tests give a folder of their own).
    pub(super) fn at(root: &Path) -> Cgroup {
        Cgroup {
            root: root.to_path_buf(),
        }
    }

    /// How many processes the OOM killer has killed in this cgroup, when the kernel says.
    pub(super) fn oom_kills(&self) -> Option<u64> {
        let v2 = std::fs::read_to_string(self.root.join("memory.events"));
        let v1 = || std::fs::read_to_string(self.root.join("memory/memory.oom_control"));
        let text = v2.or_else(|_| v1()).ok()?;
        counter(&text, "oom_kill")
    }

    /// The memory limit in bytes; `None` without one.
    pub(super) fn limit(&self) -> Option<u64> {
        if let Ok(text) = std::fs::read_to_string(self.root.join("memory.max")) {
            return text.trim().parse().ok();
        }
        let text = std::fs::read_to_string(self.root.join("memory/memory.limit_in_bytes")).ok()?;
        // cgroup v1 says "no limit" with a page-rounded i64::MAX.
        text.trim().parse().ok().filter(|bytes| *bytes < 1 << 62)
    }

    /// Why a server that ended as `exit` did, given the OOM count from when it started.
    pub(super) fn cause(&self, exit: Exit, oom_kills_before: Option<u64>) -> Cause {
        let out_of_memory = match (oom_kills_before, self.oom_kills()) {
            (Some(before), Some(now)) => now > before,
            _ => false,
        };
        Cause {
            exit,
            out_of_memory,
            limit: self.limit(),
        }
    }
}

/// The value of `name` in a flat-keyed cgroup file (`name value` per line).
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// A byte count the way `--memory` takes it: `512m`, `2g`, else bytes.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map(|(unit, suffix)| format!("{}{suffix}", bytes / unit))
        .unwrap_or_else(|| format!("{bytes} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(exit: Exit, out_of_memory: bool, limit: Option<u64>) -> String {
        Cause {
            exit,
            out_of_memory,
            limit,
        }
        .to_string()
    }

    #[test]
    fn causes_say_how_the_server_ended() {
        assert_eq!(
            cause(Exit::Code(3), false, Some(1 << 29)),
            "exited with code 3"
        );
        assert_eq!(cause(Exit::Code(0), false, None), "exited with code 0");
        assert_eq!(
            cause(Exit::Signal(Signal::SIGKILL), true, Some(512 << 20)),
            "was killed: out of memory (limit 512m)"
        );
        assert_eq!(
            cause(Exit::Signal(Signal::SIGKILL), true, None),
            "was killed: out of memory"
        );
        // A SIGKILL without the kernel's count rising is someone else's kill, not memory.
        assert_eq!(
            cause(Exit::Signal(Signal::SIGKILL), false, Some(512 << 20)),
            "was killed by SIGKILL"
        );
        assert_eq!(
            cause(Exit::Signal(Signal::SIGSEGV), false, None),
            "was killed by SIGSEGV"
        );
        assert_eq!(
            cause(Exit::Code(1), true, Some(1 << 30)),
            "exited with code 1 after a process of it was killed: out of memory (limit 1g)"
        );
    }

    #[test]
    fn exit_codes_are_a_shells() {
        assert_eq!(Exit::Code(3).code(), 3);
        assert_eq!(Exit::Signal(Signal::SIGKILL).code(), 137);
    }

    #[test]
    fn sizes_read_like_the_memory_flag() {
        assert_eq!(size(512 << 20), "512m");
        assert_eq!(size(2 << 30), "2g");
        assert_eq!(size(1536 << 20), "1536m");
        assert_eq!(size(64 << 10), "64k");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn the_oom_count_and_limit_are_read_from_cgroup_v2() {
        let root = tempfile::tempdir().expect("tempdir");
        let cgroup = Cgroup::at(root.path());
        assert_eq!(cgroup.oom_kills(), None);
        std::fs::write(
            root.path().join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
        )
        .expect("write");
        std::fs::write(root.path().join("memory.max"), "536870912\n").expect("write");
        assert_eq!(cgroup.oom_kills(), Some(1));
        assert_eq!(cgroup.limit(), Some(512 << 20));
        std::fs::write(root.path().join("memory.max"), "max\n").expect("write");
        assert_eq!(cgroup.limit(), None);
    }

    #[test]
    fn the_oom_count_and_limit_are_read_from_cgroup_v1() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("memory")).expect("mkdir");
        let cgroup = Cgroup::at(root.path());
        std::fs::write(
            root.path().join("memory/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        )
        .expect("write");
        std::fs::write(
            root.path().join("memory/memory.limit_in_bytes"),
            "67108864\n",
        )
        .expect("write");
        assert_eq!(cgroup.oom_kills(), Some(4));
        assert_eq!(cgroup.limit(), Some(64 << 20));
        std::fs::write(
            root.path().join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .expect("write");
        assert_eq!(cgroup.limit(), None);
    }

    #[test]
    fn out_of_memory_is_the_count_rising_while_the_server_ran() {
        let root = tempfile::tempdir().expect("tempdir");
        let cgroup = Cgroup::at(root.path());
        std::fs::write(root.path().join("memory.events"), "oom_kill 2\n").expect("write");
        std::fs::write(root.path().join("memory.max"), "67108864\n").expect("write");
        let killed = Exit::Signal(Signal::SIGKILL);
        assert!(cgroup.cause(killed, Some(1)).out_of_memory);
        assert!(!cgroup.cause(killed, Some(2)).out_of_memory);
        // Without a count from the start nothing can be said.
        assert!(!cgroup.cause(killed, None).out_of_memory);
        assert_eq!(
            cgroup.cause(killed, Some(1)).to_string(),
            "was killed: out of memory (limit 64m)"
        );
    }
}
