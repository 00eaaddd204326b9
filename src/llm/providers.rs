//! The provider table: one entry per provider, holding what it needs and where it lives
//! (PERSTACK-COMPAT.md §7). Every consumer reads it: the clients of this module's siblings (key
//! and base URL), `config` validation (names, which providers are supported, which may be
//! reached over plain HTTP), the sandbox's preflight (which variables a run needs and passes on)
//! and its egress plan (which host the runtime may reach).
//!
//! Each fact is written once, in the entry: a grep for a host or a variable lands here. The
//! entries are `static`s, [`ProviderName::info`] finds one, and [`PROVIDERS`] lists them all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ProviderSetupError;

/// Every provider Perstack knows, plus our scripted `mock`. Its facts are its entry in the
/// provider table (`info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderName {
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini.
    Google,
    /// OpenAI.
    Openai,
    /// Ollama (plain HTTP allowed).
    Ollama,
    /// Azure OpenAI.
    AzureOpenai,
    /// Amazon Bedrock.
    AmazonBedrock,
    /// Google Vertex AI.
    GoogleVertex,
    /// DeepSeek.
    Deepseek,
    /// perstack-sandbox's scripted provider: replays a script file, needs no key and no network.
    Mock,
}

impl ProviderName {
    /// Every accepted `providerName`, in the order Perstack's error messages list them.
    pub const ALL: [ProviderName; 9] = [
        ProviderName::Anthropic,
        ProviderName::Google,
        ProviderName::Openai,
        ProviderName::Ollama,
        ProviderName::AzureOpenai,
        ProviderName::AmazonBedrock,
        ProviderName::GoogleVertex,
        ProviderName::Deepseek,
        ProviderName::Mock,
    ];

    /// The name as written in `perstack.toml`, on the CLI and in the JSON we write.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Anthropic => "anthropic",
            ProviderName::Google => "google",
            ProviderName::Openai => "openai",
            ProviderName::Ollama => "ollama",
            ProviderName::AzureOpenai => "azure-openai",
            ProviderName::AmazonBedrock => "amazon-bedrock",
            ProviderName::GoogleVertex => "google-vertex",
            ProviderName::Deepseek => "deepseek",
            ProviderName::Mock => "mock",
        }
    }

    /// Parses a name as written in `perstack.toml` or on the CLI.
    pub fn parse(s: &str) -> Option<ProviderName> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// This provider's entry in the table.
    pub(crate) fn info(self) -> &'static ProviderInfo {
        match self {
            ProviderName::Anthropic => &ANTHROPIC,
            ProviderName::Google => &GOOGLE,
            ProviderName::Openai => &OPENAI,
            ProviderName::Ollama => &OLLAMA,
            ProviderName::AzureOpenai => &AZURE_OPENAI,
            ProviderName::AmazonBedrock => &AMAZON_BEDROCK,
            ProviderName::GoogleVertex => &GOOGLE_VERTEX,
            ProviderName::Deepseek => &DEEPSEEK,
            ProviderName::Mock => &MOCK,
        }
    }
}

impl std::fmt::Display for ProviderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProviderName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProviderName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        ProviderName::parse(&name).ok_or_else(|| {
            let known: Vec<&str> = ProviderName::ALL.map(ProviderName::as_str).to_vec();
            serde::de::Error::custom(format!(
                "unknown provider \"{name}\"; expected one of {}",
                known.join(", ")
            ))
        })
    }
}

/// `[provider]`: which provider, with which settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfig {
    /// `providerName`, the discriminator.
    pub provider_name: ProviderName,
    /// `[provider.setting]`. Which keys apply depends on the provider (§1); the others are ignored.
    #[serde(default)]
    pub setting: ProviderSetting,
}

/// `[provider.setting]`: the union of every provider's settings (§1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSetting {
    /// All providers but bedrock: API base URL (`https://` except for ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Extra HTTP headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// openai: organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// openai / google-vertex: project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// openai: provider name override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// azure-openai: resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// azure-openai: `api-version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// azure-openai: use `/deployments/<model>/…` URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_deployment_based_urls: Option<bool>,
    /// amazon-bedrock: region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// google-vertex: location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// mock: the script file, relative to the folder of `perstack.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

