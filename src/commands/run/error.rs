//! Everything that can keep a run from starting or make it fail, and the exit code of each.

use crate::config::{ConfigError, SettingsError};
use crate::exit::Exit;
use crate::jobs::JobsError;
use crate::sandbox::engine::docker::DockerError;
use crate::sandbox::engine::run::RunError as ExecuteError;
use crate::sandbox::preflight::Problems;
use crate::sandbox::versioned::VersionedError;

use super::super::LoadError;
use super::super::artifacts::ArtifactError;
use crate::jobs::ContinueFlagsError;

/// Why `run` failed. `main` prints it once, after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `--resume-from` without the job it belongs to, or `-i` without a run to continue.
    #[error(transparent)]
    ContinueFlags(#[from] ContinueFlagsError),
    /// `--image`: the reference, its labels or its spec are not a version we can run, or it is
    /// not the Expert asked for.
    #[error(transparent)]
    Versioned(#[from] VersionedError),
    /// `--image`: the pull succeeded, yet the engine does not know the image.
    #[error("{0} was pulled but the engine does not know it")]
    PulledButUnknown(String),
    /// perstack.toml (or the current folder) could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An Expert of the closure could not be resolved from perstack.lock or the Registry.
    #[error(transparent)]
    Registry(#[from] crate::commands::registry::RegistryLoadError),
    /// A dotenv file could not be read.
    #[error(transparent)]
    Env(#[from] ConfigError),
    /// A setting on the command line cannot be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Preflight found problems, all listed (the base images' check among them).
    #[error("{}", .0.to_string().trim_end_matches('\n'))]
    Preflight(Problems),
    /// Our executable or the CA bundle could not be read.
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    /// The checkpoint to continue from could not be found, or the query does not fit it.
    #[error(transparent)]
    Continue(JobsError),
    /// `--job-id` is not a folder name.
    #[error(
        "--job-id {0}: a job id is a folder name: letters, digits, `_`, `-` and `.`, not starting with `.`"
    )]
    JobId(String),
    /// The runtime spec could not be serialized.
    #[error("cannot write the runtime spec: {0}")]
    Spec(#[source] serde_json::Error),
    /// The engine did not answer or failed before the run started.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The engine answers but cannot give the containers what a run requires (e.g. limits on a
    /// rootless engine on cgroup v1); nothing was started.
    #[error("{0}")]
    EngineUnfit(String),
    /// Ctrl-C, SIGTERM and SIGHUP cannot be handled.
    #[error("cannot install signal handlers")]
    Signals,
    /// The workspace's reserved folder holds a link (or the wrong kind of file) on the way to the
    /// job store: refused before anything starts.
    #[error(transparent)]
    ReservedFolder(JobsError),
    /// The trust record refuses the run: a change not accepted, a protected path linking out
    /// of the workspace, a state folder that cannot be written.
    #[error(transparent)]
    Trust(crate::trust::TrustError),
    /// The job store in the workspace cannot be written.
    #[error(
        "cannot store the job: {0}\n  hint: the workspace must be writable; choose another with --workspace"
    )]
    Record(#[source] JobsError),
    /// Carrying out the plan failed (or the run's time limit struck).
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    /// `--backend kubernetes` in a build without the `kubernetes` feature.
    #[cfg(not(feature = "kubernetes"))]
    #[error("{0}")]
    NotBuilt(&'static str),
    /// `install`'s listing run was stopped by Ctrl-C or SIGTERM.
    #[error("install was interrupted while listing the skills' tools; nothing was written")]
    ListingInterrupted,
    /// `install`'s listing run ended without listing the tools.
    #[error(
        "the skills' tools could not be listed: the runtime container exited with code {code}{}",
        if stderr.is_empty() { String::new() } else { format!(":\n{stderr}") }
    )]
    ListingFailed {
        /// Its exit code.
        code: i64,
        /// The end of its stderr: which skill failed and why.
        stderr: String,
    },
    /// The runtime exited without ending the run.
    #[error("{}", runtime_failed(*code, stderr, *out_of_memory))]
    RuntimeFailed {
        /// Its exit code.
        code: i64,
        /// The end of its stderr.
        stderr: String,
        /// The memory limit per container, when the kernel killed it for exceeding it.
        out_of_memory: Option<i64>,
    },
}

