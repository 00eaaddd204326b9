//! What `install` writes for each Expert of perstack.lock, in Perstack's shape and key order
//! (`LockfileExpert`: `key`, `name`, `version`, `description`, `instruction`, `skills`,
//! `delegates`, `tags`, `toolDefinitions`):
//!
//! - a perstack.toml Expert as run-setting.json holds it ([`SettingExpert`]: Perstack's parsed
//!   skills, with their defaults, an interactive tool's `inputJsonSchema` as the JSON string);
//! - a published Expert's skills as the Registry sent them, with their `name`;
//! - the tool definitions `{skillName, name, description, inputSchema}` after `pick`/`omit`:
//!   `@perstack/base` (our own workspace tools, listed in-process) and interactive skills.

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::definition::RegistryExpert;
use crate::config::{Expert, Skill};
use crate::jobs::setting_expert::SettingExpert;

/// One Expert of the lock, and the skills whose tools it could not list here.
pub(crate) struct LockEntry {
    /// The `experts.<key>` table.
    pub table: Value,
    /// The number of tool definitions in it.
    pub tools: usize,
    /// MCP skills (other than `@perstack/base`) whose tools were not collected.
    pub uncollected: Vec<String>,
}

/// The entry of an Expert: `published` when it came from the Registry (its skills are written as
/// received).
/// `listed`: the tools its MCP skills offered a listing run, by skill (`None`: not listed).
pub(crate) fn entry(
    expert: &Expert,
    published: Option<&RegistryExpert>,
    listed: Option<&IndexMap<String, Vec<Value>>>,
) -> LockEntry {
    // The file's skills as run-setting.json writes them: Perstack's parsed skills.
    let mut table = match serde_json::to_value(SettingExpert::from(expert)) {
        Ok(Value::Object(table)) => table,
        _ => Map::new(),
    };
    if let Some(found) = published {
        table.insert("skills".into(), Value::Object(published_skills(found)));
    }
    let (definitions, uncollected) = tool_definitions(expert, listed);
    let tools = definitions.len();
    table.insert("toolDefinitions".into(), Value::Array(definitions));
    LockEntry {
        table: Value::Object(table),
        tools,
        uncollected,
    }
}

fn published_skills(found: &RegistryExpert) -> Map<String, Value> {
    let Some(Value::Object(skills)) = found.raw.get("skills") else {
        return Map::new();
    };
    skills
        .iter()
        .map(|(name, skill)| {
            let mut skill = skill.clone();
            if let Value::Object(fields) = &mut skill {
                fields.insert("name".into(), json!(name));
            }
            (name.clone(), skill)
        })
        .collect()
}

/// The tools the Expert is offered by its skills, in skill order, `pick`/`omit` applied; and the
/// MCP skills whose tools need their server started and were not `listed`.
fn tool_definitions(
    expert: &Expert,
    listed: Option<&IndexMap<String, Vec<Value>>>,
) -> (Vec<Value>, Vec<String>) {
    let mut definitions = Vec::new();
    let mut uncollected = Vec::new();
    for skill in expert.skills.values() {
        match skill {
            Skill::McpStdio(s) if s.is_base() => {
                for def in crate::skill::base::TOOLS {
                    let name = def.name.to_string();
                    if (!s.pick.is_empty() && !s.pick.contains(&name)) || s.omit.contains(&name) {
                        continue;
                    }
                    definitions.push(json!({
                        "skillName": s.name,
                        "name": name,
                        "description": def.description,
                        "inputSchema": Value::Object((def.input_schema)()),
                    }));
                }
            }
            Skill::Interactive(s) => {
                for (name, tool) in &s.tools {
                    let mut d = Map::new();
                    d.insert("skillName".into(), json!(s.name));
                    d.insert("name".into(), json!(name));
                    if let Some(description) = &tool.description {
                        d.insert("description".into(), json!(description));
                    }
                    d.insert("inputSchema".into(), tool.input_json_schema.clone());
                    definitions.push(Value::Object(d));
                }
            }
            // A listed Expert's skill missing from the listing offered no tool after pick/omit.
            other => match listed {
                Some(listed) => {
                    definitions.extend(listed.get(other.name()).into_iter().flatten().cloned())
                }
                None => uncollected.push(other.name().to_string()),
            },
        }
    }
    (definitions, uncollected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const TOML: &str = r#"
[experts.main]
instruction = "Main."
delegates = ["@acme/helper@2.0.0"]
[experts.main.skills."@perstack/base"]
type = "mcpStdioSkill"
command = "npx"
packageName = "@perstack/base"
pick = ["attemptCompletion", "readTextFile"]
[experts.main.skills.search]
type = "mcpStdioSkill"
command = "uvx"
packageName = "mcp-search"
requiredEnv = ["SEARCH_KEY"]
[experts.main.skills.ask]
type = "interactiveSkill"
[experts.main.skills.ask.tools.confirm]
description = "Confirm"
inputJsonSchema = '{"type":"object"}'
"#;

    #[test]
    fn a_toml_expert_is_locked_with_perstacks_defaults_and_its_listable_tools() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load_str(&dir.path().join("perstack.toml"), TOML)
            .expect("valid")
            .config;
        let locked = entry(&config.experts["main"], None, None);
        let table = &locked.table;
        let keys: Vec<&str> = table
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "key",
                "name",
                "version",
                "instruction",
                "skills",
                "delegates",
                "tags",
                "toolDefinitions"
            ]
        );
        assert_eq!(
            table["skills"]["search"],
            json!({"type": "mcpStdioSkill", "name": "search", "pick": [], "omit": [],
                   "command": "uvx", "packageName": "mcp-search", "args": [],
                   "requiredEnv": ["SEARCH_KEY"], "lazyInit": false})
        );
        assert_eq!(
            table["skills"]["ask"]["tools"]["confirm"],
            json!({"name": "confirm", "description": "Confirm", "inputJsonSchema": "{\"type\":\"object\"}"})
        );
        let names: Vec<(&str, &str)> = table["toolDefinitions"]
            .as_array()
            .expect("array")
            .iter()
            .map(|d| {
                (
                    d["skillName"].as_str().unwrap_or(""),
                    d["name"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("@perstack/base", "attemptCompletion"),
                ("@perstack/base", "readTextFile"),
                ("ask", "confirm")
            ]
        );
        assert_eq!(locked.tools, 3);
        assert_eq!(locked.uncollected, ["search"]);
        assert_eq!(
            table["toolDefinitions"][1]["inputSchema"]["type"], "object",
            "the schema is a table"
        );
    }
}
