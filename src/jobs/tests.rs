//! The job store as a spec: layout, listing order, recording a run, and which checkpoint a
//! continuation starts from.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::event::Event;
use crate::files::Owner;
use crate::jobs::job::JobStatus;

const USAGE: &str = r#"{"inputTokens":0,"outputTokens":0,"reasoningTokens":0,"totalTokens":0,"cachedInputTokens":0}"#;

fn usage(total: u64) -> Value {
    json!({"inputTokens": total, "outputTokens": 0, "reasoningTokens": 0, "totalTokens": total, "cachedInputTokens": 0})
}

fn checkpoint(id: &str, job: &str, run: &str, expert: &str, step: u32, status: &str) -> Value {
    json!({
        "id": id, "jobId": job, "runId": run, "status": status, "stepNumber": step,
        "messages": [],
        "expert": {"key": expert, "name": expert, "version": "1.0.0"},
        "usage": usage(u64::from(step) * 10),
    })
}

fn store(dir: &Path) -> JobStore {
    JobStore::open(dir, Owner::process()).expect("open the store")
}

fn step(n: u32) -> Value {
    json!({"stepNumber": n, "newMessages": [], "usage": serde_json::from_str::<Value>(USAGE).expect("usage"), "startedAt": 1})
}

/// A run event line as the runtime writes it: header keys first, then the payload.
fn line(kind: &str, expert: &str, run: &str, step: u32, ts: u64, payload: Value) -> String {
    let mut event = json!({
        "type": kind, "id": crate::ids::new_id(), "expertKey": expert, "timestamp": ts,
        "jobId": "j1", "runId": run, "stepNumber": step,
    });
    if let (Some(map), Value::Object(extra)) = (event.as_object_mut(), payload) {
        map.extend(extra);
    }
    event.to_string()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn write_checkpoint(store: &JobStore, value: &Value) {
    let job = value["jobId"].as_str().expect("jobId");
    store
        .write_checkpoint(job, value)
        .expect("write checkpoint");
}

fn setting(job: &str, run: &str, expert: &str, now: u64) -> RunSetting {
    let config = crate::config::load_str(
        Path::new("/p/perstack.toml"),
        &format!("[experts.{expert}]\ninstruction = \"Work.\"\n"),
    )
    .expect("valid")
    .config;
    RunSetting::new(RunSettingSource {
        config: &config,
        settings: &crate::config::RunSettings {
            provider: crate::config::ProviderName::Mock,
            model: "mock-model".into(),
            max_steps: 10,
            max_retries: 1,
            timeout_ms: 1000,
            reasoning_budget: None,
        },
        job_id: job,
        run_id: run,
        expert_key: expert,
        closure: &[expert.to_string()],
        input: RunInput {
            text: Some("go".into()),
            interactive_tool_call_result: None,
        },
        env: &Default::default(),
        runtime_env: &[],
        verbose: false,
        now,
    })
}

// ---- the store ----

#[test]
fn checkpoints_are_listed_by_step_number_and_unreadable_files_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    for (id, step) in [("c3", 3), ("c1", 1), ("c2", 2)] {
        write_checkpoint(
            &store,
            &checkpoint(id, "j1", "r1", "main", step, "proceeding"),
        );
    }
    std::fs::write(
        store.job_dir("j1").join("checkpoints/broken.json"),
        "{\"id\":",
    )
    .expect("write");
    let ids: Vec<String> = store
        .checkpoints("j1")
        .expect("list")
        .into_iter()
        .map(|c| c.checkpoint.id)
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
}

