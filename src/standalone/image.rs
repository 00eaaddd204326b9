//! The standalone image (`build --standalone`): every file of every image of the plan on one
//! base — our binary (root-owned, mode 0111, so the processes it becomes stay non-dumpable), the
//! runtime spec, the CA bundle, the version's manifest at [`MANIFEST_PATH`] — with the
//! supervisor as ENTRYPOINT and the version's labels.
//!
//! Skills whose commands fetch packages (`uvx`, `npx`) get them at build time as in their own
//! images, one install stage per skill, each installing into the skill's own folder
//! ([`skill_root`]) so that no two skills share a file. A skill's local files (and the
//! dependencies their manifest names, installed the same way) go into that folder too. A skill
//! built from its own Dockerfile gets the recipe image's whole root filesystem there
//! (`<own folder>/rootfs`, copied from the recipe's image by the build) with what its own image
//! adds on top (our binary, mode 0711; the CA bundle), and the recipe image's variables and
//! working directory recorded in the manifest ([`RecipeRoot`]): the supervisor runs it in that
//! root (`chroot`, see `confine::apply`). Such a skill granted the workspace instead runs in the
//! container's own root ([`recipe_base`]): the standalone image is built `FROM` its recipe's
//! image, so the recipe's files are at their real paths and everything else goes on top. Else
//! the base is the one the other skills' images would have had ([`choose_base`]): `scratch` when
//! no image of the plan needs one.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{MANIFEST_PATH, skill_root};

/// The name-service configuration of our other images (`images/nsswitch.conf`).
const NSSWITCH_PATH: &str = "/etc/nsswitch.conf";
/// Our users and groups for `scratch` images; a real base keeps its own.
const PASSWD_PATHS: [&str; 2] = ["/etc/passwd", "/etc/group"];
use crate::contract::paths::WORKSPACE_MOUNT;
use crate::contract::paths::{BINARY_PATH, SCRATCH_PATH};
use crate::sandbox::engine::docker::ImageEnv;
use crate::sandbox::images::user_recipe::UserRecipe;
use crate::sandbox::images::{
    ContextFile, CopiedRoot, ImageConfig, ImageRole, ImageSpec, InstallStage, base_labels, slug,
};
use crate::sandbox::labels;
use crate::sandbox::plan::{MountSource, RunPlan};
use crate::sandbox::versioned::Manifest;

