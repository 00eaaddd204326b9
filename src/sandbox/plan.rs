//! Which images, volumes and containers one run needs, as pure data.
//!
//! `plan(&request)` does no I/O, so every isolation decision — who gets which variable, which
//! mount, which user, which network — is visible in a unit test (and pinned by snapshots).
//! `docker.rs` then applies the plan.
//!
//! Topology (DESIGN.md, "Per-run topology"):
//! - one skill container per stdio skill of every Expert in the delegation closure, with exactly
//!   its `requiredEnv`, no network, and a socket volume shared with the runtime alone;
//! - one base-skill container per Expert that has `@perstack/base`: the workspace mounted
//!   read-write, running as the invoking user, no secrets, no network;
//! - the runtime container: the provider key(s) and `--env` extras, every socket volume, no
//!   workspace, and network only when the provider needs it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use serde::Serialize;

use super::egress::{self, PrincipalPlan};
use super::images::{
    BINARY_PATH, CA_BUNDLE_PATH, ContextFile, ImageConfig, ImageRole, ImageSpec, InstallStage,
    SCRATCH_PATH, SPEC_PATH, base_labels, passwd_files, slug,
};
use super::labels;
use super::packages;
use crate::config::{Config, Limits, McpStdioSkill, ProviderName, RunSettings, Skill};
use crate::llm::mock::MockScript;
use crate::runtime::spec::{RuntimeSpec, SkillEndpoint};

/// The runtime's user inside its container.
pub const RUNTIME_UID: u32 = 10001;
/// The group of the runtime's user; owns every socket volume so the runtime can connect.
pub const RUNTIME_GID: u32 = 10001;
/// The user MCP skills run as.
pub const SKILL_UID: u32 = 10002;
/// The egress proxy's uid and gid (`nobody`): it owns nothing and needs nothing.
pub const PROXY_UID: u32 = 65534;
/// Where a skill container sees its socket volume.
pub const SKILL_SOCKET_DIR: &str = "/run/perstack/skill";
/// Where the runtime sees the socket volumes, one folder per skill.
pub const RUNTIME_SOCKETS_DIR: &str = "/run/perstack/skills";
/// Where base-skill sees the workspace.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// The workspace's run-data folder (checkpoints, jobs), which the controller alone writes.
/// Base-skill sees an empty read-only tmpfs there, so neither the tools nor `exec`'d programs
/// can read or change it.
pub const RESERVED_DIR: &str = "perstack";

/// Files the images are made of, read once per run.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// Our own static executable.
    pub binary: Bytes,
    /// The host's CA bundle (PEM), for the runtime's TLS.
    pub ca_bundle: Bytes,
}

/// Everything `plan` needs.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// This run.
    pub run_id: String,
    /// Its job.
    pub job_id: String,
    /// The Expert to run.
    pub expert_key: String,
    /// The user's query.
    pub query: String,
    /// The validated config.
    pub config: Config,
    /// Resolved settings.
    pub settings: RunSettings,
    /// The workspace on the Docker host (absolute, canonical).
    pub workspace: PathBuf,
    /// The invoking user (base-skill runs as them).
    pub user: (u32, u32),
    /// Environment for the runtime container: provider variables and `--env` extras.
    pub runtime_env: Vec<(String, String)>,
    /// The env map, where skills' `requiredEnv` values come from.
    pub env: BTreeMap<String, String>,
    /// The mock script, when the provider is `mock`.
    pub mock_script: Option<MockScript>,
    /// Binary and CA bundle.
    pub artifacts: Artifacts,
    /// Container limits.
    pub limits: Limits,
    /// The controller (`ControllerId` as a label value), recorded on containers for `gc`.
    pub controller: String,
    /// Continue from a stored checkpoint instead of starting afresh.
    pub resume: Option<Resume>,
}

/// What a continued run starts from (`--continue`, `--continue-job`, `--resume-from`, `-i`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The stored checkpoint, exactly as stored: written to the runtime's stdin.
    pub checkpoint_json: String,
    /// The answer to the checkpoint's pending tool call (`-i`).
    pub interactive_tool_call_result: Option<crate::event::InteractiveToolCallResult>,
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MountSource {
    /// A named volume of this run.
    Volume {
        /// Its name.
        name: String,
    },
    /// A host folder.
    Bind {
        /// The host path.
        host: String,
    },
    /// A small empty tmpfs, mounted read-only to hide what is below the mount point.
    EmptyTmpfs,
}

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPlan {
    /// What is mounted.
    pub source: MountSource,
    /// Where.
    pub target: String,
    /// Read-only?
    pub read_only: bool,
}

/// A per-run volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumePlan {
    /// Its name.
    pub name: String,
    /// `local` driver options (a tmpfs owned by the skill's user, group = the runtime's).
    pub driver_opts: BTreeMap<String, String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// The network a container joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NetworkPlan {
    /// No network at all.
    None,
    /// Docker's default bridge: only the egress proxy joins it.
    Bridge,
    /// One of the run's internal networks (no route out), shared only with the egress proxy.
    Internal(String),
}

impl NetworkPlan {
    /// Docker's `NetworkMode` value.
    pub fn mode(&self) -> &str {
        match self {
            NetworkPlan::None => "none",
            NetworkPlan::Bridge => "bridge",
            NetworkPlan::Internal(name) => name,
        }
    }
}

