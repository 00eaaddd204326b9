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
pub struct ImageRef {
    /// Everything before the tag.
    pub repository: String,
    /// The tag (`latest` when none was given).
    pub tag: String,
}

impl ImageRef {
    /// Parses and checks a reference. Digests (`@sha256:…`) are refused: we tag, and a digest
    /// cannot be a tag.
    pub fn parse(reference: &str) -> Result<ImageRef, VersionedError> {
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
    pub fn derived(&self, suffix: &str) -> String {
        format!("{}:{}-{suffix}", self.repository, self.tag)
    }
}

/// `repo:tag` split at the tag's colon (a registry's port has a `/` after it); `latest` when
/// there is no tag.
pub fn split_reference(reference: &str) -> (&str, &str) {
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
pub struct NeededImage {
    /// Appended to the runtime's tag: `REF-<suffix>`.
    pub suffix: String,
    /// Its image id (`sha256:…`), which survives push and pull.
    pub id: String,
}

/// What the labels of a versioned runtime image record.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
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
    pub fn new(
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
    pub fn labels(&self) -> Result<BTreeMap<String, String>, serde_json::Error> {
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
    pub fn from_labels(
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
    pub fn config(&self, reference: &str, spec: &RuntimeSpec) -> Result<Config, VersionedError> {
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
pub fn suffixes(plan: &RunPlan) -> BTreeMap<usize, String> {
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
pub fn pin(
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
pub fn needed_images(
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
mod tests;
