//! What a hostile principal would try, one attempt per invocation, with the outcome as JSON.
//!
//! `perstack-sandbox confine attempt NAME …` makes one attempt and prints
//! `{"ok":true,"value":…}` or `{"ok":false,"errno":13,"error":"…"}` on stdout. Run confined, it
//! shows a wall holding (the errno says which layer: EACCES from Landlock's files and ports, EPERM
//! from seccomp and Landlock's scopes); run unconfined, it shows the same attempt can succeed, so a
//! test of the wall can fail. The tests of `tests/e2e/confine.rs` run every one of them, on the
//! host and inside a container, and the standalone image's hostile-skill tests can too.
//! `hold`, `listen-tcp` and `listen-abstract` are the targets: they print what the attacker needs
//! (a pid, a port) and wait until killed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

/// The attempts.
#[derive(Debug, Subcommand)]
pub enum AttemptArgs {
    /// Print `{"pid":N}`, then wait until killed (a victim).
    Hold,
    /// Listen on a TCP address, print `{"port":N}`, accept and close connections until killed.
    ListenTcp {
        /// Address to bind, e.g. 127.0.0.1:0.
        addr: SocketAddr,
    },
    /// Listen on an abstract unix socket, print `{"ready":true}`, accept until killed.
    ListenAbstract {
        /// The name, without the leading NUL.
        name: String,
    },
    /// Read a file.
    ReadFile {
        /// The file.
        path: PathBuf,
    },
    /// Create or overwrite a file.
    WriteFile {
        /// The file.
        path: PathBuf,
    },
    /// Change a file's mode (Landlock does not govern it; ownership does).
    Chmod {
        /// The file.
        path: PathBuf,
        /// The mode, in octal (`777`).
        mode: String,
    },
    /// Rename a file or folder, replacing `to` if it exists.
    Rename {
        /// What.
        from: PathBuf,
        /// Where to.
        to: PathBuf,
    },
    /// Remove a file, or an empty folder.
    Remove {
        /// What.
        path: PathBuf,
    },
    /// Make a folder.
    MakeDir {
        /// Where.
        path: PathBuf,
    },
    /// Make a symbolic link at `link` pointing to `target`.
    Symlink {
        /// What it points to.
        target: PathBuf,
        /// The link.
        link: PathBuf,
    },
    /// Execute a program (no arguments) and wait for it.
    Exec {
        /// The program.
        path: PathBuf,
    },
    /// Connect over TCP.
    TcpConnect {
        /// Where.
        addr: SocketAddr,
    },
    /// Listen on a TCP socket never bound: the kernel binds a port of its choosing, which
    /// Landlock's bind rule does not see. The port, and the socket closed.
    ListenUnbound,
    /// Connect over MPTCP, which falls back to plain TCP when the peer does not speak it.
    MptcpConnect {
        /// Where.
        addr: SocketAddr,
    },
    /// Create a socket.
    Socket {
        /// Address family (AF_INET = 2, AF_INET6 = 10, AF_NETLINK = 16, AF_PACKET = 17).
        family: i32,
        /// Type (SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_RAW = 3).
        kind: i32,
        /// Protocol.
        protocol: i32,
    },
    /// Connect to a unix socket by its path (Landlock governs neither the folders walked nor the
    /// connect before ABI 9; the folders' modes do).
    UnixConnect {
        /// The socket.
        path: PathBuf,
    },
    /// Connect to an abstract unix socket.
    AbstractConnect {
        /// The name, without the leading NUL.
        name: String,
    },
    /// Send signal 0 (a permission check, nothing delivered) to a process.
    Signal {
        /// The target.
        pid: i32,
    },
    /// Read `/proc/PID/environ`.
    ReadEnviron {
        /// The target.
        pid: i32,
    },
    /// Open `/proc/PID/mem` for reading.
    ReadMem {
        /// The target.
        pid: i32,
    },
    /// `ptrace(PTRACE_ATTACH)` a process (detached again at once).
    Ptrace {
        /// The target.
        pid: i32,
    },
    /// `process_vm_readv` one byte of our own memory.
    ProcessVmReadv,
    /// Set another process's `RLIMIT_CORE` to the value it already has (the permission is the
    /// point: with it, an `RLIMIT_CPU` of one second has the kernel kill the process, past every
    /// signal scope).
    Prlimit {
        /// The target.
        pid: i32,
    },
    /// A system call the seccomp filter refuses, with harmless arguments: unshare-user,
    /// clone-newuser, clone3, io-uring, keyctl, bpf, perf-event, userfaultfd, personality,
    /// tiocsti, mount, chroot.
    Syscall {
        /// Which.
        name: String,
    },
    /// Our ids, capabilities, no_new_privs, seccomp mode, dumpability, environment and open
    /// descriptors.
    Status,
    /// Leave an orphan: fork a child that exits after `ms` milliseconds, and return (its pid) at
    /// once, so that it ends as a child of PID 1.
    Orphan {
        /// How long the child lives.
        ms: u64,
    },
    /// The zombie processes this process can see in `/proc` (pid and parent), a list.
    Zombies,
    /// Fork `count` children that wait, all alive at once (a fork bomb that stops): the number
    /// made, or why the first fork that failed did (`EAGAIN` past `RLIMIT_NPROC` or a pids
    /// cgroup). The children are killed and waited for either way.
    Fork {
        /// How many.
        count: u32,
    },
    /// Map `mib` MiB of private writable memory, untouched, and unmap it (`ENOMEM` past
    /// `RLIMIT_DATA`).
    Allocate {
        /// How much.
        mib: u64,
    },
}

