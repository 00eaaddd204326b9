//! Command-line definitions (clap). Only the shape of the CLI lives here; `commands/` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::ProviderName;
use crate::config::settings::{
    CaCertificates, DEFAULT_CPUS, DEFAULT_MAX_RETRIES, DEFAULT_MAX_STEPS, DEFAULT_MEMORY,
    DEFAULT_MODEL, DEFAULT_PIDS, DEFAULT_PROVIDER, DEFAULT_REASONING_BUDGET, DEFAULT_TIMEOUT_MS,
    GVISOR_RUNTIME, SettingFlags, memory_spelling, parse_ca_certificates, parse_runtime_engine,
};
use crate::contract::runtime_args::RuntimeArgs;
use crate::skill::host::{HostOptions, Listen};

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
    #[command(
        override_usage = "perstack-sandbox run [OPTIONS] <EXPERT> <QUERY>\n       \
                                perstack-sandbox run [OPTIONS] --image <REF> <QUERY>"
    )]
    Run(RunArgs),
    /// An interactive session on a terminal: run an Expert, answer its questions and follow up
    /// in the same job, in the same containers and with the same guarantees as `run`.
    Start(StartArgs),
    /// Build an Expert's images and tag them as a version (--tag); --push pushes them.
    Build(BuildArgs),
    /// Write the objects that run a versioned image's Expert on another engine (kubernetes:
    /// a Job, the egress proxy, NetworkPolicies; no secret values).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Resolve every Expert of perstack.toml and the published Experts they delegate to, and
    /// write perstack.lock (Perstack's format) with their definitions and tool definitions.
    Install(InstallArgs),
    /// Check perstack.toml and list its Experts, delegates and skills.
    Validate(ValidateArgs),
    /// Write a commented perstack.toml for a first Expert here, and .env.example.
    Init(InitArgs),
    /// Check the Docker engine and the images a run needs (with --backend kubernetes: the
    /// cluster's permissions, Pod Security level and what is unknown about NetworkPolicy).
    Doctor(DoctorArgs),
    /// List perstack-sandbox's images: Expert, version, size and age.
    Images,
    /// View execution history: with no flags, what each Expert of the latest job did; with
    /// event flags, the events asked for.
    Log(LogArgs),
    /// Remove containers, volumes and networks whose controller is gone (and, with --images,
    /// superseded image versions).
    Gc(GcArgs),
    /// See and accept what runs changed in the files runs trust (perstack.toml, dotenv files,
    /// the mock script); a workspace with such a change refuses to run until it is accepted.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// The roles inside containers (hidden): the same as the lean executable's.
    #[command(flatten)]
    Role(RoleCommand),
}

/// The roles this program plays inside containers, each hidden from `--help`: all that the
/// executable our images carry (`perstack-sandbox-roles`, README "Building") understands.
#[derive(Debug, Subcommand)]
// Parsed once per process, as `Command` is.
#[allow(clippy::large_enum_variant)]
pub enum RoleCommand {
    /// (inside the runtime container) Run the agent loop.
    #[command(hide = true)]
    Runtime(RuntimeArgs),
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
    /// (ENTRYPOINT of a standalone image) Run the image's Expert: start the runtime, the
    /// workspace tools, the egress proxy and each skill as processes walled off from each other.
    #[command(hide = true)]
    Standalone(StandaloneArgs),
    /// (doctor's probe containers) Serve this container's findings on a unix socket, or fetch
    /// them and print them with this one's.
    #[command(hide = true)]
    EngineProbe(EngineProbeArgs),
    /// (init container of a Kubernetes run pod) Read the workspace as a tar on stdin into the
    /// workspace folder.
    #[command(hide = true)]
    WorkspaceIn(WorkspaceInArgs),
    /// (exec'd in base-skill of a Kubernetes run pod) Write the workspace folder as a tar to
    /// stdout.
    #[command(hide = true)]
    WorkspaceOut(WorkspaceOutArgs),
    /// (a Kubernetes run pod) Keep the pod, and so base-skill, running after the runtime ends
    /// until the controller has copied the workspace back and deletes the pod.
    #[command(hide = true)]
    WorkspaceHold(WorkspaceHoldArgs),
    /// (exec'd in the runtime's container of a Kubernetes run pod) End the runtime at once: a
    /// run stopped by Ctrl-C or its time limit, before its workspace is copied back.
    #[command(hide = true)]
    RuntimeStop,
}

/// The command line of `perstack-sandbox-roles`, the executable our images carry at
/// `contract::paths::BINARY_PATH` (so it is `perstack-sandbox` there): the roles alone.
#[derive(Debug, Parser)]
#[command(name = "perstack-sandbox", version = crate::contract::build_id::ROLES_VERSION)]
pub struct RolesCli {
    /// The role to play.
    #[command(subcommand)]
    pub command: RoleCommand,
}

/// What a caller of a standalone image passes after `docker run … IMAGE` (the ENTRYPOINT fixes
/// the Expert).
#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// What to ask the Expert (with `-i`, the answer to its pending question).
    pub query: String,
    /// Continue the job of the latest run stored in /workspace/perstack.
    #[arg(long = "continue", short = 'c')]
    pub continue_latest: bool,
    /// Continue this job.
    #[arg(long, value_name = "JOB_ID", conflicts_with = "continue_latest")]
    pub continue_job: Option<String>,
    /// With --continue-job: continue from this checkpoint instead of the latest.
    #[arg(long, value_name = "CHECKPOINT_ID", requires = "continue_job")]
    pub resume_from: Option<String>,
    /// The query is the answer to the pending interactive tool call of the continued run.
    #[arg(short = 'i', long = "interactive-tool-call-result")]
    pub interactive_tool_call_result: bool,
    /// Model (default: the image's).
    #[arg(long)]
    pub model: Option<String>,
    /// Step limit (default: the image's).
    #[arg(long)]
    pub max_steps: Option<u32>,
    /// Start even when this kernel lacks a protection (Landlock, its scopes, seccomp); the
    /// report says exactly which.
    #[arg(long)]
    pub allow_weaker_isolation: bool,
    /// JSON events even on a terminal.
    #[arg(long)]
    pub json: bool,
    /// Show everything in the human view.
    #[arg(long, short)]
    pub verbose: bool,
}

