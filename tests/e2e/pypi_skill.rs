//! A real third-party MCP server from PyPI: `uvx mcp-server-time`, as Perstack configs write it,
//! on the local Debian image of `make test-images`. The package is installed when the skill's
//! image is built — with the host's CA bundle, which the image must not keep — and the skill
//! container runs with no network at all. A second run builds nothing.

use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::{Finished, TestRun, docker, finish_after, read_until, require_bookworm_image};

const CONFIG: &str = "e2e/pypi-skill/perstack.toml";

/// Asserts `get_current_time`'s real answer: UTC, and a datetime close to now.
fn assert_real_time(done: &Finished) {
    let text = done.tool_result("get_current_time");
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(answer["timezone"], "UTC", "{answer}");
    let datetime = answer["datetime"].as_str().expect("datetime");
    let utc = datetime
        .strip_suffix("+00:00")
        .unwrap_or_else(|| panic!("not UTC: {datetime}"));
    let then = humantime::parse_rfc3339_weak(utc).unwrap_or_else(|e| panic!("{e}: {datetime}"));
    let now = SystemTime::now();
    let apart = now.duration_since(then).unwrap_or_else(|e| e.duration());
    assert!(
        apart < Duration::from_secs(120),
        "{datetime} is {apart:?} away from now"
    );
}

/// Every path in every layer of `tag` (the tar of `docker save`, layer by layer).
fn layer_paths(tag: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["save", tag])
        .output()
        .expect("docker save");
    assert!(out.status.success(), "docker save {tag} failed");
    let mut paths = Vec::new();
    let mut image = tar::Archive::new(&out.stdout[..]);
    for entry in image.entries().expect("image tar") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").display().to_string();
        // Docker's archive holds `<id>/layer.tar`, Podman's `<digest>.tar` beside the manifest.
        let podman_layer = name.ends_with(".tar") && !name.contains('/');
        if !name.ends_with("layer.tar") && !podman_layer {
            continue;
        }
        let mut layer = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut layer).expect("layer");
        let mut layer = tar::Archive::new(&layer[..]);
        for file in layer.entries().expect("layer tar") {
            paths.push(
                file.expect("file")
                    .path()
                    .expect("path")
                    .display()
                    .to_string(),
            );
        }
    }
    paths
}

#[test]
fn mcp_server_time_from_pypi_answers_from_a_skill_container_without_network() {
    if !require_bookworm_image() {
        return;
    }
    let first = TestRun::new(CONFIG, "clock");
    let mut child = first.spawn();
    // The skill container is up while the first turn takes its time: look at it.
    let seen = read_until(
        &mut child,
        "\"service\":\"skill:time\",\"message\":\"Skill container",
        Duration::from_secs(600),
    );
    let containers = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.perstack.sandbox.job-id={}", first.guard.job_id),
        "--filter",
        "label=io.perstack.sandbox.service=skill:time",
    ]);
    let id = containers.trim();
    assert!(!id.is_empty(), "no running skill:time container");
    assert_eq!(
        docker(&["inspect", "--format", "{{.HostConfig.NetworkMode}}", id]).trim(),
        "none",
        "the skill container must have no network at run time"
    );
    let done = finish_after(child, seen);
    done.assert_code(0);

    // The real server answered, through the skill container.
    assert_real_time(&done);
    assert_eq!(
        done.of_type("completeRun")[0]["text"],
        "It is the time the clock said."
    );
    // Events show the command as configured.
    let starting = done
        .of_type("skillStarting")
        .into_iter()
        .find(|e| e["skillName"] == "time")
        .expect("skillStarting for time");
    assert_eq!(starting["command"], "uvx");
    assert_eq!(starting["args"], serde_json::json!(["mcp-server-time"]));

    // The image has the installed package and nothing of the build's CA bundle: no layer holds
    // the build folder or its file, and the history never mentions them.
    let tag = done.image_tag("skill:time");
    let paths = layer_paths(&tag);
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("opt/perstack-skill/bin/mcp-server-time")),
        "the console script is not in the image"
    );
    let leaks: Vec<&String> = paths
        .iter()
        .filter(|p| p.contains("perstack-build") || p.ends_with("ca.pem"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the CA bundle reached the image: {leaks:?}"
    );
    let history = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]);
    assert!(
        !history.contains("perstack-build") && !history.contains("ca.pem"),
        "{history}"
    );
    assert_eq!(first.guard.leftovers(), Vec::<String>::new());

    // Again: every image is found by its content digest, nothing is built.
    let second = TestRun::new(CONFIG, "clock");
    let again = second.run();
    again.assert_code(0);
    assert_real_time(&again);
    let progress = again.of_type("dockerBuildProgress");
    assert!(!progress.is_empty());
    for event in progress {
        let message = event["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Using cached image "),
            "the second run built something: {event}"
        );
    }
    assert_eq!(again.image_tag("skill:time"), tag);
    assert_eq!(second.guard.leftovers(), Vec::<String>::new());
}
