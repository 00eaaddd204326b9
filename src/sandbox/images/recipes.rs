//! What each of our images holds: our binary (the ENTRYPOINT of every role) and, on `scratch`,
//! `passwd`/`group`, `PATH` and `HOME`; the runtime's spec; a skill's installed packages; the
//! user each runs as; a skill's own files from the config's folder. Images of containers that talk TLS at run time — the runtime when it
//! reaches out, skills with `allowedDomains` — carry the chosen CA bundle and the variables
//! that point common TLS stacks at it. Every image but the egress proxy's has an
//! `nsswitch.conf` that takes names from `/etc/hosts` alone (their containers have no resolver).
//! Images are deduplicated by value, so two containers with the same recipe share one image.

use bytes::Bytes;

use super::base::{SkillBase, skill_base_image};
use super::user_recipe::UserRecipe;
use super::{ContextFile, ImageConfig, ImageRole, ImageSpec, InstallStage, base_labels, slug};
use crate::config::{Config, McpStdioSkill};
use crate::contract::paths::{
    BINARY_PATH, CA_BUNDLE_PATH, CA_BUNDLE_VARIABLES, SCRATCH_PATH, SKILL_SOCKET_DIR, SOCKET_FILE,
    SPEC_PATH, WORKSPACE_MOUNT,
};
use crate::contract::spec::RuntimeSpec;
use crate::contract::users::{PROXY_UID, RUNTIME_GID, RUNTIME_UID, SKILL_UID};
use crate::sandbox::skill_files::{SkillFiles, image_path};
use crate::sandbox::{egress, labels, packages};

/// Files the images are made of, read once per run. The default is none at all, for plans
/// whose images are never built (a versioned image's, the standalone supervisor's).
#[derive(Debug, Clone, Default)]
pub(crate) struct Artifacts {
    /// Our own static executable: the roles executable of this build, or the controller itself
    /// (`commands/image_executable.rs`).
    pub binary: Bytes,
    /// Which of the two `binary` is, recorded on every image that carries it.
    pub executable: Executable,
    /// The chosen CA bundle (PEM; `[sandbox] caCertificates`, the host's by default): what
    /// containers that talk TLS trust, and package installs at build time. Empty: none.
    pub ca_bundle: Bytes,
}

/// Which of a build's two executables an image carries (its [`labels::EXECUTABLE`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Executable {
    /// `perstack-sandbox-roles`: the in-container roles alone.
    #[default]
    Roles,
    /// `perstack-sandbox`, the controller, which plays every role too: what images get when no
    /// roles executable of the same build is beside it.
    Whole,
}

impl Executable {
    /// Its file name, the label's value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Executable::Roles => crate::contract::build_id::ROLES_EXECUTABLE,
            Executable::Whole => "perstack-sandbox",
        }
    }
}

/// The labels of an image that carries our binary: [`base_labels`], which executable it is, and
/// the build both of that build's executables carry.
pub(crate) fn binary_labels(
    role: ImageRole,
    executable: Executable,
) -> std::collections::BTreeMap<String, String> {
    let mut map = base_labels(role);
    map.insert(
        labels::EXECUTABLE.to_string(),
        executable.name().to_string(),
    );
    map.insert(
        labels::BUILD.to_string(),
        crate::contract::build_id::BUILD_ID.to_string(),
    );
    map
}

/// Where an image's name-service configuration is.
const NSSWITCH_PATH: &str = "/etc/nsswitch.conf";

/// `hosts: files` and nothing else that could ask a name server (images/nsswitch.conf): in a
/// container without a resolver a lookup then fails in microseconds instead of waiting out the
/// resolver's timeouts (~10 s on an internal network). Read by glibc and Go; musl (Alpine)
/// ignores it.
fn nsswitch_file() -> ContextFile {
    ContextFile {
        path: NSSWITCH_PATH.into(),
        mode: 0o644,
        contents: Bytes::from_static(include_bytes!("../../../images/nsswitch.conf")),
    }
}

