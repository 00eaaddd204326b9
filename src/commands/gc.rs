//! `perstack-sandbox gc`: remove what runs whose controller is gone left behind.

use crate::cli::{BackendName, GcArgs};
use crate::exit::Exit;
use crate::sandbox::engine::docker::{DockerClient, DockerError};
use crate::sandbox::engine::gc::{GcOptions, sweep};

/// Why nothing could be collected.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The engine did not answer or failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

impl From<&GcError> for Exit {
    fn from(error: &GcError) -> Exit {
        match error {
            GcError::Docker(_) => Exit::Docker,
        }
    }
}

/// Runs the command; prints what it found and removed.
pub async fn run(args: GcArgs) -> Result<Exit, GcError> {
    if args.backend.backend == BackendName::Kubernetes {
        return Ok(super::kubernetes::gc(&args.backend, args.dry_run).await);
    }
    let docker = DockerClient::connect().await?;
    let options = GcOptions {
        images: args.images,
        dry_run: args.dry_run,
    };
    let report = sweep(&docker, options).await?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for run in &report.stale {
        println!(
            "{verb} run {} (job {}): {} resource(s), its controller is gone",
            run.run_id,
            run.job_id.as_deref().unwrap_or("?"),
            run.resources
        );
    }
    for image in &report.images {
        println!(
            "{verb} image {} ({}), superseded by a newer build",
            image.tags.first().map_or(image.id.as_str(), String::as_str),
            crate::commands::images::human_size(image.size)
        );
    }
    for failure in &report.failures {
        eprintln!("warning: could not remove {failure}");
    }
    if report.elsewhere > 0 {
        println!(
            "left {} resource(s) of controllers on other machines sharing this engine",
            report.elsewhere
        );
    }
    if report.stale.is_empty() && report.images.is_empty() {
        println!("nothing to remove");
    } else if !args.dry_run {
        println!(
            "removed {} container(s), {} volume(s), {} network(s), {} image(s)",
            report.removed.containers,
            report.removed.volumes,
            report.removed.networks,
            report.images.len()
        );
    }
    Ok(Exit::Success)
}
