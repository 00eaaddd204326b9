//! The flat tool namespace the model sees, and routing each call to the skill that owns it.

use std::sync::Arc;

use serde_json::Value;

use crate::llm::ToolSpec;
use crate::skill::client::McpSkill;
use crate::skill::result::{ToolOutput, map_call_result};

/// Two skills offer a tool of the same name; the model could not tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tool `{tool}` is offered by both skill `{first}` and skill `{second}`; hide one with `pick` or `omit` in perstack.toml"
)]
pub struct DuplicateTool {
    /// The tool name.
    pub tool: String,
    /// The skill that offered it first.
    pub first: String,
    /// The skill that offered it again.
    pub second: String,
}

struct Entry {
    skill_name: String,
    spec: ToolSpec,
    skill: Arc<McpSkill>,
}

/// Every tool of an Expert's skills, by name.
#[derive(Default)]
pub struct ToolSet {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{}/{}", e.skill_name, e.spec.name)),
            )
            .finish()
    }
}

impl ToolSet {
    /// An empty set.
    pub fn new() -> ToolSet {
        ToolSet::default()
    }

    /// Adds a skill's tools, filtered by `pick` (a whitelist when non-empty; unknown names are
    /// ignored, as in Perstack) and `omit`.
    pub fn add_mcp(
        &mut self,
        skill: Arc<McpSkill>,
        pick: &[String],
        omit: &[String],
    ) -> Result<(), DuplicateTool> {
        for spec in &skill.tools {
            if (!pick.is_empty() && !pick.contains(&spec.name)) || omit.contains(&spec.name) {
                continue;
            }
            if let Some(existing) = self.entries.iter().find(|e| e.spec.name == spec.name) {
                return Err(DuplicateTool {
                    tool: spec.name.clone(),
                    first: existing.skill_name.clone(),
                    second: skill.name.clone(),
                });
            }
            self.entries.push(Entry {
                skill_name: skill.name.clone(),
                spec: spec.clone(),
                skill: skill.clone(),
            });
        }
        Ok(())
    }

    /// The tools to offer the model, in skill order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.entries.iter().map(|e| e.spec.clone()).collect()
    }

    /// The skill that owns `tool`.
    pub fn skill_of(&self, tool: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.spec.name == tool)
            .map(|e| e.skill_name.as_str())
    }

    /// Runs one call. Unknown tools, MCP errors and dead skills all come back as error output,
    /// so the model can react and the run goes on.
    pub async fn call(&self, tool: &str, args: &Value) -> ToolOutput {
        let Some(entry) = self.entries.iter().find(|e| e.spec.name == tool) else {
            let known: Vec<&str> = self.entries.iter().map(|e| e.spec.name.as_str()).collect();
            return ToolOutput::error(format!(
                "Error calling tool {tool}: no such tool (available: {})",
                known.join(", ")
            ));
        };
        match entry.skill.call(tool, args).await {
            Ok(result) => map_call_result(tool, args, &result),
            Err(failure) => ToolOutput::error(failure.0),
        }
    }
}
