//! Interactive skills through Docker: the model's call to a user-answered tool stops the run,
//! and the controller reports that it waits for input.

use crate::support::{TestRun, require_docker};

#[test]
fn an_interactive_tool_stops_the_run_waiting_for_the_user() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/interactive/perstack.toml", "painter");
    let done = run.run();
    // Exit 4: waiting for interactive input (see exit.rs).
    done.assert_code(4);
    assert_eq!(
        done.run_event_types(),
        [
            "startRun@1",
            "startGeneration@1",
            "callTools@1",
            "callInteractiveTool@1",
            "stopRunByInteractiveTool@1",
        ]
    );
    let call = &done.of_type("callInteractiveTool")[0]["toolCall"];
    assert_eq!(call["toolName"], "askColour");
    assert_eq!(call["skillName"], "user");
    assert_eq!(call["args"]["question"], "Which colour?");
    let stop = &done.of_type("stopRunByInteractiveTool")[0];
    assert_eq!(stop["checkpoint"]["status"], "stoppedByInteractiveTool");
    assert_eq!(
        stop["checkpoint"]["pendingToolCalls"][0]["id"],
        "ask-colour-1"
    );
    // The stop's step keeps what waits too, as Perstack's does.
    assert_eq!(stop["step"]["pendingToolCalls"][0]["id"], "ask-colour-1");
    assert_eq!(stop["step"]["partialToolResults"], serde_json::json!([]));
    // The skill's rule is part of the system prompt the model saw.
    let prompt = done.of_type("startRun")[0]["inputMessages"][0]["contents"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        prompt.contains("Ask the user before choosing a colour."),
        "{prompt}"
    );
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}

/// One mock script drives a whole interview: each continued session plays the next turns,
/// and a delegate called again plays its next turn rather than its first.
#[test]
fn one_script_drives_an_interview_over_sessions_with_a_delegate_called_in_each() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/interview/perstack.toml", "coach");
    let first = run.run();
    first.assert_code(4);
    let asked = |done: &crate::support::Finished| {
        done.of_type("callInteractiveTool")
            .iter()
            .map(|e| e["toolCall"]["args"]["question"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(asked(&first), ["What is your goal?"]);
    let planned = |done: &crate::support::Finished| {
        done.of_type("completeRun")
            .iter()
            .filter(|e| e["expertKey"] == "planner")
            .map(|e| e["text"].clone())
            .collect::<Vec<_>>()
    };
    let second = run.run_with(&["--continue", "-i"]);
    second.assert_code(4);
    assert_eq!(planned(&second), ["Plan v1."]);
    assert_eq!(asked(&second), ["How many days a week?"]);
    let third = run.run_with(&["--continue", "-i"]);
    third.assert_code(0);
    assert_eq!(planned(&third), ["Plan v2."]);
    let done: Vec<_> = third
        .of_type("completeRun")
        .iter()
        .filter(|e| e["expertKey"] == "coach")
        .map(|e| e["text"].clone())
        .collect();
    assert_eq!(done, ["Here is your plan."]);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    // `log` reads the three sessions back: who did what, the delegate named.
    let log = std::process::Command::new(crate::support::binary())
        .arg("log")
        .arg("--workspace")
        .arg(run.workspace.path())
        .output()
        .expect("log");
    let text = String::from_utf8_lossy(&log.stdout);
    assert_eq!(log.status.code(), Some(0), "{text}");
    for line in [
        "(completed), coordinator coach",
        "answer: \"go\"",
        "delegated to planner: \"Draft from both answers.\"",
        "planner (for coach)",
        "completed: \"Plan v2.\"",
        "waits for the user (askUser: \"How many days a week?\")",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}