/// Why a plan cannot become one standalone image.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneImageError {
    /// A skill built from its own Dockerfile whose command installs packages at build time.
    #[error(
        "{service} is built from its own Dockerfile and its command fetches packages (npx, \
         packageName), which a standalone image installs on its own base, not in the recipe's \
         root: install them in the Dockerfile (RUN npm install -g …, RUN pip install …) and \
         name the installed program as the command, or run this Expert in the multi-container \
         mode (perstack-sandbox build --tag REF, then perstack-sandbox run --image REF \
         \"<query>\")"
    )]
    RecipeInstall {
        /// The service of the image.
        service: String,
    },
    /// Two skills built from their own Dockerfile are granted the workspace: each would be the
    /// image's base.
    #[error(
        "{first} and {second} are both built from their own Dockerfile and granted the workspace \
         ([sandbox.skills] workspace). A standalone image runs such a skill in the container's \
         own root, built FROM its recipe, and an image has one base: drop one's grant, or run \
         this Expert in the multi-container mode (perstack-sandbox build --tag REF, then \
         perstack-sandbox run --image REF \"<query>\")"
    )]
    TwoRecipeBases {
        /// The service of one.
        first: String,
        /// The other's.
        second: String,
    },
    /// `--standalone-base` given while a recipe is the base.
    #[error(
        "--standalone-base {chosen} cannot be used: {service} is built from its own Dockerfile \
         and granted the workspace, so its recipe is the standalone image's base. Leave out \
         --standalone-base (the other skills' runtimes must then be in that recipe), or drop \
         the skill's grant"
    )]
    BaseChosenTwice {
        /// The recipe's service.
        service: String,
        /// The base given.
        chosen: String,
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

/// The base of the standalone image: the recipe of the skill built from its own Dockerfile that
/// is granted the workspace ([`recipe_base`]), else `chosen` (`--standalone-base`), else the one
/// base the plan's images other than `scratch` share, else `scratch`.
pub(crate) fn choose_base(
    plan: &RunPlan,
    chosen: Option<&str>,
) -> Result<String, StandaloneImageError> {
    check_recipes(plan)?;
    if let Some((service, recipe)) = recipe_base(plan)? {
        return match chosen {
            Some(chosen) => Err(StandaloneImageError::BaseChosenTwice {
                service: service.to_string(),
                chosen: chosen.to_string(),
            }),
            None => Ok(recipe.tag()),
        };
    }
    if let Some(chosen) = chosen {
        return Ok(chosen.to_string());
    }
    let mut bases: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    // A recipe's image is the root of its own skill, no base for the others.
    let shared = |i: &&ImageSpec| !i.is_scratch() && i.recipe.is_none();
    for image in plan.images.iter().filter(shared) {
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

/// The skill built from its own Dockerfile that is granted the workspace, with its recipe: it
/// runs in the container's own root, so its recipe is the standalone image's base (a chroot
/// could reach the workspace only through a bind mount, which no process of a standalone image
/// may make). At most one: an image has one base.
pub(crate) fn recipe_base(
    plan: &RunPlan,
) -> Result<Option<(&str, &UserRecipe)>, StandaloneImageError> {
    let granted: Vec<(&str, &UserRecipe)> = plan
        .skills
        .iter()
        .filter_map(|container| {
            let recipe = plan.images.get(container.image)?.recipe.as_ref()?;
            let mounted = container.mounts.iter().any(|m| {
                m.target == WORKSPACE_MOUNT && matches!(m.source, MountSource::Bind { .. })
            });
            mounted.then_some((container.service.as_str(), recipe))
        })
        .collect();
    match granted.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        [(first, _), (second, _), ..] => Err(StandaloneImageError::TwoRecipeBases {
            first: first.to_string(),
            second: second.to_string(),
        }),
    }
}

/// What the supervisor needs to run a skill built from its own Dockerfile in its root: recorded
/// at build time in the manifest ([`labels::STANDALONE_ROOTS`]), since it has no engine to ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecipeRoot {
    /// The root in the standalone image: `<the skill's own folder>/rootfs`, entered with
    /// `chroot`; or [`CONTAINER_ROOT`] when the recipe is the image's base ([`recipe_base`]):
    /// its files are at their real paths and it runs in the container's own root.
    pub path: String,
    /// The skill host's command line as in the skill's own image (paths inside the root).
    pub entrypoint: Vec<String>,
    /// The recipe image's variables (its `ENV`, `PATH` among them), then the skill image's.
    pub env: Vec<(String, String)>,
    /// The recipe image's working directory (`/` when it sets none).
    pub workdir: String,
}

/// The [`RecipeRoot::path`] of a skill whose recipe is the standalone image's base.
pub(crate) const CONTAINER_ROOT: &str = "/";

impl RecipeRoot {
    /// It runs in the container's own root (its recipe is the image's base), not a chroot.
    pub(crate) fn is_container_root(&self) -> bool {
        self.path == CONTAINER_ROOT
    }
}

/// Each recipe skill's [`RecipeRoot`], by service (`skill:<name>`).
pub(crate) type RecipeRoots = BTreeMap<String, RecipeRoot>;

/// The recipes of the plan's skills built from their own Dockerfile, by service: built (and
/// their images' configs read) before the standalone image.
pub(crate) fn recipes(plan: &RunPlan) -> Vec<(&str, &UserRecipe)> {
    plan.images
        .iter()
        .filter_map(|image| Some((image.service.as_str(), image.recipe.as_ref()?)))
        .collect()
}

/// The one image holding the plan's images on `base`, as [`choose_base`] gives it (the recipe
/// of a Dockerfile skill granted the workspace, when there is one), tagged
/// `perstack-sandbox/standalone-<expert>`; `configs` are the recipes' images' configs, by
/// service ([`recipes`]). A recipe's `ENTRYPOINT`, `CMD` and `USER` are not used, as in the
/// multi-container mode: the skill's command comes from perstack.toml and it runs as a uid of
/// its own.
pub(crate) fn standalone_image(
    plan: &RunPlan,
    manifest: &Manifest,
    base: &str,
    configs: &BTreeMap<String, ImageEnv>,
) -> Result<ImageSpec, StandaloneImageError> {
    let recipe_base = recipe_base(plan)?;
    let based = recipe_base.map(|(service, _)| service);
    let mut labels_map = manifest.labels()?;
    labels_map.insert(labels::STANDALONE_BASE.to_string(), base.to_string());
    let Merged {
        files,
        install,
        roots,
    } = merge(plan, base, based)?;
    let recorded = recipe_roots(plan, configs, based);
    if !recorded.is_empty() {
        labels_map.insert(
            labels::STANDALONE_ROOTS.to_string(),
            serde_json::to_string(&recorded)?,
        );
    }
    let mut files: Vec<ContextFile> = files.into_values().map(|(_, f)| f).collect();
    for file in &mut files {
        if file.path == BINARY_PATH {
            // Executable but unreadable to every principal, uid 0 without capabilities (root's
            // own bits) included: the kernel keeps a process of an unreadable program
            // non-dumpable across execve. On a read-only root it stays so (`settle::Need`).
            file.mode = EXEC_ONLY_MODE;
        }
    }
    files.push(ContextFile {
        path: MANIFEST_PATH.into(),
        mode: 0o644,
        contents: Bytes::from(serde_json::to_vec_pretty(&labels_map)?),
    });
    let image_labels = image_labels(plan, labels_map);
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
            // every capability for each of them. A recipe as the base may name another user.
            user: recipe_base.map(|_| "0:0".to_string()),
            workdir: None,
            entrypoint: vec![BINARY_PATH.to_string(), "standalone".to_string()],
        },
        labels: image_labels,
        install,
        // Built before this image when its tag is missing.
        recipe: recipe_base.map(|(_, recipe)| recipe.clone()),
        roots,
    })
}