#[test]
fn jobs_are_listed_newest_first_and_runs_by_their_last_update() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    for (id, started) in [("old", 100), ("new", 300), ("mid", 200)] {
        store
            .write_job(&Job::new(id, "main", 10, started))
            .expect("job");
    }
    std::fs::create_dir_all(store.job_dir("garbage")).expect("mkdir");
    std::fs::write(store.job_dir("garbage").join("job.json"), "not json").expect("write");
    let ids: Vec<String> = store.jobs().into_iter().map(|j| j.id).collect();
    assert_eq!(ids, ["new", "mid", "old"]);

    store
        .store_run_setting(&setting("old", "r-a", "main", 1000))
        .expect("a");
    store
        .store_run_setting(&setting("mid", "r-b", "main", 3000))
        .expect("b");
    store
        .store_run_setting(&setting("old", "r-c", "main", 2000))
        .expect("c");
    let runs: Vec<(String, String)> = store
        .all_runs()
        .expect("list")
        .into_iter()
        .map(|r| (r.job_id, r.run_id))
        .collect();
    assert_eq!(
        runs,
        [
            ("mid".to_string(), "r-b".to_string()),
            ("old".to_string(), "r-c".to_string()),
            ("old".to_string(), "r-a".to_string())
        ]
    );
    let in_old: Vec<String> = store.runs("old").into_iter().map(|r| r.run_id).collect();
    assert_eq!(in_old, ["r-c", "r-a"]);
}

#[test]
fn storing_a_run_setting_again_only_bumps_updated_at() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    store
        .store_run_setting(&setting("j1", "r1", "main", 1000))
        .expect("first");
    let mut changed = setting("j1", "r1", "main", 5000);
    changed.model = "another-model".into();
    store.store_run_setting(&changed).expect("again");
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(store.run_dir("j1", "r1").join("run-setting.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(stored["updatedAt"], 5000);
    assert_eq!(stored["startedAt"], 1000);
    assert_eq!(stored["model"], "mock-model");
}

#[test]
fn ids_that_are_not_plain_names_never_become_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    for bad in ["../escape", "a/b", "", ".hidden", "x\0y"] {
        assert!(
            matches!(
                store.write_event("j1", bad, 1, 1, "startRun", "{}"),
                Err(JobsError::BadId { kind: "run", .. })
            ),
            "{bad:?}"
        );
    }
    let escape = checkpoint("../../../owned", "j1", "r1", "main", 1, "proceeding");
    assert!(matches!(
        store.write_checkpoint("j1", &escape),
        Err(JobsError::BadId {
            kind: "checkpoint",
            ..
        })
    ));
    assert!(matches!(
        store.write_event("j1", "r1", 1, 1, "../x", "{}"),
        Err(JobsError::BadId { .. })
    ));
    assert!(matches!(
        store.read_job("../.."),
        Err(JobsError::BadId { kind: "job", .. })
    ));
    assert!(!dir.path().join("owned.json").exists());
}

#[test]
fn events_in_the_same_millisecond_never_overwrite_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    for delta in ["a", "b", "c"] {
        store
            .write_event("j1", "r1", 1000, 2, "streamRunResult", delta)
            .expect("event");
    }
    let run = store.run_dir("j1", "r1");
    assert_eq!(
        names(&run),
        [
            "event-1000-2-streamRunResult.json",
            "event-1001-2-streamRunResult.json",
            "event-1002-2-streamRunResult.json"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(run.join("event-1001-2-streamRunResult.json")).expect("read"),
        "b"
    );
}

// ---- recording a run ----

