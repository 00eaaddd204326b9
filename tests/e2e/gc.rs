//! Cleanup that always works: a controller killed with SIGKILL cannot clean up after itself;
//! `gc`, or the next run, removes what it left.

use std::process::Command;
use std::time::Duration;

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