/// Makes the attempt and prints its outcome; the exit code is 0 whatever the outcome.
pub(crate) fn run(args: AttemptArgs) -> i32 {
    let outcome = match args {
        AttemptArgs::Hold => return hold(),
        AttemptArgs::ListenTcp { addr } => return listen_tcp(addr),
        AttemptArgs::ListenAbstract { name } => return listen_abstract(&name),
        AttemptArgs::ReadFile { path } => std::fs::read_to_string(path).map(Value::from),
        AttemptArgs::WriteFile { path } => std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(b"written"))
            .map(|()| Value::Null),
        AttemptArgs::Chmod { path, mode } => chmod(&path, &mode),
        AttemptArgs::Rename { from, to } => std::fs::rename(from, to).map(|()| Value::Null),
        AttemptArgs::Remove { path } => match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir(path),
            _ => std::fs::remove_file(path),
        }
        .map(|()| Value::Null),
        AttemptArgs::MakeDir { path } => std::fs::create_dir(path).map(|()| Value::Null),
        AttemptArgs::Symlink { target, link } => {
            std::os::unix::fs::symlink(target, link).map(|()| Value::Null)
        }
        AttemptArgs::Exec { path } => std::process::Command::new(path)
            .status()
            .map(|s| json!(s.code())),
        AttemptArgs::TcpConnect { addr } => {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(|_| Value::Null)
        }
        AttemptArgs::MptcpConnect { addr } => mptcp_connect(addr),
        AttemptArgs::ListenUnbound => listen_unbound(),
        AttemptArgs::Socket {
            family,
            kind,
            protocol,
        } => socket(family, kind, protocol).map(|_| Value::Null),
        AttemptArgs::UnixConnect { path } => UnixStream::connect(path).map(|_| Value::Null),
        AttemptArgs::AbstractConnect { name } => {
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| UnixStream::connect_addr(&addr))
                .map(|_| Value::Null)
        }
        AttemptArgs::Signal { pid } => {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                .map(|()| Value::Null)
                .map_err(std::io::Error::from)
        }
        AttemptArgs::ReadEnviron { pid } => read_environ(pid),
        AttemptArgs::ReadMem { pid } => {
            std::fs::File::open(format!("/proc/{pid}/mem")).map(|_| Value::Null)
        }
        AttemptArgs::Ptrace { pid } => ptrace_attach(pid),
        AttemptArgs::ProcessVmReadv => process_vm_readv(),
        AttemptArgs::Prlimit { pid } => prlimit(pid),
        AttemptArgs::Syscall { name } => match syscall(&name) {
            Some(result) => result,
            None => {
                eprintln!("confine attempt syscall: unknown name `{name}`");
                return 2;
            }
        },
        AttemptArgs::Status => Ok(status()),
        AttemptArgs::Orphan { ms } => orphan(ms),
        AttemptArgs::Zombies => Ok(zombies()),
        AttemptArgs::Fork { count } => fork_many(count),
        AttemptArgs::Allocate { mib } => allocate(mib),
    };
    print(&match outcome {
        Ok(value) => json!({"ok": true, "value": value}),
        Err(e) => json!({
            "ok": false,
            "errno": e.raw_os_error(),
            "error": e.to_string(),
        }),
    });
    0
}