#[tokio::test]
async fn a_recorded_run_has_perstacks_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let recorder = Recorder::start(
        store.clone(),
        Job::new("j1", "main", 10, 1),
        &setting("j1", "r1", "main", 1),
    )
    .expect("start");
    // The job exists from the start, running.
    let job: Value = serde_json::from_str(
        &std::fs::read_to_string(store.job_dir("j1").join("job.json")).expect("job.json"),
    )
    .expect("json");
    assert_eq!(job["status"], "running");

    let lines = [
        r#"{"type":"initializeRuntime","id":"x","timestamp":5,"jobId":"j1","runId":"r1","runtimeVersion":"0","expertName":"main","experts":["main"],"model":"m","maxRetries":1,"timeout":1}"#.to_string(),
        line("startGeneration", "main", "r1", 1, 10, json!({"messages": []})),
        line("continueToNextStep", "main", "r1", 1, 20, json!({
            "checkpoint": checkpoint("cp1", "j1", "r1", "main", 1, "proceeding"),
            "step": step(1),
            "nextCheckpoint": checkpoint("cp1-next", "j1", "r1", "main", 2, "proceeding"),
        })),
        // A delegate's run: its own runId and Expert, and its own run setting.
        line("startRun", "helper", "child", 2, 25, json!({
            "initialCheckpoint": checkpoint("cp-child-0", "j1", "child", "helper", 2, "init"),
            "inputMessages": [
                {"type": "instructionMessage", "id": "m1", "contents": [{"type": "textPart", "id": "p1", "text": "You help."}]},
                {"type": "userMessage", "id": "m2", "contents": [{"type": "textPart", "id": "p2", "text": "Help with this"}]},
            ],
        })),
        line("completeRun", "helper", "child", 2, 30, json!({
            "checkpoint": checkpoint("cp-child", "j1", "child", "helper", 2, "completed"),
            "step": step(2), "text": "helped", "usage": usage(1),
        })),
        // The coordinator resumes in a new segment, with nothing new to say.
        line("startRun", "main", "r2", 3, 35, json!({
            "initialCheckpoint": checkpoint("cp2", "j1", "r2", "main", 3, "proceeding"),
            "inputMessages": [],
        })),
        line("streamRunResult", "main", "r1", 3, 40, json!({"delta": "Do"})),
        line("completeRun", "main", "r1", 3, 50, json!({
            "checkpoint": checkpoint("cp3", "j1", "r1", "main", 3, "completed"),
            "step": step(3), "text": "Done", "usage": usage(1),
        })),
    ];
    for l in &lines {
        let event = Event::from_line(l).expect("event");
        recorder.record(l, &event);
    }
    let job = recorder.finish().await.expect("job");

    assert_eq!(names(dir.path()), ["perstack"]);
    assert_eq!(
        names(&store.job_dir("j1")),
        ["checkpoints", "job.json", "runs"]
    );
    // Checkpoints of every run, flat; continueToNextStep stores the finished step's, not the next.
    assert_eq!(
        names(&store.job_dir("j1").join("checkpoints")),
        ["cp-child.json", "cp1.json", "cp3.json"]
    );
    // Run events only, each under its own run.
    assert_eq!(
        names(&store.run_dir("j1", "r1")),
        [
            "event-10-1-startGeneration.json",
            "event-20-1-continueToNextStep.json",
            "event-40-3-streamRunResult.json",
            "event-50-3-completeRun.json",
            "run-setting.json"
        ]
    );
    assert_eq!(
        names(&store.run_dir("j1", "child")),
        [
            "event-25-2-startRun.json",
            "event-30-2-completeRun.json",
            "run-setting.json"
        ]
    );
    // Every segment has its run setting: the controller's, with the segment's run, Expert and
    // query.
    let stored = |run: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(store.run_dir("j1", run).join("run-setting.json"))
                .expect("run-setting.json"),
        )
        .expect("json")
    };
    let (coordinator, child, resumed) = (stored("r1"), stored("child"), stored("r2"));
    assert_eq!(child["runId"], "child");
    assert_eq!(child["expertKey"], "helper");
    assert_eq!(child["input"], json!({"text": "Help with this"}));
    assert_eq!(child["startedAt"], 25);
    assert_eq!(resumed["expertKey"], "main");
    assert_eq!(resumed["input"], json!({}));
    for (key, value) in coordinator.as_object().expect("object") {
        if !["runId", "expertKey", "input", "startedAt", "updatedAt"].contains(&key.as_str()) {
            assert_eq!(&child[key], value, "{key}");
        }
    }
    // The end of the job touches them all.
    assert_eq!(child["updatedAt"], coordinator["updatedAt"]);
    assert_eq!(resumed["updatedAt"], coordinator["updatedAt"]);
    // Event files hold the line exactly as relayed.
    assert_eq!(
        std::fs::read_to_string(
            store
                .run_dir("j1", "r1")
                .join("event-40-3-streamRunResult.json")
        )
        .expect("read"),
        lines[6]
    );
    // job.json: pretty, completed by the coordinator's terminal event, with its usage.
    let text = std::fs::read_to_string(store.job_dir("j1").join("job.json")).expect("job.json");
    assert!(text.contains("\n  \"status\": \"completed\""), "{text}");
    let stored: Job = serde_json::from_str(&text).expect("job");
    assert_eq!(stored, job);
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.total_steps, 3);
    assert_eq!(job.usage.total_tokens, 30);
    assert_eq!(job.finished_at, Some(50));
    assert_eq!(job.coordinator_expert_key, "main");
}