/// `engine-probe`.
#[derive(Debug, Args)]
pub struct EngineProbeArgs {
    /// `listen` or `connect`.
    #[command(subcommand)]
    pub action: EngineProbeAction,
}

/// What an `engine-probe` container does.
#[derive(Debug, Subcommand)]
pub enum EngineProbeAction {
    /// Measure, write a file into the workspace, greet on TCP and serve the findings on the
    /// socket, once each.
    Listen {
        /// The socket to listen on.
        socket: std::path::PathBuf,
        /// The workspace mount to write the probe file into.
        workspace: std::path::PathBuf,
    },
    /// Reach the listener over TCP, connect to the socket, print the listener's findings, then
    /// this container's.
    Connect {
        /// The socket to connect to.
        socket: std::path::PathBuf,
        /// The listener's address on the internal network, `ip:port`.
        tcp: std::net::SocketAddr,
    },
}

/// `run`.
///
/// The Expert and the query are two optional positionals, each required unless `--image` is
/// given, and at least one is always needed: flags may then stand before, between or after them
/// (`run e --continue q`). An optional positional before a required one
/// (`allow_missing_positional`) cannot do that: clap takes the Expert for the query as soon as a
/// flag follows it. With `--image` and one positional, that one is the query
/// ([`RunArgs::expert`], [`RunArgs::query`]).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("positionals").args(["expert", "query"]).required(true).multiple(true)))]
pub struct RunArgs {
    /// The Expert's key in perstack.toml (with --image, leave it out: the image fixes it).
    #[arg(required_unless_present = "image")]
    expert: Option<String>,
    /// What to ask it.
    #[arg(required_unless_present = "image")]
    query: Option<String>,
    /// Everything but the positionals (shared with `start`); read through `Deref`.
    #[command(flatten)]
    flags: RunFlags,
    /// Where the run runs: this machine's engine, or (experimental) a Kubernetes namespace,
    /// which needs --image.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `start`: both positionals are optional — without an Expert the session offers the file's,
/// without a query it asks for one.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The Expert's key in perstack.toml (default: pick one from a list).
    pub expert: Option<String>,
    /// The first message (default: asked for).
    pub query: Option<String>,
    /// The same options as `run`; `--continue` and `--continue-job` re-enter a past job and
    /// show its history first.
    #[command(flatten)]
    pub flags: RunFlags,
}

/// `run`'s options, which `start` takes too: what runs, where, with which settings, and which
/// job it continues.
#[derive(Debug, Clone, Args)]
pub struct RunFlags {
    /// Set by `start` for each turn: what the session has shown already (no flag).
    #[arg(skip)]
    pub session: Option<crate::render::SessionLines>,
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
    /// Provider (the help text lists them: [`provider_help`]).
    #[arg(long, help = provider_help())]
    pub provider: Option<String>,
    /// Model id.
    #[arg(long, help = format!("Model id (default: `model` in perstack.toml, else {DEFAULT_MODEL})"))]
    pub model: Option<String>,
    /// Reasoning budget: none, minimal, low, medium, high, or a token count.
    #[arg(
        long,
        value_name = "BUDGET",
        help = format!(
            "Reasoning budget: none, minimal, low, medium, high, or a token count (default: \
             `reasoningBudget` in perstack.toml, else {DEFAULT_REASONING_BUDGET})"
        )
    )]
    pub reasoning_budget: Option<String>,
    /// Stop after this many steps.
    #[arg(
        long,
        value_name = "N",
        help = format!(
            "Stop after this many steps (default: `maxSteps` in perstack.toml, else \
             {DEFAULT_MAX_STEPS})"
        )
    )]
    pub max_steps: Option<u32>,
    /// Retries per generation.
    #[arg(
        long,
        value_name = "N",
        help = format!(
            "Retries per generation (default: `maxRetries` in perstack.toml, else \
             {DEFAULT_MAX_RETRIES})"
        )
    )]
    pub max_retries: Option<u32>,
    /// Time limit for the whole run, from the first image lookup to the runtime's exit: a
    /// number of milliseconds (`60000`) or `90s`, `30m`, `2h`. No generation may take longer
    /// either (default: the generation timeout × max-steps).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Time limit per generation, milliseconds or `90s`, `5m`.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = crate::config::parse_duration,
        help = format!(
            "Time limit per generation, milliseconds or `90s`, `5m` (default: `timeout` in \
             perstack.toml, else {DEFAULT_TIMEOUT_MS})"
        )
    )]
    pub generation_timeout: Option<std::time::Duration>,
    /// Memory limit per container: `512m`, `2g`, or bytes.
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = crate::config::parse_memory_limit,
        help = format!(
            "Memory limit per container: `512m`, `2g`, or bytes (default: `[sandbox] memory`, \
             else {})",
            memory_spelling(DEFAULT_MEMORY)
        )
    )]
    pub memory: Option<i64>,
    /// CPU limit per container, like 2 or 0.5.
    #[arg(
        long,
        value_name = "N",
        value_parser = crate::config::parse_cpus,
        help = format!(
            "CPU limit per container, like 2 or 0.5 (default: `[sandbox] cpus`, else {DEFAULT_CPUS})"
        )
    )]
    pub cpus: Option<f64>,
    /// Process limit per container.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(i64).range(1..),
        help = format!("Process limit per container (default: `[sandbox] pids`, else {DEFAULT_PIDS})")
    )]
    pub pids: Option<i64>,
    /// The CA bundle that containers talking TLS trust.
    #[arg(
        long,
        value_name = "host|PATH",
        value_parser = parse_ca_certificates,
        conflicts_with = "image",
        help = CA_CERTIFICATES_HELP
    )]
    pub ca_certificates: Option<CaCertificates>,
    /// The OCI runtime every container of the run starts under.
    #[arg(
        long,
        value_name = "NAME",
        value_parser = parse_runtime_engine,
        help = format!(
            "OCI runtime every container of the run starts under, by the name the engine has it \
             registered as: `{GVISOR_RUNTIME}` for gVisor (README: \"gVisor\") (default: \
             `[sandbox] runtime`, else the engine's default, runc)"
        )
    )]
    pub runtime_engine: Option<String>,
    /// Start on an engine that cannot hold part of a run's isolation instead of refusing:
    /// today a rootless engine on cgroup v1, which ignores memory, CPU and process limits.
    #[arg(
        long,
        help = "Start on an engine that cannot hold part of a run's isolation instead of \
                refusing: today a rootless engine on cgroup v1, which ignores memory, CPU and \
                process limits; the run then asks for none, and says what is missing on stderr \
                and in its isolationReport event (`doctor` says whether this is needed)"
    )]
    pub allow_weaker_isolation: bool,
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
    /// Refuse to run when perstack.lock is missing or stale (for CI).
    #[arg(
        long,
        visible_alias = "locked",
        help = "Refuse to run when perstack.lock is missing or stale — an Expert of the run not \
                in it, or a skill or delegate changed since `install` (for CI; without it a \
                stale lock is a warning)"
    )]
    pub frozen_lockfile: bool,
    /// Perstack's `--runtime`: only `docker`, which is what perstack-sandbox is.
    #[arg(
        long,
        value_name = "RUNTIME",
        value_parser = parse_runtime,
        help = "Perstack's --runtime: only `docker` (the default), which is what perstack-sandbox \
                is; local, cursor, claude-code and gemini are refused"
    )]
    pub runtime: Option<UpstreamRuntime>,
    /// Base images.
    #[command(flatten)]
    pub base_images: BaseImageArgs,
}

