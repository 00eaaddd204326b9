//! The files under `<workspace>/perstack/jobs/` (PERSTACK-COMPAT.md §4):
//!
//! ```text
//! perstack/jobs/<jobId>/job.json                                      pretty JSON
//! perstack/jobs/<jobId>/checkpoints/<checkpointId>.json               every run of the job, flat
//! perstack/jobs/<jobId>/runs/<runId>/run-setting.json                 pretty JSON, redacted
//! perstack/jobs/<jobId>/runs/<runId>/event-<timestamp>-<step>-<type>.json
//! ```
//!
//! Every file is written to a temporary file in its folder and renamed into place. Ids become
//! path components, and some come from the runtime container's output, so an id that is not a
//! plain name (`[A-Za-z0-9_.-]`, not starting with `.`) is refused rather than joined to a path.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use super::JobsError;
use super::fs::{Owner, create_dir_all, write_atomic};
use super::job::Job;
use super::run_setting::RunSetting;
use crate::contract::paths::RESERVED_DIR;
use crate::event::Checkpoint;

/// The store's folder inside the workspace's reserved folder.
const JOBS_SUBDIR: &str = "jobs";

/// The store's folder relative to a workspace: `perstack/jobs`.
pub(crate) fn jobs_dir() -> PathBuf {
    Path::new(RESERVED_DIR).join(JOBS_SUBDIR)
}

/// Whether `id` can be used as a file or folder name as it is.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_id(kind: &'static str, id: &str) -> Result<(), JobsError> {
    if is_safe_id(id) {
        Ok(())
    } else {
        Err(JobsError::BadId {
            kind,
            id: id.to_string(),
        })
    }
}

/// A checkpoint read from the store: the file's text (handed to the runtime as is) and its parse.
#[derive(Debug, Clone)]
pub(crate) struct StoredCheckpoint {
    /// The file's contents.
    pub json: String,
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// When the file was written (orders checkpoints of the same step).
    pub modified: SystemTime,
}

/// The fields of a run setting that listing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunSummary {
    /// The job.
    pub job_id: String,
    /// The run.
    pub run_id: String,
    /// Its coordinator Expert.
    pub expert_key: String,
    /// When its setting was last stored.
    pub updated_at: u64,
}

/// The job store of one workspace.
#[derive(Debug, Clone)]
pub(crate) struct JobStore {
    root: PathBuf,
    owner: Owner,
}

impl JobStore {
    /// The store in `<workspace>/perstack/jobs`, writing as the invoking user.
    pub(crate) fn in_workspace(workspace: &Path) -> JobStore {
        JobStore {
            root: workspace.join(jobs_dir()),
            owner: Owner::detect(),
        }
    }

    /// The store in `root`, giving what it creates to `owner`.
    pub(crate) fn at(root: PathBuf, owner: Owner) -> JobStore {
        JobStore { root, owner }
    }

    /// `perstack/jobs`.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A job's folder.
    pub(crate) fn job_dir(&self, job_id: &str) -> PathBuf {
        self.root.join(job_id)
    }

    fn checkpoints_dir(&self, job_id: &str) -> PathBuf {
        self.job_dir(job_id).join("checkpoints")
    }

