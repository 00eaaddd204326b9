//! Connecting an Expert's skills: one MCP client per skill container, in parallel, with the
//! `skillStarting` / `skillConnected` events of PERSTACK-COMPAT.md §3.

use std::sync::Arc;
use std::time::Duration;

use super::spec::RuntimeSpec;
use super::{RuntimeArgs, RuntimeError};
use crate::agent::tools::ToolSet;
use crate::config::{Expert, Skill};
use crate::event::{Event, EventSink, RuntimePayload};
use crate::skill::client::McpSkill;

/// How long the runtime waits for a skill container to open its socket.
const SKILL_CONNECT_WAIT: Duration = Duration::from_secs(60);

/// Connects every MCP skill of `expert_key` in parallel, emitting `skillStarting` and
/// `skillConnected`, and builds its tool set with `pick`/`omit` applied.
pub async fn connect_skills(
    args: &RuntimeArgs,
    spec: &RuntimeSpec,
    expert: &Expert,
    sink: &EventSink,
) -> Result<ToolSet, RuntimeError> {
    let endpoints: Vec<_> = spec
        .skills
        .iter()
        .filter(|e| e.expert == expert.key)
        .collect();
    let connections = futures::future::join_all(endpoints.iter().map(|endpoint| async move {
        sink.emit(Event::runtime(
            &args.job_id,
            &args.run_id,
            RuntimePayload::SkillStarting {
                skill_name: endpoint.skill.clone(),
                command: endpoint.command.clone(),
                args: endpoint.args.clone(),
            },
        ));
        let (skill, timings) = McpSkill::connect_unix(
            &endpoint.skill,
            std::path::Path::new(&endpoint.socket),
            SKILL_CONNECT_WAIT,
        )
        .await?;
        sink.emit(Event::runtime(
            &args.job_id,
            &args.run_id,
            RuntimePayload::SkillConnected {
                skill_name: endpoint.skill.clone(),
                server_info: skill.server_info.clone(),
                // The server process is started by its container, before we connect.
                spawn_duration_ms: Some(0),
                handshake_duration_ms: Some(timings.handshake_ms),
                tool_discovery_duration_ms: Some(timings.discovery_ms),
                connect_duration_ms: Some(timings.connect_ms + timings.handshake_ms),
                total_duration_ms: Some(timings.total_ms),
            },
        ));
        Ok::<_, RuntimeError>(skill)
    }))
    .await;
    let mut tools = ToolSet::new();
    let mut connected = Vec::new();
    for connection in connections {
        connected.push(Arc::new(connection?));
    }
    // Skill order in the file decides routing order (§5).
    for skill in expert.skills.values() {
        let Skill::McpStdio(stdio) = skill else {
            continue;
        };
        if let Some(client) = connected.iter().find(|c| c.name == stdio.name) {
            tools.add_mcp(client.clone(), &stdio.pick, &stdio.omit)?;
        }
    }
    Ok(tools)
}
