//! From TOML text to [`Config`], by hand over the spanned tree of `toml::de::DeTable`.
//!
//! Serde would stop at the first mismatch and forget where values were; walking the tree keeps
//! going, so one run reports every type problem in the file, and records the position of every
//! field it reads for later messages. Shape is checked here (types, required keys, what a Rust
//! type can hold, discriminators); rules about values live in `validate.rs`. Keys we do not know
//! are ignored, as Perstack ignores them, except in our own `[sandbox]` table, where a typo would
//! silently drop a limit.

use std::collections::BTreeMap;
use std::ops::Range;

use indexmap::IndexMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{LineIndex, Pos, Report};
use super::dotted::{child, item};
use super::schema::*;

type Value<'i> = Spanned<DeValue<'i>>;

/// The skill types Perstack knows, as listed in messages.
pub(crate) const SKILL_TYPES: [&str; 3] = ["mcpStdioSkill", "mcpSseSkill", "interactiveSkill"];

const SANDBOX_KEYS: [&str; 13] = [
    "workspaceImage",
    "nodeImage",
    "pythonImage",
    "skillImage",
    "npmRegistry",
    "pipIndexUrl",
    "caCertificates",
    "runtime",
    "memory",
    "cpus",
    "pids",
    "writable",
    "skills",
];

/// Where each field read from the file sits, by dotted path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Locations {
    /// Start of each value; for a table, its `[header]`, `{`, or first key.
    values: BTreeMap<String, Pos>,
    /// Start of each key.
    keys: BTreeMap<String, Pos>,
}

impl Locations {
    /// The position of the value at `path`.
    pub(super) fn value(&self, path: &str) -> Option<Pos> {
        self.values.get(path).copied()
    }

    /// The position of the key of `path`, else of its value.
    pub(super) fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }
}

/// A parsed file: the model and where its fields came from.
pub(crate) struct Parsed {
    pub config: Config,
    pub locations: Locations,
}

/// Parses `text`, adding every problem to `report`. `None` when the TOML itself does not parse:
/// a tree recovered from broken syntax would only add confusing follow-up errors.
pub(crate) fn parse(text: &str, report: &mut Report) -> Option<Parsed> {
    let index = LineIndex::new(text);
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for error in errors {
            let pos = error
                .span()
                .map_or(Pos { line: 1, col: 1 }, |span| index.span_pos(&span));
            report.push_syntax(pos, error.message().to_string());
        }
        return None;
    }
    let mut walker = Walker {
        index,
        report,
        locations: Locations::default(),
    };
    let root = Table {
        table: root.get_ref(),
        path: String::new(),
        pos: Pos { line: 1, col: 1 },
        name: "the top level".to_string(),
    };
    let config = walker.config(&root);
    Some(Parsed {
        config,
        locations: walker.locations,
    })
}

/// A table being read, with its path and where it starts.
struct Table<'t, 'i> {
    table: &'t DeTable<'i>,
    path: String,
    pos: Pos,
    /// How messages name it: `[provider]`, `the top level`.
    name: String,
}

struct Walker<'a, 'r> {
    index: LineIndex<'a>,
    report: &'r mut Report,
    locations: Locations,
}

/// "a string", "an integer", …: the TOML type of a value, for messages.
fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// "a JSON string", …: the type of a JSON value, for messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "JSON null",
        serde_json::Value::Bool(_) => "a JSON boolean",
        serde_json::Value::Number(_) => "a JSON number",
        serde_json::Value::String(_) => "a JSON string",
        serde_json::Value::Array(_) => "a JSON array",
        serde_json::Value::Object(_) => "a JSON object",
    }
}

fn header_name(path: &str) -> String {
    format!("[{path}]")
}