    /// A run's folder.
    pub(crate) fn run_dir(&self, job_id: &str, run_id: &str) -> PathBuf {
        self.job_dir(job_id).join("runs").join(run_id)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), JobsError> {
        let io = |source| JobsError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            create_dir_all(dir, self.owner).map_err(io)?;
        }
        write_atomic(path, bytes, self.owner).map_err(io)
    }

    fn write_json(&self, path: &Path, value: &impl serde::Serialize) -> Result<(), JobsError> {
        let mut text = serde_json::to_string_pretty(value).map_err(|e| JobsError::Io {
            action: "serialize",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        text.push('\n');
        self.write(path, text.as_bytes())
    }

    /// Writes `job.json`.
    pub(crate) fn write_job(&self, job: &Job) -> Result<(), JobsError> {
        check_id("job", &job.id)?;
        self.write_json(&self.job_dir(&job.id).join("job.json"), job)
    }

    /// Reads `job.json`; `None` when the job has none.
    pub(crate) fn read_job(&self, job_id: &str) -> Result<Option<Job>, JobsError> {
        check_id("job", job_id)?;
        let path = self.job_dir(job_id).join("job.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| JobsError::Unreadable {
                    path,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JobsError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Stores a checkpoint (a JSON object with an `id`) of `job_id`, as given.
    pub(crate) fn write_checkpoint(
        &self,
        job_id: &str,
        checkpoint: &Value,
    ) -> Result<(), JobsError> {
        check_id("job", job_id)?;
        let id = checkpoint.get("id").and_then(Value::as_str).unwrap_or("");
        check_id("checkpoint", id)?;
        let path = self.checkpoints_dir(job_id).join(format!("{id}.json"));
        self.write(&path, checkpoint.to_string().as_bytes())
    }

    /// Reads one checkpoint.
    pub(crate) fn read_checkpoint(
        &self,
        job_id: &str,
        checkpoint_id: &str,
    ) -> Result<StoredCheckpoint, JobsError> {
        check_id("job", job_id)?;
        check_id("checkpoint", checkpoint_id)?;
        let path = self
            .checkpoints_dir(job_id)
            .join(format!("{checkpoint_id}.json"));
        if !path.exists() {
            return Err(JobsError::CheckpointNotFound {
                job_id: job_id.to_string(),
                checkpoint_id: checkpoint_id.to_string(),
                known: self
                    .checkpoints(job_id)
                    .iter()
                    .map(|c| c.checkpoint.id.clone())
                    .collect(),
            });
        }
        read_checkpoint_file(&path)
    }

    /// Every readable checkpoint of a job, by step number (then by when it was written).
    /// Unreadable files are skipped with a warning.
    pub(crate) fn checkpoints(&self, job_id: &str) -> Vec<StoredCheckpoint> {
        if !is_safe_id(job_id) {
            return Vec::new();
        }
        let mut found: Vec<StoredCheckpoint> = json_files(&self.checkpoints_dir(job_id))
            .into_iter()
            .filter_map(|path| read_checkpoint_file(&path).map_err(warn_skipped).ok())
            .collect();
        found.sort_by(|a, b| {
            a.checkpoint
                .step_number
                .cmp(&b.checkpoint.step_number)
                .then(a.modified.cmp(&b.modified))
        });
        found
    }

    /// Stores a run's setting. When the run already has one, only its `updatedAt` changes.
    pub(crate) fn store_run_setting(&self, setting: &RunSetting) -> Result<(), JobsError> {
        check_id("job", &setting.job_id)?;
        check_id("run", &setting.run_id)?;
        let path = self
            .run_dir(&setting.job_id, &setting.run_id)
            .join("run-setting.json");
        if path.exists() {
            return self.touch_run_setting(&setting.job_id, &setting.run_id, setting.updated_at);
        }
        self.write_json(&path, setting)
    }

    /// Sets a stored run setting's `updatedAt`, keeping everything else as it is.
    pub(crate) fn touch_run_setting(
        &self,
        job_id: &str,
        run_id: &str,
        now: u64,
    ) -> Result<(), JobsError> {
        check_id("job", job_id)?;
        check_id("run", run_id)?;
        let path = self.run_dir(job_id, run_id).join("run-setting.json");
        let mut value = read_json(&path)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("updatedAt".into(), Value::from(now));
        }
        self.write_json(&path, &value)
    }

    /// Every readable job, most recently started first. Unreadable files are skipped with a
    /// warning.
    #[cfg(test)]
    pub(crate) fn jobs(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = subdirs(&self.root)
            .into_iter()
            .filter_map(|dir| {
                let path = dir.join("job.json");
                if !path.exists() {
                    return None;
                }
                read_json(&path)
                    .and_then(|value| {
                        serde_json::from_value(value).map_err(|e| JobsError::Unreadable {
                            path: path.clone(),
                            message: e.to_string(),
                        })
                    })
                    .map_err(warn_skipped)
                    .ok()
            })
            .collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.started_at));
        jobs
    }

    /// The runs of one job, most recently updated first.
    #[cfg(test)]
    pub(crate) fn runs(&self, job_id: &str) -> Vec<RunSummary> {
        if !is_safe_id(job_id) {
            return Vec::new();
        }
        let mut runs = runs_in(&self.job_dir(job_id));
        runs.sort_by_key(|run| std::cmp::Reverse(run.updated_at));
        runs
    }

    /// The runs of every job, most recently updated first.
    pub(crate) fn all_runs(&self) -> Vec<RunSummary> {
        let mut runs: Vec<RunSummary> = subdirs(&self.root)
            .iter()
            .flat_map(|dir| runs_in(dir))
            .collect();
        runs.sort_by_key(|run| std::cmp::Reverse(run.updated_at));
        runs
    }

    /// Stores one run event (the line as the runtime wrote it) as
    /// `runs/<runId>/event-<timestamp>-<stepNumber>-<type>.json`.
    ///
    /// Two events of one type can share a millisecond (streamed deltas do); the later one then
    /// takes the next free millisecond in its file name, so none overwrites another and the
    /// names still sort in arrival order. The event inside keeps its own timestamp.
    pub(crate) fn write_event(
        &self,
        job_id: &str,
        run_id: &str,
        timestamp: u64,
        step_number: u64,
        event_type: &str,
        line: &str,
    ) -> Result<PathBuf, JobsError> {
        check_id("job", job_id)?;
        check_id("run", run_id)?;
        if event_type.is_empty() || !event_type.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(JobsError::BadId {
                kind: "event type",
                id: event_type.to_string(),
            });
        }
        let dir = self.run_dir(job_id, run_id);
        let mut stamp = timestamp;
        let mut path;
        loop {
            path = dir.join(format!("event-{stamp}-{step_number}-{event_type}.json"));
            if !path.exists() {
                break;
            }
            stamp += 1;
        }
        self.write(&path, line.as_bytes())?;
        Ok(path)
    }
}

