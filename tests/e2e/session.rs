//! `start` on a real pseudo-terminal running the real binary: keys are sent and the screen read
//! back, as a person at a terminal would use it.

use std::process::Command;

use crate::support::terminal::Terminal;
use crate::support::{JobGuard, binary, fixture, require_docker};

/// Time for one exchange, image builds of the first run included.
const TURN_MS: u64 = 300_000;

/// The screen without what changes from run to run: ids, times, token counts, image builds.
fn stable(screen: &str, job_id: &str) -> String {
    let times = regex::Regex::new(r"in \d+(\.\d+)? (ms|s)\b").expect("regex");
    let fixtures = fixture("e2e/session");
    let tokens = regex::Regex::new(r"\d+ tokens").expect("regex");
    screen
        .lines()
        // Notes about the invoking user (root in CI) are the run's, not the session's.
        .filter(|l| !l.starts_with("note: "))
        // Whether an image was built or found depends on what ran before.
        .filter(|l| {
            !l.contains(" image ")
                && !l
                    .trim_start()
                    .starts_with(['⠁', '⠂', '⠄', '⡀', '⢀', '⠠', '⠐', '⠈'])
        })
        .map(|l| {
            let l = l
                .replace(job_id, "<job>")
                .replace(&fixtures.display().to_string(), "<fixture>");
            let l = times.replace_all(&l, "in <t>");
            tokens.replace_all(&l, "<n> tokens").into_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `perstack-sandbox <command>` on `config` in `workspace`, as the session tests run it: a
/// plain xterm without colours, and no provider key.
fn command(command: &str, config: &str, workspace: &std::path::Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg(command)
        .arg("--config")
        .arg(fixture(config))
        .arg("--workspace")
        .arg(workspace)
        .current_dir(workspace)
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .env_remove("ANTHROPIC_API_KEY");
    cmd
}

#[test]
fn an_interview_with_two_questions_a_delegation_and_a_follow_up_in_one_session() {
    if !require_docker() {
        return;
    }
    let guard = JobGuard::new();
    let workspace = tempfile::tempdir().expect("tempdir");
    let mut cmd = command("start", "e2e/session/perstack.toml", workspace.path());
    cmd.arg("--job-id").arg(&guard.job_id);
    let mut term = Terminal::spawn(cmd, TURN_MS);

    // No Expert given: the file's are offered with their descriptions.
    term.expect("Interviews you, then has a plan made.");
    term.expect("expert (number or name)> ");
    term.type_line("coach");
    // No query given: asked for.
    term.expect("you> ");
    term.type_line("Help me train for a 10k");
    term.expect("How many days a week can you train?");
    term.expect("answer> ");
    term.type_line("three");
    term.expect("Any injuries I should know about?");
    term.expect("answer> ");
    term.type_line("a sore knee");
    // The delegation shows who asked whom, and the planner's answer.
    term.expect("planner (delegated by coach): Three days a week, mind the knee.");
    term.expect("planner answered");
    term.expect("Your plan: Mon run, Wed swim, Fri bike.");
    term.expect("you> ");
    // A follow-up continues the same job.
    term.type_line("What about rest days?");
    term.expect("Rest on Sunday, and stretch the knee.");
    term.expect("you> ");
    // Ctrl-D leaves.
    term.pty.send_control('d').expect("Ctrl-D");
    let shown = term.finish();
    // The follow-up's line gives its own totals apart from the job's.
    assert!(shown.contains("the job so far:"), "{shown}");
    // Each turn is a run, but the session says the job, what runs and each skill once.
    assert_eq!(shown.matches("▸ running coach").count(), 1, "{shown}");
    assert_eq!(
        shown.matches("▸ skill @perstack/base of coach").count(),
        1,
        "{shown}"
    );
    // Leaving says how to come back.
    assert!(
        shown.ends_with(&format!(
            "▸ job {0} · back to it with: perstack-sandbox start --continue-job {0}",
            guard.job_id
        )),
        "{shown}"
    );
    insta::assert_snapshot!("start_interview_screen", stable(&shown, &guard.job_id));
    // Everything ran in one job: its checkpoints are in the workspace.
    let job = workspace
        .path()
        .join("perstack/jobs")
        .join(&guard.job_id)
        .join("job.json");
    assert!(job.is_file(), "no {}", job.display());
    assert!(guard.leftovers().is_empty(), "{:?}", guard.leftovers());
}

/// Ctrl-C during a turn, as at `run`: the step under way finishes and its checkpoint is kept,
/// the session goes on at the prompt, and the next message continues the same job from there.
#[test]
fn ctrl_c_during_a_turn_keeps_its_checkpoint_and_the_session_goes_on() {
    if !require_docker() {
        return;
    }
    let guard = JobGuard::new();
    let workspace = tempfile::tempdir().expect("tempdir");
    let mut cmd = command("start", "e2e/slow/perstack.toml", workspace.path());
    cmd.arg("--job-id")
        .arg(&guard.job_id)
        .arg("slow")
        .arg("Wait a minute.");
    let mut term = Terminal::spawn(cmd, TURN_MS);
    // The first turn's minute-long tool call is under way.
    term.expect("sleep {\"ms\":60000}");
    term.pty.send_control('c').expect("Ctrl-C");
    term.expect("interrupted: the run stops after the step under way and keeps its checkpoint");
    // Not the end of the session: the prompt comes back once the step is done.
    term.expect("you> ");
    let checkpoints = workspace
        .path()
        .join("perstack/jobs")
        .join(&guard.job_id)
        .join("checkpoints");
    let kept = std::fs::read_dir(&checkpoints)
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert!(kept >= 1, "no checkpoint in {}", checkpoints.display());
    // The next message continues the job after the interrupted step: the script's next turn.
    term.type_line("Are you done?");
    term.expect("Done waiting.");
    term.expect("you> ");
    term.pty.send_control('d').expect("Ctrl-D");
    let shown = term.finish();
    assert_eq!(
        shown.matches("sleep {\"ms\":60000}").count(),
        1,
        "the interrupted step is not played again: {shown}"
    );
    assert!(guard.leftovers().is_empty(), "{:?}", guard.leftovers());
}

/// Re-entering a job: `start --continue-job` shows what was said so far and the question the
/// job waits on, then the answer typed continues it.
#[test]
fn continue_job_shows_the_history_and_the_waiting_question_then_takes_the_answer() {
    if !require_docker() {
        return;
    }
    let guard = JobGuard::new();
    let workspace = tempfile::tempdir().expect("tempdir");
    // Yesterday's session, by script: the coach asks its first question and the run stops.
    let config = "e2e/session/perstack.toml";
    let out = command("run", config, workspace.path())
        .arg("--job-id")
        .arg(&guard.job_id)
        .args(["coach", "Help me train for a 10k"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cmd = command("start", config, workspace.path());
    cmd.arg("--continue-job").arg(&guard.job_id).arg("coach");
    let mut term = Terminal::spawn(cmd, TURN_MS);
    // (rexpect reads bytes as Latin-1: only ASCII is waited for.)
    term.expect(&format!("job {}", guard.job_id));
    term.expect("tokens so far");
    term.expect("you> Help me train for a 10k");
    term.expect("? coach asks via");
    term.expect("How many days a week can you train?");
    term.expect("answer> ");
    term.type_line("three");
    term.expect("Any injuries I should know about?");
    term.expect("answer> ");
    term.pty.send_control('d').expect("Ctrl-D");
    term.finish();
    assert!(guard.leftovers().is_empty(), "{:?}", guard.leftovers());
}

/// Without a terminal `start` refuses, whatever order its arguments came in: each order parses
/// (a misparse would be clap's `unexpected argument` instead).
#[test]
fn start_without_a_terminal_points_to_run_json() {
    for order in [
        &["coach", "hello"][..],
        &["--continue", "coach", "next"],
        &["coach", "--continue", "next"],
        &["coach", "next", "--continue"],
        &["coach", "--continue", "--", "next"],
    ] {
        let out = Command::new(binary())
            .arg("start")
            .args(order)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the binary");
        assert_eq!(out.status.code(), Some(2), "{order:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("perstack-sandbox run --json"),
            "{order:?}: {stderr}"
        );
    }
}