impl<'i> Walker<'_, '_> {
    fn pos(&self, span: &Range<usize>) -> Pos {
        self.index.span_pos(span)
    }

    fn record(&mut self, path: &str, key_span: Option<&Range<usize>>, value: &Value<'i>) -> Pos {
        let pos = self.pos(&value.span());
        self.locations.values.insert(path.to_string(), pos);
        if let Some(span) = key_span {
            let key_pos = self.pos(span);
            self.locations.keys.insert(path.to_string(), key_pos);
        }
        pos
    }

    /// Looks up `key` in `t`, recording where it is.
    fn get<'t>(&mut self, t: &Table<'t, 'i>, key: &str) -> Option<(String, Pos, &'t Value<'i>)> {
        let (k, value) = t.table.get_key_value(key)?;
        let path = child(&t.path, key);
        let pos = self.record(&path, Some(&k.span()), value);
        Some((path, pos, value))
    }

    fn mismatch(&mut self, path: &str, pos: Pos, expected: &str, value: &DeValue<'_>) {
        let message = format!("expected {expected}, found {}", kind(value));
        self.report.push(path, pos, message);
    }

    fn missing(&mut self, t: &Table<'_, '_>, key: &str, what: &str) {
        let message = format!("missing required key \"{key}\" in {} ({what})", t.name);
        self.report.push(&child(&t.path, key), t.pos, message);
    }

    fn string(&mut self, t: &Table<'_, 'i>, key: &str) -> Option<String> {
        let (path, pos, value) = self.get(t, key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.mismatch(&path, pos, "a string", other);
                None
            }
        }
    }

    /// Like [`Self::string`], reporting an absent key with `what` explaining the field.
    fn required_string(&mut self, t: &Table<'_, 'i>, key: &str, what: &str) -> Option<String> {
        if !t.table.contains_key(key) {
            self.missing(t, key, what);
            return None;
        }
        self.string(t, key)
    }

    fn bool(&mut self, t: &Table<'_, 'i>, key: &str) -> Option<bool> {
        let (path, pos, value) = self.get(t, key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.mismatch(&path, pos, "a boolean (true or false)", other);
                None
            }
        }
    }

    /// An integer in `0..=max`.
    fn unsigned(&mut self, t: &Table<'_, 'i>, key: &str, max: u64) -> Option<u64> {
        let (path, pos, value) = self.get(t, key)?;
        let DeValue::Integer(int) = value.get_ref() else {
            self.mismatch(&path, pos, "a non-negative integer", value.get_ref());
            return None;
        };
        match i128::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if n < 0 => {
                let message = format!("expected a non-negative integer, found {n}");
                self.report.push(&path, pos, message);
                None
            }
            Ok(n) if n <= i128::from(max) => u64::try_from(n).ok(),
            _ => {
                let message = format!("expected an integer no larger than {max}, found {int}");
                self.report.push(&path, pos, message);
                None
            }
        }
    }

    /// Any integer that fits in an `i64`; range rules are for `validate.rs`.
    fn i64(&mut self, t: &Table<'_, 'i>, key: &str) -> Option<i64> {
        let (path, pos, value) = self.get(t, key)?;
        let DeValue::Integer(int) = value.get_ref() else {
            self.mismatch(&path, pos, "an integer", value.get_ref());
            return None;
        };
        let parsed = i64::from_str_radix(int.as_str(), int.radix()).ok();
        if parsed.is_none() {
            let message = format!("{int} is out of range for a 64-bit integer");
            self.report.push(&path, pos, message);
        }
        parsed
    }

    fn u32(&mut self, t: &Table<'_, 'i>, key: &str) -> Option<u32> {
        self.unsigned(t, key, u64::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok())
    }

    fn string_array(&mut self, t: &Table<'_, 'i>, key: &str) -> Option<Vec<String>> {
        let (path, pos, value) = self.get(t, key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.mismatch(&path, pos, "an array of strings", value.get_ref());
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        let mut all_strings = true;
        for (i, value) in items.iter().enumerate() {
            let item_path = item(&path, i);
            let item_pos = self.record(&item_path, None, value);
            match value.get_ref() {
                DeValue::String(s) => strings.push(s.to_string()),
                other => {
                    self.mismatch(&item_path, item_pos, "a string", other);
                    all_strings = false;
                }
            }
        }
        // A partial list would shift item indices and make later messages point at wrong items.
        all_strings.then_some(strings)
    }

    /// The table at `key`; a header-defined table is named `[path]` in messages.
    fn table<'t>(&mut self, t: &Table<'t, 'i>, key: &str) -> Option<Table<'t, 'i>> {
        let (path, pos, value) = self.get(t, key)?;
        match value.get_ref() {
            DeValue::Table(table) => Some(Table {
                table,
                name: header_name(&path),
                path,
                pos,
            }),
            other => {
                self.mismatch(&path, pos, "a table", other);
                None
            }
        }
    }

    /// Every entry of `t` that is a table, recorded, with its key; other entries are reported.
    fn sub_tables<'t>(&mut self, t: &Table<'t, 'i>, what: &str) -> Vec<(String, Table<'t, 'i>)> {
        let mut out = Vec::new();
        for (k, value) in t.table.iter() {
            let key = k.get_ref().to_string();
            let path = child(&t.path, &key);
            let pos = self.record(&path, Some(&k.span()), value);
            match value.get_ref() {
                DeValue::Table(table) => out.push((
                    key,
                    Table {
                        table,
                        name: header_name(&path),
                        path,
                        pos,
                    },
                )),
                other => self.mismatch(&path, pos, what, other),
            }
        }
        out
    }

    fn config(&mut self, root: &Table<'_, 'i>) -> Config {
        Config {
            model: self.string(root, "model"),
            reasoning_budget: self.reasoning_budget(root),
            runtime: self.string(root, "runtime"),
            max_steps: self.u32(root, "maxSteps"),
            max_retries: self.u32(root, "maxRetries"),
            timeout: self.unsigned(root, "timeout", u64::MAX),
            env_path: self.string_array(root, "envPath"),
            perstack_api_base_url: self.string(root, "perstackApiBaseUrl"),
            perstack_base_skill_command: self.string_array(root, "perstackBaseSkillCommand"),
            provider: self.table(root, "provider").and_then(|t| self.provider(&t)),
            experts: self
                .table(root, "experts")
                .map(|t| self.experts(&t))
                .unwrap_or_default(),
            sandbox: self
                .table(root, "sandbox")
                .map(|t| self.sandbox(&t))
                .unwrap_or_default(),
        }
    }

    fn reasoning_budget(&mut self, t: &Table<'_, 'i>) -> Option<ReasoningBudget> {
        const EXPECTED: &str = "one of \"none\", \"minimal\", \"low\", \"medium\", \"high\" \
                                or a non-negative integer (tokens)";
        let (path, pos, value) = self.get(t, "reasoningBudget")?;
        match value.get_ref() {
            DeValue::String(s) => {
                let Some(level) = ReasoningLevel::parse(s) else {
                    let message = format!("expected {EXPECTED}, found \"{s}\"");
                    self.report.push(&path, pos, message);
                    return None;
                };
                Some(ReasoningBudget::Level(level))
            }
            DeValue::Integer(_) => self
                .unsigned(t, "reasoningBudget", u64::MAX)
                .map(ReasoningBudget::Tokens),
            other => {
                self.mismatch(&path, pos, EXPECTED, other);
                None
            }
        }
    }

    fn provider(&mut self, t: &Table<'_, 'i>) -> Option<ProviderConfig> {
        let name = self.required_string(t, "providerName", "which LLM provider to use");
        let setting = self
            .table(t, "setting")
            .map(|s| self.provider_setting(&s))
            .unwrap_or_default();
        let name = name?;
        let Some(provider_name) = ProviderName::parse(&name) else {
            let path = child(&t.path, "providerName");
            let pos = self.locations.value(&path).unwrap_or(t.pos);
            let known: Vec<&str> = ProviderName::ALL.iter().map(|p| p.as_str()).collect();
            let message = format!(
                "unknown provider \"{name}\"; expected one of {}",
                known.join(", ")
            );
            self.report.push(&path, pos, message);
            return None;
        };
        Some(ProviderConfig {
            provider_name,
            setting,
        })
    }

    fn provider_setting(&mut self, t: &Table<'_, 'i>) -> ProviderSetting {
        ProviderSetting {
            base_url: self.string(t, "baseUrl"),
            headers: self
                .table(t, "headers")
                .map(|h| self.headers(&h))
                .unwrap_or_default(),
            organization: self.string(t, "organization"),
            project: self.string(t, "project"),
            name: self.string(t, "name"),
            resource_name: self.string(t, "resourceName"),
            api_version: self.string(t, "apiVersion"),
            use_deployment_based_urls: self.bool(t, "useDeploymentBasedUrls"),
            region: self.string(t, "region"),
            location: self.string(t, "location"),
            script: self.string(t, "script"),
        }
    }

    fn headers(&mut self, t: &Table<'_, 'i>) -> BTreeMap<String, String> {
        let mut headers = BTreeMap::new();
        for (k, value) in t.table.iter() {
            let path = child(&t.path, k.get_ref());
            let pos = self.record(&path, Some(&k.span()), value);
            match value.get_ref() {
                DeValue::String(s) => {
                    headers.insert(k.get_ref().to_string(), s.to_string());
                }
                other => self.mismatch(&path, pos, "a string (a header value)", other),
            }
        }
        headers
    }

    fn experts(&mut self, t: &Table<'_, 'i>) -> IndexMap<String, Expert> {
        self.sub_tables(t, "a table (an Expert definition)")
            .into_iter()
            .map(|(key, e)| {
                let expert = self.expert(&key, &e);
                (key, expert)
            })
            .collect()
    }

    fn expert(&mut self, key: &str, t: &Table<'_, 'i>) -> Expert {
        let what = "the Expert's instructions, 1 to 20480 characters";
        let instruction = self.required_string(t, "instruction", what);
        Expert {
            key: key.to_string(),
            name: key.to_string(),
            version: self
                .string(t, "version")
                .unwrap_or_else(|| "1.0.0".to_string()),
            instruction: instruction.unwrap_or_default(),
            description: self.string(t, "description"),
            min_runtime_version: self.string(t, "minRuntimeVersion"),
            delegates: self.string_array(t, "delegates").unwrap_or_default(),
            tags: self.string_array(t, "tags").unwrap_or_default(),
            skills: self.skills(t),
        }
    }

    /// The Expert's skills, `@perstack/base` always first unless the file places it.
    fn skills(&mut self, expert: &Table<'_, 'i>) -> IndexMap<String, Skill> {
        let mut skills = IndexMap::new();
        let declared = expert.table.contains_key("skills");
        let mut implied_at = expert.pos;
        if let Some(t) = self.table(expert, "skills") {
            implied_at = t.pos;
            for (name, s) in self.sub_tables(&t, "a table (a skill definition)") {
                if let Some(skill) = self.skill(&name, &s) {
                    skills.insert(name, skill);
                }
            }
        }
        // Perstack's docs call the base skill implicit; its code rejects a `skills` table without
        // it. We follow the docs. A base skill with an invalid definition is not re-added.
        let base_declared = declared
            && expert
                .table
                .get("skills")
                .and_then(|s| s.get_ref().as_table())
                .is_some_and(|s| s.contains_key(BASE_SKILL_NAME));
        if !base_declared {
            let path = child(&child(&expert.path, "skills"), BASE_SKILL_NAME);
            self.locations.values.insert(path, implied_at);
            skills.shift_insert(0, BASE_SKILL_NAME.to_string(), default_base_skill());
        }
        skills
    }

    fn skill(&mut self, name: &str, t: &Table<'_, 'i>) -> Option<Skill> {
        let kinds = SKILL_TYPES.join(", ");
        let ty = self.required_string(t, "type", &format!("one of {kinds}"))?;
        let description = self.string(t, "description");
        let rule = self.string(t, "rule");
        let name = name.to_string();
        match ty.as_str() {
            "mcpStdioSkill" => {
                let what = "the program that starts the MCP server, e.g. \"npx\"";
                let command = self.required_string(t, "command", what);
                Some(Skill::McpStdio(McpStdioSkill {
                    name,
                    description,
                    rule,
                    command: command.unwrap_or_default(),
                    package_name: self.string(t, "packageName"),
                    args: self.string_array(t, "args").unwrap_or_default(),
                    pick: self.string_array(t, "pick").unwrap_or_default(),
                    omit: self.string_array(t, "omit").unwrap_or_default(),
                    required_env: self.string_array(t, "requiredEnv").unwrap_or_default(),
                    allowed_domains: self.string_array(t, "allowedDomains").unwrap_or_default(),
                    lazy_init: self.bool(t, "lazyInit").unwrap_or(false),
                }))
            }
            "mcpSseSkill" => {
                let what = "the https:// URL of the MCP server";
                let endpoint = self.required_string(t, "endpoint", what);
                Some(Skill::McpSse(McpSseSkill {
                    name,
                    description,
                    rule,
                    endpoint: endpoint.unwrap_or_default(),
                    pick: self.string_array(t, "pick").unwrap_or_default(),
                    omit: self.string_array(t, "omit").unwrap_or_default(),
                    allowed_domains: self.string_array(t, "allowedDomains").unwrap_or_default(),
                }))
            }
            "interactiveSkill" => Some(Skill::Interactive(InteractiveSkill {
                name,
                description,
                rule,
                tools: self
                    .table(t, "tools")
                    .map(|tools| self.interactive_tools(&tools))
                    .unwrap_or_default(),
            })),
            other => {
                let path = child(&t.path, "type");
                let pos = self.locations.value(&path).unwrap_or(t.pos);
                let message = format!("unknown skill type \"{other}\"; expected one of {kinds}");
                self.report.push(&path, pos, message);
                None
            }
        }
    }

    fn interactive_tools(&mut self, t: &Table<'_, 'i>) -> IndexMap<String, InteractiveTool> {
        let mut tools = IndexMap::new();
        for (name, tool) in self.sub_tables(t, "a table (a tool definition)") {
            let description = self.string(&tool, "description");
            let what = "the tool's input JSON Schema, as a JSON string";
            let Some(schema) = self.required_string(&tool, "inputJsonSchema", what) else {
                continue;
            };
            let path = child(&tool.path, "inputJsonSchema");
            let pos = self.locations.value(&path).unwrap_or(tool.pos);
            match serde_json::from_str::<serde_json::Value>(&schema) {
                Ok(value) if value.is_object() => {
                    let tool = InteractiveTool {
                        description,
                        input_json_schema: value,
                    };
                    tools.insert(name, tool);
                }
                Ok(other) => {
                    let message = format!(
                        "expected a JSON Schema object ({{\"type\": \"object\", ...}}), found {}",
                        json_kind(&other)
                    );
                    self.report.push(&path, pos, message);
                }
                Err(e) => {
                    let message = format!("not valid JSON: {e}");
                    self.report.push(&path, pos, message);
                }
            }
        }
        tools
    }

    fn sandbox(&mut self, t: &Table<'_, 'i>) -> SandboxConfig {
        self.reject_unknown_keys(t, &SANDBOX_KEYS);
        SandboxConfig {
            workspace_image: self.string(t, "workspaceImage"),
            node_image: self.string(t, "nodeImage"),
            python_image: self.string(t, "pythonImage"),
            skill_image: self.string(t, "skillImage"),
            npm_registry: self.string(t, "npmRegistry"),
            pip_index_url: self.string(t, "pipIndexUrl"),
            ca_certificates: self.string(t, "caCertificates"),
            runtime: self.string(t, "runtime"),
            memory: self.string(t, "memory"),
            cpus: self.number(t, "cpus"),
            pids: self.i64(t, "pids"),
            writable: self.string_array(t, "writable").unwrap_or_default(),
            skills: self
                .table(t, "skills")
                .map(|s| self.sandbox_skills(&s))
                .unwrap_or_default(),
        }
    }

    fn sandbox_skills(&mut self, t: &Table<'_, 'i>) -> IndexMap<String, SandboxSkill> {
        let mut skills = IndexMap::new();
        for (name, s) in self.sub_tables(t, "a table (a skill's container settings)") {
            self.reject_unknown_keys(&s, &["image", "workspace", "files", "dockerfile"]);
            let image = self.string(&s, "image");
            let workspace = self.workspace_grant(&s);
            let files = self.string_array(&s, "files").unwrap_or_default();
            let dockerfile = self.string(&s, "dockerfile");
            skills.insert(
                name,
                SandboxSkill {
                    image,
                    workspace,
                    files,
                    dockerfile,
                },
            );
        }
        skills
    }

    /// `workspace = "read-only" | "read-write"`.
    fn workspace_grant(&mut self, t: &Table<'_, 'i>) -> Option<WorkspaceGrant> {
        let (path, pos, value) = self.get(t, "workspace")?;
        let DeValue::String(text) = value.get_ref() else {
            self.mismatch(&path, pos, "a string", value.get_ref());
            return None;
        };
        let grant = WorkspaceGrant::parse(text);
        if grant.is_none() {
            let message = format!(
                "\"{text}\" is not a workspace grant; expected \"read-only\" or \"read-write\" \
                 (leave it out for no workspace)"
            );
            self.report.push(&path, pos, message);
        }
        grant
    }

    /// An integer or a float.
    fn number(&mut self, t: &Table<'_, 'i>, key: &str) -> Option<f64> {
        let (path, pos, value) = self.get(t, key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(int) => i128::from_str_radix(int.as_str(), int.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(float) => float.as_str().parse::<f64>().ok(),
            other => {
                self.mismatch(&path, pos, "a number", other);
                return None;
            }
        };
        if parsed.is_none() {
            self.report.push(&path, pos, "expected a number");
        }
        parsed
    }

    /// Our own tables are strict: an unknown key there is a typo, not another tool's setting.
    fn reject_unknown_keys(&mut self, t: &Table<'_, 'i>, known: &[&str]) {
        for (k, value) in t.table.iter() {
            if known.contains(&k.get_ref().as_ref()) {
                continue;
            }
            let path = child(&t.path, k.get_ref());
            self.record(&path, Some(&k.span()), value);
            let key_pos = self.pos(&k.span());
            let expected = match known {
                [only] => (*only).to_string(),
                _ => format!("one of {}", known.join(", ")),
            };
            let message = format!(
                "unknown key \"{}\" in {}; expected {expected}",
                k.get_ref(),
                t.name
            );
            self.report.push(&path, key_pos, message);
        }
    }
}

