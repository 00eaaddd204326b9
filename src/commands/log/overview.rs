//! What each run of a job did, read from its events: whose run it was and for whom, what it was
//! asked, the tools it called, whom it delegated to (named by the delegate's own run, not
//! upstream's "Delegate to: unknown"), its errors, how it ended, its tokens and its time.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use super::history::number;

/// One run segment of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunOverview {
    /// The run.
    pub run_id: String,
    /// Whose run.
    pub expert_key: String,
    /// The Expert that delegated it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegated_by: Option<String>,
    /// How deep in delegation: 0 for the coordinator.
    pub depth: usize,
    /// What started it.
    pub input: String,
    /// Tools called (delegates and interactive tools apart), with their counts.
    pub tools: IndexMap<String, usize>,
    /// Delegations: the delegate and its query.
    pub delegations: Vec<(String, String)>,
    /// Errors and retries.
    pub errors: Vec<String>,
    /// How it ended.
    pub outcome: String,
    /// Steps, first and last.
    pub steps: (u64, u64),
    /// Tokens this run used.
    pub tokens: u64,
    /// First and last event, ms since the epoch.
    pub span: (u64, u64),
}

/// The runs of `events` (a job's, in order), in the order they started.
pub(crate) fn runs(events: &[Value]) -> Vec<RunOverview> {
    let mut order: Vec<String> = Vec::new();
    let mut by_run: IndexMap<String, Vec<&Value>> = IndexMap::new();
    for event in events {
        let run = text(event, "runId");
        if !by_run.contains_key(&run) {
            order.push(run.clone());
        }
        by_run.entry(run).or_default().push(event);
    }
    // Who each delegation's call went to: the child run that names the call.
    let mut delegate_of_call: IndexMap<String, String> = IndexMap::new();
    let mut parent_run: IndexMap<String, String> = IndexMap::new();
    for (run, events) in &by_run {
        if let Some(start) = events.iter().find(|e| text(e, "type") == "startRun") {
            let by = &start["initialCheckpoint"]["delegatedBy"];
            if by.is_object() {
                delegate_of_call.insert(text(by, "toolCallId"), text(start, "expertKey"));
                parent_run.insert(run.clone(), text(by, "runId"));
            }
        }
    }
    let mut overviews: Vec<RunOverview> = Vec::new();
    for run in order {
        let events = &by_run[&run];
        let depth = parent_run.get(&run).map_or(0, |parent| {
            overviews
                .iter()
                .find(|o| &o.run_id == parent)
                .map_or(1, |o| o.depth + 1)
        });
        overviews.push(overview(&run, events, depth, &delegate_of_call));
    }
    overviews
}

fn overview(
    run: &str,
    events: &[&Value],
    depth: usize,
    delegate_of_call: &IndexMap<String, String>,
) -> RunOverview {
    let mut o = skeleton(run, events, depth);
    for event in events {
        record(&mut o, event, delegate_of_call);
    }
    o.tokens = tokens_used(events);
    o
}

/// A run's overview before its events are read: who, how deep, its steps and its span.
fn skeleton(run: &str, events: &[&Value], depth: usize) -> RunOverview {
    let first = events.first();
    let last = events.last();
    RunOverview {
        run_id: run.to_string(),
        expert_key: first.map(|e| text(e, "expertKey")).unwrap_or_default(),
        delegated_by: None,
        depth,
        input: String::new(),
        tools: IndexMap::new(),
        delegations: Vec::new(),
        errors: Vec::new(),
        outcome: "cut off (no final event)".to_string(),
        steps: (
            first.map_or(0, |e| number(e, "stepNumber")),
            last.map_or(0, |e| number(e, "stepNumber")),
        ),
        tokens: 0,
        span: (
            first.map_or(0, |e| number(e, "timestamp")),
            last.map_or(0, |e| number(e, "timestamp")),
        ),
    }
}

