//! Real provider clients, end to end through Docker: the runtime container talks to the mock
//! LLM server on the host (through the bridge gateway) in each vendor's wire format.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::mock_llm::{MockLlm, Recorded, Turn};
use crate::support::{Finished, TestRun, finished, read_until, require_docker};

const INSTRUCTION: &str = "You keep the user's notes in the workspace.";

/// One provider under test.
struct Case {
    provider: &'static str,
    model: &'static str,
    /// Empty when the provider needs no key.
    key_var: &'static str,
    base_var: &'static str,
    /// What the SDK's base URL ends with (the path the client appends to).
    base_path: &'static str,
    /// Where the requests must go.
    path: &'static str,
    /// Extra `[provider.setting]` lines.
    setting: &'static str,
}

const ANTHROPIC: Case = Case {
    provider: "anthropic",
    model: "claude-sonnet-4-5",
    key_var: "ANTHROPIC_API_KEY",
    base_var: "ANTHROPIC_BASE_URL",
    base_path: "/v1",
    path: "/v1/messages",
    setting: "",
};

const OPENAI: Case = Case {
    provider: "openai",
    model: "gpt-5",
    key_var: "OPENAI_API_KEY",
    base_var: "OPENAI_BASE_URL",
    base_path: "/v1",
    path: "/v1/chat/completions",
    setting: "",
};

const GOOGLE: Case = Case {
    provider: "google",
    model: "gemini-2.5-flash",
    key_var: "GOOGLE_GENERATIVE_AI_API_KEY",
    base_var: "GOOGLE_GENERATIVE_AI_BASE_URL",
    base_path: "/v1beta",
    path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    setting: "",
};

const DEEPSEEK: Case = Case {
    provider: "deepseek",
    model: "deepseek-chat",
    key_var: "DEEPSEEK_API_KEY",
    base_var: "DEEPSEEK_BASE_URL",
    base_path: "/v1",
    path: "/v1/chat/completions",
    setting: "",
};

const AZURE: Case = Case {
    provider: "azure-openai",
    model: "notes-gpt-41",
    key_var: "AZURE_API_KEY",
    base_var: "AZURE_BASE_URL",
    base_path: "/openai",
    path: "/openai/deployments/notes-gpt-41/chat/completions",
    setting: "useDeploymentBasedUrls = true\napiVersion = \"2024-10-21\"",
};

const OLLAMA: Case = Case {
    provider: "ollama",
    model: "gpt-oss:20b",
    key_var: "",
    base_var: "OLLAMA_BASE_URL",
    base_path: "/api",
    path: "/api/chat",
    setting: "",
};

/// Writes a perstack.toml for `case` (with a custom header and `top` lines) into a temp dir.
fn config(case: &Case, top: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("perstack.toml");
    let text = format!(
        "model = \"{model}\"\n{top}\n\n[provider]\nproviderName = \"{provider}\"\n\n\
         [provider.setting]\nheaders = {{ \"x-e2e-run\" = \"mock-llm\" }}\n{setting}\n\n\
         [experts.\"notes\"]\ninstruction = \"{INSTRUCTION}\"\n",
        model = case.model,
        provider = case.provider,
        setting = case.setting,
    );
    std::fs::write(&path, text).expect("write perstack.toml");
    (dir, path)
}

fn run(case: &Case, config: &std::path::Path, server: &MockLlm) -> TestRun {
    let run = TestRun::with_config(config, "notes").host_env(
        case.base_var,
        &format!("{}{}", server.url_for_containers(), case.base_path),
    );
    if case.key_var.is_empty() {
        run
    } else {
        run.host_env(case.key_var, "sk-e2e-key")
    }
}

fn complete_run_text(done: &Finished) -> String {
    let complete = done.of_type("completeRun");
    assert_eq!(
        complete.len(),
        1,
        "one completeRun; stdout:\n{}",
        done.stdout
    );
    complete[0]["text"].as_str().unwrap_or_default().to_string()
}

/// Every string in a JSON value, concatenated: where the system prompt or a tool result sits
/// differs per wire format, what it says does not.
fn all_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(all_text).collect::<Vec<_>>().join("\n"),
        Value::Object(map) => map.values().map(all_text).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// The first request of a run: step 1 with every tool on offer.
