//! The filters, run on synthetic system calls by a classic-BPF interpreter: which calls each
//! principal's filters refuse, and with which errno. The e2e tests make the same calls for real.

use std::collections::BTreeSet;

use super::*;

/// `struct seccomp_data`: the input a filter sees.
struct Call {
    nr: i64,
    arch: u32,
    args: [u64; 6],
}

fn call(nr: i64, args: &[u64]) -> Call {
    let mut all = [0u64; 6];
    all[..args.len()].copy_from_slice(args);
    Call {
        nr,
        arch: AUDIT_ARCH,
        args: all,
    }
}

impl Call {
    /// The 32-bit word at `offset` of `struct seccomp_data` (little-endian halves).
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr as u32,
            4 => self.arch,
            16..=63 => {
                let arg = self.args[((offset - 16) / 8) as usize];
                if offset.is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("unexpected load at offset {offset}"),
        }
    }
}

/// Runs one program; panics on an instruction the filters should not contain.
fn run(program: &[sock_filter], call: &Call) -> u32 {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = &program[pc];
        pc += 1;
        match insn.code {
            0x20 => acc = call.word(insn.k), // ld [k]
            0x54 => acc &= insn.k,           // and #k
            0x06 => return insn.k,           // ret #k
            0x05 => pc += insn.k as usize,   // ja
            0x15 | 0x25 | 0x35 | 0x45 => {
                let taken = match insn.code {
                    0x15 => acc == insn.k,
                    0x25 => acc > insn.k,
                    0x35 => acc >= insn.k,
                    _ => acc & insn.k != 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            code => panic!("unexpected BPF instruction {code:#x}"),
        }
    }
}

/// What the kernel decides with several filters: the action of highest precedence (lowest as a
/// signed action number, KILL_PROCESS first); ALLOW when all allow.
fn decide(programs: &[BpfProgram], call: &Call) -> Result<(), i32> {
    let ret = programs
        .iter()
        .map(|p| run(p, call))
        .min_by_key(|&r| (r & libc::SECCOMP_RET_ACTION_FULL) as i32)
        .expect("programs");
    match ret & libc::SECCOMP_RET_ACTION_FULL {
        libc::SECCOMP_RET_ALLOW => Ok(()),
        libc::SECCOMP_RET_ERRNO => Err((ret & libc::SECCOMP_RET_DATA) as i32),
        libc::SECCOMP_RET_KILL_PROCESS => Err(-1),
        other => panic!("unexpected action {other:#x}"),
    }
}

/// The filters of a principal allowed the proxy's port (and UDP when `udp`).
fn filters(udp: bool) -> [BpfProgram; 2] {
    let mut net = NetRules::proxy_only(3128);
    net.udp = udp;
    programs(&net).expect("filters build")
}

fn socket(family: i32, kind: i32, protocol: i32) -> Call {
    call(
        libc::SYS_socket,
        &[family as u64, kind as u64, protocol as u64],
    )
}

const EPERM: Result<(), i32> = Err(libc::EPERM);
const ENOSYS: Result<(), i32> = Err(libc::ENOSYS);

#[test]
fn tcp_and_unix_sockets_are_allowed_with_their_flags() {
    let f = filters(false);
    for kind in [
        libc::SOCK_STREAM,
        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
    ] {
        for family in [libc::AF_INET, libc::AF_INET6] {
            assert_eq!(decide(&f, &socket(family, kind, 0)), Ok(()));
            assert_eq!(decide(&f, &socket(family, kind, libc::IPPROTO_TCP)), Ok(()));
        }
    }
    for kind in [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET] {
        assert_eq!(decide(&f, &socket(libc::AF_UNIX, kind, 0)), Ok(()));
    }
    assert_eq!(
        decide(
            &f,
            &socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)
        ),
        Ok(())
    );
}

#[test]
fn udp_raw_and_non_tcp_stream_sockets_are_refused() {
    let f = filters(false);
    const IPPROTO_MPTCP: i32 = 262;
    for family in [libc::AF_INET, libc::AF_INET6] {
        assert_eq!(decide(&f, &socket(family, libc::SOCK_DGRAM, 0)), EPERM);
        assert_eq!(
            decide(
                &f,
                &socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
            ),
            EPERM
        );
        assert_eq!(
            decide(&f, &socket(family, libc::SOCK_DGRAM, libc::IPPROTO_ICMP)),
            EPERM
        );
        assert_eq!(
            decide(&f, &socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)),
            EPERM
        );
        assert_eq!(decide(&f, &socket(family, libc::SOCK_SEQPACKET, 0)), EPERM);
        assert_eq!(
            decide(&f, &socket(family, libc::SOCK_STREAM, IPPROTO_MPTCP)),
            EPERM
        );
        assert_eq!(
            decide(&f, &socket(family, libc::SOCK_STREAM, libc::IPPROTO_SCTP)),
            EPERM
        );
        // High bits of an int argument are ignored by the kernel, and by the filter.
        assert_eq!(
            decide(
                &f,
                &socket(family, libc::SOCK_STREAM, IPPROTO_MPTCP | (1 << 31))
            ),
            EPERM
        );
    }
    for family in [
        libc::AF_PACKET,
        libc::AF_VSOCK,
        libc::AF_ALG,
        libc::AF_KEY,
        libc::AF_XDP,
        libc::AF_BLUETOOTH,
        libc::AF_TIPC,
        43, // AF_SMC
    ] {
        assert_eq!(decide(&f, &socket(family, libc::SOCK_STREAM, 0)), EPERM);
    }
    assert_eq!(
        decide(
            &f,
            &socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_SOCK_DIAG)
        ),
        EPERM
    );
    assert_eq!(
        decide(
            &f,
            &socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_AUDIT)
        ),
        EPERM
    );
    let pair = |family: i32| call(libc::SYS_socketpair, &[family as u64, 1, 0]);
    assert_eq!(decide(&f, &pair(libc::AF_UNIX)), Ok(()));
    assert_eq!(decide(&f, &pair(libc::AF_INET)), EPERM);
}