#[tokio::test]
async fn a_run_that_ends_without_a_terminal_event_leaves_the_job_stopped_by_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let recorder = Recorder::start(
        store.clone(),
        Job::new("j1", "main", 10, 1),
        &setting("j1", "r1", "main", 1),
    )
    .expect("start");
    // A delegate completing does not end the coordinator's job.
    let child = line(
        "completeRun",
        "helper",
        "child",
        1,
        30,
        json!({
            "checkpoint": checkpoint("cp-child", "j1", "child", "helper", 1, "completed"),
            "step": step(1), "text": "", "usage": usage(1),
        }),
    );
    recorder.record(&child, &Event::from_line(&child).expect("event"));
    let job = recorder.finish().await.expect("job");
    assert_eq!(job.status, JobStatus::StoppedByError);
    assert!(job.finished_at.is_some());
    let stored = store.read_job("j1").expect("read").expect("job");
    assert_eq!(stored.status, JobStatus::StoppedByError);
    // The run's setting was touched as the run ended.
    assert!(store.runs("j1")[0].updated_at > 1);
}

// ---- which checkpoint a continuation starts from ----

fn job_with_checkpoints(store: &JobStore, job: &str, started: u64) {
    store
        .write_job(&Job::new(job, "main", 10, started))
        .expect("job");
    for (id, run, expert, step) in [
        ("c1", "r1", "main", 1),
        ("c2", "r1", "main", 2),
        // The delegate went further than the coordinator's last checkpoint.
        ("d3", "child", "helper", 3),
    ] {
        write_checkpoint(
            store,
            &checkpoint(&format!("{job}-{id}"), job, run, expert, step, "proceeding"),
        );
    }
}

fn selected(store: &JobStore, from: ContinueFrom, expert: &str) -> Result<String, JobsError> {
    select_checkpoint(store, &from, expert).map(|c| c.checkpoint.id)
}

#[test]
fn continue_job_takes_the_coordinators_highest_step_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    job_with_checkpoints(&store, "j1", 1);
    let from = ContinueFrom::Job {
        job_id: "j1".into(),
        checkpoint_id: None,
    };
    assert_eq!(selected(&store, from, "main").expect("selected"), "j1-c2");
}

#[test]
fn a_job_without_job_json_is_continued_from_the_given_experts_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    job_with_checkpoints(&store, "j1", 1);
    std::fs::remove_file(store.job_dir("j1").join("job.json")).expect("rm");
    let from = ContinueFrom::Job {
        job_id: "j1".into(),
        checkpoint_id: None,
    };
    assert_eq!(selected(&store, from, "main").expect("selected"), "j1-c2");
}

#[test]
fn resume_from_takes_the_named_checkpoint_and_names_the_known_ones_when_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    job_with_checkpoints(&store, "j1", 1);
    let from = |id: &str| ContinueFrom::Job {
        job_id: "j1".into(),
        checkpoint_id: Some(id.into()),
    };
    assert_eq!(
        selected(&store, from("j1-c1"), "main").expect("selected"),
        "j1-c1"
    );
    let missing = selected(&store, from("nope"), "main").expect_err("missing");
    assert_eq!(
        missing.to_string(),
        "No checkpoint found: job `j1` has no checkpoint `nope`\n  hint: its checkpoints, by step: j1-c1, j1-c2, j1-d3"
    );
}

