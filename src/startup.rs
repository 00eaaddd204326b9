//! What both executables (`perstack-sandbox` and `perstack-sandbox-roles`) do around a
//! command: diagnostics on stderr, the async runtime, and the exit.

use std::future::Future;

use crate::exit::Exit;

/// Runs `command` on a multi-threaded async runtime and exits with its code. Dropping the
/// runtime would wait for blocked stdin readers (the MCP servers'), so it exits at once.
pub fn run_and_exit(command: impl Future<Output = i32>) -> ! {
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
    let code = runtime.block_on(command);
    std::process::exit(code);
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