/// For an image whose containers talk TLS at run time: the CA bundle at [`CA_BUNDLE_PATH`] and
/// every variable of [`CA_BUNDLE_VARIABLES`] pointing at it. Nothing when there is no bundle.
fn trusted_ca(
    artifacts: &Artifacts,
    files: &mut Vec<ContextFile>,
    env: &mut Vec<(String, String)>,
) {
    if artifacts.ca_bundle.is_empty() {
        return;
    }
    files.push(ContextFile {
        path: CA_BUNDLE_PATH.into(),
        mode: 0o644,
        contents: artifacts.ca_bundle.clone(),
    });
    env.extend(
        CA_BUNDLE_VARIABLES
            .iter()
            .map(|name| (name.to_string(), CA_BUNDLE_PATH.to_string())),
    );
}

/// `/etc/passwd` and `/etc/group` for `scratch` images: the runtime and skill users
/// (images/passwd, images/group).
pub(crate) fn passwd_files() -> Vec<ContextFile> {
    vec![
        ContextFile {
            path: "/etc/passwd".into(),
            mode: 0o644,
            contents: Bytes::from_static(include_bytes!("../../../images/passwd")),
        },
        ContextFile {
            path: "/etc/group".into(),
            mode: 0o644,
            contents: Bytes::from_static(include_bytes!("../../../images/group")),
        },
    ]
}

/// Our binary.
fn binary_file(artifacts: &Artifacts) -> ContextFile {
    ContextFile {
        path: BINARY_PATH.into(),
        mode: 0o755,
        contents: artifacts.binary.clone(),
    }
}

/// `PATH` and `HOME` for images on `scratch`, which has neither; a real base keeps its own.
fn scratch_env(base: &str) -> Vec<(String, String)> {
    if base == "scratch" {
        vec![
            ("PATH".to_string(), SCRATCH_PATH.to_string()),
            ("HOME".to_string(), "/tmp".to_string()),
        ]
    } else {
        vec![]
    }
}

/// Our binary and `nsswitch.conf`, plus `passwd`/`group` when the base has none.
fn binary_files(base: &str, artifacts: &Artifacts) -> Vec<ContextFile> {
    let mut files = vec![binary_file(artifacts), nsswitch_file()];
    if base == "scratch" {
        files.extend(passwd_files());
    }
    files
}

/// The runtime: our binary and the Expert's spec on `scratch`, as the runtime user, with the CA
/// bundle when it talks TLS (`reaches_out`: a networked provider or an `mcpSseSkill`);
/// labelled with the Expert and its version.
pub(crate) fn runtime_image(
    config: &Config,
    expert_key: &str,
    spec: &RuntimeSpec,
    artifacts: &Artifacts,
    reaches_out: bool,
) -> Result<ImageSpec, serde_json::Error> {
    let mut files = binary_files("scratch", artifacts);
    files.push(ContextFile {
        path: SPEC_PATH.into(),
        mode: 0o644,
        contents: Bytes::from(serde_json::to_vec_pretty(spec)?),
    });
    let mut env = scratch_env("scratch");
    if reaches_out {
        trusted_ca(artifacts, &mut files, &mut env);
    }
    let mut labels = binary_labels(ImageRole::Runtime, artifacts.executable);
    if let Some(expert) = config.experts.get(expert_key) {
        labels.insert(labels::EXPERT.to_string(), expert.key.clone());
        labels.insert(labels::EXPERT_VERSION.to_string(), expert.version.clone());
    }
    Ok(ImageSpec {
        role: ImageRole::Runtime,
        service: "runtime".into(),
        repository: format!("perstack-sandbox/runtime-{}", slug(expert_key)),
        base: "scratch".into(),
        files,
        config: ImageConfig {
            env,
            user: Some(format!("{RUNTIME_UID}:{RUNTIME_GID}")),
            workdir: None,
            entrypoint: vec![BINARY_PATH.to_string(), "runtime".to_string()],
        },
        labels,
        install: vec![],
        recipe: None,
        roots: vec![],
    })
}

