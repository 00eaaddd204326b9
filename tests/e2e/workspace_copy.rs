//! The Kubernetes run pod's workspace copy, through the real engine: `workspace-in` (the init
//! container, a tar on its stdin) and `workspace-out` (exec'd in base-skill, a tar on its
//! stdout) as our binary runs them, in containers hardened as a run's (non-root, read-only
//! root, no capabilities, no network), the workspace a tmpfs as the pod's emptyDir is a
//! folder. What goes in comes out; the run data and protected paths do not come out; a hostile
//! archive is refused by `workspace-in` naming the entry, and nothing lands outside the
//! workspace. `workspace-hold` ends on SIGTERM; `runtime-stop`, exec'd in a container, ends its
//! PID 1 (a stopped run's runtime, before the copy back).

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};

use crate::support::{BOOKWORM_IMAGE, JobGuard, NamedRun, binary, require_bookworm_image};

/// The uid the pod's base-skill runs as in these tests.
const USER: &str = "1000:1000";

/// Runs `script` (sh) in a hardened container with our binary, `stdin` on its stdin; the
/// container is labelled with the job and removed (also when the test panics).
fn run_pod_side(job: &JobGuard, script: &str, stdin: &[u8]) -> Output {
    let (mut command, named) = NamedRun::command();
    command
        .args(["-i", "--network", "none", "--user", USER, "--read-only"])
        .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
        .args(["--label", "io.perstack.sandbox.managed=true"])
        .arg("--label")
        .arg(format!("io.perstack.sandbox.job-id={}", job.job_id))
        .args(["--tmpfs", "/pod:mode=1777,size=64m"])
        .arg("-v")
        .arg(format!("{}:/usr/local/bin/perstack-sandbox:ro", binary()))
        .args([BOOKWORM_IMAGE, "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("docker run");
    let mut input = child.stdin.take().expect("stdin");
    // A refusal ends the role before it has read everything: a broken pipe then.
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().expect("docker run");
    drop(named);
    output
}

/// A tar with entries as raw headers: (name, kind, contents, link target).
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut header = tar::Header::new_gnu();
        let gnu = header.as_gnu_mut().expect("gnu");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    builder.into_inner().expect("tar")
}

/// The entries of a tar: `path` for folders (with `/`), `path = contents` for files,
/// `path -> target` for links.
fn listing(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    let mut found = Vec::new();
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let line = match entry.header().entry_type() {
            tar::EntryType::Directory => format!("{path}/"),
            tar::EntryType::Symlink => format!(
                "{path} -> {}",
                entry.link_name().expect("link").expect("target").display()
            ),
            _ => {
                let mut text = String::new();
                entry.read_to_string(&mut text).expect("contents");
                format!("{path} = {text}")
            }
        };
        found.push(line);
    }
    found
}

const IN: &str = "mkdir /pod/workspace && perstack-sandbox workspace-in --workspace /pod/workspace --max-bytes 1048576 --max-entries 100";
const OUT: &str = "perstack-sandbox workspace-out --workspace /pod/workspace --protected git:.git --protected config:perstack.toml";

#[test]
fn a_workspace_goes_in_on_stdin_and_comes_out_on_stdout_less_the_run_data_and_protected_paths() {
    if !require_bookworm_image() {
        return;
    }
    let job = JobGuard::new();
    let tar = raw_tar(&[
        ("src", tar::EntryType::Directory, b"", ""),
        ("src/main.py", tar::EntryType::Regular, b"print(1)", ""),
        (".git", tar::EntryType::Directory, b"", ""),
        (".git/HEAD", tar::EntryType::Regular, b"ref", ""),
        ("perstack.toml", tar::EntryType::Regular, b"[experts]", ""),
        ("link", tar::EntryType::Symlink, b"", "src/main.py"),
    ]);
    // In, a change as a run would make it (a file made, and run data written by hand), out.
    let script = format!(
        "set -e; {IN}; echo made > /pod/workspace/src/made.txt; mkdir /pod/workspace/perstack; echo x > /pod/workspace/perstack/forged.json; ls -ln /pod/workspace/src >&2; {OUT}"
    );
    let out = run_pod_side(&job, &script, &tar);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Unpacked as the container's user, with the mode's execute bit kept.
    assert!(stderr.contains("-rwxr-xr-x 1 1000 1000 8"), "{stderr}");
    assert_eq!(
        listing(&out.stdout),
        [
            "link -> src/main.py",
            "src/",
            "src/made.txt = made\n",
            "src/main.py = print(1)"
        ]
    );
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}

