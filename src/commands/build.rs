//! `perstack-sandbox build <expert> [--tag REF]… [--push]`: every image of an Expert's
//! delegation closure, tagged as one version (see `sandbox/versioned.rs` for the names and the
//! labels), and optionally pushed.
//!
//! The images are the ones `run` would build (same content, same cache): the skill images, the
//! base-skill image, the egress proxy (always, so the version runs with any provider), and the
//! runtime image, which additionally carries the version's labels.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::cli::BuildArgs;
use crate::config::{
    DEFAULT_MAX_RETRIES, DEFAULT_MAX_STEPS, DEFAULT_MODEL, DEFAULT_TIMEOUT_MS, LoadedConfig,
    ProviderName,
};
use crate::exit::Exit;
use crate::llm::mock::MockScript;
use crate::sandbox::engine::docker::DockerClient;
use crate::sandbox::engine::run::{RunError, content_tag};
use crate::sandbox::images::{ImageSpec, slug};
use crate::sandbox::plan::{Limits, RunRequest, RunSettings, plan};
use crate::sandbox::versioned::{self, ImageRef, Manifest};

use super::artifacts;

/// Runs the command: prints each reference it tagged (and pushed) on stdout, progress on
/// stderr.
pub async fn run(args: BuildArgs) -> Exit {
    let (_, mut loaded) = match super::load_config(args.config.as_deref()) {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    args.base_images.apply(&mut loaded.config.sandbox);
    let config = &loaded.config;
    let Some(expert) = config.experts.get(&args.expert) else {
        let known: Vec<&str> = config.experts.keys().map(String::as_str).collect();
        eprintln!(
            "error: unknown expert `{}`; Experts in {}: {}",
            args.expert,
            loaded.path.display(),
            known.join(", ")
        );
        return Exit::Usage;
    };
    let default_tag = format!("{}:{}", slug(&args.expert), expert.version);
    let given = if args.tags.is_empty() {
        vec![default_tag]
    } else {
        args.tags.clone()
    };
    let mut refs = Vec::new();
    for reference in &given {
        match ImageRef::parse(reference) {
            Ok(image) => refs.push(image),
            Err(error) => {
                eprintln!("error: --tag {error}");
                return Exit::Usage;
            }
        }
    }
    let (mock_script, digest) = match read_inputs(&loaded) {
        Ok(inputs) => inputs,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    let artifacts = match artifacts::load() {
        Ok(artifacts) => artifacts,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Usage;
        }
    };
    let request = RunRequest {
        run_id: "build".into(),
        job_id: "build".into(),
        expert_key: args.expert.clone(),
        query: String::new(),
        config: config.clone(),
        // Only the images matter here, and they do not depend on the run's settings. A provider
        // that needs the network puts the egress proxy into the plan, so the version can run
        // with any provider.
        settings: RunSettings {
            provider: ProviderName::Anthropic,
            model: DEFAULT_MODEL.to_string(),
            max_steps: DEFAULT_MAX_STEPS,
            max_retries: DEFAULT_MAX_RETRIES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            reasoning_budget: None,
        },
        workspace: std::path::PathBuf::from("/"),
        user: (0, 0),
        runtime_env: vec![],
        env: BTreeMap::new(),
        mock_script,
        artifacts,
        limits: Limits::default(),
        controller: String::new(),
        resume: None,
    };
    let mut run_plan = match plan(&request) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: cannot write the runtime spec: {error}");
            return Exit::Usage;
        }
    };
    let docker = match DockerClient::connect().await {
        Ok(docker) => docker,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Docker;
        }
    };

    // Every image but the runtime's first: the runtime's labels record their ids.
    let suffixes = versioned::suffixes(&run_plan);
    let mut tags = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for index in suffixes.keys() {
        match ensure(&docker, &run_plan.images[*index], args.verbose).await {
            Ok((tag, id)) => {
                tags.insert(*index, tag);
                ids.insert(*index, id);
            }
            Err(exit) => return exit,
        }
    }
    let manifest = Manifest::new(
        config,
        &args.expert,
        digest,
        versioned::needed_images(&run_plan, &suffixes, &ids),
    );
    let labels = match manifest.labels() {
        Ok(labels) => labels,
        Err(error) => {
            eprintln!("error: cannot write the image labels: {error}");
            return Exit::Usage;
        }
    };
    let runtime_index = run_plan.runtime.image;
    let Some(runtime) = run_plan.images.get_mut(runtime_index) else {
        eprintln!("error: the plan has no runtime image");
        return Exit::RunFailed;
    };
    runtime.labels.extend(labels);
    // The ENTRYPOINT fixes the Expert: the runtime refuses any other.
    runtime
        .config
        .entrypoint
        .extend(["--only-expert".to_string(), args.expert.clone()]);
    let runtime_tag = match ensure(&docker, runtime, args.verbose).await {
        Ok((tag, _)) => tag,
        Err(exit) => return exit,
    };

    let mut made = Vec::new();
    for image in &refs {
        let mut pairs = vec![(runtime_tag.clone(), image.to_string())];
        for (index, suffix) in &suffixes {
            if let Some(tag) = tags.get(index) {
                pairs.push((tag.clone(), image.derived(suffix)));
            }
        }
        for (source, target) in pairs {
            if let Err(error) = docker.tag_image(&source, &target).await {
                eprintln!("error: {error}");
                return Exit::Docker;
            }
            made.push(target);
        }
    }
    if args.push {
        for reference in &made {
            eprintln!("pushing {reference}");
            let pushed = docker
                .push_image(reference, |line| {
                    if args.verbose {
                        eprintln!("  {line}");
                    }
                })
                .await;
            if let Err(error) = pushed {
                eprintln!("error: {error}");
                return Exit::Docker;
            }
        }
    }
    for reference in &made {
        println!("{reference}");
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
        manifest.version,
        refs[0]
    );
    Exit::Success
}

