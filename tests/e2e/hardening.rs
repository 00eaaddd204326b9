//! Hardening, limits, signals and exit codes, against the real engine: every container a run
//! makes carries every hardening setting; programs that try to take the machine are held by the
//! limits; a workspace that would expose the host is refused; Ctrl-C stops gracefully once and
//! at once the second time; `--timeout` bounds the whole run and `--generation-timeout` each
//! generation; each ending has its exit code.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::registry::registry_vars;
use crate::support::{
    Finished, TestRun, finished, read_stderr_until, read_until, require_bookworm_image,
    require_docker, under_gvisor,
};

/// Sends `signal` to the controller.
fn send(child: &std::process::Child, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("signal");
}

/// `docker inspect` of every container of the run's job, running or not.
fn inspect_job(run: &TestRun) -> Vec<Value> {
    let ids = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
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
    assert!(!ids.is_empty(), "the run has no containers");
    let out = std::process::Command::new("docker")
        .arg("inspect")
        .args(&ids)
        .output()
        .expect("docker inspect");
    serde_json::from_slice(&out.stdout).expect("inspect JSON")
}

/// The uid:gid base-skill must run as: the invoking user, or — when the tests run as root —
/// the owner the test gives the workspace, since base-skill never runs as root when someone
/// else owns the workspace.
fn workspace_owner(run: &TestRun) -> String {
    if nix::unistd::getuid().is_root() {
        nix::unistd::chown(
            run.workspace.path(),
            Some(nix::unistd::Uid::from_raw(1000)),
            Some(nix::unistd::Gid::from_raw(1000)),
        )
        .expect("chown the workspace");
    }
    let meta = std::fs::metadata(run.workspace.path()).expect("workspace");
    format!("{}:{}", meta.uid(), meta.gid())
}

