//! The seam between the controller and what runs a plan: [`Backend`].
//!
//! The controller (`commands/run/execute.rs`) decides *when*: start the run, relay it, ask the
//! runtime to stop on Ctrl-C, remove everything however it ended. A backend decides *how* on its
//! engine: the Docker engine today ([`DockerClient`]); a Kubernetes namespace next
//! (`sandbox/k8s/`, whose objects are already what `export kubernetes` writes). The plan
//! (`sandbox/plan`) stays pure and knows no backend; each backend turns it into its own objects.

use std::future::Future;

use crate::render::Output;
use crate::sandbox::engine::docker::{DockerClient, DockerError};
use crate::sandbox::engine::run::{EventTap, RunError, RunIds, RunReport, TimeLimit};
use crate::sandbox::plan::RunPlan;

/// Why a backend could not do what the controller asked, besides running the plan.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The Docker engine's.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The Kubernetes API's.
    #[cfg(feature = "kubernetes")]
    #[error(transparent)]
    Kubernetes(#[from] crate::sandbox::k8s::client::KubeError),
}

/// What the first Ctrl-C set going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopping {
    /// Nothing: the runtime is not running (any more), or the backend has nothing to ask;
    /// the controller stops at once.
    Nothing,
    /// The runtime stops after the step under way (Docker: SIGINT).
    AfterStep,
    /// The runtime is stopped at once, then the workspace is copied back (Kubernetes, where
    /// the workspace is a copy in the pod).
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    CopyingBack,
}

/// What the controller needs from whatever carries out a [`RunPlan`].
pub(crate) trait Backend {
    /// Carries out `plan` until the runtime ends, relaying its events to `output` and `tap`;
    /// `limit` bounds all of it. Never cleans up, also when dropped midway: the controller calls
    /// [`Backend::remove_run`] afterwards, whatever happened, so there is one cleanup path.
    fn execute<'a>(
        &'a self,
        plan: &'a RunPlan,
        ids: &'a RunIds,
        output: &'a Output,
        verbose: bool,
        limit: TimeLimit,
        tap: EventTap<'a>,
    ) -> impl Future<Output = Result<RunReport, RunError>> + 'a;

    /// The first Ctrl-C: asks the run to stop in the backend's own way, which `execute` then
    /// carries out before it returns.
    fn interrupt(&self, plan: &RunPlan) -> impl Future<Output = Result<Stopping, BackendError>>;

    /// Removes everything the run made; what is gone already is no error.
    fn remove_run(&self, run_id: &str) -> impl Future<Output = Result<(), BackendError>>;
}

impl Backend for DockerClient {
    fn execute<'a>(
        &'a self,
        plan: &'a RunPlan,
        ids: &'a RunIds,
        output: &'a Output,
        verbose: bool,
        limit: TimeLimit,
        tap: EventTap<'a>,
    ) -> impl Future<Output = Result<RunReport, RunError>> + 'a {
        crate::sandbox::engine::run::execute(self, plan, ids, output, verbose, limit, tap)
    }

    async fn interrupt(&self, plan: &RunPlan) -> Result<Stopping, BackendError> {
        Ok(match self.signal(&plan.runtime.name, "SIGINT").await? {
            true => Stopping::AfterStep,
            false => Stopping::Nothing,
        })
    }

    async fn remove_run(&self, run_id: &str) -> Result<(), BackendError> {
        Ok(DockerClient::remove_run(self, run_id).await.map(|_| ())?)
    }
}
