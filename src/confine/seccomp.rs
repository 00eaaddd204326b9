//! The seccomp filters: what Landlock does not cover, closed by system call.
//!
//! Landlock governs files, TCP ports and two scopes. Everything else a confined process could use
//! to reach past its walls is listed here with the reason, and refused with an errno (never a
//! kill, so well-behaved programs see an ordinary failure and fall back). Two filters are
//! installed:
//!
//! - the **deny filter** (built with `seccompiler`): [`DENIED`] whatever the arguments, and the
//!   argument-dependent rules of [`CONDITIONAL`], all with `EPERM`;
//! - the **guard** (eleven hand-written BPF instructions on x86_64, ten on aarch64): any other
//!   architecture's system calls kill the process, and x32 system calls (numbers with bit 30
//!   set, which a filter matching x86_64 numbers would let through), `clone3` and io_uring
//!   return `ENOSYS`, so glibc and libuv fall back to `clone` and to their thread pool.
//!
//! Arguments are compared as 32-bit values where the kernel itself truncates them to `int` or
//! `unsigned int` (socket family, type and protocol; ioctl request; clone flags; personality;
//! `prlimit64`'s pid; `setpriority`'s `which` and `who`), so setting high bits cannot slip past a
//! comparison; a pointer (`prlimit64`'s new limit) is compared whole.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, sock_filter,
};

use super::policy::{NetRules, TcpConnect};

/// A system call the filters refuse, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Denied {
    /// Its name.
    pub name: &'static str,
    /// Its number on this architecture.
    pub nr: i64,
    /// What it would let a confined process do.
    pub reason: &'static str,
}

const fn deny(name: &'static str, nr: i64, reason: &'static str) -> Denied {
    Denied { name, nr, reason }
}

const CROSS_PROCESS: &str = "reads or changes another process's memory or descriptors; Landlock \
     already limits it to the caller's own domain, but nothing a principal runs needs it";
const KEYRING: &str = "the kernel keyring is not namespaced: keys of the same uid are shared \
     between principals and with the host";
const NAMESPACES: &str = "a new user namespace hands the process every capability inside it, the \
     entry point of most unprivileged kernel exploits";
const MOUNTS: &str = "changes what the filesystem looks like (needs CAP_SYS_ADMIN, which a user \
     namespace would give)";
const SYSV_IPC: &str = "System V IPC objects are keyed across the whole container and guarded \
     only by uid and mode, which Landlock does not govern: a channel between principals sharing a \
     uid";
const POSIX_MQUEUE: &str = "POSIX message queues live outside every path Landlock governs: the \
     same channel as System V IPC";
const PRIVILEGED: &str = "host administration; capabilities are already dropped, refused twice";

