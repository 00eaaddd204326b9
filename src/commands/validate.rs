//! `perstack-sandbox validate`: check perstack.toml (and the mock script it names) and list
//! what it defines.

use std::fmt::Write as _;

use crate::cli::ValidateArgs;
use crate::config::{DEFAULT_PROVIDER, LoadedConfig, Skill};
use crate::exit::Exit;
use crate::llm::mock::{MockScript, MockScriptError};

use super::LoadError;

/// Why the config is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// perstack.toml is missing, unreadable or invalid (every problem of the file).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The mock script it names is.
    #[error(transparent)]
    MockScript(#[from] MockScriptError),
}

impl From<&ValidateError> for Exit {
    fn from(_: &ValidateError) -> Exit {
        Exit::Usage
    }
}

/// Runs the command: prints the listing.
pub fn run(args: ValidateArgs) -> Result<Exit, ValidateError> {
    let (cwd, loaded) = super::load_config(args.config.as_deref())?;
    if let Some(script) = loaded.mock_script_path() {
        MockScript::load(&script)?;
    }
    print!("{}", describe(&loaded, &cwd));
    Ok(Exit::Success)
}

/// The listing `validate` prints: every Expert with its delegates and skills. Paths are shown
/// relative to `cwd` when they are below it.
pub fn describe(loaded: &LoadedConfig, cwd: &std::path::Path) -> String {
    let config = &loaded.config;
    let shown = loaded
        .path
        .strip_prefix(cwd)
        .unwrap_or(&loaded.path)
        .display()
        .to_string();
    let mut out = String::new();
    let n = config.experts.len();
    let _ = writeln!(
        out,
        "{shown} is valid: {n} Expert{}, provider {}",
        if n == 1 { "" } else { "s" },
        config
            .provider
            .as_ref()
            .map_or(DEFAULT_PROVIDER, |p| p.provider_name)
    );
    for expert in config.experts.values() {
        let _ = writeln!(out, "\n{} {}", expert.key, expert.version);
        if let Some(description) = &expert.description {
            let _ = writeln!(out, "  {}", description.lines().next().unwrap_or_default());
        }
        if expert.delegates.is_empty() {
            let _ = writeln!(out, "  delegates: none");
        } else {
            let _ = writeln!(out, "  delegates: {}", expert.delegates.join(", "));
        }
        let _ = writeln!(out, "  skills:");
        let width = expert
            .skills
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0);
        for skill in expert.skills.values() {
            let detail = match skill {
                Skill::McpStdio(s) if s.is_base() => {
                    "workspace tools (perstack-sandbox base-skill container)".to_string()
                }
                Skill::McpStdio(s) => {
                    let mut d = format!("stdio: {} {}", s.command, s.argv().join(" "));
                    if !s.required_env.is_empty() {
                        let _ = write!(d, " · env {}", s.required_env.join(", "));
                    }
                    if !s.pick.is_empty() {
                        let _ = write!(d, " · pick {}", s.pick.join(", "));
                    }
                    if !s.omit.is_empty() {
                        let _ = write!(d, " · omit {}", s.omit.join(", "));
                    }
                    if !s.allowed_domains.is_empty() {
                        let _ = write!(d, " · domains {}", s.allowed_domains.join(", "));
                    }
                    d
                }
                Skill::McpSse(s) => format!("sse: {}", s.endpoint),
                Skill::Interactive(s) => format!(
                    "interactive: {}",
                    s.tools.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            let _ = writeln!(out, "    {:width$}  {detail}", skill.name());
        }
    }
    out
}
