//! The hidden `engine-probe` role of `doctor`'s engine probe (`sandbox/engine/probe.rs`): in
//! one container it measures itself, writes a file into the workspace mount and serves its
//! report on a unix socket (`listen`); in another it connects, and prints that report and its
//! own (`connect`). The report is `contract::probe::ProbeReport`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::contract::probe::{PROBE_FILE, PROBE_PORT, ProbeReport, TCP_GREETING};

/// Measures this process's container.
pub(crate) fn measure(who: &str) -> ProbeReport {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    // The root mount's own options, else a write refused as on a read-only file system: gVisor
    // checks permissions first, so a non-root uid there gets EACCES from a read-only root.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root_mounted_ro = mounts
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.get(1) == Some(&"/")).then(|| fields.get(3).copied().unwrap_or(""))
        })
        .next_back()
        .is_some_and(|options| options.split(',').any(|o| o == "ro"));
    let root_read_only = root_mounted_ro
        || matches!(
            std::fs::write("/.perstack-probe", b"x"),
            Err(e) if e.raw_os_error() == Some(libc::EROFS)
        );
    let tmp = format!("/tmp/perstack-probe-{}", std::process::id());
    let tmp_writable = std::fs::write(&tmp, b"x").is_ok();
    let _ = std::fs::remove_file(&tmp);
    ProbeReport {
        who: who.to_string(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        root_read_only,
        tmp_writable,
        cap_eff: field("CapEff:").and_then(|v| u64::from_str_radix(&v, 16).ok()),
        no_new_privs: field("NoNewPrivs:").as_deref() == Some("1"),
        memory_limit: cgroup_limit(&[
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]),
        pids_limit: cgroup_limit(&["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]),
        workspace_write: None,
        tcp: None,
    }
}

/// The first readable number of `paths`; `max` and absurd values (cgroup v1's "unlimited") are
/// `None`.
fn cgroup_limit(paths: &[&str]) -> Option<u64> {
    paths
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v < 1 << 60)
}

/// The listener: measures itself, writes the probe file into `workspace`, greets one TCP
/// connection on [`PROBE_PORT`] (as the egress proxy is reached on an internal network), then
/// serves its report to one connection on `socket` (mode 0666 like the skill host's: the
/// volume's 0750 keeps others out) and exits once both were served.
pub(crate) fn listen(socket: &Path, workspace: &Path) -> std::io::Result<()> {
    let mut report = measure("listener");
    report.workspace_write = Some(
        std::fs::write(workspace.join(PROBE_FILE), b"perstack-sandbox doctor\n")
            .map_err(|e| e.to_string()),
    );
    let tcp = TcpListener::bind(("0.0.0.0", PROBE_PORT))?;
    let greeting = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = tcp.accept()?;
        writeln!(stream, "{TCP_GREETING}")
    });
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))?;
    let (mut stream, _) = listener.accept()?;
    writeln!(stream, "{}", serde_json::to_string(&report)?)?;
    // The connector greets first; a listener it could not reach waits to be removed.
    let _ = greeting.join();
    Ok(())
}

/// Keeps trying `attempt` until it succeeds or `within` has passed.
fn retrying<T>(
    within: Duration,
    mut attempt: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let started = Instant::now();
    loop {
        match attempt() {
            Ok(done) => return Ok(done),
            Err(e) if started.elapsed() >= within => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The connector: reaches the listener at `tcp` (its address on the internal network), then
/// connects to `socket` (retrying while the listener comes up, up to `within`), prints the
/// listener's report line, then its own.
pub(crate) fn connect(socket: &Path, tcp: SocketAddr, within: Duration) -> std::io::Result<()> {
    let reached = retrying(within.min(Duration::from_secs(10)), || {
        let stream = TcpStream::connect_timeout(&tcp, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    });
    let tcp_outcome = match reached {
        Ok(line) if line.trim_end() == TCP_GREETING => Ok(()),
        Ok(line) => Err(format!("{tcp} answered {:?}", line.trim_end())),
        Err(e) => Err(format!("cannot reach {tcp}: {e}")),
    };
    let stream = retrying(within, || UnixStream::connect(socket))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let mut mine = measure("connector");
    mine.tcp = Some(tcp_outcome);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line.trim_end())?;
    writeln!(out, "{}", serde_json::to_string(&mine)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_serves_its_report_and_writes_the_probe_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("probe.sock");
        let workspace = dir.path().to_path_buf();
        let serving = {
            let socket = socket.clone();
            std::thread::spawn(move || listen(&socket, &workspace))
        };
        let started = Instant::now();
        let greeting = retrying(Duration::from_secs(5), || {
            let stream = TcpStream::connect(("127.0.0.1", PROBE_PORT))?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            Ok(line)
        })
        .expect("tcp");
        assert_eq!(greeting.trim_end(), TCP_GREETING);
        let stream = loop {
            if let Ok(s) = UnixStream::connect(&socket) {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "no listener");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("read");
        serving.join().expect("thread").expect("listen");
        let report: ProbeReport = serde_json::from_str(&line).expect("json");
        assert_eq!(report.who, "listener");
        assert_eq!(report.workspace_write, Some(Ok(())));
        assert!(dir.path().join(PROBE_FILE).exists());
        assert_eq!(report.uid, nix::unistd::getuid().as_raw());
    }
}
