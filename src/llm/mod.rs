//! LLM providers: one request/response shape for the agent loop, one client per wire format.
//!
//! The agent loop speaks Perstack messages ([`crate::event::Message`]); each provider turns them
//! into its own wire format and turns the answer back into a [`Generation`]. What each provider
//! needs and where it lives is the provider table's (`providers.rs`), which `config`, the
//! sandbox's preflight and egress plan read too; this module imports nothing from `config`.

pub(crate) mod anthropic;
pub(crate) mod google;
mod http;
pub(crate) mod mock;
pub(crate) mod models;
pub(crate) mod ollama;
pub(crate) mod openai;
pub(crate) mod providers;
mod retry;
mod sse;

use std::time::Duration;

use serde_json::Value;

use crate::event::{Message, Usage};
use providers::Wire;

pub(crate) use providers::{ProviderConfig, ProviderName, ProviderSetting};
pub(crate) use retry::RetryPolicy;

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub input_schema: Value,
}

/// One generation request.
#[derive(Debug, Clone)]
pub(crate) struct GenerateRequest<'a> {
    /// The Expert generating (the mock provider picks its turns by it).
    pub expert_key: &'a str,
    /// The model id.
    pub model: &'a str,
    /// The conversation, instruction message first.
    pub messages: &'a [Message],
    /// Tools on offer; empty for the final-result generation.
    pub tools: &'a [ToolSpec],
    /// Reasoning budget in tokens; `None` turns reasoning off.
    pub reasoning_budget: Option<u64>,
}

/// A piece of the model's answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GeneratedPart {
    /// Reasoning, with the provider's signature when it has one.
    Thinking {
        /// The reasoning text.
        text: String,
        /// Signature to send it back with.
        signature: Option<String>,
    },
    /// Text.
    Text(String),
    /// A tool call.
    ToolCall {
        /// The provider's call id.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments (a JSON object).
        args: Value,
    },
}

/// A piece of a generation as it streams in, before the whole [`Generation`] is known.
///
/// Providers call the delta callback for every chunk they receive, in order; the agent turns
/// the chunks into `streamReasoning` / `streamRunResult` events (§3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamDelta {
    /// A chunk of reasoning ("thinking") text.
    Reasoning(String),
    /// A chunk of answer text.
    Text(String),
}

/// Where a provider reports [`StreamDelta`]s.
pub(crate) type DeltaSink<'a> = &'a (dyn Fn(StreamDelta) + Send + Sync);

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FinishReason {
    /// It finished its answer.
    Stop,
    /// It wants tools to run.
    ToolCalls,
    /// It ran out of output tokens.
    Length,
    /// Anything else the provider reported.
    Other(String),
}

/// The model's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Generation {
    /// Thinking, text and tool calls, in the order the model produced them.
    pub parts: Vec<GeneratedPart>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Tokens used by this generation.
    pub usage: Usage,
}

impl Generation {
    /// All text parts, joined.
    pub(crate) fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                GeneratedPart::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A failed generation, in the shape `stopRunByError` reports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}: {message}")]
pub(crate) struct LlmError {
    /// Error class, e.g. `AI_APICallError`.
    pub name: String,
    /// What went wrong.
    pub message: String,
    /// HTTP status, when there was one.
    pub status_code: Option<u16>,
    /// Whether trying again could help.
    pub is_retryable: bool,
    /// How long the server asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl LlmError {
    /// An error that retrying will not fix.
    pub(crate) fn fatal(name: &str, message: impl Into<String>) -> LlmError {
        LlmError {
            name: name.to_string(),
            message: message.into(),
            status_code: None,
            is_retryable: false,
            retry_after: None,
        }
    }

    /// An HTTP API error, retryable per PERSTACK-COMPAT.md §7.
    pub(crate) fn api(
        status: u16,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> LlmError {
        let message = message.into();
        LlmError {
            name: "AI_APICallError".to_string(),
            is_retryable: is_retryable_status(status) || is_retryable_message(&message),
            message,
            status_code: Some(status),
            retry_after,
        }
    }
}

/// HTTP statuses worth retrying (§7), plus Anthropic's 529 "overloaded".
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429 | 500 | 502 | 503 | 504 | 529)
}

