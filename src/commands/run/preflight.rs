//! Stage 3: everything a run needs from this machine, checked before anything touches Docker:
//! the workspace, every variable, the skills' commands, our executable, and the stored run it
//! continues.

use crate::cli::RunArgs;
use crate::config::Settings;
use crate::files::Owner;
use crate::ids::now_ms;
use crate::jobs::store::is_safe_id;
use crate::jobs::{
    ContinueFrom, Job, JobStore, check_input, delegate_turns_played, interactive_answer,
    select_checkpoint,
};
use crate::sandbox::engine::workspace_user::{UidGid, workspace_user};
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::plan::Resume;
use crate::sandbox::preflight::{self, Preflight};
use crate::trust::inputs::TrustedInput;
use crate::trust::record::RecordFiles;
use crate::trust::watch;

use super::super::artifacts;
use super::RunError;
use super::load::Loaded;
use super::notice::Notice;

/// A run that may start.
pub(super) struct Checked {
    /// The canonical workspace, the runtime's variables and the mock script.
    pub sandbox: preflight::Checked,
    /// Our executable and the chosen CA bundle (empty for a versioned image: its images carry
    /// them).
    pub artifacts: Artifacts,
    /// Who base-skill runs as, so that what it writes belongs to the workspace's user.
    pub user: UidGid,
    /// The job store in the workspace, writing as that same user.
    pub store: JobStore,
    /// The run's job.
    pub job_id: String,
    /// The checkpoint the run continues from, and its answer.
    pub resume: Option<Resume>,
    /// The job as it will be recorded.
    pub job: Job,
    /// The files the run reads and trusts (its skills' files too), watched from its start to its
    /// end.
    pub inputs: Vec<TrustedInput>,
    /// The workspace's trust record.
    pub trust: RecordFiles,
    /// When the run was checked, ms since the epoch: the job's and the run setting's time.
    pub now: u64,
    /// What to tell the user.
    pub notices: Vec<Notice>,
}

/// Checks it all; every problem of the config, the env and the workspace at once.
pub(super) fn check(
    args: &RunArgs,
    loaded: &Loaded,
    settings: &Settings,
) -> Result<Checked, RunError> {
    let workspace = args.workspace.clone().unwrap_or_else(|| loaded.cwd.clone());
    let trusted = crate::trust::inputs::of_run(
        &loaded.config,
        loaded.image.is_none(),
        &loaded.cwd,
        &args.env_path,
    );
    let preflight = Preflight {
        config: &loaded.config,
        expert_key: &loaded.expert,
        provider: settings.run.provider,
        env: &loaded.env,
        extra_env: &args.env,
        workspace: &workspace,
        trusted: &trusted,
    };
    let checked = match &loaded.image {
        Some(source) => preflight.check_with_mock_script(source.mock_script.clone()),
        None => preflight.check(),
    }
    .map_err(RunError::Preflight)?;
    let (artifacts, executable_note) = match &loaded.image {
        Some(_) => (Artifacts::default(), None),
        None => {
            let loaded = artifacts::load(&settings.ca_certificates)?;
            (loaded.artifacts, loaded.note)
        }
    };
    let inputs = checked.trusted.clone();
    let base_skill_user = workspace_user(&checked.workspace);
    let store = job_store(&checked, base_skill_user.user).map_err(RunError::Record)?;
    // A planted `perstack` link, or one inside it, stops the run before anything starts.
    store.check_links().map_err(RunError::ReservedFolder)?;
    let trust = trust_record(&checked.workspace)?;
    let mut notices: Vec<Notice> = executable_note
        .map(Notice::WholeExecutable)
        .into_iter()
        .collect();
    let resume = match &loaded.continue_from {
        Some(from) => Some(resume_from(&store, from, args, &loaded.expert)?),
        None => None,
    };
    let (job_id, resume) = job_id(resume, args.job_id.as_deref(), &mut notices)?;
    let now = now_ms();
    let max_steps = settings.run.max_steps;
    let job = match store.read_job(&job_id) {
        Ok(Some(job)) => job.resumed(&loaded.expert, max_steps),
        Ok(None) => Job::new(&job_id, &loaded.expert, max_steps, now),
        Err(error) => {
            notices.push(Notice::JobStartsAfresh(error));
            Job::new(&job_id, &loaded.expert, max_steps, now)
        }
    };
    notices.extend(base_skill_user.warning.map(Notice::BaseSkillUser));
    Ok(Checked {
        sandbox: checked,
        artifacts,
        user: base_skill_user.user,
        store,
        job_id,
        resume,
        job,
        inputs,
        trust,
        now,
        notices,
    })
}

/// The workspace's trust record, which must be writable and hold no change a run made that
/// the user has not accepted.
fn trust_record(workspace: &std::path::Path) -> Result<RecordFiles, RunError> {
    let trust = crate::trust::record_files(workspace).map_err(RunError::Trust)?;
    watch::check(&trust).map_err(RunError::Trust)?;
    Ok(trust)
}

/// The job store; when we run as root for another user, what it makes belongs to them.
fn job_store(
    checked: &preflight::Checked,
    user: UidGid,
) -> Result<JobStore, crate::jobs::JobsError> {
    let owner = if nix::unistd::getuid().is_root() && user.0 != 0 {
        let (uid, gid) = user;
        Owner::user(uid, gid)
    } else {
        Owner::detect()
    };
    JobStore::open(&checked.workspace, owner)
}

/// The stored checkpoint to continue from (with its job) and the runtime's input.
fn resume_from(
    store: &JobStore,
    from: &ContinueFrom,
    args: &RunArgs,
    expert: &str,
) -> Result<(String, Resume), RunError> {
    let stored = select_checkpoint(store, from, expert).map_err(RunError::Continue)?;
    let interactive = args.interactive_tool_call_result;
    check_input(&stored.checkpoint, interactive, args.query()).map_err(RunError::Continue)?;
    let answer = match interactive {
        true => {
            Some(interactive_answer(&stored.checkpoint, args.query()).map_err(RunError::Continue)?)
        }
        false => None,
    };
    Ok((
        stored.checkpoint.job_id.clone(),
        Resume {
            delegate_turns: delegate_turns_played(
                &store
                    .checkpoints(&stored.checkpoint.job_id)
                    .map_err(RunError::Continue)?,
                &stored.checkpoint,
            ),
            checkpoint_json: stored.json,
            interactive_tool_call_result: answer,
        },
    ))
}

/// The job of the run: the continued checkpoint's, else `--job-id`, else a new one (§2). Gives
/// the resume without its job.
fn job_id(
    resume: Option<(String, Resume)>,
    given: Option<&str>,
    notices: &mut Vec<Notice>,
) -> Result<(String, Option<Resume>), RunError> {
    let (job_id, resume) = match (resume, given) {
        (Some((continued, resume)), given) => {
            if let Some(given) = given.filter(|g| *g != continued) {
                notices.push(Notice::JobIdIgnored {
                    given: given.to_string(),
                    continued: continued.clone(),
                });
            }
            (continued, Some(resume))
        }
        (None, Some(given)) => (given.to_string(), None),
        (None, None) => (crate::ids::new_id(), None),
    };
    if !is_safe_id(&job_id) {
        return Err(RunError::JobId(job_id));
    }
    Ok((job_id, resume))
}
