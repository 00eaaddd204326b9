//! Stage 1: what to run. The Expert and its config (from perstack.toml, or from a versioned
//! image with `--image`), the env map, and which stored run it continues.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::cli::RunArgs;
use crate::config::{self, LoadedConfig};
use crate::jobs::ContinueFrom;
use crate::sandbox::engine::run::TimeLimit;

use super::image::ImageSource;
use super::{Notice, Notify, RunError};

/// What the run is about, read.
pub(super) struct Loaded {
    /// The current folder: the default workspace, and where dotenv files are found.
    pub cwd: PathBuf,
    /// The Expert to run (with `--image`, the image's).
    pub expert: String,
    /// The validated config, the command line's base images applied.
    pub config: LoadedConfig,
    /// The env map: the process's variables and the dotenv files'.
    pub env: BTreeMap<String, String>,
    /// The versioned image, with `--image`.
    pub image: Option<ImageSource>,
    /// The stored run to continue, if any.
    pub continue_from: Option<ContinueFrom>,
}

/// Reads it all. With `--image` the image may be pulled first: `--timeout`, counted from
/// `started`, bounds that too.
pub(super) async fn load(
    args: &RunArgs,
    started: Instant,
    notify: Notify<'_>,
) -> Result<Loaded, RunError> {
    let image = match &args.image {
        Some(reference) => Some(open_image(reference, args, started, notify).await?),
        None => None,
    };
    let expert = match &image {
        Some(source) => source.expert(args.expert())?,
        None => args.expert().to_string(),
    };
    let continue_from = continue_from(args)?;
    let (cwd, mut config) = match &image {
        Some(source) => (
            std::env::current_dir().map_err(super::super::LoadError::CurrentDir)?,
            source.loaded.clone(),
        ),
        None => {
            let (cwd, mut loaded) = super::super::load_config(args.config.as_deref())?;
            // A versioned image pins its own images; only a run from perstack.toml takes
            // other bases.
            args.base_images.apply(&mut loaded.config.sandbox);
            (cwd, loaded)
        }
    };
    let env = config::env::load(
        &cwd,
        &args.env_path,
        config.config.env_path.as_deref(),
        std::env::vars(),
    )?
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // A versioned image carries every Expert it needs; a run from perstack.toml resolves the
    // published ones it names.
    if image.is_none() {
        let resolved =
            super::super::registry::resolve_for(&mut config, &expert, &env, args.frozen_lockfile)
                .await?;
        resolved
            .warnings
            .into_iter()
            .for_each(|w| notify(Notice::Registry(w)));
    }
    Ok(Loaded {
        cwd,
        expert,
        config,
        env,
        image,
        continue_from,
    })
}

async fn open_image(
    reference: &str,
    args: &RunArgs,
    started: Instant,
    notify: Notify<'_>,
) -> Result<ImageSource, RunError> {
    let open = ImageSource::open(reference, args.verbose, notify);
    match args.timeout {
        Some(limit) => TimeLimit { started, limit }.bound(open).await?,
        None => open.await,
    }
}

/// What `--continue`, `--continue-job` and `--resume-from` ask for; usage errors for the
/// combinations that make no sense.
fn continue_from(args: &RunArgs) -> Result<Option<ContinueFrom>, RunError> {
    ContinueFrom::from_flags(
        args.continue_job.as_deref(),
        args.continue_latest,
        args.resume_from.as_deref(),
        args.interactive_tool_call_result,
    )
    .map_err(RunError::from)
}
