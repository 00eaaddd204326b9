//! A published Expert as the Registry describes it (`GET …/experts/{key}` → `{"data":{"expert":E}}`,
//! PERSTACK-REGISTRY §1.4), checked against that schema, and turned into the same
//! [`Expert`](crate::config::Expert) a perstack.toml table gives — through the very parser and
//! rules perstack.toml goes through, so a registry Expert can ask for nothing a local one could
//! not.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{self, ConfigError, Expert, Skill};

/// `status`: Perstack parses it and ignores it; we warn about `deprecated` and refuse `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Runs.
    Available,
    /// Runs, with a warning.
    Deprecated,
    /// Refused: its publisher withdrew it.
    Disabled,
}

/// `owner`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Required by the schema; read by nobody.
struct Owner {
    name: Option<String>,
    organization_id: String,
    created_at: String,
}

/// The fields the schema requires (unknown ones are allowed, as Perstack's parse is not strict).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Required by the schema; only some are read.
struct Wire {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    key: String,
    name: String,
    min_runtime_version: String,
    description: String,
    owner: Owner,
    created_at: String,
    updated_at: String,
    version: String,
    status: Status,
    instruction: String,
    skills: IndexMap<String, Value>,
    delegates: Vec<String>,
    tags: Vec<String>,
}

/// A definition that passed the schema: what we read of it, and the object itself, which the
/// cache and perstack.lock keep as it came.
#[derive(Debug, Clone)]
pub(crate) struct RegistryExpert {
    /// The Expert's name (`@acme/reviewer`).
    pub name: String,
    /// Its version (`1.2.0`).
    pub version: String,
    /// Its status.
    pub status: Status,
    /// The `expert` object as received.
    pub raw: Value,
}

/// Why a body is not a usable definition.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// Not JSON, or not the schema's shape.
    #[error("{0}")]
    Shape(String),
    /// The schema's shape, but not something perstack.toml would accept.
    #[error("{0}")]
    Rules(String),
}

impl RegistryExpert {
    /// Reads a 200 body.
    pub(crate) fn from_response(body: &[u8]) -> Result<RegistryExpert, DefinitionError> {
        let mut envelope: Value = serde_json::from_slice(body)
            .map_err(|e| DefinitionError::Shape(format!("not JSON ({e})")))?;
        let expert = envelope
            .pointer_mut("/data/expert")
            .map(Value::take)
            .ok_or_else(|| DefinitionError::Shape("it has no data.expert".to_string()))?;
        RegistryExpert::from_value(expert)
    }

