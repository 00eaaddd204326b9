//! Versioned images: an Expert built once (`perstack-sandbox build --tag REF`), pushed, pulled
//! and run from the images alone (`perstack-sandbox run --image REF "query"`), with no
//! perstack.toml.
//!
//! Naming. The runtime image is `REF` itself; every other image of the Expert's delegation
//! closure lives in the same repository under `REF`'s tag plus a suffix:
//! `REF-skill-<name>`, `REF-base-skill`, `REF-egress-proxy` (e.g. `127.0.0.1:5000/demo:1.0` and
//! `127.0.0.1:5000/demo:1.0-skill-web`). One repository per Expert, so one registry permission
//! covers a version, and `docker images <repo>` shows it whole.
//!
//! What the controller needs and where it is:
//! - the baked runtime spec (`/etc/perstack-sandbox/runtime.json`, read out of the image): the
//!   closure's Experts with their skills (commands, `requiredEnv`, `allowedDomains`, …), the
//!   file's provider and its settings, the mock script;
//! - labels on the runtime image ([`Manifest`]): the Expert, its version, the config digest, the
//!   image each container needs (tag suffix and image id, checked after a pull) and the file's
//!   other settings (`model`, `maxSteps`, … and `[sandbox]`, for the limits).
//!
//! From these the controller rebuilds the config and plans the run exactly as it would from the
//! file; the plan's images are then pinned to the versioned references instead of being built.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::images::{ImageRole, slug};
use super::labels;
use super::plan::{PrebuiltImage, RunPlan};
use crate::config::{Config, ProviderConfig, ProviderName};
use crate::contract::spec::RuntimeSpec;

/// Why a versioned image cannot be built or used.
#[derive(Debug, thiserror::Error)]
pub enum VersionedError {
    /// The reference is not `[registry/]repository[:tag]`.
    #[error(
        "`{reference}` is not an image reference we can tag: {reason}\n  hint: use `[registry[:port]/]name[:tag]`, e.g. `127.0.0.1:5000/demo:1.0`"
    )]
    BadReference {
        /// What was given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The image carries no manifest: it was not made by `perstack-sandbox build`.
    #[error(
        "image {reference} is not a versioned perstack-sandbox runtime image (label {label} is missing)\n  hint: build one with `perstack-sandbox build <expert> --tag {reference}`"
    )]
    NotVersioned {
        /// The image.
        reference: String,
        /// The missing label.
        label: &'static str,
    },
    /// A label could not be read.
    #[error(
        "image {reference}: label {label} is unreadable ({message})\n  hint: rebuild it with this version of perstack-sandbox"
    )]
    BadLabel {
        /// The image.
        reference: String,
        /// The label.
        label: &'static str,
        /// Why.
        message: String,
    },
    /// The baked runtime spec could not be read.
    #[error(
        "image {reference}: its runtime spec is unreadable ({message})\n  hint: rebuild it with this version of perstack-sandbox"
    )]
    BadSpec {
        /// The image.
        reference: String,
        /// Why.
        message: String,
    },
    /// The plan needs a container whose image the manifest does not name.
    #[error(
        "image {reference} names no image for `{service}`, which this version of perstack-sandbox needs to run it\n  hint: rebuild it with `perstack-sandbox build … --tag {reference}`"
    )]
    MissingImage {
        /// The runtime image.
        reference: String,
        /// The container service without an image.
        service: String,
    },
    /// A pulled or local image is not the one the runtime image was built with.
    #[error(
        "image {reference} is not the one the Expert was built with (id {found}, expected {expected})\n  hint: push the whole version again (`perstack-sandbox build … --tag … --push`), or remove the stale local image"
    )]
    WrongImage {
        /// The image.
        reference: String,
        /// Its id.
        found: String,
        /// The id recorded in the runtime image.
        expected: String,
    },
    /// The user named an Expert that is not the image's.
    #[error(
        "image {reference} runs Expert `{fixed}`, not `{given}`\n  hint: with --image, pass only the query: `perstack-sandbox run --image {reference} \"<query>\"`"
    )]
    OtherExpert {
        /// The image.
        reference: String,
        /// Its Expert.
        fixed: String,
        /// The one asked for.
        given: String,
    },
}

/// A `[registry[:port]/]repository[:tag]` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    /// Everything before the tag.
    pub repository: String,
    /// The tag (`latest` when none was given).
    pub tag: String,
}

