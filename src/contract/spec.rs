//! The runtime spec: what the controller bakes into a runtime image for the runtime role to read
//! (at [`SPEC_PATH`](super::paths::SPEC_PATH)).
//!
//! It holds only what is fixed for an Expert — its delegation closure, the provider settings
//! from the file, where each skill's socket is, the mock script — so one image serves every run
//! of that Expert. What changes per run (query, ids, model, limits) comes as arguments
//! ([`RuntimeArgs`](super::runtime_args::RuntimeArgs)).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::config::{Expert, ProviderSetting, WorkspaceGrant};
use crate::llm::mock::MockScript;

/// Everything fixed about an Expert's runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuntimeSpec {
    /// The Expert this image runs.
    pub expert_key: String,
    /// That Expert and every Expert it can delegate to, by key.
    pub experts: IndexMap<String, Expert>,
    /// `[provider.setting]` from the file (used when the run's provider is the file's).
    pub provider_name: Option<String>,
    /// Its settings.
    #[serde(default)]
    pub provider_setting: ProviderSetting,
    /// How to reach each MCP skill.
    pub skills: Vec<SkillEndpoint>,
    /// The mock provider's script, when the file's provider is `mock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock_script: Option<MockScript>,
}

/// Where one Expert's skill listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SkillEndpoint {
    /// The Expert it belongs to.
    pub expert: String,
    /// The skill's name.
    pub skill: String,
    /// The unix socket, as the runtime container sees it.
    pub socket: String,
    /// The command its container runs (for `skillStarting`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// How it sees the workspace, when granted (for `skillStarting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceGrant>,
}
