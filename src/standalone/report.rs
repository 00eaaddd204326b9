//! Which protections hold: the kernel's, checked before anything starts (a weak kernel stops the
//! start unless `--allow-weaker-isolation`), and each principal's, as its confinement reported
//! it — one human line each on stderr and one `isolationReport` event on stdout.

use serde_json::{Value, json};

use super::StandaloneError;
use crate::confine::probe::{Protections, Shortfall};
use crate::confine::report::Enforcement;

/// The event type that reports the protections of a standalone run (README, "Standalone
/// images"). Not a run event: it is not stored with the job.
pub(crate) const EVENT_TYPE: &str = "isolationReport";

/// Probes the kernel; refuses a kernel with a blocking shortfall unless `allow_weaker`. Says on
/// stderr what it found, and each missing protection with what it costs.
pub(crate) fn check_kernel(allow_weaker: bool) -> Result<Protections, StandaloneError> {
    let protections = Protections::probe();
    eprintln!("perstack-sandbox: kernel: {}", protections.summary());
    let shortfalls = protections.shortfalls();
    let blocking: Vec<&Shortfall> = shortfalls.iter().filter(|s| s.is_blocking()).collect();
    if !blocking.is_empty() && !allow_weaker {
        let list: Vec<String> = blocking.iter().map(|s| format!("  - {s}")).collect();
        return Err(StandaloneError::WeakKernel(list.join("\n")));
    }
    warn(&shortfalls);
    Ok(protections)
}

/// Each missing protection on stderr, with what it costs.
pub(crate) fn warn(shortfalls: &[Shortfall]) {
    for shortfall in shortfalls {
        eprintln!("perstack-sandbox: warning: weaker isolation: {shortfall}");
    }
}

/// The `isolationReport` event: the image's base (whose programs every principal may run) and,
/// when it is a skill's recipe, that skill (`baseRecipeOf`, which runs in the container's root),
/// what the kernel offers, what is missing — the kernel's shortfalls, then those of the
/// container's start (`lacking`: a read-only root's) —, and what holds for each principal.
pub(crate) fn event_line(
    job_id: &str,
    run_id: &str,
    (base, base_recipe_of): (&str, Option<&str>),
    protections: &Protections,
    lacking: &[Shortfall],
    enforced: &[Enforcement],
) -> String {
    let missing: Vec<String> = protections
        .shortfalls()
        .iter()
        .chain(lacking)
        .map(ToString::to_string)
        .collect();
    let event: Value = json!({
        "type": EVENT_TYPE,
        "id": crate::ids::new_id(),
        "timestamp": crate::ids::now_ms(),
        "jobId": job_id,
        "runId": run_id,
        "base": base,
        "baseRecipeOf": base_recipe_of,
        "kernel": protections,
        "missing": missing,
        "principals": enforced,
    });
    event.to_string()
}

/// One line per principal for stderr.
pub(crate) fn human_lines(enforced: &[Enforcement]) -> Vec<String> {
    enforced
        .iter()
        .map(|e| format!("perstack-sandbox: {}", e.summary()))
        .collect()
}
