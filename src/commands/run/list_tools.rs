//! `install`'s listing run: the tools of every MCP skill of an Expert's delegation closure, as
//! the run lists them. The run's own stages do it — settings, preflight (every skill's
//! `requiredEnv`, package command, local files; not the provider, which is never asked), the
//! engine's checks and sweep, the plan, the images, the skill containers and their egress — with
//! a runtime that connects the skills, reports each Expert's tools (`runtime --list-tools`,
//! one `toolDefinitions` event each) and exits. The workspace is an empty folder of its own, no
//! job is recorded, and everything labelled with the listing run is removed however it ends,
//! Ctrl-C included.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use indexmap::IndexMap;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{LoadedConfig, SettingFlags, Settings};
use crate::event::{Event, EventBody, RuntimePayload};
use crate::ids::controller::ControllerId;
use crate::render::{Mode, Output};
use crate::sandbox::backend::Backend;
use crate::sandbox::engine::docker::DockerClient;
use crate::sandbox::engine::run::{RunEnd, RunIds, TimeLimit};
use crate::sandbox::engine::workspace_user::workspace_user;
use crate::sandbox::plan::{RunPlan, RunRequest};
use crate::sandbox::preflight::Preflight;

use super::{Notify, RunError};

/// How long a listing run may take, image builds included (a package install can be slow).
const LISTING_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Each Expert's MCP tools, by skill, as perstack.lock's `toolDefinitions` entries.
pub(crate) type Listed = IndexMap<String, IndexMap<String, Vec<Value>>>;

/// What to list.
pub(crate) struct Listing<'a> {
    /// perstack.toml, with the published Experts of the closure resolved into it.
    pub config: &'a LoadedConfig,
    /// The env map (process + dotenv files).
    pub env: &'a BTreeMap<String, String>,
    /// The Expert whose closure is listed.
    pub expert: &'a str,
    /// The job id the listing run's containers, networks and volumes are labelled with.
    pub job_id: &'a str,
    /// `--allow-weaker-isolation`: list on an engine that cannot hold every limit.
    pub allow_weaker_isolation: bool,
}

/// Lists the tools of every MCP skill in `listing.expert`'s closure. `notify` hears the
/// engine's notes and a failed cleanup.
pub(crate) async fn list_tools(
    listing: &Listing<'_>,
    notify: Notify<'_>,
) -> Result<Listed, RunError> {
    let settings = Settings::resolve(&SettingFlags::default(), listing.config)?;
    let workspace = tempfile::Builder::new()
        .prefix("perstack-install-")
        .tempdir()
        .map_err(|e| RunError::Preflight(workspace_problem(e)))?;
    let checked = Preflight {
        config: listing.config,
        expert_key: listing.expert,
        provider: settings.run.provider,
        env: listing.env,
        extra_env: &[],
        workspace: workspace.path(),
        trusted: &[],
    }
    .check_for_listing()
    .map_err(RunError::Preflight)?;
    let crate::commands::artifacts::Loaded { artifacts, note } =
        crate::commands::artifacts::load(&settings.ca_certificates)?;
    note.map(super::Notice::WholeExecutable)
        .into_iter()
        .for_each(notify);
    let engine = super::engine::connect(
        &listing.config.config,
        listing.expert,
        &settings.runtime_engine,
        listing.allow_weaker_isolation,
    )
    .await?;
    engine.notices.into_iter().for_each(notify);
    let user = engine
        .docker
        .engine()
        .workspace_user(workspace_user(&checked.workspace).user);
    let request = RunRequest {
        run_id: crate::ids::new_id(),
        job_id: listing.job_id.to_string(),
        expert_key: listing.expert.to_string(),
        query: String::new(),
        config: listing.config.config.clone(),
        settings: settings.run,
        workspace: checked.workspace,
        user,
        protected: checked.protected,
        runtime_env: checked.runtime_env,
        env: listing.env.clone(),
        mock_script: None,
        artifacts,
        skill_files: checked.skill_files,
        limits: settings.limits,
        oci_runtime: settings.runtime_engine.name.clone(),
        controller: ControllerId::current().to_string(),
        resume: None,
        list_tools: true,
    };
    let plan = crate::sandbox::plan::plan(&request).map_err(RunError::Spec)?;
    let ids = RunIds {
        job_id: request.job_id.clone(),
        run_id: request.run_id.clone(),
        expert_key: request.expert_key.clone(),
    };
    let listed = carry_out(&engine.docker, &plan, &ids).await;
    // The one cleanup path, whatever happened above.
    if let Err(error) = engine.docker.remove_run(&ids.run_id).await {
        notify(super::Notice::CleanupFailed {
            run_id: ids.run_id.clone(),
            error: error.into(),
        });
    }
    listed
}

