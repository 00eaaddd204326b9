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
//! Every path is reached from the workspace without following a link on any component
//! (`files::beneath`): a planted `perstack` link, or one inside it, is an error naming where it
//! points, for writes and for the reads of `--continue` alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::JobsError;
use super::job::Job;
use super::run_setting::RunSetting;
use crate::config::workspace::RESERVED_DIR;
use crate::event::Checkpoint;
use crate::files::{Beneath, Kind, Owner};

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
    /// The workspace, open: every path below is relative to it.
    workspace: Arc<Beneath>,
    owner: Owner,
}

impl JobStore {
    /// The store in `<workspace>/perstack/jobs` (the workspace canonical), giving what it
    /// creates to `owner`.
    pub(crate) fn open(workspace: &Path, owner: Owner) -> Result<JobStore, JobsError> {
        Ok(JobStore {
            workspace: Arc::new(Beneath::open(workspace)?),
            owner,
        })
    }

    /// `<workspace>/perstack/jobs`, for messages.
    pub(crate) fn root(&self) -> PathBuf {
        self.workspace.path(&jobs_dir())
    }

    /// A job's folder, relative to the workspace.
    fn job_rel(job_id: &str) -> PathBuf {
        jobs_dir().join(job_id)
    }

    fn checkpoints_rel(job_id: &str) -> PathBuf {
        Self::job_rel(job_id).join("checkpoints")
    }

    fn run_rel(job_id: &str, run_id: &str) -> PathBuf {
        Self::job_rel(job_id).join("runs").join(run_id)
    }

    /// A job's folder.
    #[cfg(test)]
    pub(crate) fn job_dir(&self, job_id: &str) -> PathBuf {
        self.workspace.path(&Self::job_rel(job_id))
    }

    /// A run's folder.
    #[cfg(test)]
    pub(crate) fn run_dir(&self, job_id: &str, run_id: &str) -> PathBuf {
        self.workspace.path(&Self::run_rel(job_id, run_id))
    }

    /// Checks that the reserved folder and everything in it can be reached without following a
    /// link: refuses the first link found, naming where it points. A run does this before it
    /// starts anything.
    pub(crate) fn check_links(&self) -> Result<(), JobsError> {
        let reserved = Path::new(RESERVED_DIR);
        match self.workspace.kind(reserved)? {
            Some(Kind::Link(target)) => Err(crate::files::FileError::Link {
                path: self.workspace.path(reserved),
                target,
            }
            .into()),
            Some(Kind::Folder) => self.check_links_in(reserved.to_path_buf()),
            Some(Kind::File | Kind::Other) => Err(crate::files::FileError::NotAFolder {
                path: self.workspace.path(reserved),
            }
            .into()),
            None => Ok(()),
        }
    }

    fn check_links_in(&self, dir: PathBuf) -> Result<(), JobsError> {
        let mut pending = vec![dir];
        while let Some(dir) = pending.pop() {
            // `subdirs` refuses the first link it meets.
            pending.extend(self.subdirs(&dir)?);
        }
        Ok(())
    }

    fn write(&self, rel: &Path, bytes: &[u8]) -> Result<(), JobsError> {
        Ok(self.workspace.write_atomic(rel, bytes, self.owner)?)
    }

    /// Reads a file's text; `None` when it does not exist.
    fn read_text(&self, rel: &Path) -> Result<Option<(String, SystemTime)>, JobsError> {
        let Some(read) = self.workspace.read(rel)? else {
            return Ok(None);
        };
        let text = String::from_utf8(read.bytes).map_err(|e| JobsError::Unreadable {
            path: self.workspace.path(rel),
            message: e.to_string(),
        })?;
        Ok(Some((text, read.modified)))
    }

    fn write_json(&self, path: &Path, value: &impl serde::Serialize) -> Result<(), JobsError> {
        let mut text = serde_json::to_string_pretty(value).map_err(|e| JobsError::Io {
            action: "serialize",
            path: self.workspace.path(path),
            source: e.into(),
        })?;
        text.push('\n');
        self.write(path, text.as_bytes())
    }

    /// Writes `job.json`.
    pub(crate) fn write_job(&self, job: &Job) -> Result<(), JobsError> {
        check_id("job", &job.id)?;
        self.write_json(&Self::job_rel(&job.id).join("job.json"), job)
    }

