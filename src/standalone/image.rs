//! The standalone image (`build --standalone`): every file of every image of the plan on one
//! base — our binary (root-owned, mode 0711, so the processes it becomes stay non-dumpable), the
//! runtime spec, the CA bundle, the version's manifest at [`MANIFEST_PATH`] — with the
//! supervisor as ENTRYPOINT and the version's labels.
//!
//! Skills whose commands fetch packages (`uvx`, `npx`) get them at build time as in their own
//! images, one install stage per skill, each installing into the skill's own folder
//! ([`skill_root`]) so that no two skills share a file. A skill's local files (and the
//! dependencies their manifest names, installed the same way) go into that folder too. A skill
//! built from its own Dockerfile is refused ([`StandaloneImageError::OwnRecipe`] says why). The base is the one their images would
//! have had ([`choose_base`]): `scratch` when no image of the plan needs one.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{MANIFEST_PATH, skill_root};

/// The name-service configuration of our other images (`images/nsswitch.conf`).
const NSSWITCH_PATH: &str = "/etc/nsswitch.conf";
/// Our users and groups for `scratch` images; a real base keeps its own.
const PASSWD_PATHS: [&str; 2] = ["/etc/passwd", "/etc/group"];
use crate::contract::paths::{BINARY_PATH, SCRATCH_PATH};
use crate::sandbox::images::{
    ContextFile, ImageConfig, ImageRole, ImageSpec, InstallStage, base_labels, slug,
};
use crate::sandbox::labels;
use crate::sandbox::plan::RunPlan;
use crate::sandbox::versioned::Manifest;

/// Why a plan cannot become one standalone image.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneImageError {
    /// A skill's image is built from the user's own Dockerfile.
    #[error(
        "{service} is built from its own Dockerfile ([sandbox.skills] dockerfile), which a \
         standalone image cannot run: a recipe makes a whole root filesystem (its own libraries \
         and interpreters at their absolute paths), and running a program on another root needs \
         chroot or a mount namespace, privileges every principal of a standalone image is \
         denied. Either run this Expert in the multi-container mode (perstack-sandbox build \
         --tag REF, then perstack-sandbox run --image REF \"<query>\"), or give the skill as \
         local files (python3 server.py beside a requirements.txt or pyproject.toml, node \
         server.js beside a package.json) with --standalone-base IMAGE naming a base that has \
         the system packages it needs"
    )]
    OwnRecipe {
        /// The service of the image.
        service: String,
    },
    /// The plan's images need different bases and none was chosen.
    #[error(
        "the skills need different base images: {bases}. A standalone image has one base: pass \
         --standalone-base IMAGE naming an image that has every runtime they need (e.g. Node \
         with python3 and python3-venv)"
    )]
    SeveralBases {
        /// Each base with the services that need it.
        bases: String,
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
    /// Two skills' own folders would be one.
    #[error(
        "{first} and {second} would share the folder {root} in the standalone image; rename one \
         of the skills"
    )]
    SharedRoot {
        /// The folder.
        root: String,
        /// The services of the two images.
        first: String,
        /// The other.
        second: String,
    },
    /// The manifest could not be serialized.
    #[error("cannot write the version's manifest: {0}")]
    Manifest(#[from] serde_json::Error),
}