#[test]
fn continue_takes_the_job_of_the_most_recently_updated_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    job_with_checkpoints(&store, "j1", 1);
    job_with_checkpoints(&store, "j2", 2);
    // j1 started first but was run most recently.
    store
        .store_run_setting(&setting("j2", "r2", "main", 100))
        .expect("j2");
    store
        .store_run_setting(&setting("j1", "r1", "main", 200))
        .expect("j1");
    assert_eq!(
        selected(&store, ContinueFrom::LatestJob, "main").expect("selected"),
        "j1-c2"
    );
    store.touch_run_setting("j2", "r2", 300).expect("touch");
    assert_eq!(
        selected(&store, ContinueFrom::LatestJob, "main").expect("selected"),
        "j2-c2"
    );
}

#[test]
fn nothing_to_continue_is_no_checkpoint_found_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let error = selected(&store, ContinueFrom::LatestJob, "main").expect_err("nothing stored");
    assert!(
        error
            .to_string()
            .starts_with("No checkpoint found\n  hint: "),
        "{error}"
    );
    let error = selected(
        &store,
        ContinueFrom::Job {
            job_id: "ghost".into(),
            checkpoint_id: None,
        },
        "main",
    )
    .expect_err("no such job");
    assert!(
        error
            .to_string()
            .starts_with("No checkpoint found\n  hint: job `ghost` has no checkpoint"),
        "{error}"
    );
}

#[test]
fn a_checkpoint_of_another_expert_is_refused_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    job_with_checkpoints(&store, "j1", 1);
    let error = selected(
        &store,
        ContinueFrom::Job {
            job_id: "j1".into(),
            checkpoint_id: Some("j1-d3".into()),
        },
        "main",
    )
    .expect_err("wrong expert");
    assert_eq!(
        error.to_string(),
        "checkpoint `j1-d3` belongs to Expert `helper`, not `main`\n  hint: run `helper` to continue it"
    );
    // The coordinator's checkpoint asked for under another Expert's name.
    let error = selected(
        &store,
        ContinueFrom::Job {
            job_id: "j1".into(),
            checkpoint_id: None,
        },
        "other",
    )
    .expect_err("wrong expert");
    assert!(matches!(error, JobsError::ExpertMismatch { .. }), "{error}");
}

// ---- the answer to an interactive tool call ----

fn stopped_by_interactive_tool() -> crate::event::Checkpoint {
    serde_json::from_value(json!({
        "id": "cp", "jobId": "j1", "runId": "r1", "status": "stoppedByInteractiveTool",
        "stepNumber": 2,
        "messages": [
            {"type": "expertMessage", "id": "m1", "contents": [
                {"type": "toolCallPart", "id": "p0", "toolCallId": "old", "toolName": "earlier", "args": {}}
            ]},
            {"type": "toolMessage", "id": "m2", "contents": []},
            {"type": "expertMessage", "id": "m3", "contents": [
                {"type": "textPart", "id": "p1", "text": "Asking."},
                {"type": "toolCallPart", "id": "p2", "toolCallId": "call-7", "toolName": "askUser", "args": {}},
                {"type": "toolCallPart", "id": "p3", "toolCallId": "call-8", "toolName": "askAgain", "args": {}}
            ]}
        ],
        "expert": {"key": "main", "name": "main", "version": "1.0.0"},
        "usage": usage(0),
        "pendingToolCalls": [
            {"id": "call-7", "skillName": "ask", "toolName": "askUser", "args": {}}
        ]
    }))
    .expect("checkpoint")
}

