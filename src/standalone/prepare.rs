//! Everything before the first process starts, as `run --image` does it: the config rebuilt from
//! the baked labels and spec, the settings, the preflight checks against this container's
//! environment and `/workspace`, the job store, the checkpoint a continuation starts from, and
//! the pure plan of the run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::image::RecipeRoots;
use super::{MANIFEST_PATH, StandaloneError};
use crate::cli::StandaloneArgs;
use crate::config::{LoadedConfig, ProviderName, SettingFlags, Settings};
use crate::contract::paths::{CA_BUNDLE_PATH, SPEC_PATH, WORKSPACE_MOUNT};
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
use crate::sandbox::preflight::{Checked, Preflight};
use crate::sandbox::skill_files::FilesBySkill;
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
    /// The workspace's protected paths (relative), the run data among them.
    pub protected: Vec<PathBuf>,
}

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
    let settings = resolve_settings(args, &loaded)?;
    let checked = preflight(&loaded, &spec, settings.run.provider, &env)?;
    let user = workspace_user(&checked.workspace);
    let store = open_store(&checked.workspace, user.user)?;
    let (job_id, resume) = job_to_run(&store, args, &expert)?;
    let now = crate::ids::now_ms();
    let job = job_record(&store, &job_id, &expert, settings.run.max_steps, now);
    let run_id = crate::ids::new_id();
    let config = &loaded.config;
    let run_setting = RunSetting::new(RunSettingSource {
        config,
        settings: &settings.run,
        job_id: &job_id,
        run_id: &run_id,
        expert_key: &expert,
        closure: &config.delegation_closure(&expert),
        input: run_input(args, resume.as_ref()),
        env: &env,
        runtime_env: &checked.runtime_env,
        verbose: args.verbose,
        now,
    });
    let skill_files = baked_skill_files(&loaded, &expert)?;
    let request = RunRequest {
        run_id: run_id.clone(),
        job_id: job_id.clone(),
        expert_key: expert,
        query: args.query.clone(),
        config: config.clone(),
        settings: settings.run,
        workspace: checked.workspace,
        user: user.user,
        protected: checked.protected,
        runtime_env: checked.runtime_env,
        env,
        mock_script: checked.mock_script,
        artifacts: baked_artifacts(Path::new(CA_BUNDLE_PATH))?,
        skill_files,
        limits: settings.limits,
        oci_runtime: None,
        controller: String::new(),
        resume,
        list_tools: false,
    };
    let plan = crate::sandbox::plan::plan(&request).map_err(run_error)?;
    let protected = request.protected.entries.iter();
    let protected = protected.map(|e| e.path.relative.clone()).collect();
    Ok(Prepared {
        plan,
        job_id,
        run_id,
        job,
        store,
        run_setting,
        base,
        roots,
        protected,
    })
}

/// The settings: the image's config with `--model` and `--max-steps` over it.
fn resolve_settings(
    args: &StandaloneArgs,
    loaded: &LoadedConfig,
) -> Result<Settings, StandaloneError> {
    let flags = SettingFlags {
        model: args.model.clone(),
        max_steps: args.max_steps,
        ..SettingFlags::default()
    };
    Settings::resolve(&flags, loaded).map_err(run_error)
}

/// The preflight checks against this container's environment and the mounted `/workspace`.
fn preflight(
    loaded: &LoadedConfig,
    spec: &RuntimeSpec,
    provider: ProviderName,
    env: &BTreeMap<String, String>,
) -> Result<Checked, StandaloneError> {
    let workspace = Path::new(WORKSPACE_MOUNT);
    if !workspace.is_dir() {
        return Err(StandaloneError::Run(format!(
            "{WORKSPACE_MOUNT} is not a folder; mount your workspace there: docker run -v \
             \"$PWD/workspace:{WORKSPACE_MOUNT}\" …"
        )));
    }
    Preflight {
        config: loaded,
        expert_key: &spec.expert_key,
        provider,
        env,
        extra_env: &[],
        workspace,
        trusted: &[],
    }
    .check_with_mock_script(spec.mock_script.clone())
    .map_err(run_error)
}

