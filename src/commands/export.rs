//! `perstack-sandbox export kubernetes --image REF`: the objects that run a versioned image's
//! Expert on a Kubernetes cluster, as YAML on stdout (`sandbox/k8s/manifest.rs` decides them).
//!
//! The run is planned exactly as `run --image` plans it — the image's config, its settings, its
//! images — with nothing of this machine's environment: every variable the plan hands a
//! container becomes a reference to a Secret key, and the header says which keys to create.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cli::{ExportCommand, ExportKubernetesArgs};
use crate::config::settings::SettingFlags;
use crate::config::{Settings, SettingsError, Skill};
use crate::exit::Exit;
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::k8s::manifest::{
    self, Export, ManifestError, QUERY_KEY, SecretKey, Workspace, dns_label,
};
use crate::sandbox::plan::{RunPlan, RunRequest};

use super::run::RunError;
use super::run::image::ImageSource;

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A flag is unusable.
    #[error("{0}")]
    Usage(String),
    /// The image could not be found or read.
    #[error(transparent)]
    Image(#[from] RunError),
    /// `--push-to`: the version could not be built or pushed.
    #[error(transparent)]
    Build(#[from] super::build::BuildError),
    /// The image's settings cannot be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The runtime's command line could not be written.
    #[error("cannot plan the run: {0}")]
    Plan(#[source] serde_json::Error),
    /// The plan has no Kubernetes form (`ManifestError`'s message).
    #[error("{0}")]
    Manifest(String),
}

impl From<&ExportError> for Exit {
    fn from(error: &ExportError) -> Exit {
        match error {
            ExportError::Image(error) => error.into(),
            ExportError::Build(error) => error.into(),
            ExportError::Plan(_) => Exit::RunFailed,
            ExportError::Usage(_) | ExportError::Settings(_) | ExportError::Manifest(_) => {
                Exit::Usage
            }
        }
    }
}

/// Runs the command: the YAML on stdout.
pub async fn run(command: ExportCommand) -> Result<Exit, ExportError> {
    let ExportCommand::Kubernetes(args) = command;
    let user = workspace_user(&args.workspace_user)?;
    let secrets = secret_keys(&args.secrets)?;
    let image = image(&args).await?;
    let show = |notice: super::run::Notice| eprintln!("{notice}");
    let source = ImageSource::open(&image, false, &show).await?;
    let name = match &args.name {
        Some(name) => checked_name(name)?,
        None => dns_label(
            source
                .reference
                .repository
                .rsplit('/')
                .next()
                .unwrap_or("perstack"),
            40,
        ),
    };
    let plan = plan(&source, user)?;
    let export = Export {
        images: images(&plan)?,
        secret: args.secret_name.clone().unwrap_or_else(|| name.clone()),
        name,
        namespace: args.namespace.clone(),
        secrets,
        workspace: match &args.workspace_pvc {
            Some(claim) => Workspace::Claim(claim.clone()),
            None => Workspace::EmptyDir(args.workspace_size.clone()),
        },
        deadline_seconds: args.timeout.map(|t| t.as_secs().max(1)),
        copy: None,
    };
    let objects = manifest::objects(&plan, &export)
        .map_err(|e: ManifestError| ExportError::Manifest(e.to_string()))?;
    let header = header(&image, &plan, &export);
    print!("{}", crate::sandbox::k8s::yaml::stream(&header, &objects));
    Ok(Exit::Success)
}

/// The versioned image to export: `--image`, or the one `--push-to` builds and pushes first.
async fn image(args: &ExportKubernetesArgs) -> Result<String, ExportError> {
    match (&args.image, &args.push_to, &args.expert) {
        (Some(image), _, _) => Ok(image.clone()),
        (None, Some(push_to), Some(expert)) => {
            let build = crate::cli::BuildArgs {
                expert: expert.clone(),
                tags: vec![push_to.clone()],
                push: true,
                standalone: false,
                standalone_base: None,
                config: args.config.clone(),
                verbose: false,
                frozen_lockfile: false,
                ca_certificates: None,
                base_images: Default::default(),
            };
            super::build::version(&build).await?;
            Ok(push_to.clone())
        }
        _ => Err(ExportError::Usage(
            "give --image REF, or an Expert and --push-to REF".to_string(),
        )),
    }
}

/// The run as `run --image` would plan it, with no value of any variable: each one the plan
/// hands a container is empty here and becomes a `secretKeyRef`.
fn plan(source: &ImageSource, user: (u32, u32)) -> Result<RunPlan, ExportError> {
    let loaded = &source.loaded;
    let settings = Settings::resolve(&SettingFlags::default(), loaded)?;
    let config = &loaded.config;
    let expert = source.manifest.expert.clone();
    let env: BTreeMap<String, String> = config
        .delegation_closure(&expert)
        .iter()
        .filter_map(|key| config.experts.get(key))
        .flat_map(|e| e.skills.values())
        .filter_map(|skill| match skill {
            Skill::McpStdio(stdio) => Some(stdio.required_env.iter()),
            _ => None,
        })
        .flatten()
        .map(|name| (name.clone(), String::new()))
        .collect();
    let runtime_env = settings
        .run
        .provider
        .info()
        .key_vars
        .iter()
        .map(|name| (name.to_string(), String::new()))
        .collect();
    let request = RunRequest {
        run_id: crate::ids::new_id(),
        job_id: crate::ids::new_id(),
        expert_key: expert,
        // Replaced by a reference to the Secret's `query` in the Job.
        query: String::new(),
        config: config.clone(),
        settings: settings.run,
        workspace: PathBuf::from(crate::contract::paths::WORKSPACE_MOUNT),
        user,
        protected: crate::sandbox::k8s::protected_layout(&config.sandbox.writable),
        runtime_env,
        env,
        mock_script: source.mock_script.clone(),
        artifacts: Artifacts::default(),
        skill_files: Default::default(),
        limits: settings.limits,
        oci_runtime: None,
        controller: "kubernetes".to_string(),
        resume: None,
        list_tools: false,
    };
    let mut plan = crate::sandbox::plan::plan(&request).map_err(ExportError::Plan)?;
    source
        .pin(&mut plan)
        .map_err(|e| ExportError::Image(e.into()))?;
    Ok(plan)
}

/// The reference of each of the plan's images.
fn images(plan: &RunPlan) -> Result<Vec<String>, ExportError> {
    plan.prebuilt
        .as_ref()
        .map(|prebuilt| prebuilt.iter().map(|p| p.reference.clone()).collect())
        .ok_or_else(|| ExportError::Usage("the plan's images are not pinned to the version".into()))
}

/// `--workspace-user UID:GID`: numbers, and not root.
fn workspace_user(text: &str) -> Result<(u32, u32), ExportError> {
    let parsed = text
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)));
    match parsed {
        Some((uid, gid)) if uid != 0 => Ok((uid, gid)),
        _ => Err(ExportError::Usage(format!(
            "--workspace-user {text}: give a numeric UID:GID with a uid other than 0 (the pod runs as non-root)"
        ))),
    }
}

