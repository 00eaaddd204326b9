//! What the running kernel and our privileges offer, so a supervisor can refuse to start (or say
//! exactly what is weaker) before it confines anyone.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::sys;

/// The protections this process could apply to the principals it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protections {
    /// Landlock and its ABI version.
    pub landlock: LandlockSupport,
    /// seccomp filters.
    pub seccomp: SeccompSupport,
    /// Our effective uid.
    pub uid: u32,
    /// We may switch principals to their own uids (root with CAP_SETUID and CAP_SETGID).
    pub can_switch_uid: bool,
    /// We may empty the capability bounding set (CAP_SETPCAP).
    pub can_drop_bounding_set: bool,
    /// We may give a principal a root of its own (CAP_SYS_CHROOT): skills built from their own
    /// Dockerfile need it. Not a shortfall of the kernel: only such skills are refused without it.
    #[serde(default)]
    pub can_chroot: bool,
}

/// Landlock on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "value")]
pub enum LandlockSupport {
    /// Available with this ABI version.
    Abi(u32),
    /// Built into the kernel but not enabled at boot (EOPNOTSUPP; `lsm=` lacks landlock).
    NotEnabled,
    /// Not built into the kernel, or the kernel is not Linux's (ENOSYS: gVisor, old kernels).
    NotImplemented,
    /// The call failed otherwise: a seccomp profile outside us denies it (EPERM), say.
    Blocked(i32),
}

/// seccomp on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "errno")]
pub enum SeccompSupport {
    /// Filters returning an errno can be installed.
    Filters,
    /// They cannot; the errno of the check.
    Unavailable(i32),
}

/// A Landlock feature and the ABI that brought it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockFeature {
    /// Filesystem rules (ABI 1).
    Filesystem,
    /// Renames and links across folders governed (ABI 2).
    Refer,
    /// Truncation governed (ABI 3): without it, a read-only file can be truncated.
    Truncate,
    /// TCP connect and bind by port (ABI 4).
    TcpPorts,
    /// ioctl on devices governed (ABI 5).
    IoctlDev,
    /// Abstract unix sockets and signals scoped to the domain (ABI 6).
    Scopes,
}

impl LandlockFeature {
    /// Every feature, oldest first.
    pub const ALL: [LandlockFeature; 6] = [
        LandlockFeature::Filesystem,
        LandlockFeature::Refer,
        LandlockFeature::Truncate,
        LandlockFeature::TcpPorts,
        LandlockFeature::IoctlDev,
        LandlockFeature::Scopes,
    ];

    /// The ABI version that brought it.
    pub fn since(self) -> u32 {
        match self {
            LandlockFeature::Filesystem => 1,
            LandlockFeature::Refer => 2,
            LandlockFeature::Truncate => 3,
            LandlockFeature::TcpPorts => 4,
            LandlockFeature::IoctlDev => 5,
            LandlockFeature::Scopes => 6,
        }
    }

    /// What a principal can do when the feature is missing.
    pub fn without(self) -> &'static str {
        match self {
            LandlockFeature::Filesystem => {
                "every principal reads and writes whatever its uid may (no filesystem rules)"
            }
            LandlockFeature::Refer => "files can be renamed or linked across folders",
            LandlockFeature::Truncate => "read-only files can be truncated",
            LandlockFeature::TcpPorts => {
                "principals without network can open TCP connections anywhere"
            }
            LandlockFeature::IoctlDev => "device ioctls are not governed",
            LandlockFeature::Scopes => {
                "principals can signal each other and connect to each other's abstract unix sockets"
            }
        }
    }
}

impl fmt::Display for LandlockFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LandlockFeature::Filesystem => "filesystem rules",
            LandlockFeature::Refer => "cross-folder renames",
            LandlockFeature::Truncate => "truncation",
            LandlockFeature::TcpPorts => "TCP port rules",
            LandlockFeature::IoctlDev => "device ioctls",
            LandlockFeature::Scopes => "signal and abstract-socket scopes",
        })
    }
}

/// One protection missing from the full set, and what it costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "shortfall")]
pub enum Shortfall {
    /// Landlock is absent; every Landlock feature is missing.
    Landlock {
        /// What the kernel offers.
        support: LandlockSupport,
    },
    /// Landlock is there but older than the features listed.
    LandlockFeatures {
        /// The ABI version the kernel offers.
        abi: u32,
        /// The features it lacks.
        missing: Vec<LandlockFeature>,
    },
    /// No seccomp filters: UDP, raw sockets, ptrace and the rest stay open.
    Seccomp {
        /// The errno the kernel answered.
        errno: i32,
    },
    /// Not root: every principal shares our uid.
    UidSwitch {
        /// The uid every principal then shares.
        uid: u32,
    },
    /// The container's root is read-only, so these folders, each a skill's own, keep the
    /// image's owner and mode instead of their skill's group alone: its Landlock domain alone
    /// keeps the other principals out.
    ReadOnlySkillFolders {
        /// The folders, each a skill's.
        folders: Vec<std::path::PathBuf>,
    },
}