/// The image's labels: a runtime image's, the executable and build the plan's images carry (the
/// one copied in here), the version's (`manifest`), and [`labels::STANDALONE`].
fn image_labels(plan: &RunPlan, manifest: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut image_labels = base_labels(ImageRole::Runtime);
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
    image_labels.extend(manifest);
    image_labels.insert(labels::STANDALONE.to_string(), "true".to_string());
    image_labels
}

/// The [`RecipeRoot`] of each recipe skill: its image's command line, the recipe image's
/// variables before its image's own, the recipe's working directory; `based` is the service
/// whose recipe is the image's base ([`recipe_base`]), run in the container's root.
fn recipe_roots(
    plan: &RunPlan,
    configs: &BTreeMap<String, ImageEnv>,
    based: Option<&str>,
) -> RecipeRoots {
    plan.images
        .iter()
        .filter(|image| image.recipe.is_some())
        .filter_map(|image| {
            let root = skill_root::root(&image.service)?;
            let config = configs.get(&image.service).cloned().unwrap_or_default();
            let recorded = RecipeRoot {
                path: match based == Some(image.service.as_str()) {
                    true => CONTAINER_ROOT.to_string(),
                    false => format!("{root}/{ROOTFS}"),
                },
                entrypoint: image.config.entrypoint.clone(),
                env: config
                    .env
                    .into_iter()
                    .chain(image.config.env.clone())
                    .collect(),
                workdir: config
                    .workdir
                    .filter(|w| w.starts_with('/'))
                    .unwrap_or_else(|| "/".to_string()),
            };
            Some((image.service.clone(), recorded))
        })
        .collect()
}

/// The folder of a recipe skill's root, inside its own folder.
const ROOTFS: &str = "rootfs";

/// The plan's images as one: their files by path (with the service they came from), each
/// skill's under its own folder, and their install stages, installing there.
struct Merged {
    files: BTreeMap<String, (String, ContextFile)>,
    install: Vec<InstallStage>,
    roots: Vec<CopiedRoot>,
}

/// `based`: the service whose recipe is the image's base ([`recipe_base`]); its image's files go
/// to their own paths, its recipe's are there already.
fn merge(plan: &RunPlan, base: &str, based: Option<&str>) -> Result<Merged, StandaloneImageError> {
    let mut merged = Merged {
        files: BTreeMap::new(),
        install: Vec::new(),
        roots: Vec::new(),
    };
    check_recipes(plan)?;
    let mut roots: BTreeMap<String, &str> = BTreeMap::new();
    for image in &plan.images {
        if let (Some(recipe), false) = (&image.recipe, based == Some(image.service.as_str())) {
            let root = skill_root::root(&image.service).unwrap_or_default();
            if let Some(first) = roots.insert(root.clone(), &image.service) {
                return Err(StandaloneImageError::SharedRoot {
                    root,
                    first: first.to_string(),
                    second: image.service.clone(),
                });
            }
            merge_recipe(&mut merged, image, recipe, &format!("{root}/{ROOTFS}"))?;
            continue;
        }
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

/// Our binary's mode in the image: execute only, for its owner (root) too.
pub(crate) const EXEC_ONLY_MODE: u32 = 0o111;

/// A recipe skill's image in the standalone image: the recipe's root copied to `rootfs`, and its
/// own image's files (our binary — mode 0711, so the skill host stays non-dumpable —, the CA
/// bundle, `nsswitch.conf`) at their paths inside it.
fn merge_recipe(
    merged: &mut Merged,
    image: &ImageSpec,
    recipe: &UserRecipe,
    rootfs: &str,
) -> Result<(), StandaloneImageError> {
    merged.roots.push(CopiedRoot {
        recipe: recipe.clone(),
        into: rootfs.to_string(),
    });
    for file in &image.files {
        let file = ContextFile {
            path: format!("{rootfs}{}", file.path),
            mode: if file.path == BINARY_PATH {
                0o711
            } else {
                file.mode
            },
            contents: file.contents.clone(),
        };
        add_file(&mut merged.files, &image.service, file)?;
    }
    Ok(())
}

/// What a standalone image cannot do for a skill built from its own Dockerfile (the error says
/// why): install its command's packages.
fn check_recipes(plan: &RunPlan) -> Result<(), StandaloneImageError> {
    match plan
        .images
        .iter()
        .find(|i| i.recipe.is_some() && !i.install.is_empty())
    {
        Some(image) => Err(StandaloneImageError::RecipeInstall {
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
