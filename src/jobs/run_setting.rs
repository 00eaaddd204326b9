//! `run-setting.json`: what one run was started with (PERSTACK-COMPAT.md §4 "RunSetting"), with
//! every secret replaced by [`REDACTED`].
//!
//! Perstack stores the provider's API key, the Perstack API key and the whole environment in this
//! file. We keep the shape, so tools that read it still find every field, but never a value that
//! could be a secret: the provider key (`apiKey`, which Perstack's schema requires of every keyed
//! provider; Bedrock's `accessKeyId`, `secretAccessKey` and `sessionToken`), header values,
//! `perstackApiKey` and every variable's value become `"[redacted]"`. Only the variable names a
//! run passed into its containers are listed. The Experts are written as Perstack's runtime
//! holds them ([`SettingExpert`]).

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::setting_expert::SettingExpert;
use crate::config::RunSettings;
use crate::config::{Config, ProviderName, Skill};
use crate::event::InteractiveToolCallResult;

/// What replaces every secret value.
pub(crate) const REDACTED: &str = "[redacted]";

/// Perstack's default API base URL (§1).
pub(crate) const DEFAULT_PERSTACK_API_BASE_URL: &str = "https://api.perstack.ai";

/// The variable holding the Perstack API key.
const PERSTACK_API_KEY: &str = "PERSTACK_API_KEY";

/// What the run was asked: a query, or the answer to a pending interactive tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunInput {
    /// The query (a new user message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The answer to the pending tool call (`-i`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive_tool_call_result: Option<InteractiveToolCallResult>,
}

/// The contents of `run-setting.json`, redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunSetting {
    /// The model.
    pub model: String,
    /// `providerName`, the credentials Perstack's schema requires of the provider (redacted),
    /// and the `[provider.setting]` fields (header values redacted).
    pub provider_config: Value,
    /// The job.
    pub job_id: String,
    /// This run.
    pub run_id: String,
    /// The Expert this run runs: the coordinator, or a delegate in a delegate's run.
    pub expert_key: String,
    /// What the run was asked.
    pub input: RunInput,
    /// The Experts the run can reach (the coordinator and its delegation closure).
    pub experts: IndexMap<String, SettingExpert>,
    /// `none`…`high` or a token count, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_budget: Option<Value>,
    /// Step limit.
    pub max_steps: u32,
    /// Retries per generation.
    pub max_retries: u32,
    /// Time limit per generation, ms.
    pub timeout: u64,
    /// When the run started, ms since the epoch.
    pub started_at: u64,
    /// When this file was last stored.
    pub updated_at: u64,
    /// The Perstack API.
    pub perstack_api_base_url: String,
    /// [`REDACTED`] when `PERSTACK_API_KEY` was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perstack_api_key: Option<String>,
    /// `perstackBaseSkillCommand` from perstack.toml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perstack_base_skill_command: Option<Vec<String>>,
    /// The variables the run passed into its containers, each value [`REDACTED`].
    pub env: BTreeMap<String, String>,
    /// `--verbose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbose: Option<bool>,
}

/// Everything a run setting is made from.
pub(crate) struct RunSettingSource<'a> {
    /// The loaded perstack.toml.
    pub config: &'a Config,
    /// Settings after CLI > file > defaults.
    pub settings: &'a RunSettings,
    /// The job.
    pub job_id: &'a str,
    /// The run.
    pub run_id: &'a str,
    /// The coordinator.
    pub expert_key: &'a str,
    /// Its delegation closure (coordinator first).
    pub closure: &'a [String],
    /// What the run was asked.
    pub input: RunInput,
    /// The env map (process and dotenv files). Only names are kept.
    pub env: &'a BTreeMap<String, String>,
    /// Variables given to the runtime container (provider variables, `--env`). Only names kept.
    pub runtime_env: &'a [(String, String)],
    /// `--verbose`.
    pub verbose: bool,
    /// Now, ms since the epoch.
    pub now: u64,
}