/// Refused whatever the arguments, with `EPERM`.
pub(crate) const DENIED: &[Denied] = &[
    deny("ptrace", libc::SYS_ptrace, CROSS_PROCESS),
    deny(
        "process_vm_readv",
        libc::SYS_process_vm_readv,
        CROSS_PROCESS,
    ),
    deny(
        "process_vm_writev",
        libc::SYS_process_vm_writev,
        CROSS_PROCESS,
    ),
    deny("process_madvise", libc::SYS_process_madvise, CROSS_PROCESS),
    deny(
        "pidfd_getfd",
        libc::SYS_pidfd_getfd,
        "copies a descriptor out of another process",
    ),
    deny(
        "kcmp",
        libc::SYS_kcmp,
        "compares kernel objects of another process (an address oracle)",
    ),
    deny("add_key", libc::SYS_add_key, KEYRING),
    deny("request_key", libc::SYS_request_key, KEYRING),
    deny("keyctl", libc::SYS_keyctl, KEYRING),
    deny(
        "bpf",
        libc::SYS_bpf,
        "loads programs into the kernel: a large attack surface and socket snooping",
    ),
    deny(
        "perf_event_open",
        libc::SYS_perf_event_open,
        "performance counters: side channels on other processes and kernel attack surface",
    ),
    deny(
        "userfaultfd",
        libc::SYS_userfaultfd,
        "pauses the kernel on a page fault, the classic way to win kernel races",
    ),
    deny("unshare", libc::SYS_unshare, NAMESPACES),
    deny("setns", libc::SYS_setns, NAMESPACES),
    deny("shmget", libc::SYS_shmget, SYSV_IPC),
    deny("shmat", libc::SYS_shmat, SYSV_IPC),
    deny("shmctl", libc::SYS_shmctl, SYSV_IPC),
    deny("msgget", libc::SYS_msgget, SYSV_IPC),
    deny("msgsnd", libc::SYS_msgsnd, SYSV_IPC),
    deny("msgrcv", libc::SYS_msgrcv, SYSV_IPC),
    deny("msgctl", libc::SYS_msgctl, SYSV_IPC),
    deny("semget", libc::SYS_semget, SYSV_IPC),
    deny("semop", libc::SYS_semop, SYSV_IPC),
    deny("semtimedop", libc::SYS_semtimedop, SYSV_IPC),
    deny("semctl", libc::SYS_semctl, SYSV_IPC),
    deny("mq_open", libc::SYS_mq_open, POSIX_MQUEUE),
    deny("mq_unlink", libc::SYS_mq_unlink, POSIX_MQUEUE),
    deny("mq_timedsend", libc::SYS_mq_timedsend, POSIX_MQUEUE),
    deny("mq_timedreceive", libc::SYS_mq_timedreceive, POSIX_MQUEUE),
    deny("mq_notify", libc::SYS_mq_notify, POSIX_MQUEUE),
    deny("mq_getsetattr", libc::SYS_mq_getsetattr, POSIX_MQUEUE),
    deny("mount", libc::SYS_mount, MOUNTS),
    deny("umount2", libc::SYS_umount2, MOUNTS),
    deny("pivot_root", libc::SYS_pivot_root, MOUNTS),
    deny("chroot", libc::SYS_chroot, MOUNTS),
    deny("move_mount", libc::SYS_move_mount, MOUNTS),
    deny("open_tree", libc::SYS_open_tree, MOUNTS),
    deny("fsopen", libc::SYS_fsopen, MOUNTS),
    deny("fsconfig", libc::SYS_fsconfig, MOUNTS),
    deny("fsmount", libc::SYS_fsmount, MOUNTS),
    deny("fspick", libc::SYS_fspick, MOUNTS),
    deny("mount_setattr", libc::SYS_mount_setattr, MOUNTS),
    deny(
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
        "opens a file by handle, past every path check (the 'shocker' container escape)",
    ),
    deny(
        "fanotify_init",
        libc::SYS_fanotify_init,
        "watches a whole filesystem's accesses",
    ),
    deny(
        "kexec_load",
        libc::SYS_kexec_load,
        "replaces the running kernel",
    ),
    deny(
        "kexec_file_load",
        libc::SYS_kexec_file_load,
        "replaces the running kernel",
    ),
    deny(
        "init_module",
        libc::SYS_init_module,
        "loads code into the kernel",
    ),
    deny(
        "finit_module",
        libc::SYS_finit_module,
        "loads code into the kernel",
    ),
    deny(
        "delete_module",
        libc::SYS_delete_module,
        "unloads kernel code",
    ),
    deny("reboot", libc::SYS_reboot, PRIVILEGED),
    deny("swapon", libc::SYS_swapon, PRIVILEGED),
    deny("swapoff", libc::SYS_swapoff, PRIVILEGED),
    deny("acct", libc::SYS_acct, PRIVILEGED),
    deny("quotactl", libc::SYS_quotactl, PRIVILEGED),
    deny("quotactl_fd", libc::SYS_quotactl_fd, PRIVILEGED),
    deny("sethostname", libc::SYS_sethostname, PRIVILEGED),
    deny("setdomainname", libc::SYS_setdomainname, PRIVILEGED),
    deny("settimeofday", libc::SYS_settimeofday, PRIVILEGED),
    deny("clock_settime", libc::SYS_clock_settime, PRIVILEGED),
    deny("vhangup", libc::SYS_vhangup, PRIVILEGED),
    deny(
        "syslog",
        libc::SYS_syslog,
        "the kernel log: kernel addresses and other processes' traces",
    ),
    #[cfg(target_arch = "x86_64")]
    deny(
        "iopl",
        libc::SYS_iopl,
        "raw I/O ports (privileged; refused twice)",
    ),
    #[cfg(target_arch = "x86_64")]
    deny(
        "ioperm",
        libc::SYS_ioperm,
        "raw I/O ports (privileged; refused twice)",
    ),
    #[cfg(target_arch = "x86_64")]
    deny(
        "modify_ldt",
        libc::SYS_modify_ldt,
        "16-bit segments: old kernel attack surface nothing modern needs",
    ),
    #[cfg(target_arch = "x86_64")]
    deny(
        "uselib",
        libc::SYS_uselib,
        "obsolete library loader with a history of kernel bugs",
    ),
];

