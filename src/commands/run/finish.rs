//! Stage 7: the exit code, from how the run ended (README, "Exit codes").

use crate::exit::Exit;
use crate::sandbox::engine::run::RunEnd;

use super::RunError;
use super::execute::{Ended, Outcome};
use super::notice::Notice;

/// How the command ends.
#[derive(Debug)]
pub(super) struct Ending {
    /// Its exit code.
    pub exit: Exit,
    /// What to tell the user about it, when the events do not.
    pub notice: Option<Notice>,
}

/// The terminal event decides, unless the user stopped the run; a runtime that exited without
/// one, or a failure of the sandbox, is an error.
pub(super) fn finish(outcome: Outcome) -> Result<Ending, RunError> {
    let stopped = |notice| Ending {
        exit: Exit::Interrupted,
        notice: Some(notice),
    };
    match outcome.ended {
        Ended::Signal(exit) => Ok(Ending {
            exit,
            notice: Some(Notice::Stopped {
                run_id: outcome.run_id,
            }),
        }),
        // Stopped on request: interrupted, unless it ended some other way first.
        Ended::Ran {
            result: Ok(report),
            interrupted: true,
        } if matches!(
            report.end,
            RunEnd::StoppedByError(_) | RunEnd::RuntimeFailed { .. }
        ) =>
        {
            Ok(stopped(Notice::StoppedOnRequest))
        }
        Ended::Ran {
            result: Err(error),
            interrupted: true,
        } => Ok(stopped(Notice::StoppedOnRequestWith(error))),
        Ended::Ran {
            result: Ok(report), ..
        } => exit(report.end, outcome.memory).map(|exit| Ending { exit, notice: None }),
        Ended::Ran {
            result: Err(error), ..
        } => Err(error.into()),
    }
}

/// The exit code of a run that went its course.
fn exit(end: RunEnd, memory: i64) -> Result<Exit, RunError> {
    match end {
        RunEnd::Completed => Ok(Exit::Success),
        // The events said why.
        RunEnd::StoppedByError(_) => Ok(Exit::RunFailed),
        RunEnd::StoppedByMaxSteps => Ok(Exit::MaxSteps),
        RunEnd::WaitingForInteractiveTool => Ok(Exit::Interactive),
        RunEnd::RuntimeFailed {
            code,
            stderr,
            oom_killed,
        } => Err(RunError::RuntimeFailed {
            code,
            stderr,
            out_of_memory: oom_killed.then_some(memory),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::engine::run::RunReport;

    fn ended(end: RunEnd, interrupted: bool) -> Outcome {
        Outcome {
            ended: Ended::Ran {
                result: Ok(RunReport { end }),
                interrupted,
            },
            run_id: "r1".into(),
            memory: 1 << 30,
        }
    }

    fn code(outcome: Outcome) -> Exit {
        match finish(outcome) {
            Ok(ending) => ending.exit,
            Err(error) => Exit::from(&error),
        }
    }

    #[test]
    fn the_terminal_event_decides_the_exit_code() {
        assert_eq!(code(ended(RunEnd::Completed, false)), Exit::Success);
        assert_eq!(
            code(ended(RunEnd::StoppedByError("x".into()), false)),
            Exit::RunFailed
        );
        assert_eq!(
            code(ended(RunEnd::StoppedByMaxSteps, false)),
            Exit::MaxSteps
        );
        assert_eq!(
            code(ended(RunEnd::WaitingForInteractiveTool, false)),
            Exit::Interactive
        );
        let failed = RunEnd::RuntimeFailed {
            code: 137,
            stderr: String::new(),
            oom_killed: true,
        };
        match finish(ended(failed, false)) {
            Err(RunError::RuntimeFailed { out_of_memory, .. }) => {
                assert_eq!(out_of_memory, Some(1 << 30))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_run_stopped_on_request_is_interrupted_unless_it_ended_otherwise_first() {
        assert_eq!(
            code(ended(RunEnd::StoppedByError("stopped".into()), true)),
            Exit::Interrupted
        );
        // It completed (or hit its limits) before the stop took effect.
        assert_eq!(code(ended(RunEnd::Completed, true)), Exit::Success);
        assert_eq!(code(ended(RunEnd::StoppedByMaxSteps, true)), Exit::MaxSteps);
        let signalled = Outcome {
            ended: Ended::Signal(Exit::Terminated),
            run_id: "r1".into(),
            memory: 0,
        };
        let ending = finish(signalled).expect("an ending");
        assert_eq!(ending.exit, Exit::Terminated);
        assert_eq!(
            ending.notice.map(|n| n.to_string()).as_deref(),
            Some("stopped; containers of run r1 removed")
        );
    }
}