fn chmod(path: &std::path::Path, mode: &str) -> std::io::Result<Value> {
    use std::os::unix::fs::PermissionsExt;
    let mode = u32::from_str_radix(mode, 8)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map(|()| Value::Null)
}

fn print(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn orphan(ms: u64) -> std::io::Result<Value> {
    // SAFETY: the child calls only async-signal-safe functions (close, nanosleep, _exit).
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            let pause = libc::timespec {
                tv_sec: (ms / 1000) as libc::time_t,
                tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
            };
            // SAFETY: closing our copies of stdout and stderr (the caller reads them to their
            // end), sleeping and exiting without running the parent's destructors.
            unsafe {
                libc::close(1);
                libc::close(2);
                libc::nanosleep(&pause, std::ptr::null_mut());
                libc::_exit(0)
            }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(json!(child.as_raw())),
    }
}

fn fork_many(count: u32) -> std::io::Result<Value> {
    let mut children = Vec::new();
    let mut failed = None;
    for _ in 0..count {
        // SAFETY: the child calls only async-signal-safe functions (close, pause) until killed.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => unsafe {
                libc::close(1);
                libc::close(2);
                loop {
                    libc::pause();
                }
            },
            Ok(nix::unistd::ForkResult::Parent { child }) => children.push(child),
            Err(errno) => {
                failed = Some(errno);
                break;
            }
        }
    }
    for child in &children {
        let _ = nix::sys::signal::kill(*child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(*child, None);
    }
    match failed {
        Some(errno) => Err(std::io::Error::from(errno)),
        None => Ok(json!(children.len())),
    }
}

fn allocate(mib: u64) -> std::io::Result<Value> {
    let bytes = usize::try_from(mib << 20).map_err(|_| std::io::Error::other("too large"))?;
    // SAFETY: a fresh anonymous private mapping, never touched, unmapped at once.
    unsafe {
        let at = libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        libc::munmap(at, bytes);
    }
    Ok(json!(mib))
}

fn zombies() -> Value {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return json!([]);
    };
    let zombies: Vec<Value> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let (state, ppid) = (fields.next()?, fields.next()?);
            (state == "Z").then(|| json!({"pid": pid, "ppid": ppid.parse::<i32>().ok()}))
        })
        .collect();
    Value::from(zombies)
}

fn hold() -> i32 {
    print(&json!({"pid": std::process::id()}));
    loop {
        nix::unistd::pause();
    }
}

fn listen_tcp(addr: SocketAddr) -> i32 {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            print(&json!({"ok": false, "errno": e.raw_os_error(), "error": e.to_string()}));
            return 1;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    print(&json!({"port": port}));
    for stream in listener.incoming() {
        drop(stream);
    }
    0
}

fn listen_abstract(name: &str) -> i32 {
    let listener = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .and_then(|addr| UnixListener::bind_addr(&addr));
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            print(&json!({"ok": false, "errno": e.raw_os_error(), "error": e.to_string()}));
            return 1;
        }
    };
    print(&json!({"ready": true}));
    for stream in listener.incoming() {
        drop(stream);
    }
    0
}

/// A raw call's `-1` turned into the errno.
fn check(rc: libc::c_long) -> std::io::Result<Value> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(json!(rc))
    }
}

