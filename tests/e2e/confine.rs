//! Confinement inside one container (src/confine/): real child processes try to break out of
//! their policy, and each attempt must fail with the errno of the wall that stops it, while the
//! same attempt made unconfined (same uid) succeeds — so every test here can fail.
//!
//! The walls are the same on the host and inside a container: each scenario runs on a
//! [`Machine`], this host ([`Host`]) or a container of the local Debian image under Docker's
//! default seccomp profile ([`Container`]).
//!
//! The principals switch to their own uids, so these tests need root, as CI has; without it they
//! fail saying so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use perstack_sandbox::test_support::internals::confine::{
    AfterExec, FsRules, Identity, LandlockFeature, LandlockSupport, Launch, NetRules, Policy,
    Protections, STANDARD_DEVICES, SeccompSupport, role,
};
use serde_json::Value;

use crate::support::{
    BOOKWORM_IMAGE, JobGuard, binary, docker, require_bookworm_image, runtime_args, under_gvisor,
};

/// The attacker's uid, and its victims' when they share it.
const ATTACKER: u32 = 47001;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the confinement tests switch principals to their own uids and must run as root (CI \
         does): run `sudo -E cargo test --test e2e confine`"
    );
}

/// Where attempts run.
trait Machine {
    /// Our binary's path there.
    fn binary(&self) -> &Path;
    /// Runs our binary with `args`, unconfined, as `uid` (or as we are).
    fn run(&self, uid: Option<u32>, args: &[&str]) -> Output;
    /// Starts `program args` confined by `policy` (or our binary unconfined, as we are), stdout
    /// piped. `program` is our binary or a copy of it.
    fn spawn(&self, policy: Option<&Policy>, program: &Path, args: &[&str]) -> Child;
}

/// A process a test started; killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse(text: &str, what: &str, stderr: &[u8]) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{what}: no outcome ({e}); stdout `{text}`, stderr `{}`",
            String::from_utf8_lossy(stderr)
        )
    })
}

fn attempt_args<'a>(attempt: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["confine", "attempt"];
    args.extend_from_slice(attempt);
    args
}

/// `confine attempt ATTEMPT` confined by `policy`: its outcome.
fn confined(m: &dyn Machine, policy: &Policy, attempt: &[&str]) -> Value {
    let child = m.spawn(Some(policy), m.binary(), &attempt_args(attempt));
    let out = child.wait_with_output().expect("wait");
    parse(
        &String::from_utf8_lossy(&out.stdout),
        &format!("{attempt:?}"),
        &out.stderr,
    )
}

/// `confine attempt ATTEMPT` unconfined as `uid`: its outcome.
fn unconfined(m: &dyn Machine, uid: u32, attempt: &[&str]) -> Value {
    let out = m.run(Some(uid), &attempt_args(attempt));
    parse(
        &String::from_utf8_lossy(&out.stdout),
        &format!("{attempt:?}"),
        &out.stderr,
    )
}

/// A long-lived attempt (`hold`, `listen-*`) run by `program` (our binary or a copy), confined
/// by `policy` or unconfined: its first line, and the process.
fn start(
    m: &dyn Machine,
    policy: Option<&Policy>,
    program: &Path,
    attempt: &[&str],
) -> (Value, Running) {
    let mut child = m.spawn(policy, program, &attempt_args(attempt));
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    (parse(&line, &format!("{attempt:?}"), b""), Running(child))
}

/// This host.
struct Host {
    binary: PathBuf,
}

impl Host {
    fn new() -> Host {
        require_root();
        Host {
            binary: PathBuf::from(binary()),
        }
    }

    fn launch(&self, policy: &Policy, program: &Path, args: &[&str]) -> Launch {
        let mut launch = Launch::new(&self.binary, policy, program, args).expect("a valid policy");
        launch.command_mut().stdout(Stdio::piped());
        launch
    }
}

impl Machine for Host {
    fn binary(&self) -> &Path {
        &self.binary
    }

    fn run(&self, uid: Option<u32>, args: &[&str]) -> Output {
        let mut command = Command::new(&self.binary);
        command.args(args);
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        command.output().expect("run")
    }

    fn spawn(&self, policy: Option<&Policy>, program: &Path, args: &[&str]) -> Child {
        match policy {
            Some(policy) => {
                let mut launch = self.launch(policy, program, args);
                launch.command_mut().stderr(Stdio::piped());
                launch
                    .spawn()
                    .unwrap_or_else(|e| panic!("{args:?}: {e}"))
                    .child
            }
            None => Command::new(program)
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn"),
        }
    }
}