    /// Checks an `expert` object (from the Registry, the cache or perstack.lock).
    pub(crate) fn from_value(raw: Value) -> Result<RegistryExpert, DefinitionError> {
        let wire: Wire = serde_json::from_value(raw.clone())
            .map_err(|e| DefinitionError::Shape(format!("response validation failed: {e}")))?;
        let shape = |what: String| Err(DefinitionError::Shape(what));
        if wire.kind != "registryExpert" {
            return shape(format!("type is \"{}\", not \"registryExpert\"", wire.kind));
        }
        if wire.id.is_empty()
            || !wire
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return shape(format!("id \"{}\" does not match [a-z0-9]+", wire.id));
        }
        if !config::patterns::is_expert_name(&wire.name) {
            return shape(format!("name \"{}\" is not an Expert name", wire.name));
        }
        if semver::Version::parse(&wire.version).is_err() {
            return shape(format!(
                "version \"{}\" is not a semver version",
                wire.version
            ));
        }
        Ok(RegistryExpert {
            name: wire.name,
            version: wire.version,
            status: wire.status,
            raw,
        })
    }

    /// The Expert as the run uses it, under the key it was asked for. Its skills and delegates go
    /// through perstack.toml's parser and rules; a stdio skill's command must be `npx` or `uvx`,
    /// as Perstack publishes them (its package is installed when its image is built).
    pub(crate) fn to_expert(&self, key: &str) -> Result<Expert, DefinitionError> {
        let expert = self.parse_as(key)?;
        for skill in expert.skills.values() {
            if let Skill::McpStdio(stdio) = skill
                && !stdio.is_base()
                && !matches!(stdio.command.as_str(), "npx" | "uvx")
            {
                return Err(DefinitionError::Rules(format!(
                    "skill \"{}\" runs \"{}\"; a published skill runs \"npx\" or \"uvx\"",
                    stdio.name, stdio.command
                )));
            }
        }
        Ok(expert)
    }

    /// The definition through perstack.toml's parser and rules, under `key`, without the rules
    /// only published skills follow (perstack.lock's entries of the file's own Experts are read
    /// this way to compare them with the file).
    pub(crate) fn parse_as(&self, key: &str) -> Result<Expert, DefinitionError> {
        let text = self.as_toml()?;
        let origin = PathBuf::from(format!("/perstack-registry/{key}"));
        let loaded = config::load_str(&origin, &text).map_err(|e| rules_error(key, e))?;
        let mut expert = loaded
            .config
            .experts
            .get(&self.name)
            .cloned()
            .ok_or_else(|| DefinitionError::Rules(format!("{key}: no Expert in the definition")))?;
        expert.key = key.to_string();
        Ok(expert)
    }

    /// The definition as the `[experts."<name>"]` table of a perstack.toml.
    fn as_toml(&self) -> Result<String, DefinitionError> {
        let fields = [
            "version",
            "description",
            "instruction",
            "delegates",
            "tags",
            "skills",
        ];
        let mut table = toml::Table::new();
        for field in fields {
            if let Some(value) = self.raw.get(field).and_then(to_toml) {
                table.insert(field.to_string(), value);
            }
        }
        if let Some(toml::Value::Table(skills)) = table.get_mut("skills") {
            // A skill's name is its key, and so is an interactive tool's; Perstack's conversion
            // (and its lock) sets them so.
            for (_, skill) in skills.iter_mut() {
                if let toml::Value::Table(skill) = skill {
                    skill.remove("name");
                    if let Some(toml::Value::Table(tools)) = skill.get_mut("tools") {
                        for (_, tool) in tools.iter_mut() {
                            if let toml::Value::Table(tool) = tool {
                                tool.remove("name");
                            }
                        }
                    }
                }
            }
        }
        let mut experts = toml::Table::new();
        experts.insert(self.name.clone(), toml::Value::Table(table));
        let mut root = toml::Table::new();
        root.insert("experts".to_string(), toml::Value::Table(experts));
        toml::to_string(&root).map_err(|e| DefinitionError::Shape(e.to_string()))
    }
}

/// JSON as TOML; `null` has no TOML form and is dropped, as Perstack's TOML writer drops it.
pub(crate) fn to_toml(value: &Value) -> Option<toml::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().filter_map(to_toml).collect()),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), to_toml(v)?)))
                .collect(),
        ),
    })
}