/// The runtime's failure; when it ran out of memory, that first, as an error of its own.
fn runtime_failed(code: i64, stderr: &str, out_of_memory: Option<i64>) -> String {
    let oom = out_of_memory.map_or(String::new(), |memory| {
        format!(
            "the runtime container ran out of memory ({memory} bytes per container) and was killed\n  hint: raise --memory (or [sandbox] memory); the job keeps its last checkpoint: continue with --continue\nerror: "
        )
    });
    let tail = if stderr.is_empty() {
        String::new()
    } else {
        format!(":\n{stderr}")
    };
    format!("{oom}the runtime container exited with code {code} before the run finished{tail}")
}

impl From<&RunError> for Exit {
    fn from(error: &RunError) -> Exit {
        match error {
            RunError::Docker(_) | RunError::EngineUnfit(_) | RunError::PulledButUnknown(_) => {
                Exit::Docker
            }
            // Perstack exits 1 here, and its CLI tests check for it.
            RunError::ContinueFlags(ContinueFlagsError::ResumeFromWithoutJob) => Exit::RunFailed,
            RunError::ContinueFlags(ContinueFlagsError::AnswerWithoutContinue) => Exit::Usage,
            RunError::Signals | RunError::RuntimeFailed { .. } | RunError::ListingFailed { .. } => {
                Exit::RunFailed
            }
            RunError::ListingInterrupted => Exit::Interrupted,
            #[cfg(not(feature = "kubernetes"))]
            RunError::NotBuilt(_) => Exit::Usage,
            RunError::Execute(error) => match error {
                ExecuteError::Docker(_) => Exit::Docker,
                ExecuteError::BaseImageMissing { .. }
                | ExecuteError::MountPoint { .. }
                | ExecuteError::Placeholder(_)
                | ExecuteError::Versioned(_) => Exit::Usage,
                ExecuteError::TimedOut(_) => Exit::TimedOut,
                ExecuteError::ProxyConfig(_) => Exit::RunFailed,
                #[cfg(feature = "kubernetes")]
                ExecuteError::Kubernetes(_) => Exit::RunFailed,
            },
            RunError::Versioned(_)
            | RunError::Load(_)
            | RunError::Registry(_)
            | RunError::Env(_)
            | RunError::Settings(_)
            | RunError::Preflight(_)
            | RunError::Artifacts(_)
            | RunError::Continue(_)
            | RunError::JobId(_)
            | RunError::Spec(_)
            | RunError::ReservedFolder(_)
            | RunError::Trust(_)
            | RunError::Record(_) => Exit::Usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_out_of_memory_says_so_before_its_exit() {
        let failed = RunError::RuntimeFailed {
            code: 137,
            stderr: String::new(),
            out_of_memory: Some(64 << 20),
        };
        assert_eq!(
            format!("error: {failed}"),
            "error: the runtime container ran out of memory (67108864 bytes per container) and was killed\n  hint: raise --memory (or [sandbox] memory); the job keeps its last checkpoint: continue with --continue\n\
             error: the runtime container exited with code 137 before the run finished"
        );
        assert_eq!(Exit::from(&failed), Exit::RunFailed);
    }

    #[test]
    fn preflight_problems_print_as_one_list() {
        let problems = RunError::Preflight(Problems(vec![crate::sandbox::preflight::Problem {
            location: None,
            message: "FOO is not set".into(),
        }]));
        assert_eq!(
            format!("error: {problems}\n"),
            "error: cannot start the run (1 problem):\n  - FOO is not set\n"
        );
    }
}