/// A container of the local Debian image with our binary mounted in, under Docker's default
/// seccomp profile and capabilities, as root; removed when dropped (the job guard).
struct Container {
    id: String,
    binary: PathBuf,
    _guard: JobGuard,
}

impl Container {
    fn start(scratch: &Scratch) -> Container {
        let guard = JobGuard::new();
        let binary = PathBuf::from("/usr/local/bin/perstack-sandbox");
        let runtime = runtime_args();
        let mut args: Vec<&str> = vec!["run", "-d"];
        args.extend(runtime.iter().map(String::as_str));
        let labels = format!("io.perstack.sandbox.job-id={}", guard.job_id);
        let binary_mount = format!("{}:{}:ro", crate::support::binary(), binary.display());
        let scratch_mount = format!("{0}:{0}", scratch.dir.path().display());
        args.extend([
            "--label",
            "io.perstack.sandbox.managed=true",
            "--label",
            &labels,
            "-v",
            &binary_mount,
            "-v",
            &scratch_mount,
            "--entrypoint",
            "/usr/local/bin/perstack-sandbox",
            BOOKWORM_IMAGE,
            "confine",
            "attempt",
            "hold",
        ]);
        let id = docker(&args).trim().to_string();
        Container {
            id,
            binary,
            _guard: guard,
        }
    }
}

impl Machine for Container {
    fn binary(&self) -> &Path {
        &self.binary
    }

    fn run(&self, uid: Option<u32>, args: &[&str]) -> Output {
        let mut command = Command::new("docker");
        command.arg("exec");
        if let Some(uid) = uid {
            command.args(["-u", &format!("{uid}:{uid}")]);
        }
        command
            .arg(&self.id)
            .arg(&self.binary)
            .args(args)
            .output()
            .expect("docker exec")
    }

    fn spawn(&self, policy: Option<&Policy>, program: &Path, args: &[&str]) -> Child {
        let mut command = Command::new("docker");
        command.arg("exec");
        match policy {
            Some(policy) => {
                // The variables go in with -e, the role keeps exactly the policy's.
                for (name, value) in &policy.env {
                    command.args(["-e", &format!("{name}={value}")]);
                }
                let line = role::exec_args(policy, None, program.as_os_str(), args)
                    .expect("the role's arguments");
                command.arg(&self.id).arg(&self.binary).args(line);
            }
            None => {
                command.arg(&self.id).arg(program).args(args);
            }
        }
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker exec")
    }
}

