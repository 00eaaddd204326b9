//! The standalone image (`build --standalone`): every file of every image of the plan on one
//! `scratch` root — our binary (root-owned, mode 0711, so the processes it becomes stay
//! non-dumpable), the runtime spec, the CA bundle, the version's manifest at
//! [`MANIFEST_PATH`] — with the supervisor as ENTRYPOINT and the version's labels.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::MANIFEST_PATH;

/// The name-service configuration of our other images (`images/nsswitch.conf`).
const NSSWITCH_PATH: &str = "/etc/nsswitch.conf";
use crate::contract::paths::{BINARY_PATH, SCRATCH_PATH};
use crate::sandbox::images::{ContextFile, ImageConfig, ImageRole, ImageSpec, base_labels, slug};
use crate::sandbox::labels;
use crate::sandbox::plan::RunPlan;
use crate::sandbox::versioned::Manifest;

/// Why a plan cannot become one standalone image.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneImageError {
    /// An image of the plan is not on `scratch` (a `uvx`/`npx` skill, a base image, a
    /// Dockerfile).
    #[error(
        "{service} needs the base image `{base}`{install}; a standalone image holds only skills \
         that run on perstack-sandbox's own `scratch` root so far. Run this Expert in the \
         multi-container mode instead: perstack-sandbox build --tag REF, then perstack-sandbox \
         run --image REF \"<query>\""
    )]
    NotScratch {
        /// The service of the image.
        service: String,
        /// Its base.
        base: String,
        /// What it installs, if anything.
        install: String,
    },
    /// Two images put different contents at one path.
    #[error("{path} differs between the images of {first} and {second}")]
    Conflict {
        /// The path.
        path: String,
        /// The services of the two images.
        first: String,
        /// The other.
        second: String,
    },
    /// The manifest could not be serialized.
    #[error("cannot write the version's manifest: {0}")]
    Manifest(#[from] serde_json::Error),
}

/// The one image holding the plan's images, tagged `perstack-sandbox/standalone-<expert>`.
pub(crate) fn standalone_image(
    plan: &RunPlan,
    manifest: &Manifest,
) -> Result<ImageSpec, StandaloneImageError> {
    let labels_map = manifest.labels()?;
    let mut files: BTreeMap<String, (String, ContextFile)> = BTreeMap::new();
    for image in &plan.images {
        if image.base != "scratch" || image.install.is_some() || image.recipe.is_some() {
            return Err(StandaloneImageError::NotScratch {
                service: image.service.clone(),
                base: image.base.clone(),
                install: image
                    .install
                    .as_ref()
                    .map(|_| " and installs packages".to_string())
                    .unwrap_or_default(),
            });
        }
        for file in &image.files {
            match files.get(&file.path) {
                Some((first, kept)) if kept.contents != file.contents => {
                    return Err(StandaloneImageError::Conflict {
                        path: file.path.clone(),
                        first: first.clone(),
                        second: image.service.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    files.insert(file.path.clone(), (image.service.clone(), file.clone()));
                }
            }
        }
    }
    // The images' `hosts: files` would keep the proxy, the one principal that resolves names,
    // from asking the container's resolver; the others cannot (no UDP socket) and fail at once.
    files.remove(NSSWITCH_PATH);
    let mut files: Vec<ContextFile> = files.into_values().map(|(_, f)| f).collect();
    for file in &mut files {
        if file.path == BINARY_PATH {
            // Executable but unreadable to every principal: the kernel keeps a process of an
            // unreadable program non-dumpable across execve.
            file.mode = 0o711;
        }
    }
    files.push(ContextFile {
        path: MANIFEST_PATH.into(),
        mode: 0o644,
        contents: Bytes::from(serde_json::to_vec_pretty(&labels_map)?),
    });
    let mut image_labels = base_labels(ImageRole::Runtime);
    image_labels.extend(labels_map);
    image_labels.insert(labels::STANDALONE.to_string(), "true".to_string());
    Ok(ImageSpec {
        role: ImageRole::Runtime,
        service: "standalone".into(),
        repository: format!("perstack-sandbox/standalone-{}", slug(&manifest.expert)),
        base: "scratch".into(),
        files,
        config: ImageConfig {
            env: vec![
                ("PATH".to_string(), SCRATCH_PATH.to_string()),
                ("HOME".to_string(), "/tmp".to_string()),
            ],
            // Root, so that the supervisor can give each principal a uid of its own; it drops
            // every capability for each of them.
            user: None,
            workdir: None,
            entrypoint: vec![BINARY_PATH.to_string(), "standalone".to_string()],
        },
        labels: image_labels,
        install: None,
        recipe: None,
    })
}