impl RunSetting {
    /// The redacted run setting of a run about to start.
    pub(crate) fn new(source: RunSettingSource<'_>) -> RunSetting {
        let config = source.config;
        let experts: IndexMap<String, SettingExpert> = source
            .closure
            .iter()
            .filter_map(|key| {
                config
                    .experts
                    .get(key)
                    .map(|e| (key.clone(), SettingExpert::from(e)))
            })
            .collect();
        // The names of what entered the containers: the runtime's variables and every skill's
        // requiredEnv that was set. Never a value.
        let mut env = BTreeMap::new();
        for (name, _) in source.runtime_env {
            env.insert(name.clone(), REDACTED.to_string());
        }
        for expert in source.closure.iter().filter_map(|k| config.experts.get(k)) {
            for skill in expert.skills.values() {
                if let Skill::McpStdio(stdio) = skill {
                    for name in &stdio.required_env {
                        if source.env.contains_key(name) {
                            env.insert(name.clone(), REDACTED.to_string());
                        }
                    }
                }
            }
        }
        let perstack_api_key = source
            .env
            .contains_key(PERSTACK_API_KEY)
            .then(|| REDACTED.to_string());

        RunSetting {
            model: source.settings.model.clone(),
            provider_config: provider_config(config, source.settings.provider, source.env),
            job_id: source.job_id.to_string(),
            run_id: source.run_id.to_string(),
            expert_key: source.expert_key.to_string(),
            input: source.input,
            experts,
            reasoning_budget: source.settings.reasoning_budget.as_deref().map(|budget| {
                budget
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(budget))
            }),
            max_steps: source.settings.max_steps,
            max_retries: source.settings.max_retries,
            timeout: source.settings.timeout_ms,
            started_at: source.now,
            updated_at: source.now,
            perstack_api_base_url: config
                .perstack_api_base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_PERSTACK_API_BASE_URL.to_string()),
            perstack_api_key,
            perstack_base_skill_command: config.perstack_base_skill_command.clone(),
            env,
            verbose: source.verbose.then_some(true),
        }
    }
}

