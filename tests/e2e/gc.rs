//! Cleanup that always works: a controller killed with SIGKILL cannot clean up after itself;
//! `gc`, or the next run, removes what it left.

use std::process::Command;
use std::time::Duration;

use perstack_sandbox::test_support::docker::DockerGuard;

use crate::support::{TestRun, binary, read_until, require_docker};

/// Starts the slow Expert, waits until its containers run, and SIGKILLs the controller.
fn killed_run() -> TestRun {
    let run = TestRun::new("e2e/slow/perstack.toml", "slow");
    let mut child = run.spawn();
    read_until(&mut child, "\"callTools\"", Duration::from_secs(180));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    child.wait().expect("wait");
    let left = run.guard.leftovers();
    assert!(
        left.iter().any(|l| l.starts_with("container")),
        "a SIGKILLed controller cannot remove its containers: {left:?}"
    );
    run
}

#[test]
fn gc_removes_what_a_killed_controller_left() {
    if !require_docker() {
        return;
    }
    let run = killed_run();
    let out = Command::new(binary()).args(["gc"]).output().expect("gc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        run.guard.leftovers(),
        Vec::<String>::new(),
        "gc said:\n{stdout}"
    );
}

#[test]
fn the_next_run_sweeps_what_a_killed_controller_left() {
    if !require_docker() {
        return;
    }
    let killed = killed_run();
    let next = TestRun::new("e2e/streaming/perstack.toml", "streamer");
    let done = next.run();
    done.assert_code(0);
    assert_eq!(
        killed.guard.leftovers(),
        Vec::<String>::new(),
        "{}",
        done.stderr
    );
    assert!(next.guard.leftovers().is_empty());
}

#[test]
fn gc_leaves_a_live_run_alone() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/slow/perstack.toml", "slow");
    let mut child = run.spawn();
    read_until(&mut child, "\"callTools\"", Duration::from_secs(180));
    let before = run.guard.leftovers();
    let out = Command::new(binary()).args(["gc"]).output().expect("gc");
    assert!(out.status.success());
    assert_eq!(run.guard.leftovers(), before, "gc touched a live run");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143));
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// `docker import` of a one-file image labelled as ours, tagged `tag`; its id (`sha256:…`).
fn import_managed(tag: &str, marker: &str) -> String {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(marker.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive
        .append_data(&mut header, "marker", marker.as_bytes())
        .expect("tar");
    let tarball = archive.into_inner().expect("tar");
    let mut child = Command::new("docker")
        .args([
            "import",
            // A label an instruction: Podman's import reads `LABEL a=1 b=2` as one label.
            "--change",
            "LABEL io.perstack.sandbox.managed=true",
            "--change",
            "LABEL io.perstack.sandbox.role=e2e-gc",
            "-",
            tag,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker import");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &tarball).expect("write");
    let out = child.wait_with_output().expect("docker import");
    assert!(out.status.success(), "docker import {tag} failed");
    // Asked, not read from import's output: on Podman the docker CLI prints `<id>: <id>`.
    crate::support::docker(&["image", "inspect", "--format", "{{.Id}}", tag])
        .trim()
        .to_string()
}

#[test]
fn gc_images_picks_superseded_and_untagged_versions_and_keeps_the_newest() {
    if !require_docker() {
        return;
    }
    let repository = format!("perstack-sandbox/e2e-gc-{}", std::process::id());
    // Creation times count in seconds: one apart each.
    // The images this test imports go when it ends, panics included.
    let mut imported = DockerGuard::new();
    let old = import_managed(&format!("{repository}:old"), "old");
    imported.image(&old);
    std::thread::sleep(Duration::from_millis(1100));
    let lost = import_managed(&format!("{repository}:newest"), "lost its tag");
    imported.image(&lost);
    std::thread::sleep(Duration::from_millis(1100));
    let newest = import_managed(&format!("{repository}:newest"), "newest");
    imported.image(&newest);

    // A dry run, so that images other tests are about to use stay where they are.
    let out = Command::new(binary())
        .args(["gc", "--images", "--dry-run"])
        .output()
        .expect("gc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("would remove image {repository}:old ")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("would remove image {lost} ")),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("{repository}:newest")),
        "{stdout}"
    );
    assert!(!stdout.contains(&newest), "{stdout}");
    // Nothing was removed.
    for id in [&old, &lost, &newest] {
        let inspected = Command::new("docker")
            .args(["image", "inspect", id])
            .output()
            .expect("inspect");
        assert!(inspected.status.success(), "{id} is gone after a dry run");
    }
}