fn assert_common(case: &Case, r: &Recorded) {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, case.path);
    assert_eq!(r.header("x-e2e-run"), Some("mock-llm"), "custom header");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
}

/// A tool call step, then a text answer: the file is written through base-skill, the run
/// completes with the text, and each request is exactly what the vendor's API expects.
fn tool_step_then_answer(case: &Case) -> (Vec<Recorded>, Finished, tempfile::TempDir) {
    let server = MockLlm::start(vec![
        Turn::tool_call(
            "writeTextFile",
            json!({"path": "note.txt", "text": "milk, eggs"}),
        )
        .thinking("The user wants a note."),
        Turn::text("The note is saved."),
    ]);
    let (dir, path) = config(case, "reasoningBudget = \"medium\"");
    let run = run(case, &path, &server);
    let done = run.run();
    done.assert_code(0);
    assert_eq!(complete_run_text(&done), "The note is saved.");
    assert_eq!(
        std::fs::read_to_string(run.workspace.path().join("note.txt")).expect("note.txt"),
        "milk, eggs"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for r in &requests {
        assert_common(case, r);
    }
    // The system prompt carries the instruction; the second request carries the tool result.
    assert!(all_text(&requests[0].json()).contains(INSTRUCTION));
    assert!(all_text(&requests[1].json()).contains("milk, eggs"));
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
    (requests, done, dir)
}

/// The tool's declaration, found by name in a list of declarations.
fn tool<'a>(tools: &'a Value, name_of: impl Fn(&Value) -> &Value, name: &str) -> &'a Value {
    tools
        .as_array()
        .expect("tools array")
        .iter()
        .find(|t| name_of(t) == name)
        .unwrap_or_else(|| panic!("no tool {name} in {tools}"))
}

#[test]
fn anthropic_tool_call_then_answer_over_the_messages_api() {
    if !require_docker() {
        return;
    }
    let (requests, done, _dir) = tool_step_then_answer(&ANTHROPIC);
    // The runtime has no route out of its network: every request went through the egress
    // proxy, which let the configured base URL through — and reported it.
    let access = done.of_type("proxyAccess");
    assert!(!access.is_empty(), "no proxyAccess events");
    assert!(
        access
            .iter()
            .all(|a| a["action"] == "allowed" && a["client"] == "runtime"),
        "{access:?}"
    );
    let first = &requests[0];
    assert_eq!(first.header("x-api-key"), Some("sk-e2e-key"));
    assert_eq!(first.header("anthropic-version"), Some("2023-06-01"));
    let body = &first.json();
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 64000);
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 5000})
    );
    assert_eq!(body["tool_choice"], json!({"type": "auto"}));
    assert!(
        body["system"][0]["text"]
            .as_str()
            .is_some_and(|s| s.contains(INSTRUCTION))
    );
    let write = tool(&body["tools"], |t| &t["name"], "writeTextFile");
    assert_eq!(write["input_schema"]["type"], "object");
    assert!(write["input_schema"]["properties"]["path"].is_object());
    assert!(write["description"].as_str().is_some_and(|d| !d.is_empty()));
    // Turn two sends the signed thinking back, then the call and its result.
    let second = requests[1].json();
    let messages = second["messages"].as_array().expect("messages");
    let assistant = &messages[messages.len() - 2];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(
        assistant["content"][0],
        json!({"type": "thinking", "thinking": "The user wants a note.", "signature": "sig-1"})
    );
    assert_eq!(assistant["content"][1]["type"], "tool_use");
    assert_eq!(assistant["content"][1]["id"], "toolu_1_0");
    let result = &messages[messages.len() - 1]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], "toolu_1_0");
}

