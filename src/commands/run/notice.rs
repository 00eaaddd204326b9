//! What a run tells its user on stderr besides its error: notes, warnings and how it stopped.
//! Stages return these as values (or, while they wait on Docker, hand them to a callback); the
//! command prints each in one place, `run::show`.

use std::fmt;

use crate::config::GVISOR_RUNTIME;
use crate::jobs::JobsError;
use crate::sandbox::backend::BackendError;
use crate::sandbox::engine::docker::DockerError;
use crate::sandbox::engine::run::RunError as ExecuteError;
use crate::sandbox::labels;

/// One message for the user.
#[derive(Debug)]
pub enum Notice {
    /// `--image`: the image is not on this machine, so it is pulled.
    Pulling {
        /// The image.
        image: String,
    },
    /// A line of the pull's progress (`--verbose`).
    PullProgress(String),
    /// `--job-id` named another job than the one the run continues.
    JobIdIgnored {
        /// The id given.
        given: String,
        /// The continued checkpoint's job.
        continued: String,
    },
    /// The job's `job.json` could not be read; the run starts a new one.
    JobStartsAfresh(JobsError),
    /// Every container of the run starts under this OCI runtime, not the engine's default.
    RuntimeEngine {
        /// The runtime's name (`runsc`).
        name: String,
        /// `--runtime-engine` or `[sandbox] runtime`.
        chosen_by: &'static str,
    },
    /// A registry Expert of the run is deprecated (or another note of resolution).
    Registry(String),
    /// `--allow-weaker-isolation` on an engine that lacks part of the isolation: what is missing
    /// and why ([`crate::sandbox::engine::info::WeakerIsolation::summary`]).
    WeakerIsolation(String),
    /// The images carry the whole controller, not the lean roles executable: which file and
    /// why (`commands/image_executable.rs`).
    WholeExecutable(String),
    /// Base-skill runs as root: what to do about it.
    BaseSkillUser(String),
    /// Leftovers of earlier runs whose controller is gone were removed.
    SweptLeftovers {
        /// Containers, volumes and networks.
        resources: usize,
        /// Runs they belonged to.
        runs: usize,
    },
    /// The sweep of earlier runs' leftovers failed; the run goes on.
    SweepFailed(DockerError),
    /// First Ctrl-C: the runtime was asked to stop after the step under way.
    StoppingAfterStep,
    /// Ctrl-C on Kubernetes: the runtime is stopped, then the workspace copied back.
    StoppingToCopyBack,
    /// Ctrl-C again: the run stops at once.
    StoppingAtOnce,
    /// Asking the runtime to stop failed; the run stops at once.
    StopRequestFailed(BackendError),
    /// Something of the run could not be removed.
    CleanupFailed {
        /// The run.
        run_id: String,
        /// Why.
        error: BackendError,
    },
    /// A placeholder of a missing protected path could not be removed after the run.
    PlaceholderLeft {
        /// The host path.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A signal stopped the run at once; everything of it is removed.
    Stopped {
        /// The run.
        run_id: String,
    },
    /// The run stopped on request after a step, keeping its checkpoint.
    StoppedOnRequest,
    /// The run stopped on request, failing on its way out.
    StoppedOnRequestWith(ExecuteError),
    /// The run changed a file the controller trusts; the next run will refuse to start.
    TrustedInputChanged {
        /// What changed.
        change: crate::trust::record::Change,
        /// The command that accepts it.
        accept_command: String,
    },
    /// The trust record could not be updated at the end of the run.
    TrustRecordFailed(crate::trust::TrustError),
}

impl Notice {
    /// A note about what every run of the job runs with (the OCI runtime, base-skill's user, a
    /// registry Expert's deprecation), not about this run's events: a session says it once.
    pub(crate) fn is_about_the_setting(&self) -> bool {
        matches!(
            self,
            Notice::RuntimeEngine { .. }
                | Notice::WholeExecutable(_)
                | Notice::BaseSkillUser(_)
                | Notice::Registry(_)
                | Notice::WeakerIsolation(_)
        )
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Pulling { image } => write!(f, "note: {image} is not here; pulling it"),
            Notice::PullProgress(line) => write!(f, "  {line}"),
            Notice::JobIdIgnored { given, continued } => write!(
                f,
                "warning: --job-id {given} ignored: the run continues job {continued}"
            ),
            Notice::JobStartsAfresh(error) => {
                write!(f, "warning: {error}; job.json starts afresh")
            }
            Notice::RuntimeEngine { name, chosen_by } => write!(
                f,
                "note: every container of this run starts under the OCI runtime {name}{} ({chosen_by})",
                if name == GVISOR_RUNTIME { ", gVisor" } else { "" }
            ),
            Notice::WholeExecutable(note) | Notice::BaseSkillUser(note) => {
                write!(f, "note: {note}")
            }
            Notice::WeakerIsolation(missing) => write!(
                f,
                "warning: weaker isolation (--allow-weaker-isolation): {missing}; its containers can use all the memory, CPU and processes the host gives your user"
            ),
            Notice::Registry(warning) => write!(f, "warning: {warning}"),
            Notice::SweptLeftovers { resources, runs } => write!(
                f,
                "note: removed {resources} leftover resource(s) of {runs} earlier run(s) whose controller is gone"
            ),
            Notice::SweepFailed(error) => write!(
                f,
                "warning: could not sweep leftovers of earlier runs: {error}"
            ),
            Notice::StoppingAfterStep => f.write_str(
                "interrupted: the run stops after the step under way and keeps its checkpoint (continue with --continue); press Ctrl-C again to stop at once",
            ),
            Notice::StoppingToCopyBack => f.write_str(
                "interrupted: stopping the runtime, then copying the workspace back from the pod (the copy back is checked as always); press Ctrl-C again to skip the copy back and stop at once",
            ),
            Notice::StoppingAtOnce => f.write_str("interrupted again: stopping at once"),
            Notice::StopRequestFailed(error) => {
                write!(f, "warning: could not ask the runtime to stop: {error}")
            }
            Notice::CleanupFailed { run_id, error } => cleanup_failed(f, run_id, error),
            Notice::PlaceholderLeft { path, error } => write!(
                f,
                "warning: could not remove {}, which the run made empty to protect it: {error}\n  hint: remove it if you do not want it",
                path.display()
            ),
            Notice::Stopped { run_id } => {
                write!(f, "stopped; containers of run {run_id} removed")
            }
            Notice::StoppedOnRequest => f.write_str(
                "stopped on request; the job keeps its last checkpoint: continue with --continue",
            ),
            Notice::StoppedOnRequestWith(error) => write!(f, "stopped on request: {error}"),
            Notice::TrustedInputChanged {
                change,
                accept_command,
            } => trusted_input_changed(f, change, accept_command),
            Notice::TrustRecordFailed(error) => write!(
                f,
                "warning: could not compare the trusted inputs at the end of the run: {error}\n  the next run compares them for this one"
            ),
        }
    }
}