/// Runs the listing plan to the runtime's exit and gathers its `toolDefinitions` events; Ctrl-C
/// or SIGTERM stops it at once (the caller removes everything).
async fn carry_out(
    docker: &DockerClient,
    plan: &RunPlan,
    ids: &RunIds,
) -> Result<Listed, RunError> {
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        _ => return Err(RunError::Signals),
    };
    let found: Mutex<Listed> = Mutex::new(IndexMap::new());
    let tap = |_: &str, event: &Event| {
        if let Some((expert, tools)) = tool_definitions(event) {
            found
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(expert, tools);
        }
    };
    let human = Mode::Human {
        verbose: false,
        color: false,
        width: 100,
        live: false,
    };
    // Build progress and the skills' stderr go to stderr: stdout is Perstack's install output.
    let (output, writer) = Output::spawn(human, tokio::io::stderr());
    let limit = TimeLimit {
        started: std::time::Instant::now(),
        limit: LISTING_LIMIT,
    };
    let run = docker.execute(plan, ids, &output, false, limit, &tap);
    let result = tokio::select! {
        result = run => Some(result),
        _ = interrupt.recv() => None,
        _ = terminate.recv() => None,
    };
    drop(output);
    let _ = writer.await;
    let report = result.ok_or(RunError::ListingInterrupted)??;
    let found = found.into_inner().unwrap_or_else(PoisonError::into_inner);
    match report.end {
        RunEnd::RuntimeFailed { code: 0, .. } if found.contains_key(&ids.expert_key) => Ok(found),
        RunEnd::RuntimeFailed { code: 0, .. } => Err(RunError::ListingFailed {
            code: 0,
            stderr: format!("it listed no tools for expert \"{}\"", ids.expert_key),
        }),
        RunEnd::RuntimeFailed { code, stderr, .. } => Err(RunError::ListingFailed { code, stderr }),
        _ => Err(RunError::ListingFailed {
            code: 0,
            stderr: "the runtime ran the Expert instead of listing its tools".into(),
        }),
    }
}

/// A `toolDefinitions` event's Expert and its tools, grouped by skill in the order listed.
fn tool_definitions(event: &Event) -> Option<(String, IndexMap<String, Vec<Value>>)> {
    let EventBody::Runtime(RuntimePayload::ToolDefinitions {
        expert,
        tool_definitions,
    }) = &event.body
    else {
        return None;
    };
    let mut by_skill: IndexMap<String, Vec<Value>> = IndexMap::new();
    for definition in tool_definitions {
        let skill = definition["skillName"].as_str().unwrap_or_default();
        by_skill
            .entry(skill.to_string())
            .or_default()
            .push(definition.clone());
    }
    Some((expert.clone(), by_skill))
}

fn workspace_problem(error: std::io::Error) -> crate::sandbox::preflight::Problems {
    crate::sandbox::preflight::Problems(vec![crate::sandbox::preflight::Problem {
        location: None,
        message: format!(
            "cannot make the listing run's empty workspace in {}: {error}",
            std::env::temp_dir().display()
        ),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_relayed_tool_definitions_line_is_read_back_grouped_by_skill() {
        let event = Event::runtime(
            "j",
            "r",
            RuntimePayload::ToolDefinitions {
                expert: "lister".into(),
                tool_definitions: vec![
                    json!({"skillName": "a", "name": "x", "inputSchema": {"type": "object"}}),
                    json!({"skillName": "b", "name": "y", "inputSchema": {"type": "object"}}),
                    json!({"skillName": "a", "name": "z", "inputSchema": {"type": "object"}}),
                ],
            },
        );
        // As the relay reads it: a runtime event, not a run event.
        let read = Event::from_line(&event.to_line()).expect("an event");
        let (expert, by_skill) = tool_definitions(&read).expect("toolDefinitions");
        assert_eq!(expert, "lister");
        let names: Vec<(&str, usize)> = by_skill
            .iter()
            .map(|(s, t)| (s.as_str(), t.len()))
            .collect();
        assert_eq!(names, [("a", 2), ("b", 1)]);
    }
}