#[test]
fn openai_tool_call_then_answer_over_chat_completions() {
    if !require_docker() {
        return;
    }
    let (requests, _done, _dir) = tool_step_then_answer(&OPENAI);
    let first = &requests[0];
    assert_eq!(first.header("authorization"), Some("Bearer sk-e2e-key"));
    let body = &first.json();
    assert_eq!(body["model"], "gpt-5");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["reasoning_effort"], "medium");
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .is_some_and(|s| s.contains(INSTRUCTION))
    );
    let write = tool(&body["tools"], |t| &t["function"]["name"], "writeTextFile");
    assert_eq!(write["type"], "function");
    assert_eq!(write["function"]["parameters"]["type"], "object");
    assert!(write["function"]["parameters"]["properties"]["text"].is_object());
    // Turn two: the assistant's call with its arguments as a JSON string, then the result.
    let second = requests[1].json();
    let messages = second["messages"].as_array().expect("messages");
    let assistant = &messages[messages.len() - 2];
    assert_eq!(assistant["tool_calls"][0]["id"], "call_1_0");
    let args: Value = serde_json::from_str(
        assistant["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .expect("arguments string"),
    )
    .expect("arguments JSON");
    assert_eq!(args, json!({"path": "note.txt", "text": "milk, eggs"}));
    assert_eq!(messages[messages.len() - 1]["role"], "tool");
    assert_eq!(messages[messages.len() - 1]["tool_call_id"], "call_1_0");
}

