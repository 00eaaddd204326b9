//! `perstack-sandbox build <expert> [--tag REF]… [--push]`: every image of an Expert's
//! delegation closure, tagged as one version (see `sandbox/versioned.rs` for the names and the
//! labels), and optionally pushed.
//!
//! The images are the ones `run` would build (same content, same cache): the skill images, the
//! base-skill image, the egress proxy (always, so the version runs with any provider), and the
//! runtime image, which additionally carries the version's labels.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::cli::BuildArgs;
use crate::config::{LoadedConfig, ProviderName, Settings, SettingsError};
use crate::exit::Exit;
use crate::llm::mock::{MockScript, MockScriptError};
use crate::sandbox::engine::docker::{DockerClient, DockerError, ImageEnv};
use crate::sandbox::engine::run::{RunError as ExecuteError, content_tag};
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::images::user_recipe::UserRecipe;
use crate::sandbox::images::{ImageSpec, slug};
use crate::sandbox::plan::{RunPlan, RunRequest, plan};
use crate::sandbox::preflight::{Problems, file_problem};
use crate::sandbox::skill_files::{self, FilesBySkill};
use crate::sandbox::versioned::{self, ImageRef, Manifest, VersionedError};

use super::LoadError;
use super::artifacts::{self, ArtifactError};

