//! Everything before the first process starts, as `run --image` does it: the config rebuilt from
//! the baked labels and spec, the settings, the preflight checks against this container's
//! environment and `/workspace`, the job store, the checkpoint a continuation starts from, and
//! the pure plan of the run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::image::RecipeRoots;
use super::{MANIFEST_PATH, StandaloneError};
use crate::cli::StandaloneArgs;
use crate::config::{LoadedConfig, SettingFlags, Settings};
use crate::contract::paths::{SPEC_PATH, WORKSPACE_MOUNT};
use crate::contract::spec::RuntimeSpec;
use crate::files::Owner;
use crate::jobs::store::is_safe_id;
use crate::jobs::{
    ContinueFrom, Job, JobStore, RunInput, RunSetting, RunSettingSource, check_input,
    delegate_turns_played, interactive_answer, select_checkpoint,
};
use crate::sandbox::engine::workspace_user::workspace_user;
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::labels::{STANDALONE_BASE, STANDALONE_ROOTS};
use crate::sandbox::plan::{Resume, RunPlan, RunRequest};
use crate::sandbox::preflight::Preflight;
use crate::sandbox::versioned::Manifest;

/// How messages name the image's config: there is no perstack.toml in the container.
const ORIGIN: &str = "this image";

/// A run ready to start.
pub(crate) struct Prepared {
    /// Its processes, as containers: the plan `run` would carry out.
    pub plan: RunPlan,
    /// The job.
    pub job_id: String,
    /// The run.
    pub run_id: String,
    /// The job as recorded when the run begins.
    pub job: Job,
    /// Where it is recorded: `/workspace/perstack`.
    pub store: JobStore,
    /// Its redacted run setting.
    pub run_setting: RunSetting,
    /// The image's base (where the skills' interpreters come from), as its labels say.
    pub base: String,
    /// Its skills built from their own Dockerfile, each with its root, as its labels say.
    pub roots: RecipeRoots,
}

// Over the threshold (lib.rs); left whole while the standalone-recipe work changes it.
#[allow(clippy::too_many_lines)]
/// Reads the image, checks the run and plans it.
pub(crate) fn prepare(args: &StandaloneArgs) -> Result<Prepared, StandaloneError> {
    let Baked {
        loaded,
        spec,
        base,
        roots,
    } = load_image()?;
    let expert = spec.expert_key.clone();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let flags = SettingFlags {
        model: args.model.clone(),
        max_steps: args.max_steps,
        ..SettingFlags::default()
    };
    let settings = Settings::resolve(&flags, &loaded).map_err(run_error)?;
    let workspace = Path::new(WORKSPACE_MOUNT);
    if !workspace.is_dir() {
        return Err(StandaloneError::Run(format!(
            "{WORKSPACE_MOUNT} is not a folder; mount your workspace there: docker run -v \
             \"$PWD/workspace:{WORKSPACE_MOUNT}\" …"
        )));
    }
    let checked = Preflight {
        config: &loaded,
        expert_key: &expert,
        provider: settings.run.provider,
        env: &env,
        extra_env: &[],
        workspace,
        trusted: &[],
    }
    .check_with_mock_script(spec.mock_script.clone())
    .map_err(run_error)?;
    let user = workspace_user(&checked.workspace);
    let owner = match (nix::unistd::getuid().is_root(), user.user) {
        (true, (uid, gid)) if uid != 0 => Owner::user(uid, gid),
        _ => Owner::detect(),
    };
    let store = JobStore::open(&checked.workspace, owner).map_err(run_error)?;
    store.check_links().map_err(run_error)?;
    let resume = match continue_from(args)? {
        Some(from) => Some(resume_from(&store, &from, args, &expert)?),
        None => None,
    };
    let (job_id, resume) = match resume {
        Some((job_id, resume)) => (job_id, Some(resume)),
        None => (crate::ids::new_id(), None),
    };
    if !is_safe_id(&job_id) {
        return Err(StandaloneError::Run(format!("`{job_id}` is not a job id")));
    }
    let now = crate::ids::now_ms();
    let max_steps = settings.run.max_steps;
    let job = match store.read_job(&job_id) {
        Ok(Some(job)) => job.resumed(&expert, max_steps),
        _ => Job::new(&job_id, &expert, max_steps, now),
    };
    let run_id = crate::ids::new_id();
    let config = &loaded.config;
    let run_setting = RunSetting::new(RunSettingSource {
        config,
        settings: &settings.run,
        job_id: &job_id,
        run_id: &run_id,
        expert_key: &expert,
        closure: &config.delegation_closure(&expert),
        input: match resume
            .as_ref()
            .and_then(|r| r.interactive_tool_call_result.clone())
        {
            Some(answer) => RunInput {
                text: None,
                interactive_tool_call_result: Some(answer),
            },
            None => RunInput {
                text: Some(args.query.clone()),
                interactive_tool_call_result: None,
            },
        },
        env: &env,
        runtime_env: &checked.runtime_env,
        verbose: args.verbose,
        now,
    });
    let request = RunRequest {
        run_id: run_id.clone(),
        job_id: job_id.clone(),
        expert_key: expert.clone(),
        query: args.query.clone(),
        config: config.clone(),
        settings: settings.run,
        workspace: checked.workspace,
        user: user.user,
        protected: checked.protected,
        runtime_env: checked.runtime_env,
        env,
        mock_script: checked.mock_script,
        // Every file is in this image already; the plan's images are never built.
        artifacts: Artifacts::default(),
        // Preflight reads no folder for an image's config; the skills' files are in the image.
        skill_files: super::skill_root::baked_files(
            &loaded,
            &expert,
            Path::new(super::skill_root::SKILLS_DIR),
        )
        .map_err(StandaloneError::Image)?,
        limits: settings.limits,
        oci_runtime: None,
        controller: String::new(),
        resume,
        list_tools: false,
    };
    let plan = crate::sandbox::plan::plan(&request).map_err(run_error)?;
    Ok(Prepared {
        plan,
        job_id,
        run_id,
        job,
        store,
        run_setting,
        base,
        roots,
    })
}