#[test]
fn every_container_of_a_run_is_hardened_with_the_limits_asked_for() {
    if !require_docker() {
        return;
    }
    let run = TestRun::templated("e2e/hardening", "hardened", &registry_vars())
        .arg("--memory")
        .arg("256m")
        .arg("--cpus")
        .arg("0.5")
        .arg("--pids")
        .arg("100");
    let base_skill_user = workspace_owner(&run);
    let mut child = run.spawn();
    // The sleep call is under way: every container of the run exists.
    read_until(&mut child, "\"callTools\"", Duration::from_secs(180));
    let containers = inspect_job(&run);
    let workspace = std::fs::canonicalize(run.workspace.path()).expect("workspace");

    let mut roles: Vec<String> = containers
        .iter()
        .map(|c| {
            c["Config"]["Labels"]["io.perstack.sandbox.role"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        ["base-skill", "egress-proxy", "runtime", "skill", "skill"]
    );
    for c in &containers {
        let name = c["Name"].as_str().unwrap_or("?");
        let role = c["Config"]["Labels"]["io.perstack.sandbox.role"]
            .as_str()
            .unwrap_or("?");
        let host = &c["HostConfig"];
        crate::support::assert_no_capabilities_and_no_new_privileges(host, name);
        assert_eq!(host["Privileged"], false, "{name}");
        assert_eq!(host["ReadonlyRootfs"], true, "{name}");
        assert!(
            host["Tmpfs"]["/tmp"].as_str().is_some(),
            "{name} has a writable /tmp: {}",
            host["Tmpfs"]
        );
        assert_eq!(host["Memory"], 256 << 20, "{name}");
        assert_eq!(host["MemorySwap"], 256 << 20, "{name}: no swap");
        assert_eq!(host["NanoCpus"], 500_000_000, "{name}");
        assert_eq!(host["PidsLimit"], 100, "{name}");
        assert!(
            host["Devices"].is_null() || host["Devices"] == serde_json::json!([]),
            "{name}"
        );
        for namespace in ["NetworkMode", "PidMode", "IpcMode", "UTSMode"] {
            assert_ne!(host[namespace], "host", "{name}: {namespace}");
        }

        let user = c["Config"]["User"].as_str().unwrap_or("");
        let uid = user.split(':').next().unwrap_or("");
        assert!(
            !uid.is_empty() && uid != "0" && uid != "root",
            "{name} runs as `{user}`"
        );

        let mounts = c["Mounts"].as_array().expect("mounts");
        let binds: Vec<&str> = mounts
            .iter()
            .filter(|m| m["Type"] == "bind")
            .map(|m| m["Source"].as_str().unwrap_or(""))
            .collect();
        assert!(
            !c["Mounts"].to_string().contains("docker.sock"),
            "{name} must not see the Docker socket"
        );
        match role {
            "base-skill" => {
                // The workspace, and its protected paths (read-only) inside it: nothing else.
                assert!(
                    binds.contains(&workspace.display().to_string().as_str()),
                    "{name}"
                );
                assert!(
                    binds
                        .iter()
                        .all(|b| std::path::Path::new(b).starts_with(&workspace)),
                    "{name}: {binds:?}"
                );
                assert_eq!(user, base_skill_user, "{name}");
                assert_eq!(host["NetworkMode"], "none", "{name}");
            }
            _ => assert!(binds.is_empty(), "{name} must see no host path: {binds:?}"),
        }
    }
    // The skill without allowedDomains has no network; the one with it only its own internal
    // network, through the proxy.
    let skill = |skill: &str| {
        containers
            .iter()
            .find(|c| c["Config"]["Labels"]["io.perstack.sandbox.service"] == skill)
            .unwrap_or_else(|| panic!("no {skill}"))
    };
    assert_eq!(skill("skill:offline")["HostConfig"]["NetworkMode"], "none");
    // The networks it is on (Podman's inspect says `bridge` as NetworkMode of any bridge).
    let online: Vec<&String> = skill("skill:online")["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert!(
        online.len() == 1 && online[0].contains("-net-"),
        "{online:?}"
    );

    send(&child, Signal::SIGTERM);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(143));
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    // The job store writes into the workspace as the same user as base-skill.
    let perstack = run.workspace.path().join("perstack");
    for path in [
        perstack.clone(),
        perstack
            .join("jobs")
            .join(&run.guard.job_id)
            .join("job.json"),
    ] {
        let meta = std::fs::metadata(&path).expect("stored");
        assert_eq!(
            format!("{}:{}", meta.uid(), meta.gid()),
            base_skill_user,
            "{}",
            path.display()
        );
    }
}

#[test]
fn a_fork_bomb_in_exec_is_held_by_the_pids_limit_and_the_run_goes_on() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new("e2e/limits/perstack.toml", "bomb")
        .arg("--pids")
        .arg("64")
        .arg("--cpus")
        .arg("1");
    let done = run.run();
    done.assert_code(0);
    let results: Vec<String> = done
        .tool_results("exec")
        .iter()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<String>()
        })
        .collect();
    assert_eq!(results.len(), 2, "{}", done.stdout);
    // The bomb hit the limit: forks failed, and exec's timeout ended what it had made.
    assert!(
        results[0].contains("Resource temporarily unavailable")
            && results[0].contains("timed out after 5000ms"),
        "{}",
        results[0]
    );
    // The same container answers the next call, held at 64 processes, with the bomb gone: by
    // the host's pids cgroup under runc, by the sandbox kernel's RLIMIT_NPROC under gVisor
    // (engine/process_limit.rs), whose host cgroup counts the Sentry's threads instead.
    let held_by = match under_gvisor() {
        true => "nproc=64",
        false => "pids.max=64",
    };
    assert!(results[1].contains(held_by), "{}", results[1]);
    let processes: u32 = results[1]
        .split("processes=")
        .nth(1)
        .and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no process count in {}", results[1]));
    assert!(processes < 10, "{processes} processes left: {}", results[1]);
    assert_eq!(done.of_type("completeRun")[0]["text"], "Contained.");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_memory_hog_is_killed_at_the_memory_limit_and_reported_in_its_tool_result() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new("e2e/limits/perstack.toml", "hog")
        .arg("--memory")
        .arg("128m");
    let done = run.run();
    done.assert_code(0);
    let results = done.tool_results("exec");
    assert_eq!(results.len(), 2, "{}", done.stdout);
    let hog = results[0]
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<String>();
    assert!(
        hog.contains("Killed by SIGKILL: the command most likely ran out of memory"),
        "{hog}"
    );
    assert!(
        !hog.contains("1073741824"),
        "the allocation succeeded: {hog}"
    );
    // Only the hog died: base-skill serves the next call and the run completes.
    assert!(
        results[1]
            .iter()
            .filter_map(|p| p["text"].as_str())
            .any(|t| t.contains("still serving")),
        "{:?}",
        results[1]
    );
    assert_eq!(done.of_type("completeRun")[0]["text"], "Survived.");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// A run whose workspace argument is `workspace`: refused before anything starts.
