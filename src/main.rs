//! The `perstack-sandbox` executable: every role, host and in-container, in one static binary.

use clap::Parser;

use perstack_sandbox::cli::{Cli, Command};
use perstack_sandbox::commands;
use perstack_sandbox::exit::Exit;
use perstack_sandbox::runtime::{self, RuntimeArgs};
use perstack_sandbox::skill::{base, fixture, host};

fn main() {
    let cli = Cli::parse();
    // Before any thread exists: Landlock and seccomp bind the calling thread (confine/role.rs).
    if let Command::Confine(args) = cli.command {
        std::process::exit(perstack_sandbox::confine::role::main(args));
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
        Command::Run(args) => commands::run::run(args).await.code(),
        Command::Build(args) => commands::build::run(args).await.code(),
        Command::Validate(args) => commands::validate::run(args).code(),
        Command::Doctor(args) => commands::doctor::run(args).await.code(),
        Command::Images => commands::images::run().await.code(),
        Command::Gc(args) => commands::gc::run(args).await.code(),
        Command::Runtime(args) => {
            if let Some(only) = args.only_expert.as_deref().filter(|o| *o != args.expert) {
                eprintln!(
                    "error: this image runs Expert `{only}` only, not `{}`",
                    args.expert
                );
                return Exit::Usage.code();
            }
            let provider = match args.provider.as_deref() {
                None => None,
                Some(name) => match perstack_sandbox::config::ProviderName::parse(name) {
                    Some(p) => Some(p),
                    None => {
                        eprintln!("error: --provider {name}: unknown provider");
                        return Exit::Usage.code();
                    }
                },
            };
            let interactive_tool_call_result = match args.interactive_tool_call_result.as_deref() {
                None => None,
                Some(json) => match serde_json::from_str(json) {
                    Ok(result) => Some(result),
                    Err(e) => {
                        eprintln!("error: --interactive-tool-call-result: {e}");
                        return Exit::Usage.code();
                    }
                },
            };
            let args = RuntimeArgs {
                spec: args.spec,
                checkpoint_stdin: args.checkpoint_stdin,
                interactive_tool_call_result,
                job_id: args.job_id,
                run_id: args.run_id,
                provider,
                model: args.model,
                max_steps: args.max_steps,
                max_retries: args.max_retries,
                timeout_ms: args.timeout,
                reasoning_budget: args.reasoning_budget,
                expert_key: args.expert,
                query: args.query,
            };
            // As PID 1 of its container the runtime must handle SIGTERM itself, or `docker stop`
            // waits out its grace period.
            let Ok(mut sigterm) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return runtime::run(args).await;
            };
            tokio::select! {
                code = runtime::run(args) => code,
                _ = sigterm.recv() => Exit::Terminated.code(),
            }
        }
        Command::SkillHost(args) => {
            let mut command = args.command.into_iter();
            let Some(program) = command.next() else {
                eprintln!("skill-host: no command given after --");
                return Exit::Usage.code();
            };
            let options = host::HostOptions {
                socket: args.socket,
                pass_env: args.pass_env,
                command: program,
                args: command.collect(),
            };
            match host::run(options).await {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("skill-host: {error}");
                    Exit::RunFailed.code()
                }
            }
        }
        Command::BaseSkill(args) => match base::serve_stdio(args.workspace).await {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("base-skill: {error}");
                Exit::RunFailed.code()
            }
        },
        Command::EgressProxy => {
            match perstack_sandbox::proxy::run(std::env::var("PERSTACK_PROXY_CONFIG").ok()).await {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("egress-proxy: {error}");
                    Exit::RunFailed.code()
                }
            }
        }
        Command::Confine(args) => perstack_sandbox::confine::role::main(args),
        Command::FixtureMcp => match fixture::serve_stdio().await {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("fixture-mcp: {error}");
                Exit::RunFailed.code()
            }
        },
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