/// `@perstack/base` as Perstack defines it when an Expert does not.
fn default_base_skill() -> Skill {
    Skill::McpStdio(McpStdioSkill {
        name: BASE_SKILL_NAME.to_string(),
        description: None,
        rule: None,
        command: "npx".to_string(),
        package_name: None,
        args: vec!["-y".to_string(), BASE_SKILL_NAME.to_string()],
        pick: Vec::new(),
        omit: Vec::new(),
        required_env: Vec::new(),
        allowed_domains: Vec::new(),
        lazy_init: false,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::testing::problems;
    use crate::config::{LoadedConfig, load_str};

    use super::*;

    fn load(text: &str) -> LoadedConfig {
        load_str(Path::new("/p/perstack.toml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn skill_names(loaded: &LoadedConfig, expert: &str) -> Vec<String> {
        loaded.config.experts[expert]
            .skills
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn unknown_keys_are_ignored_everywhere_but_sandbox() {
        let loaded = load(
            r#"
            temperature = 0.3
            [provider]
            providerName = "anthropic"
            envPath = [".env"]
            [provider.setting]
            futureSetting = 1
            [experts.a]
            instruction = "x"
            providerTools = ["webSearch"]
            [experts.a.skills.web]
            type = "mcpStdioSkill"
            command = "npx"
            packageName = "exa-mcp-server"
            somethingNew = { nested = true }
            "#,
        );
        assert_eq!(skill_names(&loaded, "a"), ["@perstack/base", "web"]);
        assert_eq!(
            problems("[sandbox]\nmemory = \"2g\"\nimages = {}\n"),
            [
                "3:1 sandbox.images: unknown key \"images\" in [sandbox]; expected one of \
                 workspaceImage, nodeImage, pythonImage, skillImage, npmRegistry, pipIndexUrl, caCertificates, runtime, memory, \
                 cpus, pids, writable, skills"
            ]
        );
    }

    #[test]
    fn the_base_skill_is_implicit_first_unless_declared() {
        let loaded = load(
            r#"
            [experts.none]
            instruction = "x"
            [experts.empty]
            instruction = "x"
            skills = {}
            [experts.other]
            instruction = "x"
            [experts.other.skills.web]
            type = "mcpSseSkill"
            endpoint = "https://mcp.example.com/sse"
            [experts.declared-last]
            instruction = "x"
            [experts.declared-last.skills.web]
            type = "mcpSseSkill"
            endpoint = "https://mcp.example.com/sse"
            [experts.declared-last.skills."@perstack/base"]
            type = "mcpStdioSkill"
            command = "node"
            args = ["/opt/base.js"]
            "#,
        );
        assert_eq!(skill_names(&loaded, "none"), ["@perstack/base"]);
        assert_eq!(skill_names(&loaded, "empty"), ["@perstack/base"]);
        assert_eq!(skill_names(&loaded, "other"), ["@perstack/base", "web"]);
        assert_eq!(
            skill_names(&loaded, "declared-last"),
            ["web", "@perstack/base"]
        );
        let Skill::McpStdio(base) = &loaded.config.experts["declared-last"].skills[BASE_SKILL_NAME]
        else {
            panic!("base is not stdio");
        };
        assert_eq!(base.command, "node");
        let Skill::McpStdio(implicit) = &loaded.config.experts["none"].skills[BASE_SKILL_NAME]
        else {
            panic!("base is not stdio");
        };
        assert_eq!(implicit.argv(), ["-y", "@perstack/base"]);
    }

    #[test]
    fn integers_in_any_radix_and_range_checks() {
        let loaded = load("maxSteps = 0x10\ntimeout = 1_000\nreasoningBudget = 4096\n");
        assert_eq!(loaded.config.max_steps, Some(16));
        assert_eq!(loaded.config.timeout, Some(1000));
        assert_eq!(
            loaded.config.reasoning_budget,
            Some(ReasoningBudget::Tokens(4096))
        );
        assert_eq!(
            problems("maxSteps = 5_000_000_000\nreasoningBudget = -1\n"),
            [
                "1:12 maxSteps: expected an integer no larger than 4294967295, found 5000000000",
                "2:19 reasoningBudget: expected a non-negative integer, found -1",
            ]
        );
        let loaded = load("[sandbox]\ncpus = 2\n");
        assert_eq!(loaded.config.sandbox.cpus, Some(2.0));
    }

    #[test]
    fn package_indexes_for_image_builds_are_read_from_sandbox() {
        let loaded = load(
            "[sandbox]\nnpmRegistry = \"http://172.17.0.1:4873/\"\n\
             pipIndexUrl = \"https://pypi.example.com/simple\"\n",
        );
        assert_eq!(
            loaded.config.sandbox.npm_registry.as_deref(),
            Some("http://172.17.0.1:4873/")
        );
        assert_eq!(
            loaded.config.sandbox.pip_index_url.as_deref(),
            Some("https://pypi.example.com/simple")
        );
        assert_eq!(load("[sandbox]\n").config.sandbox.npm_registry, None);
    }

    #[test]
    fn every_level_of_reasoning_budget_parses() {
        for (text, level) in [
            ("none", ReasoningLevel::None),
            ("minimal", ReasoningLevel::Minimal),
            ("low", ReasoningLevel::Low),
            ("medium", ReasoningLevel::Medium),
            ("high", ReasoningLevel::High),
        ] {
            let loaded = load(&format!("reasoningBudget = \"{text}\""));
            assert_eq!(
                loaded.config.reasoning_budget,
                Some(ReasoningBudget::Level(level))
            );
        }
    }

    #[test]
    fn syntax_errors_alone_are_reported() {
        // The duplicate key is a syntax error; the missing instruction must not be reported on
        // top of it, since the tree it would be found in is not what the user wrote.
        let got = problems("[experts.a]\ndescription = \"x\"\ndescription = \"y\"\n");
        assert_eq!(got, ["3:1 (syntax): duplicate key"]);
    }

    #[test]
    fn a_bad_array_item_drops_the_whole_array_so_indices_stay_true() {
        // tags[1] is reported as a type error; the pattern rule must not then report "Bad" as
        // tags[1] after the integer was dropped.
        let got = problems("[experts.a]\ninstruction = \"x\"\ntags = [\"ok\", 1, \"Bad\"]\n");
        assert_eq!(
            got,
            ["3:15 experts.a.tags[1]: expected a string, found an integer"]
        );
    }

    #[test]
    fn locations_cover_keys_values_and_array_items() {
        let loaded = load(
            "[experts.\"@org/x\"]\ninstruction = \"x\"\ndelegates = [\"@org/x\"]\n\
             skills = { web = { type = \"mcpSseSkill\", endpoint = \"https://e.example.com\" } }\n",
        );
        let at = |path: &str| loaded.location(path).map(|l| (l.line, l.col));
        assert_eq!(at(r#"experts."@org/x""#), Some((1, 1)));
        assert_eq!(at(r#"experts."@org/x".delegates[0]"#), Some((3, 14)));
        assert_eq!(at(r#"experts."@org/x".skills.web"#), Some((4, 18)));
        assert_eq!(at(r#"experts."@org/x".skills.web.endpoint"#), Some((4, 53)));
        assert_eq!(
            loaded.locations.key(r#"experts."@org/x".skills.web"#),
            Some(Pos { line: 4, col: 12 })
        );
    }

    #[test]
    fn experts_keep_file_order() {
        let loaded = load(
            "[experts.zeta]\ninstruction = \"x\"\n[experts.alpha]\ninstruction = \"x\"\n\
             [experts.mid]\ninstruction = \"x\"\n",
        );
        let keys: Vec<&str> = loaded.config.experts.keys().map(String::as_str).collect();
        assert_eq!(keys, ["zeta", "alpha", "mid"]);
    }
}