#[test]
fn workspace_in_refuses_a_hostile_archive_naming_the_entry_and_nothing_lands_outside() {
    if !require_bookworm_image() {
        return;
    }
    let job = JobGuard::new();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "dot-dot",
            raw_tar(&[("../escaped", tar::EntryType::Regular, b"x", "")]),
            "the workspace archive's entry ../escaped is refused: not a plain relative path",
        ),
        (
            "link then file through it",
            raw_tar(&[
                ("l", tar::EntryType::Symlink, b"", ".."),
                ("l/escaped", tar::EntryType::Regular, b"x", ""),
            ]),
            "the workspace archive's entry l/escaped is refused: it lies beneath a link of the archive",
        ),
        (
            "run data",
            raw_tar(&[("perstack/jobs/j.json", tar::EntryType::Regular, b"{}", "")]),
            "the workspace archive's entry perstack/jobs/j.json is refused: it is in the reserved run-data folder",
        ),
        (
            "too big",
            raw_tar(&[("big", tar::EntryType::Regular, &[b'x'; 2 << 20], "")]),
            "the workspace archive holds more than 1048576 bytes of files (the cap; reached at big)",
        ),
    ];
    for (what, tar, why) in cases {
        let script = format!("{IN}; code=$?; test -e /pod/escaped && echo LANDED >&2; exit $code");
        let out = run_pod_side(&job, &script, &tar);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!("workspace-in: {why}")),
            "{what}: {stderr}"
        );
        assert!(
            !stderr.contains("LANDED"),
            "{what}: landed outside: {stderr}"
        );
    }
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}

/// The hold ends on SIGTERM (the pod's deletion) at once, and by itself after `--seconds`.
#[test]
fn workspace_hold_ends_on_sigterm_or_after_its_seconds() {
    if !require_bookworm_image() {
        return;
    }
    let job = JobGuard::new();
    let started = std::time::Instant::now();
    let out = run_pod_side(
        &job,
        "exec perstack-sandbox workspace-hold --seconds 1",
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let name = format!("psbx-{}-hold", job.job_id);
    let started = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--user",
            USER,
        ])
        .args(["--label", "io.perstack.sandbox.managed=true"])
        .arg("--label")
        .arg(format!("io.perstack.sandbox.job-id={}", job.job_id))
        .arg("-v")
        .arg(format!("{}:/usr/local/bin/perstack-sandbox:ro", binary()))
        .args([
            BOOKWORM_IMAGE,
            "perstack-sandbox",
            "workspace-hold",
            "--seconds",
            "600",
        ])
        .output()
        .expect("docker run");
    assert!(started.status.success());
    // SIGTERM before the handler is in place would be lost on PID 1: wait until it says so.
    wait_until_holding(&name);
    let stopping = std::time::Instant::now();
    let stop = Command::new("docker")
        .args(["stop", "-t", "30", &name])
        .output()
        .expect("docker stop");
    assert!(stop.status.success());
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(10),
        "SIGTERM ended it, not the grace period: {:?}",
        stopping.elapsed()
    );
    let code = Command::new("docker")
        .args(["inspect", "--format", "{{.State.ExitCode}}", &name])
        .output()
        .expect("inspect");
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0");
    drop(job);
}

/// Waits (30 s at most) until `workspace-hold` in container `name` says its SIGTERM handler is in
/// place.
fn wait_until_holding(name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let logs = Command::new("docker")
            .args(["logs", name])
            .output()
            .expect("logs");
        if String::from_utf8_lossy(&logs.stderr).contains("workspace-hold: holding") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never said it holds");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// How `docker exec` reports a process the kernel killed (SIGKILL, 128 + 9).
const KILLED_WITH_ITS_NAMESPACE: i32 = 137;

/// `runtime-stop`, exec'd in a container, ends its PID 1 when PID 1 handles SIGTERM (the
/// runtime does; here `workspace-hold`, which says when its handler is in place): how a
/// Kubernetes run stopped by Ctrl-C or its time limit ends its runtime before the copy back.
#[test]
fn runtime_stop_ends_the_containers_pid_1_from_inside() {
    if !require_bookworm_image() {
        return;
    }
    let job = JobGuard::new();
    let name = format!("psbx-{}-stop", job.job_id);
    let started = Command::new("docker")
        .args(["run", "-d", "--name", &name, "--network", "none"])
        .args(["--user", USER, "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges"])
        .args(["--label", "io.perstack.sandbox.managed=true"])
        .arg("--label")
        .arg(format!("io.perstack.sandbox.job-id={}", job.job_id))
        .arg("-v")
        .arg(format!("{}:/usr/local/bin/perstack-sandbox:ro", binary()))
        .args([BOOKWORM_IMAGE, "perstack-sandbox", "workspace-hold"])
        .args(["--seconds", "600"])
        .output()
        .expect("docker run");
    assert!(started.status.success(), "{started:?}");
    wait_until_holding(&name);
    let stopping = std::time::Instant::now();
    let stop = Command::new("docker")
        .args(["exec", &name, "perstack-sandbox", "runtime-stop"])
        .output()
        .expect("docker exec");
    // Once PID 1 exits, the kernel kills every other process of its PID namespace: the exec
    // ends 0 when it left first, 137 when the namespace ended under it (about 1 in 12 on Docker
    // and on Podman alike). Either way the signal went; `cannot signal` would end it with 1.
    assert!(
        matches!(stop.status.code(), Some(0 | KILLED_WITH_ITS_NAMESPACE)),
        "{stop:?}"
    );
    let waited = Command::new("timeout")
        .args(["20", "docker", "wait", &name])
        .output()
        .expect("docker wait");
    assert_eq!(String::from_utf8_lossy(&waited.stdout).trim(), "0");
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        stopping.elapsed()
    );
    drop(job);
}