/// A `[provider.setting]` value that an environment variable can also give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettingKey {
    /// `baseUrl`.
    BaseUrl,
    /// `organization`.
    Organization,
    /// `project`.
    Project,
    /// `resourceName`.
    ResourceName,
    /// `apiVersion`.
    ApiVersion,
    /// `region`.
    Region,
    /// `location`.
    Location,
}

impl ProviderSetting {
    /// The value of `key`, when it is set.
    pub(crate) fn value(&self, key: SettingKey) -> Option<&str> {
        match key {
            SettingKey::BaseUrl => &self.base_url,
            SettingKey::Organization => &self.organization,
            SettingKey::Project => &self.project,
            SettingKey::ResourceName => &self.resource_name,
            SettingKey::ApiVersion => &self.api_version,
            SettingKey::Region => &self.region,
            SettingKey::Location => &self.location,
        }
        .as_deref()
    }
}

/// One provider's facts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProviderInfo {
    /// Whose entry this is.
    pub name: ProviderName,
    /// The client that speaks its API; `None`: this build has no client for it yet, and
    /// `validate` and `run` refuse it.
    pub wire: Option<Wire>,
    /// Variables that must be set: its credentials (a client also refuses an empty one).
    pub key_vars: &'static [&'static str],
    /// Variables it reads when they are set, in the order a run passes them on.
    pub optional_vars: &'static [OptionalVar],
    /// Where its API is when no base URL is configured (`baseUrl` or the base-URL variable).
    pub endpoint: Endpoint,
}

/// The wire formats this build speaks; one client each (the sibling modules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Anthropic Messages (`anthropic.rs`).
    AnthropicMessages,
    /// OpenAI Chat Completions, also spoken by deepseek and azure-openai (`openai.rs`).
    OpenAiChat,
    /// Ollama's native chat (`ollama.rs`).
    OllamaChat,
    /// Gemini's `streamGenerateContent` (`google.rs`).
    Gemini,
    /// The scripted provider (`mock.rs`): no HTTP at all.
    Script,
}

/// A variable a provider reads when it is set.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OptionalVar {
    /// The variable.
    pub name: &'static str,
    /// The `[provider.setting]` key that beats it (§7: setting values beat env), when there is one.
    pub setting: Option<SettingKey>,
}

/// Where a provider's API is by default (the vendor SDK's default base URL).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `https://{host}{path}` on the vendor's public host; the runtime's egress lets `host` through.
    Vendor {
        /// The API host.
        host: &'static str,
        /// The base URL's path, version segment included.
        path: &'static str,
    },
    /// `https://{resource}.{domain}{path}`, the resource named by the `resourceName` setting or
    /// its variable (Azure). The runtime's egress lets exactly that host through, or every
    /// resource under `domain` while none is named.
    PerResource {
        /// The domain the resources are subdomains of.
        domain: &'static str,
        /// The base URL's path.
        path: &'static str,
    },
    /// `http://{authority}{path}`: a server on the runtime's own machine (Ollama's default), which
    /// needs no egress. A base URL for such a provider may be plain HTTP.
    Local {
        /// `host:port`.
        authority: &'static str,
        /// The base URL's path.
        path: &'static str,
    },
    /// No endpoint this build talks to: mock replays a script, and the providers without a
    /// client are refused before any host matters.
    None,
}

/// Shorthand for the entries: a variable that stands in for a setting.
const fn setting_var(name: &'static str, setting: SettingKey) -> OptionalVar {
    OptionalVar {
        name,
        setting: Some(setting),
    }
}

/// Shorthand for the entries: a variable with no setting of its own.
const fn plain_var(name: &'static str) -> OptionalVar {
    OptionalVar {
        name,
        setting: None,
    }
}

static ANTHROPIC: ProviderInfo = ProviderInfo {
    name: ProviderName::Anthropic,
    wire: Some(Wire::AnthropicMessages),
    key_vars: &["ANTHROPIC_API_KEY"],
    optional_vars: &[setting_var("ANTHROPIC_BASE_URL", SettingKey::BaseUrl)],
    endpoint: Endpoint::Vendor {
        host: "api.anthropic.com",
        path: "/v1",
    },
};

static OPENAI: ProviderInfo = ProviderInfo {
    name: ProviderName::Openai,
    wire: Some(Wire::OpenAiChat),
    key_vars: &["OPENAI_API_KEY"],
    optional_vars: &[
        setting_var("OPENAI_BASE_URL", SettingKey::BaseUrl),
        setting_var("OPENAI_ORGANIZATION", SettingKey::Organization),
        setting_var("OPENAI_PROJECT", SettingKey::Project),
    ],
    endpoint: Endpoint::Vendor {
        host: "api.openai.com",
        path: "/v1",
    },
};

