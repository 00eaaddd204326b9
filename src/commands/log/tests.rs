//! `log` over a job a real run stored (`tests/fixtures/log/interview`: the interview of
//! `tests/fixtures/e2e/interview`, three sessions, a delegate called in two of them): text and
//! JSON snapshots, filters, and the store's refusal of links.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/log/interview")
}

fn args(extra: &[&str]) -> LogArgs {
    let argv = ["perstack-sandbox", "log"].iter().chain(extra);
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Log(args) => args,
        other => panic!("{other:?}"),
    }
}

/// `log` with `extra` flags over `workspace`, as its output.
fn log_of(workspace: &Path, extra: &[&str]) -> Result<String, LogError> {
    let args = args(extra);
    let store = JobStore::open(workspace, crate::files::Owner::detect())?;
    let history = match &args.job {
        Some(id) => History::read(&store, id)?.expect("job"),
        None => History::latest(&store)?.expect("a job"),
    };
    let filters = filters(&args)?;
    show(
        &args,
        &store,
        &history,
        filters,
        "[WORKSPACE]/perstack/jobs".into(),
    )
}

fn log(extra: &[&str]) -> String {
    log_of(&workspace(), extra).expect("log")
}

#[test]
fn the_default_is_what_each_expert_did_in_the_latest_job() {
    let text = log(&[]);
    // Upstream says "Delegate to: unknown"; the delegate's own run names it.
    assert!(text.contains("delegated to planner: \"Draft from both answers.\""));
    insta::assert_snapshot!(text);
}

#[test]
fn event_flags_list_the_events_in_upstreams_shape() {
    insta::assert_snapshot!("tools_after_step_5", log(&["--tools", "--step", ">5"]));
    insta::assert_snapshot!(
        "delegations_of_one_job_with_summary",
        log(&["--job", "logdemo1", "--delegations", "--summary"])
    );
    let paged = log(&["--take", "2", "--offset", "1", "--type", "startRun"]);
    assert!(paged.contains("(showing 2 of 7 matched events)"), "{paged}");
}

#[test]
fn a_checkpoint_shows_its_messages_and_its_runs_events() {
    let text = log(&[
        "--checkpoint",
        "cbbm8tuscy17dr9p38md08jd",
        "--messages",
        "--type",
        "completeRun",
    ]);
    assert!(
        text.contains("Checkpoint: cbbm8tuscy17dr9p38md08jd\nStatus: completed\nStep: 11"),
        "{text}"
    );
    assert!(
        text.contains("  [userMessage] \"Make me a plan\""),
        "{text}"
    );
    assert!(text.contains("Result: \"Here is your plan.\""), "{text}");
}

#[test]
fn the_json_has_upstreams_keys_and_the_runs() {
    let json: Value = serde_json::from_str(&log(&[
        "--json",
        "--filter",
        ".toolCalls[].toolName == \"planner\"",
        "--type",
        "callDelegate",
    ]))
    .expect("JSON");
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "job",
            "events",
            "summary",
            "runs",
            "isLatestJob",
            "storagePath",
            "totalEventsBeforeLimit",
            "matchedAfterPagination"
        ]
    );
    insta::assert_json_snapshot!(json, {
        ".events[].newMessage" => "[message]",
    });
}

#[test]
fn bad_flags_are_usage_errors_with_upstreams_messages() {
    for (flags, message) in [
        (&["--step", "x"][..], "Invalid step filter: x"),
        (
            &["--filter", "type == 1"],
            "Invalid filter expression: type == 1",
        ),
        (&["--checkpoint", "nope"], "checkpoint not found: nope"),
        (&["--run", "nope"], "run `nope` not found in the job"),
    ] {
        let error = log_of(&workspace(), flags).expect_err("refused");
        assert!(error.to_string().starts_with(message), "{error}");
        assert_eq!(Exit::from(&error), Exit::Usage);
    }
    assert!(Cli::try_parse_from(["perstack-sandbox", "log", "--pretty"]).is_err());
    assert!(Cli::try_parse_from(["perstack-sandbox", "log", "--messages"]).is_err());
}

#[test]
fn a_linked_job_folder_is_refused_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("perstack/jobs")).expect("mkdir");
    std::os::unix::fs::symlink(
        workspace().join("perstack/jobs/logdemo1"),
        dir.path().join("perstack/jobs/logdemo1"),
    )
    .expect("link");
    let store = JobStore::open(dir.path(), crate::files::Owner::detect()).expect("store");
    let error = History::latest(&store).expect_err("a link");
    assert!(error.to_string().contains("logdemo1"), "{error}");
    // And a workspace whose whole reserved folder is a link.
    std::os::unix::fs::symlink(
        workspace().join("perstack"),
        outside.path().join("perstack"),
    )
    .expect("link");
    let store = JobStore::open(outside.path(), crate::files::Owner::detect()).expect("store");
    assert!(History::latest(&store).is_err());
}