fn refused_workspace(workspace: &Path) -> Finished {
    let run = TestRun::new("e2e/isolation/perstack.toml", "isolation")
        .host_env("FIXTURE_TOKEN", "x")
        .workspace_arg(workspace.to_str().expect("utf-8 path"));
    let done = run.run();
    done.assert_code(2);
    assert!(done.stdout.is_empty(), "nothing may start: {}", done.stdout);
    done
}

#[test]
fn a_workspace_with_dot_dot_a_newline_or_a_symlink_to_the_root_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("project");
    std::fs::create_dir(&project).expect("mkdir");

    let done = refused_workspace(&project.join("..").join("project"));
    assert!(done.stderr.contains("contains `..`"), "{}", done.stderr);

    let newline = dir.path().join("evil\nname");
    std::fs::create_dir(&newline).expect("mkdir");
    let done = refused_workspace(&newline);
    assert!(
        done.stderr.contains("contains a control character"),
        "{}",
        done.stderr
    );

    let to_root = dir.path().join("looks-like-a-project");
    std::os::unix::fs::symlink("/", &to_root).expect("symlink");
    let done = refused_workspace(&to_root);
    assert!(
        done.stderr.contains(&format!(
            "workspace {} (it resolves to /) would give the workspace tools read-write access",
            to_root.display()
        )),
        "{}",
        done.stderr
    );
    // Nothing was written through the link either.
    assert!(!project.join("perstack").exists());
}

#[test]
fn an_unreachable_docker_engine_exits_5_naming_where_we_looked() {
    let run = TestRun::new("e2e/isolation/perstack.toml", "isolation")
        .host_env("FIXTURE_TOKEN", "x")
        .host_env("DOCKER_HOST", "unix:///nonexistent.sock");
    let done = run.run();
    done.assert_code(5);
    assert!(
        done.stderr.contains("no Docker engine answered")
            && done
                .stderr
                .contains("unix:///nonexistent.sock (DOCKER_HOST is set)"),
        "{}",
        done.stderr
    );
}

#[test]
fn a_bad_limit_flag_is_a_usage_error() {
    let run = TestRun::new("e2e/isolation/perstack.toml", "isolation")
        .host_env("FIXTURE_TOKEN", "x")
        .arg("--memory")
        .arg("1m");
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stderr
            .contains("\"1m\" is below Docker's minimum memory limit of 6m"),
        "{}",
        done.stderr
    );
}

