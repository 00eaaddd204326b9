//! This run's share of a job, for the human view's final line: a continued job's checkpoint
//! carries the job's totals, so the view keeps where this run started.

use crate::event::Checkpoint;

/// Where the coordinator's first segment of this run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RunStart {
    /// The first step this run takes (job-global numbering).
    pub step: u32,
    /// The job's tokens before this run.
    pub tokens: u64,
    /// When this run's first event happened (ms since the epoch).
    pub at_ms: u64,
}

/// The numbers of the final line: this run's steps, tokens and duration, and the job's totals
/// when the job had steps before this run.
pub(super) fn summary(start: Option<RunStart>, end: &Checkpoint, end_ms: u64) -> String {
    let job_steps = end.step_number;
    let job_tokens = end.usage.total_tokens;
    let Some(start) = start else {
        return format!("{} ({job_tokens} tokens)", steps(job_steps));
    };
    let run_steps = job_steps.saturating_sub(start.step) + 1;
    let run_tokens = job_tokens.saturating_sub(start.tokens);
    let took = seconds(end_ms.saturating_sub(start.at_ms));
    if start.step <= 1 {
        format!("{} ({run_tokens} tokens) in {took}", steps(run_steps))
    } else {
        format!(
            "{} ({run_tokens} tokens) in {took}; the job so far: {} ({job_tokens} tokens)",
            steps(run_steps),
            steps(job_steps)
        )
    }
}

fn steps(n: u32) -> String {
    format!("{n} step{}", if n == 1 { "" } else { "s" })
}

fn seconds(ms: u64) -> String {
    // Display only: a run's milliseconds fit an f64 exactly.
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    format!("{s:.1} s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CheckpointStatus, ExpertRef, Usage};

    fn ended(step_number: u32, total_tokens: u64) -> Checkpoint {
        Checkpoint {
            id: "c".into(),
            job_id: "j".into(),
            run_id: "r".into(),
            status: CheckpointStatus::Completed,
            step_number,
            messages: vec![],
            expert: ExpertRef {
                key: "e".into(),
                name: "e".into(),
                version: "1.0.0".into(),
            },
            delegate_to: None,
            delegated_by: None,
            usage: Usage {
                total_tokens,
                ..Usage::default()
            },
            context_window: None,
            context_window_usage: None,
            pending_tool_calls: None,
            partial_tool_results: None,
            metadata: None,
            error: None,
            retry_count: None,
        }
    }

    #[test]
    fn a_fresh_job_is_all_this_run() {
        let start = RunStart {
            step: 1,
            tokens: 0,
            at_ms: 1_000,
        };
        assert_eq!(
            summary(Some(start), &ended(3, 120), 5_250),
            "3 steps (120 tokens) in 4.2 s"
        );
    }

    #[test]
    fn a_continued_job_gives_this_run_and_the_job_apart() {
        let start = RunStart {
            step: 7,
            tokens: 8_000,
            at_ms: 0,
        };
        assert_eq!(
            summary(Some(start), &ended(9, 8_875), 3_000),
            "3 steps (875 tokens) in 3.0 s; the job so far: 9 steps (8875 tokens)"
        );
    }

    #[test]
    fn without_a_start_only_the_checkpoint_speaks() {
        assert_eq!(summary(None, &ended(1, 10), 0), "1 step (10 tokens)");
    }
}
