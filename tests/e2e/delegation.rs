//! Delegation through Docker: parallel children, nesting two deep, and delegates' own skills
//! each in their own containers.

use serde_json::Value;

use crate::support::{TestRun, read_json, require_docker};

/// `type@step` of one Expert's state events (streaming left out).
fn types_of(events: &[Value], key: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["expertKey"] == key)
        .filter(|e| {
            let t = e["type"].as_str().unwrap_or("");
            !t.contains("Stream") && !t.starts_with("stream")
        })
        .map(|e| format!("{}@{}", e["type"].as_str().unwrap_or("?"), e["stepNumber"]))
        .collect()
}

#[test]
fn delegates_run_in_parallel_nest_and_use_their_own_skills() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/delegation/perstack.toml", "lead");
    let done = run.run();
    done.assert_code(0);
    let events = &done.events;

    // Skill events are told per run segment, under its own run id, for its own Expert's
    // skills: whose skill connected is the Expert of that run id's initializeRuntime.
    let expert_of_run = |run: &Value| -> String {
        done.of_type("initializeRuntime")
            .iter()
            .find(|e| e["runId"] == *run)
            .and_then(|e| e["expertName"].as_str())
            .unwrap_or("?")
            .to_string()
    };
    let mut connected: Vec<(String, String)> = done
        .of_type("skillConnected")
        .iter()
        .map(|e| {
            let skill = e["skillName"].as_str().unwrap_or("").to_string();
            (expert_of_run(&e["runId"]), skill)
        })
        .collect();
    connected.sort();
    let base = "@perstack/base".to_string();
    assert_eq!(
        connected,
        [
            ("fact-checker".to_string(), base.clone()),
            ("fact-checker".to_string(), "checker".to_string()),
            ("lead".to_string(), base.clone()),
            ("lead".to_string(), base.clone()),
            ("researcher".to_string(), base.clone()),
            ("researcher".to_string(), base.clone()),
            ("writer".to_string(), base),
        ]
    );
    // Each segment's skills are disconnected when it ends: as many as were connected.
    assert_eq!(
        done.of_type("skillDisconnected").len(),
        connected.len(),
        "{:?}",
        done.of_type("skillDisconnected")
    );

    // The lead hands out two delegations in one step and resumes once both are back.
    assert_eq!(
        types_of(events, "lead"),
        [
            "startRun@1",
            "startGeneration@1",
            "callTools@1",
            "callDelegate@1",
            "stopRunByDelegate@1",
            // After the researcher's nested work (steps 2–6) and the writer's (2–3).
            "startRun@7",
            "finishAllToolCalls@7",
            "continueToNextStep@7",
            "startGeneration@8",
            "completeRun@8",
        ]
    );
    // Both children started before either finished: they ran concurrently.
    let index = |key: &str, ty: &str| {
        events
            .iter()
            .position(|e| e["expertKey"] == key && e["type"] == ty)
            .unwrap_or_else(|| panic!("no {ty} of {key}"))
    };
    let first_done = index("researcher", "completeRun").min(index("writer", "completeRun"));
    assert!(index("researcher", "startRun") < first_done);
    assert!(index("writer", "startRun") < first_done);

    // Nested: the researcher's own delegate ran its skill in its own container.
    assert_eq!(
        types_of(events, "fact-checker"),
        [
            "startRun@3",
            "startGeneration@3",
            "callTools@3",
            "resolveToolResults@3",
            "finishToolCall@3",
            "continueToNextStep@3",
            "startGeneration@4",
            "completeRun@4",
        ]
    );
    assert_eq!(done.tool_result("echo"), "checked: water is wet");
    // Each child's events carry its own run id, and the child points back at its parent.
    let child_start = &events[index("fact-checker", "startRun")];
    let parent_stop = events
        .iter()
        .rfind(|e| e["expertKey"] == "researcher" && e["type"] == "stopRunByDelegate")
        .expect("researcher stopped for its delegate");
    assert_eq!(
        child_start["initialCheckpoint"]["delegatedBy"]["checkpointId"],
        parent_stop["checkpoint"]["id"]
    );
    assert_ne!(child_start["runId"], parent_stop["runId"]);

    // The writer's base skill wrote into the shared workspace.
    let draft = std::fs::read_to_string(run.workspace.path().join("intro.md")).expect("draft");
    assert_eq!(draft, "# Intro\n");

    // The answers came back as the lead's tool results, in call order.
    let finish = events
        .iter()
        .find(|e| e["expertKey"] == "lead" && e["type"] == "finishAllToolCalls")
        .expect("finishAllToolCalls");
    let results: Vec<(String, String)> = finish["newMessages"][0]["contents"]
        .as_array()
        .expect("tool results")
        .iter()
        .map(|p| {
            (
                p["toolName"].as_str().unwrap_or("").to_string(),
                p["contents"][0]["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("researcher".to_string(), "research: verified".to_string()),
            ("writer".to_string(), "draft written".to_string()),
        ]
    );
    let complete = events
        .iter()
        .find(|e| e["expertKey"] == "lead" && e["type"] == "completeRun")
        .expect("lead completed");
    assert_eq!(
        complete["text"],
        "Research says verified; the draft is in intro.md."
    );

    // Every run segment — the lead's two, the researcher's two, the others' one each — is stored
    // with its own run setting: its Expert, and a child's query.
    let runs = run
        .workspace
        .path()
        .join("perstack/jobs")
        .join(&run.guard.job_id)
        .join("runs");
    let mut segments: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["type"] == "startRun")
        .map(|e| {
            (
                e["runId"].as_str().unwrap_or("").to_string(),
                e["expertKey"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(segments.len(), 6, "{segments:?}");
    for (run_id, expert) in &segments {
        let setting = read_json(&runs.join(run_id).join("run-setting.json"));
        assert_eq!(setting["runId"], run_id.as_str());
        assert_eq!(&setting["expertKey"], expert.as_str());
        assert_eq!(setting["providerConfig"]["providerName"], "mock");
    }
    segments.retain(|(_, expert)| expert == "fact-checker");
    let asked = events
        .iter()
        .find(|e| e["expertKey"] == "researcher" && e["type"] == "callDelegate")
        .expect("the researcher delegated");
    let setting = read_json(&runs.join(&segments[0].0).join("run-setting.json"));
    assert_eq!(
        setting["input"]["text"],
        asked["toolCalls"][0]["args"]["query"]
    );
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}
