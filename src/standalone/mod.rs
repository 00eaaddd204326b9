//! The standalone image: one image whose ENTRYPOINT is this supervisor, run with plain
//! `docker run --rm -e KEY -v DIR:/workspace IMAGE "query"` (no Docker socket, no controller).
//!
//! The supervisor is PID 1 and plays the controller's part inside the one container. It runs
//! the same pipeline as `run --image` up to the plan — the config rebuilt from the baked labels
//! and spec ([`prepare`]), the same preflight, job store, continuation and pure `plan` — and then
//! carries the plan out as processes instead of containers ([`principals`]): every container of
//! the plan becomes one principal, started through `confine exec` with its own environment, its
//! own uid (when we are root), no capabilities, `no_new_privs`, a non-dumpable program, a
//! Landlock domain and seccomp filters ([`crate::confine`]). [`supervise`] relays the runtime's
//! events to stdout and into `/workspace/perstack`, as `run` does.
//!
//! [`image`] is the build side (`build --standalone`).

pub(crate) mod container_root;
pub(crate) mod egress;
pub(crate) mod image;
pub(crate) mod prepare;
pub(crate) mod principals;
pub(crate) mod reap;
pub(crate) mod report;
pub(crate) mod settle;
pub(crate) mod skill_root;
pub(crate) mod supervise;

use crate::cli::StandaloneArgs;
use crate::exit::Exit;

/// Where a standalone image keeps the version's labels (the versioned image's manifest), beside
/// the runtime spec: the supervisor has no engine to read labels from.
pub(crate) const MANIFEST_PATH: &str = "/etc/perstack-sandbox/standalone.json";

/// Where the supervisor makes each principal's private folders (sockets, `/tmp`).
pub(crate) const STATE_DIR: &str = "/run/perstack";

/// Why a standalone run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// This is not a standalone image (its files are missing or unreadable).
    #[error("{0}")]
    Image(String),
    /// The kernel lacks protections and `--allow-weaker-isolation` was not given.
    #[error(
        "this kernel cannot wall the Expert's processes off from each other:\n{0}\n  Run on a \
         kernel with Landlock ABI 6 or later and seccomp, or pass --allow-weaker-isolation to \
         start with what is there (the missing protections are reported)"
    )]
    WeakKernel(String),
    /// Preflight, continuation or the job store.
    #[error("{0}")]
    Run(String),
    /// A principal could not be started confined.
    #[error("{0}")]
    Start(String),
    /// The supervisor's folder is on a read-only root without a tmpfs there: nothing started.
    #[error("{0}")]
    ReadOnlyRoot(String),
}

impl From<&StandaloneError> for Exit {
    fn from(error: &StandaloneError) -> Exit {
        match error {
            StandaloneError::Image(_) | StandaloneError::Start(_) => Exit::RunFailed,
            StandaloneError::WeakKernel(_)
            | StandaloneError::Run(_)
            | StandaloneError::ReadOnlyRoot(_) => Exit::Usage,
        }
    }
}

/// The `standalone` role: the process's exit code. Errors are printed here, once.
pub async fn main(args: StandaloneArgs) -> i32 {
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            Exit::from(&error).code()
        }
    }
}

async fn run(args: StandaloneArgs) -> Result<i32, StandaloneError> {
    // Our environment holds every principal's secret: closed to `/proc/1/environ` and ptrace
    // even for a principal left at uid 0 (base tools in a root-owned workspace) on a kernel
    // without Landlock, whose ptrace rule closes them otherwise.
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| StandaloneError::Start(format!("PR_SET_DUMPABLE: {e}")))?;
    let protections = report::check_kernel(args.allow_weaker_isolation)?;
    settle::check_state_dir()?;
    let prepared = prepare::prepare(&args)?;
    supervise::supervise(prepared, &protections, &args).await
}
