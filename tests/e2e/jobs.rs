//! Jobs and checkpoints on the host: what a run leaves in `<workspace>/perstack/jobs/`, and
//! continuing a job (`--continue`, `--continue-job`, `--resume-from`) in a fresh runtime
//! container. The usage errors need no Docker; the rest runs through the real engine.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Finished, TestRun, finished, read_json, require_docker};

const JOBS_TOKEN: &str = "jobs-token-must-not-be-stored";
const PROVIDER_KEY: &str = "sk-ant-must-not-be-stored";
const PERSTACK_KEY: &str = "perstack-key-must-not-be-stored";

/// The three-step Expert, with a skill secret, a provider key passed to the runtime and a
/// Perstack API key in the environment: none of them may end up in a stored file.
fn jobs_run() -> TestRun {
    TestRun::new("e2e/jobs/perstack.toml", "jobs")
        .host_env("JOBS_TOKEN", JOBS_TOKEN)
        .host_env("ANTHROPIC_API_KEY", PROVIDER_KEY)
        .host_env("PERSTACK_API_KEY", PERSTACK_KEY)
        .arg("--env")
        .arg("ANTHROPIC_API_KEY")
}

fn job_dir(run: &TestRun) -> PathBuf {
    run.workspace
        .path()
        .join("perstack/jobs")
        .join(&run.guard.job_id)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The run events (those with an `expertKey`) of a finished run, as written on stdout.
fn run_event_lines(done: &Finished) -> Vec<&str> {
    done.stdout
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .map(|v| v.get("expertKey").is_some())
                .unwrap_or(false)
        })
        .collect()
}

