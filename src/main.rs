//! The `perstack-sandbox` executable: every role, host and in-container, in one static binary.
//! `main` only dispatches: each command gives its exit code or its error, printed here once.

// As in the library (lib.rs): no function over clippy.toml's `too-many-lines-threshold`.
#![warn(clippy::too_many_lines)]

use std::fmt::Display;

use clap::Parser;

use perstack_sandbox::cli::{Cli, Command};
use perstack_sandbox::commands::{self, roles};
use perstack_sandbox::exit::Exit;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let argv: Vec<_> = std::env::args_os().collect();
            match perstack_sandbox::cli::direct_run_message(&argv) {
                Some(message) => {
                    eprintln!("error: {message}");
                    std::process::exit(Exit::Usage.code());
                }
                None => error.exit(),
            }
        }
    };
    // Before any thread exists: Landlock and seccomp bind the calling thread (confine/role.rs).
    if let Command::Confine(args) = cli.command {
        std::process::exit(roles::confine(args));
    }
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(Exit::RunFailed.code());
        }
    };
    let code = runtime.block_on(dispatch(cli.command));
    // Dropping the runtime would wait for blocked stdin readers (the MCP servers'); exit now.
    std::process::exit(code);
}

async fn dispatch(command: Command) -> i32 {
    match command {
        Command::Run(args) => host(commands::run::run(args).await),
        Command::Start(args) => host(commands::start::start(args).await),
        Command::Build(args) => host(commands::build::run(args).await),
        Command::Export(command) => host(commands::export::run(command).await),
        Command::Install(args) => host(commands::install::run(args).await),
        Command::Validate(args) => host(commands::validate::run(args)),
        Command::Init(args) => host(commands::init::run(args)),
        Command::Doctor(args) => commands::doctor::run(args).await.code(),
        Command::Images => host(commands::images::run().await),
        Command::Log(args) => host(commands::log::run(args)),
        Command::Gc(args) => host(commands::gc::run(args).await),
        Command::Trust(command) => host(commands::trust::run(command)),
        Command::Runtime(args) => role(roles::runtime(args).await),
        Command::SkillHost(args) => role(roles::skill_host(args).await),
        Command::BaseSkill(args) => role(roles::base_skill(args).await),
        Command::EgressProxy => role(roles::egress_proxy().await),
        Command::FixtureMcp => role(roles::fixture_mcp().await),
        Command::EngineProbe(args) => roles::engine_probe(args),
        Command::WorkspaceIn(args) => role(roles::workspace_in(args).await),
        Command::WorkspaceOut(args) => role(roles::workspace_out(args).await),
        Command::WorkspaceHold(args) => role(roles::workspace_hold(args).await),
        Command::RuntimeStop => roles::runtime_stop(),
        Command::Standalone(args) => perstack_sandbox::standalone::main(args).await,
        // Dispatched in `main` before the async runtime starts; here only for completeness.
        Command::Confine(args) => roles::confine(args),
    }
}

/// A host command's exit code; its error, if any, printed once with its hints.
fn host<E>(result: Result<Exit, E>) -> i32
where
    E: Display,
    for<'a> &'a E: Into<Exit>,
{
    match result {
        Ok(exit) => exit.code(),
        Err(error) => {
            eprintln!("error: {error}");
            (&error).into().code()
        }
    }
}

/// A role's exit code; its error printed as is (it names the role).
fn role(result: Result<i32, roles::RoleError>) -> i32 {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{error}");
            Exit::from(&error).code()
        }
    }
}

/// Diagnostics on stderr, never stdout (stdout is the event stream or an MCP channel).
/// `PERSTACK_SANDBOX_LOG=debug` turns them up.
fn init_tracing() {
    let level = match std::env::var("PERSTACK_SANDBOX_LOG").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("info") => tracing::Level::INFO,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::WARN,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();
}
