//! `perstack-sandbox run <expert> <query>`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::cli::RunArgs;
use crate::config::{
    self, DEFAULT_MAX_RETRIES, DEFAULT_MAX_STEPS, DEFAULT_MODEL, DEFAULT_TIMEOUT_MS, ProviderName,
    ReasoningBudget, ReasoningLevel,
};
use crate::exit::Exit;
use crate::jobs::{
    ContinueFrom, Job, JobStore, Recorder, RunInput, RunSetting, RunSettingSource, check_input,
    interactive_answer, select_checkpoint,
};
use crate::render::{Mode, Output};
use crate::sandbox::engine::docker::DockerClient;
use crate::sandbox::engine::run::{RunEnd, RunError, RunIds, TimeLimit, execute};
use crate::sandbox::plan::{Limits, Resume, RunRequest, RunSettings, delegation_closure, plan};
use crate::sandbox::preflight::Preflight;

use super::artifacts;
use super::run_image::ImageSource;

/// Runs the command; returns the exit code. Errors are printed here, to stderr.
pub async fn run(mut args: RunArgs) -> Exit {
    // `--timeout` counts from here: pulling a versioned image is part of the run.
    let started = std::time::Instant::now();
    // `--image`: the Expert and its config come from a versioned image, not perstack.toml.
    let image = match &args.image {
        None => None,
        Some(reference) => {
            let open = ImageSource::open(reference, args.verbose);
            let opened = match args.timeout {
                Some(limit) => TimeLimit { started, limit }.bound(open).await,
                None => Ok(open.await),
            };
            match opened {
                Ok(Ok(source)) => Some(source),
                Ok(Err(exit)) => return exit,
                Err(timed_out) => {
                    eprintln!("error: {timed_out}");
                    return Exit::TimedOut;
                }
            }
        }
    };
    if let Some(source) = &image {
        match source.expert(&args.expert) {
            Ok(expert) => args.expert = expert,
            Err(error) => {
                eprintln!("error: {error}");
                return Exit::Usage;
            }
        }
    }
    let continue_from = match continue_from(&args) {
        Ok(from) => from,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    let (cwd, mut loaded) = match &image {
        Some(source) => match std::env::current_dir() {
            Ok(cwd) => (cwd, source.loaded.clone()),
            Err(error) => {
                eprintln!("error: cannot read the current folder: {error}");
                return Exit::Usage;
            }
        },
        None => match super::load_config(args.config.as_deref()) {
            Ok(found) => found,
            Err(exit) => return exit,
        },
    };
    // A versioned image pins its own images; only a run from perstack.toml takes other bases.
    if image.is_none() {
        args.base_images.apply(&mut loaded.config.sandbox);
    }
    let env_map = match config::env::load(
        &cwd,
        &args.env_path,
        loaded.config.env_path.as_deref(),
        std::env::vars(),
    ) {
        Ok(env) => env,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Usage;
        }
    };
    let env: BTreeMap<String, String> = env_map
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();

    let settings = match resolve_settings(&args, &loaded.config) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    let workspace = args.workspace.clone().unwrap_or_else(|| cwd.clone());
    let preflight = Preflight {
        config: &loaded,
        expert_key: &args.expert,
        provider: settings.provider,
        env: &env,
        extra_env: &args.env,
        workspace: &workspace,
    };
    let checked = match match &image {
        Some(source) => preflight.check_with_mock_script(source.mock_script.clone()),
        None => preflight.check(),
    } {
        Ok(checked) => checked,
        Err(problems) => {
            eprint!("error: {problems}");
            return Exit::Usage;
        }
    };
    // A versioned run builds nothing: its images carry their own binary.
    let artifacts = match &image {
        Some(_) => crate::sandbox::images::recipes::Artifacts {
            binary: bytes::Bytes::new(),
            ca_bundle: bytes::Bytes::new(),
        },
        None => match artifacts::load() {
            Ok(artifacts) => artifacts,
            Err(error) => {
                eprintln!("error: {error}");
                return Exit::Usage;
            }
        },
    };

    // base-skill and the job store write into the workspace as the same user.
    let base_skill_user =
        crate::sandbox::engine::workspace_user::workspace_user(&checked.workspace);
    let store = if nix::unistd::getuid().is_root() && base_skill_user.user.0 != 0 {
        let (uid, gid) = base_skill_user.user;
        JobStore::at(
            checked.workspace.join(crate::jobs::store::jobs_dir()),
            crate::jobs::fs::Owner::user(uid, gid),
        )
    } else {
        JobStore::in_workspace(&checked.workspace)
    };
    // Which checkpoint a continued run starts from, and what it is asked: all checked here,
    // before anything touches Docker.
    let resume = match &continue_from {
        None => None,
        Some(from) => match resume_from(&store, from, &args) {
            Ok(resume) => Some(resume),
            Err(error) => {
                eprintln!("error: {error}");
                return Exit::Usage;
            }
        },
    };
    let run_id = crate::ids::new_id();
    let (job_id, resume) = match job_id(resume, args.job_id.as_deref()) {
        Ok(chosen) => chosen,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    let now = crate::ids::now_ms();
    let run_setting = RunSetting::new(RunSettingSource {
        config: &loaded.config,
        settings: &settings,
        job_id: &job_id,
        run_id: &run_id,
        expert_key: &args.expert,
        closure: &delegation_closure(&loaded.config, &args.expert),
        input: run_input(resume.as_ref(), &args.query),
        env: &env,
        runtime_env: &checked.runtime_env,
        verbose: args.verbose,
        now,
    });
    let job = match store.read_job(&job_id) {
        Ok(Some(job)) => job.resumed(&args.expert, settings.max_steps),
        Ok(None) => Job::new(&job_id, &args.expert, settings.max_steps, now),
        Err(error) => {
            eprintln!("warning: {error}; job.json starts afresh");
            Job::new(&job_id, &args.expert, settings.max_steps, now)
        }
    };
    let limit = TimeLimit {
        started,
        limit: run_limit(&args, &settings),
    };
    if let Some(warning) = &base_skill_user.warning {
        eprintln!("note: {warning}");
    }
    let request = RunRequest {
        run_id: run_id.clone(),
        job_id: job_id.clone(),
        expert_key: args.expert.clone(),
        query: args.query.clone(),
        config: loaded.config.clone(),
        settings,
        workspace: checked.workspace,
        user: base_skill_user.user,
        runtime_env: checked.runtime_env,
        env,
        mock_script: checked.mock_script,
        artifacts,
        limits: limits(&args, &loaded.config),
        controller: crate::sandbox::engine::controller::ControllerId::current().to_string(),
        resume,
    };
    let mut run_plan = match plan(&request) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: cannot write the runtime spec: {error}");
            return Exit::Usage;
        }
    };
    if let Some(Err(error)) = image.as_ref().map(|source| source.pin(&mut run_plan)) {
        eprintln!("error: {error}");
        return Exit::Usage;
    }

    let docker = match DockerClient::connect().await {
        Ok(docker) => docker,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Docker;
        }
    };
    // The last preflight check needs the engine: every base image must be here already (there
    // is no registry), said before anything is created or recorded.
    match crate::sandbox::engine::base_images::check_base_images(
        &docker,
        &loaded.config,
        &args.expert,
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(problems)) => {
            eprint!("error: {problems}");
            return Exit::Usage;
        }
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Docker;
        }
    }
    // Whatever earlier runs left behind (their controller was killed) goes first, so stale
    // containers never pile up even when nobody runs `gc`.
    match crate::sandbox::engine::gc::sweep(&docker, Default::default()).await {
        Ok(report) if !report.stale.is_empty() => eprintln!(
            "note: removed {} leftover resource(s) of {} earlier run(s) whose controller is gone",
            report.removed.containers + report.removed.volumes + report.removed.networks,
            report.stale.len()
        ),
        Ok(_) => {}
        Err(error) => eprintln!("warning: could not sweep leftovers of earlier runs: {error}"),
    }
    let (mut sigterm, mut sigint) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        _ => {
            eprintln!("error: cannot install signal handlers");
            return Exit::RunFailed;
        }
    };
    // Recording starts before any container exists: `perstack/` is then the user's own folder
    // before the workspace is mounted anywhere.
    let recorder = match Recorder::start(store, job, &run_setting) {
        Ok(recorder) => recorder,
        Err(error) => {
            eprintln!(
                "error: cannot store the job: {error}\n  hint: the workspace must be writable; choose another with --workspace"
            );
            return Exit::Usage;
        }
    };
    let (output, writer) =
        Output::spawn(Mode::detect(args.json, args.verbose), tokio::io::stdout());
    let ids = RunIds {
        job_id,
        run_id: run_id.clone(),
        expert_key: args.expert.clone(),
    };

    let record = |line: &str, event: &crate::event::Event| recorder.record(line, event);
    // First Ctrl-C: the runtime gets SIGINT and stops after the step under way, whose
    // checkpoint is relayed and stored like any other; we go on relaying until it ends. Second
    // Ctrl-C, SIGTERM, or a Ctrl-C before the runtime runs: stop at once (the run future is
    // dropped and everything is removed below).
    let mut interrupted = false;
    let result = {
        let run = execute(
            &docker,
            &run_plan,
            &ids,
            &output,
            args.verbose,
            limit,
            &record,
        );
        tokio::pin!(run);
        loop {
            tokio::select! {
                result = &mut run => break Ok(result),
                _ = sigint.recv() => {
                    if interrupted {
                        eprintln!("interrupted again: stopping at once");
                        break Err(Exit::Interrupted);
                    }
                    interrupted = true;
                    match docker.signal(&run_plan.runtime.name, "SIGINT").await {
                        Ok(true) => eprintln!(
                            "interrupted: the run stops after the step under way and keeps its checkpoint (continue with --continue); press Ctrl-C again to stop at once"
                        ),
                        Ok(false) => break Err(Exit::Interrupted),
                        Err(error) => {
                            eprintln!("warning: could not ask the runtime to stop: {error}");
                            break Err(Exit::Interrupted);
                        }
                    }
                }
                _ = sigterm.recv() => break Err(Exit::Terminated),
            }
        }
    };

    // The one cleanup path: whatever happened above, remove everything labelled with this run.
    if let Err(error) = docker.remove_run(&run_id).await {
        eprintln!(
            "warning: could not remove every resource of run {run_id}: {error}\n  hint: `docker ps -a --filter label={}` shows what is left",
            crate::sandbox::labels::run_filter(&run_id)
        );
    }
    drop(output);
    let _ = writer.await;
    recorder.finish().await;

    match result {
        Err(signal_exit) => {
            eprintln!("stopped; containers of run {run_id} removed");
            signal_exit
        }
        // Stopped on request: interrupted, unless it ended some other way first.
        Ok(Ok(report))
            if interrupted
                && matches!(
                    report.end,
                    RunEnd::StoppedByError(_) | RunEnd::RuntimeFailed { .. }
                ) =>
        {
            eprintln!(
                "stopped on request; the job keeps its last checkpoint: continue with --continue"
            );
            Exit::Interrupted
        }
        Ok(Err(error)) if interrupted => {
            eprintln!("stopped on request: {error}");
            Exit::Interrupted
        }
        Ok(Ok(report)) => match report.end {
            RunEnd::Completed => Exit::Success,
            RunEnd::StoppedByError(_) => Exit::RunFailed,
            RunEnd::StoppedByMaxSteps => Exit::MaxSteps,
            RunEnd::WaitingForInteractiveTool => Exit::Interactive,
            RunEnd::RuntimeFailed {
                code,
                stderr,
                oom_killed,
            } => {
                if oom_killed {
                    eprintln!(
                        "error: the runtime container ran out of memory ({} bytes per container) and was killed\n  hint: raise --memory (or [sandbox] memory); the job keeps its last checkpoint: continue with --continue",
                        run_plan.runtime.limits.memory
                    );
                }
                eprintln!(
                    "error: the runtime container exited with code {code} before the run finished{}",
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(":\n{stderr}")
                    }
                );
                Exit::RunFailed
            }
        },
        Ok(Err(error)) => {
            eprintln!("error: {error}");
            match error {
                RunError::Docker(_) => Exit::Docker,
                RunError::BaseImageMissing { .. }
                | RunError::MountPoint { .. }
                | RunError::Versioned(_) => Exit::Usage,
                RunError::TimedOut(_) => Exit::TimedOut,
                RunError::ProxyConfig(_) => Exit::RunFailed,
            }
        }
    }
}

