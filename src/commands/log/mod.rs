//! `perstack-sandbox log`: a stored job read back (PERSTACK-REGISTRY-LOG-START.md §3, with
//! upstream's flags and filter grammar). With no flags, the latest job of the workspace as a
//! summary of what each Expert did; with event flags, the events asked for; `--json` for tools.
//! Reads go through the job store, which follows no link out of the workspace.

mod filter;
mod history;
mod overview;
mod render;

use serde_json::Value;

use crate::cli::LogArgs;
use crate::exit::Exit;
use crate::jobs::{JobStore, JobsError};

use filter::{DELEGATION_TYPES, ERROR_TYPES, FilterExpr, Filters, StepFilter, TOOL_TYPES};
use history::History;
use render::View;

/// Why `log` could not show a job.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The workspace folder is unreadable.
    #[error("cannot read the current folder: {0}")]
    CurrentDir(#[source] std::io::Error),
    /// The store could not be read (a link in it included).
    #[error(transparent)]
    Jobs(#[from] JobsError),
    /// `--job` names no stored job.
    #[error(
        "job `{job_id}` not found in {storage}\n  hint: `perstack-sandbox log` shows the latest job"
    )]
    JobNotFound {
        /// The job.
        job_id: String,
        /// Where we looked.
        storage: String,
    },
    /// `--run` names no run of the job.
    #[error("run `{0}` not found in the job\n  hint: `perstack-sandbox log` lists the job's runs")]
    RunNotFound(String),
    /// `--checkpoint` names no checkpoint of the job.
    #[error("checkpoint not found: {0}")]
    CheckpointNotFound(String),
    /// A bad `--step`.
    #[error("Invalid step filter: {0}")]
    StepFilter(String),
    /// A `--step` range upside down.
    #[error("Invalid step range: {min}-{max} (min {min} > max {max})")]
    StepRange {
        /// Its start.
        min: u64,
        /// Its end.
        max: u64,
    },
    /// A bad `--filter`.
    #[error(
        "Invalid filter expression: {0}\n  hint: `.field OP value`, OP one of == != > >= < <=, `[]` over arrays: .toolCalls[].toolName == \"askUser\""
    )]
    Filter(String),
    /// The JSON could not be written.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<&LogError> for Exit {
    fn from(error: &LogError) -> Exit {
        match error {
            LogError::CurrentDir(_) | LogError::Jobs(_) | LogError::Json(_) => Exit::RunFailed,
            _ => Exit::Usage,
        }
    }
}

/// Shows a job; `No data found` (exit 0, as upstream) when the workspace has none.
pub fn run(args: LogArgs) -> Result<Exit, LogError> {
    let workspace = match &args.workspace {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(LogError::CurrentDir)?,
    };
    let filters = filters(&args)?;
    let store = JobStore::open(&workspace, crate::files::Owner::detect())?;
    let storage = store.root().display().to_string();
    let history = match &args.job {
        Some(id) => History::read(&store, id)?.ok_or_else(|| LogError::JobNotFound {
            job_id: id.clone(),
            storage: storage.clone(),
        })?,
        None => match History::latest(&store)? {
            Some(history) => history,
            None => {
                println!("No data found");
                return Ok(Exit::Success);
            }
        },
    };
    let output = show(&args, &store, &history, filters, storage)?;
    print!("{output}");
    Ok(Exit::Success)
}

/// The output for `history`, text or JSON.
fn show(
    args: &LogArgs,
    store: &JobStore,
    history: &History,
    filters: Filters,
    storage: String,
) -> Result<String, LogError> {
    let checkpoint = match &args.checkpoint {
        Some(id) => Some(find_checkpoint(store, &history.job_id, id)?),
        None => None,
    };
    let run = args.run.clone().or_else(|| {
        checkpoint
            .as_ref()
            .and_then(|c| c["runId"].as_str().map(str::to_string))
    });
    let events: Vec<Value> = match &run {
        Some(run) => {
            let of_run: Vec<Value> = history
                .events
                .iter()
                .filter(|e| e["runId"].as_str() == Some(run.as_str()))
                .cloned()
                .collect();
            if of_run.is_empty() {
                return Err(LogError::RunNotFound(run.clone()));
            }
            of_run
        }
        None => history.events.clone(),
    };
    let listing = args.wants_events() || checkpoint.is_some();
    let (shown, matched) = filter::select(
        &events,
        &filters,
        args.offset,
        args.take.unwrap_or(100),
        args.context.unwrap_or(0),
    );
    let view = View {
        history,
        latest: args.job.is_none(),
        storage,
        runs: overview::runs(&history.events),
        events: listing.then(|| shown.iter().map(|&i| &events[i]).collect()),
        matched: if listing { matched } else { 0 },
        checkpoint,
        messages: args.messages,
        summary: args.summary,
    };
    if args.json {
        let value = render::json_view(&view);
        let mut text = if args.pretty {
            serde_json::to_string_pretty(&value)?
        } else {
            serde_json::to_string(&value)?
        };
        text.push('\n');
        Ok(text)
    } else {
        Ok(render::text_view(&view))
    }
}

fn filters(args: &LogArgs) -> Result<Filters, LogError> {
    let mut presets = Vec::new();
    for (on, types) in [
        (args.errors, &ERROR_TYPES[..]),
        (args.tools, &TOOL_TYPES[..]),
        (args.delegations, &DELEGATION_TYPES[..]),
    ] {
        if on {
            presets.extend_from_slice(types);
        }
    }
    Ok(Filters {
        step: args.step.as_deref().map(StepFilter::parse).transpose()?,
        event_type: args.event_type.clone(),
        presets,
        expr: args.filter.as_deref().map(FilterExpr::parse).transpose()?,
    })
}

fn find_checkpoint(store: &JobStore, job_id: &str, id: &str) -> Result<Value, LogError> {
    let found = store
        .checkpoints(job_id)?
        .into_iter()
        .find(|c| c.checkpoint.id == id)
        .ok_or_else(|| LogError::CheckpointNotFound(id.to_string()))?;
    serde_json::from_str(&found.json).map_err(LogError::Json)
}

#[cfg(test)]
mod tests;