/// The mock script (when the file's provider is `mock`) and the config digest.
fn read_inputs(loaded: &LoadedConfig) -> Result<(Option<MockScript>, String), String> {
    let script = loaded
        .config
        .provider
        .as_ref()
        .filter(|p| p.provider_name == ProviderName::Mock)
        .and_then(|p| p.setting.script.as_ref());
    let mock_script = match script {
        Some(script) => {
            Some(MockScript::load(&loaded.dir().join(script)).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let bytes = std::fs::read(&loaded.path)
        .map_err(|e| format!("cannot read {}: {e}", loaded.path.display()))?;
    Ok((
        mock_script,
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
    ))
}

/// Finds or makes `spec` under its content-addressed tag; gives the tag and the image id.
async fn ensure(
    docker: &DockerClient,
    spec: &ImageSpec,
    verbose: bool,
) -> Result<(String, String), Exit> {
    let failed = |error: RunError| {
        eprintln!("error: {error}");
        match error {
            RunError::Docker(_) => Exit::Docker,
            _ => Exit::Usage,
        }
    };
    let tag = content_tag(docker, spec).await.map_err(failed)?;
    let found = docker.image_id(&tag).await.map_err(|e| failed(e.into()))?;
    if let Some(id) = found {
        eprintln!("{}: using cached image {tag}", spec.service);
        return Ok((tag, id));
    }
    eprintln!("{}: building image {tag}", spec.service);
    docker
        .create_image(spec, &tag, |line| {
            if verbose {
                eprintln!("  {line}");
            }
        })
        .await
        .map_err(|e| failed(e.into()))?;
    match docker.image_id(&tag).await.map_err(|e| failed(e.into()))? {
        Some(id) => Ok((tag, id)),
        None => {
            eprintln!("error: image {tag} was built but the engine does not know it");
            Err(Exit::Docker)
        }
    }
}