/// The ids of the checkpoints the run's events carried in `checkpoint`.
fn checkpoint_ids(done: &Finished) -> Vec<String> {
    let mut ids: Vec<String> = done
        .events
        .iter()
        .filter_map(|e| e.get("checkpoint"))
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// The one `runId` of the coordinator's run events.
fn run_id(done: &Finished) -> String {
    let ids: std::collections::BTreeSet<&str> = done
        .events
        .iter()
        .filter(|e| e.get("expertKey").is_some())
        .filter_map(|e| e["runId"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids.into_iter().next().unwrap_or_default().to_string()
}

#[test]
fn a_run_is_stored_in_its_workspace_with_perstacks_layout_and_no_secret() {
    if !require_docker() {
        return;
    }
    let run = jobs_run();
    let done = run.run();
    done.assert_code(0);
    let job_id = &run.guard.job_id;
    let run_id = run_id(&done);
    let dir = job_dir(&run);
    assert_eq!(names(&dir), ["checkpoints", "job.json", "runs"]);

    // job.json: pretty JSON, the job completed by its coordinator after three steps.
    let text = std::fs::read_to_string(dir.join("job.json")).expect("job.json");
    assert!(text.starts_with("{\n  \"id\": "), "{text}");
    let job = read_json(&dir.join("job.json"));
    assert_eq!(job["id"], job_id.as_str());
    assert_eq!(job["status"], "completed");
    assert_eq!(job["coordinatorExpertKey"], "jobs");
    assert_eq!(job["totalSteps"], 3);
    assert!(job["startedAt"].as_u64() <= job["finishedAt"].as_u64());
    let last_checkpoint = &done.of_type("completeRun")[0]["checkpoint"];
    assert_eq!(job["usage"], last_checkpoint["usage"]);

    // One run, with its setting: what it was asked and the names — never the values — of the
    // variables that went into its containers.
    assert_eq!(names(&dir.join("runs")), std::slice::from_ref(&run_id));
    let run_dir = dir.join("runs").join(&run_id);
    let setting = read_json(&run_dir.join("run-setting.json"));
    assert_eq!(setting["jobId"], job_id.as_str());
    assert_eq!(setting["runId"], run_id.as_str());
    assert_eq!(setting["expertKey"], "jobs");
    assert_eq!(setting["input"], serde_json::json!({"text": "go"}));
    assert_eq!(setting["model"], "mock-model");
    assert_eq!(setting["providerConfig"]["providerName"], "mock");
    assert_eq!(setting["perstackApiKey"], "[redacted]");
    assert_eq!(
        setting["env"],
        serde_json::json!({"ANTHROPIC_API_KEY": "[redacted]", "JOBS_TOKEN": "[redacted]"})
    );
    assert!(setting["experts"]["jobs"].is_object());

    // Every run event is in its own file, exactly as it was written on stdout; runtime events
    // are not stored.
    let mut stored: Vec<String> = names(&run_dir)
        .into_iter()
        .filter(|n| n != "run-setting.json")
        .map(|n| {
            let path = run_dir.join(&n);
            let event: Value = read_json(&path);
            // `event-<ms>-<step>-<type>.json`; two events of one type, step and millisecond
            // (streamed deltas) cannot share a name, so the later takes the next free
            // millisecond: the name's time is the event's, or a few ms after it.
            let suffix = format!(
                "-{}-{}.json",
                event["stepNumber"],
                event["type"].as_str().unwrap_or("")
            );
            let named_ms: u64 = n
                .strip_prefix("event-")
                .and_then(|rest| rest.strip_suffix(&suffix))
                .and_then(|ms| ms.parse().ok())
                .unwrap_or_else(|| panic!("file name of {n} does not end in {suffix}"));
            let event_ms = event["timestamp"].as_u64().expect("timestamp");
            assert!(
                (event_ms..event_ms + 50).contains(&named_ms),
                "file name of {n}: event at {event_ms}"
            );
            std::fs::read_to_string(path).expect("event file")
        })
        .collect();
    let mut relayed: Vec<String> = run_event_lines(&done)
        .into_iter()
        .map(str::to_string)
        .collect();
    stored.sort();
    relayed.sort();
    assert_eq!(stored.len(), relayed.len());
    assert_eq!(stored, relayed);

    // Every checkpoint an event carried, by its id.
    let checkpoints: Vec<String> = names(&dir.join("checkpoints"))
        .into_iter()
        .map(|n| n.trim_end_matches(".json").to_string())
        .collect();
    assert_eq!(checkpoints, checkpoint_ids(&done));
    assert_eq!(
        checkpoints.len(),
        3,
        "two continueToNextStep and completeRun"
    );

    // No secret in any stored file; every file belongs to the invoking user.
    for path in files_below(&run.workspace.path().join("perstack")) {
        let text = std::fs::read_to_string(&path).expect("read");
        for secret in [JOBS_TOKEN, PROVIDER_KEY, PERSTACK_KEY] {
            assert!(!text.contains(secret), "{secret} in {}", path.display());
        }
        let meta = std::fs::metadata(&path).expect("metadata");
        assert_eq!(
            meta.uid(),
            nix::unistd::getuid().as_raw(),
            "{}",
            path.display()
        );
    }
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// The runtime container of the test's job, once it runs.
fn runtime_container(run: &TestRun) -> Option<String> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter"])
        .arg(format!(
            "label=io.perstack.sandbox.job-id={}",
            run.guard.job_id
        ))
        .args(["--filter", "label=io.perstack.sandbox.role=runtime"])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

/// Starts `run`, waits until a stored checkpoint satisfies `ready`, kills the runtime container
/// and gives what the controller did.
fn kill_runtime_once(run: &TestRun, ready: impl Fn(&Value) -> bool) -> Finished {
    let child = run.spawn();
    let checkpoints = job_dir(run).join("checkpoints");
    let started = Instant::now();
    let is_ready = || {
        checkpoints.is_dir()
            && names(&checkpoints)
                .iter()
                .filter(|n| !n.starts_with('.'))
                .filter_map(|n| std::fs::read_to_string(checkpoints.join(n)).ok())
                .filter_map(|text| serde_json::from_str::<Value>(&text).ok())
                .any(|c| ready(&c))
    };
    while !is_ready() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "no such checkpoint was stored"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let runtime = runtime_container(run).expect("the runtime container runs");
    let killed = Command::new("docker")
        .args(["kill", &runtime])
        .output()
        .expect("docker kill");
    assert!(killed.status.success());
    let out = child.wait_with_output().expect("wait");
    finished(out.status.code(), out.stdout, out.stderr)
}

#[test]
fn a_run_whose_runtime_is_killed_fails_leaves_nothing_and_continues_from_its_last_checkpoint() {
    if !require_docker() {
        return;
    }
    let run = jobs_run();
    // Step 1's checkpoint is stored as step 2's slow generation begins: kill the runtime then.
    let first = kill_runtime_once(&run, |_| true);
    first.assert_code(1);
    assert!(
        first
            .stderr
            .contains("the runtime container exited with code 137"),
        "{}",
        first.stderr
    );
    assert!(first.of_type("completeRun").is_empty());
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    let job = read_json(&job_dir(&run).join("job.json"));
    assert_eq!(job["status"], "stoppedByError");
    assert_eq!(
        job["totalSteps"], 1,
        "the last stored checkpoint is step 1's"
    );

    // --continue finds the job of the latest run and hands its last checkpoint to a new runtime.
    let again = run.run_with(&["--continue"]);
    again.assert_code(0);
    let types = again.run_event_types();
    assert_eq!(types.first().map(String::as_str), Some("startRun@2"));
    assert_eq!(types.last().map(String::as_str), Some("completeRun@3"));
    assert!(
        !types.iter().any(|t| t.ends_with("@1")),
        "step 1 is not redone: {types:?}"
    );
    let start = &again.of_type("startRun")[0];
    assert_eq!(start["initialCheckpoint"]["stepNumber"], 2);
    assert_eq!(again.of_type("completeRun")[0]["text"], "Jobs done.");
    // Same job, new run.
    assert!(
        again
            .events
            .iter()
            .all(|e| e["jobId"] == run.guard.job_id.as_str())
    );
    assert_ne!(run_id(&again), run_id(&first));

    let job = read_json(&job_dir(&run).join("job.json"));
    assert_eq!(job["status"], "completed");
    assert_eq!(job["totalSteps"], 3);
    assert_eq!(names(&job_dir(&run).join("runs")).len(), 2);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn continue_job_with_resume_from_continues_from_the_chosen_checkpoint() {
    if !require_docker() {
        return;
    }
    let run = jobs_run();
    let first = run.run();
    first.assert_code(0);
    // The checkpoint of step 2, not the job's last one (step 3, completed).
    let step_two = first
        .of_type("continueToNextStep")
        .iter()
        .map(|e| &e["checkpoint"])
        .find(|c| c["stepNumber"] == 2)
        .and_then(|c| c["id"].as_str())
        .expect("step 2's checkpoint")
        .to_string();

    let again = run.run_with(&[
        "--continue-job",
        &run.guard.job_id,
        "--resume-from",
        &step_two,
    ]);
    again.assert_code(0);
    let types = again.run_event_types();
    assert_eq!(types.first().map(String::as_str), Some("startRun@3"));
    assert_eq!(types.last().map(String::as_str), Some("completeRun@3"));
    let start = &again.of_type("startRun")[0];
    assert_ne!(start["initialCheckpoint"]["id"], step_two.as_str());
    assert_eq!(again.of_type("completeRun")[0]["text"], "Jobs done.");
    assert!(
        again
            .events
            .iter()
            .all(|e| e["jobId"] == run.guard.job_id.as_str())
    );
    assert_ne!(run_id(&again), run_id(&first));
    assert_eq!(names(&job_dir(&run).join("runs")).len(), 2);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_run_stopped_by_an_interactive_tool_is_answered_with_i() {
    if !require_docker() {
        return;
    }
    let mut run = TestRun::new("e2e/interactive/perstack.toml", "painter");
    run.run().assert_code(4);
    let job = read_json(&job_dir(&run).join("job.json"));
    assert_eq!(job["status"], "stoppedByInteractiveTool");

    // Continuing without the answer is refused before anything starts.
    let refused = run.run_with(&["--continue"]);
    refused.assert_code(2);
    assert!(
        refused
            .stderr
            .contains("waits for the answer to `askColour`"),
        "{}",
        refused.stderr
    );

    // The query is the answer to the pending call, found in the checkpoint.
    run.query = "blue".to_string();
    let answered = run.run_with(&["--continue", "-i"]);
    answered.assert_code(0);
    assert_eq!(
        answered.of_type("completeRun")[0]["text"],
        "Painted it as asked."
    );
    assert_eq!(
        answered.of_type("startRun")[0]["stepNumber"],
        2,
        "steps go on"
    );
    let runs = names(&job_dir(&run).join("runs"));
    let answered_run = run_id(&answered);
    assert!(runs.contains(&answered_run), "{runs:?}");
    let setting = read_json(
        &job_dir(&run)
            .join("runs")
            .join(&answered_run)
            .join("run-setting.json"),
    );
    assert_eq!(
        setting["input"],
        serde_json::json!({"interactiveToolCallResult": {
            "toolCallId": "ask-colour-1", "toolName": "askColour", "skillName": "user", "text": "blue"
        }})
    );
    // The segment says what it starts with, the answered call's skill included.
    assert_eq!(
        answered.of_type("initializeRuntime")[0]["interactiveToolCall"],
        serde_json::json!({
            "toolName": "askColour", "toolCallId": "ask-colour-1", "skillName": "user", "text": "blue"
        })
    );
    // An interactive tool's schema is stored as the JSON text Perstack's RunSetting requires.
    let schema =
        &setting["experts"]["painter"]["skills"]["user"]["tools"]["askColour"]["inputJsonSchema"];
    let parsed: serde_json::Value =
        serde_json::from_str(schema.as_str().expect("a JSON string")).expect("JSON text");
    assert_eq!(parsed["required"], serde_json::json!(["question"]));
    let job = read_json(&job_dir(&run).join("job.json"));
    assert_eq!(job["status"], "completed");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn each_run_of_a_delegating_job_is_stored_under_its_own_run_id() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/delegation/perstack.toml", "lead");
    let done = run.run();
    done.assert_code(0);
    let dir = job_dir(&run);
    let mut by_run: std::collections::BTreeMap<String, usize> = Default::default();
    for event in done.events.iter().filter(|e| e.get("expertKey").is_some()) {
        *by_run
            .entry(event["runId"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    assert!(by_run.len() >= 4, "lead and three delegates: {by_run:?}");
    assert_eq!(
        names(&dir.join("runs")),
        by_run.keys().cloned().collect::<Vec<_>>()
    );
    for (run_id, count) in &by_run {
        let files = names(&dir.join("runs").join(run_id));
        let events = files.iter().filter(|n| n.starts_with("event-")).count();
        assert_eq!(events, *count, "events of run {run_id}");
    }
    let checkpoints: Vec<String> = names(&dir.join("checkpoints"))
        .into_iter()
        .map(|n| n.trim_end_matches(".json").to_string())
        .collect();
    assert_eq!(checkpoints, checkpoint_ids(&done));
    let job = read_json(&dir.join("job.json"));
    assert_eq!(job["coordinatorExpertKey"], "lead");
    assert_eq!(job["status"], "completed");
    assert_eq!(job["totalSteps"], 8);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_run_killed_while_its_delegate_works_continues_from_the_coordinators_checkpoint() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/jobs-delegation/perstack.toml", "boss");
    // Kill once the helper has a checkpoint of its own, at a later step than the boss's.
    let first = kill_runtime_once(&run, |c| c["expert"]["key"] == "helper");
    first.assert_code(1);
    assert!(first.of_type("completeRun").is_empty());
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());

    let again = run.run_with(&["--continue"]);
    again.assert_code(0);
    // The boss resumes from its stopRunByDelegate checkpoint and the helper works again.
    let starts: Vec<(String, String)> = again
        .of_type("startRun")
        .iter()
        .map(|e| {
            (
                e["expertKey"].as_str().unwrap_or("").to_string(),
                e["initialCheckpoint"]["status"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(starts.first().map(|s| s.0.as_str()), Some("boss"));
    assert!(
        starts
            .iter()
            .any(|(key, status)| key == "helper" && status == "init"),
        "{starts:?}"
    );
    let done: Vec<&Value> = again
        .of_type("completeRun")
        .into_iter()
        .filter(|e| e["expertKey"] == "boss")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["text"], "All done with help.");
    let job = read_json(&job_dir(&run).join("job.json"));
    assert_eq!(job["status"], "completed");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

// ---- usage errors: nothing starts ----

fn usage_error(run: &TestRun, extra: &[&str]) -> String {
    let done = run.run_with(extra);
    done.assert_code(2);
    assert!(done.stdout.is_empty(), "nothing may be emitted");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    done.stderr
}

#[test]
fn resume_from_needs_continue_job_and_exits_1_as_in_perstack() {
    let run = jobs_run();
    let refused = |extra: &[&str]| {
        let done = run.run_with(extra);
        // Perstack's CLI tests expect 1 here; every other usage error is 2.
        done.assert_code(1);
        assert!(done.stdout.is_empty(), "nothing may be emitted");
        assert_eq!(run.guard.leftovers(), Vec::<String>::new());
        done.stderr
    };
    insta::assert_snapshot!(
        "resume_from_needs_continue_job",
        refused(&["--resume-from", "cp1"])
    );
    insta::assert_snapshot!(
        "resume_from_with_continue",
        refused(&["--continue", "--resume-from", "cp1"])
    );
}

#[test]
fn an_interactive_answer_needs_a_run_to_continue() {
    let run = jobs_run();
    insta::assert_snapshot!(usage_error(&run, &["-i"]));
}

#[test]
fn continue_and_continue_job_exclude_each_other() {
    let run = jobs_run();
    insta::assert_snapshot!(usage_error(&run, &["--continue", "--continue-job", "j1"]));
}

#[test]
fn continuing_in_a_workspace_without_jobs_finds_no_checkpoint() {
    let run = jobs_run();
    let stderr = usage_error(&run, &["--continue"]);
    insta::with_settings!({filters => vec![(r"/\S*/perstack/jobs", "[WORKSPACE]/perstack/jobs")]}, {
        insta::assert_snapshot!(stderr);
    });
}

#[test]
fn a_checkpoint_of_another_expert_is_refused_before_anything_starts() {
    let run = jobs_run();
    let checkpoints = job_dir(&run).join("checkpoints");
    std::fs::create_dir_all(&checkpoints).expect("mkdir");
    let checkpoint = serde_json::json!({
        "id": "cp-other", "jobId": run.guard.job_id, "runId": "r0", "status": "proceeding",
        "stepNumber": 1, "messages": [],
        "expert": {"key": "other", "name": "other", "version": "1.0.0"},
        "usage": {"inputTokens": 0, "outputTokens": 0, "reasoningTokens": 0, "totalTokens": 0, "cachedInputTokens": 0}
    });
    std::fs::write(checkpoints.join("cp-other.json"), checkpoint.to_string()).expect("write");
    let job_id = run.guard.job_id.clone();
    insta::assert_snapshot!(usage_error(
        &run,
        &["--continue-job", &job_id, "--resume-from", "cp-other"]
    ));
}

#[test]
fn a_job_id_that_is_not_a_folder_name_is_refused() {
    let mut run = jobs_run();
    run.guard.job_id = "../outside".to_string();
    let stderr = usage_error(&run, &[]);
    assert!(
        stderr.contains("--job-id ../outside: a job id is a folder name"),
        "{stderr}"
    );
    assert!(!run.workspace.path().join("perstack").exists());
}