/// What `--continue`, `--continue-job` and `--resume-from` ask for; usage errors for the
/// combinations that make no sense.
fn continue_from(args: &RunArgs) -> Result<Option<ContinueFrom>, String> {
    if args.resume_from.is_some() && args.continue_job.is_none() {
        return Err("--resume-from requires --continue-job".to_string());
    }
    let from = match (&args.continue_job, args.continue_latest) {
        (Some(job_id), _) => Some(ContinueFrom::Job {
            job_id: job_id.clone(),
            checkpoint_id: args.resume_from.clone(),
        }),
        (None, true) => Some(ContinueFrom::LatestJob),
        (None, false) => None,
    };
    if args.interactive_tool_call_result && from.is_none() {
        return Err(
            "-i/--interactive-tool-call-result requires --continue or --continue-job\n  hint: -i answers the pending tool call of a stopped run; say which run to continue"
                .to_string(),
        );
    }
    Ok(from)
}

/// The job of the run: the continued checkpoint's, else `--job-id`, else a new one (§2). Gives
/// the resume without its job.
fn job_id(
    resume: Option<(String, Resume)>,
    given: Option<&str>,
) -> Result<(String, Option<Resume>), String> {
    let (job_id, resume) = match (resume, given) {
        (Some((continued, resume)), given) => {
            if let Some(given) = given.filter(|g| *g != continued) {
                eprintln!("warning: --job-id {given} ignored: the run continues job {continued}");
            }
            (continued, Some(resume))
        }
        (None, Some(given)) => (given.to_string(), None),
        (None, None) => (crate::ids::new_id(), None),
    };
    if !crate::jobs::store::is_safe_id(&job_id) {
        return Err(format!(
            "--job-id {job_id}: a job id is a folder name: letters, digits, `_`, `-` and `.`, not starting with `.`"
        ));
    }
    Ok((job_id, resume))
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

/// The stored checkpoint to continue from (with its job) and the runtime's input.
fn resume_from(
    store: &JobStore,
    from: &ContinueFrom,
    args: &RunArgs,
) -> Result<(String, Resume), crate::jobs::JobsError> {
    let stored = select_checkpoint(store, from, &args.expert)?;
    check_input(
        &stored.checkpoint,
        args.interactive_tool_call_result,
        &args.query,
    )?;
    let answer = if args.interactive_tool_call_result {
        Some(interactive_answer(&stored.checkpoint, &args.query)?)
    } else {
        None
    };
    Ok((
        stored.checkpoint.job_id.clone(),
        Resume {
            checkpoint_json: stored.json,
            interactive_tool_call_result: answer,
        },
    ))
}

/// CLI > perstack.toml > Perstack's defaults.
fn resolve_settings(args: &RunArgs, config: &config::Config) -> Result<RunSettings, String> {
    let provider = match &args.provider {
        Some(name) => ProviderName::parse(name).ok_or_else(|| {
            format!(
                "--provider {name}: unknown provider (one of: {})",
                ProviderName::ALL.map(|p| p.as_str()).join(", ")
            )
        })?,
        None => config
            .provider
            .as_ref()
            .map(|p| p.provider_name)
            .unwrap_or(ProviderName::Anthropic),
    };
    if let Some(budget) = &args.reasoning_budget {
        crate::runtime::reasoning_tokens(Some(budget)).map_err(|e| e.to_string())?;
    }
    let reasoning_budget = args.reasoning_budget.clone().or_else(|| {
        config.reasoning_budget.map(|b| match b {
            ReasoningBudget::Tokens(n) => n.to_string(),
            ReasoningBudget::Level(level) => match level {
                ReasoningLevel::None => "none",
                ReasoningLevel::Minimal => "minimal",
                ReasoningLevel::Low => "low",
                ReasoningLevel::Medium => "medium",
                ReasoningLevel::High => "high",
            }
            .to_string(),
        })
    });
    if args.max_steps == Some(0) {
        return Err("--max-steps must be at least 1".to_string());
    }
    Ok(RunSettings {
        provider,
        model: args
            .model
            .clone()
            .or_else(|| config.model.clone())
            .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
        max_steps: args
            .max_steps
            .or(config.max_steps)
            .unwrap_or(DEFAULT_MAX_STEPS),
        max_retries: args
            .max_retries
            .or(config.max_retries)
            .unwrap_or(DEFAULT_MAX_RETRIES),
        timeout_ms: generation_timeout_ms(args, config),
        // Perstack's default budget is `low`.
        reasoning_budget: reasoning_budget.or_else(|| Some("low".to_string())),
    })
}

/// Container limits: `--memory`/`--cpus`/`--pids` > `[sandbox]` > the defaults in `plan.rs`.
fn limits(args: &RunArgs, config: &config::Config) -> Limits {
    let defaults = Limits::default();
    Limits {
        memory: args.memory.unwrap_or_else(|| {
            config
                .sandbox
                .memory
                .as_deref()
                .and_then(config::parse_memory_size)
                .and_then(|m| i64::try_from(m).ok())
                .unwrap_or(defaults.memory)
        }),
        cpus: args.cpus.or(config.sandbox.cpus).unwrap_or(defaults.cpus),
        pids: args.pids.or(config.sandbox.pids).unwrap_or(defaults.pids),
    }
}

/// How long one generation may take: `--generation-timeout` > `timeout` in perstack.toml > the
/// default; never longer than `--timeout`, the whole run's limit, so a Perstack command line's
/// `--timeout 60000` still bounds each generation to a minute too.
fn generation_timeout_ms(args: &RunArgs, config: &config::Config) -> u64 {
    let generation = args
        .generation_timeout
        .map(millis)
        .or(config.timeout)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    match args.timeout {
        Some(run) => generation.min(millis(run)),
        None => generation,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How long the whole run may take: `--timeout`, else Perstack's docker bound of
/// generation timeout × max-steps (PERSTACK-COMPAT.md §8).
fn run_limit(args: &RunArgs, settings: &RunSettings) -> Duration {
    args.timeout.unwrap_or_else(|| {
        Duration::from_millis(
            settings
                .timeout_ms
                .saturating_mul(u64::from(settings.max_steps)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["perstack-sandbox", "run"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["expert", "query"]);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Run(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn config(text: &str) -> config::Config {
        config::load_str(std::path::Path::new("/p/perstack.toml"), text)
            .expect("valid")
            .config
    }

    #[test]
    fn cli_beats_the_file_which_beats_the_defaults() {
        let file = config(
            "model = \"file-model\"\nmaxSteps = 9\nmaxRetries = 2\ntimeout = 1234\nreasoningBudget = \"high\"\n\
             [provider]\nproviderName = \"mock\"\nsetting = { script = \"s.toml\" }\n",
        );
        let from_file = resolve_settings(&args(&[]), &file).expect("settings");
        assert_eq!(
            from_file,
            RunSettings {
                provider: ProviderName::Mock,
                model: "file-model".into(),
                max_steps: 9,
                max_retries: 2,
                timeout_ms: 1234,
                reasoning_budget: Some("high".into()),
            }
        );
        let from_cli = resolve_settings(
            &args(&[
                "--provider",
                "anthropic",
                "--model",
                "cli-model",
                "--max-steps",
                "3",
                "--max-retries",
                "0",
                "--generation-timeout",
                "50",
                "--reasoning-budget",
                "1500",
            ]),
            &file,
        )
        .expect("settings");
        assert_eq!(
            from_cli,
            RunSettings {
                provider: ProviderName::Anthropic,
                model: "cli-model".into(),
                max_steps: 3,
                max_retries: 0,
                timeout_ms: 50,
                reasoning_budget: Some("1500".into()),
            }
        );
        let defaults = resolve_settings(&args(&[]), &config("")).expect("settings");
        assert_eq!(
            defaults,
            RunSettings {
                provider: ProviderName::Anthropic,
                model: DEFAULT_MODEL.into(),
                max_steps: DEFAULT_MAX_STEPS,
                max_retries: DEFAULT_MAX_RETRIES,
                timeout_ms: DEFAULT_TIMEOUT_MS,
                reasoning_budget: Some("low".into()),
            }
        );
    }

    #[test]
    fn limit_flags_beat_the_sandbox_table_which_beats_the_defaults() {
        let file = config("[sandbox]\nmemory = \"1g\"\ncpus = 1.5\npids = 100\n");
        assert_eq!(
            limits(&args(&[]), &file),
            Limits {
                memory: 1 << 30,
                cpus: 1.5,
                pids: 100
            }
        );
        assert_eq!(
            limits(
                &args(&["--memory", "64m", "--cpus", "0.5", "--pids", "32"]),
                &file
            ),
            Limits {
                memory: 64 << 20,
                cpus: 0.5,
                pids: 32
            }
        );
        assert_eq!(limits(&args(&[]), &config("")), Limits::default());
    }

    #[test]
    fn timeout_bounds_the_whole_run_else_generation_timeout_times_max_steps() {
        let file = config("timeout = 1000\nmaxSteps = 7\n");
        let settings = |argv: &[&str]| resolve_settings(&args(argv), &file).expect("settings");
        let limit = |argv: &[&str]| run_limit(&args(argv), &settings(argv));
        // No --timeout: Perstack's docker bound, generation timeout × max-steps.
        assert_eq!(limit(&[]), Duration::from_secs(7));
        assert_eq!(
            limit(&["--generation-timeout", "2s", "--max-steps", "3"]),
            Duration::from_secs(6)
        );
        // --timeout is the whole run's limit, in Perstack's milliseconds or with a unit.
        assert_eq!(limit(&["--timeout", "60000"]), Duration::from_secs(60));
        assert_eq!(limit(&["--timeout", "30m"]), Duration::from_secs(1800));
    }

    #[test]
    fn no_generation_outlives_the_run() {
        let file = config("timeout = 90000\n");
        let generation = |argv: &[&str]| {
            resolve_settings(&args(argv), &file)
                .expect("settings")
                .timeout_ms
        };
        assert_eq!(generation(&[]), 90_000);
        assert_eq!(generation(&["--generation-timeout", "2m"]), 120_000);
        // A run limit shorter than a generation's caps the generation too.
        assert_eq!(generation(&["--timeout", "5000"]), 5_000);
        assert_eq!(
            generation(&["--timeout", "5000", "--generation-timeout", "1s"]),
            1_000
        );
        // A longer one leaves the generation's limit alone.
        assert_eq!(generation(&["--timeout", "1h"]), 90_000);
    }

    #[test]
    fn bad_limit_flags_are_refused_by_the_parser() {
        for bad in [
            &["--memory", "1m"][..],
            &["--cpus", "0"],
            &["--pids", "0"],
            &["--timeout", "0"],
            &["--timeout", "soon"],
            &["--generation-timeout", "0s"],
        ] {
            let mut argv = vec!["perstack-sandbox", "run"];
            argv.extend_from_slice(bad);
            argv.extend_from_slice(&["expert", "query"]);
            assert!(crate::cli::Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn with_an_image_only_the_query_is_given() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["perstack-sandbox", "run"];
            full.extend_from_slice(argv);
            crate::cli::Cli::try_parse_from(full).map(|cli| match cli.command {
                crate::cli::Command::Run(args) => (args.image, args.expert, args.query),
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(
            parse(&["--image", "127.0.0.1:5000/demo:1.0", "Say hi"]).expect("parses"),
            (
                Some("127.0.0.1:5000/demo:1.0".to_string()),
                String::new(),
                "Say hi".to_string()
            )
        );
        assert_eq!(
            parse(&["demo", "Say hi"]).expect("parses"),
            (None, "demo".to_string(), "Say hi".to_string())
        );
        // Without an image the Expert is required; an image replaces perstack.toml.
        assert!(parse(&["Say hi"]).is_err());
        assert!(parse(&["--image", "demo:1", "--config", "p.toml", "q"]).is_err());
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        let file = config("");
        assert!(
            resolve_settings(&args(&["--provider", "openia"]), &file)
                .expect_err("unknown provider")
                .starts_with("--provider openia: unknown provider (one of: anthropic, google,")
        );
        assert!(resolve_settings(&args(&["--reasoning-budget", "lots"]), &file).is_err());
        assert!(resolve_settings(&args(&["--max-steps", "0"]), &file).is_err());
    }
}