/// An internal network of the run (`internal: true`: no gateway out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalNetworkPlan {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// The egress proxy of a run: its container (on the default bridge; the controller connects it
/// to every internal network) and the principals it serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyPlan {
    /// The proxy container.
    pub container: ContainerPlan,
    /// Who may use it, and for what.
    pub principals: Vec<super::egress::PrincipalPlan>,
}

/// One container to create.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPlan {
    /// Container name.
    pub name: String,
    /// `runtime`, `skill:<name>` or `base-skill` (+ `:<expert>` when several Experts have one).
    pub service: String,
    /// Skill name, for `skillStderr` events.
    pub skill: Option<String>,
    /// Index into [`RunPlan::images`].
    pub image: usize,
    /// `uid:gid`.
    pub user: String,
    /// Environment, exactly.
    pub env: Vec<(String, String)>,
    /// Arguments after the image's ENTRYPOINT.
    pub cmd: Vec<String>,
    /// Mounts.
    pub mounts: Vec<MountPlan>,
    /// Network.
    pub network: NetworkPlan,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Limits.
    pub limits: Limits,
    /// What to write to the container's stdin (then close it); `None`: no stdin at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

impl ContainerPlan {
    /// Host folders that must exist before the container is created: mount points inside a
    /// bind-mounted host folder (the workspace's `perstack/`). Created by the controller, as the
    /// invoking user; Docker would otherwise create them as root.
    pub fn host_mount_points(&self) -> Vec<PathBuf> {
        let mut points = Vec::new();
        for inner in self
            .mounts
            .iter()
            .filter(|m| m.source == MountSource::EmptyTmpfs)
        {
            for outer in &self.mounts {
                let MountSource::Bind { host } = &outer.source else {
                    continue;
                };
                if let Ok(rel) = std::path::Path::new(&inner.target).strip_prefix(&outer.target) {
                    points.push(PathBuf::from(host).join(rel));
                }
            }
        }
        points
    }
}

/// Everything one run creates.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Images to find or build.
    pub images: Vec<ImageSpec>,
    /// Socket volumes.
    pub volumes: Vec<VolumePlan>,
    /// Skill containers (started first).
    pub skills: Vec<ContainerPlan>,
    /// The runtime container.
    pub runtime: ContainerPlan,
    /// The spec baked into the runtime image.
    pub spec: RuntimeSpec,
    /// Internal networks, one per principal of the egress proxy.
    pub networks: Vec<InternalNetworkPlan>,
    /// The egress proxy; `None` when nothing in the run may reach outside.
    pub proxy: Option<ProxyPlan>,
    /// `run --image`: the images exist already (or are pulled), one per entry of `images`;
    /// nothing is built.
    pub prebuilt: Option<Vec<super::versioned::PrebuiltImage>>,
}

