//! Stage 4: the Docker engine. Connects, refuses an engine that cannot run the containers as a
//! run requires (`engine/info.rs`), runs the checks only the engine can answer (the OCI runtime
//! asked for is registered; every base image is here already: there is no registry), and sweeps
//! what earlier runs left.

use crate::config::{Config, RuntimeEngineSetting, SettingSource};
use crate::sandbox::engine::base_images::check_base_images;
use crate::sandbox::engine::docker::DockerClient;
use crate::sandbox::engine::gc::{GcOptions, sweep};
use crate::sandbox::engine::runtime_engine::check_registered;

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
/// that cannot give the containers what a run requires is refused here, before anything starts,
/// unless `allow_weaker` (`--allow-weaker-isolation`) accepts what it lacks: then the first
/// notice says what is missing.
pub(super) async fn connect(
    config: &Config,
    expert: &str,
    runtime: &RuntimeEngineSetting,
    allow_weaker: bool,
) -> Result<Engine, RunError> {
    let docker = DockerClient::connect().await?;
    if let Some(refusal) = docker.engine().refusal(allow_weaker) {
        return Err(RunError::EngineUnfit(refusal));
    }
    let mut notices = Vec::new();
    if let Some(weaker) = docker.engine().weaker_isolation() {
        notices.push(Notice::WeakerIsolation(weaker.summary()));
    }
    check_registered(&docker, runtime)
        .await?
        .map_err(RunError::Preflight)?;
    if let Some(name) = &runtime.name {
        let chosen_by = match runtime.source {
            SettingSource::CommandLine => "--runtime-engine",
            _ => "[sandbox] runtime",
        };
        notices.push(Notice::RuntimeEngine {
            name: name.clone(),
            chosen_by,
        });
    }
    check_base_images(&docker, config, expert)
        .await?
        .map_err(RunError::Preflight)?;
    // Whatever earlier runs left behind (their controller was killed) goes first, so stale
    // containers never pile up even when nobody runs `gc`.
    match sweep(&docker, GcOptions::default()).await {
        Ok(report) if !report.stale.is_empty() => notices.push(Notice::SweptLeftovers {
            resources: report.removed.containers + report.removed.volumes + report.removed.networks,
            runs: report.stale.len(),
        }),
        Ok(_) => {}
        Err(error) => notices.push(Notice::SweepFailed(error)),
    }
    Ok(Engine { docker, notices })
}
