//! The runtime role's command line: one type that the controller's plan fills in and turns into
//! the runtime container's arguments ([`RuntimeArgs::to_args`]), and that `perstack-sandbox
//! runtime` parses back (clap). What is fixed for an Expert is in its image's
//! [spec](super::spec::RuntimeSpec); this is what changes per run.

use std::path::PathBuf;

use clap::Args;

use super::paths::SPEC_PATH;
use crate::config::ProviderName;
use crate::event::InteractiveToolCallResult;

/// Arguments of the hidden `runtime` role.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RuntimeArgs {
    /// The runtime spec.
    #[arg(long, default_value = SPEC_PATH)]
    pub spec: PathBuf,
    /// Job id.
    #[arg(long)]
    pub job_id: String,
    /// Run id.
    #[arg(long)]
    pub run_id: String,
    /// Provider (default: the spec's, else anthropic).
    #[arg(long, value_parser = parse_provider)]
    pub provider: Option<ProviderName>,
    /// Model.
    #[arg(long)]
    pub model: Option<String>,
    /// Step limit.
    #[arg(long)]
    pub max_steps: Option<u32>,
    /// Retries.
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// Per-generation timeout, ms.
    #[arg(long = "timeout")]
    pub timeout_ms: Option<u64>,
    /// Reasoning budget.
    #[arg(long)]
    pub reasoning_budget: Option<String>,
    /// Continue from the checkpoint JSON the controller writes to stdin (then closes it),
    /// instead of starting a fresh run.
    #[arg(long)]
    pub checkpoint_stdin: bool,
    /// Resume a stopped run with this answer to its pending tool call:
    /// `{"toolCallId","toolName","skillName","text"}`. Needs `--checkpoint-stdin`.
    #[arg(
        long,
        short = 'i',
        value_name = "JSON",
        requires = "checkpoint_stdin",
        value_parser = parse_answer
    )]
    pub interactive_tool_call_result: Option<InteractiveToolCallResult>,
    /// The one Expert this image runs: a versioned image's ENTRYPOINT sets it, and any other
    /// Expert (a delegate of its closure included) is refused.
    #[arg(long, value_name = "KEY")]
    pub only_expert: Option<String>,
    /// With the `mock` provider and `--checkpoint-stdin`: this delegate already played N turns
    /// of the script in the job, which it skips (repeatable).
    #[arg(long, value_name = "EXPERT=N", value_parser = parse_played)]
    pub mock_played: Vec<(String, usize)>,
    /// List the tools of every Expert's MCP skills (one `toolDefinitions` event each, after
    /// `pick`/`omit`) and exit, with no model asked: `install`'s listing run.
    #[arg(long)]
    pub list_tools: bool,
    /// The Expert.
    #[arg(value_name = "EXPERT")]
    pub expert_key: String,
    /// The query.
    pub query: String,
}

fn parse_provider(name: &str) -> Result<ProviderName, String> {
    ProviderName::parse(name).ok_or_else(|| format!("unknown provider `{name}`"))
}

fn parse_played(value: &str) -> Result<(String, usize), String> {
    let (expert, turns) = value
        .rsplit_once('=')
        .ok_or_else(|| format!("`{value}` is not EXPERT=N"))?;
    let turns = turns
        .parse()
        .map_err(|_| format!("`{turns}` is not a number of turns"))?;
    Ok((expert.to_string(), turns))
}

fn parse_answer(json: &str) -> Result<InteractiveToolCallResult, serde_json::Error> {
    serde_json::from_str(json)
}

impl RuntimeArgs {
    /// The command line that parses back to `self`: options in a fixed order, only those that
    /// are set (`--spec` only when it is not the default), then `--`, the Expert and the query,
    /// so a query that starts with `-` stays the query.
    pub fn to_args(&self) -> Result<Vec<String>, serde_json::Error> {
        let mut args = Vec::new();
        let mut option = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                args.extend([format!("--{name}"), value]);
            }
        };
        let spec = self.spec.display().to_string();
        option("spec", (spec != SPEC_PATH).then_some(spec));
        option("job-id", Some(self.job_id.clone()));
        option("run-id", Some(self.run_id.clone()));
        option("provider", self.provider.map(|p| p.as_str().to_string()));
        option("model", self.model.clone());
        option("max-steps", self.max_steps.map(|n| n.to_string()));
        option("max-retries", self.max_retries.map(|n| n.to_string()));
        option("timeout", self.timeout_ms.map(|ms| ms.to_string()));
        option("reasoning-budget", self.reasoning_budget.clone());
        if self.checkpoint_stdin {
            args.push("--checkpoint-stdin".to_string());
        }
        if let Some(answer) = &self.interactive_tool_call_result {
            args.extend([
                "--interactive-tool-call-result".to_string(),
                serde_json::to_string(answer)?,
            ]);
        }
        if let Some(only) = &self.only_expert {
            args.extend(["--only-expert".to_string(), only.clone()]);
        }
        for (expert, turns) in &self.mock_played {
            args.extend(["--mock-played".to_string(), format!("{expert}={turns}")]);
        }
        if self.list_tools {
            args.push("--list-tools".to_string());
        }
        args.extend([
            "--".to_string(),
            self.expert_key.clone(),
            self.query.clone(),
        ]);
        Ok(args)
    }
}