/// Plans one run.
pub fn plan(request: &RunRequest) -> Result<RunPlan, serde_json::Error> {
    let config = &request.config;
    let short_run: String = request.run_id.chars().take(12).collect();
    let resource_labels = |role: &str, service: &str| {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::RUN_ID.to_string(), request.run_id.clone()),
            (labels::JOB_ID.to_string(), request.job_id.clone()),
            (labels::ROLE.to_string(), role.to_string()),
            (labels::SERVICE.to_string(), service.to_string()),
            (labels::CONTROLLER.to_string(), request.controller.clone()),
        ])
    };

    let closure = config.delegation_closure(&request.expert_key);
    let several = closure.len() > 1;
    let mut images: Vec<ImageSpec> = Vec::new();
    let mut image_index = |spec: ImageSpec| -> usize {
        if let Some(i) = images.iter().position(|s| *s == spec) {
            return i;
        }
        images.push(spec);
        images.len() - 1
    };
    let mut volumes = Vec::new();
    let mut skills = Vec::new();
    let mut networks: Vec<InternalNetworkPlan> = Vec::new();
    let mut principals: Vec<PrincipalPlan> = Vec::new();
    let mut endpoints = Vec::new();
    let mut runtime_mounts = Vec::new();

    for expert_key in &closure {
        let Some(expert) = config.experts.get(expert_key) else {
            continue;
        };
        for skill in expert.skills.values() {
            let Skill::McpStdio(stdio) = skill else {
                continue;
            };
            let index = skills.len();
            let base = stdio.is_base();
            let skill_slug = slug(&stdio.name);
            let dir = format!("{index}-{skill_slug}");
            let service = match (base, several) {
                (true, false) => "base-skill".to_string(),
                (true, true) => format!("base-skill:{expert_key}"),
                (false, false) => format!("skill:{}", stdio.name),
                (false, true) => format!("skill:{}:{expert_key}", stdio.name),
            };
            let volume_name = format!("psbx-{short_run}-{dir}");
            let (uid, gid) = if base {
                request.user
            } else {
                (SKILL_UID, SKILL_UID)
            };
            volumes.push(VolumePlan {
                name: volume_name.clone(),
                driver_opts: BTreeMap::from([
                    ("type".to_string(), "tmpfs".to_string()),
                    ("device".to_string(), "tmpfs".to_string()),
                    (
                        "o".to_string(),
                        format!("uid={uid},gid={RUNTIME_GID},mode=0750,size=1m"),
                    ),
                ]),
                labels: resource_labels("socket-volume", &service),
            });
            runtime_mounts.push(MountPlan {
                source: MountSource::Volume {
                    name: volume_name.clone(),
                },
                target: format!("{RUNTIME_SOCKETS_DIR}/{dir}"),
                read_only: false,
            });
            let mut mounts = vec![MountPlan {
                source: MountSource::Volume { name: volume_name },
                target: SKILL_SOCKET_DIR.to_string(),
                read_only: false,
            }];
            let (image, command, args, env, role) = if base {
                mounts.push(MountPlan {
                    source: MountSource::Bind {
                        host: request.workspace.display().to_string(),
                    },
                    target: WORKSPACE_MOUNT.to_string(),
                    read_only: false,
                });
                mounts.push(MountPlan {
                    source: MountSource::EmptyTmpfs,
                    target: format!("{WORKSPACE_MOUNT}/{RESERVED_DIR}"),
                    read_only: true,
                });
                (
                    base_skill_image(config, &request.artifacts),
                    BINARY_PATH.to_string(),
                    vec![
                        "base-skill".to_string(),
                        "--workspace".to_string(),
                        WORKSPACE_MOUNT.to_string(),
                    ],
                    vec![],
                    "base-skill",
                )
            } else {
                let env = stdio
                    .required_env
                    .iter()
                    .filter_map(|name| request.env.get(name).map(|v| (name.clone(), v.clone())))
                    .collect();
                (
                    skill_image(config, stdio, &request.artifacts),
                    stdio.command.clone(),
                    stdio.argv(),
                    env,
                    "skill",
                )
            };
            endpoints.push(SkillEndpoint {
                expert: expert_key.clone(),
                skill: stdio.name.clone(),
                socket: format!("{RUNTIME_SOCKETS_DIR}/{dir}/mcp.sock"),
                command,
                args,
            });
            // A skill with `allowedDomains` reaches exactly those, through the proxy, from a
            // network of its own; every other skill (and base-skill) has no network at all.
            let mut env: Vec<(String, String)> = env;
            let network = if !base && !stdio.allowed_domains.is_empty() {
                let name = format!("psbx-{short_run}-net-{dir}");
                networks.push(InternalNetworkPlan {
                    name: name.clone(),
                    labels: resource_labels("network", &service),
                });
                principals.push(PrincipalPlan {
                    name: service.clone(),
                    network: name.clone(),
                    allow: egress::skill_rules(&stdio.allowed_domains),
                    trusted: vec![],
                });
                env.extend(egress::proxy_env(
                    SkillBase::of(&stdio.command) == SkillBase::Node,
                ));
                NetworkPlan::Internal(name)
            } else {
                NetworkPlan::None
            };
            skills.push(ContainerPlan {
                name: format!("psbx-{short_run}-{dir}"),
                service: service.clone(),
                skill: Some(stdio.name.clone()),
                image: image_index(image),
                user: format!("{uid}:{gid}"),
                env,
                cmd: vec![],
                mounts,
                network,
                labels: resource_labels(role, &service),
                limits: request.limits,
                stdin: None,
            });
        }
    }

    let spec = RuntimeSpec {
        expert_key: request.expert_key.clone(),
        experts: closure
            .iter()
            .filter_map(|k| config.experts.get(k).map(|e| (k.clone(), e.clone())))
            .collect(),
        provider_name: config
            .provider
            .as_ref()
            .map(|p| p.provider_name.as_str().to_string()),
        provider_setting: config
            .provider
            .as_ref()
            .map(|p| p.setting.clone())
            .unwrap_or_default(),
        skills: endpoints,
        mock_script: request.mock_script.clone(),
    };
    let runtime_image = runtime_image(config, &request.expert_key, &spec, &request.artifacts)?;
    let mut mounts = runtime_mounts;
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    let settings = &request.settings;
    let mut cmd = vec![
        "--job-id".to_string(),
        request.job_id.clone(),
        "--run-id".to_string(),
        request.run_id.clone(),
        "--provider".to_string(),
        settings.provider.as_str().to_string(),
        "--model".to_string(),
        settings.model.clone(),
        "--max-steps".to_string(),
        settings.max_steps.to_string(),
        "--max-retries".to_string(),
        settings.max_retries.to_string(),
        "--timeout".to_string(),
        settings.timeout_ms.to_string(),
    ];
    if let Some(budget) = &settings.reasoning_budget {
        cmd.extend(["--reasoning-budget".to_string(), budget.clone()]);
    }
    if let Some(resume) = &request.resume {
        cmd.push("--checkpoint-stdin".to_string());
        if let Some(answer) = &resume.interactive_tool_call_result {
            cmd.extend([
                "--interactive-tool-call-result".to_string(),
                serde_json::to_string(answer)?,
            ]);
        }
    }
    cmd.extend([
        "--".to_string(),
        request.expert_key.clone(),
        request.query.clone(),
    ]);
    // The runtime reaches its provider and the closure's remote skills through the proxy; with
    // the mock provider and no remote skill it has no network at all.
    let mut runtime_env = request.runtime_env.clone();
    let runtime_network =
        if settings.provider == ProviderName::Mock && !reaches_remote_skills(config, &closure) {
            NetworkPlan::None
        } else {
            let file_setting = config
                .provider
                .as_ref()
                .filter(|p| p.provider_name == settings.provider)
                .map(|p| &p.setting);
            let env_value = |name: &str| {
                request
                    .runtime_env
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let (mut allow, trusted) =
                egress::provider_egress(settings.provider, file_setting, &env_value);
            for rule in egress::remote_skill_rules(config, &closure) {
                if !allow.contains(&rule) {
                    allow.push(rule);
                }
            }
            let name = format!("psbx-{short_run}-net-runtime");
            networks.push(InternalNetworkPlan {
                name: name.clone(),
                labels: resource_labels("network", "runtime"),
            });
            principals.insert(
                0,
                PrincipalPlan {
                    name: egress::RUNTIME.to_string(),
                    network: name.clone(),
                    allow,
                    trusted,
                },
            );
            runtime_env.extend(egress::proxy_env(false));
            NetworkPlan::Internal(name)
        };
    let proxy = (!principals.is_empty()).then(|| ProxyPlan {
        container: ContainerPlan {
            name: format!("psbx-{short_run}-egress-proxy"),
            service: "egress-proxy".to_string(),
            skill: None,
            image: image_index(proxy_image(&request.artifacts)),
            user: format!("{PROXY_UID}:{PROXY_UID}"),
            env: vec![],
            cmd: vec![],
            mounts: vec![],
            network: NetworkPlan::Bridge,
            labels: resource_labels("egress-proxy", "egress-proxy"),
            limits: request.limits,
            stdin: None,
        },
        principals,
    });
    let runtime = ContainerPlan {
        name: format!("psbx-{short_run}-runtime"),
        service: "runtime".to_string(),
        skill: None,
        image: image_index(runtime_image),
        user: format!("{RUNTIME_UID}:{RUNTIME_GID}"),
        env: runtime_env,
        cmd,
        mounts,
        network: runtime_network,
        labels: resource_labels("runtime", "runtime"),
        limits: request.limits,
        stdin: request.resume.as_ref().map(|r| r.checkpoint_json.clone()),
    };
    Ok(RunPlan {
        images,
        volumes,
        skills,
        runtime,
        spec,
        networks,
        proxy,
        prebuilt: None,
    })
}