/// Error messages worth retrying whatever the status (§7).
pub(crate) fn is_retryable_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "rate limit",
        "overloaded",
        "timeout",
        "timed out",
        "service unavailable",
        "internal server error",
        "bad gateway",
        "gateway timeout",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// A ready client for one provider.
#[derive(Debug)]
pub(crate) enum Provider {
    /// Anthropic Messages API.
    Anthropic(anthropic::AnthropicClient),
    /// OpenAI Chat Completions: openai, deepseek, azure-openai.
    OpenAi(openai::OpenAiClient),
    /// Ollama's native chat API.
    Ollama(ollama::OllamaClient),
    /// Google Gemini.
    Google(google::GoogleClient),
    /// The scripted provider.
    Mock(mock::MockProvider),
}

/// Why a provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProviderSetupError {
    /// A required variable is missing.
    #[error("{var} is not set (provider `{provider}` needs it)")]
    MissingVar {
        /// The provider.
        provider: ProviderName,
        /// The variable.
        var: String,
    },
    /// This build cannot talk to the provider yet.
    #[error("{}", .0.info().unsupported_message())]
    Unsupported(ProviderName),
    /// `mock` without a script.
    #[error("provider `mock` needs a script (`[provider.setting] script = \"…\"`)")]
    MissingScript,
    /// The HTTP client could not be built.
    #[error("could not set up the HTTP client: {0}")]
    Http(String),
}

impl Provider {
    /// Builds the client for `config`, reading keys from `env`.
    pub(crate) fn new(
        config: &ProviderConfig,
        env: &dyn Fn(&str) -> Option<String>,
        script: Option<mock::MockScript>,
        http: &HttpSettings,
    ) -> Result<Provider, ProviderSetupError> {
        let name = config.provider_name;
        let setting = &config.setting;
        Ok(match name.info().wire {
            Some(Wire::AnthropicMessages) => {
                Provider::Anthropic(anthropic::AnthropicClient::new(setting, env, http)?)
            }
            Some(Wire::OpenAiChat) => {
                Provider::OpenAi(openai::OpenAiClient::new(name, setting, env, http)?)
            }
            Some(Wire::OllamaChat) => {
                Provider::Ollama(ollama::OllamaClient::new(setting, env, http)?)
            }
            Some(Wire::Gemini) => Provider::Google(google::GoogleClient::new(setting, env, http)?),
            Some(Wire::Script) => Provider::Mock(mock::MockProvider::new(
                script.ok_or(ProviderSetupError::MissingScript)?,
            )),
            None => return Err(ProviderSetupError::Unsupported(name)),
        })
    }

    /// Asks the model for its next turn, reporting text and reasoning to `on_delta` as they
    /// stream in. The returned [`Generation`] holds everything that was streamed.
    pub(crate) async fn generate(
        &self,
        request: &GenerateRequest<'_>,
        on_delta: DeltaSink<'_>,
    ) -> Result<Generation, LlmError> {
        match self {
            Provider::Anthropic(client) => client.generate(request, on_delta).await,
            Provider::OpenAi(client) => client.generate(request, on_delta).await,
            Provider::Ollama(client) => client.generate(request, on_delta).await,
            Provider::Google(client) => client.generate(request, on_delta).await,
            Provider::Mock(mock) => mock.generate(request, on_delta).await,
        }
    }
}

/// HTTP settings shared by the real providers.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpSettings {
    /// PEM bundle of trusted roots. `None`: the platform's trust store.
    pub ca_bundle: Option<Vec<u8>>,
    /// Abort a request after this long.
    pub timeout: Option<Duration>,
}

/// An HTTP client with our user agent, trust roots and timeout.
pub(crate) fn http_client(settings: &HttpSettings) -> Result<reqwest::Client, ProviderSetupError> {
    client_builder(settings)?
        .build()
        .map_err(|e| ProviderSetupError::Http(e.to_string()))
}