/// Refused with `ENOSYS`, so callers fall back to what the deny filter can inspect.
pub(crate) const NOT_IMPLEMENTED: &[Denied] = &[
    deny(
        "clone3",
        libc::SYS_clone3,
        "its flags live in memory a filter cannot read, so namespaces could be created; glibc \
         falls back to clone, whose flags are checked",
    ),
    deny(
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        "io_uring performs socket, connect and file operations without the system calls this \
         filter sees; libuv falls back to its thread pool",
    ),
    deny(
        "io_uring_enter",
        libc::SYS_io_uring_enter,
        "see io_uring_setup",
    ),
    deny(
        "io_uring_register",
        libc::SYS_io_uring_register,
        "see io_uring_setup",
    ),
];

/// The argument-dependent rules of the deny filter, as SECURITY.md lists them (a test keeps the
/// two in step).
#[cfg(test)]
pub(crate) const CONDITIONAL: &[(&str, &str)] = &[
    (
        "socket",
        "only AF_UNIX; AF_INET/AF_INET6 stream sockets with protocol 0 or TCP (Landlock governs \
         TCP only: MPTCP, SCTP and SMC connect past it), and none for a principal with no TCP \
         connect, bind or UDP at all (a listen on an unbound socket binds a port past \
         Landlock); datagram sockets with protocol 0 or UDP only for principals granted UDP (no \
         ICMP 'ping' sockets); AF_NETLINK only \
         NETLINK_ROUTE (glibc's getaddrinfo and libuv read interfaces through it). Raw, packet, \
         vsock (host services), AF_ALG, AF_KEY, XDP and every other family are refused",
    ),
    ("socketpair", "only AF_UNIX"),
    (
        "clone",
        "refused with any CLONE_NEW* flag (namespaces, as for unshare)",
    ),
    (
        "personality",
        "only querying or setting PER_LINUX: ADDR_NO_RANDOMIZE and READ_IMPLIES_EXEC would weaken \
         the next program's ASLR and NX",
    ),
    (
        "ioctl",
        "TIOCSTI and TIOCLINUX refused: they type into a terminal the process shares with the \
         supervisor; TIOCSETD too: it attaches another line discipline to that terminal, loading \
         its kernel module on demand; and TIOCSPGRP: taking the terminal's foreground, after \
         which (with TOSTOP set) every other process's write there stops it or fails with EIO",
    ),
    (
        "prlimit64",
        "setting the limits of any process but the caller (pid 0) refused: Landlock does not \
         scope it, and an RLIMIT_CPU of one second on a process of the same uid has the kernel \
         kill it (reading them stays allowed)",
    ),
    (
        "setpriority",
        "only the caller (PRIO_PROCESS, 0): Landlock does not scope it, and another process, \
         process group or uid can be slowed to nice 19",
    ),
    (
        "move_pages, migrate_pages",
        "only on the calling process (pid 0): moving another process's pages is cross-process",
    ),
];

