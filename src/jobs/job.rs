//! `job.json`: one job's summary (PERSTACK-COMPAT.md §4 "Job"), kept up to date as its events
//! arrive.

use serde::{Deserialize, Serialize};

use crate::event::Usage;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum JobStatus {
    /// A run of the job is under way.
    Running,
    /// The coordinator completed.
    Completed,
    /// The coordinator hit `maxSteps`.
    StoppedByMaxSteps,
    /// The coordinator waits for the answer to an interactive tool.
    StoppedByInteractiveTool,
    /// The coordinator failed, or its run ended without a terminal event (killed, interrupted).
    StoppedByError,
}

impl JobStatus {
    /// The status a coordinator's terminal event puts the job in; `None` for every other type
    /// (`stopRunByDelegate` included: the runtime goes on with the delegates).
    pub(crate) fn after_event(event_type: &str) -> Option<JobStatus> {
        match event_type {
            "completeRun" => Some(JobStatus::Completed),
            "stopRunByExceededMaxSteps" => Some(JobStatus::StoppedByMaxSteps),
            "stopRunByInteractiveTool" => Some(JobStatus::StoppedByInteractiveTool),
            "stopRunByError" => Some(JobStatus::StoppedByError),
            _ => None,
        }
    }
}

/// The contents of `job.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Job {
    /// The job id.
    pub id: String,
    /// Where it stands.
    pub status: JobStatus,
    /// The Expert the job was started with; only its checkpoints are continued.
    pub coordinator_expert_key: String,
    /// The highest step number of a stored checkpoint (steps are job-global).
    pub total_steps: u32,
    /// The step limit of the latest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Cumulative usage, from the coordinator's latest checkpoint.
    pub usage: Usage,
    /// When the job's first run started, ms since the epoch.
    pub started_at: u64,
    /// When its latest run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
}

impl Job {
    /// A new job, running.
    pub(crate) fn new(id: &str, coordinator_expert_key: &str, max_steps: u32, now: u64) -> Job {
        Job {
            id: id.to_string(),
            status: JobStatus::Running,
            coordinator_expert_key: coordinator_expert_key.to_string(),
            total_steps: 0,
            max_steps: Some(max_steps),
            usage: Usage::default(),
            started_at: now,
            finished_at: None,
        }
    }

    /// The job as a new run of it begins: running again, with that run's coordinator and step
    /// limit; steps, usage and the start time carry on.
    pub(crate) fn resumed(mut self, coordinator_expert_key: &str, max_steps: u32) -> Job {
        self.status = JobStatus::Running;
        self.coordinator_expert_key = coordinator_expert_key.to_string();
        self.max_steps = Some(max_steps);
        self.finished_at = None;
        self
    }
}
