//! Docker endpoints: `DOCKER_HOST` over TCP reaches the engine for a whole run, and an endpoint
//! where nothing answers fails with exit 5, naming every place looked and what to do. `doctor`
//! says which endpoint it used and why.

use std::process::{Command, Output};

use crate::support::forward::{TcpForwarder, UnixForwarder};
use crate::support::{TestRun, binary, fixture, require_docker};

fn doctor(docker_host: &str) -> Output {
    Command::new(binary())
        .args(["doctor", "--config"])
        .arg(fixture("e2e/streaming/perstack.toml"))
        .env("DOCKER_HOST", docker_host)
        .output()
        .expect("run doctor")
}

/// What differs between machines and runs: sizes, versions, durations, the forwarder's port,
/// the sockets this machine has.
fn machine_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"static, \d+\.\d MB", "static, [SIZE] MB"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (
            r"(?:Docker|Podman) \S+(?: \(rootless\))? on \S+, API \S+ \(minimum \S+\), cgroup v\d",
            "[ENGINE] [VERSION] on [PLATFORM], API [API] (minimum [API]), cgroup v[N]",
        ),
        (
            r"perstack-sandbox-doctor-\w+",
            "perstack-sandbox-doctor-[ID]",
        ),
        (
            r"psbx-doctor-\w+-net, subnet \S+,",
            "psbx-doctor-[ID]-net, subnet [SUBNET],",
        ),
        (r"owned by uid \d+", "owned by uid [YOU]"),
        (r"reached uid \d+'s", "reached uid [YOU]'s"),
        (
            r"\(uid \d+ inside\) belongs to uid \d+",
            "(uid [YOU INSIDE]) belongs to uid [YOU]",
        ),
        (r"negotiated API   \S+", "negotiated API   [API]"),
        (r"\d+\.\d\d s", "[SECONDS] s"),
        (
            r"CA bundle        \S+ \([^)]*\), \d+ certificates",
            "CA bundle        [BUNDLE] ([CHOSEN BY]), [N] certificates",
        ),
        (
            r"sockets on this machine: .*",
            "sockets on this machine: [SOCKETS]",
        ),
        // Which runtimes the engine has, and the probes of those it has
        // (`runtime_engine.rs` checks them).
        (r"runtimes         .*", "runtimes         [RUNTIMES]"),
        (r"(?ms)^  run probe under .*?(^  base images:)", "$1"),
        (r"(?m)^    gVisor \(runsc\) is not registered.*\n", ""),
        // Podman lists runsc with no arguments whenever it is installed: a note, no probe.
        (
            r"(?m)^    gVisor \(\w+\) is registered without --host-uds=all.*\n",
            "",
        ),
    ]
}

#[test]
fn doctor_and_a_whole_run_work_over_a_tcp_docker_host() {
    if !require_docker() {
        return;
    }
    let forwarder = TcpForwarder::start();
    let docker_host = forwarder.docker_host();

    let out = doctor(&docker_host);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    insta::with_settings!({filters => machine_filters()}, {
        insta::assert_snapshot!("doctor_over_tcp", stdout);
    });

    // Images, volumes, containers, attach (a hijacked connection) and cleanup, all over TCP.
    let run = TestRun::new("e2e/streaming/perstack.toml", "streamer")
        .host_env("DOCKER_HOST", &docker_host);
    let done = run.run();
    done.assert_code(0);
    assert_eq!(done.of_type("completeRun").len(), 1, "{}", done.stderr);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_docker_host_where_nothing_listens_fails_with_exit_5_and_the_places_looked() {
    let nowhere = "unix:///nonexistent/docker.sock";

    let out = doctor(nowhere);
    assert_eq!(out.status.code(), Some(5));
    insta::with_settings!({filters => machine_filters()}, {
        insta::assert_snapshot!("doctor_nowhere", String::from_utf8_lossy(&out.stdout));
    });

    // A run stops before anything starts, with the same account on stderr.
    let run =
        TestRun::new("e2e/streaming/perstack.toml", "streamer").host_env("DOCKER_HOST", nowhere);
    let done = run.run();
    done.assert_code(5);
    assert!(
        done.stderr.contains(
            "error: no Docker engine answered. Looked, in this order:\n  \
             - unix:///nonexistent/docker.sock (DOCKER_HOST is set): no socket there\n  \
             DOCKER_HOST chooses the engine, so nothing else was tried."
        ),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("hint: point DOCKER_HOST at a running engine"),
        "{}",
        done.stderr
    );
    assert!(done.events.is_empty(), "{}", done.stdout);
}

#[test]
fn a_tcp_docker_host_where_nothing_listens_says_so() {
    // Port 9 (discard) on loopback: nothing listens there on a test machine.
    let out = doctor("tcp://127.0.0.1:9");
    assert_eq!(out.status.code(), Some(5));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "- tcp://127.0.0.1:9 (DOCKER_HOST is set): connection refused (nothing listens there)"
        ),
        "{stdout}"
    );
}

/// `doctor` with no DOCKER_HOST, no Docker context and `XDG_RUNTIME_DIR` at `runtime_dir`.
fn doctor_looking_around(runtime_dir: &std::path::Path) -> String {
    let docker_config = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary())
        .args(["doctor", "--config"])
        .arg(fixture("e2e/streaming/perstack.toml"))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CONFIG", docker_config.path())
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .output()
        .expect("run doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    stdout
}

#[test]
fn a_rootless_docker_socket_comes_before_podman_and_the_default_socket() {
    if !require_docker() {
        return;
    }
    let runtime_dir = tempfile::tempdir().expect("tempdir");
    let rootless = runtime_dir.path().join("docker.sock");
    let podman = runtime_dir.path().join("podman/podman.sock");

    // Only Podman's socket: it is found, before the default socket.
    let podman_engine = UnixForwarder::start(&podman);
    let stdout = doctor_looking_around(runtime_dir.path());
    assert!(
        stdout.contains(&format!(
            "docker endpoint  unix://{} (rootless Podman socket found; set DOCKER_HOST to use another engine)",
            podman.display()
        )),
        "{stdout}"
    );

    // A rootless Docker socket too: it comes first.
    let _rootless_engine = UnixForwarder::start(&rootless);
    let stdout = doctor_looking_around(runtime_dir.path());
    assert!(
        stdout.contains(&format!(
            "docker endpoint  unix://{} (rootless Docker socket found",
            rootless.display()
        )),
        "{stdout}"
    );

    // A stale Podman socket (nothing behind it) is passed over, and said so.
    drop(podman_engine);
    std::fs::remove_file(&rootless).expect("remove the rootless socket");
    let stdout = doctor_looking_around(runtime_dir.path());
    assert!(
        stdout.contains(&format!(
            "passed over: unix://{} (rootless Podman socket): connection refused",
            podman.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("docker endpoint  unix:///var/run/docker.sock (default Docker socket"),
        "{stdout}"
    );
}