impl ImageRef {
    /// Parses and checks a reference. Digests (`@sha256:…`) are refused: we tag, and a digest
    /// cannot be a tag.
    pub(crate) fn parse(reference: &str) -> Result<ImageRef, VersionedError> {
        let bad = |reason: &str| VersionedError::BadReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        if reference.contains('@') {
            return Err(bad("a digest cannot be a tag"));
        }
        let (repository, tag) = split_reference(reference);
        if repository.is_empty()
            || repository.starts_with('/')
            || repository.ends_with('/')
            || repository.contains("//")
        {
            return Err(bad("the repository is empty or has an empty path part"));
        }
        let path = match repository.split_once('/') {
            // A first part with a `.` or `:` (or `localhost`) is a registry host.
            Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
            _ => repository,
        };
        if !path
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
        {
            return Err(bad(
                "a repository name has only lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if tag.is_empty()
            || tag.len() > 100
            || tag.starts_with(['.', '-'])
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(bad(
                "a tag has 1 to 100 letters, digits, `.`, `_` and `-`, not starting with `.` or `-` (derived tags add a suffix to it)",
            ));
        }
        Ok(ImageRef {
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }

    /// The reference of an image of the same version: `<repository>:<tag>-<suffix>`.
    pub(crate) fn derived(&self, suffix: &str) -> String {
        format!("{}:{}-{suffix}", self.repository, self.tag)
    }
}

/// `repo:tag` split at the tag's colon (a registry's port has a `/` after it); `latest` when
/// there is no tag.
pub(crate) fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// One image a versioned runtime needs besides itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NeededImage {
    /// Appended to the runtime's tag: `REF-<suffix>`.
    pub suffix: String,
    /// Its image id (`sha256:…`), which survives push and pull.
    pub id: String,
}

/// What the labels of a versioned runtime image record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    /// The Expert the image runs.
    pub expert: String,
    /// Its version.
    pub version: String,
    /// `sha256:<hex>` of the perstack.toml it was built from.
    pub config_digest: String,
    /// The image of each container the run starts besides the runtime, by container service
    /// (`skill:web`, `base-skill:helper`, `egress-proxy`, …).
    pub images: BTreeMap<String, NeededImage>,
    /// The file's settings outside its Experts and provider (which the spec holds): `model`,
    /// `maxSteps`, `maxRetries`, `timeout`, `reasoningBudget`, `[sandbox]`.
    pub settings: Config,
}

impl Manifest {
    /// The manifest of `config`'s Expert `expert`: `settings` is `config` without Experts,
    /// provider and `envPath` (dotenv files belong to where it runs).
    pub(crate) fn new(
        config: &Config,
        expert: &str,
        config_digest: String,
        images: BTreeMap<String, NeededImage>,
    ) -> Manifest {
        let mut settings = config.clone();
        settings.experts.clear();
        settings.provider = None;
        settings.env_path = None;
        Manifest {
            expert: expert.to_string(),
            version: config
                .experts
                .get(expert)
                .map(|e| e.version.clone())
                .unwrap_or_default(),
            config_digest,
            images,
            settings,
        }
    }

    /// The labels that carry it.
    pub(crate) fn labels(&self) -> Result<BTreeMap<String, String>, serde_json::Error> {
        Ok(BTreeMap::from([
            (labels::EXPERT.to_string(), self.expert.clone()),
            (labels::EXPERT_VERSION.to_string(), self.version.clone()),
            (
                labels::CONFIG_DIGEST.to_string(),
                self.config_digest.clone(),
            ),
            (
                labels::NEEDED_IMAGES.to_string(),
                serde_json::to_string(&self.images)?,
            ),
            (
                labels::SETTINGS.to_string(),
                serde_json::to_string(&self.settings)?,
            ),
        ]))
    }

    /// Reads it back from an image's labels.
    pub(crate) fn from_labels(
        reference: &str,
        image_labels: &HashMap<String, String>,
    ) -> Result<Manifest, VersionedError> {
        let get = |label: &'static str| {
            image_labels
                .get(label)
                .ok_or_else(|| VersionedError::NotVersioned {
                    reference: reference.to_string(),
                    label,
                })
        };
        let bad = |label: &'static str| {
            move |e: serde_json::Error| VersionedError::BadLabel {
                reference: reference.to_string(),
                label,
                message: e.to_string(),
            }
        };
        Ok(Manifest {
            expert: get(labels::EXPERT)?.clone(),
            version: get(labels::EXPERT_VERSION)?.clone(),
            config_digest: get(labels::CONFIG_DIGEST)?.clone(),
            images: serde_json::from_str(get(labels::NEEDED_IMAGES)?)
                .map_err(bad(labels::NEEDED_IMAGES))?,
            settings: serde_json::from_str(get(labels::SETTINGS)?)
                .map_err(bad(labels::SETTINGS))?,
        })
    }