static GOOGLE: ProviderInfo = ProviderInfo {
    name: ProviderName::Google,
    wire: Some(Wire::Gemini),
    key_vars: &["GOOGLE_GENERATIVE_AI_API_KEY"],
    optional_vars: &[setting_var(
        "GOOGLE_GENERATIVE_AI_BASE_URL",
        SettingKey::BaseUrl,
    )],
    endpoint: Endpoint::Vendor {
        host: "generativelanguage.googleapis.com",
        path: "/v1beta",
    },
};

static DEEPSEEK: ProviderInfo = ProviderInfo {
    name: ProviderName::Deepseek,
    wire: Some(Wire::OpenAiChat),
    key_vars: &["DEEPSEEK_API_KEY"],
    optional_vars: &[setting_var("DEEPSEEK_BASE_URL", SettingKey::BaseUrl)],
    endpoint: Endpoint::Vendor {
        host: "api.deepseek.com",
        path: "/v1",
    },
};

/// Ollama's base URL includes `/api`, as in the AI SDK's `ollama-ai-provider` Perstack uses.
static OLLAMA: ProviderInfo = ProviderInfo {
    name: ProviderName::Ollama,
    wire: Some(Wire::OllamaChat),
    key_vars: &[],
    optional_vars: &[setting_var("OLLAMA_BASE_URL", SettingKey::BaseUrl)],
    endpoint: Endpoint::Local {
        authority: "localhost:11434",
        path: "/api",
    },
};

/// Azure needs a resource name or a base URL besides its key (preflight checks for one).
static AZURE_OPENAI: ProviderInfo = ProviderInfo {
    name: ProviderName::AzureOpenai,
    wire: Some(Wire::OpenAiChat),
    key_vars: &["AZURE_API_KEY"],
    optional_vars: &[
        setting_var("AZURE_RESOURCE_NAME", SettingKey::ResourceName),
        setting_var("AZURE_API_VERSION", SettingKey::ApiVersion),
        setting_var("AZURE_BASE_URL", SettingKey::BaseUrl),
    ],
    endpoint: Endpoint::PerResource {
        domain: "openai.azure.com",
        path: "/openai",
    },
};

static AMAZON_BEDROCK: ProviderInfo = ProviderInfo {
    name: ProviderName::AmazonBedrock,
    wire: None,
    key_vars: &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    optional_vars: &[
        setting_var("AWS_REGION", SettingKey::Region),
        plain_var("AWS_SESSION_TOKEN"),
    ],
    endpoint: Endpoint::None,
};

/// Vertex authenticates with Application Default Credentials, not a key variable.
static GOOGLE_VERTEX: ProviderInfo = ProviderInfo {
    name: ProviderName::GoogleVertex,
    wire: None,
    key_vars: &[],
    optional_vars: &[
        setting_var("GOOGLE_VERTEX_PROJECT", SettingKey::Project),
        setting_var("GOOGLE_VERTEX_LOCATION", SettingKey::Location),
        setting_var("GOOGLE_VERTEX_BASE_URL", SettingKey::BaseUrl),
    ],
    endpoint: Endpoint::None,
};

static MOCK: ProviderInfo = ProviderInfo {
    name: ProviderName::Mock,
    wire: Some(Wire::Script),
    key_vars: &[],
    optional_vars: &[],
    endpoint: Endpoint::None,
};

/// The table, in the order messages suggest providers to use.
pub(crate) static PROVIDERS: [&ProviderInfo; 9] = [
    &ANTHROPIC,
    &OPENAI,
    &GOOGLE,
    &DEEPSEEK,
    &OLLAMA,
    &AZURE_OPENAI,
    &AMAZON_BEDROCK,
    &GOOGLE_VERTEX,
    &MOCK,
];

impl ProviderInfo {
    /// Whether this build can talk to the provider. `amazon-bedrock` and `google-vertex` cannot
    /// yet: `validate` and `run` refuse them with [`ProviderInfo::unsupported_message`].
    pub(crate) fn is_supported(&self) -> bool {
        self.wire.is_some()
    }

