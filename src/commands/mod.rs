//! The work behind each subcommand. Each returns an [`crate::exit::Exit`] and prints its own
//! errors, so `main` stays a dispatcher.

mod artifacts;
pub mod doctor;
pub mod run;
pub mod validate;

use std::path::{Path, PathBuf};

use crate::config::{self, LoadedConfig};
use crate::exit::Exit;

/// The current folder, or the exit code after saying why it cannot be read.
fn current_dir() -> Result<PathBuf, Exit> {
    std::env::current_dir().map_err(|e| {
        eprintln!("error: cannot read the current folder: {e}");
        Exit::Usage
    })
}

/// Finds (`--config`, else upward from `cwd`) and loads perstack.toml, or prints every problem
/// and gives the exit code.
fn load_config(explicit: Option<&Path>, cwd: &Path) -> Result<LoadedConfig, Exit> {
    config::discover(explicit, cwd)
        .and_then(|path| config::load(&path))
        .map_err(|error| {
            eprintln!("error: {error}");
            Exit::Usage
        })
}