/// Whether an Expert of the closure has an `mcpSseSkill`, which the runtime reaches over HTTP.
fn reaches_remote_skills(config: &Config, closure: &[String]) -> bool {
    closure
        .iter()
        .filter_map(|key| config.experts.get(key))
        .any(|expert| {
            expert
                .skills
                .values()
                .any(|s| matches!(s, Skill::McpSse(_)))
        })
}

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

/// Our binary, plus `passwd`/`group` when the base has none.
fn binary_files(base: &str, artifacts: &Artifacts) -> Vec<ContextFile> {
    let mut files = vec![binary_file(artifacts)];
    if base == "scratch" {
        files.extend(passwd_files());
    }
    files
}

fn runtime_image(
    config: &Config,
    expert_key: &str,
    spec: &RuntimeSpec,
    artifacts: &Artifacts,
) -> Result<ImageSpec, serde_json::Error> {
    let mut files = binary_files("scratch", artifacts);
    files.push(ContextFile {
        path: CA_BUNDLE_PATH.into(),
        mode: 0o644,
        contents: artifacts.ca_bundle.clone(),
    });
    files.push(ContextFile {
        path: SPEC_PATH.into(),
        mode: 0o644,
        contents: Bytes::from(serde_json::to_vec_pretty(spec)?),
    });
    let mut env = scratch_env("scratch");
    env.push(("SSL_CERT_FILE".to_string(), CA_BUNDLE_PATH.to_string()));
    let mut labels = base_labels(ImageRole::Runtime);
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
        install: None,
    })
}

/// The egress proxy: our binary on `scratch`, nothing else (it needs no CA bundle: it never
/// looks inside TLS).
fn proxy_image(artifacts: &Artifacts) -> ImageSpec {
    ImageSpec {
        role: ImageRole::EgressProxy,
        service: "egress-proxy".into(),
        repository: "perstack-sandbox/egress-proxy".into(),
        base: "scratch".into(),
        files: binary_files("scratch", artifacts),
        config: ImageConfig {
            env: scratch_env("scratch"),
            user: Some(format!("{PROXY_UID}:{PROXY_UID}")),
            workdir: None,
            entrypoint: vec![BINARY_PATH.to_string(), "egress-proxy".to_string()],
        },
        labels: base_labels(ImageRole::EgressProxy),
        install: None,
    }
}

/// Which base a skill's command needs, by the program's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkillBase {
    /// `perstack-sandbox`: our own binary is in every image already and is static, so `scratch`.
    Own,
    /// `npx`, `node`: `[sandbox] nodeImage`.
    Node,
    /// `uvx`, `python`, `python3`: `[sandbox] pythonImage`.
    Python,
    /// Anything else: `[sandbox] skillImage`.
    Other,
}

impl SkillBase {
    /// Classifies a command (a path's last segment counts).
    pub fn of(command: &str) -> SkillBase {
        match command.rsplit('/').next().unwrap_or(command) {
            "perstack-sandbox" => SkillBase::Own,
            "npx" | "node" => SkillBase::Node,
            "uvx" | "python" | "python3" => SkillBase::Python,
            _ => SkillBase::Other,
        }
    }

