//! `run --backend kubernetes` (experimental): the [`Backend`] that carries out a plan in a
//! namespace. The controller (`commands/run/execute.rs`) is the same as for Docker: it records
//! the job, answers Ctrl-C and calls [`Backend::remove_run`] after every ending.
//!
//! - **execute**: the workspace walked (refused before anything is created when it is bigger
//!   than the pod's workspace takes); the plan's objects ([`RunObjects`], from `manifest`'s
//!   builders, the ones `export kubernetes` writes) with a Secret of this run's values, launched
//!   under a Lease; the workspace copied in; the runtime's log relayed line by line as the
//!   Docker backend relays its stdout (`relay_line`), so the job store records the events and
//!   checkpoints on this machine; the workspace copied back (`workspace.rs`).
//! - **interrupt** (the first Ctrl-C), and the time limit: while the runtime runs, it is
//!   stopped (`runtime-stop` exec'd in its container: Kubernetes has no signal API) and the
//!   workspace copied back through the same checked path, under its own time bound; before
//!   that there is nothing to bring back and the controller stops at once. A second Ctrl-C
//!   drops the copy back.
//! - **remove_run**: every object of the run, by label.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::client::{KubeApi, KubeError};
use super::logs::Pacing;
use super::manifest::{self, CopyContainers, Export, Workspace};
use super::session::{self, RunObjects, StopRequest, Watched, Watching, Why};
use super::workspace::{COPY_IN, CopiedBack, HOLD, MAX_ENTRIES, PodStreams, WorkspaceCopy};
use crate::contract::paths::BINARY_PATH;
use crate::exit::Exit;
use crate::render::Output;
use crate::sandbox::backend::{Backend, BackendError, Stopping};
use crate::sandbox::engine::run::{
    EventTap, RunEnd, RunError, RunIds, RunReport, TimeLimit, relay_line,
};
use crate::sandbox::plan::RunPlan;
use crate::skill::base::archive::Caps;

/// A namespace that runs plans.
pub(crate) struct KubernetesBackend {
    /// The connection.
    pub api: KubeApi,
    /// Who holds the runs' Leases (host and process).
    pub holder: String,
    /// The Lease's duration; it is renewed every third of it.
    pub lease_seconds: u32,
    /// The workspace emptyDir's size limit, in bytes: also the most the copy either way takes.
    pub workspace_bytes: u64,
    /// The pod's streams the workspace copy takes (the API's websockets; the tests' fake).
    pub streams: Arc<dyn PodStreams>,
    /// Log following.
    pub pacing: Pacing,
    /// Ctrl-C's word to the run under way.
    pub stop: StopRequest,
}

/// The name of run `run_id`'s objects: a DNS label.
pub(crate) fn run_name(run_id: &str) -> String {
    manifest::dns_label(&format!("psb-{run_id}"), 40)
}

impl KubernetesBackend {
    /// A backend on `api` with the usual pacing: a 30 s Lease, the log polled each second.
    pub(crate) fn new(api: KubeApi) -> KubernetesBackend {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        KubernetesBackend {
            streams: Arc::new(api.clone()),
            api,
            holder: format!("{host}:{}", std::process::id()),
            lease_seconds: 30,
            workspace_bytes: 10 << 30,
            pacing: Pacing {
                poll: Duration::from_secs(1),
                max_reconnects: 10,
            },
            stop: StopRequest::default(),
        }
    }

    /// The caps of the workspace copy, either way.
    pub(crate) fn caps(&self) -> Caps {
        Caps {
            bytes: self.workspace_bytes,
            entries: MAX_ENTRIES,
        }
    }

    /// The plan as this run's objects: its images must be a pushed version (`--image`). With
    /// `copy`, the pod has the copy's containers, the holding one ending by itself after
    /// `hold_seconds`.
    pub(crate) fn objects(
        &self,
        plan: &RunPlan,
        ids: &RunIds,
        copy: Option<&WorkspaceCopy>,
        hold_seconds: u64,
    ) -> Result<RunObjects, KubeError> {
        let unusable = |why: String| KubeError::Plan(why);
        if plan.runtime.stdin.is_some() {
            return Err(unusable(
                "continuing a job (--continue, --continue-job, -i) is not supported on Kubernetes yet: the runtime's stdin is not attached".into(),
            ));
        }
        let images = plan
            .prebuilt
            .as_ref()
            .map(|p| p.iter().map(|i| i.reference.clone()).collect())
            .ok_or_else(|| unusable("a Kubernetes run needs --image REF: a version pushed with `perstack-sandbox build EXPERT --tag REF --push`, which the cluster pulls".into()))?;
        let name = run_name(&ids.run_id);
        let export = Export {
            secret: name.clone(),
            name,
            namespace: None,
            images,
            secrets: BTreeMap::new(),
            workspace: Workspace::EmptyDir(self.workspace_bytes.to_string()),
            deadline_seconds: None,
            copy: copy.map(|copy| CopyContainers {
                from: copy.base_skill.clone(),
                copy_in: (COPY_IN.into(), copy.copy_in_command()),
                hold: (
                    HOLD.into(),
                    vec![
                        BINARY_PATH.into(),
                        "workspace-hold".into(),
                        "--seconds".into(),
                        hold_seconds.to_string(),
                    ],
                ),
            }),
        };
        let secrets = secret_values(plan)?;
        RunObjects::new(plan, &export, &secrets, &self.holder, self.lease_seconds)
            .map_err(|e| unusable(e.to_string()))
    }