/// The runtimes Perstack's `--runtime` names that we accept: only Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamRuntime {
    /// Every part of the run in its own container: what perstack-sandbox always does.
    Docker,
}

/// `--runtime`: `docker` is what we are; Perstack's other runtimes are refused, each with the
/// reason (none of them would be sandboxed).
fn parse_runtime(value: &str) -> Result<UpstreamRuntime, String> {
    let why = match value {
        "docker" => return Ok(UpstreamRuntime::Docker),
        "local" => {
            "`local` runs the Expert and its skills as processes on this host, with your files, \
             variables and network; perstack-sandbox exists to run them in containers instead"
        }
        "cursor" | "claude-code" | "gemini" => {
            "it hands the Expert to another agent's CLI running on this host, outside any \
             container; perstack-sandbox runs only its own runtime, in Docker"
        }
        _ => "Perstack's runtimes are docker, local, cursor, claude-code and gemini",
    };
    Err(format!(
        "perstack-sandbox runs Experts only in Docker (`--runtime docker`, the default): {why}"
    ))
}

impl std::ops::Deref for RunArgs {
    type Target = RunFlags;

    fn deref(&self) -> &RunFlags {
        &self.flags
    }
}

impl RunArgs {
    /// The arguments of one turn of a `start` session: `expert` (none with `--image`) asked
    /// `query` with `flags`.
    pub fn session_turn(expert: Option<String>, query: String, flags: RunFlags) -> RunArgs {
        RunArgs {
            expert,
            query: Some(query),
            flags,
            backend: BackendArgs::default(),
        }
    }

    /// The Expert given on the command line; empty when only `--image` names it.
    pub fn expert(&self) -> &str {
        match (&self.expert, &self.query) {
            (Some(expert), Some(_)) => expert,
            // `run --image REF QUERY`: the one positional is the query.
            _ => "",
        }
    }

    /// The query (the only positional when `--image` names the Expert).
    pub fn query(&self) -> &str {
        self.query
            .as_deref()
            .or(self.expert.as_deref())
            .unwrap_or_default()
    }

    /// What the command line says about the run's settings, for
    /// [`Settings::resolve`](crate::config::Settings::resolve).
    pub fn setting_flags(&self) -> SettingFlags {
        SettingFlags {
            provider: self.provider.clone(),
            model: self.model.clone(),
            reasoning_budget: self.reasoning_budget.clone(),
            max_steps: self.max_steps,
            max_retries: self.max_retries,
            timeout: self.timeout,
            generation_timeout: self.generation_timeout,
            memory: self.memory,
            cpus: self.cpus,
            pids: self.pids,
            ca_certificates: self.ca_certificates.clone(),
            runtime_engine: self.runtime_engine.clone(),
        }
    }
}

/// `--ca-certificates`' help, the same for `run` and `build`.
const CA_CERTIFICATES_HELP: &str = "CA bundle trusted by the containers that talk TLS (skills \
    with allowedDomains; the runtime with a networked provider or an mcpSseSkill) and by package \
    installs at build time: `host` (the host's system bundle) or a PEM file (default: `[sandbox] \
    caCertificates`, else host)";

