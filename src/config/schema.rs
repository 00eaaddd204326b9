//! The typed model of `perstack.toml` (PERSTACK-COMPAT.md §1) plus our `[sandbox]` table.
//!
//! These types mirror the file and nothing else: parsing with positions lives in `parse.rs`, the
//! rules in `validate.rs`. They serialize with Perstack's camelCase names, so the resolved config
//! baked into a runtime image reads like the file it came from.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// `[provider]` is typed by the provider table, which `llm` owns (the clients read it too).
pub(crate) use crate::llm::{ProviderConfig, ProviderName, ProviderSetting};

/// The skill every Expert gets when it declares no `skills` table.
pub(crate) const BASE_SKILL_NAME: &str = "@perstack/base";

/// A whole `perstack.toml`, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Default model (`model`); CLI `--model` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Default reasoning budget (`reasoningBudget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_budget: Option<ReasoningBudget>,
    /// Perstack's `runtime` selector. We always run in Docker, but keep the value for fidelity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Step limit for a job (`maxSteps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// Retries per generation (`maxRetries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Per-generation timeout in milliseconds (`timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Dotenv files to read (`envPath`), relative to the current folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_path: Option<Vec<String>>,
    /// `perstackApiBaseUrl` (must be `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perstack_api_base_url: Option<String>,
    /// `perstackBaseSkillCommand`: replaces the command of an npx-based `@perstack/base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perstack_base_skill_command: Option<Vec<String>>,
    /// `[provider]`; absent means Perstack's default, anthropic with no settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderConfig>,
    /// `[experts.*]`, in file order.
    #[serde(default)]
    pub experts: IndexMap<String, Expert>,
    /// `[sandbox]`: our own table, which Perstack ignores.
    #[serde(default)]
    pub sandbox: SandboxConfig,
}

/// `reasoningBudget`: a named level or a token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReasoningBudget {
    /// `none|minimal|low|medium|high`.
    Level(ReasoningLevel),
    /// An explicit token budget (≥ 0).
    Tokens(u64),
}

/// The named reasoning levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningLevel {
    /// Reasoning off.
    None,
    /// 1024 tokens.
    Minimal,
    /// 2048 tokens (Perstack's default).
    Low,
    /// 5000 tokens.
    Medium,
    /// 10000 tokens.
    High,
}

/// `[experts."<key>"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expert {
    /// The key of the table; also the Expert's name locally.
    pub key: String,
    /// Same as `key` for local Experts (Perstack derives the name from the key).
    pub name: String,
    /// Semver version, default `1.0.0`.
    pub version: String,
    /// The instruction (1..=20480 chars).
    pub instruction: String,
    /// Description (1..=2048 chars); the delegate tool's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `minRuntimeVersion`: parsed, unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_runtime_version: Option<String>,
    /// Keys of the Experts this one may delegate to.
    #[serde(default)]
    pub delegates: Vec<String>,
    /// Tags (`^[a-z0-9][a-z0-9_-]*$`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Skills by name, in file order. When the file has no `skills` table this holds the implicit
    /// `@perstack/base`.
    pub skills: IndexMap<String, Skill>,
}

/// One skill of an Expert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Skill {
    /// `type = "mcpStdioSkill"`.
    #[serde(rename = "mcpStdioSkill")]
    McpStdio(McpStdioSkill),
    /// `type = "mcpSseSkill"`.
    #[serde(rename = "mcpSseSkill")]
    McpSse(McpSseSkill),
    /// `type = "interactiveSkill"`.
    #[serde(rename = "interactiveSkill")]
    Interactive(InteractiveSkill),
}

impl Skill {
    /// The skill's name (its key in `skills`).
    pub fn name(&self) -> &str {
        match self {
            Skill::McpStdio(s) => &s.name,
            Skill::McpSse(s) => &s.name,
            Skill::Interactive(s) => &s.name,
        }
    }

    /// The `rule` added to the system prompt, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Skill::McpStdio(s) => s.rule.as_deref(),
            Skill::McpSse(s) => s.rule.as_deref(),
            Skill::Interactive(s) => s.rule.as_deref(),
        }
    }
}

/// `mcpStdioSkill`: an MCP server spoken to over stdio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpStdioSkill {
    /// The skill's name (its key).
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Added to the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The program to run (`npx`, `uvx`, `python3`, …).
    pub command: String,
    /// The package to run; exclusive with a non-empty `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,
    /// Arguments; exclusive with `packageName`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Tools to offer (whitelist when non-empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pick: Vec<String>,
    /// Tools to hide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omit: Vec<String>,
    /// Environment variables the skill receives — and the only ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_env: Vec<String>,
    /// Domains the skill may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
    /// Connect in the background, awaited by the first tool listing.
    #[serde(default)]
    pub lazy_init: bool,
}

