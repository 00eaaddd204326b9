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
