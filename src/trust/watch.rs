//! Watching a run's trusted inputs: their digests as it starts, compared as it ends. A change
//! is kept in the workspace's record until the user accepts it, and every run before it starts
//! refuses while one is kept. A run whose controller was killed never compared: the next run
//! compares for it (the controller id tells a killed run from one still going).

use super::TrustError;
use super::digest::digest;
use super::inputs::{Rule, TrustedInput};
use super::record::{Change, InFlight, Record, RecordFiles, Watched};
use crate::ids::controller::{ControllerId, Liveness};

/// A run being watched; [`Watch::end`] compares.
#[derive(Debug)]
pub(crate) struct Watch {
    files: RecordFiles,
    run: InFlight,
}

/// Refuses when changes are kept, after comparing for runs whose controller was killed.
pub(crate) fn check(files: &RecordFiles) -> Result<(), TrustError> {
    let mut locked = files.lock()?;
    let settled = settle_killed(&mut locked.record);
    let pending = refusal(&locked.record);
    if settled {
        locked.save()?;
    }
    pending
}

/// Starts watching: records the digests of `inputs` as the run `run_id` of `job_id` starts.
/// Refuses, as [`check`], when changes are kept.
pub(crate) fn begin(
    files: RecordFiles,
    inputs: &[TrustedInput],
    job_id: &str,
    run_id: &str,
) -> Result<Watch, TrustError> {
    let run = InFlight {
        job_id: job_id.to_string(),
        run_id: run_id.to_string(),
        controller: ControllerId::current().to_string(),
        inputs: inputs
            .iter()
            .map(|input| Watched {
                path: input.path.clone(),
                kind: Rule::Input(input.kind).name().to_string(),
                digest: digest(&input.path),
            })
            .collect(),
    };
    let mut locked = files.lock()?;
    let settled = settle_killed(&mut locked.record);
    if let Err(refused) = refusal(&locked.record) {
        if settled {
            locked.save()?;
        }
        return Err(refused);
    }
    locked.record.runs.push(run.clone());
    locked.save()?;
    Ok(Watch { files, run })
}

impl Watch {
    /// The workspace watched.
    pub(crate) fn workspace(&self) -> &std::path::Path {
        self.files.workspace()
    }

    /// Compares the inputs with their digests at the start; keeps and gives the changes.
    pub(crate) fn end(self) -> Result<Vec<Change>, TrustError> {
        let mut locked = self.files.lock()?;
        locked.record.runs.retain(|r| r.run_id != self.run.run_id);
        let changes = changes_of(&self.run);
        locked.record.changes.extend(changes.iter().cloned());
        locked.save()?;
        Ok(changes)
    }
}

/// The changes of a run: each input whose digest is not what it was.
fn changes_of(run: &InFlight) -> Vec<Change> {
    let now = crate::ids::now_ms();
    run.inputs
        .iter()
        .filter_map(|input| {
            let after = digest(&input.path);
            (after != input.digest).then(|| Change {
                path: input.path.clone(),
                kind: input.kind.clone(),
                job_id: run.job_id.clone(),
                run_id: run.run_id.clone(),
                before: input.digest.clone(),
                after,
                found_at: now,
            })
        })
        .collect()
}

/// Compares for the runs whose controller is gone, and forgets them; whether any was.
fn settle_killed(record: &mut Record) -> bool {
    let (killed, alive): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut record.runs)
        .into_iter()
        .partition(|run| {
            ControllerId::parse(&run.controller).map(|c| c.liveness()) == Some(Liveness::Gone)
        });
    record.runs = alive;
    for run in &killed {
        record.changes.extend(changes_of(run));
    }
    !killed.is_empty()
}

fn refusal(record: &Record) -> Result<(), TrustError> {
    if record.changes.is_empty() {
        return Ok(());
    }
    Err(TrustError::Pending {
        workspace: record.workspace.clone(),
        changes: record.changes.clone(),
    })
}

/// Forgets the kept changes of the record: the user has looked. Gives them.
pub(crate) fn accept(files: &RecordFiles) -> Result<Vec<Change>, TrustError> {
    let mut locked = files.lock()?;
    settle_killed(&mut locked.record);
    let accepted = std::mem::take(&mut locked.record.changes);
    locked.save()?;
    Ok(accepted)
}

/// The kept changes and the runs under way, as the record has them.
pub(crate) fn status(files: &RecordFiles) -> Result<Record, TrustError> {
    let locked = files.lock()?;
    Ok(locked.record.clone())
}

#[cfg(test)]
mod tests;
