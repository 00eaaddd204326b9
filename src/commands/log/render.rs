//! `log`'s output: the readable text (the job, what each run did, the events asked for) and the
//! JSON object (upstream's keys, with `runs` filled in).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::filter::{DELEGATION_TYPES, ERROR_TYPES, TOOL_TYPES};
use super::history::{History, number};
use super::overview::{RunOverview, quoted, text, user_texts};

/// What one `log` command shows.
pub(crate) struct View<'a> {
    /// The job.
    pub history: &'a History,
    /// Whether it was chosen as the latest.
    pub latest: bool,
    /// Where it is stored.
    pub storage: String,
    /// Its runs.
    pub runs: Vec<RunOverview>,
    /// The events shown (`None`: the overview alone).
    pub events: Option<Vec<&'a Value>>,
    /// How many events matched before paging.
    pub matched: usize,
    /// `--checkpoint`: the checkpoint.
    pub checkpoint: Option<Value>,
    /// `--messages`.
    pub messages: bool,
    /// `--summary`.
    pub summary: bool,
}

/// The text output.
pub(crate) fn text_view(view: &View) -> String {
    let mut out = String::new();
    header(&mut out, view);
    if let Some(checkpoint) = &view.checkpoint {
        checkpoint_block(&mut out, checkpoint, view.messages);
    }
    if view.summary {
        summary_block(&mut out, view);
    }
    match &view.events {
        None => runs_block(&mut out, &view.runs),
        Some(events) => events_block(&mut out, events, view.matched),
    }
    out
}

