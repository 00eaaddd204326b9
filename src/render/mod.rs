//! What a person (or a pipe) sees on stdout during `run`.
//!
//! One writer task owns stdout. With `--json` (the default when stdout is not a terminal) it
//! writes each event as one JSON line — relayed runtime lines byte for byte. Otherwise it renders
//! a compact human view; `--verbose` adds build output, skill stderr and generation starts.

use std::io::IsTerminal;

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::event::{
    BuildStage, ContainerStatus, Event, EventBody, RunPayload, RuntimePayload, ToolResult,
};

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// JSON Lines.
    Json,
    /// The human view.
    Human {
        /// Show everything.
        verbose: bool,
        /// Use ANSI styling.
        color: bool,
    },
}

impl Mode {
    /// `--json` if asked for or stdout is not a terminal; the human view otherwise.
    pub fn detect(json: bool, verbose: bool) -> Mode {
        let stdout = std::io::stdout();
        if json || !stdout.is_terminal() {
            Mode::Json
        } else {
            Mode::Human {
                verbose,
                color: std::env::var_os("NO_COLOR").is_none(),
            }
        }
    }
}

enum Item {
    /// An event made here: serialized for JSON.
    Event(Event),
    /// A line relayed from the runtime: written as is for JSON, rendered from its parse.
    Relayed(String, Option<Event>),
}

/// A handle to the output writer; cheap to clone.
#[derive(Clone)]
pub struct Output {
    tx: mpsc::UnboundedSender<Item>,
}

impl Output {
    /// Starts the writer on `out`; await the handle after dropping every `Output` to flush.
    pub fn spawn<W>(mode: Mode, out: W) -> (Output, tokio::task::JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        let task = tokio::spawn(async move {
            let mut out = out;
            while let Some(item) = rx.recv().await {
                let text = match (&item, mode) {
                    (Item::Event(e), Mode::Json) => Some(e.to_line() + "\n"),
                    (Item::Relayed(line, _), Mode::Json) => Some(format!("{line}\n")),
                    (Item::Event(e), Mode::Human { verbose, color })
                    | (Item::Relayed(_, Some(e)), Mode::Human { verbose, color }) => {
                        render(e, verbose).map(|t| style(&t, color) + "\n")
                    }
                    (Item::Relayed(_, None), Mode::Human { .. }) => None,
                };
                if let Some(text) = text {
                    if out.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                    // Events are consumed live (CI logs, pipes): never sit on a buffer.
                    if out.flush().await.is_err() {
                        break;
                    }
                }
            }
        });
        (Output { tx }, task)
    }

    /// Emits an event made by the controller.
    pub fn event(&self, event: Event) {
        let _ = self.tx.send(Item::Event(event));
    }

    /// Relays a line from the runtime, with its parse when it is one of our events.
    pub fn relayed(&self, line: String, event: Option<Event>) {
        let _ = self.tx.send(Item::Relayed(line, event));
    }
}

const MAX_INLINE: usize = 160;