#[test]
fn a_plain_answer_answers_the_first_pending_call() {
    let answer = interactive_answer(&stopped_by_interactive_tool(), "blue").expect("answer");
    assert_eq!(
        answer,
        crate::event::InteractiveToolCallResult {
            tool_call_id: "call-7".into(),
            tool_name: "askUser".into(),
            skill_name: "ask".into(),
            text: "blue".into(),
        }
    );
    // A checkpoint that lists no pending calls: the first call of its last expert message.
    let mut unlisted = stopped_by_interactive_tool();
    unlisted.pending_tool_calls = None;
    let answer = interactive_answer(&unlisted, "blue").expect("answer");
    assert_eq!(
        (answer.tool_call_id.as_str(), answer.skill_name.as_str()),
        ("call-7", "")
    );
}

#[test]
fn a_json_answer_is_taken_as_it_is() {
    let query = r#"{"toolCallId":"call-8","toolName":"askAgain","skillName":"ask","text":"green"}"#;
    let answer = interactive_answer(&stopped_by_interactive_tool(), query).expect("answer");
    assert_eq!(answer.tool_call_id, "call-8");
    assert_eq!(answer.text, "green");
    // JSON that is not such an object is just text.
    let answer = interactive_answer(&stopped_by_interactive_tool(), "[1, 2]").expect("answer");
    assert_eq!(
        (answer.tool_call_id.as_str(), answer.text.as_str()),
        ("call-7", "[1, 2]")
    );
}

#[test]
fn the_input_must_fit_the_checkpoints_status() {
    use crate::event::CheckpointStatus;
    let waiting = stopped_by_interactive_tool();
    assert!(check_input(&waiting, true, "blue").is_ok());
    assert_eq!(
        check_input(&waiting, false, "blue")
            .expect_err("needs -i")
            .to_string(),
        "checkpoint `cp` waits for the answer to `askUser`\n  hint: pass the answer as the query with -i/--interactive-tool-call-result"
    );
    let with_status = |status| {
        let mut checkpoint = waiting.clone();
        checkpoint.status = status;
        checkpoint
    };
    let proceeding = with_status(CheckpointStatus::Proceeding);
    assert!(check_input(&proceeding, false, "go on").is_ok());
    assert!(
        check_input(&proceeding, true, "blue")
            .expect_err("nothing to answer")
            .to_string()
            .contains("has status `proceeding`")
    );
    assert!(matches!(
        check_input(&with_status(CheckpointStatus::Completed), false, "  "),
        Err(JobsError::QueryNeeded { .. })
    ));
    // Interrupted while its delegates worked: they run again, with or without a query; an
    // answer for the delegate call is taken too.
    let delegating = with_status(CheckpointStatus::StoppedByDelegate);
    assert!(check_input(&delegating, false, "").is_ok());
    assert!(check_input(&delegating, true, "their answer").is_ok());

    let mut no_calls = waiting;
    no_calls.messages.clear();
    no_calls.pending_tool_calls = None;
    assert!(matches!(
        interactive_answer(&no_calls, "blue"),
        Err(JobsError::NoPendingCall { .. })
    ));
}

#[test]
fn a_job_perstack_stored_is_listed_and_continued_from_its_own_files() {
    // Perstack's files, byte for byte as its filesystem storage writes them (compact JSON),
    // copied into a workspace's store.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let job_dir = store.job_dir("k3m9x2p7q1w8e5r4t6y0u2i9");
    std::fs::create_dir_all(job_dir.join("checkpoints")).expect("mkdir");
    std::fs::copy(fixtures.join("job.json"), job_dir.join("job.json")).expect("job.json");
    for entry in std::fs::read_dir(fixtures.join("checkpoints")).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("a name");
        std::fs::copy(&path, job_dir.join("checkpoints").join(name)).expect("copy");
    }

    let stored = store.checkpoints("k3m9x2p7q1w8e5r4t6y0u2i9").expect("list");
    let mut listed: Vec<(u32, &str)> = stored
        .iter()
        .map(|c| (c.checkpoint.step_number, c.checkpoint.id.as_str()))
        .collect();
    assert!(listed.is_sorted_by_key(|(step, _)| *step), "{listed:?}");
    listed.sort();
    assert_eq!(
        listed,
        [
            (1, "cp01init"),
            (1, "cp03delegate"),
            (2, "cp04child"),
            (3, "cp02interactive"),
            (4, "cp05error")
        ]
    );
    let from = ContinueFrom::Job {
        job_id: "k3m9x2p7q1w8e5r4t6y0u2i9".into(),
        checkpoint_id: Some("cp02interactive".into()),
    };
    let chosen = select_checkpoint(&store, &from, "coordinator").expect("found");
    // The runtime is handed the file as it is.
    assert_eq!(
        chosen.json,
        std::fs::read_to_string(fixtures.join("checkpoints/cp02interactive.json")).expect("read")
    );
    check_input(&chosen.checkpoint, true, "PDF").expect("waits for an answer");
    let answer = interactive_answer(&chosen.checkpoint, "PDF").expect("an answer");
    // The call waiting for it, not the first call of the step (an MCP call, answered already).
    assert_eq!(
        (
            answer.tool_call_id.as_str(),
            answer.tool_name.as_str(),
            answer.skill_name.as_str()
        ),
        ("toolu_ask", "askUser", "user")
    );
}

