//! The `runtime` role: the agent runtime inside the runtime container.
//!
//! It reads the spec baked into its image, connects to its Expert's skills over their unix
//! sockets, runs the agent loop, and writes every event as one JSON line on stdout — the only
//! thing it writes there. Diagnostics go to stderr, which the controller keeps apart.

pub mod skills;
pub mod spec;

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::agent::{Agent, RunOutcome, RunSettings};
use crate::config::{
    DEFAULT_MAX_RETRIES, DEFAULT_MAX_STEPS, DEFAULT_MODEL, DEFAULT_TIMEOUT_MS, ProviderConfig,
    ProviderName, ReasoningBudget, ReasoningLevel,
};
use crate::event::{Event, EventSink, RuntimePayload};
use crate::llm::{HttpSettings, Provider};
use spec::RuntimeSpec;

/// Arguments of the runtime role (set by the controller).
#[derive(Debug, Clone)]
pub struct RuntimeArgs {
    /// The spec file.
    pub spec: PathBuf,
    /// The job.
    pub job_id: String,
    /// This run segment.
    pub run_id: String,
    /// Provider override.
    pub provider: Option<ProviderName>,
    /// Model override.
    pub model: Option<String>,
    /// Step limit.
    pub max_steps: Option<u32>,
    /// Retry limit.
    pub max_retries: Option<u32>,
    /// Per-generation timeout, ms.
    pub timeout_ms: Option<u64>,
    /// Reasoning budget.
    pub reasoning_budget: Option<String>,
    /// Continue from a checkpoint read from stdin (JSON, until EOF) instead of starting fresh.
    pub checkpoint_stdin: bool,
    /// The answer to the checkpoint's pending tool call (with `checkpoint_stdin`).
    pub interactive_tool_call_result: Option<crate::event::InteractiveToolCallResult>,
    /// The Expert.
    pub expert_key: String,
    /// The query.
    pub query: String,
}

/// Why the runtime could not run the Expert at all.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The spec could not be read.
    #[error("cannot read runtime spec {path}: {message}")]
    Spec {
        /// The spec path.
        path: String,
        /// Why.
        message: String,
    },
    /// The Expert is not in the spec.
    #[error("expert `{0}` is not in this image's runtime spec")]
    UnknownExpert(String),
    /// A skill could not be connected.
    #[error(transparent)]
    Skill(#[from] crate::skill::client::SkillConnectError),
    /// Two skills offer the same tool.
    #[error(transparent)]
    DuplicateTool(#[from] crate::agent::tools::DuplicateTool),
    /// The provider could not be set up.
    #[error(transparent)]
    Provider(#[from] crate::llm::ProviderSetupError),
    /// `--reasoning-budget` is not a level or a number.
    #[error("invalid reasoning budget `{0}` (none, minimal, low, medium, high, or a token count)")]
    ReasoningBudget(String),
    /// `--checkpoint-stdin` was given, but this runtime cannot continue a checkpoint yet.
    #[error(
        "continuing from a checkpoint (--checkpoint-stdin) is not supported by this runtime yet; start a new run instead"
    )]
    ContinueUnsupported,
}