/// Building a filter failed (a bug in the tables, never the system).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the seccomp filter: {0}")]
pub struct FilterError(#[from] seccompiler::BackendError);

/// Installing a filter failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the seccomp filter: {0}")]
pub struct InstallError(#[from] seccompiler::Error);

#[cfg(target_arch = "x86_64")]
const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Both filters for a principal with these network rules: the deny filter, then the guard.
pub(crate) fn programs(net: &NetRules) -> Result<[BpfProgram; 2], FilterError> {
    Ok([deny_filter(net)?, guard()])
}

/// Installs the programs of [`programs`] on the calling thread (and what it `execve`s).
/// `PR_SET_NO_NEW_PRIVS` must be set, or the caller must hold CAP_SYS_ADMIN.
pub(crate) fn install(programs: &[BpfProgram]) -> Result<(), InstallError> {
    for program in programs {
        seccompiler::apply_filter(program)?;
    }
    Ok(())
}

fn deny_filter(net: &NetRules) -> Result<BpfProgram, FilterError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|d| (d.nr, Vec::new())).collect();
    rules.insert(libc::SYS_socket, socket_rules(net)?);
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(&[(0, Op::Ne, libc::AF_UNIX as u64)])?],
    );
    rules.insert(libc::SYS_clone, clone_rules()?);
    rules.insert(
        libc::SYS_personality,
        vec![rule(&[(0, Op::Ne, 0), (0, Op::Ne, 0xffff_ffff)])?],
    );
    rules.insert(
        libc::SYS_ioctl,
        [
            libc::TIOCSTI,
            libc::TIOCLINUX,
            libc::TIOCSETD,
            libc::TIOCSPGRP,
        ]
        .into_iter()
        .map(|request| rule(&[(1, Op::Eq, request)]))
        .collect::<Result<_, _>>()?,
    );
    rules.insert(libc::SYS_prlimit64, vec![others_limits_set()?]);
    rules.insert(
        libc::SYS_setpriority,
        // Refused unless `which` is one process and `who` 0, the caller.
        vec![
            rule(&[(0, Op::Ne, libc::PRIO_PROCESS as u64)])?,
            rule(&[(1, Op::Ne, 0)])?,
        ],
    );
    for nr in [libc::SYS_move_pages, libc::SYS_migrate_pages] {
        rules.insert(nr, vec![rule(&[(0, Op::Ne, 0)])?]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TARGET,
    )?;
    Ok(filter.try_into()?)
}

/// Whether a principal may use IP at all: a TCP connect or bind, or UDP. One that may not gets
/// no IP socket, so it cannot `listen` on one either — which binds a port the kernel picks,
/// past Landlock's bind rule, and takes connections from outside the container.
fn uses_ip(net: &NetRules) -> bool {
    net.connect != TcpConnect::Denied || !net.bind.is_empty() || net.udp
}

/// Rules matching the `socket(family, type, protocol)` calls to refuse.
fn socket_rules(net: &NetRules) -> Result<Vec<SeccompRule>, FilterError> {
    let mut rules = vec![
        rule(&[
            (0, Op::Ne, libc::AF_UNIX as u64),
            (0, Op::Ne, libc::AF_INET as u64),
            (0, Op::Ne, libc::AF_INET6 as u64),
            (0, Op::Ne, libc::AF_NETLINK as u64),
        ])?,
        rule(&[
            (0, Op::Eq, libc::AF_NETLINK as u64),
            (2, Op::Ne, libc::NETLINK_ROUTE as u64),
        ])?,
    ];
    for family in [libc::AF_INET as u64, libc::AF_INET6 as u64] {
        if uses_ip(net) {
            rules.extend(ip_socket_rules(family, net.udp)?);
        } else {
            rules.push(rule(&[(0, Op::Eq, family)])?);
        }
    }
    Ok(rules)
}