/// `run --provider`'s help: every provider, which ones cannot be used yet, and the default.
fn provider_help() -> String {
    let (supported, unsupported): (Vec<ProviderName>, Vec<ProviderName>) = ProviderName::ALL
        .into_iter()
        .partition(|p| p.info().is_supported());
    let names = |providers: &[ProviderName]| {
        providers
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut help = format!("Provider: {}", names(&supported));
    if !unsupported.is_empty() {
        help.push_str(&format!("; not supported yet: {}", names(&unsupported)));
    }
    help.push_str(&format!(
        " (default: `[provider] providerName` in perstack.toml, else {DEFAULT_PROVIDER})"
    ));
    help
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
    /// Build one image holding the runtime, the workspace tools, the egress proxy and every
    /// skill, which plain `docker run IMAGE "query"` runs (tagged with each --tag).
    #[arg(long)]
    pub standalone: bool,
    /// The base of the standalone image (default: the one base its skills' images share, e.g.
    /// `[sandbox] pythonImage` for `uvx` skills; `scratch` when none needs one). Needed when
    /// skills need different bases: name one image with every runtime they need.
    #[arg(long, value_name = "IMAGE", requires = "standalone")]
    pub standalone_base: Option<String>,

    /// perstack.toml to use (default: the nearest one in this folder or a parent).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Show build and push output.
    #[arg(long, short)]
    pub verbose: bool,
    /// Refuse to build when perstack.lock is missing or stale (for CI).
    #[arg(long, visible_alias = "locked")]
    pub frozen_lockfile: bool,
    /// The CA bundle the version's images carry.
    #[arg(
        long,
        value_name = "host|PATH",
        value_parser = parse_ca_certificates,
        help = CA_CERTIFICATES_HELP
    )]
    pub ca_certificates: Option<CaCertificates>,
    /// Base images.
    #[command(flatten)]
    pub base_images: BaseImageArgs,
}

impl BuildArgs {
    /// What the command line says about the settings: only the CA bundle (the images do not
    /// depend on the run's other settings).
    pub fn setting_flags(&self) -> SettingFlags {
        SettingFlags {
            ca_certificates: self.ca_certificates.clone(),
            ..SettingFlags::default()
        }
    }
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

/// `init`: each question's answer as a flag (the defaults without a terminal).
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The Expert's name (default: my-expert).
    #[arg(long)]
    pub name: Option<String>,
    /// What it does (its description and the start of its instruction).
    #[arg(long)]
    pub description: Option<String>,
    /// Provider (default: anthropic; mock needs no key).
    #[arg(long)]
    pub provider: Option<String>,
    /// Add a delegate Expert of this name.
    #[arg(long, value_name = "NAME")]
    pub delegate: Option<String>,
    /// Add an MCP server from PyPI (run with uvx).
    #[arg(long, value_name = "PACKAGE")]
    pub pypi: Option<String>,
    /// Add an MCP server from npm (run with npx).
    #[arg(long, value_name = "PACKAGE")]
    pub npm: Option<String>,
    /// Add an interactive skill, so the Expert can ask you questions.
    #[arg(long)]
    pub ask_user: bool,
    /// Ask nothing: the flags, else the defaults.
    #[arg(long, short)]
    pub yes: bool,
    /// Replace an existing perstack.toml (and .env.example).
    #[arg(long)]
    pub force: bool,
}

/// `log`: upstream's flags and filter grammar.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Workspace whose jobs to read (default: the current folder).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// The job (default: the latest in the workspace).
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Only this run's events.
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// This checkpoint, and the events of its run.
    #[arg(long, value_name = "ID")]
    pub checkpoint: Option<String>,
    /// Only these steps: N, >N, >=N, <N, <=N or A-B.
    #[arg(long, value_name = "STEPS", allow_hyphen_values = true)]
    pub step: Option<String>,
    /// Only events of this type (e.g. callTools, completeRun, streamRunResult).
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only errors and retries (stopRunByError, retry).
    #[arg(long)]
    pub errors: bool,
    /// Only tool calls and results (callTools, resolveToolResults, callInteractiveTool).
    #[arg(long)]
    pub tools: bool,
    /// Only delegations (callDelegate, stopRunByDelegate).
    #[arg(long)]
    pub delegations: bool,
    /// Only events matching `.path OP value` (OP: == != > >= < <=; `[]` over arrays), e.g.
    /// `.toolCalls[].toolName == "askUser"`.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Indent the JSON.
    #[arg(long, requires = "json")]
    pub pretty: bool,
    /// Show at most N events (default 100; 0: all).
    #[arg(long, value_name = "N")]
    pub take: Option<usize>,
    /// Skip the first N matching events.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: usize,
    /// Also show N events before and after each one shown.
    #[arg(long, value_name = "N")]
    pub context: Option<usize>,
    /// With --checkpoint: its messages.
    #[arg(long, requires = "checkpoint")]
    pub messages: bool,
    /// Add counts of events, errors, tool calls and delegations.
    #[arg(long)]
    pub summary: bool,
}

impl LogArgs {
    /// Whether any flag asks for events rather than the job's overview alone.
    pub fn wants_events(&self) -> bool {
        self.run.is_some()
            || self.step.is_some()
            || self.event_type.is_some()
            || self.errors
            || self.tools
            || self.delegations
            || self.filter.is_some()
            || self.take.is_some()
            || self.offset > 0
            || self.context.is_some()
    }
}

/// `gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Also remove our images that newer builds superseded: older versions of an image,
    /// untagged images (they lost their tag to a newer build) and all but the newest
    /// install-stage cache of each skill. Never an image a container uses, nor a version someone
    /// tagged (`build --tag`).
    #[arg(long)]
    pub images: bool,
    /// Only report what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// The engine to collect on (kubernetes: the runs whose Lease expired).
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `export`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// YAML for `kubectl apply`: a Job running the Expert of a versioned image (skills and
    /// base-skill as native sidecars, Kubernetes >= 1.29), the egress proxy's Deployment and
    /// Service, and NetworkPolicies. Every variable, the query and each proxy token come from
    /// Secrets you create (the YAML's header lists the keys); no value is written. Experimental:
    /// checked against Kubernetes' schemas, not yet run on a cluster.
    Kubernetes(ExportKubernetesArgs),
}

