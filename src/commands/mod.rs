//! The work behind each subcommand. Each returns an [`crate::exit::Exit`] and prints its own
//! errors, so `main` stays a dispatcher.

mod artifacts;
pub mod build;
pub mod doctor;
pub mod gc;
pub mod images;
pub mod run;
mod run_image;
pub mod validate;

use std::path::{Path, PathBuf};

use crate::config::{self, LoadedConfig};
use crate::exit::Exit;

/// Finds (`--config`, else upward from the current folder) and loads perstack.toml. Gives the
/// current folder with it, or prints every problem and gives the exit code.
fn load_config(explicit: Option<&Path>) -> Result<(PathBuf, LoadedConfig), Exit> {
    let cwd = std::env::current_dir().map_err(|e| {
        eprintln!("error: cannot read the current folder: {e}");
        Exit::Usage
    })?;
    config::discover(explicit, &cwd)
        .and_then(|path| config::load(&path))
        .map(|loaded| (cwd, loaded))
        .map_err(|error| {
            eprintln!("error: {error}");
            Exit::Usage
        })
}
