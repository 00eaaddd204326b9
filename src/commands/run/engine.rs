//! Stage 4: the Docker engine. Connects, refuses an engine that cannot run the containers as a
//! run requires (`engine/info.rs`), runs the one check only the engine can answer (every base
//! image must be here already: there is no registry), and sweeps what earlier runs left.

use crate::config::Config;
use crate::sandbox::engine::base_images::check_base_images;
use crate::sandbox::engine::docker::DockerClient;
use crate::sandbox::engine::gc::{GcOptions, sweep};

use super::RunError;
use super::notice::Notice;

/// An engine the run can use.
pub(super) struct Engine {
    /// The client.
    pub docker: DockerClient,
    /// What to tell the user.
    pub notices: Vec<Notice>,
}

/// Connects and checks; nothing has been created or recorded yet when this fails. An engine
/// that cannot give the containers what a run requires is refused here, before anything starts.
pub(super) async fn connect(config: &Config, expert: &str) -> Result<Engine, RunError> {
    let docker = DockerClient::connect().await?;
    if let Some(refusal) = docker.engine().refusal() {
        return Err(RunError::EngineUnfit(refusal));
    }
    check_base_images(&docker, config, expert)
        .await?
        .map_err(RunError::Preflight)?;
    // Whatever earlier runs left behind (their controller was killed) goes first, so stale
    // containers never pile up even when nobody runs `gc`.
    let notices = match sweep(&docker, GcOptions::default()).await {
        Ok(report) if !report.stale.is_empty() => vec![Notice::SweptLeftovers {
            resources: report.removed.containers + report.removed.volumes + report.removed.networks,
            runs: report.stale.len(),
        }],
        Ok(_) => Vec::new(),
        Err(error) => vec![Notice::SweepFailed(error)],
    };
    Ok(Engine { docker, notices })
}