fn header(out: &mut String, view: &View) {
    let h = view.history;
    if view.latest {
        out.push_str("(showing the latest job; --job ID for another)\n");
    }
    let status = h.job.as_ref().map_or("unknown".to_string(), |j| {
        serde_json::to_value(j.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    });
    let _ = writeln!(
        out,
        "Job {} ({status}), coordinator {}",
        h.job_id,
        h.coordinator()
    );
    let busy = busy_ms(&view.runs);
    let _ = writeln!(
        out,
        "Started {} UTC; {} in the agent loop over {} run{}",
        date_time(h.started_at()),
        duration(busy),
        view.runs.len(),
        if view.runs.len() == 1 { "" } else { "s" }
    );
    if let Some(job) = &h.job {
        let u = &job.usage;
        let _ = writeln!(
            out,
            "Steps {}; tokens {} ({} in, {} out)",
            job.total_steps, u.total_tokens, u.input_tokens, u.output_tokens
        );
    }
    let _ = writeln!(
        out,
        "Continue it: perstack-sandbox run {} --continue-job {} \"…\"",
        h.coordinator(),
        h.job_id
    );
    let _ = writeln!(out, "Stored in {}\n", view.storage);
}

fn runs_block(out: &mut String, runs: &[RunOverview]) {
    out.push_str("What each Expert did:\n");
    for run in runs {
        let indent = "  ".repeat(run.depth + 1);
        let by = run
            .delegated_by
            .as_ref()
            .map(|b| format!(" (for {b})"))
            .unwrap_or_default();
        let steps = if run.steps.0 == run.steps.1 {
            format!("step {}", run.steps.0)
        } else {
            format!("steps {}–{}", run.steps.0, run.steps.1)
        };
        let _ = writeln!(
            out,
            "{indent}{} {}{by}, {steps}, {} tokens, {} (run {})",
            time_of_day(run.span.0),
            run.expert_key,
            run.tokens,
            duration(run.span.1.saturating_sub(run.span.0)),
            run.run_id
        );
        let more = format!("{indent}    ");
        let _ = writeln!(out, "{more}{}", run.input);
        if !run.tools.is_empty() {
            let tools: Vec<String> = run
                .tools
                .iter()
                .map(|(name, n)| {
                    if *n == 1 {
                        name.clone()
                    } else {
                        format!("{name} ×{n}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{more}tools: {}", tools.join(", "));
        }
        for (delegate, query) in &run.delegations {
            let _ = writeln!(out, "{more}delegated to {delegate}: {}", quoted(query, 80));
        }
        for error in &run.errors {
            let _ = writeln!(out, "{more}error: {error}");
        }
        let _ = writeln!(out, "{more}{}", run.outcome);
    }
}

fn checkpoint_block(out: &mut String, checkpoint: &Value, messages: bool) {
    let _ = writeln!(out, "Checkpoint: {}", text(checkpoint, "id"));
    let _ = writeln!(out, "Status: {}", text(checkpoint, "status"));
    let _ = writeln!(out, "Step: {}", number(checkpoint, "stepNumber"));
    let _ = writeln!(out, "Expert: {}", text(&checkpoint["expert"], "key"));
    if messages {
        out.push_str("\nMessages:\n");
        for message in checkpoint["messages"].as_array().into_iter().flatten() {
            let first = message["contents"]
                .as_array()
                .into_iter()
                .flatten()
                .next()
                .map(|p| match p["text"].as_str() {
                    Some(t) => quoted(t, 100),
                    None => format!("({})", text(p, "type")),
                })
                .unwrap_or_default();
            let _ = writeln!(out, "  [{}] {first}", text(message, "type"));
        }
    }
    out.push('\n');
}

fn summary_block(out: &mut String, view: &View) {
    let s = counts(view);
    out.push_str("Summary:\n");
    let _ = writeln!(out, "  Total Events: {}", s["totalEvents"]);
    let _ = writeln!(out, "  Errors: {}", s["errorCount"]);
    let _ = writeln!(out, "  Tool Calls: {}", s["toolCallCount"]);
    let _ = writeln!(out, "  Delegations: {}", s["delegationCount"]);
    if let Some(range) = s.get("stepRange") {
        let _ = writeln!(out, "  Step Range: {} - {}", range["min"], range["max"]);
    }
    out.push('\n');
}

fn events_block(out: &mut String, events: &[&Value], matched: usize) {
    let rule = "─".repeat(50);
    let _ = writeln!(out, "Events:\n{rule}");
    for event in events {
        let kind = text(event, "type");
        let _ = writeln!(
            out,
            "{:<34} {}",
            format!(
                "[Step {}] {kind} ({})",
                number(event, "stepNumber"),
                text(event, "expertKey")
            ),
            time_of_day(number(event, "timestamp"))
        );
        for line in details(event) {
            let _ = writeln!(out, "  {line}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{rule}");
    let shown = events.len();
    if matched > shown {
        let _ = writeln!(
            out,
            "(showing {shown} of {matched} matched events)\nUse --take and --offset to page, or --take 0 for all"
        );
    }
}

/// The lines under an event's header.
fn details(event: &Value) -> Vec<String> {
    let calls = || event["toolCalls"].as_array().cloned().unwrap_or_default();
    match text(event, "type").as_str() {
        "startRun" => user_texts(event)
            .into_iter()
            .map(|q| format!("Query: {}", quoted(q, 60)))
            .collect(),
        "callInteractiveTool" => vec![format!(
            "{} [{}] {}",
            text(&event["toolCall"], "toolName"),
            text(&event["toolCall"], "skillName"),
            event["toolCall"]["args"]
        )],
        "callTools" => calls()
            .iter()
            .map(|c| {
                format!(
                    "{} [{}] {}",
                    text(c, "toolName"),
                    text(c, "skillName"),
                    c["args"]
                )
            })
            .collect(),
        "callDelegate" => calls()
            .iter()
            .map(|c| {
                format!(
                    "Delegate to: {} {}",
                    text(c, "toolName"),
                    quoted(&text(&c["args"], "query"), 60)
                )
            })
            .collect(),
        "resolveToolResults" => event["toolResults"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let t = r["result"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|p| p["text"].as_str())
                    .unwrap_or("");
                let mark = if t.to_lowercase().starts_with("error") {
                    "✗"
                } else {
                    "✓"
                };
                format!("{mark} {}: {}", text(r, "toolName"), quoted(t, 40))
            })
            .collect(),
        "stopRunByError" => vec![
            format!("Error: {}", text(&event["error"], "name")),
            format!("Message: {}", text(&event["error"], "message")),
            format!("Retryable: {}", event["error"]["isRetryable"]),
        ],
        "completeRun" => vec![format!("Result: {}", quoted(&text(event, "text"), 80))],
        "retry" => vec![format!("Reason: {}", text(event, "reason"))],
        _ => Vec::new(),
    }
}

/// Upstream's `summary` over the shown events.
fn counts(view: &View) -> Value {
    let events: Vec<&Value> = match &view.events {
        Some(events) => events.clone(),
        None => view.history.events.iter().collect(),
    };
    let of = |types: &[&str]| {
        events
            .iter()
            .filter(|e| types.contains(&text(e, "type").as_str()))
            .count()
    };
    let steps: Vec<u64> = events.iter().map(|e| number(e, "stepNumber")).collect();
    let mut summary = json!({
        "totalEvents": events.len(),
        "errorCount": of(&ERROR_TYPES),
        "toolCallCount": of(&TOOL_TYPES[..1]),
        "delegationCount": of(&DELEGATION_TYPES[..1]),
    });
    if let (Some(min), Some(max)) = (steps.iter().min(), steps.iter().max()) {
        summary["stepRange"] = json!({"min": min, "max": max});
    }
    summary
}

/// The JSON output: upstream's keys in its order, with `runs` (which upstream never fills).
pub(crate) fn json_view(view: &View) -> Value {
    let h = view.history;
    let job = match &h.job {
        Some(job) => serde_json::to_value(job).unwrap_or(Value::Null),
        None => {
            json!({"id": h.job_id, "coordinatorExpertKey": h.coordinator(), "startedAt": h.started_at()})
        }
    };
    let events: Vec<&Value> = match &view.events {
        Some(events) => events.clone(),
        None => Vec::new(),
    };
    let mut out = json!({
        "job": job,
        "events": events,
        "summary": counts(view),
        "runs": view.runs,
    });
    if let Some(checkpoint) = &view.checkpoint {
        out["checkpoint"] = checkpoint.clone();
    }
    if view.latest {
        out["isLatestJob"] = Value::Bool(true);
    }
    out["storagePath"] = Value::String(view.storage.clone());
    out["totalEventsBeforeLimit"] = json!(view.matched);
    out["matchedAfterPagination"] = json!(events.len());
    out
}

/// Milliseconds of work: the union of the runs' spans (waiting for the user is not work).
fn busy_ms(runs: &[RunOverview]) -> u64 {
    let mut spans: Vec<(u64, u64)> = runs.iter().map(|r| r.span).collect();
    spans.sort_unstable();
    let mut busy = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in spans {
        match current {
            Some((s, e)) if start <= e => current = Some((s, e.max(end))),
            Some((s, e)) => {
                busy += e - s;
                current = Some((start, end));
            }
            None => current = Some((start, end)),
        }
    }
    busy + current.map_or(0, |(s, e)| e - s)
}

fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// `YYYY-MM-DD HH:MM:SS`, UTC.
fn date_time(ms: u64) -> String {
    let stamp =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string();
    stamp.trim_end_matches('Z').replacen('T', " ", 1)
}

/// `HH:MM:SS`, UTC.
fn time_of_day(ms: u64) -> String {
    date_time(ms).split(' ').nth(1).unwrap_or("").to_string()
}