/// [`Notice::CleanupFailed`]: what was left, and where the backend shows it.
fn cleanup_failed(f: &mut fmt::Formatter<'_>, run_id: &str, error: &BackendError) -> fmt::Result {
    write!(
        f,
        "warning: could not remove every resource of run {run_id}: {error}\n  hint: "
    )?;
    match error {
        BackendError::Docker(_) => write!(
            f,
            "`docker ps -a --filter label={}` shows what is left",
            labels::run_filter(run_id)
        ),
        #[cfg(feature = "kubernetes")]
        BackendError::Kubernetes(_) => write!(
            f,
            "`perstack-sandbox gc --backend kubernetes` removes it once its Lease expires"
        ),
    }
}

/// [`Notice::TrustedInputChanged`]: what the run changed, and the command that accepts it.
fn trusted_input_changed(
    f: &mut fmt::Formatter<'_>,
    change: &crate::trust::record::Change,
    accept_command: &str,
) -> fmt::Result {
    write!(
        f,
        "warning: this run {} {} ({}); the next run in this workspace will not start until you look at it and accept it: {accept_command}",
        change.verb(),
        change.path.display(),
        crate::trust::inputs::Rule::from_name(&change.kind)
            .map(|rule| rule.describe())
            .unwrap_or("a trusted input"),
    )
}
