//! A run's event stream as the bench times it: its stdout a JSON event a line, each with the
//! moment it was read.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Result;

/// Reads `child`'s stdout to its end, handing `on_event` each event and the time from `started`
/// to reading it; lines that are not JSON are passed over. `what` names the run in an error.
pub(crate) fn each(
    child: &mut Child,
    started: Instant,
    what: &str,
    mut on_event: impl FnMut(&Value, Duration) -> Result<()>,
) -> Result<()> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading {what}'s output: {e}"))?;
        let now = started.elapsed();
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        on_event(&event, now)?;
    }
    Ok(())
}
