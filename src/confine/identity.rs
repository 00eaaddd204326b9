//! Who a confined process is: its uid, gid and groups, and no capabilities at all.
//!
//! Order matters. The bounding set can only be emptied while CAP_SETPCAP is held, so before the
//! uid switch; the switch from root to a non-root uid then clears the permitted and effective
//! sets; `capset` empties whatever is left (a principal that keeps uid 0, or a non-root process
//! started with added capabilities).

use std::io;

use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

use super::policy::Identity;
use super::sys;

/// The identity and capabilities a confined process ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityOutcome {
    /// Real, effective and saved uid.
    pub uid: u32,
    /// Real, effective and saved gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The uid was switched by the policy.
    pub switched: bool,
    /// Effective, permitted, inheritable and ambient sets are empty.
    pub capabilities_empty: bool,
    /// The bounding set is empty too, so not even a setuid-root program could bring one back
    /// (`no_new_privs` forbids that as well). False when we lacked CAP_SETPCAP to empty it.
    pub bounding_set_empty: bool,
}

/// Switching identity or dropping capabilities failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Only root may switch uid.
    #[error(
        "switching to uid {uid} needs root, and this runs as uid {current}; start the container as \
         root, or give the principal `Identity::Inherit`"
    )]
    NotRoot {
        /// The uid the policy asks for.
        uid: u32,
        /// The uid this process runs as.
        current: u32,
    },
    /// uid 0 without capabilities needs an empty bounding set.
    #[error(
        "staying uid 0 without capabilities needs CAP_SETPCAP to empty the bounding set, which \
         this container lacks; do not drop CAP_SETPCAP (docker run --cap-drop), or give the \
         workspace to a user other than root"
    )]
    BoundingSet,
    /// A system call failed.
    #[error("{what}: {source}")]
    Call {
        /// The call that failed.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Capabilities remained after dropping them all.
    #[error("capabilities remain after dropping them all: {0:?}")]
    Remaining(sys::CapSets),
}

fn call<T>(what: &'static str, result: io::Result<T>) -> Result<T, IdentityError> {
    result.map_err(|source| IdentityError::Call { what, source })
}

/// Fails unless this process runs as root, which switching to `uid` needs.
fn as_root(uid: u32) -> Result<(), IdentityError> {
    let current = nix::unistd::geteuid().as_raw();
    match current {
        0 => Ok(()),
        _ => Err(IdentityError::NotRoot { uid, current }),
    }
}

/// Applies the identity and drops every capability.
pub(crate) fn apply(identity: &Identity) -> Result<IdentityOutcome, IdentityError> {
    call(
        "clearing the ambient capabilities",
        sys::clear_ambient_capabilities(),
    )?;
    let setpcap =
        sys::effective_capabilities().is_some_and(|set| set & (1u64 << sys::CAP_SETPCAP) != 0);
    if setpcap {
        call("emptying the bounding set", sys::drop_bounding_set())?;
    }
    let switched = match identity {
        Identity::Inherit => false,
        Identity::Root => {
            as_root(0)?;
            call(
                "setgroups",
                nix::unistd::setgroups(&[]).map_err(io::Error::from),
            )?;
            // uid 0 gets the bounding set back as permitted capabilities at every execve: it
            // must be empty.
            if !sys::bounding_set_is_empty() {
                return Err(IdentityError::BoundingSet);
            }
            false
        }
        Identity::Switch { uid, gid, groups } => {
            as_root(*uid)?;
            let groups: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
            let gid = Gid::from_raw(*gid);
            let uid = Uid::from_raw(*uid);
            call(
                "setgroups",
                nix::unistd::setgroups(&groups).map_err(io::Error::from),
            )?;
            call(
                "setresgid",
                nix::unistd::setresgid(gid, gid, gid).map_err(io::Error::from),
            )?;
            call(
                "setresuid",
                nix::unistd::setresuid(uid, uid, uid).map_err(io::Error::from),
            )?;
            true
        }
    };
    call("clearing the capability sets", sys::clear_capabilities())?;
    let caps = call("reading the capability sets", sys::capabilities())?;
    if caps.effective != 0 || caps.permitted != 0 || caps.inheritable != 0 {
        return Err(IdentityError::Remaining(caps));
    }
    let groups = call(
        "reading the groups",
        nix::unistd::getgroups().map_err(io::Error::from),
    )?;
    Ok(IdentityOutcome {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        groups: groups.iter().map(|g| g.as_raw()).collect(),
        switched,
        capabilities_empty: true,
        bounding_set_empty: sys::bounding_set_is_empty(),
    })
}
