//! The few system calls no crate wraps: Landlock's version query, seccomp's action query,
//! capability sets, and marking descriptors close-on-exec. Each is one call with plain integer
//! arguments or a small struct on our stack.

use std::io;

use nix::errno::Errno;

use super::probe::{LandlockSupport, SeccompSupport};

/// Capability numbers (linux/capability.h).
pub(super) const CAP_SETGID: u32 = 6;
/// See [`CAP_SETGID`].
pub(super) const CAP_SETUID: u32 = 7;
/// See [`CAP_SETGID`].
pub(super) const CAP_SETPCAP: u32 = 8;
/// See [`CAP_SETGID`].
pub(super) const CAP_SYS_CHROOT: u32 = 18;

/// `errno` as its symbolic name ("EPERM"), for messages.
pub(super) fn errno_name(errno: i32) -> String {
    format!("{:?}", Errno::from_raw(errno))
}

/// Landlock's ABI version, or why there is none.
pub(super) fn landlock_abi() -> LandlockSupport {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0, the version query reads no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if version >= 1 {
        return LandlockSupport::Abi(u32::try_from(version).unwrap_or(u32::MAX));
    }
    match Errno::last() {
        Errno::EOPNOTSUPP => LandlockSupport::NotEnabled,
        Errno::ENOSYS => LandlockSupport::NotImplemented,
        errno => LandlockSupport::Blocked(errno as i32),
    }
}

/// Whether seccomp filters that return an errno can be installed.
pub(super) fn seccomp_errno_filters() -> SeccompSupport {
    const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: the kernel reads one u32 from a live stack variable.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    if rc == 0 {
        SeccompSupport::Filters
    } else {
        SeccompSupport::Unavailable(Errno::last() as i32)
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The three capability sets of this thread, 64 bits each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    /// Effective.
    pub effective: u64,
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
}

/// This thread's capability sets.
pub(super) fn capabilities() -> io::Result<CapSets> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 reads a header and writes two data structs, both on our stack.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// This thread's effective capabilities, `None` if they cannot be read.
pub(super) fn effective_capabilities() -> Option<u64> {
    capabilities().ok().map(|c| c.effective)
}

/// Empties the effective, permitted and inheritable sets (always allowed: only lowers).
pub(super) fn clear_capabilities() -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: version 3 reads a header and two data structs from our stack.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties the ambient set (always allowed).
pub(super) fn clear_ambient_capabilities() -> io::Result<()> {
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )
}

/// The capability numbers this kernel knows: 0 up to, not including, the first that
/// `PR_CAPBSET_READ` rejects.
fn known_capabilities() -> impl Iterator<Item = libc::c_ulong> {
    (0..64).take_while(|&cap| {
        // SAFETY: PR_CAPBSET_READ takes an integer and touches no memory.
        unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) >= 0 }
    })
}

/// Removes every capability from the bounding set (needs CAP_SETPCAP).
pub(super) fn drop_bounding_set() -> io::Result<()> {
    for cap in known_capabilities().collect::<Vec<_>>() {
        prctl(libc::PR_CAPBSET_DROP, cap)?;
    }
    Ok(())
}

/// Whether the bounding set is empty.
pub(super) fn bounding_set_is_empty() -> bool {
    known_capabilities().all(|cap| {
        // SAFETY: as in `known_capabilities`.
        unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) == 0 }
    })
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the options used here take integers and touch no memory.
    let rc = unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `PR_SET_NO_NEW_PRIVS`: no `execve` can grant privileges again (setuid bits and file
/// capabilities are ignored), and unprivileged processes may install Landlock and seccomp.
pub(super) fn set_no_new_privs() -> io::Result<()> {
    nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)
}

/// Marks every descriptor from `first` on close-on-exec.
pub(super) fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range takes integers; CLOEXEC only sets flags, it closes nothing now.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clears close-on-exec on `fd`, so it survives `execve`. Async-signal-safe: one `fcntl`.
pub(super) fn clear_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: F_SETFD takes an integer.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `fd` is an open descriptor of this process.
pub(super) fn check_open(fd: i32) -> io::Result<()> {
    // SAFETY: F_GETFD takes an integer and only reads the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_are_symbolic() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(libc::ENOSYS), "ENOSYS");
    }

    #[test]
    fn this_thread_s_capabilities_can_be_read() {
        let caps = capabilities().expect("capget");
        // The permitted set bounds the effective one.
        assert_eq!(caps.effective & !caps.permitted, 0);
        assert!(
            known_capabilities().count() >= 38,
            "CAP_CHECKPOINT_RESTORE is 40"
        );
    }
}