/// A checkpoint whose conversation holds `turns` expert messages (and a user message).
fn checkpoint_with_turns(
    id: &str,
    run: &str,
    expert: &str,
    step: u32,
    status: &str,
    turns: usize,
) -> Value {
    let mut value = checkpoint(id, "j1", run, expert, step, status);
    let mut messages =
        vec![json!({"type": "userMessage", "id": format!("{id}-u"), "contents": []})];
    messages.extend(
        (0..turns)
            .map(|n| json!({"type": "expertMessage", "id": format!("{id}-e{n}"), "contents": []})),
    );
    value["messages"] = Value::Array(messages);
    value
}

#[test]
fn delegate_turns_count_the_delegations_that_completed_before_the_continued_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    for value in [
        // Session 1: boss (steps 1, 3) delegated to helper (step 2, two turns), to leaf through
        // helper (one turn), then asked the user.
        checkpoint_with_turns("b1", "boss1", "boss", 1, "stoppedByDelegate", 1),
        checkpoint_with_turns("h1", "help1", "helper", 2, "proceeding", 1),
        checkpoint_with_turns("h2", "help1", "helper", 2, "completed", 2),
        checkpoint_with_turns("l1", "leaf1", "leaf", 2, "completed", 1),
        checkpoint_with_turns("b2", "boss1", "boss", 3, "stoppedByInteractiveTool", 2),
        // Session 2 delegated to helper again (one turn) and was cut off in a second delegation.
        checkpoint_with_turns("b3", "boss2", "boss", 4, "stoppedByDelegate", 3),
        checkpoint_with_turns("h3", "help2", "helper", 5, "completed", 1),
        checkpoint_with_turns("b4", "boss2", "boss", 5, "stoppedByDelegate", 4),
        checkpoint_with_turns("h4", "help3", "helper", 6, "proceeding", 1),
    ] {
        write_checkpoint(&store, &value);
    }
    let checkpoints = store.checkpoints("j1").expect("list");
    let at = |id: &str| {
        let from = checkpoints
            .iter()
            .find(|c| c.checkpoint.id == id)
            .expect("checkpoint")
            .checkpoint
            .clone();
        delegate_turns_played(&checkpoints, &from)
            .into_iter()
            .collect::<Vec<_>>()
    };
    let played = |pairs: &[(&str, usize)]| {
        pairs
            .iter()
            .map(|(e, n)| (e.to_string(), *n))
            .collect::<Vec<_>>()
    };
    // Continuing after session 1: helper's and leaf's completed runs are played.
    assert_eq!(at("b2"), played(&[("helper", 2), ("leaf", 1)]));
    // Continuing the cut-off session 2: its finished delegation counts, the cut-off one replays.
    assert_eq!(at("b4"), played(&[("helper", 3), ("leaf", 1)]));
    // Resuming session 1's delegation: helper and leaf run again from their first turns.
    assert_eq!(at("b1"), played(&[]));
}
