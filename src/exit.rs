//! Process exit codes, documented for CI (README, "Exit codes").

/// Why the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The run completed (or the command succeeded).
    Success,
    /// The run stopped with an error, the runtime failed (or ran out of memory), or
    /// `--run-timeout` struck.
    RunFailed,
    /// Bad usage, an invalid `perstack.toml`, a refused workspace or a failed preflight check:
    /// nothing was started.
    Usage,
    /// The run hit `maxSteps`.
    MaxSteps,
    /// The run waits for the answer to an interactive tool.
    Interactive,
    /// Docker is unavailable or failed.
    Docker,
    /// Stopped by SIGINT (Ctrl-C): after the step under way, or at once on the second Ctrl-C.
    Interrupted,
    /// Stopped at once by SIGTERM.
    Terminated,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::RunFailed => 1,
            Exit::Usage => 2,
            Exit::MaxSteps => 3,
            Exit::Interactive => 4,
            Exit::Docker => 5,
            Exit::Interrupted => 130,
            Exit::Terminated => 143,
        }
    }
}