/// `--secret VAR=SECRET/KEY`, each.
fn secret_keys(given: &[String]) -> Result<BTreeMap<String, SecretKey>, ExportError> {
    let mut keys = BTreeMap::new();
    for text in given {
        let parsed = text.split_once('=').and_then(|(var, place)| {
            let (secret, key) = place.split_once('/')?;
            let ok = !var.is_empty() && !secret.is_empty() && !key.is_empty();
            ok.then(|| (var.to_string(), secret.to_string(), key.to_string()))
        });
        let Some((var, secret, key)) = parsed else {
            return Err(ExportError::Usage(format!(
                "--secret {text}: expected VAR=SECRET/KEY, e.g. ANTHROPIC_API_KEY=llm-keys/anthropic"
            )));
        };
        keys.insert(var, SecretKey { secret, key });
    }
    Ok(keys)
}

/// `--name`: a DNS label short enough for the names made from it.
fn checked_name(name: &str) -> Result<String, ExportError> {
    if dns_label(name, 40) == name {
        Ok(name.to_string())
    } else {
        Err(ExportError::Usage(format!(
            "--name {name}: use at most 40 lowercase letters, digits and `-`, starting and ending with a letter or digit (e.g. {})",
            dns_label(name, 40)
        )))
    }
}

/// The YAML's comment lines: what made it, and the Secret keys to create before applying it.
fn header(image: &str, plan: &RunPlan, export: &Export) -> Vec<String> {
    let mut needed: BTreeMap<String, SecretKey> = BTreeMap::new();
    needed.insert(QUERY_KEY.to_string(), export.secret_key(QUERY_KEY));
    for container in plan.skills.iter().chain([&plan.runtime]) {
        for (name, _) in container
            .env
            .iter()
            .filter(|(n, _)| !manifest::is_literal(n))
        {
            needed.insert(name.clone(), export.secret_key(name));
        }
    }
    for principal in plan.proxy.iter().flat_map(|p| &p.principals) {
        let key = manifest::token_key(&principal.name);
        needed.insert(key.clone(), export.secret_key(&key));
    }
    let mut lines = vec![
        format!(
            "Made by `perstack-sandbox export kubernetes --image {image}` (experimental: not yet run on a real cluster)."
        ),
        "Before `kubectl apply -f`, create these Secret keys (no value is in this file):"
            .to_string(),
    ];
    for (what, place) in &needed {
        let token = if what.starts_with("proxy-token-") {
            " (a random token: `openssl rand -hex 32`)"
        } else {
            ""
        };
        lines.push(format!("  {}/{} <- {what}{token}", place.secret, place.key));
    }
    let ns = export
        .namespace
        .as_ref()
        .map(|n| format!(" -n {n}"))
        .unwrap_or_default();
    let mut command = format!("kubectl{ns} create secret generic {}", export.secret);
    for (what, place) in needed.iter().filter(|(_, p)| p.secret == export.secret) {
        let value = if what.starts_with("proxy-token-") {
            "$(openssl rand -hex 32)".to_string()
        } else if what == QUERY_KEY {
            "'<your query>'".to_string()
        } else {
            format!("\"${what}\"")
        };
        command.push_str(&format!(" --from-literal={}={value}", place.key));
    }
    lines.push(format!("e.g.: {command}"));
    lines
}
