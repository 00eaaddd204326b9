//! The `runtime` role: the agent runtime inside the runtime container.
//!
//! It reads the spec baked into its image, connects to its Expert's skills over their unix
//! sockets, runs the agent loop, and writes every event as one JSON line on stdout — the only
//! thing it writes there. Diagnostics go to stderr, which the controller keeps apart.

pub(crate) mod skill_events;
pub(crate) mod skills;

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use std::collections::HashMap;

use crate::agent::tools::ToolSet;
use crate::agent::{
    Job, ResumeError, ResumeInput, RunOutcome, RunSettings, Start, StopRequest, initialize_runtime,
};
use crate::config::{
    DEFAULT_MAX_RETRIES, DEFAULT_MAX_STEPS, DEFAULT_MODEL, DEFAULT_TIMEOUT_MS, ProviderConfig,
    ProviderName, ReasoningBudget, ReasoningLevel,
};
use crate::contract::paths::CA_BUNDLE_PATH;
use crate::contract::runtime_args::RuntimeArgs;
use crate::contract::spec::RuntimeSpec;
use crate::event::{Checkpoint, EventSink, MessageKind, Usage};
use crate::llm::mock::MockProvider;
use crate::llm::{HttpSettings, Provider};
use skill_events::SkillRoster;

/// Why the runtime could not run the Expert at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuntimeError {
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
    #[error("Expert `{expert}`: {source}")]
    Skill {
        /// Whose skill.
        expert: String,
        /// Why.
        #[source]
        source: crate::skill::client::SkillConnectError,
    },
    /// A `lazyInit` skill could not be listed.
    #[error("Expert `{expert}`: {message}")]
    Lazy {
        /// Whose skill.
        expert: String,
        /// Why.
        message: String,
    },
    /// Two skills offer the same tool.
    #[error(transparent)]
    DuplicateTool(#[from] crate::agent::tools::DuplicateTool),
    /// The provider could not be set up.
    #[error(transparent)]
    Provider(#[from] crate::llm::ProviderSetupError),
    /// `--reasoning-budget` is not a level or a number.
    #[error("invalid reasoning budget `{0}` (none, minimal, low, medium, high, or a token count)")]
    ReasoningBudget(String),
    /// The checkpoint on stdin could not be read.
    #[error("cannot read the checkpoint to continue from stdin: {0}")]
    Checkpoint(String),
    /// The checkpoint cannot be continued as asked.
    #[error(transparent)]
    Resume(#[from] ResumeError),
    /// `-i` without a checkpoint.
    #[error(
        "-i/--interactive-tool-call-result needs --checkpoint-stdin: an answer continues a checkpoint"
    )]
    AnswerWithoutCheckpoint,
}