fn run_error(error: impl std::fmt::Display) -> StandaloneError {
    StandaloneError::Run(error.to_string())
}

/// What the build baked into the image.
struct Baked {
    /// The config, rebuilt from the labels and the spec.
    loaded: LoadedConfig,
    /// The runtime spec.
    spec: RuntimeSpec,
    /// The image's base.
    base: String,
    /// Its skills built from their own Dockerfile.
    roots: RecipeRoots,
}

/// The config, spec, base and recipe roots baked into the image at build time.
fn load_image() -> Result<Baked, StandaloneError> {
    let read = |path: &str| {
        std::fs::read(path).map_err(|e| {
            StandaloneError::Image(format!(
                "cannot read {path} ({e}): this image was not built by `perstack-sandbox build \
                 --standalone`"
            ))
        })
    };
    let spec: RuntimeSpec = serde_json::from_slice(&read(SPEC_PATH)?)
        .map_err(|e| StandaloneError::Image(format!("{SPEC_PATH}: {e}")))?;
    let labels: HashMap<String, String> = serde_json::from_slice(&read(MANIFEST_PATH)?)
        .map_err(|e| StandaloneError::Image(format!("{MANIFEST_PATH}: {e}")))?;
    let manifest = Manifest::from_labels(ORIGIN, &labels).map_err(image_error)?;
    let config = manifest.config(ORIGIN, &spec).map_err(image_error)?;
    let base = labels
        .get(STANDALONE_BASE)
        .cloned()
        .unwrap_or_else(|| "scratch".to_string());
    let roots = match labels.get(STANDALONE_ROOTS) {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| StandaloneError::Image(format!("{MANIFEST_PATH}: {e}")))?,
        None => RecipeRoots::new(),
    };
    Ok(Baked {
        loaded: LoadedConfig::from_config(PathBuf::from(ORIGIN), config),
        spec,
        base,
        roots,
    })
}

fn image_error(error: impl std::fmt::Display) -> StandaloneError {
    StandaloneError::Image(error.to_string())
}

/// `--continue`, `--continue-job`, `--resume-from`: which stored run to continue.
fn continue_from(args: &StandaloneArgs) -> Result<Option<ContinueFrom>, StandaloneError> {
    ContinueFrom::from_flags(
        args.continue_job.as_deref(),
        args.continue_latest,
        args.resume_from.as_deref(),
        args.interactive_tool_call_result,
    )
    // The same words as `run`'s: the entrypoint takes the same flags.
    .map_err(|e| StandaloneError::Run(e.to_string()))
}

/// The stored checkpoint to continue from (with its job) and the runtime's input.
fn resume_from(
    store: &JobStore,
    from: &ContinueFrom,
    args: &StandaloneArgs,
    expert: &str,
) -> Result<(String, Resume), StandaloneError> {
    let stored = select_checkpoint(store, from, expert).map_err(run_error)?;
    let interactive = args.interactive_tool_call_result;
    check_input(&stored.checkpoint, interactive, &args.query).map_err(run_error)?;
    let answer = match interactive {
        true => Some(interactive_answer(&stored.checkpoint, &args.query).map_err(run_error)?),
        false => None,
    };
    let checkpoints = store
        .checkpoints(&stored.checkpoint.job_id)
        .map_err(run_error)?;
    Ok((
        stored.checkpoint.job_id.clone(),
        Resume {
            delegate_turns: delegate_turns_played(&checkpoints, &stored.checkpoint),
            checkpoint_json: stored.json,
            interactive_tool_call_result: answer,
        },
    ))
}
