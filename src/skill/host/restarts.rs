//! How often, and after how long, the skill host starts a server again (docs/skills.md,
//! "Supervision").
//!
//! A server that has answered its first MCP handshake and then exits — a crash, an OOM kill, a
//! plain `exit` — is started again after a backoff that doubles: 0.25 s, 0.5 s, 1 s, 2 s, 4 s.
//! A run restarts a skill's server at most [`MAX_RESTARTS`] times; after that the skill stays
//! down. A server that exits before it ever answered a handshake is not restarted at all: that
//! is a skill that cannot start (a missing file, a wrong argument), and starting it again would
//! only delay the run's failure.

use std::time::Duration;

/// The most restarts of one skill's server in one run.
pub(crate) const MAX_RESTARTS: u32 = 5;

/// The wait before the first restart; each later one waits twice the one before.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// What happens after a server exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Next {
    /// Start it again after `after`; this is restart `nth` of [`MAX_RESTARTS`].
    Restart {
        /// Which restart this is, from 1.
        nth: u32,
        /// The wait before it.
        after: Duration,
    },
    /// The skill stays down; the text says why.
    Down(String),
}

/// The restarts of one skill's server so far this run.
#[derive(Debug, Default)]
pub(super) struct Restarts {
    done: u32,
    /// Some server of this skill has answered an MCP handshake.
    started_once: bool,
}

impl Restarts {
    /// A server answered its handshake: the skill can start, so later exits are restarted.
    pub(super) fn started(&mut self) {
        self.started_once = true;
    }

    /// What to do now that a server exited (`cause` says how).
    pub(super) fn next(&mut self, cause: &str) -> Next {
        if !self.started_once {
            return Next::Down(format!(
                "its server {cause} before it answered the MCP handshake, so it is not restarted"
            ));
        }
        if self.done >= MAX_RESTARTS {
            return Next::Down(format!(
                "its server {cause} after {MAX_RESTARTS} restarts, the most one run allows; the skill stays down"
            ));
        }
        self.done += 1;
        Next::Restart {
            nth: self.done,
            after: backoff(self.done),
        }
    }
}

/// The wait before restart `nth` (from 1).
fn backoff(nth: u32) -> Duration {
    let doublings = nth.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// What the host says when it restarts a server.
pub(super) fn restarting(cause: &str, nth: u32, after: Duration) -> String {
    format!(
        "the server {cause}; restarting it in {} (restart {nth} of {MAX_RESTARTS} this run)",
        seconds(after)
    )
}

fn seconds(d: Duration) -> String {
    let text = format!("{:.2}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let waits: Vec<Duration> = (1..=7).map(backoff).collect();
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 4000, 4000].map(Duration::from_millis)
        );
    }

    #[test]
    fn a_started_skill_is_restarted_up_to_the_bound_then_stays_down() {
        let mut restarts = Restarts::default();
        restarts.started();
        for nth in 1..=MAX_RESTARTS {
            assert_eq!(
                restarts.next("exited with code 3"),
                Next::Restart {
                    nth,
                    after: backoff(nth)
                }
            );
        }
        assert_eq!(
            restarts.next("exited with code 3"),
            Next::Down(
                "its server exited with code 3 after 5 restarts, the most one run allows; the skill stays down"
                    .into()
            )
        );
        // And stays so.
        assert!(matches!(restarts.next("exited with code 0"), Next::Down(_)));
    }

    #[test]
    fn a_server_that_never_answered_is_not_restarted() {
        let mut restarts = Restarts::default();
        assert_eq!(
            restarts.next("exited with code 2"),
            Next::Down(
                "its server exited with code 2 before it answered the MCP handshake, so it is not restarted"
                    .into()
            )
        );
    }

    #[test]
    fn a_restart_is_announced_with_its_wait_and_count() {
        assert_eq!(
            restarting(
                "was killed: out of memory (limit 64m)",
                1,
                Duration::from_millis(250)
            ),
            "the server was killed: out of memory (limit 64m); restarting it in 0.25 s (restart 1 of 5 this run)"
        );
        assert_eq!(seconds(Duration::from_secs(4)), "4 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
    }
}
