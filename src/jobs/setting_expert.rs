//! An Expert as `run-setting.json` holds it: Perstack's `expertSchema` after parsing
//! (`packages/core/src/schemas/expert.ts`, `skill.ts`), which differs from perstack.toml in three
//! ways a reader of the file relies on:
//!
//! - every skill carries its `name`, and the lists and flags the file may leave out are there
//!   with their defaults (`pick`, `omit`, `args`, `requiredEnv` = `[]`, `lazyInit` = `false`);
//! - an interactive tool carries its `name`, and its `inputJsonSchema` is the JSON Schema as a
//!   *string*, as in the file (we parse it to check it; here it is written back as JSON text);
//! - `delegates` and `tags` are always present.
//!
//! `allowedDomains`, which Perstack's runtime schema leaves out, is kept when a skill has any:
//! it is the grant the run was made with.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::config::{Expert, InteractiveSkill, McpSseSkill, McpStdioSkill, Skill};

/// One Expert of a run setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SettingExpert {
    /// Its key.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its description, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its instruction.
    pub instruction: String,
    /// Its skills, by name, in file order.
    pub skills: IndexMap<String, SettingSkill>,
    /// The keys of its delegates.
    pub delegates: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// One skill of a [`SettingExpert`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
#[allow(missing_docs)]
// Field names are Perstack's; the module comment says what differs.
// The variants are Perstack's wire type names (`rename_all`), suffix included.
#[allow(clippy::enum_variant_names)]
pub(crate) enum SettingSkill {
    #[serde(rename_all = "camelCase")]
    McpStdioSkill {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        pick: Vec<String>,
        omit: Vec<String>,
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        package_name: Option<String>,
        args: Vec<String>,
        required_env: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allowed_domains: Vec<String>,
        lazy_init: bool,
    },
    #[serde(rename_all = "camelCase")]
    McpSseSkill {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        pick: Vec<String>,
        omit: Vec<String>,
        endpoint: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allowed_domains: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    InteractiveSkill {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        tools: IndexMap<String, SettingInteractiveTool>,
    },
}

/// One tool of an interactive skill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SettingInteractiveTool {
    /// The tool's name (its key).
    pub name: String,
    /// Its description, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its input's JSON Schema, as JSON text.
    pub input_json_schema: String,
}

impl From<&Expert> for SettingExpert {
    fn from(expert: &Expert) -> SettingExpert {
        SettingExpert {
            key: expert.key.clone(),
            name: expert.name.clone(),
            version: expert.version.clone(),
            description: expert.description.clone(),
            instruction: expert.instruction.clone(),
            skills: expert
                .skills
                .iter()
                .map(|(name, skill)| (name.clone(), SettingSkill::from(skill)))
                .collect(),
            delegates: expert.delegates.clone(),
            tags: expert.tags.clone(),
        }
    }
}

impl From<&Skill> for SettingSkill {
    fn from(skill: &Skill) -> SettingSkill {
        match skill {
            Skill::McpStdio(stdio) => stdio_skill(stdio),
            Skill::McpSse(sse) => sse_skill(sse),
            Skill::Interactive(interactive) => interactive_skill(interactive),
        }
    }
}

fn stdio_skill(skill: &McpStdioSkill) -> SettingSkill {
    SettingSkill::McpStdioSkill {
        name: skill.name.clone(),
        description: skill.description.clone(),
        rule: skill.rule.clone(),
        pick: skill.pick.clone(),
        omit: skill.omit.clone(),
        command: skill.command.clone(),
        package_name: skill.package_name.clone(),
        args: skill.args.clone(),
        required_env: skill.required_env.clone(),
        allowed_domains: skill.allowed_domains.clone(),
        lazy_init: skill.lazy_init,
    }
}

fn sse_skill(skill: &McpSseSkill) -> SettingSkill {
    SettingSkill::McpSseSkill {
        name: skill.name.clone(),
        description: skill.description.clone(),
        rule: skill.rule.clone(),
        pick: skill.pick.clone(),
        omit: skill.omit.clone(),
        endpoint: skill.endpoint.clone(),
        allowed_domains: skill.allowed_domains.clone(),
    }
}

fn interactive_skill(skill: &InteractiveSkill) -> SettingSkill {
    SettingSkill::InteractiveSkill {
        name: skill.name.clone(),
        description: skill.description.clone(),
        rule: skill.rule.clone(),
        tools: skill
            .tools
            .iter()
            .map(|(name, tool)| {
                let tool = SettingInteractiveTool {
                    name: name.clone(),
                    description: tool.description.clone(),
                    input_json_schema: tool.input_json_schema.to_string(),
                };
                (name.clone(), tool)
            })
            .collect(),
    }
}