/// `doctor`'s probe containers: our binary on `scratch` with the `engine-probe` role, the user
/// set per container.
pub(crate) fn doctor_probe_image(artifacts: &Artifacts) -> ImageSpec {
    let mut files = vec![binary_file(artifacts)];
    files.extend(passwd_files());
    ImageSpec {
        role: ImageRole::Runtime,
        service: "doctor".into(),
        repository: "perstack-sandbox/doctor-probe".into(),
        base: "scratch".into(),
        files,
        config: ImageConfig {
            env: scratch_env("scratch"),
            user: None,
            workdir: None,
            entrypoint: vec![BINARY_PATH.to_string(), "engine-probe".to_string()],
        },
        labels: binary_labels(ImageRole::Runtime, artifacts.executable),
        install: vec![],
        recipe: None,
        roots: vec![],
    }
}

/// The egress proxy: our binary on `scratch`, nothing else. It needs no CA bundle (it never
/// looks inside TLS) and keeps the default name service: it is the one container of a run that
/// resolves names, through the default bridge's resolver.
pub(crate) fn proxy_image(artifacts: &Artifacts) -> ImageSpec {
    let mut files = vec![binary_file(artifacts)];
    files.extend(passwd_files());
    ImageSpec {
        role: ImageRole::EgressProxy,
        service: "egress-proxy".into(),
        repository: "perstack-sandbox/egress-proxy".into(),
        base: "scratch".into(),
        files,
        config: ImageConfig {
            env: scratch_env("scratch"),
            user: Some(format!("{PROXY_UID}:{PROXY_UID}")),
            workdir: None,
            entrypoint: vec![BINARY_PATH.to_string(), "egress-proxy".to_string()],
        },
        labels: binary_labels(ImageRole::EgressProxy, artifacts.executable),
        install: vec![],
        recipe: None,
        roots: vec![],
    }
}

/// The skill host, PID 1 of every skill container, listening on the skill's socket: the start
/// of a skill image's ENTRYPOINT, before its `--pass-env` options and `-- <server command>`.
fn skill_host() -> Vec<String> {
    vec![
        BINARY_PATH.to_string(),
        "skill-host".to_string(),
        "--socket".to_string(),
        format!("{SKILL_SOCKET_DIR}/{SOCKET_FILE}"),
    ]
}

/// The base-skill server's command and arguments: what the skill host starts in base-skill's
/// image, and what the runtime reports it runs (`skillStarting`).
pub(crate) fn base_skill_command() -> (String, Vec<String>) {
    (
        BINARY_PATH.to_string(),
        vec![
            "base-skill".to_string(),
            "--workspace".to_string(),
            WORKSPACE_MOUNT.to_string(),
        ],
    )
}

/// A stdio skill's image: its base, our binary as the skill host (ENTRYPOINT), and — for commands
/// that fetch packages (`uvx`, `npx`, …) — those packages, installed while the image is built,
/// with the skill host starting the installed program instead (`packages.rs`). A skill with
/// local files (`files`, from `sandbox::skill_files`) has them under [`SKILL_FILES_DIR`], works in
/// their folder and runs the command rewritten to them, with its folder's manifest installed. A
/// skill with `allowedDomains` talks TLS through the proxy: its image carries the CA bundle too.
pub(crate) fn skill_image(
    config: &Config,
    skill: &McpStdioSkill,
    local: Option<&SkillFiles>,
    artifacts: &Artifacts,
) -> ImageSpec {
    let recipe = local.and_then(|l| user_recipe(skill, l));
    let base = match &recipe {
        Some(recipe) => recipe.tag(),
        None => skill_base_image(config, skill).unwrap_or_else(|| "scratch".to_string()),
    };
    let prepared = prepared_command(skill, local);
    let run_env = prepared
        .install
        .as_ref()
        .map(|install| install.run_env(crate::contract::paths::INSTALL_PREFIX))
        .unwrap_or_default();
    let entrypoint = skill_entrypoint(skill, recipe.as_ref(), &prepared, &run_env);
    let (mut env, files) = skill_contents(skill, &base, local, recipe.is_none(), artifacts);
    env.extend(run_env);
    ImageSpec {
        role: ImageRole::Skill,
        service: format!("skill:{}", skill.name),
        repository: format!("perstack-sandbox/skill-{}", slug(&skill.name)),
        files,
        config: ImageConfig {
            env,
            user: Some(format!("{SKILL_UID}:{SKILL_UID}")),
            workdir: skill_workdir(config, skill, local),
            entrypoint,
        },
        install: Vec::from_iter(
            prepared
                .install
                .map(|install| install_stage(config, install, local, artifacts)),
        ),
        base,
        labels: binary_labels(ImageRole::Skill, artifacts.executable),
        recipe,
        roots: vec![],
    }
}