fn rules_error(key: &str, error: ConfigError) -> DefinitionError {
    let ConfigError::Invalid { diagnostics, .. } = error else {
        return DefinitionError::Rules(error.to_string());
    };
    let mut out = format!("the definition of {key} breaks perstack.toml's rules:");
    for d in diagnostics {
        out.push_str(&format!("\n    - {}: {}", d.path, d.message));
    }
    DefinitionError::Rules(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A published Expert with every field the schema requires.
    pub(crate) fn published(name: &str, version: &str) -> Value {
        json!({
            "type": "registryExpert",
            "id": "abc123",
            "key": format!("{name}@{version}"),
            "name": name,
            "minRuntimeVersion": "v1.0",
            "description": "Reviews code",
            "owner": {"organizationId": "org1", "createdAt": "2025-01-01T00:00:00Z"},
            "createdAt": "2025-01-01T00:00:00Z",
            "updatedAt": "2025-01-01T00:00:00Z",
            "version": version,
            "status": "available",
            "instruction": "Review the code.",
            "skills": {
                "@perstack/base": {"type": "mcpStdioSkill", "description": "base", "command": "npx", "packageName": "@perstack/base", "pick": ["attemptCompletion"]},
                "search": {"type": "mcpStdioSkill", "description": "web", "command": "uvx", "packageName": "mcp-search", "requiredEnv": ["SEARCH_KEY"], "rule": null},
                "ask": {"type": "interactiveSkill", "description": "ask", "tools": {"askUser": {"description": "Ask", "inputJsonSchema": "{\"type\":\"object\"}"}}}
            },
            "delegates": ["@acme/helper@2.0.0"],
            "tags": ["latest"]
        })
    }

    #[test]
    fn a_definition_becomes_the_expert_a_toml_table_would_give() {
        let body = json!({"data": {"expert": published("@acme/reviewer", "1.2.0")}}).to_string();
        let found = RegistryExpert::from_response(body.as_bytes()).expect("valid");
        assert_eq!(
            (found.name.as_str(), found.version.as_str()),
            ("@acme/reviewer", "1.2.0")
        );
        let expert = found.to_expert("@acme/reviewer@1.2.0").expect("converts");
        assert_eq!(expert.key, "@acme/reviewer@1.2.0");
        assert_eq!(expert.name, "@acme/reviewer");
        assert_eq!(expert.version, "1.2.0");
        assert_eq!(expert.delegates, ["@acme/helper@2.0.0"]);
        let names: Vec<&str> = expert.skills.keys().map(String::as_str).collect();
        assert_eq!(names, ["@perstack/base", "search", "ask"]);
        let Skill::McpStdio(search) = &expert.skills["search"] else {
            panic!("stdio")
        };
        assert_eq!(search.required_env, ["SEARCH_KEY"]);
        assert_eq!(search.argv(), ["mcp-search"]);
        let Skill::Interactive(ask) = &expert.skills["ask"] else {
            panic!("interactive")
        };
        assert_eq!(
            ask.tools["askUser"].input_json_schema,
            json!({"type": "object"})
        );
    }

    #[test]
    fn bodies_failing_the_schema_or_the_rules_say_what_is_wrong() {
        let shape = |expert: Value| {
            RegistryExpert::from_value(expert)
                .expect_err("refused")
                .to_string()
        };
        let mut missing = published("a", "1.0.0");
        missing
            .as_object_mut()
            .expect("object")
            .remove("instruction");
        assert!(shape(missing).contains("instruction"));
        let mut status = published("a", "1.0.0");
        status["status"] = json!("gone");
        assert!(shape(status).contains("gone"));
        let mut kind = published("a", "1.0.0");
        kind["type"] = json!("expertDigest");
        assert!(shape(kind).contains("registryExpert"));
        assert!(RegistryExpert::from_response(b"<html>").is_err());
        assert!(RegistryExpert::from_response(b"{\"data\":{}}").is_err());

        let rules = |expert: Value| {
            RegistryExpert::from_value(expert)
                .expect("shape is fine")
                .to_expert("a@1.0.0")
                .expect_err("refused")
                .to_string()
        };
        let mut unknown = published("a", "1.0.0");
        unknown["skills"]["x"] = json!({"type": "pythonSkill", "description": "d"});
        let message = rules(unknown);
        assert!(
            message.contains("unknown skill type \"pythonSkill\""),
            "{message}"
        );
        let mut command = published("a", "1.0.0");
        command["skills"]["search"]["command"] = json!("sh");
        assert!(rules(command).contains("\"npx\" or \"uvx\""));
        let mut env = published("a", "1.0.0");
        env["skills"]["search"]["requiredEnv"] = json!(["NOT-A-NAME"]);
        assert!(rules(env).contains("NOT-A-NAME"));
    }
}
