//! Command-line definitions (clap). Only the shape of the CLI lives here; `commands/` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run Perstack Experts in Docker: the agent runtime, each MCP skill and the workspace tools in
/// their own hardened containers.
#[derive(Debug, Parser)]
#[command(name = "perstack-sandbox", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Parsed once per process; boxing the big `run` arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run an Expert on a query, in containers (with --image, a versioned image's Expert).
    #[command(allow_missing_positional = true)]
    Run(RunArgs),
    /// Build an Expert's images and tag them as a version (--tag); --push pushes them.
    Build(BuildArgs),
    /// Check perstack.toml and list its Experts, delegates and skills.
    Validate(ValidateArgs),
    /// Check the Docker engine and the images a run needs.
    Doctor(ValidateArgs),
    /// List perstack-sandbox's images: Expert, version, size and age.
    Images,
    /// Remove containers, volumes and networks whose controller is gone (and, with --images,
    /// superseded image versions).
    Gc(GcArgs),
    /// (inside the runtime container) Run the agent loop.
    #[command(hide = true)]
    Runtime(RuntimeRoleArgs),
    /// (PID 1 of a skill container) Relay a unix socket to an MCP server's stdio.
    #[command(hide = true)]
    SkillHost(SkillHostArgs),
    /// (inside the base-skill container) Serve the workspace tools over stdio.
    #[command(hide = true)]
    BaseSkill(BaseSkillArgs),
    /// (tests) Serve the fixture MCP server over stdio.
    #[command(hide = true)]
    FixtureMcp,
    /// (inside the egress-proxy container) Carry allowlisted traffic out of a run's internal
    /// networks; configured by PERSTACK_PROXY_CONFIG.
    #[command(hide = true)]
    EgressProxy,
    /// (standalone image) Confine this process by a policy and execute a program; report the
    /// kernel's protections; make a breakout attempt.
    #[command(hide = true)]
    Confine(crate::confine::role::ConfineArgs),
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The Expert's key in perstack.toml (with --image, leave it out: the image fixes it).
    #[arg(
        required_unless_present = "image",
        default_value = "",
        hide_default_value = true
    )]
    pub expert: String,
    /// What to ask it.
    pub query: String,
    /// Run the Expert of this versioned image (`perstack-sandbox build --tag REF`) instead of
    /// one from perstack.toml; images that are not here are pulled.
    #[arg(long, value_name = "REF", conflicts_with = "config")]
    pub image: Option<String>,
    /// perstack.toml to use (default: the nearest one in this folder or a parent).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Folder the base skill works in, mounted read-write (default: the current folder).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Provider (anthropic, google, openai, ollama, azure-openai, amazon-bedrock, google-vertex,
    /// deepseek, mock).
    #[arg(long)]
    pub provider: Option<String>,
    /// Model id.
    #[arg(long)]
    pub model: Option<String>,
    /// Reasoning budget: none, minimal, low, medium, high, or a token count.
    #[arg(long, value_name = "BUDGET")]
    pub reasoning_budget: Option<String>,
    /// Stop after this many steps.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u32>,
    /// Retries per generation.
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Time limit for the whole run, from the first image lookup to the runtime's exit: a
    /// number of milliseconds (`60000`) or `90s`, `30m`, `2h`. No generation may take longer
    /// either (default: the generation timeout × max-steps).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Time limit per generation, milliseconds or `90s`, `5m` (default: `timeout` in
    /// perstack.toml, else 300000).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub generation_timeout: Option<std::time::Duration>,
    /// Memory limit per container: `512m`, `2g`, or bytes (default: `[sandbox] memory`, else 2g).
    #[arg(long, value_name = "SIZE", value_parser = crate::config::parse_memory_limit)]
    pub memory: Option<i64>,
    /// CPU limit per container, like 2 or 0.5 (default: `[sandbox] cpus`, else 2).
    #[arg(long, value_name = "N", value_parser = crate::config::parse_cpus)]
    pub cpus: Option<f64>,
    /// Process limit per container (default: `[sandbox] pids`, else 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub pids: Option<i64>,
    /// Job id to use (default: a new one).
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
    /// Continue the job of the most recent run in this workspace from its coordinator's last
    /// checkpoint; the query becomes a new message.
    #[arg(long = "continue", conflicts_with = "continue_job")]
    pub continue_latest: bool,
    /// Continue this job from its coordinator's last checkpoint.
    #[arg(long, value_name = "JOB_ID")]
    pub continue_job: Option<String>,
    /// With --continue-job: continue from this checkpoint instead of the last one.
    #[arg(long, value_name = "CHECKPOINT_ID")]
    pub resume_from: Option<String>,
    /// The query answers the continued run's pending interactive tool call: plain text, or JSON
    /// `{"toolCallId","toolName","skillName","text"}`.
    #[arg(long, short = 'i')]
    pub interactive_tool_call_result: bool,
    /// Dotenv file to read (repeatable; default: envPath, else .env and .env.local).
    #[arg(long, value_name = "PATH")]
    pub env_path: Vec<PathBuf>,
    /// Pass this variable to the runtime container too (repeatable).
    #[arg(long = "env", value_name = "NAME")]
    pub env: Vec<String>,
    /// Write JSON Lines events (the default when stdout is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Show build output, skill stderr and container states.
    #[arg(long, short)]
    pub verbose: bool,
    /// Base images.
    #[command(flatten)]
    pub base_images: BaseImageArgs,
}

