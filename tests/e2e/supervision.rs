//! Skill supervision through the real engine: a server that exits mid-run is restarted by its
//! skill host and the runtime connects again; the failed call names the cause (an exit code, an
//! OOM kill at `--memory`), the next call works; a server that keeps dying stays down after the
//! bound; a skill that cannot start shows its last stderr lines and a hint in the human view.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Finished, TestRun, binary, require_bookworm_image, require_docker};

const CONFIG: &str = "e2e/supervision/perstack.toml";

/// The text of every result of `tool`, in order.
fn texts(done: &Finished, tool: &str) -> Vec<String> {
    done.tool_results(tool)
        .iter()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<String>()
        })
        .collect()
}

/// `skillStderr` messages of `skill`.
fn stderr_of(done: &Finished, skill: &str) -> Vec<String> {
    done.of_type("skillStderr")
        .iter()
        .filter(|e| e["skillName"] == skill)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// The types of `skill`'s connection events, in order.
fn connection_events(done: &Finished, skill: &str) -> Vec<String> {
    done.events
        .iter()
        .filter(|e| e["skillName"] == skill)
        .filter_map(|e| e["type"].as_str())
        .filter(|t| ["skillStarting", "skillConnected", "skillDisconnected"].contains(t))
        .map(str::to_string)
        .collect()
}

/// A skill's connection events when its server was restarted once: disconnected when the server
/// died, connected again, disconnected when the run ended.
const RESTARTED_ONCE: [&str; 5] = [
    "skillStarting",
    "skillConnected",
    "skillDisconnected",
    "skillConnected",
    "skillDisconnected",
];

/// Where in the event list the first event of `kind` after `from` is.
fn position_after(events: &[Value], from: usize, kind: &str) -> usize {
    from + events[from..]
        .iter()
        .position(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} after event {from}"))
}

#[test]
fn a_crashed_skill_is_restarted_and_answers_the_next_call() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new(CONFIG, "crashy");
    let done = run.run();
    done.assert_code(0);
    assert_eq!(done.of_type("completeRun")[0]["text"], "Recovered.");

    // The failed call names the cause and what happens next.
    let crash = &texts(&done, "crash")[0];
    assert_eq!(
        crash,
        "Error calling tool crash: the server exited with code 3; restarting it in 0.25 s (restart 1 of 5 this run)"
    );
    // The next call reached a new server.
    assert_eq!(texts(&done, "echo"), ["back again"]);

    assert_eq!(connection_events(&done, "fixture"), RESTARTED_ONCE);
    // The new connection has durations of its own, and came before the echo was called.
    let events = &done.events;
    let crash_result = position_after(events, 0, "resolveToolResults");
    let reconnected = events
        .iter()
        .rposition(|e| e["type"] == "skillConnected")
        .expect("skillConnected");
    assert!(events[reconnected]["totalDurationMs"].is_u64());
    let echo_call = position_after(events, crash_result + 1, "callTools");
    assert!(reconnected < position_after(events, echo_call, "resolveToolResults"));

    // skillStderr has the server's last line, then the skill host's word on it.
    let stderr = stderr_of(&done, "fixture");
    let last_words = stderr
        .iter()
        .position(|l| l == "fixture-mcp: crashing on request")
        .expect("the server's last line");
    assert_eq!(
        stderr[last_words + 1],
        "skill-host: the server exited with code 3; restarting it in 0.25 s (restart 1 of 5 this run)"
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// No call is waiting when the server exits, so nothing but the hang-up tells the runtime; the
/// next call still reaches the new server at once (under gVisor too: .ci/run).
#[test]
fn a_server_that_exits_between_calls_is_restarted_and_answers_the_next_call() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new(CONFIG, "quitter");
    let done = run.run();
    done.assert_code(0);
    assert_eq!(done.of_type("completeRun")[0]["text"], "Carried on.");
    assert_eq!(texts(&done, "crash"), [r#"{"exitingInMs":100}"#]);
    // Not "unavailable (it did not reconnect within 120s)".
    assert_eq!(texts(&done, "echo"), ["still here"]);
    assert_eq!(connection_events(&done, "fixture"), RESTARTED_ONCE);
    assert!(
        stderr_of(&done, "fixture").contains(
            &"skill-host: the server exited with code 5; restarting it in 0.25 s (restart 1 of 5 this run)".to_string()
        ),
        "{:?}",
        stderr_of(&done, "fixture")
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_skill_that_keeps_dying_is_down_after_the_bound_with_the_reason() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new(CONFIG, "doomed");
    let started = Instant::now();
    let done = run.run();
    done.assert_code(0);
    assert_eq!(done.of_type("completeRun")[0]["text"], "It stayed down.");
    // Backoffs of 0.25 + 0.5 + 1 + 2 + 4 s.
    assert!(
        started.elapsed() > Duration::from_millis(7750),
        "{:?}",
        started.elapsed()
    );

    let crashes = texts(&done, "crash");
    assert_eq!(crashes.len(), 6, "{crashes:?}");
    for (n, text) in crashes[..5].iter().enumerate() {
        assert!(
            text.starts_with(
                "Error calling tool crash: the server exited with code 4; restarting it in "
            ) && text.ends_with(&format!("(restart {} of 5 this run)", n + 1)),
            "{text}"
        );
    }
    let down = "its server exited with code 4 after 5 restarts, the most one run allows; the skill stays down";
    assert_eq!(crashes[5], format!("Error calling tool crash: {down}"));
    // Every later call says why, at once.
    assert_eq!(
        texts(&done, "echo"),
        [format!(
            "Error calling tool echo: skill `fixture` is down: {down}"
        )]
    );
    // Six connections, each ended; none after the last.
    let connections = connection_events(&done, "fixture");
    assert_eq!(
        connections
            .iter()
            .filter(|t| *t == "skillConnected")
            .count(),
        6,
        "{connections:?}"
    );
    assert_eq!(
        connections
            .iter()
            .filter(|t| *t == "skillDisconnected")
            .count(),
        6,
        "{connections:?}"
    );
    assert!(
        stderr_of(&done, "fixture").contains(&format!("skill-host: {down}")),
        "{:?}",
        stderr_of(&done, "fixture")
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_skill_killed_for_memory_says_so_and_answers_the_next_call() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new(CONFIG, "hog").arg("--memory").arg("64m");
    let done = run.run();
    done.assert_code(0);
    assert_eq!(done.of_type("completeRun")[0]["text"], "Survived.");
    let hoard = &texts(&done, "hoard")[0];
    assert_eq!(
        hoard,
        "Error calling tool hoard: the server was killed: out of memory (limit 64m); restarting it in 0.25 s (restart 1 of 5 this run)"
    );
    assert_eq!(texts(&done, "ping"), ["pong"]);
    assert_eq!(connection_events(&done, "hoarder"), RESTARTED_ONCE);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// `perstack-sandbox run` of `run`'s Expert with a terminal for stdout (util-linux `script`),
/// so it shows the human view; its output.
fn human_view(run: &TestRun) -> (Option<i32>, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let words = [
        binary().to_string(),
        "run".into(),
        "--config".into(),
        run.config.display().to_string(),
        "--workspace".into(),
        run.workspace.path().display().to_string(),
        "--job-id".into(),
        run.guard.job_id.clone(),
        run.expert.clone(),
        run.query.clone(),
    ];
    let line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
    // A wide terminal, without live build lines.
    let line = format!("stty cols 250 rows 50; exec {line}");
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .env_remove("ANTHROPIC_API_KEY")
        .current_dir(run.workspace.path())
        .output()
        .expect("util-linux `script`");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
    )
}

#[test]
fn a_skill_that_cannot_start_shows_its_stderr_and_a_hint_in_the_human_view() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new(CONFIG, "missing");
    let started = Instant::now();
    let (code, view) = human_view(&run);
    assert_eq!(code, Some(1), "{view}");
    // Not restarted: a server that never answered fails the run at once (images built or not).
    assert!(started.elapsed() < Duration::from_secs(120), "{view}");
    // The server's last line (kept until the skill host speaks), then the skill host's words and
    // its hint, the only one.
    assert!(
        view.contains(
            "python3: can't open file '/opt/tools/server.py': [Errno 2] No such file or directory\n"
        ),
        "{view}"
    );
    assert!(
        view.contains(
            "! skill server: its server exited with code 2 before it answered the MCP handshake, so it is not restarted\n\
             ! skill server: hint: a file the server needs is not in its container"
        ),
        "{view}"
    );
    assert_eq!(view.matches("! skill server: hint: ").count(), 1, "{view}");
    assert!(!view.contains("not in its image"), "{view}");
    // The run's error says the same, not only that the handshake failed.
    assert!(
        view.contains(
            "skill `server`: its server exited with code 2 before it answered the MCP handshake"
        ),
        "{view}"
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());

    let run = TestRun::new(CONFIG, "ungranted");
    let (code, view) = human_view(&run);
    assert_eq!(code, Some(1), "{view}");
    assert!(
        view.contains("  [notes] reading /workspace/notes.txt\n"),
        "{view}"
    );
    assert!(
        view.contains(
            "FileNotFoundError: [Errno 2] No such file or directory: '/workspace/notes.txt'\n"
        ),
        "{view}"
    );
    assert!(
        view.contains("! skill notes: hint: /workspace is not mounted for this skill"),
        "{view}"
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}