    /// Reads `job.json`; `None` when the job has none.
    pub(crate) fn read_job(&self, job_id: &str) -> Result<Option<Job>, JobsError> {
        check_id("job", job_id)?;
        let rel = Self::job_rel(job_id).join("job.json");
        let Some((text, _)) = self.read_text(&rel)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| JobsError::Unreadable {
                path: self.workspace.path(&rel),
                message: e.to_string(),
            })
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
        let rel = Self::checkpoints_rel(job_id).join(format!("{id}.json"));
        self.write(&rel, checkpoint.to_string().as_bytes())
    }

    /// Reads one checkpoint.
    pub(crate) fn read_checkpoint(
        &self,
        job_id: &str,
        checkpoint_id: &str,
    ) -> Result<StoredCheckpoint, JobsError> {
        check_id("job", job_id)?;
        check_id("checkpoint", checkpoint_id)?;
        let rel = Self::checkpoints_rel(job_id).join(format!("{checkpoint_id}.json"));
        let Some(stored) = self.read_checkpoint_file(&rel)? else {
            return Err(JobsError::CheckpointNotFound {
                job_id: job_id.to_string(),
                checkpoint_id: checkpoint_id.to_string(),
                known: self
                    .checkpoints(job_id)?
                    .iter()
                    .map(|c| c.checkpoint.id.clone())
                    .collect(),
            });
        };
        Ok(stored)
    }

    /// Every readable checkpoint of a job, by step number (then by when it was written).
    /// Unreadable files are skipped with a warning; a link is an error.
    pub(crate) fn checkpoints(&self, job_id: &str) -> Result<Vec<StoredCheckpoint>, JobsError> {
        if !is_safe_id(job_id) {
            return Ok(Vec::new());
        }
        let dir = Self::checkpoints_rel(job_id);
        let mut found = Vec::new();
        for rel in self.json_files(&dir)? {
            match self.read_checkpoint_file(&rel) {
                Ok(Some(stored)) => found.push(stored),
                Ok(None) => {}
                Err(error @ JobsError::File(crate::files::FileError::Link { .. })) => {
                    return Err(error);
                }
                Err(error) => warn_skipped(error),
            }
        }
        found.sort_by(|a, b| {
            a.checkpoint
                .step_number
                .cmp(&b.checkpoint.step_number)
                .then(a.modified.cmp(&b.modified))
        });
        Ok(found)
    }

    /// Stores a run's setting. When the run already has one, only its `updatedAt` changes.
    pub(crate) fn store_run_setting(&self, setting: &RunSetting) -> Result<(), JobsError> {
        check_id("job", &setting.job_id)?;
        check_id("run", &setting.run_id)?;
        let path = Self::run_rel(&setting.job_id, &setting.run_id).join("run-setting.json");
        if self.workspace.kind(&path)?.is_some() {
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
        let path = Self::run_rel(job_id, run_id).join("run-setting.json");
        let mut value = self.read_json(&path)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("updatedAt".into(), Value::from(now));
        }
        self.write_json(&path, &value)
    }

    /// Every readable job, most recently started first. Unreadable files are skipped with a
    /// warning.
    #[cfg(test)]
    pub(crate) fn jobs(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .subdirs(&jobs_dir())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|dir| {
                let path = dir.join("job.json");
                self.workspace.kind(&path).ok()??;
                self.read_json(&path)
                    .and_then(|value| {
                        serde_json::from_value(value).map_err(|e| JobsError::Unreadable {
                            path: self.workspace.path(&path),
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
        let mut runs = self.runs_in(&Self::job_rel(job_id)).unwrap_or_default();
        runs.sort_by_key(|run| std::cmp::Reverse(run.updated_at));
        runs
    }

    /// The runs of every job, most recently updated first. A link is an error.
    pub(crate) fn all_runs(&self) -> Result<Vec<RunSummary>, JobsError> {
        let mut runs = Vec::new();
        for dir in self.subdirs(&jobs_dir())? {
            runs.extend(self.runs_in(&dir)?);
        }
        runs.sort_by_key(|run| std::cmp::Reverse(run.updated_at));
        Ok(runs)
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
        let dir = Self::run_rel(job_id, run_id);
        let mut stamp = timestamp;
        let mut path;
        loop {
            path = dir.join(format!("event-{stamp}-{step_number}-{event_type}.json"));
            if self.workspace.kind(&path)?.is_none() {
                break;
            }
            stamp += 1;
        }
        self.write(&path, line.as_bytes())?;
        Ok(self.workspace.path(&path))
    }

    fn read_json(&self, rel: &Path) -> Result<Value, JobsError> {
        let Some((text, _)) = self.read_text(rel)? else {
            return Err(JobsError::Io {
                action: "read",
                path: self.workspace.path(rel),
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        serde_json::from_str(&text).map_err(|e| JobsError::Unreadable {
            path: self.workspace.path(rel),
            message: e.to_string(),
        })
    }

    /// A stored checkpoint; `None` when the file does not exist.
    fn read_checkpoint_file(&self, rel: &Path) -> Result<Option<StoredCheckpoint>, JobsError> {
        let Some((json, modified)) = self.read_text(rel)? else {
            return Ok(None);
        };
        let checkpoint = serde_json::from_str(&json).map_err(|e| JobsError::Unreadable {
            path: self.workspace.path(rel),
            message: e.to_string(),
        })?;
        Ok(Some(StoredCheckpoint {
            json,
            checkpoint,
            modified,
        }))
    }

    /// The folders directly in `dir` (none if it does not exist); a link is an error.
    fn subdirs(&self, dir: &Path) -> Result<Vec<PathBuf>, JobsError> {
        let mut found = Vec::new();
        for (name, kind) in self.workspace.entries(dir)? {
            match kind {
                Kind::Folder => found.push(dir.join(name)),
                Kind::Link(target) => {
                    return Err(crate::files::FileError::Link {
                        path: self.workspace.path(&dir.join(name)),
                        target,
                    }
                    .into());
                }
                Kind::File | Kind::Other => {}
            }
        }
        Ok(found)
    }

    /// The `*.json` names directly in `dir`, temporary files excluded.
    fn json_files(&self, dir: &Path) -> Result<Vec<PathBuf>, JobsError> {
        Ok(self
            .workspace
            .entries(dir)?
            .into_iter()
            .filter(|(name, _)| name.ends_with(".json") && !name.starts_with('.'))
            .map(|(name, _)| dir.join(name))
            .collect())
    }

    /// The readable run settings of one job folder.
    fn runs_in(&self, job_dir: &Path) -> Result<Vec<RunSummary>, JobsError> {
        let mut found = Vec::new();
        for dir in self.subdirs(&job_dir.join("runs"))? {
            let path = dir.join("run-setting.json");
            if self.workspace.kind(&path)?.is_none() {
                continue;
            }
            let value = match self.read_json(&path) {
                Ok(value) => value,
                Err(error @ JobsError::File(crate::files::FileError::Link { .. })) => {
                    return Err(error);
                }
                Err(error) => {
                    warn_skipped(error);
                    continue;
                }
            };
            let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
            match (
                field("jobId"),
                field("runId"),
                value.get("updatedAt").and_then(Value::as_u64),
            ) {
                (Some(job_id), Some(run_id), Some(updated_at)) => found.push(RunSummary {
                    job_id,
                    run_id,
                    expert_key: field("expertKey").unwrap_or_default(),
                    updated_at,
                }),
                _ => warn_skipped(JobsError::Unreadable {
                    path: self.workspace.path(&path),
                    message: "missing jobId, runId or updatedAt".to_string(),
                }),
            }
        }
        Ok(found)
    }
}

fn warn_skipped(error: JobsError) {
    eprintln!("warning: skipped {error}");
}

/// Reading jobs back (`perstack-sandbox log`), through the same reads that follow no link.
impl JobStore {
    /// The ids of the stored jobs (the folders in `perstack/jobs`); a link is an error.
    pub(crate) fn job_ids(&self) -> Result<Vec<String>, JobsError> {
        Ok(self
            .subdirs(&jobs_dir())?
            .iter()
            .filter_map(|dir| dir.file_name()?.to_str().map(str::to_string))
            .filter(|id| is_safe_id(id))
            .collect())
    }

    /// The ids of a job's runs (the folders in its `runs/`); a link is an error.
    pub(crate) fn run_ids(&self, job_id: &str) -> Result<Vec<String>, JobsError> {
        check_id("job", job_id)?;
        Ok(self
            .subdirs(&Self::job_rel(job_id).join("runs"))?
            .iter()
            .filter_map(|dir| dir.file_name()?.to_str().map(str::to_string))
            .filter(|id| is_safe_id(id))
            .collect())
    }

    /// A run's stored events, in the order of their file names' timestamps (arrival order).
    /// Unreadable files are skipped with a warning; a link is an error.
    pub(crate) fn events(&self, job_id: &str, run_id: &str) -> Result<Vec<Value>, JobsError> {
        check_id("job", job_id)?;
        check_id("run", run_id)?;
        let mut files: Vec<(u64, PathBuf)> = self
            .json_files(&Self::run_rel(job_id, run_id))?
            .into_iter()
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?;
                let stamp = name
                    .strip_prefix("event-")?
                    .split('-')
                    .next()?
                    .parse()
                    .ok()?;
                Some((stamp, path))
            })
            .collect();
        files.sort();
        let mut events = Vec::new();
        for (_, path) in files {
            match self.read_json(&path) {
                Ok(event) => events.push(event),
                Err(error @ JobsError::File(_)) => return Err(error),
                Err(error) => warn_skipped(error),
            }
        }
        Ok(events)
    }
}
