//! `perstack-sandbox run <expert> <query>`, a pipeline of stages that reads top-down:
//!
//! 1. [`load`]: the Expert, its config (perstack.toml, or a versioned image with `--image`),
//!    the env map, and which stored run it continues;
//! 2. settings: command line > file > default, resolved in one place
//!    ([`Settings::resolve`]);
//! 3. [`preflight`]: every problem of the config, the env and the workspace, the stored run to
//!    continue and the job, before anything touches Docker;
//! 4. [`engine`]: Docker, whether it can run the containers as required, its one check (the
//!    base images) and the sweep of earlier runs;
//! 5. [`plan`]: the run as data, base-skill's user as the engine maps it;
//! 6. [`execute`]: the job recorded, the plan carried out, every resource removed;
//! 7. [`finish`]: the exit code.
//!
//! [`list_tools`] is `install`'s listing run: the same stages with a runtime that lists the
//! skills' tools and exits.
//!
//! Each stage gives the next one a value or fails with a [`RunError`]; none prints or exits.
//! What they have to tell the user comes back as [`Notice`]s, printed here, by [`show`].

mod engine;
mod error;
mod execute;
mod finish;
pub(crate) mod image;
pub(crate) mod list_tools;
mod load;
mod notice;
mod plan;
mod preflight;

use std::io::Write as _;
use std::time::Instant;

use crate::cli::RunArgs;
use crate::config::Settings;
use crate::exit::Exit;
use crate::sandbox::backend::Backend;

pub use error::RunError;
pub use notice::Notice;

/// Hears what a stage has to say while it waits on Docker (a pull, the run itself), so the user
/// hears it at once.
pub type Notify<'a> = &'a (dyn Fn(Notice) + Sync);

/// Runs the command; gives the exit code the run ended with.
pub async fn run(args: RunArgs) -> Result<Exit, RunError> {
    // `--timeout` counts from here: pulling a versioned image is part of the run.
    let started = Instant::now();
    let session = args.session.clone();
    let show = move |notice: Notice| show(session.as_ref(), notice);
    let loaded = load::load(&args, started, &show).await?;
    let settings = Settings::resolve(&args.setting_flags(), &loaded.config)?;
    let mut checked = preflight::check(&args, &loaded, &settings)?;
    checked.notices.drain(..).for_each(&show);
    if args.backend.backend == crate::cli::BackendName::Kubernetes {
        let backend = super::kubernetes::backend(&args.backend).await?;
        return plan_and_run(&backend, &args, &loaded, settings, checked, started, &show).await;
    }
    let engine = engine::connect(
        &loaded.config.config,
        &loaded.expert,
        &settings.runtime_engine,
        args.allow_weaker_isolation,
    )
    .await?;
    engine.notices.into_iter().for_each(&show);
    // Who base-skill is inside its container for its files to be the user's outside.
    checked.user = engine.docker.engine().workspace_user(checked.user);
    plan_and_run(
        &engine.docker,
        &args,
        &loaded,
        settings,
        checked,
        started,
        &show,
    )
    .await
}

/// Stages 5 to 7 on whichever backend carries out the run: the plan, its execution, the exit
/// code.
async fn plan_and_run(
    backend: &impl Backend,
    args: &RunArgs,
    loaded: &load::Loaded,
    settings: Settings,
    checked: preflight::Checked,
    started: Instant,
    show: Notify<'_>,
) -> Result<Exit, RunError> {
    let planned = plan::plan(args, loaded, settings, checked, started)?;
    let outcome = execute::execute(backend, planned, args, show).await?;
    let ending = finish::finish(outcome)?;
    ending.notice.into_iter().for_each(show);
    Ok(ending.exit)
}

/// The one place a run's notes, warnings and stops reach the user: stderr, a line each. In a
/// `start` session, a note about the session's setting is said at its first turn only.
fn show(session: Option<&crate::render::SessionLines>, notice: Notice) {
    let text = notice.to_string();
    if notice.is_about_the_setting() && session.is_some_and(|s| !s.first_time(&text)) {
        return;
    }
    // Not `eprintln!`, which panics when stderr is gone (a hung-up terminal): the run's
    // containers are removed after its notes are said.
    let _ = writeln!(std::io::stderr(), "{text}");
}
