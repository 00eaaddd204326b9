//! Process exit codes, documented for CI (README, "Exit codes").

/// Why the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The run completed (or the command succeeded).
    Success,
    /// The run stopped with an error, or the runtime failed (or ran out of memory).
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
    /// The whole run's time limit (`--timeout`, else generation timeout × max-steps) struck;
    /// 124 as with coreutils' `timeout`.
    TimedOut,
    /// Stopped by SIGINT (Ctrl-C): after the step under way, or at once on the second Ctrl-C.
    Interrupted,
    /// Stopped at once by SIGTERM.
    Terminated,
    /// Stopped at once by SIGHUP: the terminal went away (an ssh connection dropped, a tmux
    /// pane or terminal window closed). 129 as 128 + SIGHUP.
    HungUp,
}

impl Exit {
    /// Whether the process was told to go (SIGTERM, SIGHUP): a `start` session ends with the
    /// turn instead of asking for the next message.
    pub fn ends_the_session(self) -> bool {
        matches!(self, Exit::Terminated | Exit::HungUp)
    }

    /// The numeric code.
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::RunFailed => 1,
            Exit::Usage => 2,
            Exit::MaxSteps => 3,
            Exit::Interactive => 4,
            Exit::Docker => 5,
            Exit::TimedOut => 124,
            Exit::Interrupted => 130,
            Exit::Terminated => 143,
            Exit::HungUp => 129,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Exit; 10] = [
        Exit::Success,
        Exit::RunFailed,
        Exit::Usage,
        Exit::MaxSteps,
        Exit::Interactive,
        Exit::Docker,
        Exit::TimedOut,
        Exit::Interrupted,
        Exit::Terminated,
        Exit::HungUp,
    ];

    #[test]
    fn every_ending_has_its_own_code_and_the_readme_lists_exactly_these() {
        let mut codes: Vec<i32> = ALL.iter().map(|exit| exit.code()).collect();
        codes.sort_unstable();
        let mut distinct = codes.clone();
        distinct.dedup();
        assert_eq!(codes, distinct, "two endings share a code");

        let readme = include_str!("../README.md");
        let table = readme
            .split("## Exit codes")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has an \"Exit codes\" section");
        let mut documented: Vec<i32> = table
            .lines()
            .filter_map(|line| line.strip_prefix("| ")?.split(' ').next()?.parse().ok())
            .collect();
        documented.sort_unstable();
        assert_eq!(documented, codes);
    }
}
