//! End-to-end runs against the real Docker engine: the runtime, base-skill and the fixture skill
//! each in their own container.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use perstack_sandbox::test_support::docker::DockerGuard;
use serde_json::Value;

use crate::support::{Finished, TestRun, read_until, require_docker};

fn isolation_run() -> TestRun {
    TestRun::new("e2e/isolation/perstack.toml", "isolation")
        .host_env("FIXTURE_TOKEN", "fixture-secret")
        .host_env("UNRELATED_TOKEN", "must-not-leak")
        // A provider key in the controller's environment must not reach any skill either.
        .host_env("ANTHROPIC_API_KEY", "sk-ant-must-not-leak")
}

#[test]
fn a_run_writes_through_base_skill_isolates_the_skill_and_leaves_nothing() {
    if !require_docker() {
        return;
    }
    let run = isolation_run();
    let done = run.run();
    done.assert_code(0);

    // The agent loop, step by step, exactly.
    assert_eq!(
        done.run_event_types(),
        [
            "startRun@1",
            "startGeneration@1",
            "callTools@1",
            "resolveToolResults@1",
            "finishToolCall@1",
            "continueToNextStep@1",
            "startGeneration@2",
            "callTools@2",
            "resolveToolResults@2",
            "finishToolCall@2",
            "continueToNextStep@2",
            "startGeneration@3",
            "callTools@3",
            "resolveToolResults@3",
            "finishToolCall@3",
            "continueToNextStep@3",
            "startGeneration@4",
            "callTools@4",
            "resolveToolResults@4",
            "finishToolCall@4",
            "continueToNextStep@4",
            "startGeneration@5",
            "callTools@5",
            "resolveToolResults@5",
            "finishToolCall@5",
            "continueToNextStep@5",
            "startGeneration@6",
            "callTools@6",
            "resolveToolResults@6",
            "finishToolCall@6",
            "continueToNextStep@6",
            "startGeneration@7",
            "callTools@7",
            "attemptCompletion@7",
            // The final-result generation streams its answer through the relay.
            "startStreamingRunResult@7",
            "streamRunResult@7",
            "streamRunResult@7",
            "streamRunResult@7",
            "completeStreamingRunResult@7",
            "completeRun@7",
        ]
    );
    // The streamed chunks make up the answer, and arrived before the run's end.
    let streamed: String = done
        .events
        .iter()
        .filter(|e| e["type"] == "streamRunResult")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    let complete = done
        .events
        .iter()
        .find(|e| e["type"] == "completeRun")
        .expect("completeRun");
    assert_eq!(Some(streamed.as_str()), complete["text"].as_str());
    // Runtime events: the runtime announced itself and connected both skills before step 1.
    let types: Vec<&str> = done
        .events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    let first_run_event = types
        .iter()
        .position(|t| *t == "startRun")
        .expect("startRun");
    let before: Vec<&str> = types[..first_run_event].to_vec();
    assert!(before.contains(&"initializeRuntime"), "{before:?}");
    assert_eq!(before.iter().filter(|t| **t == "skillStarting").count(), 2);
    assert_eq!(before.iter().filter(|t| **t == "skillConnected").count(), 2);
    assert!(before.contains(&"dockerContainerStatus"));
    let complete = done.of_type("completeRun");
    assert_eq!(complete[0]["text"], "All checks done.");
    // The fixture's connection ended when it crashed (below) and again, restarted, when the
    // run closed it after completing; base-skill's only then.
    let complete_at = types.iter().position(|t| *t == "completeRun").expect("end");
    let disconnected: Vec<(usize, &Value)> = done
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["type"] == "skillDisconnected")
        .collect();
    let mut names: Vec<&str> = disconnected
        .iter()
        .filter_map(|(_, e)| e["skillName"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["@perstack/base", "fixture", "fixture"], "{types:?}");
    let base_at = disconnected
        .iter()
        .find(|(_, e)| e["skillName"] == "@perstack/base")
        .map(|(i, _)| *i);
    assert!(base_at > Some(complete_at), "{types:?}");

    // The file is in the workspace, owned by the invoking user.
    let report = run.workspace.path().join("report.txt");
    assert_eq!(
        std::fs::read_to_string(&report).expect("report.txt"),
        "written by base-skill\n"
    );
    let meta = std::fs::metadata(&report).expect("metadata");
    assert_eq!(meta.uid(), nix::unistd::getuid().as_raw());
    assert_eq!(meta.gid(), nix::unistd::getgid().as_raw());
    // The run-data folder base-skill sees as an empty tmpfs was made beforehand by the
    // controller, as the invoking user (Docker would have made it as root).
    let reserved = std::fs::metadata(run.workspace.path().join("perstack")).expect("perstack/");
    assert!(reserved.is_dir());
    assert_eq!(reserved.uid(), nix::unistd::getuid().as_raw());

    // The skill saw exactly its requiredEnv (plus the PATH and HOME every process needs).
    let env: Value = serde_json::from_str(&done.tool_result("get_env")).expect("env JSON");
    assert_eq!(
        Finished::keys(&env),
        ["FIXTURE_TOKEN", "HOME", "PATH"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(env["FIXTURE_TOKEN"], "fixture-secret");
    assert!(!done.tool_result("get_env").contains("sk-ant-must-not-leak"));
    assert!(!done.tool_result("get_env").contains("must-not-leak"));
    // …as the skill user, not root and not the invoking user.
    let who: Value = serde_json::from_str(&done.tool_result("whoami")).expect("whoami JSON");
    assert_eq!(who["uid"], 10002);

    // An MCP error reaches the model as a tool error.
    assert_eq!(
        done.tool_result("fail"),
        "Error calling tool fail: failing on purpose"
    );
    // The skill's stderr came back as skillStderr events.
    let stderr_lines: Vec<&str> = done
        .of_type("skillStderr")
        .iter()
        .filter(|e| e["skillName"] == "fixture")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        stderr_lines.contains(&"hello on stderr"),
        "{stderr_lines:?}"
    );
    assert!(
        stderr_lines.contains(&"fixture-mcp: crashing on request"),
        "{stderr_lines:?}"
    );
    // A crash is a tool error naming the cause; the skill host restarted the server, and the
    // next call reached it (tests/e2e/supervision.rs has the rest).
    assert_eq!(
        done.tool_result("crash"),
        "Error calling tool crash: the server exited with code 1; restarting it in 0.25 s (restart 1 of 5 this run)"
    );
    assert_eq!(done.tool_result("echo"), "anyone there?");

    // Nothing with this job's labels is left in Docker.
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn the_second_run_of_an_expert_builds_nothing() {
    if !require_docker() {
        return;
    }
    let first = isolation_run().run();
    first.assert_code(0);
    let second = isolation_run().run();
    second.assert_code(0);
    let stages: Vec<(String, String)> = second
        .of_type("dockerBuildProgress")
        .iter()
        .map(|e| {
            (
                e["stage"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(stages.len(), 3, "runtime, base-skill and skill: {stages:?}");
    for (stage, message) in &stages {
        assert_eq!(stage, "complete", "{stages:?}");
        assert!(message.starts_with("Using cached image "), "{stages:?}");
    }
    // …and it used the very images the first run ended up with.
    let tags = |done: &Finished| -> Vec<String> {
        let mut tags: Vec<String> = done
            .of_type("dockerBuildProgress")
            .iter()
            .filter(|e| e["stage"] == "complete")
            .filter_map(|e| e["message"].as_str())
            .filter_map(|m| {
                m.split_whitespace()
                    .find(|w| w.starts_with("perstack-sandbox/"))
            })
            .map(str::to_string)
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(tags(&first), tags(&second));
}

#[test]
fn max_steps_stops_the_run_with_its_exit_code() {
    if !require_docker() {
        return;
    }
    let run = isolation_run().arg("--max-steps").arg("2");
    let done = run.run();
    done.assert_code(3);
    assert_eq!(
        done.run_event_types().last().map(String::as_str),
        Some("stopRunByExceededMaxSteps@2")
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

fn interrupt(signal: nix::sys::signal::Signal, expected: i32) {
    let run = TestRun::new("e2e/slow/perstack.toml", "slow");
    let mut child = run.spawn();
    // Once the sleep call is under way, every container of the run exists.
    let mut seen = read_until(&mut child, "\"callTools\"", Duration::from_secs(180));
    // Events stream while the run is still going, not at its end.
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the run ended before it was interrupted"
    );
    assert_live_containers_are_isolated(&run);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("signal");
    if signal == nix::sys::signal::Signal::SIGINT {
        // The first Ctrl-C waits for the minute-long step under way; the second stops at once
        // (hardening.rs tests each).
        crate::support::read_stderr_until(
            &mut child,
            "press Ctrl-C again",
            Duration::from_secs(30),
        );
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signal");
    }
    let out = child.wait_with_output().expect("wait");
    seen.extend_from_slice(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(expected),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn ctrl_c_twice_stops_the_containers_and_exits_130() {
    if !require_docker() {
        return;
    }
    interrupt(nix::sys::signal::Signal::SIGINT, 130);
}

/// A closed terminal (ssh dropped, window closed) is SIGHUP, whose default would kill the
/// controller on the spot and leave the run's containers running.
#[test]
fn sighup_stops_the_containers_and_exits_129() {
    if !require_docker() {
        return;
    }
    interrupt(nix::sys::signal::Signal::SIGHUP, 129);
}

#[test]
fn sigterm_stops_the_containers_and_exits_143() {
    if !require_docker() {
        return;
    }
    interrupt(nix::sys::signal::Signal::SIGTERM, 143);
}

#[test]
fn a_run_that_fails_midway_exits_1_and_leaves_nothing() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/failing/perstack.toml", "failing");
    let done = run.run();
    done.assert_code(1);
    let stop = done.of_type("stopRunByError");
    assert_eq!(stop.len(), 1, "{}", done.stdout);
    assert_eq!(
        stop[0]["error"],
        serde_json::json!({
            "name": "AI_APICallError",
            "message": "invalid request: the mock says no",
            "statusCode": 400,
            "isRetryable": false
        })
    );
    assert_eq!(stop[0]["stepNumber"], 2);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// A local image made with `docker import`, removed on drop together with the images a test
/// built on it (and only those: other tests run in parallel).
struct LocalBase {
    tag: String,
    images: DockerGuard,
}

impl LocalBase {
    fn new(marker: &str) -> LocalBase {
        let tag = format!(
            "perstack-sandbox-test/base:{}",
            perstack_sandbox::test_support::internals::new_id()
        );
        let mut images = DockerGuard::new();
        images.image(&tag);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(dir.path().join("etc/base-marker"), marker).expect("marker");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {} -cf - . | docker import --change 'LABEL io.perstack.sandbox.test=true' - {tag}",
                dir.path().display()
            ))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("docker import");
        assert!(status.success());
        LocalBase { tag, images }
    }
}

#[test]
fn a_configured_base_image_is_built_upon() {
    if !require_docker() {
        return;
    }
    let mut base = LocalBase::new("from the configured base");
    // The isolation Expert, with its skill's image based on the local base.
    let dir = tempfile::tempdir().expect("tempdir");
    let source = crate::support::fixture("e2e/isolation");
    std::fs::copy(source.join("script.toml"), dir.path().join("script.toml")).expect("script");
    let config = std::fs::read_to_string(source.join("perstack.toml")).expect("config")
        + &format!("\n[sandbox.skills.\"fixture\"]\nimage = \"{}\"\n", base.tag);
    std::fs::write(dir.path().join("perstack.toml"), config).expect("config");

    let mut run = isolation_run();
    run.config = dir.path().join("perstack.toml");
    let done = run.run();
    done.assert_code(0);
    // The skill still sees only its own variables: the base adds nothing of the host's.
    let env: Value = serde_json::from_str(&done.tool_result("get_env")).expect("env JSON");
    assert_eq!(env["FIXTURE_TOKEN"], "fixture-secret");
    assert!(env.get("UNRELATED_TOKEN").is_none());

    // The skill image was built FROM the base: the base's file is in it.
    let tag = done
        .of_type("dockerBuildProgress")
        .iter()
        .filter(|e| e["service"] == "skill:fixture" && e["stage"] == "complete")
        .filter_map(|e| e["message"].as_str())
        .filter_map(|m| {
            m.split_whitespace()
                .find(|w| w.starts_with("perstack-sandbox/skill-"))
        })
        .map(str::to_string)
        .next()
        .expect("the skill image's tag");
    base.images.image(&tag);
    let created = std::process::Command::new("docker")
        .args(["create", "--label"])
        .arg(format!("io.perstack.sandbox.job-id={}", run.guard.job_id))
        .arg(&tag)
        .output()
        .expect("docker create");
    let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let marker = std::process::Command::new("docker")
        .args(["cp", &format!("{id}:/etc/base-marker"), "-"])
        .output()
        .expect("docker cp");
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &id])
        .output();
    assert!(
        String::from_utf8_lossy(&marker.stdout).contains("from the configured base"),
        "{}",
        String::from_utf8_lossy(&marker.stderr)
    );
}

#[test]
fn a_skill_that_cannot_start_fails_the_run_at_once_with_the_cause() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/broken-skill/perstack.toml", "broken");
    let started = std::time::Instant::now();
    let done = run.run();
    done.assert_code(1);
    // Not the 60 s the runtime would wait for a socket: the skill host answers with the cause.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        done.stderr.contains(
            "skill `ghost`: its server could not start: cannot start `no-such-mcp-server`"
        ) && done
            .stderr
            .contains("hint: `no-such-mcp-server` is not a program in the skill's image"),
        "{}",
        done.stderr
    );
    // The skill host's own message also came through as skillStderr.
    assert!(
        done.of_type("skillStderr").iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-mcp-server"))),
        "{}",
        done.stdout
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// Inspects the live containers of a run: no network anywhere (mock provider), no host path but
/// the workspace and only in base-skill, and the hardening defaults on each.
fn assert_live_containers_are_isolated(run: &TestRun) {
    let ids = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!(
            "label=io.perstack.sandbox.job-id={}",
            run.guard.job_id
        ))
        .output()
        .expect("docker ps");
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 3, "runtime, base-skill and the fixture skill");
    let out = std::process::Command::new("docker")
        .arg("inspect")
        .args(&ids)
        .output()
        .expect("docker inspect");
    let containers: Vec<Value> = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    let workspace = std::fs::canonicalize(run.workspace.path()).expect("workspace");
    for c in &containers {
        let role = c["Config"]["Labels"]["io.perstack.sandbox.role"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let host = &c["HostConfig"];
        assert_eq!(host["NetworkMode"], "none", "{role}");
        crate::support::assert_no_capabilities_and_no_new_privileges(host, &role);
        assert_eq!(host["ReadonlyRootfs"], true, "{role}");
        assert_ne!(
            c["Config"]["User"], "",
            "{role} must not run as the image default"
        );
        let binds: Vec<String> = c["Mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .filter(|m| m["Type"] == "bind")
            .map(|m| m["Source"].as_str().unwrap_or("").to_string())
            .collect();
        if role == "base-skill" {
            // The workspace, and its protected paths (read-only) inside it: nothing else.
            assert!(binds.contains(&workspace.display().to_string()), "{role}");
            assert!(
                binds
                    .iter()
                    .all(|b| std::path::Path::new(b).starts_with(&workspace)),
                "{role}: {binds:?}"
            );
            // The invoking user, as the engine maps it (0:0 inside a rootless engine).
            let (uid, gid) = crate::support::base_skill_user_inside((
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ));
            assert_eq!(c["Config"]["User"], format!("{uid}:{gid}"));
        } else {
            assert!(binds.is_empty(), "{role} must see no host path: {binds:?}");
        }
        // Nobody gets the Docker socket.
        assert!(!c["Mounts"].to_string().contains("docker.sock"), "{role}");
    }
}