    /// The `[sandbox]` setting that chooses this base (`None` for our own binary).
    pub fn setting(self) -> Option<&'static str> {
        match self {
            SkillBase::Own => None,
            SkillBase::Node => Some("[sandbox] nodeImage"),
            SkillBase::Python => Some("[sandbox] pythonImage"),
            SkillBase::Other => Some("[sandbox] skillImage"),
        }
    }

    fn image(self, sandbox: &crate::config::SandboxConfig) -> Option<String> {
        match self {
            SkillBase::Own => Some("scratch".to_string()),
            SkillBase::Node => sandbox.node_image.clone(),
            SkillBase::Python => sandbox.python_image.clone(),
            SkillBase::Other => sandbox.skill_image.clone(),
        }
    }
}

/// The base image for a stdio skill: `[sandbox.skills.<name>] image`, else by command.
pub fn skill_base_image(config: &Config, skill: &McpStdioSkill) -> Option<String> {
    let sandbox = &config.sandbox;
    sandbox
        .skills
        .get(&skill.name)
        .and_then(|s| s.image.clone())
        .or_else(|| SkillBase::of(&skill.command).image(sandbox))
}

/// A stdio skill's image: its base, our binary as the skill host (ENTRYPOINT), and — for commands
/// that fetch packages (`uvx`, `npx`, …) — those packages, installed while the image is built,
/// with the skill host starting the installed program instead (`packages.rs`).
fn skill_image(config: &Config, skill: &McpStdioSkill, artifacts: &Artifacts) -> ImageSpec {
    let base = skill_base_image(config, skill).unwrap_or_else(|| "scratch".to_string());
    // Preflight refuses a command that cannot be prepared, before any plan is made; a caller
    // that skipped it gets the command as written, which fails at start with its own error.
    let prepared = packages::prepare(skill).unwrap_or_else(|_| packages::Prepared {
        install: None,
        command: skill.command.clone(),
        args: skill.argv(),
    });
    let mut entrypoint = vec![
        BINARY_PATH.to_string(),
        "skill-host".to_string(),
        "--socket".to_string(),
        format!("{SKILL_SOCKET_DIR}/mcp.sock"),
    ];
    for name in &skill.required_env {
        entrypoint.extend(["--pass-env".to_string(), name.clone()]);
    }
    // The proxy settings reach the server only where the plan sets them (skills with
    // `allowedDomains`); elsewhere these names are unset and pass nothing.
    if !skill.allowed_domains.is_empty() {
        for (name, _) in super::egress::proxy_env(SkillBase::of(&skill.command) == SkillBase::Node)
        {
            entrypoint.extend(["--pass-env".to_string(), name]);
        }
    }
    entrypoint.push("--".to_string());
    entrypoint.push(prepared.command);
    entrypoint.extend(prepared.args);
    let mut env = scratch_env(&base);
    if base != "scratch" {
        // The skill's user has no home in a real base and the root is read-only: interpreters
        // and their caches get the writable /tmp tmpfs.
        env.push(("HOME".to_string(), "/tmp".to_string()));
    }
    ImageSpec {
        role: ImageRole::Skill,
        service: format!("skill:{}", skill.name),
        repository: format!("perstack-sandbox/skill-{}", slug(&skill.name)),
        files: binary_files(&base, artifacts),
        config: ImageConfig {
            env,
            user: Some(format!("{SKILL_UID}:{SKILL_UID}")),
            workdir: None,
            entrypoint,
        },
        install: prepared.install.map(|install| InstallStage {
            index: match install.installer {
                packages::Installer::Npm => config.sandbox.npm_registry.clone(),
                packages::Installer::Pip => config.sandbox.pip_index_url.clone(),
            },
            install,
            ca_bundle: artifacts.ca_bundle.clone(),
        }),
        base,
        labels: base_labels(ImageRole::Skill),
    }
}

fn base_skill_image(config: &Config, artifacts: &Artifacts) -> ImageSpec {
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
            entrypoint: vec![
                BINARY_PATH.to_string(),
                "skill-host".to_string(),
                "--socket".to_string(),
                format!("{SKILL_SOCKET_DIR}/mcp.sock"),
                "--".to_string(),
                BINARY_PATH.to_string(),
                "base-skill".to_string(),
                "--workspace".to_string(),
                WORKSPACE_MOUNT.to_string(),
            ],
        },
        base,
        labels: base_labels(ImageRole::BaseSkill),
        install: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = r#"
[provider]
providerName = "mock"
setting = { script = "s.toml" }

[experts.main]
instruction = "Lead."
delegates = ["helper"]