/// The rules refusing every socket of an IP `family` but plain TCP (and plain UDP when `udp`).
fn ip_socket_rules(family: u64, udp: bool) -> Result<Vec<SeccompRule>, FilterError> {
    const TYPE_MASK: u64 = 0xf;
    let stream = libc::SOCK_STREAM as u64;
    let dgram = libc::SOCK_DGRAM as u64;
    let mut rules = Vec::new();
    for kind in (0..=TYPE_MASK).filter(|&t| t != stream && !(udp && t == dgram)) {
        rules.push(rule(&[
            (0, Op::Eq, family),
            (1, Op::MaskedEq(TYPE_MASK), kind),
        ])?);
    }
    // An allowed type only with protocol 0 or its plain protocol.
    let plain = [(stream, libc::IPPROTO_TCP)]
        .into_iter()
        .chain(udp.then_some((dgram, libc::IPPROTO_UDP)));
    for (kind, protocol) in plain {
        rules.push(rule(&[
            (0, Op::Eq, family),
            (1, Op::MaskedEq(TYPE_MASK), kind),
            (2, Op::Ne, 0),
            (2, Op::Ne, protocol as u64),
        ])?);
    }
    Ok(rules)
}

/// `prlimit64(pid, resource, new_limit, old_limit)` that sets (`new_limit` not null, a 64-bit
/// pointer) the limits of another process (`pid`, an `int` to the kernel, not 0: the caller).
/// Landlock does not scope it, and the kernel allows it between processes of one uid: an
/// `RLIMIT_CPU` of one second is a `SIGKILL` no signal scope sees. glibc's `setrlimit` passes 0.
fn others_limits_set() -> Result<SeccompRule, FilterError> {
    Ok(SeccompRule::new(vec![
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, Op::Ne, 0)?,
        SeccompCondition::new(2, SeccompCmpArgLen::Qword, Op::Ne, 0)?,
    ])?)
}

/// The namespace flags of `clone`.
const CLONE_NAMESPACES: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

fn clone_rules() -> Result<Vec<SeccompRule>, FilterError> {
    CLONE_NAMESPACES
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            rule(&[(0, Op::MaskedEq(flag), flag)])
        })
        .collect()
}

type Op = SeccompCmpOp;

/// A rule matching when every `(argument, operator, value)` holds, compared as 32 bits.
fn rule(conditions: &[(u8, Op, u64)]) -> Result<SeccompRule, FilterError> {
    let conditions = conditions
        .iter()
        .map(|(arg, op, value)| {
            SeccompCondition::new(*arg, SeccompCmpArgLen::Dword, op.clone(), *value)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SeccompRule::new(conditions)?)
}

// Classic BPF, as `linux/filter.h` and `linux/seccomp.h` define it.
/// BPF_LD | BPF_W | BPF_ABS.
const BPF_LD_W_ABS: u16 = 0x20;
/// BPF_JMP | BPF_JEQ | BPF_K.
const BPF_JMP_JEQ_K: u16 = 0x15;
/// BPF_JMP | BPF_JGE | BPF_K.
const BPF_JMP_JGE_K: u16 = 0x35;
/// BPF_RET | BPF_K.
const BPF_RET_K: u16 = 0x06;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The guard: foreign architectures killed, x32 and [`NOT_IMPLEMENTED`] answered `ENOSYS`.
fn guard() -> BpfProgram {
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let mut program = vec![
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR),
    ];
    // Every test below jumps to the final `ret ENOSYS` when it matches; the instruction before
    // that allows.
    let tests = NOT_IMPLEMENTED.len() + usize::from(cfg!(target_arch = "x86_64"));
    let to_enosys = |done: usize| (tests - done) as u8;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        program.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, to_enosys(done), 0));
        done += 1;
    }
    for denied in NOT_IMPLEMENTED {
        program.push(jump(BPF_JMP_JEQ_K, denied.nr as u32, to_enosys(done), 0));
        done += 1;
    }
    program.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
    program.push(stmt(BPF_RET_K, enosys));
    program
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
