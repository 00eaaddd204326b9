//! The work behind each subcommand. A host command returns the [`Exit`](crate::exit::Exit) it
//! ends with, or its own error type (`RunError`, `BuildError`, …); each error converts to its
//! exit code in one `impl From<&Error> for Exit`, and `main` prints it once, as
//! `error: {message}` with its hints. A command prints its own output (listings, progress), never
//! its error.

// Each command reads as its stages: no function over clippy.toml's `too-many-lines-threshold`.
#![warn(clippy::too_many_lines)]

mod artifacts;
pub mod build;
pub mod doctor;
mod engine_probe;
pub mod export;
pub mod gc;
mod image_executable;
pub mod images;
pub mod init;
pub mod install;
mod kubernetes;
pub mod log;
mod registry;
pub mod roles;
pub mod run;
pub mod start;
pub mod trust;
pub mod validate;

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, LoadedConfig};

/// Why perstack.toml could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The folder to search from is unreadable.
    #[error("cannot read the current folder: {0}")]
    CurrentDir(#[source] std::io::Error),
    /// Not found, unreadable or invalid (every problem of the file).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Finds (`--config`, else upward from the current folder) and loads perstack.toml. Gives the
/// current folder with it.
fn load_config(explicit: Option<&Path>) -> Result<(PathBuf, LoadedConfig), LoadError> {
    let cwd = std::env::current_dir().map_err(LoadError::CurrentDir)?;
    let loaded = config::discover(explicit, &cwd).and_then(|path| config::load(&path))?;
    Ok((cwd, loaded))
}
