//! The `perstack-sandbox` executable: the host's commands, and every in-container role too
//! (the images carry `perstack-sandbox-roles`, which has the roles alone; see
//! `src/bin/perstack-sandbox-roles.rs`). `main` only dispatches: each command gives its exit code
//! or its error, printed here once.

// As in the library (lib.rs): no function over clippy.toml's `too-many-lines-threshold`.
#![warn(clippy::too_many_lines)]

use std::fmt::Display;

use perstack_sandbox::cli::{self, Cli, Command};
use perstack_sandbox::commands::{self, roles};
use perstack_sandbox::exit::Exit;
use perstack_sandbox::startup;

fn main() {
    match cli::parse::<Cli>().command {
        Command::Role(role) => roles::run_and_exit(role),
        command => startup::run_and_exit(dispatch(command)),
    }
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
        // Handed to `roles::run_and_exit` in `main` (`confine` must start before any thread);
        // here only for completeness.
        Command::Role(role) => roles::dispatch(role).await,
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
