//! The run's way out: the runtime's internal network and allowlist — its provider and the
//! closure's remote skills — and the egress proxy that serves every principal. The allowlists
//! themselves are `sandbox/egress.rs`'s.

use super::naming::RunNames;
use super::{ContainerPlan, InternalNetworkPlan, NetworkPlan, ProxyPlan, RunRequest};
use crate::config::{Config, ProviderName, Skill};
use crate::contract::users::PROXY_UID;
use crate::sandbox::egress::{self, PrincipalPlan};

/// The runtime as a principal of the proxy, on a network of its own.
pub(super) struct RuntimeEgress {
    /// Its internal network, shared only with the proxy.
    pub network: InternalNetworkPlan,
    /// What it may reach.
    pub principal: PrincipalPlan,
}

/// The runtime reaches its provider and the closure's remote skills through the proxy; with the
/// mock provider and no remote skill it has no network at all (`None`).
pub(super) fn runtime_egress(
    request: &RunRequest,
    names: &RunNames,
    closure: &[String],
) -> Option<RuntimeEgress> {
    let config = &request.config;
    let provider = request.settings.provider;
    if provider == ProviderName::Mock && !reaches_remote_skills(config, closure) {
        return None;
    }
    let file_setting = config
        .provider
        .as_ref()
        .filter(|p| p.provider_name == provider)
        .map(|p| &p.setting);
    let env_value = |name: &str| {
        request
            .runtime_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (mut allow, trusted) = egress::provider_egress(provider, file_setting, &env_value);
    for rule in egress::remote_skill_rules(config, closure) {
        if !allow.contains(&rule) {
            allow.push(rule);
        }
    }
    let name = names.name("net-runtime");
    Some(RuntimeEgress {
        network: InternalNetworkPlan {
            name: name.clone(),
            labels: names.labels("network", "runtime"),
        },
        principal: PrincipalPlan {
            name: egress::RUNTIME.to_string(),
            network: name,
            allow,
            trusted,
        },
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

/// The egress proxy for `principals`: on the default bridge (the controller connects it to
/// every internal network), as `nobody`, with nothing mounted.
pub(super) fn proxy_plan(
    request: &RunRequest,
    names: &RunNames,
    image: usize,
    principals: Vec<PrincipalPlan>,
) -> ProxyPlan {
    ProxyPlan {
        container: ContainerPlan {
            name: names.name("egress-proxy"),
            service: "egress-proxy".to_string(),
            skill: None,
            image,
            user: format!("{PROXY_UID}:{PROXY_UID}"),
            env: vec![],
            cmd: vec![],
            mounts: vec![],
            network: NetworkPlan::Bridge,
            labels: names.labels("egress-proxy", "egress-proxy"),
            limits: request.limits,
            oci_runtime: request.oci_runtime.clone(),
            stdin: None,
        },
        principals,
    }
}