/// The job store in the workspace, its files owned by the workspace's owner when we run as root.
fn open_store(workspace: &Path, user: (u32, u32)) -> Result<JobStore, StandaloneError> {
    let owner = match (nix::unistd::getuid().is_root(), user) {
        (true, (uid, gid)) if uid != 0 => Owner::user(uid, gid),
        _ => Owner::detect(),
    };
    let store = JobStore::open(workspace, owner).map_err(run_error)?;
    store.check_links().map_err(run_error)?;
    Ok(store)
}

/// The job this run belongs to (a new one unless it continues a stored run) and its checkpoint.
fn job_to_run(
    store: &JobStore,
    args: &StandaloneArgs,
    expert: &str,
) -> Result<(String, Option<Resume>), StandaloneError> {
    let (job_id, resume) = match continue_from(args)? {
        Some(from) => {
            let (job_id, resume) = resume_from(store, &from, args, expert)?;
            (job_id, Some(resume))
        }
        None => (crate::ids::new_id(), None),
    };
    if !is_safe_id(&job_id) {
        return Err(StandaloneError::Run(format!("`{job_id}` is not a job id")));
    }
    Ok((job_id, resume))
}

/// The job as recorded when the run begins: the stored one resumed, or a new one.
fn job_record(store: &JobStore, job_id: &str, expert: &str, max_steps: u32, now: u64) -> Job {
    match store.read_job(job_id) {
        Ok(Some(job)) => job.resumed(expert, max_steps),
        _ => Job::new(job_id, expert, max_steps, now),
    }
}

/// The runtime's input: the answer to an interactive tool call when resuming one, else the query.
fn run_input(args: &StandaloneArgs, resume: Option<&Resume>) -> RunInput {
    match resume.and_then(|r| r.interactive_tool_call_result.clone()) {
        Some(answer) => RunInput {
            text: None,
            interactive_tool_call_result: Some(answer),
        },
        None => RunInput {
            text: Some(args.query.clone()),
            interactive_tool_call_result: None,
        },
    }
}

/// The skills' files: preflight reads no folder for an image's config; they are in the image.
fn baked_skill_files(loaded: &LoadedConfig, expert: &str) -> Result<FilesBySkill, StandaloneError> {
    super::skill_root::baked_files(loaded, expert, Path::new(super::skill_root::SKILLS_DIR))
        .map_err(StandaloneError::Image)
}

/// The artifacts the plan is made with: every file is in this image already and the plan's
/// images are never built, but the CA bundle the build chose must be known — at `bundle_path`
/// when a principal talks TLS (a skill with `allowedDomains`, a networked runtime). With it the
/// plan gives those principals' images, as their own images would have, the variables common
/// TLS stacks read (`CA_BUNDLE_VARIABLES`) pointing there, and each such process gets them; a
/// skill's Python or Node would otherwise trust only its own roots and fail behind a
/// TLS-intercepting proxy or with a private CA. No file: no principal talks TLS.
fn baked_artifacts(bundle_path: &Path) -> Result<Artifacts, StandaloneError> {
    let ca_bundle = match std::fs::read(bundle_path) {
        Ok(pem) => bytes::Bytes::from(pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bytes::Bytes::new(),
        Err(e) => {
            return Err(run_error(format!(
                "cannot read the image's CA bundle {}: {e}",
                bundle_path.display()
            )));
        }
    };
    Ok(Artifacts {
        ca_bundle,
        ..Artifacts::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_knows_the_ca_bundle_the_image_carries_and_none_when_it_carries_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("ca-certificates.crt");
        std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\n").expect("write");
        let carried = baked_artifacts(&bundle).expect("read");
        assert_eq!(&carried.ca_bundle[..], b"-----BEGIN CERTIFICATE-----\n");
        let none = baked_artifacts(&dir.path().join("absent")).expect("no bundle");
        assert!(none.ca_bundle.is_empty());
        // Not a file: said, not taken as no bundle.
        let error = baked_artifacts(dir.path()).expect_err("a folder");
        assert!(
            error
                .to_string()
                .contains("cannot read the image's CA bundle"),
            "{error}"
        );
    }
}
