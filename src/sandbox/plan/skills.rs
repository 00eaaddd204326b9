//! The stdio skills of the closure: per skill a container, a tmpfs socket volume shared with
//! the runtime alone, the endpoint the runtime spec records, and — for a skill with
//! `allowedDomains` — an internal network of its own and a principal of the egress proxy.

use std::collections::BTreeMap;

use super::naming::RunNames;
use super::{ContainerPlan, ImageList, InternalNetworkPlan, MountPlan, MountSource, NetworkPlan};
use super::{Placeholder, RunRequest, VolumePlan, workspace};
use crate::config::{McpStdioSkill, Skill, WorkspaceGrant};
use crate::contract::paths::{RUNTIME_SOCKETS_DIR, SKILL_SOCKET_DIR, SOCKET_FILE};
use crate::contract::spec::SkillEndpoint;
use crate::contract::users::SKILL_UID;
use crate::sandbox::egress::{self, PrincipalPlan};
use crate::sandbox::images::base::SkillBase;
use crate::sandbox::images::recipes::{base_skill_command, base_skill_image, skill_image};
use crate::sandbox::images::{ImageSpec, slug};

/// What the stdio skills add to a run.
#[derive(Default)]
pub(super) struct SkillsPlan {
    /// One container per skill, in closure order, each Expert's skills in file order.
    pub containers: Vec<ContainerPlan>,
    /// Their socket volumes.
    pub volumes: Vec<VolumePlan>,
    /// The same volumes as the runtime mounts them, one folder per skill.
    pub runtime_mounts: Vec<MountPlan>,
    /// Where the runtime finds each skill (for the runtime spec).
    pub endpoints: Vec<SkillEndpoint>,
    /// The internal networks of the skills with `allowedDomains`.
    pub networks: Vec<InternalNetworkPlan>,
    /// Those skills as principals of the egress proxy.
    pub principals: Vec<PrincipalPlan>,
    /// What the controller makes in the workspace for the run (`workspace::placeholders`).
    pub placeholders: Vec<Placeholder>,
}

/// Plans every stdio skill of every Expert in `closure`.
pub(super) fn plan_skills(
    request: &RunRequest,
    names: &RunNames,
    closure: &[String],
    images: &mut ImageList,
) -> SkillsPlan {
    let several = closure.len() > 1;
    let stdio: Vec<(&String, &McpStdioSkill)> = closure
        .iter()
        .filter_map(|key| request.config.experts.get(key).map(|e| (key, e)))
        .flat_map(|(key, expert)| {
            expert.skills.values().filter_map(move |skill| match skill {
                Skill::McpStdio(stdio) => Some((key, stdio)),
                _ => None,
            })
        })
        .collect();
    let any_writer = stdio
        .iter()
        .any(|(_, s)| workspace_access(request, s) == Some(WorkspaceGrant::ReadWrite));
    let mut plan = SkillsPlan {
        placeholders: workspace::placeholders(request, any_writer),
        ..SkillsPlan::default()
    };
    for (expert_key, skill) in stdio {
        let service = service(skill, expert_key, several);
        plan.add(request, names, images, expert_key, &service, skill);
    }
    plan
}

/// How `stdio` sees the workspace: base-skill read-write; a skill as granted; else not at all.
fn workspace_access(request: &RunRequest, stdio: &McpStdioSkill) -> Option<WorkspaceGrant> {
    if stdio.is_base() {
        return Some(WorkspaceGrant::ReadWrite);
    }
    request
        .config
        .sandbox
        .skills
        .get(&stdio.name)
        .and_then(|s| s.workspace)
}

/// `skill:<name>` or `base-skill`, plus `:<expert>` when the closure has several Experts.
fn service(stdio: &McpStdioSkill, expert_key: &str, several: bool) -> String {
    match (stdio.is_base(), several) {
        (true, false) => "base-skill".to_string(),
        (true, true) => format!("base-skill:{expert_key}"),
        (false, false) => format!("skill:{}", stdio.name),
        (false, true) => format!("skill:{}:{expert_key}", stdio.name),
    }
}

/// What differs between a skill's container and base-skill's.
struct Part {
    image: ImageSpec,
    /// `uid:gid` it runs as; it owns the socket volume.
    user: (u32, u32),
    /// Its mounts besides the socket volume.
    mounts: Vec<MountPlan>,
    env: Vec<(String, String)>,
    /// The label role of its container.
    role: &'static str,
    /// The command and arguments as configured (for `skillStarting`).
    command: String,
    args: Vec<String>,
    /// Arguments after the image's ENTRYPOINT.
    cmd: Vec<String>,
    /// The workspace, when it mounts it.
    workspace: Option<WorkspaceGrant>,
}

/// A skill's part: its image (with its local files), the skill user, exactly its
/// `requiredEnv`. Granted the workspace, it mounts it as base-skill does and runs as the
/// invoking user, so it reads what the user can and what it writes is theirs.
fn skill_part(
    request: &RunRequest,
    expert_key: &str,
    stdio: &McpStdioSkill,
    placeholders: bool,
) -> Part {
    let grant = workspace_access(request, stdio);
    let local = request
        .skill_files
        .get(&(expert_key.to_string(), stdio.name.clone()));
    Part {
        image: skill_image(&request.config, stdio, local, &request.artifacts),
        user: match grant {
            Some(_) => request.user,
            None => (SKILL_UID, SKILL_UID),
        },
        mounts: grant
            .map(|access| workspace::mounts(request, access, placeholders))
            .unwrap_or_default(),
        env: stdio
            .required_env
            .iter()
            .filter_map(|name| request.env.get(name).map(|v| (name.clone(), v.clone())))
            .collect(),
        role: "skill",
        command: stdio.command.clone(),
        args: stdio.argv(),
        cmd: vec![],
        workspace: grant,
    }
}

