//! What one principal may do: the confinement policy, as pure data.
//!
//! A principal is one process the standalone supervisor starts (the runtime, the base tools, the
//! egress proxy, each skill). Its policy says who it runs as, which variables it sees, which files
//! it may read, write and execute, where it may connect, and whether it must stay non-dumpable.
//! Everything not granted here is denied: a path not listed is inaccessible, a port not listed is
//! refused, a variable not listed is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The confinement of one principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Who this is, for reports and errors: "runtime", "skill `exa`", "base tools".
    pub principal: String,
    /// The user and groups it runs as.
    pub identity: Identity,
    /// Exactly the environment it gets, values included. Never serialized: the values are
    /// secrets, and the policy crosses a command line (see [`super::launch`]); only the names do
    /// (the confinement role keeps exactly those of its own environment).
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
    /// Files it may read, write and execute.
    pub filesystem: FsRules,
    /// Where it may connect or listen.
    pub network: NetRules,
    /// Which cross-process channels are closed to processes outside its Landlock domain.
    pub scopes: Scopes,
    /// It holds a secret: other processes, even under its uid, must not read its memory or
    /// `/proc/<pid>/environ`. The kernel resets this at `execve` unless the program that runs is
    /// unreadable to the principal (installed exec-only, e.g. root-owned mode 0711), so the
    /// confinement refuses to start a readable program for a policy that asks for it.
    pub non_dumpable: bool,
    /// File descriptors above 2 the program keeps (a socketpair end to the runtime, say); every
    /// other inherited descriptor is closed at `execve`.
    pub keep_fds: Vec<i32>,
    /// Resource bounds of its processes (none by default).
    #[serde(default)]
    pub limits: ResourceLimits,
    /// A root filesystem of its own (a skill built from its own Dockerfile), entered with
    /// `chroot` before the identity switch; its filesystem rules then name paths inside it.
    #[serde(default)]
    pub root: Option<OwnRoot>,
}

/// A principal's own root filesystem: the folder it becomes `/` of, and where it starts there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnRoot {
    /// The folder, as the launcher sees it.
    pub path: PathBuf,
    /// The working directory inside it.
    pub workdir: PathBuf,
}

/// Resource bounds set on a principal's process before it executes its program, inherited by
/// every process it starts. All principals of one container share its memory and pids cgroup;
/// these bound each one within it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// `RLIMIT_NPROC`: how many processes (threads included) its uid may have. The kernel counts
    /// every task of the uid in the user namespace — beyond this container when the engine maps
    /// no user namespace — so it bounds a principal only where the uid is its alone.
    pub processes: Option<u64>,
    /// `RLIMIT_DATA`, bytes: the private writable memory (heap, anonymous mappings, thread
    /// stacks) of each of its processes. Not `RLIMIT_AS`, which counts the large inaccessible
    /// areas V8's WebAssembly, Go and the JVM reserve and so breaks them.
    pub data_bytes: Option<u64>,
    /// `/proc/self/oom_score_adj` (raised only: lowering needs CAP_SYS_RESOURCE): when the
    /// container runs out of memory, the kernel kills a principal with a higher value first.
    pub oom_score_adj: Option<i32>,
}

/// The user a principal runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identity {
    /// Keep the current user (the supervisor was not started as root, so it cannot switch).
    /// Capabilities are dropped either way.
    Inherit,
    /// Stay uid 0 and gid 0 with no supplementary groups, every capability dropped and the
    /// bounding set emptied (refused when it cannot be): a principal that must write a folder
    /// only root may write (a root-owned workspace), as the multi-container mode runs base-skill
    /// for a root invoker. Root's files stay writable to it where its Landlock domain reaches
    /// (SECURITY.md, "Confinement inside one container").
    Root,
    /// Switch to this uid and gid, with exactly these supplementary groups (root only).
    Switch {
        /// The user id; never 0 (that is [`Identity::Root`]).
        uid: u32,
        /// The primary group id.
        gid: u32,
        /// Supplementary groups; usually none.
        groups: Vec<u32>,
    },
}

/// Filesystem grants. A path grants access to everything beneath it; the union of a path's
/// entries applies (a folder both read-write and executable is both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsRules {
    /// Read files and list folders.
    pub read_only: Vec<PathBuf>,
    /// Read, write, create, remove, rename and truncate; not execute.
    pub read_write: Vec<PathBuf>,
    /// Read and execute (programs, their libraries and interpreters).
    pub executable: Vec<PathBuf>,
}

/// Network grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRules {
    /// Outgoing TCP connections.
    pub connect: TcpConnect,
    /// TCP ports it may bind (listen on). Empty for everyone but a server such as the proxy.
    pub bind: Vec<u16>,
    /// Datagram sockets (UDP). Landlock cannot restrict them by port before ABI 10, so only the
    /// egress proxy, which resolves names, gets them.
    pub udp: bool,
}

