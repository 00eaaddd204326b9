//! A stored job read back: its `job.json` (or what its events say when it has none) and every
//! event of its runs in order, through the job store's reads, which follow no link.

use serde_json::Value;

use crate::jobs::{Job, JobStore, JobsError};

/// One job as stored.
#[derive(Debug)]
pub(crate) struct History {
    /// The job's id.
    pub job_id: String,
    /// `job.json`, when there is one (a job Perstack stored may lack it).
    pub job: Option<Job>,
    /// Every run event of the job, in the order they happened.
    pub events: Vec<Value>,
}

impl History {
    /// Reads job `job_id`; `None` when the store has no such job.
    pub(crate) fn read(store: &JobStore, job_id: &str) -> Result<Option<History>, JobsError> {
        let job = store.read_job(job_id)?;
        let runs = store.run_ids(job_id)?;
        if job.is_none() && runs.is_empty() {
            return Ok(None);
        }
        let mut events = Vec::new();
        for run in runs {
            events.extend(store.events(job_id, &run)?);
        }
        events.sort_by_key(|e| (number(e, "timestamp"), number(e, "stepNumber"), rank(e)));
        Ok(Some(History {
            job_id: job_id.to_string(),
            job,
            events,
        }))
    }

    /// The job started last: by `job.json`'s `startedAt`, else its first event.
    pub(crate) fn latest(store: &JobStore) -> Result<Option<History>, JobsError> {
        let mut latest: Option<History> = None;
        for id in store.job_ids()? {
            let Some(history) = History::read(store, &id)? else {
                continue;
            };
            if latest
                .as_ref()
                .is_none_or(|l| history.started_at() > l.started_at())
            {
                latest = Some(history);
            }
        }
        Ok(latest)
    }

    /// When the job started.
    pub(crate) fn started_at(&self) -> u64 {
        match &self.job {
            Some(job) => job.started_at,
            None => self.events.first().map_or(0, |e| number(e, "timestamp")),
        }
    }

    /// Its coordinator: `job.json`'s, else the first run's Expert.
    pub(crate) fn coordinator(&self) -> String {
        match &self.job {
            Some(job) => job.coordinator_expert_key.clone(),
            None => self
                .events
                .first()
                .and_then(|e| e.get("expertKey"))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
        }
    }
}

/// A number field of an event (0 when absent).
pub(crate) fn number(event: &Value, name: &str) -> u64 {
    event.get(name).and_then(Value::as_u64).unwrap_or(0)
}

/// The order of events of one run within one millisecond and step (their files' names say only
/// the millisecond): how a step unfolds.
fn rank(event: &Value) -> u8 {
    match event.get("type").and_then(Value::as_str).unwrap_or("") {
        "startRun" => 0,
        "resumeToolCalls" => 1,
        "finishToolCall" => 2,
        "finishAllToolCalls" => 3,
        "continueToNextStep" => 4,
        "startGeneration" => 5,
        "retry" => 6,
        "startStreamingReasoning" | "streamReasoning" | "completeStreamingReasoning" => 7,
        "startStreamingRunResult" | "streamRunResult" | "completeStreamingRunResult" => 8,
        "callTools" => 9,
        "callInteractiveTool" | "callDelegate" => 10,
        "resolveToolResults" => 11,
        "attemptCompletion" => 12,
        _ => 13,
    }
}
