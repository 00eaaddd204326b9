//! Stage 5: the run as data. The plan of its containers (`sandbox::plan`, pure and
//! snapshot-tested), what the job store records about it, and its time limit.

use std::time::Instant;

use crate::cli::RunArgs;
use crate::config::Settings;
use crate::ids::controller::ControllerId;
use crate::jobs::{Job, JobStore, RunInput, RunSetting, RunSettingSource};
use crate::sandbox::engine::run::{RunIds, TimeLimit};
use crate::sandbox::plan::{Resume, RunPlan, RunRequest};

use super::RunError;
use super::load::Loaded;
use super::preflight::Checked;

/// A run ready to execute.
pub(super) struct Planned {
    /// Its containers, networks, volumes and images.
    pub plan: RunPlan,
    /// Its job, run and Expert.
    pub ids: RunIds,
    /// What the job store records about it.
    pub run_setting: RunSetting,
    /// Its job, as recorded.
    pub job: Job,
    /// Where it is recorded.
    pub store: JobStore,
    /// The files it reads and trusts, watched from its start to its end.
    pub inputs: Vec<crate::trust::inputs::TrustedInput>,
    /// The workspace's trust record.
    pub trust: crate::trust::record::RecordFiles,
    /// The whole run's deadline.
    pub limit: TimeLimit,
}

/// Plans the run. `started` is when the command started: the time limit counts from there.
pub(super) fn plan(
    args: &RunArgs,
    loaded: &Loaded,
    settings: Settings,
    checked: Checked,
    started: Instant,
) -> Result<Planned, RunError> {
    let config = &loaded.config.config;
    let run_id = crate::ids::new_id();
    let run_setting = RunSetting::new(RunSettingSource {
        config,
        settings: &settings.run,
        job_id: &checked.job_id,
        run_id: &run_id,
        expert_key: &loaded.expert,
        closure: &config.delegation_closure(&loaded.expert),
        input: run_input(checked.resume.as_ref(), args.query()),
        env: &loaded.env,
        runtime_env: &checked.sandbox.runtime_env,
        verbose: args.verbose,
        now: checked.now,
    });
    let request = RunRequest {
        run_id: run_id.clone(),
        job_id: checked.job_id.clone(),
        expert_key: loaded.expert.clone(),
        query: args.query().to_string(),
        config: config.clone(),
        settings: settings.run,
        workspace: checked.sandbox.workspace,
        user: checked.user,
        protected: checked.sandbox.protected,
        runtime_env: checked.sandbox.runtime_env,
        env: loaded.env.clone(),
        mock_script: checked.sandbox.mock_script,
        artifacts: checked.artifacts,
        skill_files: checked.sandbox.skill_files,
        limits: settings.limits,
        oci_runtime: settings.runtime_engine.name.clone(),
        controller: ControllerId::current().to_string(),
        resume: checked.resume,
        list_tools: false,
    };
    let mut plan = crate::sandbox::plan::plan(&request).map_err(RunError::Spec)?;
    if let Some(source) = &loaded.image {
        source.pin(&mut plan)?;
    }
    Ok(Planned {
        plan,
        ids: RunIds {
            job_id: checked.job_id,
            run_id,
            expert_key: loaded.expert.clone(),
        },
        run_setting,
        job: checked.job,
        store: checked.store,
        inputs: checked.inputs,
        trust: checked.trust,
        limit: TimeLimit {
            started,
            limit: settings.time_limit,
        },
    })
}

/// What the run is asked, as its run setting records it: the answer with `-i`, else the query.
fn run_input(resume: Option<&Resume>, query: &str) -> RunInput {
    match resume.and_then(|r| r.interactive_tool_call_result.clone()) {
        Some(answer) => RunInput {
            text: None,
            interactive_tool_call_result: Some(answer),
        },
        None => RunInput {
            text: Some(query.to_string()),
            interactive_tool_call_result: None,
        },
    }
}