/// Why the version could not be built, tagged or pushed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// perstack.toml is missing, unreadable or invalid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A published Expert of the closure could not be resolved.
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryLoadError),
    /// A dotenv file could not be read.
    #[error(transparent)]
    Env(#[from] crate::config::ConfigError),
    /// The Expert is not in it.
    #[error("unknown expert `{expert}`; Experts in {}: {}", path.display(), known.join(", "))]
    UnknownExpert {
        /// The key given.
        expert: String,
        /// The config.
        path: PathBuf,
        /// The Experts it has.
        known: Vec<String>,
    },
    /// A `--tag` is not an image reference.
    #[error("--tag {0}")]
    Tag(#[source] VersionedError),
    /// The config's mock script.
    #[error(transparent)]
    MockScript(#[from] MockScriptError),
    /// The config could not be read for its digest.
    #[error("cannot read {}: {source}", path.display())]
    ReadConfig {
        /// The config.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Our executable or the CA bundle.
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    /// Files the skills name in the config's folder (missing, outside it, too big).
    #[error(transparent)]
    SkillFiles(Problems),
    /// The file's settings (never, without flags; kept for the types' sake).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The runtime spec could not be serialized.
    #[error("cannot write the runtime spec: {0}")]
    Spec(#[source] serde_json::Error),
    /// The version's labels could not be serialized.
    #[error("cannot write the image labels: {0}")]
    Labels(#[source] serde_json::Error),
    /// The plan has no runtime image (a bug).
    #[error("the plan has no runtime image")]
    NoRuntimeImage,
    /// An image could not be made.
    #[error(transparent)]
    Image(#[from] ExecuteError),
    /// The Expert cannot be one standalone image.
    #[error(transparent)]
    Standalone(#[from] crate::standalone::image::StandaloneImageError),
    /// The engine did not answer, or tagging or pushing failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// A standalone image's install stages failed on a skill's recipe as the base.
    #[error(
        "the standalone image's base is the recipe of {service} ({base}): that skill is granted \
         the workspace, so it runs in the container's own root, and the image is built FROM its \
         recipe. The packages of {installing} are installed on that base too, and that failed; \
         the recipe must have their runtime (python3 with venv for uvx and pip, node with npm \
         for npx): add it to {service}'s Dockerfile, drop that skill's workspace grant, or run \
         this Expert in the multi-container mode (perstack-sandbox build --tag REF). The \
         build said: {source}"
    )]
    RecipeBaseInstall {
        /// The skill whose recipe is the base.
        service: String,
        /// Its recipe's tag.
        base: String,
        /// The skills whose packages the base installs.
        installing: String,
        /// The build's own error.
        source: Box<BuildError>,
    },
}

impl From<&BuildError> for Exit {
    fn from(error: &BuildError) -> Exit {
        match error {
            BuildError::Docker(_) | BuildError::Image(ExecuteError::Docker(_)) => Exit::Docker,
            BuildError::NoRuntimeImage => Exit::RunFailed,
            BuildError::Load(_)
            | BuildError::Registry(_)
            | BuildError::Env(_)
            | BuildError::UnknownExpert { .. }
            | BuildError::Tag(_)
            | BuildError::MockScript(_)
            | BuildError::ReadConfig { .. }
            | BuildError::Artifacts(_)
            | BuildError::SkillFiles(_)
            | BuildError::Settings(_)
            | BuildError::Spec(_)
            | BuildError::Labels(_)
            | BuildError::Image(_)
            | BuildError::RecipeBaseInstall { .. }
            | BuildError::Standalone(_) => Exit::Usage,
        }
    }
}

/// What a build is made from, read and checked before the engine is asked anything.
struct Inputs {
    loaded: LoadedConfig,
    refs: Vec<ImageRef>,
    mock_script: Option<MockScript>,
    /// `sha256:<hex>` of perstack.toml.
    digest: String,
    artifacts: Artifacts,
    /// The closure's skills' own files from the config's folder.
    skill_files: FilesBySkill,
    /// Command line > file > default; the images depend on the CA bundle only.
    settings: Settings,
}

/// The images made, by content tag, before they are tagged as the version.
struct Built {
    runtime_tag: String,
    /// Every other image's content tag with the suffix of its version tag.
    others: Vec<(String, String)>,
    manifest: Manifest,
}

/// Runs the command: prints each reference it tagged (and pushed) on stdout, progress on
/// stderr.
pub async fn run(args: BuildArgs) -> Result<Exit, BuildError> {
    if args.standalone {
        let inputs = load(&args).await?;
        let run_plan = plan_images(&args, &inputs)?;
        return standalone(&args, &inputs, &run_plan).await;
    }
    for reference in &version(&args).await? {
        println!("{reference}");
    }
    Ok(Exit::Success)
}

/// Builds, tags (and with `--push` pushes) the version's images; gives every reference it
/// tagged. Progress and the summary go to stderr, nothing to stdout (`export kubernetes
/// --push-to` writes its YAML there).
pub(crate) async fn version(args: &BuildArgs) -> Result<Vec<String>, BuildError> {
    let inputs = load(args).await?;
    let run_plan = plan_images(args, &inputs)?;
    let docker = DockerClient::connect().await?;
    let built = build(&docker, run_plan, args, &inputs).await?;
    let made = tag(&docker, &built, &inputs.refs).await?;
    if args.push {
        push(&docker, &made, args.verbose).await?;
    }
    eprintln!(
        "{} {} image(s) of Expert `{}` {}; run it with `perstack-sandbox run --image {} \"<query>\"`",
        if args.push {
            "built, tagged and pushed"
        } else {
            "built and tagged"
        },
        made.len(),
        args.expert,
        built.manifest.version,
        inputs.refs[0]
    );
    Ok(made)
}

/// The config, the references to tag (`--tag`, else `<expert>:<version>`), the mock script (when
/// the file's provider is `mock`), the config's digest and our artifacts. Published Experts of
/// the closure are resolved (from perstack.lock first) and baked into the runtime's spec, so the
/// version never needs the Registry.
async fn load(args: &BuildArgs) -> Result<Inputs, BuildError> {
    let (cwd, mut loaded) = super::load_config(args.config.as_deref())?;
    args.base_images.apply(&mut loaded.config.sandbox);
    let env: BTreeMap<String, String> = crate::config::env::load(
        &cwd,
        &[],
        loaded.config.env_path.as_deref(),
        std::env::vars(),
    )?
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let resolved =
        super::registry::resolve_for(&mut loaded, &args.expert, &env, args.frozen_lockfile).await?;
    resolved
        .warnings
        .iter()
        .for_each(|w| eprintln!("warning: {w}"));
    let Some(expert) = loaded.config.experts.get(&args.expert) else {
        return Err(BuildError::UnknownExpert {
            expert: args.expert.clone(),
            path: loaded.path.clone(),
            known: loaded.config.experts.keys().cloned().collect(),
        });
    };
    let refs = if args.tags.is_empty() {
        vec![format!("{}:{}", slug(&args.expert), expert.version)]
    } else {
        args.tags.clone()
    }
    .iter()
    .map(|reference| ImageRef::parse(reference).map_err(BuildError::Tag))
    .collect::<Result<Vec<_>, _>>()?;
    let script = loaded
        .config
        .provider
        .as_ref()
        .filter(|p| p.provider_name == ProviderName::Mock)
        .and_then(|p| p.setting.script.as_ref());
    let mock_script = match script {
        Some(script) => Some(MockScript::load(&loaded.dir().join(script))?),
        None => None,
    };
    let bytes = std::fs::read(&loaded.path).map_err(|source| BuildError::ReadConfig {
        path: loaded.path.clone(),
        source,
    })?;
    let settings = Settings::resolve(&args.setting_flags(), &loaded)?;
    let closure = loaded.config.delegation_closure(&args.expert);
    let skill_files = skill_files::collect_all(&loaded, &closure).map_err(|problems| {
        BuildError::SkillFiles(Problems(
            problems
                .into_iter()
                .map(|p| file_problem(&loaded, p))
                .collect(),
        ))
    })?;
    let artifacts = artifacts::load(&settings.ca_certificates)?;
    if let Some(note) = artifacts.note {
        eprintln!("note: {note}");
    }
    Ok(Inputs {
        skill_files,
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        artifacts: artifacts.artifacts,
        settings,
        loaded,
        refs,
        mock_script,
    })
}

/// The images `run` would build for the Expert (same content, same cache).
fn plan_images(args: &BuildArgs, inputs: &Inputs) -> Result<RunPlan, BuildError> {
    let config = &inputs.loaded.config;
    let settings = inputs.settings.clone();
    let request = RunRequest {
        run_id: "build".into(),
        job_id: "build".into(),
        expert_key: args.expert.clone(),
        query: String::new(),
        config: config.clone(),
        // The images do not depend on the run's settings, only on whether the runtime needs the
        // network: with a provider that does, the egress proxy is in the plan, so the version
        // runs with any provider.
        settings: crate::config::RunSettings {
            provider: ProviderName::Anthropic,
            ..settings.run
        },
        workspace: PathBuf::from("/"),
        user: (0, 0),
        protected: Default::default(),
        runtime_env: vec![],
        env: BTreeMap::new(),
        mock_script: inputs.mock_script.clone(),
        artifacts: inputs.artifacts.clone(),
        skill_files: inputs.skill_files.clone(),
        limits: settings.limits,
        // Images are built, not run: no container of this plan starts.
        oci_runtime: None,
        controller: String::new(),
        resume: None,
        list_tools: false,
    };
    plan(&request).map_err(BuildError::Spec)
}

/// Finds or builds every image; the runtime's last, as its labels record the others' ids.
async fn build(
    docker: &DockerClient,
    mut run_plan: RunPlan,
    args: &BuildArgs,
    inputs: &Inputs,
) -> Result<Built, BuildError> {
    let suffixes = versioned::suffixes(&run_plan);
    let mut others = Vec::new();
    let mut ids = BTreeMap::new();
    for (index, suffix) in &suffixes {
        let (tag, id) = ensure(docker, &run_plan.images[*index], args.verbose).await?;
        others.push((tag, suffix.clone()));
        ids.insert(*index, id);
    }
    let manifest = Manifest::new(
        &inputs.loaded.config,
        &args.expert,
        inputs.digest.clone(),
        versioned::needed_images(&run_plan, &suffixes, &ids),
    );
    let labels = manifest.labels().map_err(BuildError::Labels)?;
    let runtime_index = run_plan.runtime.image;
    let runtime = run_plan
        .images
        .get_mut(runtime_index)
        .ok_or(BuildError::NoRuntimeImage)?;
    runtime.labels.extend(labels);
    // The ENTRYPOINT fixes the Expert: the runtime refuses any other.
    runtime
        .config
        .entrypoint
        .extend(["--only-expert".to_string(), args.expert.clone()]);
    let (runtime_tag, _) = ensure(docker, runtime, args.verbose).await?;
    Ok(Built {
        runtime_tag,
        others,
        manifest,
    })
}

/// `--standalone`: one image holding every image of the plan, tagged as each reference.
async fn standalone(
    args: &BuildArgs,
    inputs: &Inputs,
    run_plan: &RunPlan,
) -> Result<Exit, BuildError> {
    let manifest = Manifest::new(
        &inputs.loaded.config,
        &args.expert,
        inputs.digest.clone(),
        BTreeMap::new(),
    );
    let base = crate::standalone::image::choose_base(run_plan, args.standalone_base.as_deref())?;
    if let Some((service, _)) = crate::standalone::image::recipe_base(run_plan)? {
        eprintln!(
            "{service} is built from its own Dockerfile and granted the workspace: it runs in the \
             container's own root, so the standalone image is built FROM its recipe ({base})"
        );
    }
    let docker = DockerClient::connect().await?;
    let mut configs = BTreeMap::new();
    for (service, recipe) in crate::standalone::image::recipes(run_plan) {
        configs.insert(
            service.to_string(),
            recipe_config(&docker, service, recipe, args.verbose).await?,
        );
    }
    let spec = crate::standalone::image::standalone_image(run_plan, &manifest, &base, &configs)?;
    let (tag, _) = ensure(&docker, &spec, args.verbose)
        .await
        .map_err(|e| on_recipe_base(run_plan, &spec, e))?;
    let mut made = Vec::new();
    for reference in &inputs.refs {
        docker.tag_image(&tag, &reference.to_string()).await?;
        made.push(reference.to_string());
    }
    if args.push {
        push(&docker, &made, args.verbose).await?;
    }
    for reference in &made {
        println!("{reference}");
    }
    eprintln!(
        "built the standalone image of Expert `{}` {}; run it with `docker run --rm -v \
         \"$PWD/workspace:/workspace\" {} \"<query>\"` (add -e for the variables it needs)",
        args.expert, manifest.version, inputs.refs[0]
    );
    Ok(Exit::Success)
}

/// A standalone build's failure, said again when the base is a skill's recipe and the image
/// installs other skills' packages on it: the recipe most likely lacks their runtime.
fn on_recipe_base(run_plan: &RunPlan, spec: &ImageSpec, error: BuildError) -> BuildError {
    let based = crate::standalone::image::recipe_base(run_plan)
        .ok()
        .flatten();
    let (Some((service, recipe)), false) = (based, spec.install.is_empty()) else {
        return error;
    };
    let installing: Vec<&str> = run_plan
        .images
        .iter()
        .filter(|i| !i.install.is_empty())
        .map(|i| i.service.as_str())
        .collect();
    BuildError::RecipeBaseInstall {
        service: service.to_string(),
        base: recipe.tag(),
        installing: installing.join(", "),
        source: Box::new(error),
    }
}

/// Tags every image as each reference; gives the references made.
async fn tag(
    docker: &DockerClient,
    built: &Built,
    refs: &[ImageRef],
) -> Result<Vec<String>, BuildError> {
    let mut made = Vec::new();
    for image in refs {
        let mut pairs = vec![(built.runtime_tag.clone(), image.to_string())];
        for (tag, suffix) in &built.others {
            pairs.push((tag.clone(), image.derived(suffix)));
        }
        for (source, target) in pairs {
            docker.tag_image(&source, &target).await?;
            made.push(target);
        }
    }
    Ok(made)
}

/// Builds a skill's own Dockerfile unless its image is here already.
async fn ensure_recipe(
    docker: &DockerClient,
    service: &str,
    recipe: &UserRecipe,
    verbose: bool,
) -> Result<(), BuildError> {
    if docker.image_id(&recipe.tag()).await?.is_some() {
        return Ok(());
    }
    eprintln!("{service}: building its Dockerfile as {}", recipe.tag());
    docker
        .build_recipe(recipe, |line| {
            if verbose {
                eprintln!("  {line}");
            }
        })
        .await?;
    Ok(())
}

/// A standalone image's recipe skill: its recipe built, and its image's variables and working
/// directory, which the standalone image records for the supervisor.
async fn recipe_config(
    docker: &DockerClient,
    service: &str,
    recipe: &UserRecipe,
    verbose: bool,
) -> Result<ImageEnv, BuildError> {
    ensure_recipe(docker, service, recipe, verbose).await?;
    Ok(docker
        .image_env_and_workdir(&recipe.tag())
        .await?
        .unwrap_or_default())
}

async fn push(docker: &DockerClient, made: &[String], verbose: bool) -> Result<(), BuildError> {
    for reference in made {
        eprintln!("pushing {reference}");
        docker
            .push_image(reference, |line| {
                if verbose {
                    eprintln!("  {line}");
                }
            })
            .await?;
    }
    Ok(())
}

/// Finds or makes `spec` under its content-addressed tag; gives the tag and the image id.
async fn ensure(
    docker: &DockerClient,
    spec: &ImageSpec,
    verbose: bool,
) -> Result<(String, String), BuildError> {
    let copied = spec.roots.iter().map(|root| &root.recipe);
    for recipe in spec.recipe.iter().chain(copied) {
        ensure_recipe(docker, &spec.service, recipe, verbose).await?;
    }
    let tag = content_tag(docker, spec).await?;
    if let Some(id) = docker.image_id(&tag).await? {
        eprintln!("{}: using cached image {tag}", spec.service);
        return Ok((tag, id));
    }
    eprintln!("{}: building image {tag}", spec.service);
    let id = docker
        .create_image(spec, &tag, |line| {
            if verbose {
                eprintln!("  {line}");
            }
        })
        .await?;
    Ok((tag, id))
}