/// Runs the role; returns the process exit code. Events go to stdout as they happen.
pub(crate) async fn run(args: RuntimeArgs) -> i32 {
    // SIGINT (the controller's first Ctrl-C) asks the job to stop after the step under way;
    // SIGTERM (`docker stop`, a second Ctrl-C) ends the process at once (`main.rs`). As PID 1 a
    // signal without a handler would be ignored, so the handler goes in first.
    let stop = StopRequest::default();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(mut sigint) => {
            let stop = stop.clone();
            tokio::spawn(async move {
                if sigint.recv().await.is_some() {
                    eprintln!("perstack-sandbox runtime: stopping after the step under way");
                    stop.request();
                }
            });
        }
        Err(error) => eprintln!("perstack-sandbox runtime: cannot handle SIGINT: {error}"),
    }
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
    let ran = match args.list_tools {
        true => list_tools(&args, &sink).await,
        false => run_inner(&args, &sink, &stop).await.map(|_| ()),
    };
    let code = match ran {
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

/// The spec baked into the image (`--spec`).
fn read_spec(args: &RuntimeArgs) -> Result<RuntimeSpec, RuntimeError> {
    let text = std::fs::read_to_string(&args.spec).map_err(|e| RuntimeError::Spec {
        path: args.spec.display().to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| RuntimeError::Spec {
        path: args.spec.display().to_string(),
        message: e.to_string(),
    })
}

/// `--list-tools` (`install`'s listing run): connects every Expert's MCP skills as a run does,
/// `lazyInit` ones too, and emits one `toolDefinitions` event per Expert with their tools after
/// `pick`/`omit`; asks no model. Their skill events are not told: no run segment begins.
async fn list_tools(args: &RuntimeArgs, sink: &EventSink) -> Result<(), RuntimeError> {
    let spec = read_spec(args)?;
    let roster = SkillRoster::new(sink.clone(), &args.job_id);
    for expert in spec.experts.values() {
        skills::register(&roster, &spec, expert);
    }
    let connected = futures::future::join_all(
        spec.experts
            .values()
            .map(|expert| skills::connect_skills(&spec, expert, &roster)),
    )
    .await;
    let mut sets = Vec::new();
    for (expert, set) in spec.experts.values().zip(connected) {
        let set = set?;
        set.ready().await.map_err(|e| RuntimeError::Lazy {
            expert: expert.key.clone(),
            message: e.to_string(),
        })?;
        sets.push((expert.key.clone(), set));
    }
    for (expert_key, set) in &sets {
        let tool_definitions = set
            .mcp_tools()
            .into_iter()
            .map(|(skill, tool)| tool_definition(skill, tool))
            .collect();
        sink.emit(crate::event::Event::runtime(
            &args.job_id,
            &args.run_id,
            crate::event::RuntimePayload::ToolDefinitions {
                expert: expert_key.clone(),
                tool_definitions,
            },
        ));
    }
    futures::future::join_all(sets.iter().map(|(_, set)| set.close())).await;
    Ok(())
}

/// One tool as perstack.lock's `toolDefinitions` holds it; no `description` when it has none.
fn tool_definition(skill: &str, tool: &crate::llm::ToolSpec) -> serde_json::Value {
    let mut definition = serde_json::Map::new();
    definition.insert("skillName".into(), skill.into());
    definition.insert("name".into(), tool.name.clone().into());
    if !tool.description.is_empty() {
        definition.insert("description".into(), tool.description.clone().into());
    }
    definition.insert("inputSchema".into(), tool.input_schema.clone());
    serde_json::Value::Object(definition)
}

/// The runtime's stages: the spec and the Expert, where the run starts (fresh or from the
/// checkpoint on stdin), its settings, every skill connected, the provider, then the job.
async fn run_inner(
    args: &RuntimeArgs,
    sink: &EventSink,
    stop: &StopRequest,
) -> Result<RunOutcome, RuntimeError> {
    let spec = read_spec(args)?;
    let expert = spec
        .experts
        .get(&args.expert_key)
        .ok_or_else(|| RuntimeError::UnknownExpert(args.expert_key.clone()))?;
    let start = start_of(args).await?;
    let settings = settings_of(args)?;
    sink.emit(initialize_runtime(
        &args.job_id,
        &args.run_id,
        expert,
        &spec.experts,
        &settings,
        &start,
    ));
    let (roster, tools) = connect_skills_of_all(&spec, sink, args).await?;
    let provider = provider_of(&spec, args)?;
    if let (Provider::Mock(mock), Start::Resume { checkpoint, .. }) = (&provider, &start) {
        skip_played_turns(mock, checkpoint, args);
    }
    let job = Job {
        provider: &provider,
        experts: &spec.experts,
        tools: &tools,
        skills: &roster,
        sink,
        settings: &settings,
        job_id: &args.job_id,
        stop,
    };
    let outcome = job.run(&args.expert_key, &args.run_id, start).await;
    // Skills are closed when the job ends, whatever happened; each segment already said its
    // `skillDisconnected` when it ended.
    futures::future::join_all(tools.values().map(ToolSet::close)).await;
    Ok(outcome?)
}

/// Where the run starts: fresh with the query, or from the checkpoint the controller writes to
/// stdin with the query or the answer to its pending interactive tool call.
async fn start_of(args: &RuntimeArgs) -> Result<Start, RuntimeError> {
    if !args.checkpoint_stdin {
        if args.interactive_tool_call_result.is_some() {
            return Err(RuntimeError::AnswerWithoutCheckpoint);
        }
        return Ok(Start::Fresh {
            query: args.query.clone(),
            step_number: 1,
            usage: Usage::default(),
            delegated_by: None,
        });
    }
    Ok(Start::Resume {
        checkpoint: read_checkpoint(tokio::io::stdin()).await?,
        input: match args.interactive_tool_call_result.clone() {
            Some(answer) => ResumeInput::Answer(answer),
            None => ResumeInput::Query(args.query.clone()),
        },
    })
}

/// The run's settings: the controller's arguments, else the defaults.
fn settings_of(args: &RuntimeArgs) -> Result<RunSettings, RuntimeError> {
    Ok(RunSettings {
        model: args
            .model
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
        max_steps: args.max_steps.unwrap_or(DEFAULT_MAX_STEPS),
        max_retries: args.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        timeout: Duration::from_millis(args.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        reasoning_budget: reasoning_tokens(args.reasoning_budget.as_deref())?,
    })
}

/// Every Expert's skills, connected now in parallel; the first segment's are told at once, the
/// others' when a segment of their Expert begins.
async fn connect_skills_of_all(
    spec: &RuntimeSpec,
    sink: &EventSink,
    args: &RuntimeArgs,
) -> Result<(SkillRoster, HashMap<String, ToolSet>), RuntimeError> {
    let roster = SkillRoster::new(sink.clone(), &args.job_id);
    for expert in spec.experts.values() {
        skills::register(&roster, spec, expert);
    }
    roster.begin(&args.expert_key, &args.run_id);
    match connect_closure(spec, &roster).await {
        Ok(tools) => Ok((roster, tools)),
        Err(error) => {
            roster.end(&args.expert_key, &args.run_id);
            Err(error)
        }
    }
}

/// The run's provider: `--provider`, else the file's, else Anthropic. The file's settings
/// apply only to the file's provider; `--provider` to another one starts from that provider's
/// defaults.
fn provider_of(spec: &RuntimeSpec, args: &RuntimeArgs) -> Result<Provider, RuntimeError> {
    let provider_name = args
        .provider
        .or_else(|| spec.provider_name.as_deref().and_then(ProviderName::parse))
        .unwrap_or(ProviderName::Anthropic);
    let setting = if spec.provider_name.as_deref() == Some(provider_name.as_str()) {
        spec.provider_setting.clone()
    } else {
        Default::default()
    };
    Ok(Provider::new(
        &ProviderConfig {
            provider_name,
            setting,
        },
        &|name| std::env::var(name).ok(),
        spec.mock_script.clone(),
        &HttpSettings {
            ca_bundle: std::fs::read(CA_BUNDLE_PATH).ok().filter(|b| !b.is_empty()),
            timeout: None,
        },
    )?)
}

/// One script serves the first run and its continuations: the turns the Expert already played
/// are in the checkpoint as its expert messages; the delegates' the controller counted in the
/// job's checkpoints.
fn skip_played_turns(mock: &MockProvider, checkpoint: &Checkpoint, args: &RuntimeArgs) {
    let played = checkpoint
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::ExpertMessage)
        .count();
    mock.skip_played(&checkpoint.expert.key, played);
    for (delegate, played) in &args.mock_played {
        mock.skip_played(delegate, *played);
    }
}

/// Reads the checkpoint the controller writes to stdin (one JSON object, until EOF).
async fn read_checkpoint(
    mut input: impl tokio::io::AsyncRead + Unpin,
) -> Result<Checkpoint, RuntimeError> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| RuntimeError::Checkpoint(e.to_string()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(RuntimeError::Checkpoint("stdin was empty".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Checkpoint(e.to_string()))
}

/// Connects the skills of every Expert in the closure, in parallel, and builds each Expert's
/// tool set: its MCP skills (file order), its interactive skills, then its delegates. A tool
/// name offered twice to one Expert is refused before anything runs.
async fn connect_closure(
    spec: &RuntimeSpec,
    roster: &SkillRoster,
) -> Result<HashMap<String, ToolSet>, RuntimeError> {
    let connected = futures::future::join_all(
        spec.experts
            .values()
            .map(|expert| skills::connect_skills(spec, expert, roster)),
    )
    .await;
    let mut tools = HashMap::new();
    for (expert, set) in spec.experts.values().zip(connected) {
        let mut set = set?;
        for skill in expert.skills.values() {
            if let crate::config::Skill::Interactive(interactive) = skill {
                set.add_interactive(interactive)?;
            }
        }
        for delegate in expert.delegates.iter().filter_map(|k| spec.experts.get(k)) {
            set.add_delegate(delegate)?;
        }
        tools.insert(expert.key.clone(), set);
    }
    Ok(tools)
}

/// Token budget of `--reasoning-budget` (§7): minimal 1024, low 2048, medium 5000, high 10000.
pub(crate) fn reasoning_tokens(budget: Option<&str>) -> Result<Option<u64>, RuntimeError> {
    let Some(budget) = budget else {
        return Ok(None);
    };
    let parsed = ReasoningBudget::parse(budget)
        .ok_or_else(|| RuntimeError::ReasoningBudget(budget.to_string()))?;
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
    async fn the_checkpoint_on_stdin_is_read_whole_and_empty_input_is_refused() {
        let checkpoint = serde_json::json!({
            "id": "c1", "jobId": "j", "runId": "r", "status": "completed", "stepNumber": 2,
            "messages": [], "expert": {"key": "main", "name": "main", "version": "1.0.0"},
            "usage": {"inputTokens": 1, "outputTokens": 2, "reasoningTokens": 0,
                      "totalTokens": 3, "cachedInputTokens": 0}
        });
        let text = checkpoint.to_string();
        let read = read_checkpoint(text.as_bytes()).await.expect("parsed");
        assert_eq!(read.id, "c1");
        assert_eq!(read.step_number, 2);
        let error = read_checkpoint(&b"  \n"[..]).await.expect_err("empty");
        assert!(error.to_string().contains("stdin was empty"), "{error}");
        let error = read_checkpoint(&b"{not json"[..]).await.expect_err("bad");
        assert!(matches!(error, RuntimeError::Checkpoint(_)), "{error}");
    }
}