impl Shortfall {
    /// Whether a supervisor must refuse to start without `--allow-weaker-isolation`. Sharing one
    /// uid is not blocking: Landlock domains, scopes and non-dumpable processes still separate
    /// principals, as in a container started with `--user`.
    pub fn is_blocking(&self) -> bool {
        !matches!(
            self,
            Shortfall::UidSwitch { .. } | Shortfall::ReadOnlySkillFolders { .. }
        )
    }
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shortfall::Landlock { support } => {
                let why = match support {
                    LandlockSupport::NotEnabled => {
                        "built into the kernel but not enabled (add landlock to the lsm= boot parameter)"
                            .to_string()
                    }
                    LandlockSupport::NotImplemented => {
                        "not in this kernel (gVisor, or Linux older than 5.13)".to_string()
                    }
                    LandlockSupport::Blocked(errno) => {
                        format!("its system call is refused ({})", sys::errno_name(*errno))
                    }
                    LandlockSupport::Abi(abi) => format!("ABI {abi}"),
                };
                write!(
                    f,
                    "Landlock: {why}; {}",
                    LandlockFeature::Filesystem.without()
                )
            }
            Shortfall::LandlockFeatures { abi, missing } => {
                let list: Vec<String> = missing
                    .iter()
                    .map(|m| format!("{m} (ABI {}: without it {})", m.since(), m.without()))
                    .collect();
                write!(f, "Landlock ABI {abi} lacks {}", list.join("; "))
            }
            Shortfall::Seccomp { errno } => write!(
                f,
                "seccomp filters ({}): UDP and raw sockets, ptrace, io_uring, namespaces and the \
                 other closed system calls stay open",
                sys::errno_name(*errno)
            ),
            Shortfall::UidSwitch { uid } => write!(
                f,
                "uid switching: not root (uid {uid}), so every principal runs as uid {uid}"
            ),
            Shortfall::ReadOnlySkillFolders { folders } => {
                let list: Vec<String> = folders.iter().map(|d| d.display().to_string()).collect();
                write!(
                    f,
                    "skill folders' owners: the container's root is read-only, so {} keep the \
                     image's owner and mode (readable by every uid), and each skill's Landlock \
                     domain alone keeps the other principals out of them; run with a writable \
                     root to make each its skill's group's alone as well",
                    list.join(", ")
                )
            }
        }
    }
}

/// The Landlock ABI that brings every feature we use.
pub(crate) const FULL_LANDLOCK_ABI: u32 = 6;

impl Protections {
    /// Asks the kernel. Cheap: three system calls and a capability read.
    pub fn probe() -> Protections {
        let caps = sys::effective_capabilities();
        let has = |cap: u32| caps.is_some_and(|set| set & (1u64 << cap) != 0);
        let uid = nix::unistd::geteuid().as_raw();
        Protections {
            landlock: sys::landlock_abi(),
            seccomp: sys::seccomp_errno_filters(),
            uid,
            can_switch_uid: uid == 0 && has(sys::CAP_SETUID) && has(sys::CAP_SETGID),
            can_drop_bounding_set: has(sys::CAP_SETPCAP),
            can_chroot: has(sys::CAP_SYS_CHROOT),
        }
    }

    /// The Landlock ABI version, 0 when there is none.
    pub fn landlock_abi(&self) -> u32 {
        match self.landlock {
            LandlockSupport::Abi(abi) => abi,
            _ => 0,
        }
    }

    /// What is missing from the full set, blocking ones first.
    pub fn shortfalls(&self) -> Vec<Shortfall> {
        let mut missing = Vec::new();
        match self.landlock {
            LandlockSupport::Abi(abi) if abi >= FULL_LANDLOCK_ABI => {}
            LandlockSupport::Abi(abi) => missing.push(Shortfall::LandlockFeatures {
                abi,
                missing: LandlockFeature::ALL
                    .into_iter()
                    .filter(|f| f.since() > abi)
                    .collect(),
            }),
            support => missing.push(Shortfall::Landlock { support }),
        }
        if let SeccompSupport::Unavailable(errno) = self.seccomp {
            missing.push(Shortfall::Seccomp { errno });
        }
        if !self.can_switch_uid {
            missing.push(Shortfall::UidSwitch { uid: self.uid });
        }
        missing
    }

    /// Whether nothing blocking is missing.
    pub fn is_sufficient(&self) -> bool {
        !self.shortfalls().iter().any(Shortfall::is_blocking)
    }