/// Files for the filesystem attempts, world-readable so that only Landlock stands in the way.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (sub, mode) in [("granted", 0o777), ("secret", 0o777), ("writable", 0o777)] {
            std::fs::create_dir(root.join(sub)).expect("mkdir");
            chmod(&root.join(sub), mode);
        }
        for file in ["granted/notes.txt", "secret/key.txt"] {
            std::fs::write(root.join(file), format!("contents of {file}")).expect("write");
            chmod(&root.join(file), 0o666);
        }
        chmod(root, 0o755);
        Scratch { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn str(&self, sub: &str) -> String {
        self.path(sub).to_string_lossy().into_owned()
    }

    /// A copy of our binary nobody but root can read: its processes stay non-dumpable.
    fn exec_only_binary(&self) -> PathBuf {
        let path = self.path("exec-only-perstack-sandbox");
        std::fs::copy(binary(), &path).expect("copy the binary");
        chmod(&path, 0o711);
        path
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn switch(uid: u32) -> Identity {
    Identity::Switch {
        uid,
        gid: uid,
        groups: vec![],
    }
}

/// An attacker: its own uid, our binary executable, the granted folder readable, the writable
/// one writable, `/proc` readable (so only the kernel's process checks guard other processes),
/// no network.
fn attacker(m: &dyn Machine, scratch: &Scratch) -> Policy {
    let mut policy = Policy::deny_all("attacker");
    policy.identity = switch(ATTACKER);
    policy.env = BTreeMap::from([
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("MARKER".to_string(), "attacker".to_string()),
    ]);
    policy.filesystem.executable.push(m.binary().to_path_buf());
    policy.filesystem.read_only.push("/proc".into());
    policy.filesystem.read_only.push(scratch.path("granted"));
    policy.filesystem.read_write.push(scratch.path("writable"));
    policy
        .filesystem
        .read_write
        .extend(STANDARD_DEVICES.iter().map(PathBuf::from));
    policy.non_dumpable = false;
    policy
}

#[track_caller]
fn assert_ok(outcome: &Value, what: &str) {
    assert_eq!(outcome["ok"], true, "{what} should succeed: {outcome}");
}

#[track_caller]
fn assert_errno(outcome: &Value, errno: i32, what: &str) {
    assert_eq!(outcome["ok"], false, "{what} should fail: {outcome}");
    assert_eq!(
        outcome["errno"],
        errno,
        "{what} should fail with {}: {outcome}",
        nix::errno::Errno::from_raw(errno)
    );
}

// The scenarios, each runnable on any machine.

fn probe(m: &dyn Machine) -> Protections {
    let out = m.run(None, &["confine", "check", "--json"]);
    let protections: Protections = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "confine check --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.code(),
        Some(i32::from(!protections.is_sufficient())),
        "check exits 1 exactly when something blocking is missing"
    );
    protections
}

/// gVisor's kernel has no Landlock: the probe says so, naming gVisor, and calls it blocking —
/// the confinement refuses rather than run a principal with walls missing.
fn refuses_to_confine_under_gvisor(m: &dyn Machine) {
    let p = probe(m);
    eprintln!("{}", p.summary());
    assert!(!p.is_sufficient(), "{p:?}");
    assert!(
        p.shortfalls()
            .iter()
            .any(|s| s.is_blocking() && s.to_string().contains("gVisor")),
        "{:?}",
        p.shortfalls()
    );
}

fn kernel_offers_everything(m: &dyn Machine) {
    let p = probe(m);
    eprintln!("{}", p.summary());
    assert!(
        matches!(p.landlock, LandlockSupport::Abi(abi) if abi >= 6),
        "these tests need Landlock ABI 6 (scopes): {p:?}"
    );
    assert_eq!(p.seccomp, SeccompSupport::Filters);
    assert!(p.can_switch_uid && p.can_drop_bounding_set, "{p:?}");
    assert!(p.shortfalls().is_empty() && p.is_sufficient(), "{p:?}");
}

fn identity_capabilities_and_environment(m: &dyn Machine, scratch: &Scratch) {
    let status = confined(m, &attacker(m, scratch), &["status"]);
    assert_ok(&status, "status");
    let s = &status["value"];
    let id = format!("{ATTACKER}\t{ATTACKER}\t{ATTACKER}\t{ATTACKER}");
    assert_eq!(s["Uid"], id.as_str(), "{s}");
    assert_eq!(s["Gid"], id.as_str(), "{s}");
    assert_eq!(s["Groups"], "", "{s}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(s[set], "0000000000000000", "{set}: {s}");
    }
    assert_eq!(s["NoNewPrivs"], "1", "{s}");
    assert_eq!(s["Seccomp"], "2", "{s}");
    let filters: u32 = s["Seccomp_filters"]
        .as_str()
        .and_then(|f| f.parse().ok())
        .expect("Seccomp_filters");
    assert!(filters >= 2, "our two filters: {s}");
    let env: BTreeMap<String, String> = serde_json::from_value(s["env"].clone()).expect("env");
    assert_eq!(
        env,
        BTreeMap::from([
            ("MARKER".to_string(), "attacker".to_string()),
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ]),
        "exactly the policy's variables"
    );
}

fn files(m: &dyn Machine, scratch: &Scratch) {
    let policy = attacker(m, scratch);
    let granted = scratch.str("granted/notes.txt");
    let secret = scratch.str("secret/key.txt");
    let in_granted = scratch.str("granted/new.txt");
    let writable = scratch.str("writable/new.txt");

    let read = confined(m, &policy, &["read-file", &granted]);
    assert_ok(&read, "reading a granted file");
    assert_eq!(read["value"], "contents of granted/notes.txt");
    assert_errno(
        &confined(m, &policy, &["read-file", &secret]),
        libc::EACCES,
        "reading a file outside the rules",
    );
    assert_ok(
        &unconfined(m, ATTACKER, &["read-file", &secret]),
        "the same read, unconfined as the same uid",
    );

    assert_errno(
        &confined(m, &policy, &["write-file", &granted]),
        libc::EACCES,
        "overwriting a read-only file",
    );
    assert_errno(
        &confined(m, &policy, &["write-file", &in_granted]),
        libc::EACCES,
        "creating a file in a read-only folder",
    );
    assert_ok(
        &unconfined(m, ATTACKER, &["write-file", &in_granted]),
        "the same write, unconfined",
    );
    assert_ok(
        &confined(m, &policy, &["write-file", &writable]),
        "writing in the read-write folder",
    );

    assert_errno(
        &confined(m, &policy, &["exec", "/bin/true"]),
        libc::EACCES,
        "executing a program outside the executable paths",
    );
    assert_ok(
        &unconfined(m, ATTACKER, &["exec", "/bin/true"]),
        "the same program, unconfined",
    );

    // The system grants are enough for a dynamically linked program (its loader and libraries).
    let mut system = policy.clone();
    system
        .filesystem
        .executable
        .extend(FsRules::system().executable);
    system
        .filesystem
        .read_only
        .extend(FsRules::system().read_only);
    let ran = confined(m, &system, &["exec", "/bin/true"]);
    assert_ok(&ran, "a dynamically linked program under the system grants");
    assert_eq!(ran["value"], 0, "{ran}");
}

fn tcp(m: &dyn Machine, scratch: &Scratch) {
    let (allowed, _a) = start(m, None, m.binary(), &["listen-tcp", "127.0.0.1:0"]);
    let (other, _b) = start(m, None, m.binary(), &["listen-tcp", "127.0.0.1:0"]);
    let port = allowed["port"].as_u64().expect("port") as u16;
    let allowed = format!("127.0.0.1:{port}");
    let other = format!("127.0.0.1:{}", other["port"]);

    let mut proxied = attacker(m, scratch);
    proxied.network = NetRules::proxy_only(port);
    assert_ok(
        &confined(m, &proxied, &["tcp-connect", &allowed]),
        "connecting to the proxy's port",
    );
    assert_errno(
        &confined(m, &proxied, &["tcp-connect", &other]),
        libc::EACCES,
        "connecting to another port",
    );
    assert_errno(
        &confined(m, &proxied, &["mptcp-connect", &other]),
        libc::EPERM,
        "connecting to another port over MPTCP, which Landlock does not govern",
    );
    assert_ok(
        &unconfined(m, ATTACKER, &["tcp-connect", &other]),
        "the same connect, unconfined",
    );
    let mptcp = unconfined(m, ATTACKER, &["mptcp-connect", &other]);
    assert!(
        mptcp["ok"] == true || mptcp["errno"] == libc::EPROTONOSUPPORT,
        "MPTCP, unconfined, connects where the kernel has it: {mptcp}"
    );

    // Without network, no IP socket at all: a listen on one never bound would take a port
    // Landlock does not see, open to connections from outside the container.
    assert_errno(
        &confined(m, &attacker(m, scratch), &["tcp-connect", &allowed]),
        libc::EPERM,
        "any TCP connect without network",
    );
    assert_errno(
        &confined(m, &attacker(m, scratch), &["listen-unbound"]),
        libc::EPERM,
        "a listen on an unbound TCP socket without network",
    );
    assert_ok(
        &unconfined(m, ATTACKER, &["listen-unbound"]),
        "the same listen, unconfined",
    );
    // The residual SECURITY.md names: allowed the proxy's port, it still can (Landlock governs
    // bind, not the kernel's own choice of a port). Should a kernel close it, update the doc.
    assert_ok(
        &confined(m, &proxied, &["listen-unbound"]),
        "a listen on an unbound TCP socket with the proxy's port",
    );
}

fn socket_args(family: i32, kind: i32, protocol: i32) -> [String; 4] {
    [
        "socket".to_string(),
        family.to_string(),
        kind.to_string(),
        protocol.to_string(),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn sockets(m: &dyn Machine, scratch: &Scratch) {
    let policy = attacker(m, scratch);
    for (what, args) in [
        (
            "a UDP socket",
            socket_args(libc::AF_INET, libc::SOCK_DGRAM, 0),
        ),
        (
            "a UDP6 socket",
            socket_args(libc::AF_INET6, libc::SOCK_DGRAM, 0),
        ),
        (
            "an ICMP ping socket",
            socket_args(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
        ),
        (
            "a raw socket",
            socket_args(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW),
        ),
        (
            "a packet socket",
            socket_args(libc::AF_PACKET, libc::SOCK_RAW, 0),
        ),
        (
            "a sock_diag netlink socket",
            socket_args(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_SOCK_DIAG),
        ),
        (
            "a vsock socket",
            socket_args(libc::AF_VSOCK, libc::SOCK_STREAM, 0),
        ),
    ] {
        assert_errno(&confined(m, &policy, &strs(&args)), libc::EPERM, what);
    }
    let udp = socket_args(libc::AF_INET, libc::SOCK_DGRAM, 0);
    assert_ok(
        &unconfined(m, ATTACKER, &strs(&udp)),
        "a UDP socket, unconfined",
    );
    let route = socket_args(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE);
    assert_ok(
        &confined(m, &policy, &strs(&route)),
        "a route netlink socket (getaddrinfo needs it)",
    );
}

fn non_dumpable(m: &dyn Machine, scratch: &Scratch) {
    // The victim shares the attacker's uid, holds a secret, and runs an exec-only copy of our
    // binary, so the kernel keeps it non-dumpable after execve.
    let exec_only = scratch.exec_only_binary();
    let mut victim = attacker(m, scratch);
    victim.principal = "victim".into();
    victim
        .env
        .insert("SECRET".into(), "the-provider-key".into());
    victim.filesystem.executable = vec![exec_only.clone()];
    victim.non_dumpable = true;
    let (first, _victim) = start(m, Some(&victim), &exec_only, &["hold"]);
    let pid = first["pid"].to_string();

    let policy = attacker(m, scratch);
    for (attempt, errno) in [
        ("read-environ", libc::EACCES),
        ("read-mem", libc::EACCES),
        ("ptrace", libc::EPERM),
    ] {
        assert_errno(
            &unconfined(m, ATTACKER, &[attempt, &pid]),
            errno,
            &format!("{attempt} of a non-dumpable process of the same uid, unconfined"),
        );
        assert_errno(
            &confined(m, &policy, &[attempt, &pid]),
            errno,
            &format!("{attempt} of a non-dumpable process, from another domain"),
        );
    }

    // Control: the same victim running a readable binary is dumpable again after execve, and an
    // unconfined process of its uid reads the secret…
    let mut readable = victim.clone();
    readable.non_dumpable = false;
    readable.filesystem.executable = vec![m.binary().to_path_buf()];
    let (first, _readable) = start(m, Some(&readable), m.binary(), &["hold"]);
    let pid = first["pid"].to_string();
    let environ = unconfined(m, ATTACKER, &["read-environ", &pid]);
    assert_ok(&environ, "reading a dumpable process's environ as its uid");
    assert!(
        environ["value"]
            .as_array()
            .is_some_and(|vars| vars.contains(&Value::from("SECRET=the-provider-key"))),
        "{environ}"
    );
    // …but not from another Landlock domain (Landlock's own ptrace rule).
    assert_errno(
        &confined(m, &policy, &["read-environ", &pid]),
        libc::EACCES,
        "reading a dumpable process's environ from another domain",
    );
}

fn scopes(m: &dyn Machine, scratch: &Scratch) {
    let policy = attacker(m, scratch);
    // A process of the attacker's own uid, in a domain of its own.
    let mut neighbour = attacker(m, scratch);
    neighbour.principal = "neighbour".into();
    let (first, _neighbour) = start(m, Some(&neighbour), m.binary(), &["hold"]);
    let pid = first["pid"].to_string();
    assert_errno(
        &confined(m, &policy, &["signal", &pid]),
        libc::EPERM,
        "signalling a process of the same uid outside the domain",
    );
    assert_ok(
        &unconfined(m, ATTACKER, &["signal", &pid]),
        "the same signal, unconfined",
    );
    // The kernel's own kill, which no signal scope sees: setting the neighbour's resource
    // limits (an RLIMIT_CPU of one second would SIGKILL it). The attempt sets a harmless one.
    assert_errno(
        &confined(m, &policy, &["prlimit", &pid]),
        libc::EPERM,
        "setting the resource limits of a process of the same uid outside the domain",
    );
    assert_ok(
        &unconfined(m, ATTACKER, &["prlimit", &pid]),
        "the same prlimit, unconfined",
    );

    let name = format!("perstack-confine-test-{}", std::process::id());
    let (ready, _listener) = start(m, None, m.binary(), &["listen-abstract", &name]);
    assert_eq!(ready["ready"], true);
    assert_errno(
        &confined(m, &policy, &["abstract-connect", &name]),
        libc::EPERM,
        "connecting to an abstract socket outside the domain",
    );
    assert_ok(
        &unconfined(m, ATTACKER, &["abstract-connect", &name]),
        "the same connect, unconfined",
    );
}

/// System calls the seccomp filter closes, with the errno a confined caller gets.
const SECCOMP_CLOSED: [(&str, i32); 12] = [
    ("unshare-user", libc::EPERM),
    ("clone-newuser", libc::EPERM),
    ("clone3", libc::ENOSYS),
    ("io-uring", libc::ENOSYS),
    ("keyctl", libc::EPERM),
    ("bpf", libc::EPERM),
    ("perf-event", libc::EPERM),
    ("userfaultfd", libc::EPERM),
    ("personality", libc::EPERM),
    ("tiocsti", libc::EPERM),
    ("mount", libc::EPERM),
    ("process-vm-readv", libc::EPERM),
];

fn syscall_attempt(name: &str) -> Vec<&str> {
    if name == "process-vm-readv" {
        vec![name]
    } else {
        vec!["syscall", name]
    }
}

fn seccomp(m: &dyn Machine, scratch: &Scratch) {
    let policy = attacker(m, scratch);
    for (name, errno) in SECCOMP_CLOSED {
        assert_errno(&confined(m, &policy, &syscall_attempt(name)), errno, name);
    }
}

// On this host.

#[test]
fn the_kernel_offers_landlock_scopes_seccomp_and_uid_switching() {
    kernel_offers_everything(&Host::new());
}

#[test]
fn a_principal_runs_as_its_uid_with_no_capabilities_and_exactly_its_environment() {
    let scratch = Scratch::new();
    identity_capabilities_and_environment(&Host::new(), &scratch);
}

#[test]
fn a_principal_cannot_read_outside_its_rules_nor_write_read_only_paths() {
    let scratch = Scratch::new();
    files(&Host::new(), &scratch);
}

#[test]
fn a_principal_connects_over_tcp_only_to_its_port() {
    let scratch = Scratch::new();
    tcp(&Host::new(), &scratch);
}

#[test]
fn a_principal_cannot_open_udp_raw_packet_or_diag_sockets() {
    let scratch = Scratch::new();
    sockets(&Host::new(), &scratch);
}

#[test]
fn a_non_dumpable_principal_s_memory_and_environ_are_closed_even_to_its_uid() {
    let scratch = Scratch::new();
    non_dumpable(&Host::new(), &scratch);
}

#[test]
fn a_principal_cannot_signal_or_reach_abstract_sockets_outside_its_domain() {
    let scratch = Scratch::new();
    scopes(&Host::new(), &scratch);
}

#[test]
fn the_seccomp_filter_closes_what_landlock_does_not_cover() {
    let host = Host::new();
    let scratch = Scratch::new();
    seccomp(&host, &scratch);
    // Each of these calls works for the same uid unconfined (where it is a privilege, the
    // kernel's own errno, not ours, answers): the filter is what refuses them.
    for (name, _) in SECCOMP_CLOSED {
        let outcome = unconfined(&host, ATTACKER, &syscall_attempt(name));
        match name {
            // Privileged either way; the kernel's own answer depends on its settings.
            "bpf" | "mount" => assert_eq!(outcome["ok"], false, "{name} unprivileged: {outcome}"),
            "tiocsti" => assert_errno(&outcome, libc::ENOTTY, "TIOCSTI on a non-terminal"),
            _ => assert_ok(&outcome, &format!("{name} unconfined")),
        }
    }
}

#[test]
fn a_launch_reports_what_holds() {
    let host = Host::new();
    let scratch = Scratch::new();
    let mut policy = attacker(&host, &scratch);
    policy
        .filesystem
        .read_only
        .push("/nonexistent/skill".into());
    let confined = host
        .launch(&policy, host.binary(), &attempt_args(&["status"]))
        .spawn()
        .expect("spawn");
    let e = &confined.enforcement;
    assert_eq!(e.principal, "attacker");
    assert_eq!(e.program, host.binary());
    assert_eq!(e.env, ["MARKER", "PATH"]);
    assert!(e.identity.switched && e.identity.capabilities_empty && e.identity.bounding_set_empty);
    assert_eq!((e.identity.uid, e.identity.gid), (ATTACKER, ATTACKER));
    assert!(e.identity.groups.is_empty());
    assert!(e.no_new_privs && e.seccomp);
    assert!(e.landlock.abi >= 6);
    assert_eq!(e.landlock.enforced, LandlockFeature::ALL.to_vec());
    assert!(e.landlock.missing.is_empty());
    assert_eq!(e.landlock.skipped.len(), 1);
    assert_eq!(e.landlock.skipped[0].path, Path::new("/nonexistent/skill"));
    assert_eq!(e.dumpable, AfterExec::Dumpable(host.binary().to_path_buf()));
    let summary = e.summary();
    assert!(
        summary.starts_with(&format!(
            "attacker: {} (2 variables): uid {ATTACKER}, no capabilities, no_new_privs, Landlock ABI",
            host.binary().display()
        )),
        "{summary}"
    );
    assert!(summary.ends_with(", seccomp, dumpable"), "{summary}");
    let out = confined.child.wait_with_output().expect("wait");
    assert!(out.status.success());
}

#[test]
fn the_confinement_refuses_what_it_cannot_hold() {
    let host = Host::new();
    let scratch = Scratch::new();
    let spawn = |policy: &Policy, program: &Path| {
        Launch::new(host.binary(), policy, program, attempt_args(&["status"]))
            .and_then(Launch::spawn)
            .map(|_| ())
            .expect_err("refused")
            .to_string()
    };

    // Non-dumpable asked of a readable program: execve would undo it.
    let mut secret = attacker(&host, &scratch);
    secret.non_dumpable = true;
    let error = spawn(&secret, host.binary());
    assert!(
        error.contains("requires a non-dumpable process")
            && error.contains(&format!("readable by uid {ATTACKER}"))
            && error.contains("mode 0711"),
        "{error}"
    );

    // A program that is not there.
    let error = spawn(&attacker(&host, &scratch), Path::new("no-such-program"));
    assert!(
        error.contains("`no-such-program` is not an executable file in PATH (/usr/bin:/bin)"),
        "{error}"
    );

    // A descriptor to keep that is not open.
    let mut fds = attacker(&host, &scratch);
    fds.keep_fds = vec![987];
    let error = spawn(&fds, host.binary());
    assert_eq!(
        error,
        "descriptor 987, which the policy keeps, is not open: Bad file descriptor (os error 9)"
    );
}

#[test]
fn only_the_descriptors_a_policy_keeps_reach_the_program() {
    let host = Host::new();
    let scratch = Scratch::new();
    let (kept, _kept_peer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let (leaked, _leaked_peer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    use std::os::fd::AsRawFd;
    // A descriptor the supervisor leaked by mistake (no close-on-exec).
    nix::fcntl::fcntl(
        &leaked,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("fcntl");
    let mut policy = attacker(&host, &scratch);
    policy.keep_fds = vec![kept.as_raw_fd()];
    let status = confined(&host, &policy, &["status"]);
    let fds: Vec<i64> = status["value"]["fds"]
        .as_array()
        .expect("fds")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(fds.contains(&i64::from(kept.as_raw_fd())), "{fds:?}");
    assert!(!fds.contains(&i64::from(leaked.as_raw_fd())), "{fds:?}");
}

#[tokio::test]
async fn an_async_launch_runs_the_program_confined() {
    let host = Host::new();
    let scratch = Scratch::new();
    let launch = host.launch(
        &attacker(&host, &scratch),
        host.binary(),
        &attempt_args(&["status"]),
    );
    let confined = launch.spawn_async().await.expect("spawn");
    assert!(confined.enforcement.seccomp);
    let out = confined.child.wait_with_output().await.expect("wait");
    let status = parse(&String::from_utf8_lossy(&out.stdout), "status", &out.stderr);
    assert_eq!(status["value"]["NoNewPrivs"], "1");
}

// Inside a container.

#[test]
fn the_walls_hold_inside_a_container_under_docker_s_default_seccomp_profile() {
    require_root();
    if !require_bookworm_image() {
        return;
    }
    let scratch = Scratch::new();
    let container = Container::start(&scratch);
    let m: &dyn Machine = &container;
    if under_gvisor() {
        return refuses_to_confine_under_gvisor(m);
    }
    kernel_offers_everything(m);
    identity_capabilities_and_environment(m, &scratch);
    files(m, &scratch);
    tcp(m, &scratch);
    sockets(m, &scratch);
    non_dumpable(m, &scratch);
    scopes(m, &scratch);
    seccomp(m, &scratch);
}
