//! The provider: supported by perstack-sandbox, told where it is (azure-openai), and keyed.
//! What it needs goes to the runtime container, and nothing else of the env map.

use std::collections::BTreeMap;

use super::Problem;
use crate::config::{LoadedConfig, ProviderName};
use crate::llm::providers::Endpoint;

/// The provider is supported, knows where its endpoint is, and has its key(s): returns its
/// variables for the runtime container (the keys, then the optional ones that are set).
pub(super) fn check_provider(
    loaded: &LoadedConfig,
    provider: ProviderName,
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Vec<Problem>> {
    let mut problems = Vec::new();
    let config = &loaded.config;
    let here = |dotted: &str| loaded.location(dotted).map(|l| l.to_string());
    if !provider.info().is_supported() {
        let from_file = config.provider.as_ref().map(|p| p.provider_name) == Some(provider);
        problems.push(Problem {
            location: if from_file {
                here("provider.providerName")
            } else {
                None
            },
            message: provider.info().unsupported_message(),
        });
    }
    if let Some(message) = missing_endpoint(config, provider, env) {
        problems.push(Problem {
            location: None,
            message,
        });
    }
    let mut runtime_env = Vec::new();
    for var in provider.info().key_vars {
        match env.get(*var) {
            Some(value) => runtime_env.push((var.to_string(), value.clone())),
            None => problems.push(Problem {
                location: None,
                message: format!(
                    "{var} is not set; provider `{provider}` needs it (export it or add it to .env)"
                ),
            }),
        }
    }
    for var in provider.info().optional_var_names() {
        if let Some(value) = env.get(var) {
            runtime_env.push((var.to_string(), value.clone()));
        }
    }
    if problems.is_empty() {
        Ok(runtime_env)
    } else {
        Err(problems)
    }
}

/// A provider that lives at a per-account resource (azure-openai) needs to know which: the
/// resource name or a base URL, in `[provider.setting]` or their variables.
fn missing_endpoint(
    config: &crate::config::Config,
    provider: ProviderName,
    env: &BTreeMap<String, String>,
) -> Option<String> {
    let info = provider.info();
    if !matches!(info.endpoint, Endpoint::PerResource { .. }) {
        return None;
    }
    let no_setting = Default::default();
    let setting = config
        .provider
        .as_ref()
        .filter(|p| p.provider_name == provider)
        .map_or(&no_setting, |p| &p.setting);
    let env = |var: &str| env.get(var).cloned();
    let known =
        info.resource(setting, &env).is_some() || info.configured_base_url(setting, &env).is_some();
    (!known).then(|| {
        format!(
            "{} is not set; provider `{provider}` needs the resource name (or a base URL: {}, \
             or resourceName / baseUrl in [provider.setting])",
            info.resource_var(),
            info.base_url_var().unwrap_or("baseUrl"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    /// The problems of the provider check alone.
    fn provider_problems(provider: ProviderName, env: &[(&str, &str)]) -> Vec<String> {
        let loaded = load_str(
            std::path::Path::new("/p/perstack.toml"),
            "[experts.solo]\ninstruction = \"x\"\n",
        )
        .expect("valid");
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match check_provider(&loaded, provider, &env) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| p.message).collect(),
        }
    }

    #[test]
    fn bedrock_and_vertex_from_the_command_line_are_refused() {
        for provider in [ProviderName::AmazonBedrock, ProviderName::GoogleVertex] {
            let problems = provider_problems(
                provider,
                &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")],
            );
            assert_eq!(
                problems,
                [format!(
                    "provider `{provider}` is not supported yet by perstack-sandbox; use anthropic, \
                     openai, google, deepseek, ollama or azure-openai"
                )]
            );
        }
    }

    #[test]
    fn azure_needs_a_resource_name_or_a_base_url() {
        assert_eq!(
            provider_problems(ProviderName::AzureOpenai, &[("AZURE_API_KEY", "k")]),
            [
                "AZURE_RESOURCE_NAME is not set; provider `azure-openai` needs the resource name \
              (or a base URL: AZURE_BASE_URL, or resourceName / baseUrl in [provider.setting])"
            ]
        );
        for var in ["AZURE_RESOURCE_NAME", "AZURE_BASE_URL"] {
            assert!(
                provider_problems(
                    ProviderName::AzureOpenai,
                    &[("AZURE_API_KEY", "k"), (var, "x")]
                )
                .is_empty()
            );
        }
    }

    #[test]
    fn each_provider_gets_its_key_and_optional_variables_and_nothing_else() {
        let loaded = load_str(
            std::path::Path::new("/p/perstack.toml"),
            "[experts.solo]\ninstruction = \"x\"\n",
        )
        .expect("valid");
        let env: BTreeMap<String, String> = [
            ("OPENAI_API_KEY", "o"),
            ("OPENAI_BASE_URL", "https://gw/v1"),
            ("OPENAI_ORGANIZATION", "org"),
            ("OPENAI_PROJECT", "proj"),
            ("ANTHROPIC_API_KEY", "a"),
            ("GOOGLE_GENERATIVE_AI_API_KEY", "g"),
            ("GOOGLE_GENERATIVE_AI_BASE_URL", "https://g/v1beta"),
            ("OLLAMA_BASE_URL", "http://ollama:11434/api"),
            ("AZURE_API_KEY", "z"),
            ("AZURE_RESOURCE_NAME", "res"),
            ("AZURE_API_VERSION", "v1"),
            ("DEEPSEEK_API_KEY", "d"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let names = |provider| -> Vec<String> {
            let runtime_env =
                check_provider(&loaded, provider, &env).unwrap_or_else(|p| panic!("{p:?}"));
            let mut names: Vec<String> = runtime_env.into_iter().map(|(k, _)| k).collect();
            names.sort();
            names
        };
        assert_eq!(
            names(ProviderName::Openai),
            [
                "OPENAI_API_KEY",
                "OPENAI_BASE_URL",
                "OPENAI_ORGANIZATION",
                "OPENAI_PROJECT"
            ]
        );
        assert_eq!(
            names(ProviderName::Google),
            [
                "GOOGLE_GENERATIVE_AI_API_KEY",
                "GOOGLE_GENERATIVE_AI_BASE_URL"
            ]
        );
        assert_eq!(names(ProviderName::Ollama), ["OLLAMA_BASE_URL"]);
        assert_eq!(
            names(ProviderName::AzureOpenai),
            ["AZURE_API_KEY", "AZURE_API_VERSION", "AZURE_RESOURCE_NAME"]
        );
        assert_eq!(names(ProviderName::Deepseek), ["DEEPSEEK_API_KEY"]);
    }

    #[test]
    fn a_missing_key_is_named_with_what_to_do() {
        assert_eq!(
            provider_problems(ProviderName::Anthropic, &[]),
            [
                "ANTHROPIC_API_KEY is not set; provider `anthropic` needs it (export it or add it to .env)"
            ]
        );
        assert!(provider_problems(ProviderName::Mock, &[]).is_empty());
    }
}