/// `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Expert's key in perstack.toml.
    pub expert: String,
    /// Tag the runtime image REF and the others `REF-skill-<name>`, `REF-base-skill`,
    /// `REF-egress-proxy` (repeatable; default: `<expert>:<version>`).
    #[arg(long = "tag", short = 't', value_name = "REF")]
    pub tags: Vec<String>,
    /// Push every tagged image to its registry.
    #[arg(long)]
    pub push: bool,
    /// perstack.toml to use (default: the nearest one in this folder or a parent).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Show build and push output.
    #[arg(long, short)]
    pub verbose: bool,
    /// Base images.
    #[command(flatten)]
    pub base_images: BaseImageArgs,
}

/// Base images chosen on the command line; each beats its `[sandbox]` setting in perstack.toml.
#[derive(Debug, Clone, Default, Args)]
pub struct BaseImageArgs {
    /// Base image of skills run with `npx` or `node` (beats `[sandbox] nodeImage`).
    #[arg(long, value_name = "IMAGE")]
    pub node_image: Option<String>,
    /// Base image of skills run with `uvx`, `python` or `python3` (beats `[sandbox] pythonImage`).
    #[arg(long, value_name = "IMAGE")]
    pub python_image: Option<String>,
    /// Base image of skills with any other command (beats `[sandbox] skillImage`).
    #[arg(long, value_name = "IMAGE")]
    pub skill_image: Option<String>,
    /// Base image of the workspace tools, for a useful `exec` (beats `[sandbox] workspaceImage`).
    #[arg(long, value_name = "IMAGE")]
    pub workspace_image: Option<String>,
}

impl BaseImageArgs {
    /// Puts the images given on the command line in place of the file's.
    pub fn apply(&self, sandbox: &mut crate::config::SandboxConfig) {
        let pairs = [
            (&self.node_image, &mut sandbox.node_image),
            (&self.python_image, &mut sandbox.python_image),
            (&self.skill_image, &mut sandbox.skill_image),
            (&self.workspace_image, &mut sandbox.workspace_image),
        ];
        for (flag, setting) in pairs {
            if let Some(image) = flag {
                *setting = Some(image.clone());
            }
        }
    }
}

/// `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Also remove image versions that a newer build of the same image superseded (never one a
    /// container uses).
    #[arg(long)]
    pub images: bool,
    /// Only report what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// `validate` and `doctor`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// perstack.toml to use (default: the nearest one in this folder or a parent).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// The hidden `runtime` role.
#[derive(Debug, Args)]
pub struct RuntimeRoleArgs {
    /// The runtime spec.
    #[arg(long, default_value = crate::sandbox::images::SPEC_PATH)]
    pub spec: PathBuf,
    /// Job id.
    #[arg(long)]
    pub job_id: String,
    /// Run id.
    #[arg(long)]
    pub run_id: String,
    /// Provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Model.
    #[arg(long)]
    pub model: Option<String>,
    /// Step limit.
    #[arg(long)]
    pub max_steps: Option<u32>,
    /// Retries.
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// Per-generation timeout, ms.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Reasoning budget.
    #[arg(long)]
    pub reasoning_budget: Option<String>,
    /// Continue from the checkpoint JSON the controller writes to stdin (then closes it),
    /// instead of starting a fresh run.
    #[arg(long)]
    pub checkpoint_stdin: bool,
    /// Resume a stopped run with this answer to its pending tool call:
    /// `{"toolCallId","toolName","skillName","text"}`. Needs `--checkpoint-stdin`.
    #[arg(long, short = 'i', value_name = "JSON", requires = "checkpoint_stdin")]
    pub interactive_tool_call_result: Option<String>,
    /// The one Expert this image runs: a versioned image's ENTRYPOINT sets it, and any other
    /// Expert (a delegate of its closure included) is refused.
    #[arg(long, value_name = "KEY")]
    pub only_expert: Option<String>,
    /// The Expert.
    pub expert: String,
    /// The query.
    pub query: String,
}

/// The hidden `skill-host` role.
#[derive(Debug, Args)]
pub struct SkillHostArgs {
    /// The unix socket to listen on.
    #[arg(long)]
    pub socket: PathBuf,
    /// A variable to pass to the server (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// The server command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<std::ffi::OsString>,
}

/// The hidden `base-skill` role.
#[derive(Debug, Args)]
pub struct BaseSkillArgs {
    /// The workspace folder.
    #[arg(long)]
    pub workspace: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn base_image_flags_beat_the_sandbox_table_and_leave_the_rest() {
        let cli = Cli::parse_from([
            "perstack-sandbox",
            "run",
            "--python-image",
            "py:cli",
            "--workspace-image",
            "ws:cli",
            "main",
            "q",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("run");
        };
        let mut sandbox = crate::config::SandboxConfig {
            python_image: Some("py:file".into()),
            node_image: Some("node:file".into()),
            ..Default::default()
        };
        args.base_images.apply(&mut sandbox);
        assert_eq!(sandbox.python_image.as_deref(), Some("py:cli"));
        assert_eq!(sandbox.workspace_image.as_deref(), Some("ws:cli"));
        assert_eq!(sandbox.node_image.as_deref(), Some("node:file"));
        assert_eq!(sandbox.skill_image, None);
    }
}
