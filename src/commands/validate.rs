//! `perstack-sandbox validate`: check perstack.toml (the mock script and the skills' files it
//! names too) and list what it defines.

use std::fmt::Write as _;

use crate::cli::ValidateArgs;
use crate::config::{Config, DEFAULT_PROVIDER, Expert, LoadedConfig, Skill};
use crate::contract::paths::WORKSPACE_MOUNT;
use crate::exit::Exit;
use crate::llm::mock::{MockScript, MockScriptError};
use crate::sandbox::preflight::{Problems, file_problem};
use crate::sandbox::skill_files;

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
    /// Files its skills name beside it are missing, outside its folder or too big.
    #[error(transparent)]
    SkillFiles(Problems),
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
    let experts: Vec<String> = loaded.config.experts.keys().cloned().collect();
    if let Err(problems) = skill_files::collect_all(&loaded, &experts) {
        let problems = problems
            .into_iter()
            .map(|p| file_problem(&loaded, p))
            .collect();
        return Err(ValidateError::SkillFiles(Problems(problems)));
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
        describe_expert(&mut out, config, expert);
    }
    for warning in missing_workspace_grants(loaded) {
        let _ = writeln!(out, "\nwarning: {warning}");
    }
    out
}

/// An Expert's lines: its key and version, description, delegates, and one line per skill.
fn describe_expert(out: &mut String, config: &Config, expert: &Expert) {
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
        let detail = skill_detail(config, skill);
        let _ = writeln!(out, "    {:width$}  {detail}", skill.name());
    }
}

/// What a skill is, in one line: how it runs and what it is granted.
fn skill_detail(config: &Config, skill: &Skill) -> String {
    match skill {
        Skill::McpStdio(s) if s.is_base() => {
            "workspace tools (perstack-sandbox base-skill container)".to_string()
        }
        Skill::McpStdio(s) => {
            let mut d = format!("stdio: {} {}", s.command, s.argv().join(" "));
            for (what, values) in [
                ("env", &s.required_env),
                ("pick", &s.pick),
                ("omit", &s.omit),
                ("domains", &s.allowed_domains),
            ] {
                if !values.is_empty() {
                    let _ = write!(d, " · {what} {}", values.join(", "));
                }
            }
            if let Some(grant) = config.sandbox.skills.get(&s.name).and_then(|x| x.workspace) {
                let _ = write!(d, " · workspace {}", grant.as_str());
            }
            d
        }
        Skill::McpSse(s) => format!("sse: {}", s.endpoint),
        Skill::Interactive(s) => format!(
            "interactive: {}",
            s.tools.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Skills whose arguments name `/workspace` (the path base-skill and granted skills see the
/// workspace at) without a `workspace` grant: they would find no such folder.
fn missing_workspace_grants(loaded: &LoadedConfig) -> Vec<String> {
    let config = &loaded.config;
    let mut warnings = Vec::new();
    for expert in config.experts.values() {
        for skill in expert.skills.values() {
            let Skill::McpStdio(s) = skill else { continue };
            let granted = config.sandbox.skills.get(&s.name).and_then(|x| x.workspace);
            let names_it = s.argv().iter().any(|arg| {
                arg.split(['=', ':']).any(|part| {
                    part == WORKSPACE_MOUNT || part.starts_with(&format!("{WORKSPACE_MOUNT}/"))
                })
            });
            if s.is_base() || granted.is_some() || !names_it {
                continue;
            }
            let place = loaded
                .location(&crate::config::dotted_path(&[
                    "experts",
                    &expert.key,
                    "skills",
                    &s.name,
                    "args",
                ]))
                .map(|l| format!("{l}: "))
                .unwrap_or_default();
            warnings.push(format!(
                "{place}skill `{}` of `{}` names {WORKSPACE_MOUNT} in its args, but it has no \
                 workspace grant, so it will not find it; add `[sandbox.skills.\"{}\"] workspace \
                 = \"read-only\"` (or \"read-write\") to perstack.toml",
                s.name, expert.key, s.name
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skill_naming_the_workspace_without_a_grant_is_warned_about() {
        let text = r#"
[experts."a"]
instruction = "x"
[experts."a".skills."db"]
type = "mcpStdioSkill"
command = "uvx"
args = ["mcp-server-sqlite", "--db-path", "/workspace/x.db"]
[experts."a".skills."git"]
type = "mcpStdioSkill"
command = "uvx"
args = ["mcp-server-git", "--repository=/workspace"]
[sandbox.skills."git"]
workspace = "read-only"
"#;
        let loaded =
            crate::config::load_str(std::path::Path::new("/p/perstack.toml"), text).unwrap();
        let listing = describe(&loaded, std::path::Path::new("/p"));
        assert!(listing.contains("· workspace read-only"), "{listing}");
        let warnings: Vec<&str> = listing
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .collect();
        assert_eq!(warnings.len(), 1, "{listing}");
        assert!(
            warnings[0].contains("/p/perstack.toml:7:")
                && warnings[0].contains("skill `db` of `a` names /workspace")
                && warnings[0].contains("[sandbox.skills.\"db\"] workspace"),
            "{listing}"
        );
    }
}