    /// One line for a person: what is active, then what is missing.
    pub fn summary(&self) -> String {
        let mut active = Vec::new();
        if let LandlockSupport::Abi(abi) = self.landlock {
            let features: Vec<String> = LandlockFeature::ALL
                .into_iter()
                .filter(|f| f.since() <= abi)
                .map(|f| f.to_string())
                .collect();
            active.push(format!("Landlock ABI {abi} ({})", features.join(", ")));
        }
        if self.seccomp == SeccompSupport::Filters {
            active.push("seccomp filters".to_string());
        }
        if self.can_switch_uid {
            active.push("a uid per principal".to_string());
        }
        active.push("no capabilities, no_new_privs, non-dumpable processes".to_string());
        let missing = self.shortfalls();
        let mut line = format!("isolation: {}", active.join("; "));
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
            line.push_str(&format!(". Missing: {}", list.join(". ")));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Protections {
        Protections {
            landlock: LandlockSupport::Abi(7),
            seccomp: SeccompSupport::Filters,
            uid: 0,
            can_switch_uid: true,
            can_drop_bounding_set: true,
            can_chroot: true,
        }
    }

    #[test]
    fn a_kernel_with_landlock_6_and_seccomp_as_root_misses_nothing() {
        let p = full();
        assert!(p.shortfalls().is_empty());
        assert!(p.is_sufficient());
        assert_eq!(
            p.summary(),
            "isolation: Landlock ABI 7 (filesystem rules, cross-folder renames, truncation, TCP \
             port rules, device ioctls, signal and abstract-socket scopes); seccomp filters; a uid \
             per principal; no capabilities, no_new_privs, non-dumpable processes"
        );
    }

    #[test]
    fn gvisor_without_landlock_is_blocking_and_says_what_is_lost() {
        let p = Protections {
            landlock: LandlockSupport::NotImplemented,
            ..full()
        };
        assert!(!p.is_sufficient());
        let missing = p.shortfalls();
        assert_eq!(missing.len(), 1);
        assert_eq!(
            missing[0].to_string(),
            "Landlock: not in this kernel (gVisor, or Linux older than 5.13); every principal \
             reads and writes whatever its uid may (no filesystem rules)"
        );
    }

    #[test]
    fn an_older_landlock_lists_each_missing_feature() {
        let p = Protections {
            landlock: LandlockSupport::Abi(3),
            ..full()
        };
        let missing = p.shortfalls();
        assert_eq!(
            missing,
            vec![Shortfall::LandlockFeatures {
                abi: 3,
                missing: vec![
                    LandlockFeature::TcpPorts,
                    LandlockFeature::IoctlDev,
                    LandlockFeature::Scopes
                ],
            }]
        );
        let text = missing[0].to_string();
        assert!(text.starts_with("Landlock ABI 3 lacks TCP port rules (ABI 4: without it principals without network can open TCP connections anywhere)"), "{text}");
        assert!(!p.is_sufficient());
    }

    #[test]
    fn not_root_is_reported_but_not_blocking() {
        let p = Protections {
            uid: 1000,
            can_switch_uid: false,
            can_drop_bounding_set: false,
            can_chroot: false,
            ..full()
        };
        assert!(p.is_sufficient());
        let summary = p.summary();
        assert!(
            summary.ends_with(
                ". Missing: uid switching: not root (uid 1000), so every principal runs as uid 1000"
            ),
            "{summary}"
        );
    }

    #[test]
    fn skill_folders_left_as_the_image_has_them_are_reported_but_not_blocking() {
        let lacking = Shortfall::ReadOnlySkillFolders {
            folders: vec![
                "/opt/perstack-skills/a".into(),
                "/opt/perstack-skills/b".into(),
            ],
        };
        assert!(!lacking.is_blocking());
        assert_eq!(
            lacking.to_string(),
            "skill folders' owners: the container's root is read-only, so \
             /opt/perstack-skills/a, /opt/perstack-skills/b keep the image's owner and mode \
             (readable by every uid), and each skill's Landlock domain alone keeps the other \
             principals out of them; run with a writable root to make each its skill's group's \
             alone as well"
        );
    }

    #[test]
    fn no_seccomp_is_blocking() {
        let p = Protections {
            seccomp: SeccompSupport::Unavailable(libc::EINVAL),
            ..full()
        };
        assert!(!p.is_sufficient());
        assert!(p.summary().contains("Missing: seccomp filters (EINVAL)"));
    }

    #[test]
    fn the_probe_answers_on_this_kernel() {
        // Whatever the kernel offers, the probe names it; the e2e tests check the values.
        let p = Protections::probe();
        assert_eq!(p.uid, nix::unistd::geteuid().as_raw());
        assert!(p.summary().starts_with("isolation: "));
    }
}
