//! Perstack's own checkpoints and events read back unchanged.
//!
//! The fixtures in `tests/fixtures/upstream/` are written by hand from Perstack's zod schemas
//! (`packages/core/src/schemas/{checkpoint,step,message,message-part,tool-call,tool-result,
//! runtime,job}.ts`), compact like Perstack's filesystem storage writes them and with the keys in
//! the order its runtime builds the objects. They carry every message part — the binary ones
//! too —, pending tool calls and partial results on checkpoints and on steps, every event type, a
//! `retry.reason` in Perstack's JSON form, integral floats (`contextWindowUsage: 0`,
//! `progress: 1`) and `metadata` keys of Perstack's own.
//!
//! "Unchanged" is JSON equality: the same keys with the same values, in any order. Byte equality
//! with a Perstack file is not a meaningful target: Perstack itself writes the same object with
//! its keys in different orders depending on which state built it (spreads), and JSON gives key
//! order no meaning. Our own output, read back and written again, is byte-equal.

use std::path::PathBuf;

use serde_json::Value;

use super::{Checkpoint, Event, EventBody, Part, RunPayload};
use crate::jobs::Job;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream")
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` parsed as `T` and written again is the same JSON, and writing what we wrote once
/// more gives the same bytes.
fn round_trips<T>(text: &str, what: &str) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let original: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    let parsed: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    let written = serde_json::to_string(&parsed).expect("serializes");
    let rewritten: Value = serde_json::from_str(&written).expect("our own JSON");
    assert_eq!(rewritten, original, "{what} changed on the way through");
    let again: T = serde_json::from_str(&written).expect("reads our own");
    assert_eq!(
        serde_json::to_string(&again).expect("serializes"),
        written,
        "{what}: our own output is not stable"
    );
    parsed
}

#[test]
fn perstack_checkpoints_read_back_unchanged() {
    let dir = fixtures().join("checkpoints");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let checkpoint: Checkpoint = round_trips(&read(&path), &path.display().to_string());
        names.push(checkpoint.id);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "cp01init",
            "cp02interactive",
            "cp03delegate",
            "cp04child",
            "cp05error"
        ]
    );
}

#[test]
fn binary_parts_pending_calls_and_partial_results_are_kept() {
    let text = read(&fixtures().join("checkpoints/cp02interactive.json"));
    let checkpoint: Checkpoint = serde_json::from_str(&text).expect("parses");
    let kinds: Vec<&str> = checkpoint.messages[1]
        .contents
        .iter()
        .map(part_type)
        .collect();
    assert_eq!(
        kinds,
        [
            "textPart",
            "imageUrlPart",
            "imageInlinePart",
            "imageBinaryPart",
            "fileUrlPart",
            "fileInlinePart",
            "fileBinaryPart"
        ]
    );
    let pending: Vec<&str> = checkpoint
        .pending_tool_calls
        .iter()
        .flatten()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(pending, ["toolu_ask"]);
    let partial = checkpoint.partial_tool_results.expect("partial results");
    assert_eq!(partial.len(), 3);
    assert!(matches!(
        partial[1].result[0],
        Part::FileBinaryPart { ref mime_type, .. } if mime_type == "application/pdf"
    ));
    assert_eq!(checkpoint.retry_count, Some(0));
    assert_eq!(
        checkpoint.metadata.as_ref().map(|m| m["host"].clone()),
        Some(Value::from("ci-7"))
    );
}

fn part_type(part: &Part) -> &'static str {
    match part {
        Part::TextPart { .. } => "textPart",
        Part::ImageUrlPart { .. } => "imageUrlPart",
        Part::ImageInlinePart { .. } => "imageInlinePart",
        Part::ImageBinaryPart { .. } => "imageBinaryPart",
        Part::FileUrlPart { .. } => "fileUrlPart",
        Part::FileInlinePart { .. } => "fileInlinePart",
        Part::FileBinaryPart { .. } => "fileBinaryPart",
        Part::ToolCallPart { .. } => "toolCallPart",
        Part::ThinkingPart { .. } => "thinkingPart",
        Part::ToolResultPart { .. } => "toolResultPart",
    }
}

#[test]
fn perstack_events_read_back_unchanged() {
    let text = read(&fixtures().join("events.jsonl"));
    let mut types = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let what = format!("events.jsonl:{}", number + 1);
        let event = Event::from_line(line).unwrap_or_else(|e| panic!("{what}: {e}"));
        let original: Value = serde_json::from_str(line).expect("JSON");
        let written = event.to_line();
        let rewritten: Value = serde_json::from_str(&written).expect("our own JSON");
        assert_eq!(rewritten, original, "{what} changed on the way through");
        let again = Event::from_line(&written).expect("reads our own");
        assert_eq!(
            again.to_line(),
            written,
            "{what}: our own output is not stable"
        );
        types.push(event.type_name());
    }
    // Every event type of Perstack's schema is among them.
    for expected in [
        "initializeRuntime",
        "skillStarting",
        "skillConnected",
        "skillStderr",
        "skillDisconnected",
        "dockerBuildProgress",
        "dockerContainerStatus",
        "proxyAccess",
        "startRun",
        "startGeneration",
        "retry",
        "callTools",
        "callInteractiveTool",
        "callDelegate",
        "resolveToolResults",
        "attemptCompletion",
        "finishToolCall",
        "resumeToolCalls",
        "finishAllToolCalls",
        "continueToNextStep",
        "stopRunByInteractiveTool",
        "stopRunByDelegate",
        "stopRunByExceededMaxSteps",
        "stopRunByError",
        "completeRun",
        "startStreamingReasoning",
        "streamReasoning",
        "completeStreamingReasoning",
        "startStreamingRunResult",
        "streamRunResult",
        "completeStreamingRunResult",
    ] {
        assert!(types.iter().any(|t| t == expected), "no {expected} fixture");
    }
}

#[test]
fn a_stop_events_step_keeps_its_pending_calls_and_partial_results() {
    let text = read(&fixtures().join("events.jsonl"));
    let stops: Vec<Event> = text
        .lines()
        .filter_map(|line| Event::from_line(line).ok())
        .filter(|e| {
            matches!(
                e.body,
                EventBody::Run {
                    payload: RunPayload::StopRunByDelegate { .. }
                        | RunPayload::StopRunByInteractiveTool { .. },
                    ..
                }
            )
        })
        .collect();
    assert_eq!(stops.len(), 2);
    for stop in stops {
        let Some(
            RunPayload::StopRunByDelegate { step, .. }
            | RunPayload::StopRunByInteractiveTool { step, .. },
        ) = stop.run_payload()
        else {
            unreachable!("filtered above");
        };
        assert!(
            step.pending_tool_calls
                .as_ref()
                .is_some_and(|p| !p.is_empty())
        );
        assert!(
            step.partial_tool_results
                .as_ref()
                .is_some_and(|p| !p.is_empty())
        );
    }
}

#[test]
fn perstack_job_json_reads_back_unchanged() {
    let text = read(&fixtures().join("job.json"));
    round_trips::<Job>(&text, "job.json");
}
