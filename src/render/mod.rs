//! What a person (or a pipe) sees on stdout during `run`.
//!
//! One writer task owns stdout. With `--json` (the default when stdout is not a terminal) it
//! writes each event as one JSON line — relayed runtime lines byte for byte. Otherwise it renders
//! a compact human view; `--verbose` adds build output, skill stderr and generation starts (a
//! skill's stderr line that says a file or module is missing shows always, with a hint).
//!
//! The human view remembers whose run each `runId` is (from its `initializeRuntime`), so in a
//! job of several Experts a skill's or a step's line names the Expert it belongs to; each skill
//! is shown connected once, though every segment of its Expert reports it (docs/skills.md), and
//! again after its server was restarted. A skill's stderr shows with `--verbose`; without it the
//! view keeps each skill's last lines and shows them when its skill host speaks — the server
//! exited, was restarted, could not start (with a hint) or is down — so a skill that fails says
//! why without `--verbose`. It prints the job id first and last, the last time with the command
//! that continues the job, and ends with this run's steps, tokens and time apart from the job's
//! ([`totals`]). On a terminal,
//! image builds show as one live line each ([`progress`]); lines are clipped to its width and
//! `NO_COLOR` turns styling off.

mod progress;
mod totals;

pub(crate) use progress::build_phase;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::contract::supervision::HOST_LINE_PREFIX;
use crate::event::{
    BuildStage, Checkpoint, ContainerStatus, Event, EventBody, Message, RUNTIME_WARNING_PREFIX,
    RunPayload, RuntimePayload, ToolCall, ToolResult,
};

use progress::BuildBars;
use totals::RunStart;

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// JSON Lines.
    Json,
    /// The human view.
    Human {
        /// Show everything.
        verbose: bool,
        /// Use ANSI styling.
        color: bool,
        /// Columns of the terminal: one-line items are clipped to it.
        width: usize,
        /// Draw live progress lines (a terminal that can redraw).
        live: bool,
    },
}

/// Columns assumed when the terminal does not say.
const DEFAULT_WIDTH: usize = 100;

impl Mode {
    /// `--json` if asked for or stdout is not a terminal; the human view otherwise.
    pub(crate) fn detect(json: bool, verbose: bool) -> Mode {
        let stdout = std::io::stdout();
        if json || !stdout.is_terminal() {
            return Mode::Json;
        }
        let term = console::Term::stdout();
        Mode::Human {
            verbose,
            // https://no-color.org: set and not empty.
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            width: term
                .size_checked()
                .map_or(DEFAULT_WIDTH, |(_, cols)| usize::from(cols)),
            live: term.features().is_attended() && std::env::var("TERM").as_deref() != Ok("dumb"),
        }
    }
}

enum Item {
    /// An event made here: serialized for JSON.
    Event(Event),
    /// A line relayed from the runtime: written as is for JSON, rendered from its parse.
    Relayed(String, Option<Event>),
}

/// What a `start` session has shown so far, shared by its turns (each a run of its own): the
/// job's id, what runs, which skills connected, each way to continue, and the run's notes are
/// said once a session, not again every turn.
#[derive(Debug, Clone, Default)]
pub struct SessionLines(Arc<Mutex<HashSet<String>>>);

impl SessionLines {
    /// Whether `key` is new to the session (and now seen).
    pub(crate) fn first_time(&self, key: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_string())
    }

    /// `text` without the lines the session showed already; `None` when nothing is left.
    fn new_lines(&self, text: &str) -> Option<String> {
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| session_key(line).is_none_or(|key| self.first_time(&key)))
            .collect();
        (!kept.is_empty()).then(|| kept.join("\n"))
    }
}

/// What makes a line one a session shows once: the job's id and how to continue it, what
/// runs, and a skill's connection (its time left out). Other lines have none.
fn session_key(line: &str) -> Option<String> {
    if line.starts_with("▸ job ") || line.starts_with("▸ running ") {
        return Some(line.to_string());
    }
    let skill = line.strip_prefix("▸ skill ")?;
    let (who, _) = skill.split_once(" connected")?;
    Some(format!("skill {who}"))
}

/// A handle to the output writer; cheap to clone.
#[derive(Clone)]
pub(crate) struct Output {
    tx: mpsc::UnboundedSender<Item>,
}

/// Which command the human view tells to continue a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Continuing {
    /// `perstack-sandbox run --continue-job …`.
    #[default]
    Run,
    /// `docker run … IMAGE --continue-job …` (a standalone image fixes the Expert).
    Standalone,
}

impl Output {
    /// Starts the writer on `out`; await the handle after dropping every `Output` to flush.
    pub(crate) fn spawn<W>(mode: Mode, out: W) -> (Output, tokio::task::JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Output::spawn_with(mode, out, Continuing::Run, None)
    }

    /// [`Output::spawn`], the human view naming `continuing`'s command to continue a job.
    pub(crate) fn spawn_for<W>(
        mode: Mode,
        out: W,
        continuing: Continuing,
    ) -> (Output, tokio::task::JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Output::spawn_with(mode, out, continuing, None)
    }

    /// [`Output::spawn`] for one turn of a `start` session: the human view leaves out the
    /// session's lines that earlier turns showed ([`SessionLines`]).
    pub(crate) fn spawn_in<W>(
        mode: Mode,
        out: W,
        session: Option<SessionLines>,
    ) -> (Output, tokio::task::JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Output::spawn_with(mode, out, Continuing::Run, session)
    }