/// The base of the standalone image: `chosen` (`--standalone-base`), else the one base the plan's
/// images other than `scratch` share, else `scratch`.
pub(crate) fn choose_base(
    plan: &RunPlan,
    chosen: Option<&str>,
) -> Result<String, StandaloneImageError> {
    refuse_own_recipes(plan)?;
    if let Some(chosen) = chosen {
        return Ok(chosen.to_string());
    }
    let mut bases: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for image in plan.images.iter().filter(|i| !i.is_scratch()) {
        bases.entry(&image.base).or_default().push(&image.service);
    }
    match bases.len() {
        0 => Ok("scratch".to_string()),
        1 => Ok(bases.keys().map(|b| b.to_string()).collect()),
        _ => Err(StandaloneImageError::SeveralBases {
            bases: bases
                .iter()
                .map(|(base, services)| format!("`{base}` ({})", services.join(", ")))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The one image holding the plan's images on `base` ([`choose_base`]), tagged
/// `perstack-sandbox/standalone-<expert>`.
pub(crate) fn standalone_image(
    plan: &RunPlan,
    manifest: &Manifest,
    base: &str,
) -> Result<ImageSpec, StandaloneImageError> {
    let mut labels_map = manifest.labels()?;
    labels_map.insert(labels::STANDALONE_BASE.to_string(), base.to_string());
    let Merged { files, install } = merge(plan, base)?;
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
    // Which executable the plan's images carry, and its build: the one copied in here.
    let carried = [labels::EXECUTABLE, labels::BUILD].map(|key| {
        plan.images
            .iter()
            .find_map(|image| image.labels.get_key_value(key))
    });
    image_labels.extend(
        carried
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    image_labels.extend(labels_map);
    image_labels.insert(labels::STANDALONE.to_string(), "true".to_string());
    let mut env = vec![("HOME".to_string(), "/tmp".to_string())];
    if base == "scratch" {
        // A real base keeps its own PATH (its interpreters' folders).
        env.insert(0, ("PATH".to_string(), SCRATCH_PATH.to_string()));
    }
    Ok(ImageSpec {
        role: ImageRole::Runtime,
        service: "standalone".into(),
        repository: format!("perstack-sandbox/standalone-{}", slug(&manifest.expert)),
        base: base.to_string(),
        files,
        config: ImageConfig {
            env,
            // Root, so that the supervisor can give each principal a uid of its own; it drops
            // every capability for each of them.
            user: None,
            workdir: None,
            entrypoint: vec![BINARY_PATH.to_string(), "standalone".to_string()],
        },
        labels: image_labels,
        install,
        recipe: None,
    })
}

/// The plan's images as one: their files by path (with the service they came from), each
/// skill's under its own folder, and their install stages, installing there.
struct Merged {
    files: BTreeMap<String, (String, ContextFile)>,
    install: Vec<InstallStage>,
}

fn merge(plan: &RunPlan, base: &str) -> Result<Merged, StandaloneImageError> {
    let mut merged = Merged {
        files: BTreeMap::new(),
        install: Vec::new(),
    };
    refuse_own_recipes(plan)?;
    let mut roots: BTreeMap<String, &str> = BTreeMap::new();
    for image in &plan.images {
        let root = skill_root::own_folder(image);
        if let Some(root) = &root
            && let Some(first) = roots.insert(root.clone(), &image.service)
        {
            return Err(StandaloneImageError::SharedRoot {
                root: root.clone(),
                first: first.to_string(),
                second: image.service.clone(),
            });
        }
        let moved = |path: &str| match &root {
            Some(root) => skill_root::relocate(path, root),
            None => path.to_string(),
        };
        for file in &image.files {
            let file = ContextFile {
                path: moved(&file.path),
                ..file.clone()
            };
            add_file(&mut merged.files, &image.service, file)?;
        }
        merged
            .install
            .extend(image.install.iter().map(|stage| InstallStage {
                install: crate::sandbox::packages::Install {
                    packages: stage.install.packages.iter().map(|p| moved(p)).collect(),
                    ..stage.install.clone()
                },
                local_files: stage.local_files.iter().map(|p| moved(p)).collect(),
                prefix: moved(&stage.prefix),
                ..stage.clone()
            }));
    }
    // The images' `hosts: files` would keep the proxy, the one principal that resolves names,
    // from asking the container's resolver; the others cannot (no UDP socket) and fail at once.
    merged.files.remove(NSSWITCH_PATH);
    if base != "scratch" {
        for path in PASSWD_PATHS {
            merged.files.remove(path);
        }
    }
    Ok(merged)
}

/// A skill built from its own Dockerfile cannot be part of a standalone image (the error says
/// why); its recipe's image is no base to choose either.
fn refuse_own_recipes(plan: &RunPlan) -> Result<(), StandaloneImageError> {
    match plan.images.iter().find(|image| image.recipe.is_some()) {
        Some(image) => Err(StandaloneImageError::OwnRecipe {
            service: image.service.clone(),
        }),
        None => Ok(()),
    }
}

/// Adds `file` of `service`'s image, unless another image has the same file there already.
fn add_file(
    files: &mut BTreeMap<String, (String, ContextFile)>,
    service: &str,
    file: ContextFile,
) -> Result<(), StandaloneImageError> {
    match files.get(&file.path) {
        Some((first, kept)) if kept.contents != file.contents => {
            Err(StandaloneImageError::Conflict {
                path: file.path.clone(),
                first: first.clone(),
                second: service.to_string(),
            })
        }
        Some(_) => Ok(()),
        None => {
            files.insert(file.path.clone(), (service.to_string(), file));
            Ok(())
        }
    }
}