/// `export kubernetes`.
#[derive(Debug, Args)]
pub struct ExportKubernetesArgs {
    /// With --push-to: the Expert of perstack.toml to build, tag and push first.
    #[arg(requires = "push_to")]
    pub expert: Option<String>,
    /// The versioned image (`perstack-sandbox build <expert> --tag REF --push`) whose Expert the
    /// Job runs; the cluster pulls it and its `REF-…` images.
    #[arg(
        long,
        value_name = "REF",
        required_unless_present = "push_to",
        conflicts_with = "push_to"
    )]
    pub image: Option<String>,
    /// Build EXPERT's version from perstack.toml, tag it REF and push it (as `build EXPERT --tag
    /// REF --push`), then export it.
    #[arg(long, value_name = "REF", requires = "expert")]
    pub push_to: Option<String>,
    /// perstack.toml to build from with --push-to (default: the nearest one in this folder or a
    /// parent).
    #[arg(long, value_name = "PATH", requires = "push_to")]
    pub config: Option<PathBuf>,
    /// The objects' namespace (default: the one `kubectl apply` uses).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The objects' name and prefix (default: the image's repository name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The Secret the query, the variables and the proxy tokens come from (default: NAME).
    #[arg(long, value_name = "SECRET")]
    pub secret_name: Option<String>,
    /// Take variable VAR (or `query`, or `proxy-token-<principal>`) from key KEY of Secret
    /// SECRET instead; repeatable.
    #[arg(long = "secret", value_name = "VAR=SECRET/KEY")]
    pub secrets: Vec<String>,
    /// Mount this PersistentVolumeClaim as the workspace (default: an emptyDir, gone with the
    /// pod).
    #[arg(long, value_name = "CLAIM")]
    pub workspace_pvc: Option<String>,
    /// The emptyDir workspace's size limit.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "10Gi",
        conflicts_with = "workspace_pvc"
    )]
    pub workspace_size: String,
    /// Who base-skill runs as, so its files belong to the workspace's owner (not root).
    #[arg(long, value_name = "UID:GID", default_value = "1000:1000")]
    pub workspace_user: String,
    /// The Job's time limit (activeDeadlineSeconds), e.g. `30m`.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,
}

/// `trust`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Accept the changes runs made to the workspace's trusted inputs, after looking at them
    /// (e.g. `git diff`): runs in the workspace start again. Prints what it accepted.
    #[command(
        after_help = "A run that changes perstack.toml, a dotenv file (.env, .env.local, envPath) or the mock script — through a path the read-only mounts cannot cover — is reported at its end, and every later run in the workspace refuses to start (exit 2) until the change is accepted here. Look first: a prompt-injected run may have planted a base URL, an Expert, a skill or a variable name. The record is kept outside the workspace, in $PERSTACK_SANDBOX_STATE_DIR, else $XDG_STATE_HOME/perstack-sandbox, else ~/.local/state/perstack-sandbox."
    )]
    Accept(TrustArgs),
    /// Show the changes waiting to be accepted, and the runs under way, in the workspace.
    Status(TrustArgs),
}

/// `trust accept` and `trust status`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The workspace (default: the current folder), as given to `run --workspace`.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
}

/// `install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// perstack.toml to use (default: the nearest one in this folder or a parent).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Dotenv file to read (repeatable; default: envPath, else .env and .env.local).
    #[arg(long, value_name = "PATH")]
    pub env_path: Vec<PathBuf>,
    /// Published Experts to lock as well, to run them by key (`run @acme/reviewer@1.2.0 …`);
    /// the file's Experts and their delegates are always locked.
    #[arg(value_name = "EXPERT")]
    pub experts: Vec<String>,
    /// The job id the containers, networks and volumes that list the skills' tools are
    /// labelled with (default: a new one).
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
    /// Start on an engine that cannot hold part of the listing runs' isolation instead of refusing:
    /// today a rootless engine on cgroup v1, which ignores memory, CPU and process limits.
    #[arg(
        long,
        help = "Start on an engine that cannot hold part of the listing runs' isolation instead of \
                refusing: today a rootless engine on cgroup v1, which ignores memory, CPU and \
                process limits; they then ask for none, and say what is missing on stderr \
                and in their isolationReport events (`doctor` says whether this is needed)"
    )]
    pub allow_weaker_isolation: bool,
}

/// The engine a command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendName {
    /// The Docker (or Podman) engine on this machine.
    #[default]
    Docker,
    /// A Kubernetes namespace. EXPERIMENTAL: tested against a mocked API server only, never
    /// run on a real cluster (README "Running on Kubernetes" says what is unverified).
    Kubernetes,
}

/// `--backend`, and where the cluster is for `--backend kubernetes`.
#[derive(Debug, Clone, Default, Args)]
pub struct BackendArgs {
    /// The engine to work on. `kubernetes` is EXPERIMENTAL: tested against a mocked API server
    /// only, never against a real cluster.
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendName,
    /// With --backend kubernetes: the kubeconfig to use (default: as kubectl finds it —
    /// KUBECONFIG, else ~/.kube/config, else the pod's service account).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// With --backend kubernetes: the kubeconfig's context (default: its current one).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// With --backend kubernetes: the namespace (default: the context's, else `default`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// perstack.toml and the rest of what `validate` takes.
    #[command(flatten)]
    pub validate: ValidateArgs,
    /// The engine to check.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `validate` and `doctor`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// perstack.toml to use (default: the nearest one in this folder or a parent).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Why the `runtime` role's command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeArgsError {
    /// A versioned image's runtime was asked for another Expert than its own.
    #[error("this image runs Expert `{only}` only, not `{expert}`")]
    OtherExpert {
        /// The image's Expert (`--only-expert`).
        only: String,
        /// The Expert asked for.
        expert: String,
    },
}