/// Where a principal may connect over TCP. Landlock matches the port, not the address (see
/// SECURITY.md): `Port(p)` allows port `p` on any address the network namespace can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpConnect {
    /// No TCP connection at all.
    Denied,
    /// Only to this port: the in-container egress proxy's.
    Port(u16),
    /// Anywhere (the egress proxy itself).
    Any,
}

/// Landlock scopes (ABI ≥ 6): channels closed to processes outside the principal's domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scopes {
    /// Connecting to abstract unix sockets created outside the domain.
    pub abstract_unix_sockets: bool,
    /// Sending signals to processes outside the domain.
    pub signals: bool,
}

impl Scopes {
    /// Both channels closed: what every principal gets.
    pub const ALL: Scopes = Scopes {
        abstract_unix_sockets: true,
        signals: true,
    };
}

impl NetRules {
    /// No network at all but unix sockets.
    pub fn none() -> NetRules {
        NetRules {
            connect: TcpConnect::Denied,
            bind: Vec::new(),
            udp: false,
        }
    }

    /// TCP to one port only: the in-container proxy's.
    pub fn proxy_only(port: u16) -> NetRules {
        NetRules {
            connect: TcpConnect::Port(port),
            ..NetRules::none()
        }
    }
}

/// Devices every program expects to open: the bit bucket and the random sources.
pub const STANDARD_DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

impl FsRules {
    /// What a dynamically linked program needs from a Debian-like root: programs and libraries
    /// executable, `/etc` and `/proc` readable, [`STANDARD_DEVICES`] read-write. Paths an image
    /// lacks are skipped when the rules are applied (and reported).
    pub fn system() -> FsRules {
        FsRules {
            read_only: vec!["/etc".into(), "/proc".into()],
            read_write: STANDARD_DEVICES.iter().map(PathBuf::from).collect(),
            executable: ["/usr", "/bin", "/sbin", "/lib", "/lib64"]
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

/// A policy that cannot be applied as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Landlock rules are anchored at absolute paths.
    #[error("{principal}: the path `{path}` is not absolute; rules need absolute paths")]
    RelativePath {
        /// The principal whose policy it is.
        principal: String,
        /// The path as the policy gives it.
        path: PathBuf,
    },
    /// uid 0 keeps root's files writable even without capabilities.
    #[error(
        "{principal}: switching to uid 0 would leave root's files writable; give it a uid of its \
         own, or `Identity::Root` where root's files are meant to be writable"
    )]
    RootUid {
        /// The principal whose policy it is.
        principal: String,
    },
    /// A name `execve` cannot carry.
    #[error("{principal}: `{name}` is not a valid environment variable name")]
    EnvName {
        /// The principal whose policy it is.
        principal: String,
        /// The variable name.
        name: String,
    },
    /// Descriptors 0–2 are always kept; others must be real descriptors.
    #[error("{principal}: keep_fds lists {fd}; list descriptors above 2 (0–2 are always kept)")]
    KeepFd {
        /// The principal whose policy it is.
        principal: String,
        /// The descriptor.
        fd: i32,
    },
    /// Port 0 is "any ephemeral port", never a destination.
    #[error("{principal}: TCP port 0 is not a destination; give the proxy's port")]
    ConnectPortZero {
        /// The principal whose policy it is.
        principal: String,
    },
}

impl Policy {
    /// A principal with nothing granted: current user, empty environment, no files, no network,
    /// both scopes, non-dumpable. Grants are added field by field.
    pub fn deny_all(principal: impl Into<String>) -> Policy {
        Policy {
            principal: principal.into(),
            identity: Identity::Inherit,
            env: BTreeMap::new(),
            filesystem: FsRules::default(),
            network: NetRules::none(),
            scopes: Scopes::ALL,
            non_dumpable: true,
            keep_fds: Vec::new(),
            limits: ResourceLimits::default(),
            root: None,
        }
    }

    /// Checks what can be checked without touching the system.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let principal = || self.principal.clone();
        let fs = &self.filesystem;
        let root = self.root.iter().flat_map(|r| [&r.path, &r.workdir]);
        if let Some(path) = [&fs.read_only, &fs.read_write, &fs.executable]
            .into_iter()
            .flatten()
            .chain(root)
            .find(|p| !p.is_absolute())
        {
            return Err(PolicyError::RelativePath {
                principal: principal(),
                path: path.clone(),
            });
        }
        if let Identity::Switch { uid: 0, .. } = self.identity {
            return Err(PolicyError::RootUid {
                principal: principal(),
            });
        }
        if let Some(name) = self.env.keys().find(|n| !valid_env_name(n)) {
            return Err(PolicyError::EnvName {
                principal: principal(),
                name: name.clone(),
            });
        }
        if let Some(&fd) = self.keep_fds.iter().find(|&&fd| fd < 3) {
            return Err(PolicyError::KeepFd {
                principal: principal(),
                fd,
            });
        }
        if self.network.connect == TcpConnect::Port(0) {
            return Err(PolicyError::ConnectPortZero {
                principal: principal(),
            });
        }
        Ok(())
    }

    /// Every path the filesystem rules name, with the access each grants.
    pub fn grants(&self) -> impl Iterator<Item = (&Path, FsAccess)> {
        let fs = &self.filesystem;
        fs.read_only
            .iter()
            .map(|p| (p.as_path(), FsAccess::ReadOnly))
            .chain(
                fs.read_write
                    .iter()
                    .map(|p| (p.as_path(), FsAccess::ReadWrite)),
            )
            .chain(
                fs.executable
                    .iter()
                    .map(|p| (p.as_path(), FsAccess::Executable)),
            )
    }
}

