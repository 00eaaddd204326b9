//! The preflight check that asks the engine which OCI runtimes it has registered: the runtime a
//! run asks for (`--runtime-engine`, `[sandbox] runtime`) must be one of them. What to say about
//! a missing one is preflight's (`preflight/runtime_engine.rs`).

use super::docker::{DockerClient, DockerError};
use crate::config::RuntimeEngineSetting;
use crate::sandbox::preflight::{Problems, check_runtime_engine_on};

/// The runtime `requested` is registered with this engine (asks nothing when no runtime is
/// named). Runs right after connecting, before anything is created or recorded. The outer
/// error is the engine's; the inner one, the runtime's problem.
pub(crate) async fn check_registered(
    docker: &DockerClient,
    requested: &RuntimeEngineSetting,
) -> Result<Result<(), Problems>, DockerError> {
    if requested.name.is_none() {
        return Ok(Ok(()));
    }
    let (registered, _default) = docker.runtimes().await?;
    Ok(
        check_runtime_engine_on(docker.engine().kind, requested, &registered)
            .map_err(|problem| Problems(vec![problem])),
    )
}