    /// The config the image was built from, as far as a run needs it: the settings from the
    /// labels, the Experts and the provider from the baked spec.
    pub(crate) fn config(
        &self,
        reference: &str,
        spec: &RuntimeSpec,
    ) -> Result<Config, VersionedError> {
        let mut config = self.settings.clone();
        config.experts = spec.experts.clone();
        config.provider = match spec.provider_name.as_deref() {
            None => None,
            Some(name) => Some(ProviderConfig {
                provider_name: ProviderName::parse(name).ok_or_else(|| {
                    VersionedError::BadSpec {
                        reference: reference.to_string(),
                        message: format!("unknown provider `{name}`"),
                    }
                })?,
                setting: spec.provider_setting.clone(),
            }),
        };
        if spec.expert_key != self.expert || !config.experts.contains_key(&self.expert) {
            return Err(VersionedError::BadSpec {
                reference: reference.to_string(),
                message: format!(
                    "the spec is for Expert `{}`, the labels for `{}`",
                    spec.expert_key, self.expert
                ),
            });
        }
        Ok(config)
    }
}

/// Every container of a plan but the runtime, with the index of its image: skills, then the
/// egress proxy.
fn containers(plan: &RunPlan) -> Vec<(&str, usize)> {
    plan.skills
        .iter()
        .chain(plan.proxy.as_ref().map(|p| &p.container))
        .map(|c| (c.service.as_str(), c.image))
        .collect()
}

/// The tag suffix of each image of a plan but the runtime's, by image index: `skill-<name>`
/// (the first skill using it; `-2`, `-3`, … when two different images would share a name),
/// `base-skill`, `egress-proxy`.
pub(crate) fn suffixes(plan: &RunPlan) -> BTreeMap<usize, String> {
    let mut suffixes: BTreeMap<usize, String> = BTreeMap::new();
    let mut used: Vec<String> = Vec::new();
    for container in plan
        .skills
        .iter()
        .chain(plan.proxy.as_ref().map(|p| &p.container))
    {
        if suffixes.contains_key(&container.image) || container.image == plan.runtime.image {
            continue;
        }
        let spec = &plan.images[container.image];
        let base = match spec.role {
            ImageRole::Skill => format!(
                "skill-{}",
                slug(container.skill.as_deref().unwrap_or(&container.service))
            ),
            role => role.as_str().to_string(),
        };
        let mut suffix = base.clone();
        let mut n = 1;
        while used.contains(&suffix) {
            n += 1;
            suffix = format!("{base}-{n}");
        }
        used.push(suffix.clone());
        suffixes.insert(container.image, suffix);
    }
    suffixes
}

/// The prebuilt image for each image of `plan`, in plan order: the runtime is `runtime`, every
/// other image is found through the manifest by the services of the containers using it.
pub(crate) fn pin(
    plan: &RunPlan,
    manifest: &Manifest,
    runtime: &ImageRef,
    runtime_id: &str,
) -> Result<Vec<PrebuiltImage>, VersionedError> {
    let mut pinned: Vec<Option<PrebuiltImage>> = vec![None; plan.images.len()];
    if let Some(slot) = pinned.get_mut(plan.runtime.image) {
        *slot = Some(PrebuiltImage {
            reference: runtime.to_string(),
            id: runtime_id.to_string(),
        });
    }
    for (service, image) in containers(plan) {
        let needed = manifest
            .images
            .get(service)
            .ok_or_else(|| VersionedError::MissingImage {
                reference: runtime.to_string(),
                service: service.to_string(),
            })?;
        if let Some(slot) = pinned.get_mut(image) {
            *slot = Some(PrebuiltImage {
                reference: runtime.derived(&needed.suffix),
                id: needed.id.clone(),
            });
        }
    }
    pinned
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            p.ok_or_else(|| VersionedError::MissingImage {
                reference: runtime.to_string(),
                service: plan.images[i].service.clone(),
            })
        })
        .collect()
}