/// Where a skill's server starts: the folder of its local files (a recipe's own `WORKDIR` when
/// it has one); else, when it is granted the workspace, `/workspace` — where Perstack's would
/// start, in the folder it runs in, so `--db-path notes.db` lands in the workspace rather than
/// on the read-only root; else the base image's.
fn skill_workdir(
    config: &Config,
    skill: &McpStdioSkill,
    local: Option<&SkillFiles>,
) -> Option<String> {
    if let Some(local) = local {
        return local.workdir.clone();
    }
    config
        .sandbox
        .skills
        .get(&skill.name)
        .and_then(|s| s.workspace)
        .map(|_| WORKSPACE_MOUNT.to_string())
}

/// What the skill host starts, and what is installed for it: the local files' command, else
/// the skill's own, prepared (`packages.rs`).
fn prepared_command(skill: &McpStdioSkill, local: Option<&SkillFiles>) -> packages::Prepared {
    match local {
        Some(local) => packages::Prepared {
            install: local.install.clone(),
            command: local.command.clone(),
            args: local.args.clone(),
        },
        // Preflight refuses a command that cannot be prepared, before any plan is made; a
        // caller that skipped it gets the command as written, which fails at start with its
        // own error.
        None => packages::prepare(skill).unwrap_or_else(|_| packages::Prepared {
            install: None,
            command: skill.command.clone(),
            args: skill.argv(),
        }),
    }
}

/// The skill host, the variables it passes on to the server (the skill's, the recipe's own, the
/// installed program's `run_env`, the proxy's for a skill with `allowedDomains`), then `--` and
/// the server's command line.
fn skill_entrypoint(
    skill: &McpStdioSkill,
    recipe: Option<&UserRecipe>,
    prepared: &packages::Prepared,
    run_env: &[(String, String)],
) -> Vec<String> {
    let mut entrypoint = skill_host();
    for name in skill
        .required_env
        .iter()
        .chain(run_env.iter().map(|(n, _)| n))
    {
        entrypoint.extend(["--pass-env".to_string(), name.clone()]);
    }
    for name in recipe.iter().flat_map(|r| r.env_names()) {
        entrypoint.extend(["--pass-env".to_string(), name]);
    }
    // The proxy settings reach the server only where the plan sets them (skills with
    // `allowedDomains`); elsewhere these names are unset and pass nothing.
    if !skill.allowed_domains.is_empty() {
        for (name, _) in egress::proxy_env(SkillBase::of(&skill.command) == SkillBase::Node) {
            entrypoint.extend(["--pass-env".to_string(), name]);
        }
    }
    entrypoint.push("--".to_string());
    entrypoint.push(prepared.command.clone());
    entrypoint.extend(prepared.args.iter().cloned());
    entrypoint
}