fn clip(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', "⏎");
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

fn result_text(result: &ToolResult) -> String {
    result
        .result
        .iter()
        .map(|p| match p.as_text() {
            Some(t) => t.to_string(),
            None => "[binary]".to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The human view of one event, or `None` if it has none at this verbosity. Lines start with a
/// marker (`▸` machinery, `●` tool call, `↳` result, `✔`/`✘`/`■` the end) that [`style`] colors.
pub fn render(event: &Event, verbose: bool) -> Option<String> {
    match &event.body {
        EventBody::Runtime(payload) => match payload {
            RuntimePayload::InitializeRuntime {
                expert_name,
                model,
                max_steps,
                ..
            } => Some(format!(
                "▸ running {expert_name} · model {model} · up to {} steps",
                max_steps
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "∞".into())
            )),
            RuntimePayload::SkillConnected {
                skill_name,
                server_info,
                total_duration_ms,
                ..
            } => Some(format!(
                "▸ skill {skill_name} connected{}{}",
                server_info
                    .as_ref()
                    .map(|s| format!(" ({} {})", s.name, s.version))
                    .unwrap_or_default(),
                total_duration_ms
                    .map(|ms| format!(" in {ms} ms"))
                    .unwrap_or_default()
            )),
            RuntimePayload::SkillStarting { .. } | RuntimePayload::SkillDisconnected { .. } => None,
            RuntimePayload::SkillStderr {
                skill_name,
                message,
            } => verbose.then(|| format!("  [{skill_name}] {message}")),
            RuntimePayload::DockerBuildProgress {
                stage,
                service,
                message,
                ..
            } => match stage {
                BuildStage::Complete | BuildStage::Error => Some(format!("▸ {service}: {message}")),
                // Without --verbose only the controller's own "Building image …" line shows;
                // builder output lines are only emitted with --verbose.
                BuildStage::Building | BuildStage::Pulling
                    if verbose || message.starts_with("Building image") =>
                {
                    Some(format!("  {service}: {message}"))
                }
                _ => None,
            },
            RuntimePayload::DockerContainerStatus {
                status,
                service,
                message,
            } => match status {
                ContainerStatus::Error | ContainerStatus::Unhealthy => Some(format!(
                    "✘ {service}: {}",
                    message.as_deref().unwrap_or("container failed")
                )),
                _ if verbose => Some(format!(
                    "  {service}: {}",
                    message
                        .clone()
                        .unwrap_or_else(|| format!("{status:?}").to_lowercase())
                )),
                _ => None,
            },
            RuntimePayload::ProxyAccess {
                action,
                domain,
                port,
                reason,
            } => verbose.then(|| {
                format!(
                    "  proxy {action:?} {domain}:{port}{}",
                    reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )
                .to_lowercase()
            }),
        },
        EventBody::Run {
            expert_key,
            step_number,
            payload,
        } => match payload {
            RunPayload::StartGeneration { .. } => {
                verbose.then(|| format!("  {expert_key} · step {step_number} · thinking…"))
            }
            RunPayload::CallTools {
                tool_calls,
                new_message,
                ..
            } => {
                let mut lines: Vec<String> = new_message
                    .contents
                    .iter()
                    .filter_map(|p| p.as_text())
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| format!("  {}", clip(t, MAX_INLINE)))
                    .collect();
                for call in tool_calls {
                    let args = match &call.args {
                        Value::Object(map) if map.is_empty() => String::new(),
                        other => format!(" {}", clip(&other.to_string(), MAX_INLINE)),
                    };
                    lines.push(format!("● step {step_number} · {}{args}", call.tool_name));
                }
                Some(lines.join("\n"))
            }
            RunPayload::ResolveToolResults { tool_results } => Some(
                tool_results
                    .iter()
                    .map(|r| format!("  ↳ {}", clip(&result_text(r), MAX_INLINE)))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            RunPayload::Retry { reason, .. } => Some(format!("  ↻ retry: {reason}")),
            RunPayload::CompleteRun {
                text, checkpoint, ..
            } => Some(format!(
                "✔ {expert_key} completed in {step_number} step{} ({} tokens)\n\n{text}",
                if *step_number == 1 { "" } else { "s" },
                checkpoint.usage.total_tokens
            )),
            RunPayload::StopRunByError { error, .. } => Some(format!(
                "✘ {expert_key} stopped by error: {}{}",
                error.message,
                error
                    .status_code
                    .map(|s| format!(" (HTTP {s})"))
                    .unwrap_or_default()
            )),
            RunPayload::StopRunByExceededMaxSteps { .. } => Some(format!(
                "■ {expert_key} stopped: reached the step limit ({step_number})"
            )),
            RunPayload::StopRunByInteractiveTool { .. } => Some(format!(
                "■ {expert_key} is waiting for your answer to an interactive tool"
            )),
            // Streaming deltas and the other state events have no line of their own.
            _ => None,
        },
    }
}

/// Colors the line markers when `color` is on.
pub fn style(text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    text.lines()
        .map(|line| {
            let code = match line.chars().next() {
                Some('✔') => "1;32",
                Some('✘') => "1;31",
                Some('■') => "1;33",
                Some('●') => "1;36",
                Some('▸') => "2",
                _ if line.starts_with("  ↳") || line.starts_with("  [") => "2",
                _ => return line.to_string(),
            };
            format!("\x1b[{code}m{line}\x1b[0m")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