/// Base-skill's part: its image, the invoking user, the workspace, no variables; the
/// protected paths on its command line.
fn base_skill_part(request: &RunRequest, placeholders: bool) -> Part {
    let (command, args) = base_skill_command();
    Part {
        image: base_skill_image(&request.config, &request.artifacts),
        user: request.user,
        mounts: workspace::mounts(request, WorkspaceGrant::ReadWrite, placeholders),
        env: vec![],
        role: "base-skill",
        command,
        args,
        cmd: workspace::protected_args(request),
        workspace: None,
    }
}

impl SkillsPlan {
    /// Adds one stdio skill of `expert_key`, known to the run as `service`.
    fn add(
        &mut self,
        request: &RunRequest,
        names: &RunNames,
        images: &mut ImageList,
        expert_key: &str,
        service: &str,
        stdio: &McpStdioSkill,
    ) {
        let dir = format!("{}-{}", self.containers.len(), slug(&stdio.name));
        let placeholders = !self.placeholders.is_empty();
        let mut part = if stdio.is_base() {
            base_skill_part(request, placeholders)
        } else {
            skill_part(request, expert_key, stdio, placeholders)
        };
        let mut labels = names.labels(part.role, service);
        if placeholders && !part.mounts.is_empty() {
            // `gc` removes the placeholders of a run whose controller died, from this label.
            labels.insert(
                crate::sandbox::labels::PLACEHOLDERS.to_string(),
                Placeholder::label(&self.placeholders),
            );
        }
        let socket = self.socket_volume(names, &dir, service, part.user.0, &labels);
        let mut mounts = vec![socket];
        mounts.append(&mut part.mounts);
        self.endpoints.push(SkillEndpoint {
            expert: expert_key.to_string(),
            skill: stdio.name.clone(),
            socket: format!("{RUNTIME_SOCKETS_DIR}/{dir}/{SOCKET_FILE}"),
            command: part.command,
            args: part.args,
            workspace: part.workspace,
        });
        let network = self.network(names, &dir, service, stdio, &mut part.env);
        let (uid, gid) = part.user;
        self.containers.push(ContainerPlan {
            name: names.name(&dir),
            service: service.to_string(),
            skill: Some(stdio.name.clone()),
            image: images.add(part.image),
            user: format!("{uid}:{gid}"),
            env: part.env,
            cmd: part.cmd,
            mounts,
            network,
            labels,
            limits: request.limits,
            oci_runtime: request.oci_runtime.clone(),
            stdin: None,
        });
    }

    /// The skill's socket volume: a tmpfs owned by `owner` with group = the runtime's, mode
    /// 0750, so those two alone can use the socket. Mounted in the runtime too; returns the
    /// skill's own mount of it.
    fn socket_volume(
        &mut self,
        names: &RunNames,
        dir: &str,
        service: &str,
        owner: u32,
        container_labels: &BTreeMap<String, String>,
    ) -> MountPlan {
        let name = names.name(dir);
        let mut labels = names.labels("socket-volume", service);
        // Volumes are made before anything else: a controller that dies later leaves this.
        if let Some(placeholders) = container_labels.get(crate::sandbox::labels::PLACEHOLDERS) {
            labels.insert(
                crate::sandbox::labels::PLACEHOLDERS.to_string(),
                placeholders.clone(),
            );
        }
        self.volumes.push(VolumePlan::socket(&name, owner, labels));
        self.runtime_mounts.push(MountPlan {
            source: MountSource::Volume { name: name.clone() },
            target: format!("{RUNTIME_SOCKETS_DIR}/{dir}"),
            read_only: false,
        });
        MountPlan {
            source: MountSource::Volume { name },
            target: SKILL_SOCKET_DIR.to_string(),
            read_only: false,
        }
    }

    /// A skill with `allowedDomains` reaches exactly those, through the proxy, from a network
    /// of its own (and gets the proxy settings in `env`); every other skill, and base-skill,
    /// has no network at all.
    fn network(
        &mut self,
        names: &RunNames,
        dir: &str,
        service: &str,
        stdio: &McpStdioSkill,
        env: &mut Vec<(String, String)>,
    ) -> NetworkPlan {
        if stdio.is_base() || stdio.allowed_domains.is_empty() {
            return NetworkPlan::None;
        }
        let name = names.name(&format!("net-{dir}"));
        self.networks.push(InternalNetworkPlan {
            name: name.clone(),
            labels: names.labels("network", service),
        });
        self.principals.push(PrincipalPlan {
            name: service.to_string(),
            network: name.clone(),
            allow: egress::skill_rules(&stdio.allowed_domains),
            trusted: vec![],
        });
        env.extend(egress::proxy_env(
            SkillBase::of(&stdio.command) == SkillBase::Node,
        ));
        NetworkPlan::Internal(name)
    }
}