/// The three kinds of filesystem grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsAccess {
    /// See [`FsRules::read_only`].
    ReadOnly,
    /// See [`FsRules::read_write`].
    ReadWrite,
    /// See [`FsRules::executable`].
    Executable,
}

/// A name `execve` can carry and a shell can read: non-empty, no `=`, no NUL.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skill() -> Policy {
        let mut policy = Policy::deny_all("skill `exa`");
        policy.identity = Identity::Switch {
            uid: 10001,
            gid: 10001,
            groups: vec![],
        };
        policy.env.insert("EXA_API_KEY".into(), "secret".into());
        policy.filesystem = FsRules::system();
        policy.filesystem.read_only.push("/opt/skills/exa".into());
        policy.network = NetRules::proxy_only(3128);
        policy
    }

    #[test]
    fn nothing_is_granted_unless_listed() {
        let policy = Policy::deny_all("base tools");
        assert_eq!(policy.identity, Identity::Inherit);
        assert!(policy.env.is_empty());
        assert_eq!(policy.grants().count(), 0);
        assert_eq!(policy.network.connect, TcpConnect::Denied);
        assert!(policy.network.bind.is_empty() && !policy.network.udp);
        assert_eq!(policy.scopes, Scopes::ALL);
        assert!(policy.non_dumpable);
        assert!(policy.keep_fds.is_empty());
        assert_eq!(policy.limits, ResourceLimits::default());
        assert_eq!(policy.root, None);
        policy.validate().expect("valid");
    }

    #[test]
    fn a_skill_policy_is_valid_and_lists_its_grants() {
        let policy = skill();
        policy.validate().expect("valid");
        let grants: Vec<_> = policy.grants().collect();
        assert!(grants.contains(&(Path::new("/opt/skills/exa"), FsAccess::ReadOnly)));
        assert!(grants.contains(&(Path::new("/dev/null"), FsAccess::ReadWrite)));
        assert!(grants.contains(&(Path::new("/usr"), FsAccess::Executable)));
        assert!(!grants.iter().any(|(p, _)| p.starts_with("/workspace")));
    }

    #[test]
    fn the_serialized_policy_carries_variable_names_never_values() {
        let policy = skill();
        let json = serde_json::to_string(&policy).expect("serialize");
        assert!(!json.contains("secret"), "{json}");
        let back: Policy = serde_json::from_str(&json).expect("deserialize");
        assert!(back.env.is_empty());
        assert_eq!(
            Policy {
                env: policy.env.clone(),
                ..back
            },
            policy
        );
    }

    #[test]
    fn invalid_policies_say_what_to_change() {
        let mut relative = skill();
        relative.filesystem.read_write.push("workspace".into());
        assert_eq!(
            relative.validate().unwrap_err().to_string(),
            "skill `exa`: the path `workspace` is not absolute; rules need absolute paths"
        );

        let mut root = skill();
        root.identity = Identity::Switch {
            uid: 0,
            gid: 0,
            groups: vec![],
        };
        assert!(matches!(root.validate(), Err(PolicyError::RootUid { .. })));

        let mut env = skill();
        env.env.insert("A=B".into(), "x".into());
        assert!(matches!(env.validate(), Err(PolicyError::EnvName { name, .. }) if name == "A=B"));

        let mut fds = skill();
        fds.keep_fds = vec![3, 1];
        assert!(matches!(
            fds.validate(),
            Err(PolicyError::KeepFd { fd: 1, .. })
        ));

        let mut root = skill();
        root.root = Some(OwnRoot {
            path: "/opt/perstack-skills/x/rootfs".into(),
            workdir: "srv".into(),
        });
        assert!(matches!(
            root.validate(),
            Err(PolicyError::RelativePath { path, .. }) if path == Path::new("srv")
        ));

        let mut port = skill();
        port.network = NetRules::proxy_only(0);
        assert!(matches!(
            port.validate(),
            Err(PolicyError::ConnectPortZero { .. })
        ));
    }
}