/// Runs the role; returns the process exit code. Events go to stdout as they happen.
pub async fn run(args: RuntimeArgs) -> i32 {
    let (sink, mut events) = EventSink::channel();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(event) = events.recv().await {
            let mut line = event.to_line();
            line.push('\n');
            // Flush per line: the controller relays each event as it arrives.
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let code = match run_inner(&args, &sink).await {
        Ok(_) => 0,
        Err(error) => {
            eprintln!("perstack-sandbox runtime: {error}");
            1
        }
    };
    drop(sink);
    let _ = writer.await;
    code
}

async fn run_inner(args: &RuntimeArgs, sink: &EventSink) -> Result<RunOutcome, RuntimeError> {
    // Refuse rather than silently start afresh: the caller asked to continue.
    if args.checkpoint_stdin {
        return Err(RuntimeError::ContinueUnsupported);
    }
    let text = std::fs::read_to_string(&args.spec).map_err(|e| RuntimeError::Spec {
        path: args.spec.display().to_string(),
        message: e.to_string(),
    })?;
    let spec: RuntimeSpec = serde_json::from_str(&text).map_err(|e| RuntimeError::Spec {
        path: args.spec.display().to_string(),
        message: e.to_string(),
    })?;
    let expert = spec
        .experts
        .get(&args.expert_key)
        .ok_or_else(|| RuntimeError::UnknownExpert(args.expert_key.clone()))?;
    let settings = RunSettings {
        model: args
            .model
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
        max_steps: args.max_steps.unwrap_or(DEFAULT_MAX_STEPS),
        max_retries: args.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        timeout: Duration::from_millis(args.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        reasoning_budget: reasoning_tokens(args.reasoning_budget.as_deref())?,
    };
    sink.emit(Event::runtime(
        &args.job_id,
        &args.run_id,
        RuntimePayload::InitializeRuntime {
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime: Some("docker".to_string()),
            expert_name: expert.name.clone(),
            experts: spec.experts.keys().cloned().collect(),
            model: settings.model.clone(),
            max_steps: Some(settings.max_steps),
            max_retries: settings.max_retries,
            timeout: settings.timeout.as_millis() as u64,
            query: Some(args.query.clone()),
        },
    ));

    let tools = skills::connect_skills(args, &spec, expert, sink).await?;

    let provider_name = args
        .provider
        .or_else(|| spec.provider_name.as_deref().and_then(ProviderName::parse))
        .unwrap_or(ProviderName::Anthropic);
    // The file's settings apply only to the file's provider; `--provider` to another one starts
    // from that provider's defaults.
    let setting = if spec.provider_name.as_deref() == Some(provider_name.as_str()) {
        spec.provider_setting.clone()
    } else {
        Default::default()
    };
    let provider = Provider::new(
        &ProviderConfig {
            provider_name,
            setting,
        },
        &|name| std::env::var(name).ok(),
        spec.mock_script.clone(),
        &HttpSettings {
            ca_bundle: std::fs::read(crate::sandbox::images::CA_BUNDLE_PATH)
                .ok()
                .filter(|b| !b.is_empty()),
            timeout: None,
        },
    )?;
    let delegates: Vec<_> = expert
        .delegates
        .iter()
        .filter_map(|k| spec.experts.get(k))
        .collect();
    let agent = Agent {
        provider: &provider,
        tools: &tools,
        sink,
        settings: &settings,
        job_id: &args.job_id,
        run_id: &args.run_id,
    };
    let outcome = agent.run(expert, &delegates, &args.query, 1).await;
    // Skills are closed at the end of each run segment (`skillDisconnected`).
    tools.close().await;
    Ok(outcome)
}

/// Token budget of `--reasoning-budget` (§7): minimal 1024, low 2048, medium 5000, high 10000.
pub fn reasoning_tokens(budget: Option<&str>) -> Result<Option<u64>, RuntimeError> {
    let Some(budget) = budget else {
        return Ok(None);
    };
    let parsed = match budget {
        "none" => ReasoningBudget::Level(ReasoningLevel::None),
        "minimal" => ReasoningBudget::Level(ReasoningLevel::Minimal),
        "low" => ReasoningBudget::Level(ReasoningLevel::Low),
        "medium" => ReasoningBudget::Level(ReasoningLevel::Medium),
        "high" => ReasoningBudget::Level(ReasoningLevel::High),
        other => ReasoningBudget::Tokens(
            other
                .parse()
                .map_err(|_| RuntimeError::ReasoningBudget(other.to_string()))?,
        ),
    };
    Ok(match parsed {
        ReasoningBudget::Level(ReasoningLevel::None) | ReasoningBudget::Tokens(0) => None,
        ReasoningBudget::Level(ReasoningLevel::Minimal) => Some(1024),
        ReasoningBudget::Level(ReasoningLevel::Low) => Some(2048),
        ReasoningBudget::Level(ReasoningLevel::Medium) => Some(5000),
        ReasoningBudget::Level(ReasoningLevel::High) => Some(10000),
        ReasoningBudget::Tokens(n) => Some(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_checkpoint_to_continue_is_refused_not_ignored() {
        let args = RuntimeArgs {
            spec: PathBuf::from("/nonexistent/runtime.json"),
            job_id: "j".into(),
            run_id: "r".into(),
            provider: None,
            model: None,
            max_steps: None,
            max_retries: None,
            timeout_ms: None,
            reasoning_budget: None,
            checkpoint_stdin: true,
            interactive_tool_call_result: None,
            expert_key: "main".into(),
            query: "go".into(),
        };
        let (sink, _events) = EventSink::channel();
        let error = run_inner(&args, &sink).await.expect_err("refused");
        assert!(
            matches!(error, RuntimeError::ContinueUnsupported),
            "{error}"
        );
    }
}
