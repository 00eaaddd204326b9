//! Storing a run as its events are relayed: every run event as a file, every checkpoint an event
//! carries, `job.json` kept up to date, and a `run-setting.json` for every run segment — the
//! controller writes the first one; delegates' runs and the segments a parent resumes in after
//! its delegates get theirs when their `startRun` arrives.
//!
//! The relay hands each line over and goes on at once; a thread of the recorder's own does the
//! file I/O, in arrival order, so a slow disk never holds up the event stream. A file that cannot
//! be written is reported on stderr and the run goes on: stdout stays the complete record.

use std::collections::BTreeSet;
use std::sync::mpsc;

use serde_json::Value;

use super::JobsError;
use super::job::{Job, JobStatus};
use super::run_setting::{RunInput, RunSetting};
use super::store::JobStore;
use crate::event::{Event, EventBody, Message, MessageKind, Part, Usage};

/// Stores one run of a job. Create it with [`Recorder::start`], feed it with
/// [`Recorder::record`], end it with [`Recorder::finish`].
pub(crate) struct Recorder {
    lines: mpsc::Sender<String>,
    writer: std::thread::JoinHandle<Writer>,
}

struct Writer {
    store: JobStore,
    job: Job,
    /// The controller's run setting: the other segments' are made from it.
    setting: RunSetting,
    /// Runs whose `run-setting.json` is stored.
    runs: BTreeSet<String>,
    failures: usize,
}

impl Recorder {
    /// Writes `job.json` and the run's `run-setting.json`, then starts recording. `job` is the
    /// job as this run begins (new, or [`Job::resumed`]).
    pub(crate) fn start(
        store: JobStore,
        job: Job,
        setting: &RunSetting,
    ) -> Result<Recorder, JobsError> {
        store.write_job(&job)?;
        store.store_run_setting(setting)?;
        let mut writer = Writer {
            store,
            job,
            setting: setting.clone(),
            runs: BTreeSet::from([setting.run_id.clone()]),
            failures: 0,
        };
        let (lines, received) = mpsc::channel::<String>();
        let writer = std::thread::Builder::new()
            .name("job-recorder".into())
            .spawn(move || {
                for line in received {
                    if let Err(error) = writer.record(&line) {
                        writer.failed(&error);
                    }
                }
                writer
            })
            .map_err(|source| JobsError::Io {
                action: "start the recorder for",
                path: super::store::jobs_dir(),
                source,
            })?;
        Ok(Recorder { lines, writer })
    }

    /// Records one relayed line. Only run events are stored (§4); runtime events are not.
    pub(crate) fn record(&self, line: &str, event: &Event) {
        if matches!(event.body, EventBody::Run { .. }) {
            // The writer thread only ends when `lines` is dropped, so sending cannot fail.
            let _ = self.lines.send(line.to_string());
        }
    }

    /// Waits for every recorded line to be stored, then writes the job's final state: the
    /// coordinator's terminal event decided it; a run that ended without one (killed,
    /// interrupted, failed) leaves the job `stoppedByError`. Returns that job (`None` if the
    /// recorder's thread died, which is reported).
    pub(crate) async fn finish(self) -> Option<Job> {
        let Recorder { lines, writer } = self;
        drop(lines);
        let joined = tokio::task::spawn_blocking(move || writer.join()).await;
        let Ok(Ok(mut writer)) = joined else {
            eprintln!("warning: the job recorder stopped early; job.json may be out of date");
            return None;
        };
        writer.finish();
        Some(writer.job)
    }
}

impl Writer {
    fn record(&mut self, line: &str) -> Result<(), JobsError> {
        let value: Value = serde_json::from_str(line).map_err(|e| JobsError::Unreadable {
            path: "the event stream".into(),
            message: e.to_string(),
        })?;
        let text = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("");
        let number = |name: &str| value.get(name).and_then(Value::as_u64).unwrap_or(0);
        let (event_type, step) = (text("type"), number("stepNumber"));
        if event_type == "startRun" && !self.runs.contains(text("runId")) {
            self.store_run_setting(&value)?;
        }
        self.store.write_event(
            &self.job.id,
            text("runId"),
            number("timestamp"),
            step,
            event_type,
            line,
        )?;
        let Some(checkpoint) = value.get("checkpoint") else {
            return Ok(());
        };
        self.store.write_checkpoint(&self.job.id, checkpoint)?;
        // Steps the job has taken = the highest step a stored checkpoint finished (steps are
        // job-global, so a delegate's count too).
        let finished = checkpoint
            .get("stepNumber")
            .and_then(Value::as_u64)
            .unwrap_or(step);
        self.job.total_steps = self
            .job
            .total_steps
            .max(u32::try_from(finished).unwrap_or(u32::MAX));
        if text("expertKey") == self.job.coordinator_expert_key {
            if let Some(usage) = checkpoint
                .get("usage")
                .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
            {
                self.job.usage = usage;
            }
            if let Some(status) = JobStatus::after_event(event_type) {
                self.job.status = status;
                self.job.finished_at = Some(number("timestamp"));
            }
        }
        self.store.write_job(&self.job)
    }

    /// A new segment's `run-setting.json`: the controller's, with this run's id, Expert, start
    /// and query (a delegate's query; a parent resuming after its delegates has none).
    fn store_run_setting(&mut self, start_run: &Value) -> Result<(), JobsError> {
        let text = |name: &str| start_run.get(name).and_then(Value::as_str).unwrap_or("");
        let started = start_run
            .get("timestamp")
            .and_then(Value::as_u64)
            .unwrap_or_else(crate::ids::now_ms);
        let setting = RunSetting {
            run_id: text("runId").to_string(),
            expert_key: text("expertKey").to_string(),
            input: RunInput {
                text: query(start_run),
                interactive_tool_call_result: None,
            },
            started_at: started,
            updated_at: started,
            ..self.setting.clone()
        };
        self.store.store_run_setting(&setting)?;
        self.runs.insert(setting.run_id);
        Ok(())
    }

    fn failed(&mut self, error: &JobsError) {
        self.failures += 1;
        if self.failures == 1 {
            eprintln!(
                "warning: could not store the run in {}: {error}\n  the run goes on; its events on stdout are complete",
                self.store.root().display()
            );
        }
    }

    fn finish(&mut self) {
        let now = crate::ids::now_ms();
        if self.job.status == JobStatus::Running {
            self.job.status = JobStatus::StoppedByError;
            self.job.finished_at = Some(now);
        }
        if let Err(error) = self.store.write_job(&self.job) {
            self.failed(&error);
        }
        for run_id in std::mem::take(&mut self.runs) {
            if let Err(error) = self.store.touch_run_setting(&self.job.id, &run_id, now) {
                self.failed(&error);
            }
        }
        if self.failures > 1 {
            eprintln!(
                "warning: {} writes to the job store failed in all",
                self.failures
            );
        }
    }
}

/// The text of a `startRun`'s user message: what the run was asked.
fn query(start_run: &Value) -> Option<String> {
    let messages: Vec<Message> =
        serde_json::from_value(start_run.get("inputMessages")?.clone()).ok()?;
    let asked = messages
        .iter()
        .rev()
        .find(|m| m.kind == MessageKind::UserMessage)?;
    let text: Vec<&str> = asked.contents.iter().filter_map(Part::as_text).collect();
    (!text.is_empty()).then(|| text.join("\n"))
}
