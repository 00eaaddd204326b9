//! The OCI runtime of a run (`--runtime-engine`, `[sandbox] runtime`): one the engine has not
//! registered stops the run with exit 2 before anything starts, naming the daemon.json lines
//! that register it; `doctor` lists the registered runtimes and probes gVisor's. That every
//! container of a run really starts under gVisor is the security suite's to show, run again by
//! `.ci/run` with `PERSTACK_SANDBOX_TEST_RUNTIME=runsc` (`security.rs`: the runtime of each live
//! container, the kernel a skill sees).

use std::process::Command;

use serde_json::Value;

use crate::support::{TestRun, binary, docker, fixture, require_docker};

/// The runtimes the engine has registered, by name.
fn registered() -> Vec<String> {
    let json = docker(&["info", "--format", "{{json .Runtimes}}"]);
    let runtimes: Value = serde_json::from_str(json.trim()).expect("runtimes JSON");
    runtimes
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// gVisor is registered here; in CI, where `.ci/run` registers it, it must be.
fn gvisor_registered() -> bool {
    let found = registered().iter().any(|r| r == "runsc");
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI registers runsc (.ci/run); the engine has only {:?}",
        registered()
    );
    found
}

#[test]
fn a_runtime_the_engine_lacks_stops_the_run_with_exit_2_before_anything_starts() {
    if !require_docker() {
        return;
    }
    let missing = "runsc-not-registered-here";
    assert!(!registered().iter().any(|r| r == missing));

    // On the command line.
    let run = TestRun::new("e2e/streaming/perstack.toml", "streamer")
        .arg("--runtime-engine")
        .arg(missing);
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stderr.contains(&format!(
            "--runtime-engine asks for the runtime \"{missing}\", which the Docker engine has not \
             registered (it has: "
        )),
        "{}",
        done.stderr
    );
    for line in [
        "in /etc/docker/daemon.json, keeping the keys already there:",
        "\"runtimes\": {",
        &format!("\"{missing}\": {{"),
        "`sudo kill -HUP $(pidof dockerd)`",
    ] {
        assert!(done.stderr.contains(line), "{line}: {}", done.stderr);
    }
    assert!(done.events.is_empty(), "{}", done.stdout);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    // Nothing was recorded either: the job store is made when the run starts.
    assert!(!run.workspace.path().join("perstack").exists());

    // In perstack.toml: named at its place.
    let dir = tempfile::tempdir().expect("tempdir");
    let source = fixture("e2e/streaming");
    for file in ["perstack.toml", "script.toml"] {
        std::fs::copy(source.join(file), dir.path().join(file)).expect("copy the fixture");
    }
    let config = dir.path().join("perstack.toml");
    let mut text = std::fs::read_to_string(&config).expect("read");
    text.push_str(&format!("\n[sandbox]\nruntime = \"{missing}\"\n"));
    std::fs::write(&config, &text).expect("write");
    let line = text.lines().count();
    let run = TestRun::with_config(&config, "streamer").without_test_runtime();
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stderr.contains(&format!(
            "{}:{line}:11: [sandbox] runtime asks for the runtime \"{missing}\"",
            config.display()
        )),
        "{}",
        done.stderr
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn doctor_lists_the_registered_runtimes_and_probes_gvisor_on_no_network_and_on_one() {
    if !require_docker() {
        return;
    }
    let out = Command::new(binary())
        .args(["doctor", "--config"])
        .arg(fixture("e2e/streaming/perstack.toml"))
        .output()
        .expect("run doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let runtimes = stdout
        .lines()
        .find(|l| l.contains("runtimes "))
        .unwrap_or_else(|| panic!("no runtimes line: {stdout}"));
    for name in registered() {
        assert!(runtimes.contains(&name), "{name}: {runtimes}");
    }
    if crate::support::on_podman() {
        gvisor_on_podman_is_a_note_and_a_run_asking_for_it_is_refused(&stdout);
    } else if gvisor_registered() {
        assert!(
            runtimes.contains("runsc = gVisor: /usr/bin/runsc --platform=ptrace"),
            "{runtimes}"
        );
        // The run probe under gVisor: a container with no network serving a socket in a volume,
        // one on an internal network reaching it, every step passed, everything removed.
        let header =
            "  run probe under runsc (one container on no network, one on an internal network):\n";
        let under = stdout
            .split(header)
            .nth(1)
            .unwrap_or_else(|| panic!("no probe under runsc: {stdout}"));
        let steps: Vec<&str> = under
            .lines()
            .take_while(|l| !l.starts_with("  base images:"))
            .collect();
        for step in [
            "internal network",
            "hardened start",
            "unix socket",
            "removal",
        ] {
            assert!(
                steps
                    .iter()
                    .any(|l| l.starts_with(&format!("  ✔   {step}"))),
                "{step}: {stdout}"
            );
        }
        assert!(!steps.iter().any(|l| l.contains('✘')), "{stdout}");
    } else {
        assert!(
            stdout.contains("gVisor (runsc) is not registered"),
            "{stdout}"
        );
    }
    crate::support::assert_doctor_ready(out.status.code(), &stdout);
    // What the probes made is removed by doctor itself; `.ci/run`'s leftover check counts what
    // any controller of this machine left (doctor runs in parallel with other tests here).
}

/// Podman lists runsc (when installed) with no arguments, and can pass it none: doctor notes it
/// without probing, and a run that asks for it stops with exit 2 before anything starts.
fn gvisor_on_podman_is_a_note_and_a_run_asking_for_it_is_refused(doctor: &str) {
    if !registered().iter().any(|r| r == "runsc") {
        return;
    }
    assert!(
        doctor.contains("    gVisor (runsc) is registered without --host-uds=all: a run that asks for it refuses"),
        "{doctor}"
    );
    assert!(!doctor.contains("run probe under runsc"), "{doctor}");
    let run = TestRun::new("e2e/streaming/perstack.toml", "streamer")
        .without_test_runtime()
        .arg("--runtime-engine")
        .arg("runsc");
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stderr.contains(
            "--runtime-engine asks for gVisor (\"runsc\"), which Podman cannot run our skills under"
        ),
        "{}",
        done.stderr
    );
    assert!(done.events.is_empty(), "{}", done.stdout);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}