    /// Starts the writer on `out` (await the handle after dropping every `Output` to flush):
    /// the human view names `continuing`'s command and leaves out what `session` has shown.
    fn spawn_with<W>(
        mode: Mode,
        out: W,
        continuing: Continuing,
        session: Option<SessionLines>,
    ) -> (Output, tokio::task::JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        let task = tokio::spawn(async move {
            let mut out = out;
            let mut human = HumanView::new(mode);
            human.continuing = continuing;
            while let Some(item) = rx.recv().await {
                let text = match (&item, mode) {
                    (Item::Event(e), Mode::Json) => Some(e.to_line() + "\n"),
                    (Item::Relayed(line, _), Mode::Json) => Some(format!("{line}\n")),
                    (Item::Event(e), Mode::Human { color, .. })
                    | (Item::Relayed(_, Some(e)), Mode::Human { color, .. }) => human
                        .line(e)
                        .and_then(|t| match &session {
                            Some(session) => session.new_lines(&t),
                            None => Some(t),
                        })
                        .map(|t| style(&t, color) + "\n"),
                    (Item::Relayed(_, None), Mode::Human { .. }) => None,
                };
                if let Some(text) = text {
                    if let Some(bars) = &human.bars {
                        // Above the live lines, on the terminal they draw on.
                        if bars.print(&text).is_err() {
                            break;
                        }
                        continue;
                    }
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
    pub(crate) fn event(&self, event: Event) {
        let _ = self.tx.send(Item::Event(event));
    }

    /// Relays a line from the runtime, with its parse when it is one of our events.
    pub(crate) fn relayed(&self, line: String, event: Option<Event>) {
        let _ = self.tx.send(Item::Relayed(line, event));
    }
}

/// The most columns a clipped item takes, however wide the terminal.
const MAX_INLINE: usize = 160;

/// How many of a skill's last stderr lines the human view keeps to show when it fails.
const KEPT_STDERR_LINES: usize = 10;

/// How long a kept stderr line may be.
const MAX_STDERR_LINE: usize = 300;

/// What the human view remembers of the job so far.
#[derive(Default)]
struct HumanView {
    /// Show everything.
    verbose: bool,
    /// The command that continues a job.
    continuing: Continuing,
    /// Columns of the terminal.
    width: usize,
    /// Columns a one-line item may take.
    inline: usize,
    /// Live build lines, on a terminal.
    bars: Option<BuildBars>,
    /// Whose run each segment is: `runId` → the Expert's name.
    runs: HashMap<String, String>,
    /// The job has more than one Expert, so skill and step lines name theirs.
    several: bool,
    /// `(Expert, skill)` already shown connected.
    shown: HashSet<(String, String)>,
    /// Each skill's last stderr lines not shown yet (without `--verbose`), by skill name.
    stderr: HashMap<String, VecDeque<String>>,
    /// When the first event of this run came (ms since the epoch).
    first_ms: Option<u64>,
    /// Where the coordinator's first segment of this run started.
    start: Option<RunStart>,
}

impl HumanView {
    fn new(mode: Mode) -> HumanView {
        match mode {
            Mode::Json => HumanView::default(),
            Mode::Human {
                verbose,
                width,
                live,
                ..
            } => HumanView {
                verbose,
                width,
                // Room for the marker and `step N · ` before an item.
                inline: width.saturating_sub(24).clamp(40, MAX_INLINE),
                bars: live.then(|| BuildBars::stdout(width)),
                ..HumanView::default()
            },
        }
    }

    /// The line for `event`, if it has one now.
    fn line(&mut self, event: &Event) -> Option<String> {
        let verbose = self.verbose;
        let first_ms = *self.first_ms.get_or_insert(event.timestamp);
        let EventBody::Runtime(payload) = &event.body else {
            return self.run_line(event, first_ms);
        };
        let expert = self.runs.get(&event.run_id).cloned();
        match payload {
            // Every run segment has its `initializeRuntime`; the first says what runs, a
            // child's `startRun` line says the rest.
            RuntimePayload::InitializeRuntime {
                expert_name,
                experts,
                ..
            } => {
                let first = self.runs.is_empty();
                self.runs.insert(event.run_id.clone(), expert_name.clone());
                self.several |= experts.len() > 1;
                let line = first.then(|| render(event, verbose)).flatten()?;
                Some(format!("▸ job {}\n{line}", event.job_id))
            }
            RuntimePayload::DockerBuildProgress {
                stage,
                service,
                message,
                ..
            } if self.bars.is_some() => self.build_line(event, *stage, service, message),
            RuntimePayload::SkillConnected { skill_name, .. } => {
                let key = (expert.clone().unwrap_or_default(), skill_name.clone());
                if !self.shown.insert(key) {
                    return None;
                }
                let line = render(event, verbose)?;
                Some(match self.whose(expert) {
                    Some(of) => line.replacen(
                        &format!("skill {skill_name} connected"),
                        &format!("skill {skill_name} of {of} connected"),
                        1,
                    ),
                    None => line,
                })
            }
            RuntimePayload::SkillStderr {
                skill_name,
                message,
            } => {
                if let Some(warning) = message.strip_prefix(RUNTIME_WARNING_PREFIX) {
                    return Some(format!(
                        "! skill {skill_name}{}: {warning}",
                        self.whose(expert)
                            .map(|of| format!(" of {of}"))
                            .unwrap_or_default()
                    ));
                }
                if let Some(said) = message.strip_prefix(HOST_LINE_PREFIX) {
                    return Some(self.host_said(skill_name, said));
                }
                if verbose {
                    return render(event, verbose);
                }
                self.keep(skill_name, message);
                None
            }
            _ => render(event, verbose),
        }
    }

    /// A line of `skill`'s host: the server's last lines kept so far, then what the host said.
    /// A restart also lets the next `skillConnected` show.
    fn host_said(&mut self, skill: &str, said: &str) -> String {
        let mut lines: Vec<String> = self
            .stderr
            .remove(skill)
            .unwrap_or_default()
            .into_iter()
            .map(|line| format!("  [{skill}] {line}"))
            .collect();
        lines.push(format!("! skill {skill}: {said}"));
        if said.contains("restarting it") {
            self.shown.retain(|(_, shown)| shown != skill);
        }
        lines.join("\n")
    }

    /// Keeps one of `skill`'s stderr lines, dropping the oldest past [`KEPT_STDERR_LINES`].
    fn keep(&mut self, skill: &str, line: &str) {
        let kept = self.stderr.entry(skill.to_string()).or_default();
        if kept.len() == KEPT_STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(clip(line, MAX_STDERR_LINE));
    }

    /// The Expert to name beside a skill: only when the job has several.
    fn whose(&self, expert: Option<String>) -> Option<String> {
        expert.filter(|_| self.several)
    }

    /// A build or pull on a terminal: its live line shows the phase; the end prints a line.
    fn build_line(
        &mut self,
        event: &Event,
        stage: BuildStage,
        service: &str,
        message: &str,
    ) -> Option<String> {
        let bars = self.bars.as_mut()?;
        match stage {
            BuildStage::Building | BuildStage::Pulling => {
                let phase = build_phase(message).map(|(phase, _)| phase);
                // The controller's own start lines: an image's, and a skill's own Dockerfile's.
                if let Some(phase) = phase.as_deref().or_else(|| {
                    (message.starts_with("Building image")
                        || message.starts_with("Building the skill's Dockerfile")
                        || message.starts_with("Pulling image"))
                    .then_some(message)
                }) {
                    bars.phase(service, phase);
                }
                // The builder's every line, under the live one, with --verbose only.
                self.verbose.then(|| format!("  {service}: {message}"))
            }
            BuildStage::Complete | BuildStage::Error => {
                bars.finish(service);
                render(event, self.verbose)
            }
        }
    }

    /// The line of an agent-loop event: steps name their Expert in a job of several, the
    /// coordinator's end gives this run's totals apart from the job's and how to continue.
    fn run_line(&mut self, event: &Event, first_ms: u64) -> Option<String> {
        let EventBody::Run {
            expert_key,
            step_number,
            payload,
        } = &event.body
        else {
            return None;
        };
        if let RunPayload::StartRun {
            initial_checkpoint, ..
        } = payload
            && initial_checkpoint.delegated_by.is_none()
            && self.start.is_none()
        {
            self.start = Some(RunStart {
                step: initial_checkpoint.step_number,
                tokens: initial_checkpoint.usage.total_tokens,
                at_ms: first_ms,
            });
        }
        let line = render_clipped(event, self.verbose, self.inline)?;
        let whose = |line: String| match self.several {
            true => line.replace(
                &format!("● step {step_number} · "),
                &format!("● {expert_key} · step {step_number} · "),
            ),
            false => line,
        };
        let ending = |checkpoint: &Checkpoint| checkpoint.delegated_by.is_none();
        Some(match payload {
            RunPayload::CompleteRun {
                text, checkpoint, ..
            } if ending(checkpoint) => format!(
                "✔ {expert_key} completed in {}\n\n{text}\n\n{}",
                totals::summary(self.start, checkpoint, event.timestamp),
                continue_hint(&event.job_id, expert_key, false, self.continuing)
            ),
            RunPayload::StopRunByInteractiveTool { checkpoint, .. } if ending(checkpoint) => {
                format!(
                    "■ {expert_key} is waiting for your answer\n{}",
                    continue_hint(&event.job_id, expert_key, true, self.continuing)
                )
            }
            RunPayload::StopRunByError { checkpoint, .. }
            | RunPayload::StopRunByExceededMaxSteps { checkpoint, .. }
                if ending(checkpoint) =>
            {
                format!(
                    "{line}\n{}",
                    continue_hint(&event.job_id, expert_key, false, self.continuing)
                )
            }
            // Tool calls and results: one terminal line each.
            RunPayload::CallTools { .. } | RunPayload::ResolveToolResults { .. } => whose(line)
                .lines()
                .map(|l| clip(l, self.width.saturating_sub(1)))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => whose(line),
        })
    }
}

/// The job's id and the command that continues it: with a new message, or with the answer to
/// the pending interactive tool call.
fn continue_hint(job_id: &str, expert_key: &str, answer: bool, continuing: Continuing) -> String {
    if continuing == Continuing::Standalone {
        let (flag, what) = if answer {
            (" -i", "answer")
        } else {
            ("", "message")
        };
        let verb = if answer { "answer" } else { "continue" };
        return format!(
            "▸ job {job_id} · {verb} with: docker run … <image> --continue-job {job_id}{flag} \"<{what}>\""
        );
    }
    if answer {
        format!(
            "▸ job {job_id} · answer with: perstack-sandbox run --continue-job {job_id} -i {expert_key} \"<answer>\""
        )
    } else {
        format!(
            "▸ job {job_id} · continue with: perstack-sandbox run --continue-job {job_id} {expert_key} \"<message>\""
        )
    }
}

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
pub(crate) fn render(event: &Event, verbose: bool) -> Option<String> {
    render_clipped(event, verbose, MAX_INLINE)
}

/// [`render`], with one-line items (texts, arguments, results) clipped to `inline` characters.
fn render_clipped(event: &Event, verbose: bool, inline: usize) -> Option<String> {
    match &event.body {
        EventBody::Runtime(payload) => runtime_event_line(payload, verbose),
        EventBody::Run {
            expert_key,
            step_number,
            payload,
        } => run_event_line(expert_key, *step_number, payload, verbose, inline),
    }
}

/// The line of an event of the machinery: what runs, skills, image builds, containers and the
/// proxy.
fn runtime_event_line(payload: &RuntimePayload, verbose: bool) -> Option<String> {
    match payload {
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
        RuntimePayload::SkillStarting {
            skill_name,
            workspace: Some(grant),
            ..
        } => Some(format!(
            "▸ skill {skill_name} has the workspace ({grant}) at /workspace"
        )),
        // The controller says these on stderr, in either mode (`Notice::TrustedInputChanged`,
        // `Notice::WeakerIsolation`).
        RuntimePayload::SkillStarting { .. }
        | RuntimePayload::SkillDisconnected { .. }
        | RuntimePayload::TrustedInputChanged { .. }
        | RuntimePayload::IsolationReport { .. }
        | RuntimePayload::ToolDefinitions { .. } => None,
        RuntimePayload::SkillStderr {
            skill_name,
            message,
        } => verbose.then(|| format!("  [{skill_name}] {message}")),
        RuntimePayload::DockerBuildProgress {
            stage,
            service,
            message,
            ..
        } => build_line(*stage, service, message, verbose),
        RuntimePayload::DockerContainerStatus {
            status,
            service,
            message,
        } => container_line(status, service, message.as_deref(), verbose),
        RuntimePayload::ProxyAccess { .. } => verbose.then(|| proxy_line(payload)).flatten(),
    }
}

/// An image build's line: its end always; its start, and with `verbose` the builder's lines.
fn build_line(stage: BuildStage, service: &str, message: &str, verbose: bool) -> Option<String> {
    match stage {
        BuildStage::Complete | BuildStage::Error => Some(format!("▸ {service}: {message}")),
        // Without --verbose only the controller's own "Building image …" line shows;
        // builder output lines are only emitted with --verbose.
        BuildStage::Building | BuildStage::Pulling
            if verbose || message.starts_with("Building image") =>
        {
            Some(format!("  {service}: {message}"))
        }
        _ => None,
    }
}

/// A container's line: a failure always, any other status with `verbose`.
fn container_line(
    status: &ContainerStatus,
    service: &str,
    message: Option<&str>,
    verbose: bool,
) -> Option<String> {
    match status {
        ContainerStatus::Error | ContainerStatus::Unhealthy => Some(format!(
            "✘ {service}: {}",
            message.unwrap_or("container failed")
        )),
        _ if verbose => Some(format!(
            "  {service}: {}",
            message.map_or_else(|| format!("{status:?}").to_lowercase(), str::to_string)
        )),
        _ => None,
    }
}

/// What the proxy allowed or denied, for whom and why.
fn proxy_line(payload: &RuntimePayload) -> Option<String> {
    let RuntimePayload::ProxyAccess {
        action,
        domain,
        port,
        reason,
        client,
    } = payload
    else {
        return None;
    };
    Some(format!(
        "  proxy: {} {domain}:{port}{}{}",
        format!("{action:?}").to_lowercase(),
        client
            .as_ref()
            .map(|c| format!(" for {c}"))
            .unwrap_or_default(),
        reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ))
}

/// The line of an event of the agent loop of `expert_key`'s run, at `step_number`.
fn run_event_line(
    expert_key: &str,
    step_number: u32,
    payload: &RunPayload,
    verbose: bool,
    inline: usize,
) -> Option<String> {
    match payload {
        RunPayload::StartGeneration { .. } => {
            verbose.then(|| format!("  {expert_key} · step {step_number} · thinking…"))
        }
        RunPayload::CallTools {
            tool_calls,
            new_message,
            ..
        } => Some(tool_call_lines(
            new_message,
            tool_calls,
            step_number,
            inline,
        )),
        RunPayload::ResolveToolResults { tool_results } => Some(
            tool_results
                .iter()
                .map(|r| format!("  ↳ {}", clip(&result_text(r), inline)))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        RunPayload::Retry { reason, .. } => Some(format!("  ↻ retry: {reason}")),
        RunPayload::StartRun {
            initial_checkpoint,
            input_messages,
        } => delegated_start_line(expert_key, initial_checkpoint, input_messages, inline),
        RunPayload::CompleteRun {
            text, checkpoint, ..
        } if checkpoint.delegated_by.is_some() => Some(format!(
            "  ↳ {expert_key} answered in step {step_number}: {}",
            clip(text, inline)
        )),
        RunPayload::CompleteStreamingReasoning { text } => {
            verbose.then(|| format!("  {expert_key} thought: {}", clip(text, inline)))
        }
        RunPayload::CallInteractiveTool { tool_call, .. } => Some(format!(
            "? {} asks via {}: {}",
            expert_key,
            tool_call.tool_name,
            clip(&tool_call.args.to_string(), inline)
        )),
        // Streaming deltas and the other state events have no line of their own.
        _ => end_line(expert_key, step_number, payload),
    }
}

/// The line of a run's end: completed (with its answer), stopped by an error, by the step
/// limit, or waiting for an answer; `None` for any other event.
fn end_line(expert_key: &str, step_number: u32, payload: &RunPayload) -> Option<String> {
    match payload {
        RunPayload::CompleteRun {
            text, checkpoint, ..
        } => Some(format!(
            "✔ {expert_key} completed in {step_number} step{} ({} tokens)\n\n{text}",
            if step_number == 1 { "" } else { "s" },
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
        RunPayload::StopRunByInteractiveTool { .. } => {
            Some(format!("■ {expert_key} is waiting for your answer"))
        }
        _ => None,
    }
}

/// The text the model wrote with its tool calls, then one line per call.
fn tool_call_lines(
    new_message: &Message,
    tool_calls: &[ToolCall],
    step_number: u32,
    inline: usize,
) -> String {
    let mut lines: Vec<String> = new_message
        .contents
        .iter()
        .filter_map(|p| p.as_text())
        .filter(|t| !t.trim().is_empty())
        .map(|t| format!("  {}", clip(t, inline)))
        .collect();
    for call in tool_calls {
        let args = match &call.args {
            Value::Object(map) if map.is_empty() => String::new(),
            other => format!(" {}", clip(&other.to_string(), inline)),
        };
        lines.push(format!("● step {step_number} · {}{args}", call.tool_name));
    }
    lines.join("\n")
}

/// A child run's start: who asked what. (A resumed parent, or a run of no one's, has none.)
fn delegated_start_line(
    expert_key: &str,
    initial_checkpoint: &Checkpoint,
    input_messages: &[Message],
    inline: usize,
) -> Option<String> {
    let by = initial_checkpoint.delegated_by.as_ref()?;
    let query = input_messages
        .last()?
        .contents
        .iter()
        .find_map(|p| p.as_text())?;
    Some(format!(
        "▸ {expert_key} (delegated by {}): {}",
        by.expert.key,
        clip(query, inline)
    ))
}

/// Colors the line markers when `color` is on.
pub(crate) fn style(text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    text.lines()
        .map(|line| {
            let code = match line.chars().next() {
                Some('✔') => "1;32",
                Some('✘') => "1;31",
                Some('■') | Some('!') => "1;33",
                Some('●') => "1;36",
                Some('?') => "1;35",
                Some('▸') => "2",
                _ if line.starts_with("  ↳") || line.starts_with("  [") => "2",
                _ => return line.to_string(),
            };
            format!("\x1b[{code}m{line}\x1b[0m")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{
        Checkpoint, CheckpointStatus, DelegatedBy, ExpertRef, Message, MessageKind, Part, Step,
        ToolCall, Usage,
    };

    fn expert(key: &str) -> ExpertRef {
        ExpertRef {
            key: key.into(),
            name: key.into(),
            version: "1.0.0".into(),
        }
    }

    fn checkpoint(key: &str, delegated_by: Option<&str>) -> Checkpoint {
        Checkpoint {
            id: "c".into(),
            job_id: "j".into(),
            run_id: "r".into(),
            status: CheckpointStatus::Completed,
            step_number: 3,
            messages: vec![],
            expert: expert(key),
            delegate_to: None,
            delegated_by: delegated_by.map(|parent| DelegatedBy {
                expert: expert(parent),
                tool_call_id: "t".into(),
                tool_name: key.into(),
                checkpoint_id: "pc".into(),
                run_id: "pr".into(),
            }),
            usage: Usage::default(),
            context_window: None,
            context_window_usage: None,
            pending_tool_calls: None,
            partial_tool_results: None,
            metadata: None,
            error: None,
            retry_count: None,
        }
    }

    fn step() -> Step {
        Step {
            step_number: 3,
            input_messages: None,
            new_messages: vec![],
            tool_calls: None,
            tool_results: None,
            pending_tool_calls: None,
            partial_tool_results: None,
            usage: Usage::default(),
            started_at: 0,
            finished_at: None,
        }
    }

    fn line(key: &str, payload: RunPayload) -> Option<String> {
        render(&Event::run("j", "r", key, 3, payload), false)
    }

    #[test]
    fn a_child_run_says_who_asked_and_answers_in_one_line() {
        let query = Message {
            kind: MessageKind::UserMessage,
            id: "m".into(),
            contents: vec![Part::text("Is water wet?")],
            cache: None,
        };
        assert_eq!(
            line(
                "researcher",
                RunPayload::StartRun {
                    initial_checkpoint: checkpoint("researcher", Some("lead")),
                    input_messages: vec![query.clone()],
                }
            )
            .as_deref(),
            Some("▸ researcher (delegated by lead): Is water wet?")
        );
        // The coordinator's own start has no line: initializeRuntime said it all.
        assert_eq!(
            line(
                "lead",
                RunPayload::StartRun {
                    initial_checkpoint: checkpoint("lead", None),
                    input_messages: vec![query],
                }
            ),
            None
        );
        assert_eq!(
            line(
                "researcher",
                RunPayload::CompleteRun {
                    checkpoint: checkpoint("researcher", Some("lead")),
                    step: step(),
                    text: "Yes.".into(),
                    usage: Usage::default(),
                }
            )
            .as_deref(),
            Some("  ↳ researcher answered in step 3: Yes.")
        );
    }

    /// What an [`Output`] in `mode` writes for the events `emit` gives it.
    async fn written(mode: Mode, emit: impl FnOnce(&Output)) -> String {
        let (writer, mut reader) = tokio::io::duplex(4096);
        let (output, task) = Output::spawn(mode, writer);
        emit(&output);
        drop(output);
        task.await.expect("writer");
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut reader, &mut text)
            .await
            .expect("read");
        text
    }

    #[tokio::test]
    async fn only_the_first_segments_initialize_runtime_has_a_line() {
        let initialize = |run: &str, name: &str| {
            Event::runtime(
                "j",
                run,
                RuntimePayload::InitializeRuntime {
                    runtime_version: "0".into(),
                    runtime: None,
                    expert_name: name.into(),
                    experts: vec![],
                    model: "m".into(),
                    max_steps: Some(5),
                    max_retries: 1,
                    timeout: 1,
                    query: Some("q".into()),
                    interactive_tool_call: None,
                },
            )
        };
        let human = Mode::Human {
            verbose: false,
            color: false,
            width: 100,
            live: false,
        };
        let text = written(human, |output| {
            output.event(initialize("r1", "lead"));
            output.relayed(String::new(), Some(initialize("r2", "helper")));
            output.relayed(String::new(), Some(initialize("r3", "lead")));
        })
        .await;
        assert_eq!(text, "▸ job j\n▸ running lead · model m · up to 5 steps\n");
        // JSON keeps every one of them.
        let text = written(Mode::Json, |output| {
            output.event(initialize("r1", "lead"));
            output.event(initialize("r2", "helper"));
        })
        .await;
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[tokio::test]
    async fn a_skill_missing_a_file_shows_its_last_lines_then_the_hosts_hint_once() {
        let stderr = |message: &str| {
            Event::runtime(
                "j",
                "r",
                RuntimePayload::SkillStderr {
                    skill_name: "py".into(),
                    message: message.into(),
                },
            )
        };
        let human = Mode::Human {
            verbose: false,
            color: false,
            width: 100,
            live: false,
        };
        let text = written(human, |output| {
            output.event(stderr(
                "python3: can't open file '//server.py': [Errno 2] No such file or directory",
            ));
            output.event(stderr(&format!(
                "{HOST_LINE_PREFIX}its server exited with code 2 before it answered"
            )));
            output.event(stderr(&format!(
                "{HOST_LINE_PREFIX}hint: a file the server needs is not in its container"
            )));
        })
        .await;
        // The skill host alone says what to do (skill::host::diagnosis), after the server's
        // own lines, and the hint is not said twice.
        assert_eq!(
            text,
            "  [py] python3: can't open file '//server.py': [Errno 2] No such file or directory\n\
             ! skill py: its server exited with code 2 before it answered\n\
             ! skill py: hint: a file the server needs is not in its container\n"
        );
    }

    #[test]
    fn a_session_shows_its_job_what_runs_and_each_skill_once() {
        let session = SessionLines::default();
        let turn = "▸ job j\n▸ running coach · model m · up to 5 steps\n\
                    ▸ skill @perstack/base of coach connected (@perstack/base 0.1.0) in 5 ms\n\
                    ▸ planner (delegated by coach): go";
        assert_eq!(session.new_lines(turn).as_deref(), Some(turn));
        // The next turn: its own skill time, the same delegation said again.
        let next = turn.replace("in 5 ms", "in 7 ms");
        assert_eq!(
            session.new_lines(&next).as_deref(),
            Some("▸ planner (delegated by coach): go")
        );
        assert_eq!(session.new_lines("▸ job j"), None);
        assert_eq!(
            session.new_lines("✔ coach completed in 1 step").as_deref(),
            Some("✔ coach completed in 1 step")
        );
    }

    #[tokio::test]
    async fn skill_lines_name_their_expert_when_the_job_has_several() {
        let initialize = |run: &str, name: &str, experts: &[&str]| {
            Event::runtime(
                "j",
                run,
                RuntimePayload::InitializeRuntime {
                    runtime_version: "0".into(),
                    runtime: None,
                    expert_name: name.into(),
                    experts: experts.iter().map(|e| e.to_string()).collect(),
                    model: "m".into(),
                    max_steps: Some(5),
                    max_retries: 1,
                    timeout: 1,
                    query: None,
                    interactive_tool_call: None,
                },
            )
        };
        let connected = |run: &str, skill: &str, total: Option<u64>| {
            Event::runtime(
                "j",
                run,
                RuntimePayload::SkillConnected {
                    skill_name: skill.into(),
                    server_info: None,
                    spawn_duration_ms: None,
                    handshake_duration_ms: None,
                    tool_discovery_duration_ms: None,
                    connect_duration_ms: None,
                    total_duration_ms: total,
                },
            )
        };
        let warning = |run: &str, skill: &str| {
            Event::runtime(
                "j",
                run,
                RuntimePayload::SkillStderr {
                    skill_name: skill.into(),
                    message: format!("{RUNTIME_WARNING_PREFIX}`pick` names `thnik`"),
                },
            )
        };
        let human = Mode::Human {
            verbose: false,
            color: false,
            width: 100,
            live: false,
        };
        let both = ["lead", "writer"];
        let text = written(human, |output| {
            output.event(initialize("r1", "lead", &both));
            output.event(connected("r1", "@perstack/base", Some(4)));
            output.event(initialize("r2", "writer", &both));
            output.event(connected("r2", "@perstack/base", Some(5)));
            output.event(warning("r2", "web"));
            // The lead resumes: its reused connection is not shown again.
            output.event(initialize("r3", "lead", &both));
            output.event(connected("r3", "@perstack/base", None));
        })
        .await;
        assert_eq!(
            text,
            "▸ job j\n\
             ▸ running lead · model m · up to 5 steps\n\
             ▸ skill @perstack/base of lead connected in 4 ms\n\
             ▸ skill @perstack/base of writer connected in 5 ms\n\
             ! skill web of writer: `pick` names `thnik`\n"
        );
        // One Expert: nothing to tell apart.
        let text = written(human, |output| {
            output.event(initialize("r1", "solo", &["solo"]));
            output.event(connected("r1", "@perstack/base", Some(4)));
            output.event(warning("r1", "web"));
        })
        .await;
        assert_eq!(
            text,
            "▸ job j\n\
             ▸ running solo · model m · up to 5 steps\n\
             ▸ skill @perstack/base connected in 4 ms\n\
             ! skill web: `pick` names `thnik`\n"
        );
    }

    #[tokio::test]
    async fn a_skills_last_stderr_lines_show_when_its_host_speaks() {
        let stderr = |skill: &str, message: &str| {
            Event::runtime(
                "j",
                "r",
                RuntimePayload::SkillStderr {
                    skill_name: skill.into(),
                    message: message.into(),
                },
            )
        };
        let connected = || {
            Event::runtime(
                "j",
                "r",
                RuntimePayload::SkillConnected {
                    skill_name: "py".into(),
                    server_info: None,
                    spawn_duration_ms: Some(0),
                    handshake_duration_ms: None,
                    tool_discovery_duration_ms: None,
                    connect_duration_ms: None,
                    total_duration_ms: Some(9),
                },
            )
        };
        let events = |output: &Output| {
            output.event(connected());
            for n in 0..12 {
                output.event(stderr("py", &format!("line {n}")));
            }
            output.event(stderr("other", "not py's"));
            output.event(stderr(
                "py",
                "skill-host: the server exited with code 3; restarting it in 0.25 s (restart 1 of 5 this run)",
            ));
            // Shown again once restarted.
            output.event(connected());
            output.event(stderr("py", "skill-host: hint: look here"));
        };
        let text = written(
            Mode::Human {
                verbose: false,
                color: false,
                width: 200,
                live: false,
            },
            events,
        )
        .await;
        let last_ten: String = (2..12).map(|n| format!("  [py] line {n}\n")).collect();
        assert_eq!(
            text,
            format!(
                "▸ skill py connected in 9 ms\n\
                 {last_ten}\
                 ! skill py: the server exited with code 3; restarting it in 0.25 s (restart 1 of 5 this run)\n\
                 ▸ skill py connected in 9 ms\n\
                 ! skill py: hint: look here\n"
            )
        );
        // With --verbose every line showed as it came; the host's words come without a replay.
        let text = written(
            Mode::Human {
                verbose: true,
                color: false,
                width: 200,
                live: false,
            },
            events,
        )
        .await;
        assert_eq!(text.matches("[py] line 0").count(), 1, "{text}");
        assert!(
            text.contains("  [py] line 11\n  [other] not py's\n! skill py: the server exited"),
            "{text}"
        );
    }

    #[test]
    fn proxy_decisions_show_with_verbose_only_and_name_who_asked() {
        let event = Event::runtime(
            "j",
            "r",
            RuntimePayload::ProxyAccess {
                action: crate::event::ProxyAction::Blocked,
                domain: "evil.example.com".into(),
                port: 443,
                reason: Some("Domain not in allowlist".into()),
                client: Some("skill:web".into()),
            },
        );
        assert_eq!(render(&event, false), None);
        assert_eq!(
            render(&event, true).as_deref(),
            Some("  proxy: blocked evil.example.com:443 for skill:web (Domain not in allowlist)")
        );
    }

    #[test]
    fn an_interactive_stop_shows_the_question_and_how_to_answer() {
        let call = ToolCall {
            id: "t".into(),
            skill_name: "user".into(),
            tool_name: "askColour".into(),
            args: serde_json::json!({"question": "Which colour?"}),
        };
        assert_eq!(
            line(
                "painter",
                RunPayload::CallInteractiveTool {
                    new_message: Message {
                        kind: MessageKind::ExpertMessage,
                        id: "m".into(),
                        contents: vec![],
                        cache: None,
                    },
                    tool_call: call,
                    usage: Usage::default(),
                }
            )
            .as_deref(),
            Some("? painter asks via askColour: {\"question\":\"Which colour?\"}")
        );
    }

    fn human(width: usize) -> Mode {
        Mode::Human {
            verbose: false,
            color: false,
            width,
            live: false,
        }
    }

    fn initialize(run: &str, name: &str, experts: &[&str]) -> Event {
        let mut event = Event::runtime(
            "job-1",
            run,
            RuntimePayload::InitializeRuntime {
                runtime_version: "0".into(),
                runtime: None,
                expert_name: name.into(),
                experts: experts.iter().map(|e| e.to_string()).collect(),
                model: "m".into(),
                max_steps: Some(20),
                max_retries: 1,
                timeout: 1,
                query: Some("q".into()),
                interactive_tool_call: None,
            },
        );
        event.timestamp = 0;
        event
    }

    /// An event of `key`'s run at `step`, `ms` after the epoch.
    fn at(ms: u64, key: &str, step: u32, payload: RunPayload) -> Event {
        let mut event = Event::run("job-1", "r1", key, step, payload);
        event.timestamp = ms;
        event
    }

    fn started_at(key: &str, step: u32, tokens: u64) -> RunPayload {
        let mut initial = checkpoint(key, None);
        initial.step_number = step;
        initial.usage.total_tokens = tokens;
        RunPayload::StartRun {
            initial_checkpoint: initial,
            input_messages: vec![],
        }
    }

    fn completed(key: &str, at_step: u32, tokens: u64) -> RunPayload {
        let mut done = checkpoint(key, None);
        done.step_number = at_step;
        done.usage.total_tokens = tokens;
        RunPayload::CompleteRun {
            checkpoint: done,
            step: step(),
            text: "All done.".into(),
            usage: Usage::default(),
        }
    }

    #[tokio::test]
    async fn the_job_id_opens_and_closes_a_run_with_the_command_that_continues_it() {
        let text = written(human(100), |output| {
            output.event(initialize("r1", "coach", &["coach"]));
            output.event(at(1_000, "coach", 1, started_at("coach", 1, 0)));
            output.event(at(3_500, "coach", 2, completed("coach", 2, 300)));
        })
        .await;
        assert_eq!(
            text,
            "▸ job job-1\n\
             ▸ running coach · model m · up to 20 steps\n\
             ✔ coach completed in 2 steps (300 tokens) in 3.5 s\n\n\
             All done.\n\n\
             ▸ job job-1 · continue with: perstack-sandbox run --continue-job job-1 coach \"<message>\"\n"
        );
    }

    #[tokio::test]
    async fn a_continued_run_gives_its_own_totals_apart_from_the_jobs() {
        let text = written(human(100), |output| {
            output.event(initialize("r1", "coach", &["coach"]));
            output.event(at(10_000, "coach", 7, started_at("coach", 7, 8_000)));
            output.event(at(13_000, "coach", 9, completed("coach", 9, 8_875)));
        })
        .await;
        assert!(
            text.contains(
                "✔ coach completed in 3 steps (875 tokens) in 13.0 s; \
                 the job so far: 9 steps (8875 tokens)"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn steps_name_their_expert_when_the_job_has_several_and_fit_the_width() {
        let call = |expert: &str| RunPayload::CallTools {
            new_message: Message {
                kind: MessageKind::ExpertMessage,
                id: "m".into(),
                contents: vec![],
                cache: None,
            },
            tool_calls: vec![ToolCall {
                id: "t".into(),
                skill_name: "@perstack/base".into(),
                tool_name: "readTextFile".into(),
                args: serde_json::json!({"path": "x".repeat(300), "by": expert}),
            }],
            usage: Usage::default(),
        };
        let text = written(human(80), |output| {
            output.event(initialize("r1", "lead", &["lead", "writer"]));
            output.event(at(0, "writer", 4, call("writer")));
        })
        .await;
        let line = text.lines().last().expect("a line");
        assert!(
            line.starts_with("● writer · step 4 · readTextFile {"),
            "{text}"
        );
        assert!(line.chars().count() <= 80, "{line}");
        // One Expert: the step alone.
        let text = written(human(80), |output| {
            output.event(initialize("r1", "solo", &["solo"]));
            output.event(at(0, "solo", 4, call("solo")));
        })
        .await;
        assert!(text.contains("\n● step 4 · readTextFile"), "{text}");
    }

    #[tokio::test]
    async fn an_interactive_stop_says_how_to_answer_in_the_same_job() {
        let text = written(human(100), |output| {
            output.event(initialize("r1", "painter", &["painter"]));
            output.event(at(
                0,
                "painter",
                3,
                RunPayload::StopRunByInteractiveTool {
                    checkpoint: checkpoint("painter", None),
                    step: step(),
                },
            ));
        })
        .await;
        assert!(
            text.ends_with(
                "■ painter is waiting for your answer\n\
                 ▸ job job-1 · answer with: perstack-sandbox run --continue-job job-1 -i painter \"<answer>\"\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_standalone_job_is_continued_with_docker_run() {
        assert_eq!(
            continue_hint("j1", "demo", false, Continuing::Standalone),
            "▸ job j1 · continue with: docker run … <image> --continue-job j1 \"<message>\""
        );
        assert_eq!(
            continue_hint("j1", "demo", true, Continuing::Standalone),
            "▸ job j1 · answer with: docker run … <image> --continue-job j1 -i \"<answer>\""
        );
        assert!(
            continue_hint("j1", "demo", false, Continuing::Run).contains("perstack-sandbox run")
        );
    }
}