[experts.main.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["WEB_KEY"]

[experts.helper]
instruction = "Help."
description = "Helps."
"#;

    fn request() -> RunRequest {
        let loaded = load_str(std::path::Path::new("/cfg/perstack.toml"), CONFIG).expect("valid");
        RunRequest {
            run_id: "runid0000000abcdef".into(),
            job_id: "job1".into(),
            expert_key: "main".into(),
            query: "hello".into(),
            config: loaded.config,
            settings: RunSettings {
                provider: ProviderName::Mock,
                model: "mock-model".into(),
                max_steps: 7,
                max_retries: 1,
                timeout_ms: 1000,
                reasoning_budget: Some("low".into()),
            },
            workspace: PathBuf::from("/home/me/project"),
            user: (1000, 1000),
            runtime_env: vec![("EXTRA".into(), "extra-value".into())],
            env: BTreeMap::from([
                ("WEB_KEY".to_string(), "web-secret".to_string()),
                ("ANTHROPIC_API_KEY".to_string(), "sk-ant".to_string()),
                ("UNRELATED".to_string(), "x".to_string()),
            ]),
            mock_script: None,
            artifacts: Artifacts {
                binary: Bytes::from_static(b"\x7fELF fake"),
                ca_bundle: Bytes::from_static(b"-----BEGIN CERTIFICATE-----"),
            },
            limits: Limits::default(),
            controller: "host/boot/42/7".into(),
            resume: None,
        }
    }

    #[test]
    fn the_plan_gives_each_container_only_what_it_declared() {
        let plan = plan(&request()).expect("plan");
        // main: base + web; helper (delegate): base.
        let names: Vec<&str> = plan.skills.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(
            names,
            ["base-skill:main", "skill:web:main", "base-skill:helper"]
        );

        let web = &plan.skills[1];
        assert_eq!(web.env, [("WEB_KEY".to_string(), "web-secret".to_string())]);
        assert_eq!(web.user, "10002:10002");
        assert_eq!(web.network, NetworkPlan::None);
        assert!(
            web.mounts
                .iter()
                .all(|m| matches!(m.source, MountSource::Volume { .. }))
        );

        for base in [&plan.skills[0], &plan.skills[2]] {
            assert!(base.env.is_empty(), "base-skill gets no variables");
            assert_eq!(base.user, "1000:1000");
            assert_eq!(base.network, NetworkPlan::None);
            assert!(base.mounts.contains(&MountPlan {
                source: MountSource::Bind {
                    host: "/home/me/project".into()
                },
                target: "/workspace".into(),
                read_only: false,
            }));
            // The run data below the workspace is hidden by an empty read-only tmpfs, and its
            // mount point is created on the host beforehand.
            assert!(base.mounts.contains(&MountPlan {
                source: MountSource::EmptyTmpfs,
                target: "/workspace/perstack".into(),
                read_only: true,
            }));
            assert_eq!(
                base.host_mount_points(),
                [PathBuf::from("/home/me/project/perstack")]
            );
        }
        assert!(web.host_mount_points().is_empty());

        let runtime = &plan.runtime;
        assert_eq!(
            runtime.env,
            [("EXTRA".to_string(), "extra-value".to_string())]
        );
        assert!(
            runtime
                .mounts
                .iter()
                .all(|m| matches!(m.source, MountSource::Volume { .. })),
            "the runtime never sees the workspace"
        );
        assert_eq!(runtime.mounts.len(), 3, "one socket volume per skill");
        assert_eq!(runtime.network, NetworkPlan::None, "mock needs no network");

        // Each socket volume is a tmpfs owned by its skill's user, readable by the runtime's group.
        assert_eq!(
            plan.volumes[1].driver_opts["o"],
            "uid=10002,gid=10001,mode=0750,size=1m"
        );
        assert_eq!(
            plan.volumes[0].driver_opts["o"],
            "uid=1000,gid=10001,mode=0750,size=1m"
        );

        insta::assert_json_snapshot!("containers", (&plan.skills, &plan.runtime));
        insta::assert_json_snapshot!("volumes", &plan.volumes);
        insta::assert_json_snapshot!("spec_skills", &plan.spec.skills);
        let dockerfiles: Vec<(String, String)> = plan
            .images
            .iter()
            .map(|i| (i.repository.clone(), i.dockerfile()))
            .collect();
        insta::assert_debug_snapshot!("dockerfiles", dockerfiles);
    }

    #[test]
    fn base_skill_on_a_workspace_image_keeps_its_path_and_gets_a_writable_home() {
        let mut request = request();
        request.config.sandbox.workspace_image = Some("perstack-sandbox/bookworm:local".into());
        let plan = plan(&request).expect("plan");
        let image = &plan.images[plan.skills[0].image];
        assert_eq!(image.role, ImageRole::BaseSkill);
        assert_eq!(image.base, "perstack-sandbox/bookworm:local");
        // The image's own PATH stays; HOME is the /tmp tmpfs (the root is read-only).
        assert_eq!(image.config.env, [("HOME".to_string(), "/tmp".to_string())]);
        // No passwd of ours on a real base, and the user is set per container: the invoker's.
        assert!(image.files.iter().all(|f| f.path == BINARY_PATH));
        assert_eq!(image.config.user, None);
        assert_eq!(plan.skills[0].user, "1000:1000");
        assert_eq!(plan.skills[0].env, []);
    }

    #[test]
    fn real_providers_reach_their_host_through_the_proxy_and_images_dedupe() {
        let mut request = request();
        request.settings.provider = ProviderName::Anthropic;
        let plan = plan(&request).expect("plan");
        // The runtime sits on a network of its own, shared only with the proxy.
        let runtime_net = "psbx-runid0000000-net-runtime";
        assert_eq!(
            plan.runtime.network,
            NetworkPlan::Internal(runtime_net.into())
        );
        assert_eq!(
            plan.networks
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            [runtime_net]
        );
        assert!(plan.runtime.env.contains(&(
            "HTTPS_PROXY".to_string(),
            "http://egress-proxy:3128".to_string()
        )));
        let proxy = plan.proxy.as_ref().expect("a proxy");
        assert_eq!(proxy.container.network, NetworkPlan::Bridge);
        assert_eq!(proxy.container.user, "65534:65534");
        assert_eq!(
            plan.images[proxy.container.image].role,
            ImageRole::EgressProxy
        );
        assert_eq!(proxy.principals.len(), 1);
        assert_eq!(proxy.principals[0].name, "runtime");
        assert_eq!(proxy.principals[0].network, runtime_net);
        let allow: Vec<String> = proxy.principals[0]
            .allow
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(allow, ["api.anthropic.com"]);
        // Skills without allowedDomains stay off every network.
        assert!(plan.skills.iter().all(|s| s.network == NetworkPlan::None));
        // Both Experts' base skills share one image; web has its own; the runtime; the proxy.
        assert_eq!(plan.images.len(), 4);
        assert_eq!(plan.skills[0].image, plan.skills[2].image);
    }

    #[test]
    fn a_mock_run_without_remote_skills_starts_no_proxy_and_no_network() {
        let plan = plan(&request()).expect("plan");
        assert!(plan.proxy.is_none());
        assert!(plan.networks.is_empty());
        assert_eq!(plan.runtime.network, NetworkPlan::None);
        assert!(!plan.runtime.env.iter().any(|(k, _)| k == "HTTPS_PROXY"));
    }

    #[test]
    fn a_skill_with_allowed_domains_gets_its_own_network_and_exactly_its_domains() {
        let mut request = request();
        let text = CONFIG.replace(
            "requiredEnv = [\"WEB_KEY\"]",
            "requiredEnv = [\"WEB_KEY\"]\nallowedDomains = [\"api.github.com\", \"*.github.com\"]",
        );
        request.config = load_str(std::path::Path::new("/cfg/perstack.toml"), &text)
            .expect("valid")
            .config;
        let plan = plan(&request).expect("plan");
        let web = plan
            .skills
            .iter()
            .find(|s| s.skill.as_deref() == Some("web"))
            .expect("web");
        let NetworkPlan::Internal(net) = &web.network else {
            panic!("web has no network of its own: {:?}", web.network);
        };
        assert!(web.env.contains(&(
            "HTTPS_PROXY".to_string(),
            "http://egress-proxy:3128".to_string()
        )));
        // Our own binary is not Node: no Node settings.
        assert!(!web.env.iter().any(|(k, _)| k.starts_with("NODE_")));
        // The skill host passes the proxy settings to the server.
        let image = &plan.images[web.image];
        assert!(
            image
                .config
                .entrypoint
                .windows(2)
                .any(|w| w == ["--pass-env", "HTTPS_PROXY"])
        );
        // Base skills stay offline; the mock runtime needs no network.
        assert!(
            plan.skills
                .iter()
                .filter(|s| s.skill.as_deref() != Some("web"))
                .all(|s| s.network == NetworkPlan::None)
        );
        assert_eq!(plan.runtime.network, NetworkPlan::None);
        let proxy = plan.proxy.as_ref().expect("a proxy");
        assert_eq!(proxy.principals.len(), 1);
        assert_eq!(proxy.principals[0].name, "skill:web:main");
        assert_eq!(&proxy.principals[0].network, net);
        let allow: Vec<String> = proxy.principals[0]
            .allow
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(allow, ["api.github.com", "*.github.com"]);
    }

    #[test]
    fn a_remote_skill_in_the_closure_gives_the_runtime_a_network_and_no_container() {
        let mut request = request();
        let remote = "[experts.helper.skills.remote]\ntype = \"mcpSseSkill\"\n\
                      endpoint = \"https://mcp.example.com/mcp\"\n";
        let text = format!("{CONFIG}{remote}");
        request.config = load_str(std::path::Path::new("/cfg/perstack.toml"), &text)
            .expect("valid")
            .config;
        let plan = plan(&request).expect("plan");
        // Even with the mock provider: the helper's remote skill is reached from the runtime,
        // through the proxy, which lets it reach exactly that endpoint.
        assert_eq!(
            plan.runtime.network,
            NetworkPlan::Internal("psbx-runid0000000-net-runtime".into())
        );
        let proxy = plan.proxy.as_ref().expect("a proxy");
        assert_eq!(proxy.principals[0].allow[0].to_string(), "mcp.example.com");
        assert!(
            plan.skills
                .iter()
                .all(|s| s.skill.as_deref() != Some("remote"))
        );
        assert!(plan.spec.skills.iter().all(|e| e.skill != "remote"));
        // The runtime finds its endpoint in the Expert it carries.
        let helper = &plan.spec.experts["helper"];
        assert!(matches!(
            &helper.skills["remote"],
            Skill::McpSse(sse) if sse.endpoint == "https://mcp.example.com/mcp"
        ));
    }

    #[test]
    fn a_continued_run_gets_the_checkpoint_on_stdin_and_the_answer_as_an_argument() {
        let fresh = plan(&request()).expect("plan");
        assert_eq!(fresh.runtime.stdin, None, "a fresh run has no stdin");
        assert!(
            !fresh
                .runtime
                .cmd
                .contains(&"--checkpoint-stdin".to_string())
        );

        let mut request = request();
        request.resume = Some(Resume {
            checkpoint_json: r#"{"id":"cp1"}"#.into(),
            interactive_tool_call_result: Some(crate::event::InteractiveToolCallResult {
                tool_call_id: "call-1".into(),
                tool_name: "askUser".into(),
                skill_name: "ask".into(),
                text: "blue".into(),
            }),
        });
        let plan = plan(&request).expect("plan");
        assert_eq!(plan.runtime.stdin.as_deref(), Some(r#"{"id":"cp1"}"#));
        assert!(plan.skills.iter().all(|s| s.stdin.is_none()));
        // The flags go before `--`; the query stays the last positional.
        let cmd = &plan.runtime.cmd;
        let tail: Vec<&str> = cmd[cmd.len() - 6..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "--checkpoint-stdin",
                "--interactive-tool-call-result",
                r#"{"toolCallId":"call-1","toolName":"askUser","skillName":"ask","text":"blue"}"#,
                "--",
                "main",
                "hello"
            ]
        );
        // The runtime's own parser reads them back.
        let mut argv = vec!["perstack-sandbox".to_string(), "runtime".to_string()];
        argv.extend(cmd.iter().cloned());
        let crate::cli::Command::Runtime(args) =
            <crate::cli::Cli as clap::Parser>::parse_from(argv).command
        else {
            panic!("not the runtime role");
        };
        assert!(args.checkpoint_stdin);
        assert_eq!(args.query, "hello");
        assert!(args.interactive_tool_call_result.is_some());
    }

    #[test]
    fn uvx_and_npx_skills_get_their_packages_at_build_time_and_start_the_installed_program() {
        let mut request = request();
        let text = format!(
            "{CONFIG}\
             [experts.helper.skills.time]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\n\
             args = [\"mcp-server-time\", \"--local-timezone=UTC\"]\n\
             [experts.helper.skills.files]\ntype = \"mcpStdioSkill\"\ncommand = \"npx\"\n\
             packageName = \"@modelcontextprotocol/server-filesystem\"\n\
             [sandbox]\npythonImage = \"perstack-sandbox/bookworm:local\"\n\
             nodeImage = \"local/node:22\"\n\
             npmRegistry = \"https://npm.example.com/\"\n\
             pipIndexUrl = \"http://10.0.0.5:3141/simple/\"\n"
        );
        request.config = load_str(std::path::Path::new("/cfg/perstack.toml"), &text)
            .expect("valid")
            .config;
        let plan = plan(&request).expect("plan");
        let image_of = |name: &str| {
            let container = plan
                .skills
                .iter()
                .find(|s| s.skill.as_deref() == Some(name))
                .expect("skill container");
            // Installed at build time: nothing may be fetched at run time, and nothing can.
            assert_eq!(container.network, NetworkPlan::None, "{name}");
            &plan.images[container.image]
        };

        let time = image_of("time");
        assert_eq!(time.base, "perstack-sandbox/bookworm:local");
        let stage = time.install.as_ref().expect("an install stage");
        assert_eq!(stage.install.packages, ["mcp-server-time"]);
        assert_eq!(stage.ca_bundle, request.artifacts.ca_bundle);
        // Each installer gets its own index setting, in its install stage only.
        assert_eq!(stage.index.as_deref(), Some("http://10.0.0.5:3141/simple/"));
        let after = |image: &ImageSpec| -> Vec<String> {
            let entry = &image.config.entrypoint;
            let at = entry.iter().position(|a| a == "--").expect("--");
            entry[at + 1..].to_vec()
        };
        assert_eq!(
            after(time),
            [
                "/opt/perstack-skill/bin/mcp-server-time",
                "--local-timezone=UTC"
            ]
        );
        assert_eq!(time.config.env, [("HOME".to_string(), "/tmp".to_string())]);

        let files = image_of("files");
        assert_eq!(files.base, "local/node:22");
        let npm = files.install.as_ref().expect("an install stage");
        assert_eq!(npm.index.as_deref(), Some("https://npm.example.com/"));
        assert_eq!(after(files), ["/opt/perstack-skill/entry"]);

        // The runtime still reports the commands as configured (skillStarting).
        let endpoint = plan
            .spec
            .skills
            .iter()
            .find(|e| e.skill == "time")
            .expect("endpoint");
        assert_eq!(endpoint.command, "uvx");
        assert_eq!(endpoint.args, ["mcp-server-time", "--local-timezone=UTC"]);

        // The skill without packages is unchanged: no stage.
        assert!(plan.images.iter().filter(|i| i.install.is_some()).count() == 2);
        insta::assert_snapshot!("uvx_dockerfile", time.dockerfile());
        insta::assert_snapshot!("npx_dockerfile", files.dockerfile());
    }

    #[test]
    fn the_closure_follows_delegates_once_each() {
        let text = "[experts.a]\ninstruction = \"x\"\ndelegates = [\"b\", \"c\"]\n\
                    [experts.b]\ninstruction = \"x\"\ndelegates = [\"c\", \"a\"]\n\
                    [experts.c]\ninstruction = \"x\"\n";
        let loaded = load_str(std::path::Path::new("/p.toml"), text).expect("valid");
        assert_eq!(loaded.config.delegation_closure("a"), ["a", "b", "c"]);
        assert_eq!(loaded.config.delegation_closure("c"), ["c"]);
    }
}