fn warn_skipped(error: JobsError) {
    eprintln!("warning: skipped {error}");
}

fn read_json(path: &Path) -> Result<Value, JobsError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobsError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| JobsError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read_checkpoint_file(path: &Path) -> Result<StoredCheckpoint, JobsError> {
    let io = |source| JobsError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let json = std::fs::read_to_string(path).map_err(io)?;
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(io)?;
    let checkpoint = serde_json::from_str(&json).map_err(|e| JobsError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(StoredCheckpoint {
        json,
        checkpoint,
        modified,
    })
}

/// The folders directly in `dir` (none if it does not exist).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// The `*.json` files directly in `dir`, temporary files excluded.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

/// The readable run settings of one job folder.
fn runs_in(job_dir: &Path) -> Vec<RunSummary> {
    subdirs(&job_dir.join("runs"))
        .into_iter()
        .filter_map(|dir| {
            let path = dir.join("run-setting.json");
            if !path.exists() {
                return None;
            }
            let value = read_json(&path).map_err(warn_skipped).ok()?;
            let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
            match (
                field("jobId"),
                field("runId"),
                value.get("updatedAt").and_then(Value::as_u64),
            ) {
                (Some(job_id), Some(run_id), Some(updated_at)) => Some(RunSummary {
                    job_id,
                    run_id,
                    expert_key: field("expertKey").unwrap_or_default(),
                    updated_at,
                }),
                _ => {
                    warn_skipped(JobsError::Unreadable {
                        path,
                        message: "missing jobId, runId or updatedAt".to_string(),
                    });
                    None
                }
            }
        })
        .collect()
}
