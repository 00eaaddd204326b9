//! What `plan` is given: the run's ids, the validated config, the settings after CLI > file >
//! default, the workspace and the invoking user, the variables, the image files (ours and the skills'
//! own) and the limits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{Config, Limits, RunSettings};
use crate::llm::mock::MockScript;
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::preflight::ProtectedLayout;
use crate::sandbox::skill_files::FilesBySkill;

/// Everything `plan` needs.
#[derive(Debug, Clone)]
pub(crate) struct RunRequest {
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
    /// The workspace's protected paths, as found before the run.
    pub protected: ProtectedLayout,
    /// Environment for the runtime container: provider variables and `--env` extras.
    pub runtime_env: Vec<(String, String)>,
    /// The env map, where skills' `requiredEnv` values come from.
    pub env: BTreeMap<String, String>,
    /// The mock script, when the provider is `mock`.
    pub mock_script: Option<MockScript>,
    /// Binary and CA bundle.
    pub artifacts: Artifacts,
    /// The stdio skills' own files from the config's folder, read by preflight (none for a
    /// versioned image: its skill images hold them).
    pub skill_files: FilesBySkill,
    /// Container limits.
    pub limits: Limits,
    /// The OCI runtime every container starts under (`runsc` for gVisor); `None`: the engine's
    /// default.
    pub oci_runtime: Option<String>,
    /// The controller (`ControllerId` as a label value), recorded on containers for `gc`.
    pub controller: String,
    /// Continue from a stored checkpoint instead of starting afresh.
    pub resume: Option<Resume>,
    /// `install`'s listing run: the runtime lists every Expert's MCP tools and exits, asking no
    /// model (`runtime --list-tools`).
    pub list_tools: bool,
}

/// What a continued run starts from (`--continue`, `--continue-job`, `--resume-from`, `-i`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resume {
    /// The stored checkpoint, exactly as stored: written to the runtime's stdin.
    pub checkpoint_json: String,
    /// The answer to the checkpoint's pending tool call (`-i`).
    pub interactive_tool_call_result: Option<crate::event::InteractiveToolCallResult>,
    /// The turns each delegate already played in the job
    /// ([`delegate_turns_played`](crate::jobs::delegate_turns_played)); the runtime's `mock`
    /// provider skips them.
    pub delegate_turns: std::collections::BTreeMap<String, usize>,
}