impl McpStdioSkill {
    /// The argv after `command`: `args`, else `[packageName]`; `npx` gets `-y` when absent (§1).
    pub fn argv(&self) -> Vec<String> {
        let mut argv = if self.args.is_empty() {
            self.package_name.iter().cloned().collect()
        } else {
            self.args.clone()
        };
        if self.command == "npx" && !argv.iter().any(|a| a == "-y" || a == "--yes") {
            argv.insert(0, "-y".to_string());
        }
        argv
    }

    /// True for the `@perstack/base` skill, which we run as our own base-skill container.
    pub fn is_base(&self) -> bool {
        self.name == BASE_SKILL_NAME
    }
}

/// `mcpSseSkill`: a remote MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpSseSkill {
    /// The skill's name (its key).
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Added to the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The `https://` endpoint (no private or loopback hosts).
    pub endpoint: String,
    /// Tools to offer (whitelist when non-empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pick: Vec<String>,
    /// Tools to hide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omit: Vec<String>,
    /// Domains the skill may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_domains: Vec<String>,
}

/// `interactiveSkill`: tools answered by the user, not by a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractiveSkill {
    /// The skill's name (its key).
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Added to the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `tools.<name>`, in file order.
    #[serde(default)]
    pub tools: IndexMap<String, InteractiveTool>,
}

/// One tool of an interactive skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractiveTool {
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The input schema, parsed from the JSON string in the file.
    pub input_json_schema: serde_json::Value,
}

/// `[sandbox]`: how perstack-sandbox builds and runs containers. Perstack ignores this table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxConfig {
    /// Base image of the base-skill (workspace tools) container. Unset: `scratch`, which is enough
    /// for the file tools; set an image with a shell for a useful `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_image: Option<String>,
    /// Base image for skills whose command is `npx` or `node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_image: Option<String>,
    /// Base image for skills whose command is `uvx`, `python` or `python3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_image: Option<String>,
    /// Base image for skills with any other command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill_image: Option<String>,
    /// The npm registry that `npx`/`node` skills' packages are installed from when their image is
    /// built (`npm_config_registry` of the install step only). Unset: npm's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npm_registry: Option<String>,
    /// The Python package index that `uvx`/`python` skills' packages are installed from when
    /// their image is built (`PIP_INDEX_URL` of the install step only). Unset: pip's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pip_index_url: Option<String>,
    /// The CA bundle that containers talking TLS at run time trust, and package installs at
    /// build time: `"host"` (the host's system bundle) or the path of a PEM file, relative to
    /// this file's folder. Unset: `"host"` (see `settings.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// The OCI runtime every container of a run starts under, by the name the engine has it
    /// registered as (`runsc` for gVisor). Unset: the engine's default runtime (see
    /// `settings.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Memory limit per container (`512m`, `2g`, or bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU limit per container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Process limit per container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// Protected workspace paths that the containers mounting the workspace may write anyway
    /// (`[".git"]`), relative to the workspace (`trust::inputs`). Unset: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable: Vec<String>,
    /// Per-skill overrides, by skill name: `[sandbox.skills."<name>"]`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub skills: IndexMap<String, SandboxSkill>,
}

/// `[sandbox.skills."<name>"]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSkill {
    /// Base image for this skill's container, whatever its command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Whether the skill sees the workspace at `/workspace`, and how. Unset: it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceGrant>,
    /// Files and folders, relative to this file's folder, copied into the skill's image besides
    /// those its command and args name (`sandbox::skill_files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// A Dockerfile, relative to this file's folder, that builds the skill's base image with
    /// its folder as the context; the skill host and our hardening go on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
}

/// `[sandbox.skills."<name>"] workspace`: the workspace mounted at `/workspace`, with the
/// protected paths read-only whatever the grant. The skill runs as the invoking user, so it
/// reads what the user can and what it writes is the user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkspaceGrant {
    /// `"read-only"`.
    ReadOnly,
    /// `"read-write"`.
    ReadWrite,
}

impl WorkspaceGrant {
    /// The value as written in perstack.toml.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WorkspaceGrant::ReadOnly => "read-only",
            WorkspaceGrant::ReadWrite => "read-write",
        }
    }

    /// The grant `value` names.
    pub(crate) fn parse(value: &str) -> Option<WorkspaceGrant> {
        match value {
            "read-only" => Some(WorkspaceGrant::ReadOnly),
            "read-write" => Some(WorkspaceGrant::ReadWrite),
            _ => None,
        }
    }
}

/// Where a value came from in the file: for errors that are found after loading (a missing
/// variable, a script that does not parse) and still want to point at the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}