/// This process's command line as `P` (the controller's [`Cli`] or the roles' [`RolesCli`]). A
/// line clap refuses exits as clap says, except a versioned runtime image run by hand, which
/// gets [`direct_run_message`].
pub fn parse<P: Parser>() -> P {
    P::try_parse().unwrap_or_else(|error| {
        let argv: Vec<_> = std::env::args_os().collect();
        match direct_run_message(&argv) {
            Some(message) => {
                eprintln!("error: {message}");
                std::process::exit(crate::exit::Exit::Usage.code());
            }
            None => error.exit(),
        }
    })
}

/// The message for a versioned image's runtime started by hand (`docker run IMAGE "query"`):
/// its ENTRYPOINT is `runtime --only-expert KEY`, and the controller adds `--job-id`, `--run-id`,
/// the Expert and the query. `argv` is the whole command line; `None` unless it is the runtime
/// role of a versioned image without the controller's `--job-id`, so every other mistake keeps
/// clap's own message.
pub fn direct_run_message<S: AsRef<std::ffi::OsStr>>(argv: &[S]) -> Option<String> {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    if words.get(1).map(String::as_str) != Some("runtime") {
        return None;
    }
    let options = words.iter().take_while(|w| *w != "--");
    if options
        .clone()
        .any(|w| w == "--job-id" || w.starts_with("--job-id="))
    {
        return None;
    }
    let expert = words
        .windows(2)
        .find(|pair| pair[0] == "--only-expert")
        .map(|pair| pair[1].clone())?;
    Some(format!(
        "this is the runtime image of Expert `{expert}`, one of the images of a \
         perstack-sandbox version: its skills and workspace tools are in images of their own, so \
         it does not run by itself.\n\
         \x20 Run the version with perstack-sandbox (it starts every image, each walled off):\n\
         \x20     perstack-sandbox run --image <this image's reference> \"<query>\"\n\
         \x20 Or build one image that `docker run` can start on its own:\n\
         \x20     perstack-sandbox build {expert} --standalone --tag <reference>\n\
         \x20     docker run --rm -e <provider key> -v \"$PWD/workspace:/workspace\" <reference> \"<query>\""
    ))
}