    async fn watch(
        &self,
        plan: &RunPlan,
        ids: &RunIds,
        output: &Output,
        tap: EventTap<'_>,
        limit: TimeLimit,
    ) -> Result<RunReport, RunError> {
        let copy = WorkspaceCopy::prepare(plan, self.caps(), |service| {
            manifest::container_name(plan, service)
        })?;
        // The pod outlives the run's time limit by the copy back's own time, at most.
        let hold = limit.limit.as_secs().saturating_add(HOLD_MARGIN_SECONDS);
        let objects = self.objects(plan, ids, copy.as_ref(), hold)?;
        let mut end = None;
        let mut on_line = |line: String| relay_line(line, ids, output, tap, &mut end);
        let streams: &dyn PodStreams = self.streams.as_ref();
        let how = Watching {
            copy: copy.as_ref().map(|c| (c, streams)),
            pacing: self.pacing,
            renew_every: Duration::from_secs(u64::from(self.lease_seconds / 3).max(1)),
            stop: &self.stop,
            deadline: deadline(limit),
        };
        let watched = session::launch_and_watch(&self.api, &objects, how, &mut on_line).await?;
        let (code, reason) = match watched {
            Watched::Ended(ended, copied) => {
                copied.iter().for_each(tell_copied_back);
                ended
            }
            Watched::Stopped(why, copied) => {
                stopped(why, copied, limit)?;
                (Exit::Terminated.code(), None)
            }
        };
        let end = end.unwrap_or(RunEnd::RuntimeFailed {
            code: i64::from(code),
            stderr: String::new(),
            oom_killed: reason.as_deref() == Some("OOMKilled"),
        });
        Ok(RunReport { end })
    }
}

/// When `limit` strikes.
fn deadline(limit: TimeLimit) -> tokio::time::Instant {
    tokio::time::Instant::from_std(limit.started + limit.limit)
}

/// A run stopped before its runtime's end, `why`: what its copy back did, on stderr. Ctrl-C's
/// run goes on to its report (or the copy back's failure); a timed-out run is
/// [`RunError::TimedOut`], its copy back's failure said on stderr.
fn stopped(
    why: Why,
    copied: Option<Result<CopiedBack, KubeError>>,
    limit: TimeLimit,
) -> Result<(), RunError> {
    match (why, copied) {
        (_, Some(Ok(copied))) => {
            tracing::warn!("{why}: the runtime was stopped and the workspace copied back");
            tell_copied_back(&copied);
        }
        // Nothing had started, or there is no copy: nothing to bring back.
        (_, None) => {}
        (Why::Interrupted, Some(Err(failed))) => return Err(failed.into()),
        (Why::TimedOut, Some(Err(failed))) => tracing::warn!("{failed}"),
    }
    match why {
        Why::Interrupted => Ok(()),
        Why::TimedOut => Err(RunError::TimedOut(limit.limit)),
    }
}

/// How much longer than the run's time limit the holding container keeps the pod: more than
/// the copy back's own time ([`session::COPY_BACK_LIMIT`]).
const HOLD_MARGIN_SECONDS: u64 = 600;

/// What a run may take past its time limit and its copy back's own time: the stop's API calls.
const STUCK_MARGIN: Duration = Duration::from_secs(60);

/// What the copy back left out, on stderr: the rest of it is as on Docker, where the run wrote
/// the workspace itself.
fn tell_copied_back(copied: &CopiedBack) {
    tracing::info!(
        written = copied.written,
        removed = copied.removed,
        "workspace copied back"
    );
    for left in &copied.left_out {
        tracing::warn!(
            "the workspace's copy back left out {}: {}",
            left.path.display(),
            left.why
        );
    }
}

/// This run's values under the keys the objects' `secretKeyRef`s name: the query (the
/// runtime's last argument), every variable the plan hands a container (not the literal ones
/// the objects carry) and a fresh token for each proxy principal.
fn secret_values(plan: &RunPlan) -> Result<BTreeMap<String, String>, KubeError> {
    let mut values = BTreeMap::new();
    if let Some(query) = plan.runtime.cmd.last() {
        values.insert(manifest::QUERY_KEY.to_string(), query.clone());
    }
    for container in plan.skills.iter().chain([&plan.runtime]) {
        for (name, value) in container
            .env
            .iter()
            .filter(|(n, _)| !manifest::is_literal(n))
        {
            values.insert(name.clone(), value.clone());
        }
    }
    for principal in plan.proxy.iter().flat_map(|p| &p.principals) {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| KubeError::Plan(format!("no randomness for a proxy token: {e}")))?;
        values.insert(manifest::token_key(&principal.name), hex::encode(bytes));
    }
    Ok(values)
}

impl Backend for KubernetesBackend {
    async fn execute(
        &self,
        plan: &RunPlan,
        ids: &RunIds,
        output: &Output,
        _verbose: bool,
        limit: TimeLimit,
        tap: EventTap<'_>,
    ) -> Result<RunReport, RunError> {
        // The time limit stops the runtime and the copy back has its own time after it
        // (`session::launch_and_watch`); this bound is for what is stuck past both.
        let stuck = deadline(limit) + session::COPY_BACK_LIMIT + STUCK_MARGIN;
        tokio::time::timeout_at(stuck, self.watch(plan, ids, output, tap, limit))
            .await
            .map_err(|_| RunError::TimedOut(limit.limit))?
    }

    async fn interrupt(&self, _plan: &RunPlan) -> Result<Stopping, BackendError> {
        Ok(match self.stop.ask() {
            true => Stopping::CopyingBack,
            false => Stopping::Nothing,
        })
    }

    async fn remove_run(&self, run_id: &str) -> Result<(), BackendError> {
        match session::remove(&self.api, &run_name(run_id))
            .await
            .into_iter()
            .next()
        {
            Some(failure) => Err(failure.into()),
            None => Ok(()),
        }
    }
}