fn socket(family: i32, kind: i32, protocol: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: socket takes integers; a descriptor it returns is ours.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`AttemptArgs::ListenUnbound`].
fn listen_unbound() -> std::io::Result<Value> {
    let socket = socket(libc::AF_INET, libc::SOCK_STREAM, 0)?;
    // SAFETY: a descriptor we own; a backlog of one.
    check(unsafe { libc::listen(socket.as_raw_fd(), 1) } as libc::c_long)?;
    let listener = TcpListener::from(socket);
    listener.local_addr().map(|a| json!(a.port()))
}

fn mptcp_connect(addr: SocketAddr) -> std::io::Result<Value> {
    const IPPROTO_MPTCP: i32 = 262;
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = socket(family, libc::SOCK_STREAM, IPPROTO_MPTCP)?;
    match addr {
        SocketAddr::V4(a) => {
            nix::sys::socket::connect(fd.as_raw_fd(), &nix::sys::socket::SockaddrIn::from(a))?
        }
        SocketAddr::V6(a) => {
            nix::sys::socket::connect(fd.as_raw_fd(), &nix::sys::socket::SockaddrIn6::from(a))?
        }
    }
    Ok(Value::Null)
}

fn read_environ(pid: i32) -> std::io::Result<Value> {
    let mut raw = Vec::new();
    std::fs::File::open(format!("/proc/{pid}/environ"))?.read_to_end(&mut raw)?;
    Ok(raw
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| Value::from(String::from_utf8_lossy(v)))
        .collect())
}

fn ptrace_attach(pid: i32) -> std::io::Result<Value> {
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::ptrace::attach(pid)?;
    let _ = nix::sys::wait::waitpid(pid, None);
    let _ = nix::sys::ptrace::detach(pid, None);
    Ok(Value::Null)
}

fn process_vm_readv() -> std::io::Result<Value> {
    let source = [42u8; 1];
    let mut target = [0u8; 1];
    let local = libc::iovec {
        iov_base: target.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: source.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: both vectors describe one live byte of our own stack.
    let rc = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    check(rc as libc::c_long).map(|_| json!(target[0]))
}

/// [`AttemptArgs::Prlimit`]: reads `pid`'s `RLIMIT_CORE`, then sets it to what was read.
fn prlimit(pid: i32) -> std::io::Result<Value> {
    let mut current = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a live `rlimit64` the kernel fills in, then reads.
    check(unsafe {
        libc::prlimit64(pid, libc::RLIMIT_CORE, std::ptr::null(), &mut current) as libc::c_long
    })?;
    // SAFETY: as above; nothing is read back.
    check(unsafe {
        libc::prlimit64(pid, libc::RLIMIT_CORE, &current, std::ptr::null_mut()) as libc::c_long
    })
    .map(|_| json!(current.rlim_cur))
}

/// The calls of [`AttemptArgs::Syscall`]; `None` for an unknown name.
fn syscall(name: &str) -> Option<std::io::Result<Value>> {
    let rc = new_namespace(name)
        .or_else(|| kernel_surface(name))
        .or_else(|| escape_root(name))
        .or_else(|| tamper(name))?;
    Some(check(rc))
}

/// Calls that make a user namespace: `unshare`, `clone` and `clone3`.
fn new_namespace(name: &str) -> Option<libc::c_long> {
    // SAFETY (all arms): integers or pointers to live, correctly sized locals; a child made by a
    // clone exits at once without touching the parent's state.
    Some(match name {
        "unshare-user" => unsafe { libc::unshare(libc::CLONE_NEWUSER) as libc::c_long },
        "clone-newuser" => reap(unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWUSER | libc::SIGCHLD,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        }),
        "clone3" => {
            // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, …
            let mut args = [0u64; 11];
            args[4] = libc::SIGCHLD as u64;
            reap(unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    args.as_mut_ptr(),
                    std::mem::size_of_val(&args),
                )
            })
        }
        _ => return None,
    })
}