/// Parses the role's arguments (what follows `perstack-sandbox runtime`) as the role does.
#[cfg(test)]
pub(crate) fn parse(args: &[String]) -> Result<RuntimeArgs, clap::Error> {
    /// The role's command line on its own.
    #[derive(Debug, clap::Parser)]
    struct Role {
        #[command(flatten)]
        args: RuntimeArgs,
    }
    let argv = std::iter::once("runtime".to_string()).chain(args.iter().cloned());
    <Role as clap::Parser>::try_parse_from(argv).map(|role| role.args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> RuntimeArgs {
        RuntimeArgs {
            spec: PathBuf::from(SPEC_PATH),
            job_id: "job1".into(),
            run_id: "run1".into(),
            provider: None,
            model: None,
            max_steps: None,
            max_retries: None,
            timeout_ms: None,
            reasoning_budget: None,
            checkpoint_stdin: false,
            interactive_tool_call_result: None,
            only_expert: None,
            mock_played: Vec::new(),
            list_tools: false,
            expert_key: "main".into(),
            query: "hello".into(),
        }
    }

    #[test]
    fn every_field_round_trips_through_the_command_line() {
        let full = RuntimeArgs {
            spec: PathBuf::from("/elsewhere/runtime.json"),
            provider: Some(ProviderName::AzureOpenai),
            model: Some("gpt-x".into()),
            max_steps: Some(7),
            max_retries: Some(0),
            timeout_ms: Some(90_000),
            reasoning_budget: Some("low".into()),
            checkpoint_stdin: true,
            interactive_tool_call_result: Some(InteractiveToolCallResult {
                tool_call_id: "call-1".into(),
                tool_name: "askUser".into(),
                skill_name: "ask".into(),
                text: "a \"quoted\" answer\nwith a newline".into(),
            }),
            only_expert: Some("main".into()),
            mock_played: vec![("helper".into(), 2), ("@scope/a=b".into(), 0)],
            list_tools: true,
            query: "--looks like a flag".into(),
            ..minimal()
        };
        for args in [minimal(), full] {
            let line = args.to_args().expect("args");
            assert_eq!(parse(&line).expect("parses"), args, "{line:?}");
        }
    }

    #[test]
    fn only_what_is_set_is_written_and_the_default_spec_is_left_out() {
        let args = RuntimeArgs {
            provider: Some(ProviderName::Mock),
            max_steps: Some(3),
            ..minimal()
        };
        assert_eq!(
            args.to_args().expect("args"),
            [
                "--job-id",
                "job1",
                "--run-id",
                "run1",
                "--provider",
                "mock",
                "--max-steps",
                "3",
                "--",
                "main",
                "hello"
            ]
        );
    }

    #[test]
    fn bad_values_are_refused_when_parsed() {
        let with = |extra: &[&str]| {
            let mut line: Vec<String> = ["--job-id", "j", "--run-id", "r"]
                .iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect();
            line.extend(["main".to_string(), "q".to_string()]);
            parse(&line)
        };
        let unknown = with(&["--provider", "nope"]).expect_err("unknown provider");
        assert!(
            unknown.to_string().contains("unknown provider `nope`"),
            "{unknown}"
        );
        assert!(with(&["--checkpoint-stdin", "-i", "{not json"]).is_err());
        // An answer continues a checkpoint: without one it is refused.
        let answer = r#"{"toolCallId":"c","toolName":"t","text":"x"}"#;
        assert!(with(&["-i", answer]).is_err());
        assert!(with(&["--checkpoint-stdin", "-i", answer]).is_ok());
    }
}