fn job_json(run: &TestRun) -> Value {
    let path = run
        .workspace
        .path()
        .join("perstack/jobs")
        .join(&run.guard.job_id)
        .join("job.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("job.json")).expect("JSON")
}

#[test]
fn the_first_ctrl_c_finishes_the_step_under_way_keeps_its_checkpoint_and_continue_resumes() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/jobs/perstack.toml", "jobs").host_env("JOBS_TOKEN", "t");
    let mut child = run.spawn();
    // Step 1 is done; step 2's generation takes 4 s: interrupt it.
    let mut seen = read_until(
        &mut child,
        "\"continueToNextStep\"",
        Duration::from_secs(180),
    );
    send(&child, Signal::SIGINT);
    let out = child.wait_with_output().expect("wait");
    seen.extend_from_slice(&out.stdout);
    let first = finished(out.status.code(), seen, out.stderr);
    first.assert_code(130);
    assert!(
        first
            .stderr
            .contains("the run stops after the step under way"),
        "{}",
        first.stderr
    );
    // Step 2 finished, then the run stopped instead of starting step 3.
    let types = first.run_event_types();
    assert!(types.contains(&"finishToolCall@2".to_string()), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("stopRunByError@2"));
    let stop = &first.of_type("stopRunByError")[0];
    assert_eq!(stop["error"]["name"], "Interrupted");
    assert_eq!(stop["checkpoint"]["stepNumber"], 2);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    assert_eq!(job_json(&run)["status"], "stoppedByError");
    assert_eq!(job_json(&run)["totalSteps"], 2);

    // --continue picks up at step 3 and completes.
    let again = run.run_with(&["--continue"]);
    again.assert_code(0);
    let types = again.run_event_types();
    assert_eq!(types.first().map(String::as_str), Some("startRun@3"));
    assert_eq!(types.last().map(String::as_str), Some("completeRun@3"));
    assert_eq!(again.of_type("completeRun")[0]["text"], "Jobs done.");
    assert_eq!(job_json(&run)["status"], "completed");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_second_ctrl_c_stops_at_once() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/slow/perstack.toml", "slow");
    let mut child = run.spawn();
    // The minute-long sleep call is under way.
    let mut seen = read_until(&mut child, "\"callTools\"", Duration::from_secs(180));
    send(&child, Signal::SIGINT);
    let mut stderr = read_stderr_until(
        &mut child,
        "press Ctrl-C again to stop at once",
        Duration::from_secs(30),
    );
    send(&child, Signal::SIGINT);
    let out = child.wait_with_output().expect("wait");
    seen.extend_from_slice(&out.stdout);
    stderr.extend_from_slice(&out.stderr);
    let done = finished(out.status.code(), seen, stderr);
    done.assert_code(130);
    assert!(
        done.stderr.contains("interrupted again: stopping at once"),
        "{}",
        done.stderr
    );
    // The step under way was abandoned: its sleep never returned.
    assert!(
        done.of_type("resolveToolResults").is_empty(),
        "{}",
        done.stdout
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn timeout_bounds_the_whole_run() {
    if !require_docker() {
        return;
    }
    // Per generation the mock is instant and the tool call is not a generation: only the
    // whole-run bound can stop this minute-long sleep.
    let run = TestRun::new("e2e/slow/perstack.toml", "slow")
        .arg("--timeout")
        .arg("20s");
    let done = run.run();
    done.assert_code(124);
    assert!(
        done.stderr.contains("the run did not finish within 20s"),
        "{}",
        done.stderr
    );
    assert!(
        done.of_type("resolveToolResults").is_empty(),
        "{}",
        done.stdout
    );
    // No generation may outlive the run either.
    assert_eq!(done.of_type("initializeRuntime")[0]["timeout"], 20_000);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn generation_timeout_bounds_each_generation() {
    if !require_docker() {
        return;
    }
    // Step 1's generation is instant, step 2's takes 4 s: a one-second --generation-timeout
    // fails only the second, however much time the whole run would still have.
    let run = TestRun::new("e2e/jobs/perstack.toml", "jobs")
        .host_env("JOBS_TOKEN", "t")
        .arg("--generation-timeout")
        .arg("1000")
        .arg("--max-retries")
        .arg("0");
    let done = run.run();
    done.assert_code(1);
    let types = done.run_event_types();
    assert!(types.contains(&"finishToolCall@1".to_string()), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("stopRunByError@2"));
    let stop = &done.of_type("stopRunByError")[0];
    assert_eq!(stop["error"]["name"], "TimeoutError");
    assert_eq!(
        stop["error"]["message"],
        "generation timed out after 1000 ms"
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}