#[test]
fn a_principal_without_any_ip_grant_gets_no_ip_socket() {
    let f = programs(&NetRules::none()).expect("filters build");
    for family in [libc::AF_INET, libc::AF_INET6] {
        for kind in [libc::SOCK_STREAM, libc::SOCK_STREAM | libc::SOCK_CLOEXEC] {
            assert_eq!(decide(&f, &socket(family, kind, 0)), EPERM);
            // The family is an int to the kernel: high bits do not hide it.
            let high = call(
                libc::SYS_socket,
                &[family as u64 | (1 << 32), kind as u64, 0],
            );
            assert_eq!(decide(&f, &high), EPERM);
        }
    }
    assert_eq!(
        decide(&f, &socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)),
        Ok(())
    );
    let route = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
    assert_eq!(decide(&f, &route), Ok(()));
    // A bind grant alone (a server) keeps TCP.
    let mut server = NetRules::none();
    server.bind = vec![8080];
    let f = programs(&server).expect("filters build");
    assert_eq!(
        decide(&f, &socket(libc::AF_INET, libc::SOCK_STREAM, 0)),
        Ok(())
    );
}

#[test]
fn a_principal_granted_udp_gets_plain_udp_only() {
    let f = filters(true);
    for family in [libc::AF_INET, libc::AF_INET6] {
        assert_eq!(decide(&f, &socket(family, libc::SOCK_DGRAM, 0)), Ok(()));
        assert_eq!(
            decide(&f, &socket(family, libc::SOCK_DGRAM, libc::IPPROTO_UDP)),
            Ok(())
        );
        assert_eq!(
            decide(&f, &socket(family, libc::SOCK_DGRAM, libc::IPPROTO_ICMP)),
            EPERM
        );
        assert_eq!(decide(&f, &socket(family, libc::SOCK_RAW, 0)), EPERM);
    }
}

#[test]
fn every_listed_call_is_refused_and_ordinary_ones_are_not() {
    let f = filters(false);
    for denied in DENIED {
        assert_eq!(decide(&f, &call(denied.nr, &[])), EPERM, "{}", denied.name);
    }
    for denied in NOT_IMPLEMENTED {
        assert_eq!(decide(&f, &call(denied.nr, &[])), ENOSYS, "{}", denied.name);
    }
    // `quotactl` by descriptor, which the name-by-path entry alone would leave open.
    assert_eq!(decide(&f, &call(libc::SYS_quotactl_fd, &[])), EPERM);
    for nr in [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_openat,
        libc::SYS_execve,
        libc::SYS_connect,
        libc::SYS_kill,
        libc::SYS_landlock_restrict_self,
        libc::SYS_seccomp,
        libc::SYS_prctl,
    ] {
        assert_eq!(decide(&f, &call(nr, &[])), Ok(()), "syscall {nr}");
    }
}

#[test]
fn the_tables_name_each_call_once() {
    let mut seen = BTreeSet::new();
    for denied in DENIED.iter().chain(NOT_IMPLEMENTED) {
        assert!(seen.insert(denied.nr), "{} listed twice", denied.name);
        assert!(!denied.reason.is_empty());
    }
}

#[test]
fn clone_may_make_threads_and_processes_but_no_namespace() {
    let f = filters(false);
    let clone = |flags: i32| call(libc::SYS_clone, &[flags as u64]);
    let thread = libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID;
    assert_eq!(decide(&f, &clone(thread)), Ok(()));
    assert_eq!(decide(&f, &clone(libc::SIGCHLD)), Ok(()));
    for flag in CLONE_NAMESPACES {
        assert_eq!(decide(&f, &clone(libc::SIGCHLD | flag)), EPERM, "{flag:#x}");
    }
}