/// The manifest's `images`: for each container but the runtime, its image's suffix and id.
/// `ids` are the built images' ids by image index.
pub(crate) fn needed_images(
    plan: &RunPlan,
    suffixes: &BTreeMap<usize, String>,
    ids: &BTreeMap<usize, String>,
) -> BTreeMap<String, NeededImage> {
    containers(plan)
        .into_iter()
        .filter_map(|(service, image)| {
            Some((
                service.to_string(),
                NeededImage {
                    suffix: suffixes.get(&image)?.clone(),
                    id: ids.get(&image)?.clone(),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use bytes::Bytes;

    use super::*;
    use crate::config::load_str;
    use crate::config::{Limits, RunSettings};
    use crate::sandbox::images::recipes::Artifacts;
    use crate::sandbox::plan::{RunRequest, plan};

    const CONFIG: &str = r#"
model = "file-model"
maxSteps = 9
envPath = [".env.build"]

[provider]
providerName = "mock"
setting = { script = "s.toml" }

[sandbox]
memory = "1g"

[experts.main]
version = "1.2.0"
instruction = "Lead."
delegates = ["helper"]

[experts.main.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["WEB_KEY"]
allowedDomains = ["api.example.com"]

[experts.helper]
instruction = "Help."
description = "Helps."

[experts.helper.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp", "--other"]
"#;

    fn config() -> Config {
        load_str(Path::new("/cfg/perstack.toml"), CONFIG)
            .expect("valid")
            .config
    }

    fn request(config: Config, provider: ProviderName) -> RunRequest {
        RunRequest {
            run_id: "runid0000000abcdef".into(),
            job_id: "job1".into(),
            expert_key: "main".into(),
            query: "hello".into(),
            config,
            settings: RunSettings {
                provider,
                model: "m".into(),
                max_steps: 3,
                max_retries: 1,
                timeout_ms: 1000,
                reasoning_budget: None,
            },
            workspace: PathBuf::from("/home/me/project"),
            user: (1000, 1000),
            protected: Default::default(),
            runtime_env: vec![],
            env: BTreeMap::from([("WEB_KEY".to_string(), "secret".to_string())]),
            mock_script: None,
            skill_files: Default::default(),
            artifacts: Artifacts {
                binary: Bytes::from_static(b"\x7fELF fake"),
                executable: Default::default(),
                ca_bundle: Bytes::new(),
            },
            limits: Limits::default(),
            oci_runtime: None,
            controller: "host/boot/1/2".into(),
            resume: None,
            list_tools: false,
        }
    }

    #[test]
    fn references_keep_the_registry_port_and_default_to_latest() {
        let r = ImageRef::parse("127.0.0.1:5000/demo:1.0").expect("valid");
        assert_eq!(r.repository, "127.0.0.1:5000/demo");
        assert_eq!(r.tag, "1.0");
        assert_eq!(r.derived("skill-web"), "127.0.0.1:5000/demo:1.0-skill-web");
        assert_eq!(r.to_string(), "127.0.0.1:5000/demo:1.0");
        let r = ImageRef::parse("127.0.0.1:5000/team/demo").expect("valid");
        assert_eq!(
            (r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000/team/demo", "latest")
        );
        for bad in [
            "demo@sha256:abc",
            "Demo:1.0",
            "demo:",
            "demo:-x",
            ":1.0",
            "a//b:1",
            "demo:has space",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_manifest_survives_its_labels_and_rebuilds_the_config_with_the_spec() {
        let config = config();
        let images = BTreeMap::from([(
            "skill:web:main".to_string(),
            NeededImage {
                suffix: "skill-web".into(),
                id: "sha256:aa".into(),
            },
        )]);
        let manifest = Manifest::new(&config, "main", "sha256:cfg".into(), images);
        assert_eq!(manifest.version, "1.2.0");
        let labels = manifest.labels().expect("labels");
        assert_eq!(labels[labels::EXPERT], "main");
        assert_eq!(labels[labels::EXPERT_VERSION], "1.2.0");
        assert_eq!(labels[labels::CONFIG_DIGEST], "sha256:cfg");
        // The Experts and the provider are in the spec, dotenv files belong to where it runs.
        assert!(!labels[labels::SETTINGS].contains("experts\":{\""));
        assert!(!labels[labels::SETTINGS].contains("envPath"));
        let read =
            Manifest::from_labels("r", &labels.clone().into_iter().collect()).expect("readable");
        assert_eq!(read, manifest);

        let plan = plan(&request(config.clone(), ProviderName::Mock)).expect("plan");
        let rebuilt = read.config("r", &plan.spec).expect("config");
        assert_eq!(rebuilt.model.as_deref(), Some("file-model"));
        assert_eq!(rebuilt.max_steps, Some(9));
        assert_eq!(rebuilt.sandbox.memory.as_deref(), Some("1g"));
        assert_eq!(rebuilt.provider, config.provider);
        assert_eq!(rebuilt.experts, config.experts);
        assert_eq!(rebuilt.env_path, None);

        // An image without the labels is not a versioned one.
        let mut partial: HashMap<String, String> = labels.into_iter().collect();
        partial.remove(labels::NEEDED_IMAGES);
        assert!(matches!(
            Manifest::from_labels("r", &partial),
            Err(VersionedError::NotVersioned { label, .. }) if label == labels::NEEDED_IMAGES
        ));
    }

    #[test]
    fn a_rebuilt_config_plans_the_same_containers_and_pins_every_image() {
        // Built with a real provider: the egress proxy is in the plan too.
        let config = config();
        let built = plan(&request(config.clone(), ProviderName::Anthropic)).expect("plan");
        let suffixes = suffixes(&built);
        // Two skills called `web` with different commands get different images and names.
        let mut names: Vec<&str> = suffixes.values().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["base-skill", "egress-proxy", "skill-web", "skill-web-2"]
        );
        let ids: BTreeMap<usize, String> = suffixes
            .keys()
            .map(|i| (*i, format!("sha256:{i}")))
            .collect();
        let needed = needed_images(&built, &suffixes, &ids);
        assert_eq!(
            needed.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "base-skill:helper",
                "base-skill:main",
                "egress-proxy",
                "skill:web:helper",
                "skill:web:main"
            ]
        );
        let manifest = Manifest::new(&config, "main", "sha256:cfg".into(), needed);

        // The run, from the image: same containers, each on its versioned image.
        let rebuilt = manifest.config("r", &built.spec).expect("config");
        let mut run = plan(&request(rebuilt, ProviderName::Anthropic)).expect("plan");
        let runtime = ImageRef::parse("127.0.0.1:5000/demo:1.0").expect("ref");
        run.prebuilt = Some(pin(&run, &manifest, &runtime, "sha256:rt").expect("pinned"));
        let pinned = run.prebuilt.as_ref().expect("pinned");
        let image_of = |service: &str| {
            let container = run
                .skills
                .iter()
                .chain(run.proxy.as_ref().map(|p| &p.container))
                .chain([&run.runtime])
                .find(|c| c.service == service)
                .unwrap_or_else(|| panic!("no {service}"));
            pinned[container.image].reference.as_str()
        };
        assert_eq!(image_of("runtime"), "127.0.0.1:5000/demo:1.0");
        assert_eq!(
            image_of("skill:web:main"),
            "127.0.0.1:5000/demo:1.0-skill-web"
        );
        assert_eq!(
            image_of("skill:web:helper"),
            "127.0.0.1:5000/demo:1.0-skill-web-2"
        );
        assert_eq!(
            image_of("base-skill:main"),
            "127.0.0.1:5000/demo:1.0-base-skill"
        );
        assert_eq!(
            image_of("egress-proxy"),
            "127.0.0.1:5000/demo:1.0-egress-proxy"
        );
        assert_eq!(pinned[run.runtime.image].id, "sha256:rt");
        // requiredEnv, networks and users come out as from the file.
        let web = run
            .skills
            .iter()
            .find(|s| s.service == "skill:web:main")
            .expect("web");
        assert_eq!(web.env[0], ("WEB_KEY".to_string(), "secret".to_string()));
        assert!(matches!(
            web.network,
            crate::sandbox::plan::NetworkPlan::Internal(_)
        ));
        assert_eq!(web.user, "10002:10002");

        // A plan needing a container the image did not record is refused, naming it.
        let mut short = manifest.clone();
        short.images.remove("egress-proxy");
        assert!(matches!(
            pin(&run, &short, &runtime, "sha256:rt"),
            Err(VersionedError::MissingImage { service, .. }) if service == "egress-proxy"
        ));
    }
}