/// The HTTP client of a real provider: [`http_client`], and when `PERSTACK_PROXY_URL` is set
/// every request goes through that proxy (§7); otherwise the usual `HTTPS_PROXY` / `NO_PROXY`
/// variables apply.
pub(crate) fn provider_http_client(
    settings: &HttpSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<reqwest::Client, ProviderSetupError> {
    let mut builder = client_builder(settings)?;
    if let Some(url) = env("PERSTACK_PROXY_URL").filter(|u| !u.is_empty()) {
        let proxy = reqwest::Proxy::all(&url).map_err(|e| {
            ProviderSetupError::Http(format!(
                "PERSTACK_PROXY_URL \"{url}\" is not a usable proxy URL ({e}); expect http://host:port"
            ))
        })?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| ProviderSetupError::Http(e.to_string()))
}

fn client_builder(settings: &HttpSettings) -> Result<reqwest::ClientBuilder, ProviderSetupError> {
    // Exactly one rustls crypto provider is compiled in (ring); make it the process default.
    // Installing twice is harmless: the second attempt just reports the first one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("perstack-sandbox/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &settings.ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ProviderSetupError::Http(format!("bad CA bundle: {e}")))?;
        builder = builder.tls_certs_only(certs);
    }
    if let Some(timeout) = settings.timeout {
        builder = builder.timeout(timeout);
    }
    Ok(builder)
}

/// A message with a fixed id, for the conversations of the provider tests.
#[cfg(test)]
pub(crate) fn test_message(
    kind: crate::event::MessageKind,
    contents: Vec<crate::event::Part>,
) -> Message {
    Message {
        kind,
        id: "m".into(),
        contents,
        cache: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::http::TestServer;
    use crate::test_support::replies::Reply;

    fn config(provider_name: ProviderName) -> ProviderConfig {
        ProviderConfig {
            provider_name,
            setting: ProviderSetting::default(),
        }
    }

    #[test]
    fn each_provider_name_gets_its_client_and_bedrock_and_vertex_are_refused() {
        let env = |k: &str| (k != "PERSTACK_PROXY_URL").then(|| "x".to_string());
        let http = HttpSettings::default();
        let kind = |name| match Provider::new(&config(name), &env, None, &http) {
            Ok(Provider::Anthropic(_)) => "anthropic".to_string(),
            Ok(Provider::OpenAi(_)) => "openai".to_string(),
            Ok(Provider::Ollama(_)) => "ollama".to_string(),
            Ok(Provider::Google(_)) => "google".to_string(),
            Ok(Provider::Mock(_)) => "mock".to_string(),
            Err(e) => e.to_string(),
        };
        assert_eq!(kind(ProviderName::Anthropic), "anthropic");
        assert_eq!(kind(ProviderName::Openai), "openai");
        assert_eq!(kind(ProviderName::Deepseek), "openai");
        assert_eq!(kind(ProviderName::AzureOpenai), "openai");
        assert_eq!(kind(ProviderName::Ollama), "ollama");
        assert_eq!(kind(ProviderName::Google), "google");
        for name in [ProviderName::AmazonBedrock, ProviderName::GoogleVertex] {
            assert!(!name.info().is_supported());
            assert_eq!(
                kind(name),
                format!(
                    "provider `{name}` is not supported yet by perstack-sandbox; use anthropic, \
                     openai, google, deepseek, ollama or azure-openai"
                )
            );
        }
    }

    #[tokio::test]
    async fn perstack_proxy_url_routes_requests_through_the_proxy() {
        // The test server plays the proxy: a proxied plain-HTTP request names the whole URL.
        let proxy = TestServer::replying(vec![Reply::raw(503, vec![], "{}")]);
        let proxy_url = proxy.url();
        let env = |k: &str| match k {
            "ANTHROPIC_API_KEY" => Some("sk".to_string()),
            "ANTHROPIC_BASE_URL" => Some("http://llm.example.invalid/v1".to_string()),
            "PERSTACK_PROXY_URL" => Some(proxy_url.clone()),
            _ => None,
        };
        let provider = Provider::new(
            &config(ProviderName::Anthropic),
            &env,
            None,
            &HttpSettings::default(),
        )
        .expect("provider");
        let request = GenerateRequest {
            expert_key: "x",
            model: "m",
            messages: &[],
            tools: &[],
            reasoning_budget: None,
        };
        let err = provider.generate(&request, &|_| {}).await.expect_err("503");
        assert_eq!(err.status_code, Some(503));
        let requests = proxy.requests();
        assert_eq!(requests[0].target, "http://llm.example.invalid/v1/messages");
    }
}