/// `providerConfig` (Perstack's `ProviderConfig`): the provider's name, the credentials its
/// schema requires — always present, always [`REDACTED`]: the run only starts when they are set
/// (preflight), and the value says nothing either way — then the file's `[provider.setting]`
/// when it is this provider's, header values redacted.
fn provider_config(
    config: &Config,
    provider: ProviderName,
    env: &BTreeMap<String, String>,
) -> Value {
    let mut out = Map::new();
    out.insert("providerName".into(), Value::from(provider.as_str()));
    let redacted = || Value::from(REDACTED);
    match provider {
        ProviderName::AmazonBedrock => {
            out.insert("accessKeyId".into(), redacted());
            out.insert("secretAccessKey".into(), redacted());
            // Not a secret, and required: the file's setting, else the variable (§7).
            if let Some(region) = env.get("AWS_REGION") {
                out.insert("region".into(), Value::from(region.clone()));
            }
            if env.contains_key("AWS_SESSION_TOKEN") {
                out.insert("sessionToken".into(), redacted());
            }
        }
        // A provider reached with an API key has `apiKey`.
        _ if !provider.info().key_vars.is_empty() => {
            out.insert("apiKey".into(), redacted());
        }
        _ => {}
    }
    let setting = config
        .provider
        .as_ref()
        .filter(|p| p.provider_name == provider)
        .and_then(|p| serde_json::to_value(&p.setting).ok());
    if let Some(Value::Object(setting)) = setting {
        for (key, value) in setting {
            let value = match (key.as_str(), value) {
                // Header values are where `Authorization: Bearer …` goes.
                ("headers", Value::Object(headers)) => Value::Object(
                    headers
                        .into_iter()
                        .map(|(name, _)| (name, Value::from(REDACTED)))
                        .collect(),
                ),
                (_, value) => value,
            };
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
model = "claude-sonnet-4-5"
perstackBaseSkillCommand = ["perstack-base"]

[provider]
providerName = "anthropic"
setting = { baseUrl = "https://llm.example.com", headers = { Authorization = "Bearer header-secret" } }

[experts.main]
instruction = "Work."
delegates = ["helper"]

[experts.main.skills."@perstack/base"]
type = "mcpStdioSkill"
command = "npx"
packageName = "@perstack/base"

[experts.main.skills.web]
type = "mcpStdioSkill"
command = "npx"
packageName = "web-mcp"
requiredEnv = ["WEB_KEY", "UNSET_KEY"]

[experts.main.skills.user]
type = "interactiveSkill"
tools.askColour = { description = "Ask for a colour.", inputJsonSchema = '{"type":"object","properties":{"colour":{"type":"string"}}}' }

[experts.helper]
instruction = "Help."
description = "Helps."

[experts.unrelated]
instruction = "Not reachable."
"#;

    fn setting(verbose: bool) -> RunSetting {
        let config = crate::config::load_str(std::path::Path::new("/p/perstack.toml"), CONFIG)
            .expect("valid")
            .config;
        let env = BTreeMap::from([
            ("ANTHROPIC_API_KEY".to_string(), "sk-ant-secret".to_string()),
            ("WEB_KEY".to_string(), "web-secret".to_string()),
            (
                "PERSTACK_API_KEY".to_string(),
                "perstack-secret".to_string(),
            ),
            ("HOME".to_string(), "/home/me".to_string()),
        ]);
        let runtime_env = vec![
            ("ANTHROPIC_API_KEY".to_string(), "sk-ant-secret".to_string()),
            ("EXTRA".to_string(), "extra-secret".to_string()),
        ];
        let settings = RunSettings {
            provider: ProviderName::Anthropic,
            model: "claude-sonnet-4-5".into(),
            max_steps: 10,
            max_retries: 2,
            timeout_ms: 5000,
            reasoning_budget: Some("2048".into()),
        };
        RunSetting::new(RunSettingSource {
            config: &config,
            settings: &settings,
            job_id: "j1",
            run_id: "r1",
            expert_key: "main",
            closure: &["main".to_string(), "helper".to_string()],
            input: RunInput {
                text: Some("Review README.md".into()),
                interactive_tool_call_result: None,
            },
            env: &env,
            runtime_env: &runtime_env,
            verbose,
            now: 1_735_000_000_000,
        })
    }

    #[test]
    fn no_secret_value_reaches_the_run_setting_but_every_field_is_there() {
        let text = serde_json::to_string_pretty(&setting(false)).expect("json");
        for secret in [
            "sk-ant-secret",
            "web-secret",
            "perstack-secret",
            "extra-secret",
            "header-secret",
        ] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        insta::assert_snapshot!(text);
    }

    #[test]
    fn an_interactive_tools_schema_is_the_json_string_perstack_requires() {
        let setting = serde_json::to_value(setting(false)).expect("json");
        let tool = &setting["experts"]["main"]["skills"]["user"]["tools"]["askColour"];
        assert_eq!(tool["name"], "askColour");
        let schema = tool["inputJsonSchema"].as_str().expect("a string");
        let parsed: Value = serde_json::from_str(schema).expect("JSON text");
        assert_eq!(parsed["properties"]["colour"]["type"], "string");
        // The defaults Perstack's parse fills in are written out.
        let web = &setting["experts"]["main"]["skills"]["web"];
        assert_eq!(web["pick"], serde_json::json!([]));
        assert_eq!(web["args"], serde_json::json!([]));
    }

    #[test]
    fn every_keyed_provider_has_its_credentials_redacted_and_the_others_none() {
        let config = crate::config::load_str(
            std::path::Path::new("/p/perstack.toml"),
            "[experts.main]\ninstruction = \"Work.\"\n",
        )
        .expect("valid")
        .config;
        let env = BTreeMap::from([
            ("AWS_REGION".to_string(), "eu-west-1".to_string()),
            (
                "AWS_SESSION_TOKEN".to_string(),
                "session-secret".to_string(),
            ),
        ]);
        let of = |provider| provider_config(&config, provider, &env);
        for keyed in [
            ProviderName::Anthropic,
            ProviderName::Google,
            ProviderName::Openai,
            ProviderName::Deepseek,
            ProviderName::AzureOpenai,
        ] {
            assert_eq!(of(keyed)["apiKey"], REDACTED, "{keyed:?}");
        }
        assert_eq!(
            of(ProviderName::AmazonBedrock),
            serde_json::json!({
                "providerName": "amazon-bedrock",
                "accessKeyId": REDACTED,
                "secretAccessKey": REDACTED,
                "region": "eu-west-1",
                "sessionToken": REDACTED,
            })
        );
        for keyless in [ProviderName::Ollama, ProviderName::GoogleVertex] {
            assert!(of(keyless).get("apiKey").is_none(), "{keyless:?}");
        }
    }

    #[test]
    fn verbose_is_recorded_only_when_on() {
        assert_eq!(setting(false).verbose, None);
        assert_eq!(setting(true).verbose, Some(true));
    }
}