#[test]
fn personality_ioctl_and_page_moves_are_refused_only_for_their_dangerous_arguments() {
    let f = filters(false);
    let personality = |p: u64| call(libc::SYS_personality, &[p]);
    assert_eq!(decide(&f, &personality(0)), Ok(()));
    assert_eq!(decide(&f, &personality(0xffff_ffff)), Ok(()));
    assert_eq!(decide(&f, &personality(0x0040000)), EPERM); // ADDR_NO_RANDOMIZE
    assert_eq!(decide(&f, &personality(0x0400000)), EPERM); // READ_IMPLIES_EXEC

    let ioctl = |request: u64| call(libc::SYS_ioctl, &[0, request]);
    assert_eq!(decide(&f, &ioctl(libc::TIOCGWINSZ)), Ok(()));
    assert_eq!(decide(&f, &ioctl(libc::TIOCSTI)), EPERM);
    // The kernel reads the request as unsigned int; so does the filter.
    assert_eq!(decide(&f, &ioctl(libc::TIOCSTI | (1 << 32))), EPERM);
    assert_eq!(decide(&f, &ioctl(libc::TIOCLINUX)), EPERM);
    assert_eq!(decide(&f, &ioctl(libc::TIOCSETD)), EPERM);
    // Taking the terminal's foreground (tcsetpgrp): with TOSTOP set, every other principal's
    // write there then stops it (SIGTTOU) or, in PID 1's orphaned group, fails with EIO.
    assert_eq!(decide(&f, &ioctl(libc::TIOCSPGRP)), EPERM);
    assert_eq!(decide(&f, &ioctl(libc::TIOCGPGRP)), Ok(()));
    assert_eq!(decide(&f, &ioctl(libc::TIOCGETD)), Ok(()));

    for nr in [libc::SYS_move_pages, libc::SYS_migrate_pages] {
        assert_eq!(decide(&f, &call(nr, &[0])), Ok(()));
        assert_eq!(decide(&f, &call(nr, &[1])), EPERM);
    }
}

#[test]
fn resource_limits_and_priorities_change_only_for_the_caller() {
    let f = filters(false);
    let limit = 0x7ffd_0000_1000u64; // a pointer to a `struct rlimit64`
    let prlimit = |pid: u64, new: u64, old: u64| call(libc::SYS_prlimit64, &[pid, 4, new, old]);
    // glibc's setrlimit and getrlimit: pid 0.
    assert_eq!(decide(&f, &prlimit(0, limit, 0)), Ok(()));
    assert_eq!(decide(&f, &prlimit(0, 0, limit)), Ok(()));
    // Reading another process's limits changes nothing.
    assert_eq!(decide(&f, &prlimit(1, 0, limit)), Ok(()));
    // Setting them is a kill past the signal scope (RLIMIT_CPU of one second: SIGKILL).
    assert_eq!(decide(&f, &prlimit(1, limit, 0)), EPERM);
    assert_eq!(decide(&f, &prlimit(1, limit, limit)), EPERM);
    // pid_t is an int to the kernel; a pointer is 64 bits (high half alone still set).
    assert_eq!(decide(&f, &prlimit(1 | (1 << 32), limit, 0)), EPERM);
    assert_eq!(decide(&f, &prlimit(1 << 32, limit, 0)), Ok(()));
    assert_eq!(decide(&f, &prlimit(1, 1 << 40, 0)), EPERM);

    let setpriority = |which: u64, who: u64| call(libc::SYS_setpriority, &[which, who, 19]);
    const PRIO_PROCESS: u64 = libc::PRIO_PROCESS as u64;
    const PRIO_PGRP: u64 = libc::PRIO_PGRP as u64;
    const PRIO_USER: u64 = libc::PRIO_USER as u64;
    assert_eq!(decide(&f, &setpriority(PRIO_PROCESS, 0)), Ok(()));
    assert_eq!(decide(&f, &setpriority(PRIO_PROCESS, 1)), EPERM);
    // The whole process group (the supervisor's) and every process of the uid.
    assert_eq!(decide(&f, &setpriority(PRIO_PGRP, 0)), EPERM);
    assert_eq!(decide(&f, &setpriority(PRIO_USER, 0)), EPERM);
    assert_eq!(
        decide(&f, &call(libc::SYS_getpriority, &[PRIO_USER, 0])),
        Ok(())
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_calls_are_not_implemented_and_foreign_architectures_are_killed() {
    let f = filters(false);
    // x32's getpid, and x32's ptrace, which an x86_64 number comparison would miss.
    assert_eq!(decide(&f, &call(0x4000_0000 | 39, &[])), ENOSYS);
    assert_eq!(decide(&f, &call(0x4000_0000 | 521, &[])), ENOSYS);
    let mut i386 = call(26, &[]); // i386's ptrace
    i386.arch = 0x4000_0003;
    assert_eq!(decide(&f, &i386), Err(-1));
}

#[test]
fn security_md_lists_every_refused_call() {
    let doc = include_str!("../../SECURITY.md");
    let section = doc
        .split("## Confinement inside one container")
        .nth(1)
        .expect("SECURITY.md has the confinement section");
    for denied in DENIED.iter().chain(NOT_IMPLEMENTED) {
        assert!(
            section.contains(&format!("`{}`", denied.name)),
            "SECURITY.md does not list `{}`",
            denied.name
        );
    }
    for (name, _) in CONDITIONAL {
        for call in name.split(", ") {
            assert!(
                section.contains(&format!("`{call}`")),
                "SECURITY.md lacks `{call}`"
            );
        }
    }
}