/// A skill image's environment and files on `base`: our binary, the CA bundle for a skill with
/// `allowedDomains`, and (`copy_local`: unless a recipe's context holds them) its local files.
fn skill_contents(
    skill: &McpStdioSkill,
    base: &str,
    local: Option<&SkillFiles>,
    copy_local: bool,
    artifacts: &Artifacts,
) -> (Vec<(String, String)>, Vec<ContextFile>) {
    let mut env = scratch_env(base);
    if base != "scratch" {
        // The skill's user has no home in a real base and the root is read-only: interpreters
        // and their caches get the writable /tmp tmpfs.
        env.push(("HOME".to_string(), "/tmp".to_string()));
    }
    let mut files = binary_files(base, artifacts);
    if !skill.allowed_domains.is_empty() {
        trusted_ca(artifacts, &mut files, &mut env);
    }
    if copy_local {
        files.extend(local.iter().flat_map(|l| &l.files).map(|file| ContextFile {
            path: image_path(&file.relative),
            mode: file.mode,
            contents: file.contents.clone(),
        }));
    }
    (env, files)
}

/// The install stage of `install`: from the configured index, with the CA bundle and the
/// local files the install reads.
fn install_stage(
    config: &Config,
    install: packages::Install,
    local: Option<&SkillFiles>,
    artifacts: &Artifacts,
) -> InstallStage {
    InstallStage {
        index: match install.installer {
            packages::Installer::Npm | packages::Installer::NpmProject => {
                config.sandbox.npm_registry.clone()
            }
            packages::Installer::Pip | packages::Installer::Uv => {
                config.sandbox.pip_index_url.clone()
            }
        },
        install,
        ca_bundle: artifacts.ca_bundle.clone(),
        local_files: local
            .iter()
            .flat_map(|l| &l.install_files)
            .map(|f| image_path(f))
            .collect(),
        prefix: crate::contract::paths::INSTALL_PREFIX.to_string(),
    }
}

/// The user's recipe of a skill with a `dockerfile`: its folder's files, by path inside it.
fn user_recipe(skill: &McpStdioSkill, local: &SkillFiles) -> Option<UserRecipe> {
    let recipe = local.recipe.as_ref()?;
    let inside = |relative: &str| match recipe.context.as_str() {
        "" => relative.to_string(),
        context => relative
            .strip_prefix(context)
            .map_or(relative, |r| r.trim_start_matches('/'))
            .to_string(),
    };
    Some(UserRecipe {
        skill: skill.name.clone(),
        dockerfile: recipe.dockerfile.clone(),
        files: local
            .files
            .iter()
            .map(|file| ContextFile {
                path: inside(&file.relative),
                mode: file.mode,
                contents: file.contents.clone(),
            })
            .collect(),
    })
}

/// Base-skill: our binary on `[sandbox] workspaceImage` (else `scratch`), working in the
/// workspace; the user is set per container.
pub(crate) fn base_skill_image(config: &Config, artifacts: &Artifacts) -> ImageSpec {
    let base = config
        .sandbox
        .workspace_image
        .clone()
        .unwrap_or_else(|| "scratch".to_string());
    let mut env = scratch_env(&base);
    if base != "scratch" {
        // The root file system is read-only and the invoking user has no home in the image:
        // programs `exec` runs (git, pip, …) get the writable tmpfs as their home.
        env.push(("HOME".to_string(), "/tmp".to_string()));
    }
    let (command, args) = base_skill_command();
    let mut entrypoint = skill_host();
    entrypoint.push("--".to_string());
    entrypoint.push(command);
    entrypoint.extend(args);
    ImageSpec {
        role: ImageRole::BaseSkill,
        service: "base-skill".into(),
        repository: "perstack-sandbox/base-skill".into(),
        files: binary_files(&base, artifacts),
        config: ImageConfig {
            env,
            // The user is the invoking user's, set when the container is created.
            user: None,
            workdir: Some(WORKSPACE_MOUNT.to_string()),
            entrypoint,
        },
        base,
        labels: binary_labels(ImageRole::BaseSkill, artifacts.executable),
        install: vec![],
        recipe: None,
        roots: vec![],
    }
}