/// What one event adds to its run's overview.
fn record(o: &mut RunOverview, event: &Value, delegate_of_call: &IndexMap<String, String>) {
    match text(event, "type").as_str() {
        "startRun" => {
            o.delegated_by = event["initialCheckpoint"]["delegatedBy"]["expert"]["key"]
                .as_str()
                .map(str::to_string);
            o.input = input(event);
        }
        "callTools" => {
            for call in event["toolCalls"].as_array().into_iter().flatten() {
                if !delegate_of_call.contains_key(&text(call, "id")) {
                    *o.tools.entry(text(call, "toolName")).or_default() += 1;
                }
            }
        }
        "callDelegate" => {
            for call in event["toolCalls"].as_array().into_iter().flatten() {
                let delegate = delegate_of_call
                    .get(&text(call, "id"))
                    .cloned()
                    .unwrap_or_else(|| text(call, "toolName"));
                o.tools.shift_remove(&text(call, "toolName"));
                o.delegations.push((delegate, text(&call["args"], "query")));
            }
        }
        "retry" => o.errors.push(format!("retry: {}", retry_reason(event))),
        "stopRunByError" => {
            let error = &event["error"];
            o.errors.push(format!(
                "{}: {}",
                text(error, "name"),
                text(error, "message")
            ));
            o.outcome = format!("stopped by error ({})", text(error, "name"));
        }
        "completeRun" => o.outcome = format!("completed: {}", quoted(&text(event, "text"), 100)),
        "stopRunByInteractiveTool" => o.outcome = asked(event),
        "stopRunByDelegate" => o.outcome = "waited for its delegates".to_string(),
        "stopRunByExceededMaxSteps" => o.outcome = "stopped at maxSteps".to_string(),
        _ => {}
    }
}

/// The tokens a run used: its last checkpoint's total less the total it started from.
fn tokens_used(events: &[&Value]) -> u64 {
    let first = events
        .iter()
        .find(|e| text(e, "type") == "startRun")
        .and_then(|e| e["initialCheckpoint"]["usage"]["totalTokens"].as_u64());
    let last = events
        .iter()
        .filter_map(|e| e["checkpoint"]["usage"]["totalTokens"].as_u64())
        .next_back();
    last.unwrap_or(0).saturating_sub(first.unwrap_or(0))
}

/// The texts of a `startRun` event's user messages, in order.
pub(crate) fn user_texts(start: &Value) -> Vec<&str> {
    start["inputMessages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| text(m, "type") == "userMessage")
        .filter_map(|m| {
            m["contents"]
                .as_array()?
                .iter()
                .find_map(|p| p["text"].as_str())
        })
        .collect()
}

/// What started a run: its query, the user's answer, or its delegates' results.
fn input(start: &Value) -> String {
    let initial = &start["initialCheckpoint"];
    let status = text(initial, "status");
    let user_text = user_texts(start).last().map(|t| t.to_string());
    match (status.as_str(), user_text) {
        ("stoppedByInteractiveTool", _) => {
            let answer = initial["partialToolResults"]
                .as_array()
                .and_then(|r| r.last())
                .and_then(|r| {
                    r["result"]
                        .as_array()?
                        .iter()
                        .find_map(|p| p["text"].as_str())
                })
                .unwrap_or("");
            format!("answer: {}", quoted(answer, 100))
        }
        ("stoppedByDelegate", _) => "resumed with its delegates' results".to_string(),
        (_, Some(query)) => format!("query: {}", quoted(&query, 100)),
        _ => "resumed".to_string(),
    }
}

fn asked(event: &Value) -> String {
    let call = event["checkpoint"]["pendingToolCalls"]
        .as_array()
        .and_then(|c| c.first())
        .or_else(|| event["step"]["pendingToolCalls"].as_array()?.first());
    match call {
        Some(call) => {
            let args = &call["args"];
            let question = args
                .as_object()
                .and_then(|a| a.values().find_map(Value::as_str))
                .map(|q| format!(": {}", quoted(q, 100)))
                .unwrap_or_default();
            format!("waits for the user ({}{question})", text(call, "toolName"))
        }
        None => "waits for the user".to_string(),
    }
}

fn retry_reason(event: &Value) -> String {
    let reason = text(event, "reason");
    match serde_json::from_str::<Value>(&reason) {
        Ok(v) => format!("{}: {}", text(&v, "error"), text(&v, "message")),
        Err(_) => reason,
    }
}

/// A string field (empty when absent).
pub(crate) fn text(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// `text` in quotes, cut to `max` characters with `…`, on one line.
pub(crate) fn quoted(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max {
        format!("\"{}…\"", line.chars().take(max).collect::<String>())
    } else {
        format!("\"{line}\"")
    }
}
