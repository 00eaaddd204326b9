//! The runtime: the spec baked into its image, its command line, and its container — every
//! socket volume, no workspace, the provider's variables and `--env` extras, and for a continued
//! run the checkpoint on stdin.

use std::path::PathBuf;

use super::naming::RunNames;
use super::{ContainerPlan, MountPlan, NetworkPlan, RunRequest};
use crate::config::ProviderName;
use crate::contract::paths::SPEC_PATH;
use crate::contract::runtime_args::RuntimeArgs;
use crate::contract::spec::{RuntimeSpec, SkillEndpoint};
use crate::contract::users::{RUNTIME_GID, RUNTIME_UID};

/// The spec of the runtime image: the closure's Experts, the file's provider, where each skill
/// listens, the mock script.
pub(super) fn runtime_spec(
    request: &RunRequest,
    closure: &[String],
    endpoints: Vec<SkillEndpoint>,
) -> RuntimeSpec {
    let config = &request.config;
    RuntimeSpec {
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
    }
}

/// The runtime's command line for this run: ids, the resolved settings, and for a continued
/// run `--checkpoint-stdin` (with the answer to a pending tool call, if any).
fn runtime_args(request: &RunRequest) -> RuntimeArgs {
    let settings = &request.settings;
    RuntimeArgs {
        spec: PathBuf::from(SPEC_PATH),
        job_id: request.job_id.clone(),
        run_id: request.run_id.clone(),
        provider: Some(settings.provider),
        model: Some(settings.model.clone()),
        max_steps: Some(settings.max_steps),
        max_retries: Some(settings.max_retries),
        timeout_ms: Some(settings.timeout_ms),
        reasoning_budget: settings.reasoning_budget.clone(),
        checkpoint_stdin: request.resume.is_some(),
        interactive_tool_call_result: request
            .resume
            .as_ref()
            .and_then(|r| r.interactive_tool_call_result.clone()),
        only_expert: None,
        // Only the scripted provider replays turns; no other needs to know.
        mock_played: match (&request.resume, settings.provider) {
            (Some(resume), ProviderName::Mock) => resume
                .delegate_turns
                .iter()
                .map(|(expert, turns)| (expert.clone(), *turns))
                .collect(),
            _ => Vec::new(),
        },
        list_tools: request.list_tools,
        expert_key: request.expert_key.clone(),
        query: request.query.clone(),
    }
}

/// The runtime container: `mounts` are the skills' socket volumes, `network` and `env` its way
/// out (if any) and its variables.
pub(super) fn runtime_container(
    request: &RunRequest,
    names: &RunNames,
    image: usize,
    mut mounts: Vec<MountPlan>,
    network: NetworkPlan,
    env: Vec<(String, String)>,
) -> Result<ContainerPlan, serde_json::Error> {
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(ContainerPlan {
        name: names.name("runtime"),
        service: "runtime".to_string(),
        skill: None,
        image,
        user: format!("{RUNTIME_UID}:{RUNTIME_GID}"),
        env,
        cmd: runtime_args(request).to_args()?,
        mounts,
        network,
        labels: names.labels("runtime", "runtime"),
        limits: request.limits,
        oci_runtime: request.oci_runtime.clone(),
        stdin: request.resume.as_ref().map(|r| r.checkpoint_json.clone()),
    })
}