/// Calls into the kernel's wider attack surface: io_uring, keyrings, BPF, perf events and
/// userfaultfd (a descriptor one returns is closed at once).
fn kernel_surface(name: &str) -> Option<libc::c_long> {
    // SAFETY (all arms): integers or pointers to live, correctly sized locals.
    Some(match name {
        "io-uring" => {
            let mut params = [0u8; 120];
            close(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) })
        }
        "keyctl" => {
            const KEYCTL_GET_KEYRING_ID: libc::c_int = 0;
            const KEY_SPEC_SESSION_KEYRING: libc::c_int = -3;
            unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_GET_KEYRING_ID,
                    KEY_SPEC_SESSION_KEYRING,
                    0,
                )
            }
        }
        "bpf" => {
            let mut attr = [0u8; 128];
            const BPF_MAP_CREATE: libc::c_int = 0;
            close(unsafe {
                libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, attr.as_mut_ptr(), 128u32)
            })
        }
        "perf-event" => {
            // struct perf_event_attr: type u32, size u32, config u64, …, flags u64 at 40.
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
            attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
            let flags: u64 = (1 << 0) | (1 << 5) | (1 << 6); // disabled, exclude_kernel, exclude_hv
            attr[40..48].copy_from_slice(&flags.to_ne_bytes());
            close(unsafe {
                libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0)
            })
        }
        "userfaultfd" => {
            const UFFD_USER_MODE_ONLY: libc::c_int = 1;
            close(unsafe {
                libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | UFFD_USER_MODE_ONLY)
            })
        }
        _ => return None,
    })
}

/// Calls that change the filesystem's root or what is mounted on it.
fn escape_root(name: &str) -> Option<libc::c_long> {
    // SAFETY (all arms): C string literals and a null data pointer `mount` accepts.
    Some(match name {
        "mount" => unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) as libc::c_long
        },
        // The first step of the classic way out of a chroot (`chroot` into a subfolder, then
        // `..` past the old root): refused before it can start.
        "chroot" => unsafe { libc::chroot(c"/tmp".as_ptr()) as libc::c_long },
        _ => return None,
    })
}

/// Calls that tamper with the process or its terminal: turning off address randomisation and
/// pushing a byte into the terminal's input.
fn tamper(name: &str) -> Option<libc::c_long> {
    // SAFETY (all arms): an integer, and a pointer to a live byte `TIOCSTI` reads.
    Some(match name {
        "personality" => {
            const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;
            unsafe { libc::personality(ADDR_NO_RANDOMIZE) as libc::c_long }
        }
        "tiocsti" => {
            let byte = b'x';
            unsafe { libc::ioctl(0, libc::TIOCSTI, &byte) as libc::c_long }
        }
        _ => return None,
    })
}

/// A clone's result: the child exits at once; the parent reaps it.
fn reap(rc: libc::c_long) -> libc::c_long {
    if rc == 0 {
        // SAFETY: in the child: leave without running anything of the parent's.
        unsafe { libc::_exit(0) }
    }
    if rc > 0 {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(rc as i32), None);
    }
    rc
}

/// Closes a descriptor a call returned.
fn close(rc: libc::c_long) -> libc::c_long {
    if rc >= 0 {
        // SAFETY: the call returned this descriptor to us.
        unsafe { libc::close(rc as i32) };
    }
    rc
}

fn status() -> Value {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut fields = serde_json::Map::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(':')
            && matches!(
                key,
                "Uid"
                    | "Gid"
                    | "Groups"
                    | "CapInh"
                    | "CapPrm"
                    | "CapEff"
                    | "CapBnd"
                    | "CapAmb"
                    | "NoNewPrivs"
                    | "Seccomp"
                    | "Seccomp_filters"
            )
        {
            fields.insert(key.to_string(), Value::from(value.trim()));
        }
    }
    let env: serde_json::Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                Value::from(v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    fields.insert("env".into(), Value::Object(env));
    let fds: Vec<Value> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .map(Value::from)
                .collect()
        })
        .unwrap_or_default();
    fields.insert("fds".into(), Value::Array(fds));
    fields.insert(
        "dumpable".into(),
        json!(nix::sys::prctl::get_dumpable().ok()),
    );
    Value::Object(fields)
}
