//! The hidden roles played inside containers: the agent runtime, the skill host, base-skill, the
//! egress proxy, the test fixture server, doctor's probes, the standalone supervisor and its
//! confinement, and a Kubernetes run pod's workspace copy (`workspace-in`, `workspace-out`,
//! `workspace-hold`; `sandbox/k8s/workspace.rs`). Both executables hand a [`RoleCommand`] to
//! [`run_and_exit`]: the controller's, and `perstack-sandbox-roles`, which our images carry and
//! which reaches nothing else. Each role gives the process's exit code or a [`RoleError`],
//! printed as is.

use crate::cli::{
    BaseSkillArgs, NoServerCommand, RoleCommand, RuntimeArgsError, SkillHostArgs,
    WorkspaceHoldArgs, WorkspaceInArgs, WorkspaceOutArgs,
};
use crate::contract::runtime_args::RuntimeArgs;
use crate::exit::Exit;
use crate::files::Owner;
use crate::proxy::ProxyError;
use crate::runtime;
use crate::skill::base::archive::{self, ArchiveError, Caps};
use crate::skill::host::{self, HostError, HostOptions};
use crate::skill::server::ServeError;
use crate::skill::{base, fixture};
use crate::trust::inputs::ProtectedPath;

/// Why a role could not do its work. Each message starts with who says it: the role's name
/// (its stderr ends up in a container's log), or `error` for a refused runtime command line.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The runtime's command line cannot be used.
    #[error("error: {0}")]
    RuntimeArgs(#[from] RuntimeArgsError),
    /// `skill-host` was given no server.
    #[error("skill-host: {0}")]
    NoServerCommand(#[from] NoServerCommand),
    /// The skill host failed.
    #[error("skill-host: {0}")]
    SkillHost(#[from] HostError),
    /// base-skill failed.
    #[error("base-skill: {0}")]
    BaseSkill(#[source] base::BaseServeError),
    /// The egress proxy failed.
    #[error("egress-proxy: {0}")]
    EgressProxy(#[from] ProxyError),
    /// The fixture MCP server failed.
    #[error("fixture-mcp: {0}")]
    FixtureMcp(#[source] ServeError),
    /// The workspace could not be copied in or out.
    #[error("{role}: {error}")]
    Workspace {
        /// `workspace-in` or `workspace-out`.
        role: &'static str,
        /// Why.
        #[source]
        error: ArchiveError,
    },
}

impl From<&RoleError> for Exit {
    fn from(error: &RoleError) -> Exit {
        match error {
            RoleError::RuntimeArgs(_) | RoleError::NoServerCommand(_) => Exit::Usage,
            RoleError::SkillHost(_)
            | RoleError::BaseSkill(_)
            | RoleError::EgressProxy(_)
            | RoleError::FixtureMcp(_)
            | RoleError::Workspace { .. } => Exit::RunFailed,
        }
    }
}

/// Plays `role` and exits with its code.
pub fn run_and_exit(role: RoleCommand) -> ! {
    // Before any thread exists: Landlock and seccomp bind the calling thread (confine/role.rs).
    if let RoleCommand::Confine(args) = role {
        std::process::exit(confine(args));
    }
    crate::startup::run_and_exit(dispatch(role))
}

/// Plays `role` on the async runtime: its exit code, its error printed.
pub async fn dispatch(role: RoleCommand) -> i32 {
    match role {
        RoleCommand::Runtime(args) => printed(runtime(args).await),
        RoleCommand::SkillHost(args) => printed(skill_host(args).await),
        RoleCommand::BaseSkill(args) => printed(base_skill(args).await),
        RoleCommand::EgressProxy => printed(egress_proxy().await),
        RoleCommand::FixtureMcp => printed(fixture_mcp().await),
        RoleCommand::EngineProbe(args) => engine_probe(args),
        RoleCommand::WorkspaceIn(args) => printed(workspace_in(args).await),
        RoleCommand::WorkspaceOut(args) => printed(workspace_out(args).await),
        RoleCommand::WorkspaceHold(args) => printed(workspace_hold(args).await),
        RoleCommand::RuntimeStop => runtime_stop(),
        RoleCommand::Standalone(args) => crate::standalone::main(args).await,
        // Started in `run_and_exit` before the async runtime; here only for completeness.
        RoleCommand::Confine(args) => confine(args),
    }
}

/// A role's exit code; its error printed as is (it names the role).
fn printed(result: Result<i32, RoleError>) -> i32 {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{error}");
            Exit::from(&error).code()
        }
    }
}

/// `runtime`: the agent loop. As PID 1 of its container it handles SIGTERM itself, or
/// `docker stop` would wait out its grace period.
pub async fn runtime(args: RuntimeArgs) -> Result<i32, RoleError> {
    args.check_only_expert()?;
    let Ok(mut sigterm) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return Ok(runtime::run(args).await);
    };
    Ok(tokio::select! {
        code = runtime::run(args) => code,
        _ = sigterm.recv() => Exit::Terminated.code(),
    })
}

/// `skill-host`: relays a unix socket to an MCP server's stdio; gives the server's exit code.
pub async fn skill_host(args: SkillHostArgs) -> Result<i32, RoleError> {
    Ok(host::run(HostOptions::try_from(args)?).await?)
}

/// `base-skill`: the workspace tools over stdio.
pub async fn base_skill(args: BaseSkillArgs) -> Result<i32, RoleError> {
    let protected = protected_paths(&args.protected);
    base::serve_stdio(args.workspace, protected, args.confine_exec)
        .await
        .map_err(RoleError::BaseSkill)?;
    Ok(Exit::Success.code())
}

/// `egress-proxy`: carries allowlisted traffic out of a run's internal networks.
pub async fn egress_proxy() -> Result<i32, RoleError> {
    crate::proxy::run(std::env::var(crate::contract::proxy::PROXY_CONFIG_VAR).ok()).await?;
    Ok(Exit::Success.code())
}

/// `fixture-mcp`: the tests' MCP server over stdio.
pub async fn fixture_mcp() -> Result<i32, RoleError> {
    fixture::serve_stdio()
        .await
        .map_err(RoleError::FixtureMcp)?;
    Ok(Exit::Success.code())
}

/// `engine-probe`: one of `doctor`'s probe containers (`engine_probe.rs`). Exit 0 when it did
/// its part; otherwise the error on stderr, which `doctor` shows.
pub fn engine_probe(args: crate::cli::EngineProbeArgs) -> i32 {
    use crate::cli::EngineProbeAction;
    let done = match &args.action {
        EngineProbeAction::Listen { socket, workspace } => {
            super::engine_probe::listen(socket, workspace)
        }
        EngineProbeAction::Connect { socket, tcp } => {
            super::engine_probe::connect(socket, *tcp, std::time::Duration::from_secs(30))
        }
    };
    match done {
        Ok(()) => Exit::Success.code(),
        Err(error) => {
            eprintln!("engine-probe: {error}");
            Exit::RunFailed.code()
        }
    }
}

/// `confine`: confines this process by a policy and executes a program (the standalone image's
/// walls between principals). It must run before any other thread exists, so `main` calls it
/// before the async runtime starts.
pub fn confine(args: crate::confine::role::ConfineArgs) -> i32 {
    crate::confine::role::main(args)
}

/// The protected paths of `--protected` arguments (`<rule>:<path>`); anything else is ignored.
fn protected_paths(args: &[String]) -> Vec<ProtectedPath> {
    args.iter()
        .filter_map(|arg| ProtectedPath::from_arg(arg))
        .collect()
}

/// What `workspace-in` does with its stdin, `input`.
pub(crate) fn copy_in(
    args: &WorkspaceInArgs,
    input: impl std::io::Read,
) -> Result<archive::Unpacked, ArchiveError> {
    let caps = Caps {
        bytes: args.max_bytes,
        entries: args.max_entries,
    };
    archive::unpack(input, &args.workspace, &[], caps, Owner::process())
}

/// What `workspace-out` writes to its stdout, `out`.
pub(crate) fn copy_out(
    args: &WorkspaceOutArgs,
    out: impl std::io::Write,
) -> Result<archive::Tree, ArchiveError> {
    let protected = protected_paths(&args.protected);
    let tree = archive::walk(&args.workspace, &protected)?;
    archive::write(&args.workspace, &tree, out)?;
    Ok(tree)
}

/// `workspace-in`: the tar on stdin unpacked into the (empty) workspace folder, under the
/// archive's rules and caps (`skill::base::archive`); what it left out is said on stderr.
pub async fn workspace_in(args: WorkspaceInArgs) -> Result<i32, RoleError> {
    let failed = |error| RoleError::Workspace {
        role: "workspace-in",
        error,
    };
    let unpacked = tokio::task::spawn_blocking(move || copy_in(&args, std::io::stdin().lock()))
        .await
        .map_err(|e| failed(ArchiveError::Read(std::io::Error::other(e))))?
        .map_err(failed)?;
    for left in &unpacked.left_out {
        eprintln!(
            "workspace-in: left out {}: {}",
            left.path.display(),
            left.why
        );
    }
    Ok(Exit::Success.code())
}

/// `workspace-out`: the workspace folder as a tar on stdout, less the run data and the
/// protected paths; what cannot travel is said on stderr.
pub async fn workspace_out(args: WorkspaceOutArgs) -> Result<i32, RoleError> {
    let failed = |error| RoleError::Workspace {
        role: "workspace-out",
        error,
    };
    let tree = tokio::task::spawn_blocking(move || {
        copy_out(&args, std::io::BufWriter::new(std::io::stdout().lock()))
    })
    .await
    .map_err(|e| failed(ArchiveError::Write(std::io::Error::other(e))))?
    .map_err(failed)?;
    for left in &tree.left_out {
        eprintln!(
            "workspace-out: left out {}: {}",
            left.path.display(),
            left.why
        );
    }
    Ok(Exit::Success.code())
}

/// `workspace-hold`: waits for SIGTERM (the pod's deletion), or `--seconds` at most.
pub async fn workspace_hold(args: WorkspaceHoldArgs) -> Result<i32, RoleError> {
    let limit = tokio::time::sleep(std::time::Duration::from_secs(args.seconds));
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut sigterm) => {
            eprintln!(
                "workspace-hold: holding the pod until SIGTERM or {} s",
                args.seconds
            );
            tokio::select! {
                _ = sigterm.recv() => {}
                () = limit => {}
            }
        }
        Err(_) => limit.await,
    }
    Ok(Exit::Success.code())
}

/// `runtime-stop`: SIGTERM to PID 1 of this container, the runtime, which handles it by ending
/// at once (`runtime`); a process of the container cannot send PID 1 a signal it does not
/// handle. Exit 0 when the signal went.
pub fn runtime_stop() -> i32 {
    use nix::sys::signal::{Signal, kill};
    match kill(nix::unistd::Pid::from_raw(1), Signal::SIGTERM) {
        Ok(()) => Exit::Success.code(),
        Err(error) => {
            eprintln!("runtime-stop: cannot signal the runtime (PID 1): {error}");
            Exit::RunFailed.code()
        }
    }
}