impl RuntimeArgs {
    /// Refuses an Expert other than the one a versioned image's `--only-expert` fixes.
    pub fn check_only_expert(&self) -> Result<(), RuntimeArgsError> {
        match &self.only_expert {
            Some(only) if *only != self.expert_key => Err(RuntimeArgsError::OtherExpert {
                only: only.clone(),
                expert: self.expert_key.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// The hidden `skill-host` role.
#[derive(Debug, Args)]
pub struct SkillHostArgs {
    /// The unix socket to listen on.
    #[arg(
        long,
        required_unless_present = "socket_fd",
        conflicts_with = "socket_fd"
    )]
    pub socket: Option<PathBuf>,
    /// An inherited descriptor of a unix socket already listening (a standalone image's skill
    /// in a root of its own, which the socket's folder is outside of).
    #[arg(long, value_name = "FD")]
    pub socket_fd: Option<i32>,
    /// A variable to pass to the server (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// The server command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<std::ffi::OsString>,
}

/// `skill-host` was given no server to run.
#[derive(Debug, thiserror::Error)]
#[error("no command given after --")]
pub struct NoServerCommand;

impl TryFrom<SkillHostArgs> for HostOptions {
    type Error = NoServerCommand;

    fn try_from(args: SkillHostArgs) -> Result<HostOptions, NoServerCommand> {
        let mut command = args.command.into_iter();
        let program = command.next().ok_or(NoServerCommand)?;
        let socket = match (args.socket, args.socket_fd) {
            (_, Some(fd)) => Listen::Inherited(fd),
            (Some(path), None) => Listen::Path(path),
            // clap requires one of the two.
            (None, None) => return Err(NoServerCommand),
        };
        Ok(HostOptions {
            socket,
            pass_env: args.pass_env,
            command: program,
            args: command.collect(),
        })
    }
}

/// The hidden `base-skill` role.
#[derive(Debug, Args)]
pub struct BaseSkillArgs {
    /// The workspace folder.
    #[arg(long)]
    pub workspace: PathBuf,
    /// A protected path its tools refuse to change, `<rule>:<path relative to the workspace>`
    /// (repeated; the controller passes them).
    #[arg(long, value_name = "RULE:PATH")]
    pub protected: Vec<String>,
    /// Run `exec`'s programs in a Landlock domain that keeps the protected paths as they are
    /// (the standalone image, where no read-only mount does).
    #[arg(long)]
    pub confine_exec: bool,
}

/// The hidden `workspace-in` role.
#[derive(Debug, Args)]
pub struct WorkspaceInArgs {
    /// The workspace folder (empty).
    #[arg(long)]
    pub workspace: PathBuf,
    /// The most bytes of file contents the archive may hold.
    #[arg(long)]
    pub max_bytes: u64,
    /// The most entries the archive may hold.
    #[arg(long)]
    pub max_entries: u64,
}

/// The hidden `workspace-out` role.
#[derive(Debug, Args)]
pub struct WorkspaceOutArgs {
    /// The workspace folder.
    #[arg(long)]
    pub workspace: PathBuf,
    /// A protected path left out, as base-skill's `--protected` (repeated).
    #[arg(long, value_name = "RULE:PATH")]
    pub protected: Vec<String>,
}

/// The hidden `workspace-hold` role.
#[derive(Debug, Args)]
pub struct WorkspaceHoldArgs {
    /// Ends by itself after this many seconds (a controller that died does not keep the pod
    /// forever).
    #[arg(long)]
    pub seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["perstack-sandbox", "run"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["expert", "query"]);
        match Cli::parse_from(argv).command {
            Command::Run(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_setting_flag_reaches_the_settings_and_silence_stays_silent() {
        assert_eq!(run_args(&[]).setting_flags(), SettingFlags::default());
        let flags = run_args(&[
            "--provider",
            "mock",
            "--model",
            "m",
            "--reasoning-budget",
            "high",
            "--max-steps",
            "3",
            "--max-retries",
            "0",
            "--timeout",
            "30m",
            "--generation-timeout",
            "60000",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids",
            "32",
            "--ca-certificates",
            "/etc/corp/ca.pem",
            "--runtime-engine",
            "runsc",
        ])
        .setting_flags();
        assert_eq!(
            flags,
            SettingFlags {
                provider: Some("mock".into()),
                model: Some("m".into()),
                reasoning_budget: Some("high".into()),
                max_steps: Some(3),
                max_retries: Some(0),
                // Perstack's milliseconds, or with a unit.
                timeout: Some(Duration::from_secs(1800)),
                generation_timeout: Some(Duration::from_secs(60)),
                memory: Some(64 << 20),
                cpus: Some(0.5),
                pids: Some(32),
                ca_certificates: Some(CaCertificates::File("/etc/corp/ca.pem".into())),
                runtime_engine: Some("runsc".into()),
            }
        );
    }

    #[test]
    fn build_takes_the_ca_bundle_and_a_versioned_run_refuses_one() {
        let Command::Build(build) = Cli::parse_from([
            "perstack-sandbox",
            "build",
            "e",
            "--ca-certificates",
            "host",
        ])
        .command
        else {
            panic!("not build");
        };
        assert_eq!(
            build.setting_flags(),
            SettingFlags {
                ca_certificates: Some(CaCertificates::Host),
                ..SettingFlags::default()
            }
        );
        // A versioned image's images carry the bundle they were built with.
        let versioned = [
            "perstack-sandbox",
            "run",
            "--image",
            "demo:1",
            "--ca-certificates",
            "host",
            "q",
        ];
        assert!(Cli::try_parse_from(versioned).is_err());
    }

    #[test]
    fn bad_limit_flags_are_refused_by_the_parser() {
        for bad in [
            &["--memory", "1m"][..],
            &["--cpus", "0"],
            &["--pids", "0"],
            &["--timeout", "0"],
            &["--timeout", "soon"],
            &["--generation-timeout", "0s"],
            &["--runtime-engine", "run sc"],
            &["--runtime-engine", ""],
        ] {
            let mut argv = vec!["perstack-sandbox", "run"];
            argv.extend_from_slice(bad);
            argv.extend_from_slice(&["expert", "query"]);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn with_an_image_only_the_query_is_given() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["perstack-sandbox", "run"];
            full.extend_from_slice(argv);
            Cli::try_parse_from(full).map(|cli| match cli.command {
                Command::Run(args) => (
                    args.image.clone(),
                    args.expert().to_string(),
                    args.query().to_string(),
                ),
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(
            parse(&["--image", "127.0.0.1:5000/demo:1.0", "Say hi"]).expect("parses"),
            (
                Some("127.0.0.1:5000/demo:1.0".to_string()),
                String::new(),
                "Say hi".to_string()
            )
        );
        assert_eq!(
            parse(&["demo", "Say hi"]).expect("parses"),
            (None, "demo".to_string(), "Say hi".to_string())
        );
        // Without an image the Expert is required; an image replaces perstack.toml.
        assert!(parse(&["Say hi"]).is_err());
        assert!(parse(&["--image", "demo:1", "--config", "p.toml", "q"]).is_err());
    }

    /// `run`'s positionals, flags and `-i` parsed from `argv`.
    fn parsed_run(argv: &[&str]) -> Result<(String, String, bool, bool), clap::Error> {
        let full = ["perstack-sandbox", "run"].iter().chain(argv);
        Cli::try_parse_from(full).map(|cli| match cli.command {
            Command::Run(args) => (
                args.expert().to_string(),
                args.query().to_string(),
                args.continue_latest,
                args.interactive_tool_call_result,
            ),
            other => panic!("{other:?}"),
        })
    }

    /// `--continue -i fitness-assistant next` in every order a person types, for `run` and
    /// `start` alike.
    const ORDERS: [&[&str]; 7] = [
        &["--continue", "-i", "fitness-assistant", "next"],
        &["fitness-assistant", "--continue", "-i", "next"],
        &["fitness-assistant", "next", "--continue", "-i"],
        &["--continue", "fitness-assistant", "-i", "next"],
        &["-i", "fitness-assistant", "next", "--continue"],
        &["fitness-assistant", "--continue", "next", "-i"],
        &["fitness-assistant", "-i", "--continue", "--", "next"],
    ];

    #[test]
    fn flags_may_stand_before_between_or_after_the_expert_and_the_query() {
        let want = (
            "fitness-assistant".to_string(),
            "next".to_string(),
            true,
            true,
        );
        for argv in ORDERS {
            assert_eq!(parsed_run(argv).expect("parses"), want, "{argv:?}");
        }
        // Options with values too, and a query that looks like a flag after `--`.
        assert_eq!(
            parsed_run(&["e", "--max-steps", "3", "--", "-q"]).expect("parses"),
            ("e".to_string(), "-q".to_string(), false, false)
        );
        assert_eq!(
            parsed_run(&["e", "--continue-job", "j1", "q", "--model", "m"]).expect("parses"),
            ("e".to_string(), "q".to_string(), false, false)
        );
        // With --image in any place the one positional is the query.
        for argv in [
            &["--image", "demo:1", "q"][..],
            &["q", "--image", "demo:1"],
            &["q", "--continue", "--image", "demo:1"],
        ] {
            assert_eq!(
                parsed_run(argv).expect("parses"),
                (
                    String::new(),
                    "q".to_string(),
                    argv.contains(&"--continue"),
                    false
                ),
                "{argv:?}"
            );
        }
        // Still refused: a missing query, a missing Expert, a third positional.
        for argv in [
            &["fitness-assistant", "--continue"][..],
            &["--continue", "next"],
            &["e", "q", "extra"],
            &["--image", "demo:1"],
            &[],
        ] {
            assert!(parsed_run(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn start_takes_its_flags_before_between_or_after_the_expert_and_the_query_too() {
        let parsed = |argv: &[&str]| {
            let full = ["perstack-sandbox", "start"].iter().chain(argv);
            Cli::try_parse_from(full).map(|cli| match cli.command {
                Command::Start(args) => (
                    args.expert,
                    args.query,
                    args.flags.continue_latest,
                    args.flags.interactive_tool_call_result,
                ),
                other => panic!("{other:?}"),
            })
        };
        let both = (
            Some("fitness-assistant".to_string()),
            Some("next".to_string()),
            true,
            true,
        );
        for argv in ORDERS {
            assert_eq!(parsed(argv).expect("parses"), both, "{argv:?}");
        }
        // Both positionals are optional: one is the Expert, none asks for both.
        for argv in [
            &["--continue", "fitness-assistant"][..],
            &["fitness-assistant", "--continue"],
        ] {
            assert_eq!(
                parsed(argv).expect("parses"),
                (Some("fitness-assistant".to_string()), None, true, false),
                "{argv:?}"
            );
        }
        assert_eq!(
            parsed(&["--continue"]).expect("parses"),
            (None, None, true, false)
        );
        assert!(parsed(&["e", "q", "extra"]).is_err());
    }

    #[test]
    fn the_provider_help_lists_what_works_what_does_not_yet_and_the_default() {
        assert_eq!(
            provider_help(),
            "Provider: anthropic, google, openai, ollama, azure-openai, deepseek, mock; not \
             supported yet: amazon-bedrock, google-vertex (default: `[provider] providerName` in \
             perstack.toml, else anthropic)"
        );
    }

    fn runtime_args(extra: &[&str]) -> Result<RuntimeArgs, RuntimeArgsError> {
        let mut argv = vec![
            "perstack-sandbox",
            "runtime",
            "--job-id",
            "j",
            "--run-id",
            "r",
        ];
        argv.extend_from_slice(extra);
        let RoleCommand::Runtime(args) = RolesCli::parse_from(argv).command else {
            panic!("runtime");
        };
        args.check_only_expert().map(|()| args)
    }

    #[test]
    fn the_roles_executable_has_every_hidden_command_of_the_controller_and_nothing_else() {
        use clap::CommandFactory;
        let names = |command: clap::Command, hidden: bool| {
            command
                .get_subcommands()
                .filter(|c| c.is_hide_set() == hidden)
                .map(|c| c.get_name().to_string())
                .collect::<Vec<_>>()
        };
        let roles = names(RolesCli::command(), true);
        assert_eq!(roles, names(Cli::command(), true));
        assert!(names(RolesCli::command(), false).is_empty());
        for role in [
            "runtime",
            "skill-host",
            "base-skill",
            "egress-proxy",
            "confine",
            "standalone",
            "engine-probe",
            "workspace-in",
            "workspace-out",
            "workspace-hold",
            "runtime-stop",
        ] {
            assert!(roles.iter().any(|r| r == role), "{role} in {roles:?}");
        }
        // The roles executable sits at BINARY_PATH, so it answers as perstack-sandbox, and its
        // version carries the build mark the controller looks for.
        let version = RolesCli::command().render_version();
        assert!(version.starts_with("perstack-sandbox "), "{version}");
        assert!(
            version.contains(crate::contract::build_id::BUILD_MARK),
            "{version}"
        );
    }

    #[test]
    fn a_versioned_image_runtime_refuses_other_experts() {
        assert_eq!(
            runtime_args(&["--only-expert", "main", "helper", "q"])
                .expect_err("refused")
                .to_string(),
            "this image runs Expert `main` only, not `helper`"
        );
        assert!(runtime_args(&["--only-expert", "main", "main", "q"]).is_ok());
        assert!(runtime_args(&["helper", "q"]).is_ok());
    }

    #[test]
    fn a_versioned_runtime_started_by_hand_says_how_to_run_it() {
        let by_hand = [
            "perstack-sandbox",
            "runtime",
            "--only-expert",
            "demo",
            "Say hello",
        ];
        let message = direct_run_message(&by_hand).expect("a message");
        assert!(
            message.contains("runtime image of Expert `demo`"),
            "{message}"
        );
        assert!(
            message.contains("perstack-sandbox run --image"),
            "{message}"
        );
        assert!(
            message.contains("build demo --standalone --tag"),
            "{message}"
        );
        assert!(Cli::try_parse_from(by_hand).is_err());
        // The controller's own command line, other roles and a runtime without a fixed Expert
        // keep clap's handling.
        for argv in [
            &[
                "perstack-sandbox",
                "runtime",
                "--only-expert",
                "demo",
                "--job-id",
                "j",
            ][..],
            &[
                "perstack-sandbox",
                "runtime",
                "--job-id=j",
                "--only-expert",
                "demo",
            ],
            &["perstack-sandbox", "runtime", "q"],
            &["perstack-sandbox", "run", "--only-expert", "demo"],
        ] {
            assert_eq!(direct_run_message(argv), None, "{argv:?}");
        }
    }

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