#[test]
fn google_tool_call_then_answer_over_stream_generate_content() {
    if !require_docker() {
        return;
    }
    let (requests, _done, _dir) = tool_step_then_answer(&GOOGLE);
    let first = &requests[0];
    assert_eq!(first.query, "alt=sse");
    assert_eq!(first.header("x-goog-api-key"), Some("sk-e2e-key"));
    let body = &first.json();
    assert_eq!(
        body["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 5000, "includeThoughts": true})
    );
    assert!(
        body["systemInstruction"]["parts"][0]["text"]
            .as_str()
            .is_some_and(|s| s.contains(INSTRUCTION))
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    let declarations = &body["tools"][0]["functionDeclarations"];
    let write = tool(declarations, |t| &t["name"], "writeTextFile");
    assert_eq!(write["parameters"]["type"], "object");
    assert!(write["parameters"]["properties"]["path"].is_object());
    // Turn two: the model's functionCall, then the functionResponse paired by name.
    let second = requests[1].json();
    let contents = second["contents"].as_array().expect("contents");
    let model = &contents[contents.len() - 2];
    assert_eq!(model["role"], "model");
    let call = model["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p.get("functionCall").is_some())
        .expect("functionCall part");
    assert_eq!(call["functionCall"]["name"], "writeTextFile");
    let response = &contents[contents.len() - 1]["parts"][0]["functionResponse"];
    assert_eq!(response["name"], "writeTextFile");
}

#[test]
fn retries_429_529_and_500_honouring_retry_after() {
    if !require_docker() {
        return;
    }
    let server = MockLlm::start(vec![
        Turn::error(429, "Rate limit exceeded").header("retry-after", "1"),
        Turn::error(529, "Overloaded"),
        Turn::error(500, "Internal server error"),
        Turn::text("Recovered."),
    ]);
    let (_dir, path) = config(&ANTHROPIC, "reasoningBudget = \"none\"\nmaxRetries = 3");
    let done = run(&ANTHROPIC, &path, &server).run();
    done.assert_code(0);
    assert_eq!(complete_run_text(&done), "Recovered.");
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    let gap = |i: usize| requests[i + 1].at.duration_since(requests[i].at);
    assert!(
        gap(0) >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured ({:?})",
        gap(0)
    );
    // Without Retry-After: exponential backoff from 1 s (±25 % jitter): ≥0.75 s, then ≥1.5 s.
    assert!(gap(1) >= Duration::from_millis(750), "{:?}", gap(1));
    assert!(gap(2) >= Duration::from_millis(1500), "{:?}", gap(2));
    assert!(done.of_type("stopRunByError").is_empty());
    // A `retry` event before each new attempt says why and how long it waits.
    let reasons: Vec<&str> = done
        .of_type("retry")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("Rate limit exceeded"), "{reasons:?}");
    assert!(
        reasons[0].contains("in 1000 ms"),
        "Retry-After: {reasons:?}"
    );
    assert!(reasons[1].contains("Overloaded"), "{reasons:?}");
    assert!(reasons[2].contains("Internal server error"), "{reasons:?}");
}

#[test]
fn a_persistent_529_stops_the_run_after_max_retries() {
    if !require_docker() {
        return;
    }
    let server = MockLlm::start(vec![
        Turn::error(529, "Overloaded"),
        Turn::error(529, "Overloaded"),
        Turn::error(529, "Overloaded"),
    ]);
    let (_dir, path) = config(&ANTHROPIC, "reasoningBudget = \"none\"\nmaxRetries = 1");
    let done = run(&ANTHROPIC, &path, &server).run();
    let stop = done.of_type("stopRunByError");
    assert_eq!(
        stop.len(),
        1,
        "stdout:\n{}\nstderr:\n{}",
        done.stdout,
        done.stderr
    );
    assert_eq!(
        stop[0]["error"],
        json!({
            "name": "AI_APICallError",
            "message": "Max retries (1) exceeded: Overloaded",
            "statusCode": 529,
            "isRetryable": false,
        })
    );
    assert_eq!(server.requests().len(), 2, "one try and one retry");
    assert_eq!(server.turns_left(), 1);
}

#[test]
fn deepseek_speaks_chat_completions_with_its_key_and_no_reasoning_parameter() {
    if !require_docker() {
        return;
    }
    let (requests, _done, _dir) = tool_step_then_answer(&DEEPSEEK);
    let first = &requests[0];
    assert_eq!(first.header("authorization"), Some("Bearer sk-e2e-key"));
    assert_eq!(first.json()["model"], "deepseek-chat");
    assert!(first.json().get("reasoning_effort").is_none());
    // Its streamed reasoning_content goes back with the assistant turn of the tool-call loop.
    let second = requests[1].json();
    let messages = second["messages"].as_array().expect("messages");
    let assistant = &messages[messages.len() - 2];
    assert_eq!(assistant["reasoning_content"], "The user wants a note.");
}

#[test]
fn azure_openai_deployment_urls_carry_the_api_version_and_the_api_key_header() {
    if !require_docker() {
        return;
    }
    let (requests, _done, _dir) = tool_step_then_answer(&AZURE);
    for r in &requests {
        assert_eq!(r.query, "api-version=2024-10-21");
        assert_eq!(r.header("api-key"), Some("sk-e2e-key"));
        assert_eq!(r.header("authorization"), None);
        assert!(r.json().get("reasoning_effort").is_none());
    }
}

#[test]
fn ollama_native_chat_with_think_and_no_key() {
    if !require_docker() {
        return;
    }
    let (requests, _done, _dir) = tool_step_then_answer(&OLLAMA);
    let first = &requests[0];
    let body = first.json();
    assert_eq!(first.header("authorization"), None);
    assert_eq!(body["think"], true);
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    let write = tool(&body["tools"], |t| &t["function"]["name"], "writeTextFile");
    assert_eq!(write["function"]["parameters"]["type"], "object");
    let second = requests[1].json();
    let messages = second["messages"].as_array().expect("messages");
    let assistant = &messages[messages.len() - 2];
    assert_eq!(assistant["thinking"], "The user wants a note.");
    assert_eq!(
        assistant["tool_calls"][0]["function"]["arguments"],
        json!({"path": "note.txt", "text": "milk, eggs"})
    );
    let result = &messages[messages.len() - 1];
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_name"], "writeTextFile");
}

#[test]
fn anthropic_thinking_streams_to_the_caller_while_the_model_is_still_answering() {
    if !require_docker() {
        return;
    }
    // Ten thinking chunks 300 ms apart: the whole answer takes about 4 s.
    let server = MockLlm::start(vec![
        Turn::text("All done.")
            .thinking("one two three four five six seven eight nine ten")
            .delay(Duration::from_millis(300)),
    ]);
    let (_dir, path) = config(&ANTHROPIC, "reasoningBudget = \"low\"");
    let run = run(&ANTHROPIC, &path, &server);
    let mut child = run.spawn();
    let seen = read_until(&mut child, "\"streamReasoning\"", Duration::from_secs(120));
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        !seen.contains("completeRun"),
        "the run ended first:\n{seen}"
    );
    assert!(
        server.requests().len() == 1 && child.try_wait().expect("poll").is_none(),
        "the first delta must arrive while the answer is still streaming"
    );
    let output = child.wait_with_output().expect("wait");
    let mut stdout = seen.into_bytes();
    stdout.extend_from_slice(&output.stdout);
    let done = finished(output.status.code(), stdout, output.stderr);
    done.assert_code(0);
    let deltas: Vec<&str> = done
        .of_type("streamReasoning")
        .iter()
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(deltas.len(), 10, "{deltas:?}");
    assert_eq!(
        deltas.concat(),
        "one two three four five six seven eight nine ten"
    );
    assert_eq!(complete_run_text(&done), "All done.");
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}
