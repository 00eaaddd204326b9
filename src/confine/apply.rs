//! Confining the calling process, in order, right before it executes the principal's program.
//!
//! Runs in the confinement role: a fresh, single-threaded process of our own binary, so every step
//! may allocate and report errors (see [`super::launch`] for why this is not done in `pre_exec`).
//! The order is forced by the kernel:
//!
//! 1. non-dumpable at once: this process holds the principal's secrets from its first instruction;
//! 2. the environment, and resource bounds ([`super::limits`]) while `/proc/self` is still ours
//!    to write and still there;
//! 3. a root of its own, when the policy gives one ([`OwnRoot`]: `chroot`, then `chdir` inside
//!    it, so no working directory is left outside), while CAP_SYS_CHROOT is still held;
//! 4. everything that needs files or may fail for the policy's reasons, while errors can still be
//!    attributed: the program, the Landlock rules (paths as the principal sees them, so inside
//!    its own root), the seccomp programs;
//! 5. identity: bounding set (needs CAP_SETPCAP, so before the switch), groups, gid, uid, then no
//!    capabilities at all;
//! 6. `no_new_privs`, required by Landlock and seccomp for unprivileged callers;
//! 7. Landlock, then seccomp (seccomp last: the filter refuses nothing the steps before need, but
//!    nothing after it should need more than `execve`);
//! 8. every descriptor above 2 close-on-exec except those the policy keeps.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::ConfineError;
use super::identity;
use super::landlock::Prepared;
use super::limits;
use super::policy::{OwnRoot, Policy};
use super::probe::{LandlockSupport, SeccompSupport};
use super::program::{self, AfterExec};
use super::report::Enforcement;
use super::seccomp;
use super::sys;

/// What to `execve` once confined.
#[derive(Debug)]
pub(crate) struct Target {
    /// The resolved program.
    pub program: CString,
    /// Its arguments, the program name first.
    pub argv: Vec<CString>,
    /// Exactly the principal's environment.
    pub envp: Vec<CString>,
}

/// Confines this process by `policy`, taking the values of `env_names` from its own environment,
/// and says what holds and what to execute. The caller reports, then executes [`Target`].
pub(crate) fn confine(
    policy: &Policy,
    env_names: &[String],
    command: &[OsString],
) -> Result<(Enforcement, Target), ConfineError> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| io("PR_SET_DUMPABLE", e.into()))?;
    policy.validate()?;
    let envp = environment(env_names)?;
    let limits = limits::apply(&policy.limits)?;
    if let Some(root) = &policy.root {
        enter(root, &policy.principal)?;
    }
    let path_var = std::env::var_os("PATH").filter(|_| env_names.iter().any(|n| n == "PATH"));
    let (name, args) = command.split_first().ok_or(ConfineError::NoCommand)?;
    let program = program::resolve(name, path_var.as_deref())?;

    let kernel_abi = match sys::landlock_abi() {
        LandlockSupport::Abi(abi) => abi,
        _ => 0,
    };
    let ruleset = Prepared::new(policy)?;
    let seccomp_available = sys::seccomp_errno_filters() == SeccompSupport::Filters;
    let filters = seccomp::programs(&policy.network)?;

    let identity = identity::apply(&policy.identity)?;
    let dumpable = program::after_exec(&program, path_var.as_deref());
    if let (true, AfterExec::Dumpable(file)) = (policy.non_dumpable, &dumpable) {
        return Err(ConfineError::WouldBeDumpable {
            file: file.clone(),
            uid: identity.uid,
        });
    }

    sys::set_no_new_privs().map_err(|e| io("PR_SET_NO_NEW_PRIVS", e))?;
    let landlock = ruleset.restrict_self(kernel_abi)?;
    if seccomp_available {
        seccomp::install(&filters)?;
    }
    close_on_exec(&policy.keep_fds)?;
    // A credential change may have reset it to fs.suid_dumpable; keep it 0 until execve.
    nix::sys::prctl::set_dumpable(false).map_err(|e| io("PR_SET_DUMPABLE", e.into()))?;

    let target = Target {
        program: cstring(program.as_os_str())?,
        argv: std::iter::once(name)
            .chain(args)
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?,
        envp,
    };
    let enforcement = Enforcement {
        principal: policy.principal.clone(),
        program,
        env: env_names.to_vec(),
        identity,
        no_new_privs: true,
        landlock,
        seccomp: seccomp_available,
        dumpable,
        limits,
        root: policy.root.as_ref().map(|r| r.path.clone()),
    };
    Ok((enforcement, target))
}

/// Makes `root` this process's `/` and starts in its working directory there. `chdir("/")`
/// right after `chroot` leaves no working directory outside the new root (the classic way out
/// of a chroot); no descriptor of a folder is open here, and every other descriptor is closed
/// at `execve` but those the policy keeps.
fn enter(root: &OwnRoot, principal: &str) -> Result<(), ConfineError> {
    let failed = |source: nix::Error| ConfineError::Root {
        principal: principal.to_string(),
        root: root.path.clone(),
        source: source.into(),
    };
    nix::unistd::chroot(&root.path).map_err(failed)?;
    nix::unistd::chdir("/").map_err(failed)?;
    nix::unistd::chdir(&root.workdir).map_err(|e| io("chdir to its working directory", e.into()))
}

/// `NAME=value` for each name, from this process's environment; a missing name is an error (the
/// launcher sets every variable of the policy).
fn environment(names: &[String]) -> Result<Vec<CString>, ConfineError> {
    names
        .iter()
        .map(|name| {
            let value = std::env::var_os(name)
                .ok_or_else(|| ConfineError::MissingVariable(name.clone()))?;
            let mut pair = OsString::from(name);
            pair.push("=");
            pair.push(value);
            cstring(&pair)
        })
        .collect()
}

fn cstring(s: &OsStr) -> Result<CString, ConfineError> {
    CString::new(s.as_bytes().to_vec())
        .map_err(|_| ConfineError::NulByte(s.to_string_lossy().into_owned()))
}

/// Every descriptor above 2 close-on-exec, then `keep` inheritable again.
fn close_on_exec(keep: &[i32]) -> Result<(), ConfineError> {
    sys::cloexec_from(3).map_err(|e| io("close_range", e))?;
    for &fd in keep {
        sys::clear_cloexec(fd).map_err(|e| ConfineError::KeepFd { fd, source: e })?;
    }
    Ok(())
}

fn io(what: &'static str, source: std::io::Error) -> ConfineError {
    ConfineError::Io { what, source }
}

/// `execve`s the target; returns only on failure.
pub(crate) fn exec(target: &Target) -> ConfineError {
    let Err(error) = nix::unistd::execve(&target.program, &target.argv, &target.envp);
    ConfineError::Exec {
        program: PathBuf::from(OsString::from_vec(target.program.as_bytes().to_vec())),
        source: error.into(),
    }
}
