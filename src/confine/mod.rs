//! Walls between processes of one container: each principal (the runtime, the base tools, the
//! egress proxy, each skill) confined by its own uid, no capabilities, `no_new_privs`, a
//! non-dumpable process, a Landlock domain and a seccomp filter.
//!
//! This is the groundwork of the standalone image (one container, no Docker socket, a supervisor
//! as PID 1). The pieces, in the order a supervisor uses them:
//!
//! - [`probe`]: what this kernel and our privileges offer, what is missing and whether that must
//!   stop a start ([`Protections`]);
//! - [`policy`]: what one principal may do, as pure data ([`Policy`]);
//! - [`launch`]: starting a principal's program confined by its policy ([`Launch`]), through
//!   [`role`], the hidden `confine exec` role of our binary, which applies [`apply`]'s steps —
//!   [`limits`], [`identity`], [`landlock`], [`seccomp`], the program's dumpability
//!   ([`program`]) — and
//!   reports what held ([`report::Enforcement`]);
//! - [`workspace`]: the narrower domain of the programs the base tools' `exec` runs, which keeps
//!   the workspace's protected paths as they are;
//! - [`attempt`]: the moves of a hostile principal, which the tests make against these walls.
//!
//! SECURITY.md ("Confinement inside one container") lists each protection and its residual risk.

pub(crate) mod apply;
pub(crate) mod attempt;
pub(crate) mod identity;
pub(crate) mod landlock;
pub(crate) mod launch;
pub(crate) mod limits;
pub(crate) mod policy;
pub(crate) mod probe;
pub(crate) mod program;
pub(crate) mod report;
pub mod role;
pub(crate) mod seccomp;
mod sys;
pub(crate) mod workspace;

use std::path::PathBuf;

/// Confining a principal failed; nothing of its program ran.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The policy cannot be applied as written.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The launcher did not pass a variable the policy names.
    #[error("the variable {0} of the policy is not in the environment the launcher passed")]
    MissingVariable(String),
    /// No program was given.
    #[error("no program to run was given after --")]
    NoCommand,
    /// A string `execve` cannot carry.
    #[error("`{0}` contains a NUL byte")]
    NulByte(String),
    /// The program is not in the principal's PATH.
    #[error(transparent)]
    NotFound(#[from] program::NotFound),
    /// Landlock could not be applied.
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockError),
    /// The seccomp filter could not be built.
    #[error(transparent)]
    SeccompFilter(#[from] seccomp::FilterError),
    /// The seccomp filter could not be installed.
    #[error(transparent)]
    SeccompInstall(#[from] seccomp::InstallError),
    /// The identity could not be switched or the capabilities dropped.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The policy asks for a non-dumpable process, but the kernel would make it dumpable again.
    #[error(
        "the policy requires a non-dumpable process, but {file} is readable by uid {uid}, so \
         execve would make it dumpable again; install it exec-only (root-owned, mode 0711)"
    )]
    WouldBeDumpable {
        /// The program file.
        file: PathBuf,
        /// The principal's uid, which can read it.
        uid: u32,
    },
    /// A descriptor the policy keeps is not open.
    #[error("descriptor {fd}, which the policy keeps, is not open: {source}")]
    KeepFd {
        /// The descriptor.
        fd: i32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A principal's own root could not be entered.
    #[error(
        "{principal} runs in a root of its own ({root}, a skill built from its own Dockerfile), \
         and entering it failed: {source}. That takes root with CAP_SYS_CHROOT, which Docker and \
         Kubernetes give a container by default: start the container as root without dropping \
         it (no --user, no --cap-drop SYS_CHROOT or ALL), or run this Expert in the \
         multi-container mode (perstack-sandbox build --tag REF, then perstack-sandbox run \
         --image REF \"<query>\")"
    )]
    Root {
        /// The principal whose policy it is.
        principal: String,
        /// Its root.
        root: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A system call of the confinement failed.
    #[error("{what}: {source}")]
    Io {
        /// The call that failed.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The program could not be executed once confined.
    #[error("cannot execute {program}: {source}")]
    Exec {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The confinement role could not be started.
    #[error("cannot start the confinement of {principal}: {source}")]
    Spawn {
        /// The principal whose policy it is.
        principal: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The confinement role reported a failure (or none).
    #[error("confining {principal} failed: {message}")]
    Role {
        /// The principal whose policy it is.
        principal: String,
        /// What the role said.
        message: String,
    },
}