    /// Why the provider cannot be used, for `validate` and preflight: it names the providers
    /// that can (every supported one but the scripted `mock`).
    pub(crate) fn unsupported_message(&self) -> String {
        let usable: Vec<&str> = PROVIDERS
            .iter()
            .filter(|p| p.is_supported() && p.wire != Some(Wire::Script))
            .map(|p| p.name.as_str())
            .collect();
        let choices = match usable.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "none".to_string(),
        };
        format!(
            "provider `{}` is not supported yet by perstack-sandbox; use {choices}",
            self.name
        )
    }

    /// The variable that overrides the base URL.
    pub(crate) fn base_url_var(&self) -> Option<&'static str> {
        self.var(SettingKey::BaseUrl)
    }

    /// The variable that stands in for the setting `key`.
    pub(crate) fn var(&self, key: SettingKey) -> Option<&'static str> {
        self.optional_vars
            .iter()
            .find(|v| v.setting == Some(key))
            .map(|v| v.name)
    }

    /// The names of [`ProviderInfo::optional_vars`].
    pub(crate) fn optional_var_names(&self) -> impl Iterator<Item = &'static str> {
        self.optional_vars.iter().map(|v| v.name)
    }

    /// The setting `key`, else its variable; empty values count as unset (§7: setting beats env).
    pub(crate) fn setting_or_env(
        &self,
        key: SettingKey,
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        setting
            .value(key)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .or_else(|| self.var(key).and_then(env).filter(|v| !v.is_empty()))
    }

    /// The base URL the user configured (`baseUrl`, else the base-URL variable), if any.
    pub(crate) fn configured_base_url(
        &self,
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        self.setting_or_env(SettingKey::BaseUrl, setting, env)
    }

    /// The base URL a client sends to: the configured one, else [`ProviderInfo::endpoint`]'s.
    /// Without a trailing `/`.
    pub(crate) fn base_url(
        &self,
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ProviderSetupError> {
        let url = match (self.configured_base_url(setting, env), &self.endpoint) {
            (Some(url), _) => url,
            (None, Endpoint::Vendor { host, path }) => format!("https://{host}{path}"),
            (None, Endpoint::Local { authority, path }) => format!("http://{authority}{path}"),
            (None, Endpoint::PerResource { domain, path }) => {
                let resource =
                    self.resource(setting, env)
                        .ok_or_else(|| ProviderSetupError::MissingVar {
                            provider: self.name,
                            var: self.resource_var().to_string(),
                        })?;
                format!("https://{resource}.{domain}{path}")
            }
            (None, Endpoint::None) => return Err(ProviderSetupError::Unsupported(self.name)),
        };
        Ok(url.trim_end_matches('/').to_string())
    }

    /// The resource of a [`Endpoint::PerResource`] provider: `resourceName`, else its variable.
    pub(crate) fn resource(
        &self,
        setting: &ProviderSetting,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        self.setting_or_env(SettingKey::ResourceName, setting, env)
    }

    /// The variable naming the resource, for messages.
    pub(crate) fn resource_var(&self) -> &'static str {
        self.var(SettingKey::ResourceName).unwrap_or("resourceName")
    }

    /// The value of the one key variable of a provider that has one, non-empty.
    pub(crate) fn api_key(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ProviderSetupError> {
        let [var] = self.key_vars else {
            return Err(ProviderSetupError::Unsupported(self.name));
        };
        env(var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ProviderSetupError::MissingVar {
                provider: self.name,
                var: var.to_string(),
            })
    }

    /// Whether a base URL for this provider may be plain `http://`: only for one whose default
    /// is a server of the user's own (Ollama); every vendor API is `https://`.
    pub(crate) fn allows_plain_http(&self) -> bool {
        matches!(self.endpoint, Endpoint::Local { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn every_name_has_one_entry_and_round_trips() {
        for name in ProviderName::ALL {
            assert_eq!(name.info().name, name);
            assert_eq!(ProviderName::parse(name.as_str()), Some(name));
            assert_eq!(PROVIDERS.iter().filter(|p| p.name == name).count(), 1);
            let json = serde_json::to_string(&name).expect("serialize");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ProviderName>(&json).ok(), Some(name));
        }
        let err = serde_json::from_str::<ProviderName>("\"bedrock\"").expect_err("unknown");
        assert!(err.to_string().starts_with(
            "unknown provider \"bedrock\"; expected one of anthropic, google, openai"
        ));
    }

    #[test]
    fn bedrock_and_vertex_are_refused_with_the_providers_that_work() {
        let refused: Vec<ProviderName> = PROVIDERS
            .iter()
            .filter(|p| !p.is_supported())
            .map(|p| p.name)
            .collect();
        assert_eq!(
            refused,
            [ProviderName::AmazonBedrock, ProviderName::GoogleVertex]
        );
        assert_eq!(
            ProviderName::GoogleVertex.info().unsupported_message(),
            "provider `google-vertex` is not supported yet by perstack-sandbox; use anthropic, \
             openai, google, deepseek, ollama or azure-openai"
        );
    }

    #[test]
    fn the_base_url_is_the_setting_then_the_variable_then_the_default() {
        let anthropic = ProviderName::Anthropic.info();
        let none = env_of(&[]);
        let setting = ProviderSetting::default();
        assert_eq!(
            anthropic.base_url(&setting, &none).expect("default"),
            "https://api.anthropic.com/v1"
        );
        let env = env_of(&[("ANTHROPIC_BASE_URL", "https://gw.example/v1/")]);
        assert_eq!(
            anthropic.base_url(&setting, &env).expect("env"),
            "https://gw.example/v1"
        );
        let setting = ProviderSetting {
            base_url: Some("https://setting.example/v1".into()),
            ..Default::default()
        };
        assert_eq!(
            anthropic.base_url(&setting, &env).expect("setting"),
            "https://setting.example/v1"
        );
        // An empty value is no value.
        let empty = env_of(&[("ANTHROPIC_BASE_URL", "")]);
        assert_eq!(
            anthropic.configured_base_url(&Default::default(), &empty),
            None
        );
        assert_eq!(
            ProviderName::Ollama
                .info()
                .base_url(&Default::default(), &none)
                .expect("ollama"),
            "http://localhost:11434/api"
        );
    }

    #[test]
    fn azure_lives_at_its_resource_and_says_which_variable_names_it() {
        let azure = ProviderName::AzureOpenai.info();
        let env = env_of(&[("AZURE_RESOURCE_NAME", "env-res")]);
        assert_eq!(
            azure.base_url(&Default::default(), &env).expect("env"),
            "https://env-res.openai.azure.com/openai"
        );
        let setting = ProviderSetting {
            resource_name: Some("file-res".into()),
            ..Default::default()
        };
        assert_eq!(
            azure.base_url(&setting, &env).expect("setting"),
            "https://file-res.openai.azure.com/openai"
        );
        let err = azure
            .base_url(&Default::default(), &env_of(&[]))
            .expect_err("no resource");
        assert_eq!(
            err.to_string(),
            "AZURE_RESOURCE_NAME is not set (provider `azure-openai` needs it)"
        );
    }

    #[test]
    fn a_client_reads_exactly_one_key_and_an_empty_one_is_missing() {
        let openai = ProviderName::Openai.info();
        assert_eq!(
            openai
                .api_key(&env_of(&[("OPENAI_API_KEY", "sk")]))
                .expect("key"),
            "sk"
        );
        let err = openai
            .api_key(&env_of(&[("OPENAI_API_KEY", "")]))
            .expect_err("empty");
        assert_eq!(
            err.to_string(),
            "OPENAI_API_KEY is not set (provider `openai` needs it)"
        );
        // Every provider with an HTTP client has one key variable, or none and no key at all.
        for info in PROVIDERS.iter().filter(|p| p.is_supported()) {
            assert!(info.key_vars.len() <= 1, "{}", info.name);
        }
    }

    #[test]
    fn entries_are_consistent() {
        for info in PROVIDERS {
            let names: Vec<&str> = info.optional_var_names().collect();
            let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
            assert_eq!(names.len(), unique.len(), "{}", info.name);
            if matches!(info.endpoint, Endpoint::PerResource { .. }) {
                assert!(
                    info.var(SettingKey::ResourceName).is_some(),
                    "{}",
                    info.name
                );
            }
            if matches!(
                info.endpoint,
                Endpoint::Vendor { .. } | Endpoint::Local { .. }
            ) {
                assert!(info.base_url_var().is_some(), "{}", info.name);
            }
        }
        assert!(ProviderName::Ollama.info().allows_plain_http());
        assert!(!ProviderName::Deepseek.info().allows_plain_http());
    }
}
