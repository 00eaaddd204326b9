//! `perstack-sandbox init`: a commented perstack.toml for a first Expert in the current folder,
//! a `.env.example` naming each variable it needs, and the command to run next. Asks on a
//! terminal; takes every answer from a flag too, and the defaults when stdin is not a terminal.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use crate::cli::InitArgs;
use crate::config::ProviderName;
use crate::exit::Exit;

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The current folder is unreadable.
    #[error("cannot read the current folder: {0}")]
    CurrentDir(#[source] std::io::Error),
    /// perstack.toml is there already.
    #[error("{} exists\n  hint: edit it, or pass --force to replace it", .0.display())]
    Exists(PathBuf),
    /// A name Perstack does not accept.
    #[error(
        "`{0}` is not a valid Expert name\n  hint: lower-case letters, digits, `-` and `_`, starting with a letter or digit"
    )]
    BadName(String),
    /// An unknown provider.
    #[error("unknown provider `{0}`\n  hint: one of {list}", list = providers())]
    BadProvider(String),
    /// A file could not be written, or a question not read.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<&InitError> for Exit {
    fn from(error: &InitError) -> Exit {
        match error {
            InitError::CurrentDir(_) | InitError::Io { .. } => Exit::RunFailed,
            _ => Exit::Usage,
        }
    }
}

/// The answers: one per question.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answers {
    /// The Expert's key.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The provider.
    pub provider: ProviderName,
    /// A delegate Expert to add, by name.
    pub delegate: Option<String>,
    /// A PyPI MCP server (`uvx`).
    pub pypi: Option<String>,
    /// An npm MCP server (`npx`).
    pub npm: Option<String>,
    /// An interactive question tool.
    pub ask_user: bool,
}

/// Runs the command.
pub fn run(args: InitArgs) -> Result<Exit, InitError> {
    let dir = std::env::current_dir().map_err(InitError::CurrentDir)?;
    let target = dir.join("perstack.toml");
    if target.exists() && !args.force {
        return Err(InitError::Exists(target));
    }
    let interactive = std::io::stdin().is_terminal() && !args.yes;
    let answers = answers(&args, interactive)?;
    let files = files(&answers);
    for (name, text) in &files {
        let path = dir.join(name);
        if *name != "perstack.toml" && path.exists() && !args.force {
            println!("kept {name} (exists)");
            continue;
        }
        std::fs::write(&path, text).map_err(|source| InitError::Io { path, source })?;
        println!("wrote {name}");
    }
    print!("{}", next_steps(&answers));
    Ok(Exit::Success)
}

/// The answers from the flags, asking for the rest on a terminal.
fn answers(args: &InitArgs, interactive: bool) -> Result<Answers, InitError> {
    let ask = |question: &str, default: &str| -> Result<String, InitError> {
        if !interactive {
            return Ok(default.to_string());
        }
        print!("{question} [{default}]: ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|source| InitError::Io {
                path: PathBuf::from("stdin"),
                source,
            })?;
        let line = line.trim();
        Ok(if line.is_empty() { default } else { line }.to_string())
    };
    let flag_or = |flag: &Option<String>, question: &str, default: &str| match flag {
        Some(value) => Ok(value.clone()),
        None => ask(question, default),
    };
    let name = flag_or(&args.name, "Expert name", "my-expert")?;
    check_name(&name)?;
    let description = flag_or(
        &args.description,
        "What does it do",
        "Answers questions and works with files in this folder.",
    )?;
    let provider_text = flag_or(&args.provider, "Provider", "anthropic")?;
    let provider = ProviderName::parse(&provider_text)
        .filter(|p| p.info().is_supported())
        .ok_or(InitError::BadProvider(provider_text))?;
    let optional = |flag: &Option<String>, question: &str| -> Result<Option<String>, InitError> {
        let value = flag_or(flag, question, "none")?;
        Ok((value != "none" && !value.is_empty()).then_some(value))
    };
    let delegate = optional(&args.delegate, "A delegate Expert to add (name, or none)")?;
    if let Some(delegate) = &delegate {
        check_name(delegate)?;
    }
    let pypi = optional(&args.pypi, "An MCP server from PyPI (package, or none)")?;
    let npm = optional(&args.npm, "An MCP server from npm (package, or none)")?;
    let ask_user = args.ask_user
        || (interactive && ask("Can it ask you questions mid-run (y/n)", "n")?.starts_with('y'));
    Ok(Answers {
        name,
        description,
        provider,
        delegate,
        pypi,
        npm,
        ask_user,
    })
}

fn check_name(name: &str) -> Result<(), InitError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(InitError::BadName(name.to_string()))
    }
}

fn providers() -> String {
    ProviderName::ALL
        .into_iter()
        .filter(|p| p.info().is_supported())
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files `init` writes, by name: perstack.toml, .env.example, and a mock script for `mock`.
pub(crate) fn files(a: &Answers) -> Vec<(&'static str, String)> {
    let mut files = vec![
        ("perstack.toml", config(a)),
        (".env.example", env_example(a)),
    ];
    if a.provider == ProviderName::Mock {
        files.push(("mock-script.toml", mock_script(a)));
    }
    files
}

fn config(a: &Answers) -> String {
    let mut t = String::new();
    header(&mut t, a);
    expert(&mut t, a);
    if let Some(package) = &a.pypi {
        package_skill(
            &mut t,
            a,
            package,
            "PyPI",
            "uvx",
            "# Hosts it may reach, and variables it gets, if it needs any:\n",
        );
    }
    if let Some(package) = &a.npm {
        package_skill(&mut t, a, package, "npm", "npx", "");
    }
    if a.ask_user {
        ask_user(&mut t, a);
    }
    if let Some(delegate) = &a.delegate {
        delegate_expert(&mut t, a, delegate);
    }
    t
}

/// The file's opening comment, the provider and the step limit.
fn header(t: &mut String, a: &Answers) {
    t.push_str("# perstack.toml: the Experts this folder runs with `perstack-sandbox run <expert> \"<query>\"`.\n");
    t.push_str(
        "# Each Expert runs in containers: the agent loop in one, each skill in its own, and the\n",
    );
    t.push_str("# workspace tools (`@perstack/base`, implicit) with this folder mounted and nothing else.\n\n");
    t.push_str("[provider]\n");
    let _ = writeln!(t, "providerName = \"{}\"", a.provider.as_str());
    if a.provider == ProviderName::Mock {
        t.push_str("# The scripted provider: replays mock-script.toml, no key, no network (docs/mock-provider.md).\n");
        t.push_str("setting = { script = \"mock-script.toml\" }\n");
    }
    t.push_str("\n# Stop a run after this many steps.\nmaxSteps = 50\n\n");
}

/// The Expert's table: its version, description, instruction and delegates.
fn expert(t: &mut String, a: &Answers) {
    let _ = writeln!(t, "[experts.{}]", toml_key(&a.name));
    t.push_str("version = \"1.0.0\"\n");
    let _ = writeln!(
        t,
        "# What it does: delegating Experts and people choosing one read this.\ndescription = {}",
        toml_string(&a.description)
    );
    t.push_str("# How it works: the system prompt.\n");
    let _ = writeln!(
        t,
        "instruction = \"\"\"\n{}\nWork step by step and say what you did when you finish.\n\"\"\"",
        a.description
    );
    if let Some(delegate) = &a.delegate {
        let _ = writeln!(
            t,
            "# Experts it can hand work to, each called as a tool with a query.\ndelegates = [{}]",
            toml_string(delegate)
        );
    }
}

/// A skill installed from `registry` when its image is built, run by `command` (`uvx`, `npx`);
/// `more` comments its settings first.
fn package_skill(
    t: &mut String,
    a: &Answers,
    package: &str,
    registry: &str,
    command: &str,
    more: &str,
) {
    let _ = writeln!(
        t,
        "\n# An MCP server from {registry}, installed at build time into its own image ({command}).\n[experts.{}.skills.{}]",
        toml_key(&a.name),
        toml_key(&skill_name(package))
    );
    let _ = writeln!(
        t,
        "type = \"mcpStdioSkill\"\ncommand = \"{command}\"\npackageName = {}",
        toml_string(package)
    );
    t.push_str(more);
    t.push_str("# allowedDomains = [\"api.example.com\"]\n# requiredEnv = [\"EXAMPLE_API_KEY\"]\n");
}

/// An interactive skill through which the Expert asks the user.
fn ask_user(t: &mut String, a: &Answers) {
    let _ = writeln!(
        t,
        "\n# Questions for you: the run stops (exit 4) until you answer with\n# `perstack-sandbox run --continue -i {} \"<answer>\"`.\n[experts.{}.skills.user]",
        a.name,
        toml_key(&a.name)
    );
    t.push_str("type = \"interactiveSkill\"\ndescription = \"Questions for the user.\"\n\n");
    let _ = writeln!(
        t,
        "[experts.{}.skills.user.tools.askUser]",
        toml_key(&a.name)
    );
    t.push_str("description = \"Ask the user a question and wait for the answer.\"\n");
    t.push_str("inputJsonSchema = '{\"type\":\"object\",\"properties\":{\"question\":{\"type\":\"string\"}},\"required\":[\"question\"]}'\n");
}

/// The delegate, an Expert of its own.
fn delegate_expert(t: &mut String, a: &Answers, delegate: &str) {
    let _ = writeln!(
        t,
        "\n# The delegate: an Expert of its own, called by {}.\n[experts.{}]",
        a.name,
        toml_key(delegate)
    );
    t.push_str("version = \"1.0.0\"\n");
    let _ = writeln!(
        t,
        "description = {}",
        toml_string(&format!("Helps {} with part of its work.", a.name))
    );
    t.push_str(
        "instruction = \"Do the part of the work you are asked, then report what you did.\"\n",
    );
}

fn env_example(a: &Answers) -> String {
    let info = a.provider.info();
    let mut t = String::from(
        "# Copy to .env and fill in. perstack-sandbox reads .env and .env.local; only the\n# provider's container gets its key.\n",
    );
    if info.key_vars.is_empty() {
        let _ = writeln!(t, "# The {} provider needs no key.", a.provider.as_str());
    }
    for var in info.key_vars {
        let _ = writeln!(t, "{var}=");
    }
    for var in info.optional_var_names() {
        let _ = writeln!(t, "# {var}=");
    }
    t
}

fn mock_script(a: &Answers) -> String {
    format!(
        "# The mock provider's replies, one [[turn]] each (docs/mock-provider.md).\n[[turn]]\n[[turn.toolCalls]]\nname = \"writeTextFile\"\nargs = {{ path = \"hello.md\", text = \"Hello from {}!\\n\" }}\n\n[[turn]]\ntext = \"I wrote hello.md.\"\n",
        a.name
    )
}

fn next_steps(a: &Answers) -> String {
    let mut t = String::from("\nNext:\n");
    if !a.provider.info().key_vars.is_empty() {
        t.push_str("  cp .env.example .env    # and fill in the key\n");
    }
    t.push_str("  perstack-sandbox validate\n");
    let _ = writeln!(t, "  perstack-sandbox run {} \"Say hello\"", a.name);
    t
}

/// A skill's name from its package: the last path segment, without a version or scope.
fn skill_name(package: &str) -> String {
    let base = package.rsplit('/').next().unwrap_or(package);
    let base = base.split(['@', '=', '<', '>', '[']).next().unwrap_or(base);
    if base.is_empty() {
        "mcp".to_string()
    } else {
        base.to_string()
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn toml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_string()
    } else {
        toml_string(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(provider: ProviderName) -> Answers {
        Answers {
            name: "my-expert".into(),
            description: "Plans \"workouts\".".into(),
            provider,
            delegate: None,
            pypi: None,
            npm: None,
            ask_user: false,
        }
    }

    #[test]
    fn validate_passes_on_everything_init_writes() {
        let full = Answers {
            delegate: Some("helper".into()),
            pypi: Some("mcp-server-time".into()),
            npm: Some("@modelcontextprotocol/server-everything".into()),
            ask_user: true,
            ..answers(ProviderName::Anthropic)
        };
        let combos = [
            answers(ProviderName::Anthropic),
            answers(ProviderName::Mock),
            answers(ProviderName::Openai),
            full.clone(),
            Answers {
                provider: ProviderName::Mock,
                ..full
            },
            Answers {
                ask_user: true,
                name: "coach_v2".into(),
                ..answers(ProviderName::Google)
            },
        ];
        for a in combos {
            let dir = tempfile::tempdir().expect("tempdir");
            for (name, text) in files(&a) {
                std::fs::write(dir.path().join(name), text).expect("write");
            }
            let path = dir.path().join("perstack.toml");
            let loaded = crate::config::load(&path).unwrap_or_else(|e| panic!("{a:?}: {e}"));
            assert!(loaded.config.experts.contains_key(&a.name), "{a:?}");
            if let Some(script) = loaded.mock_script_path() {
                crate::llm::mock::MockScript::load(&script).expect("script");
            }
            let env = std::fs::read_to_string(dir.path().join(".env.example")).expect("env");
            for var in a.provider.info().key_vars {
                assert!(env.contains(&format!("{var}=")), "{env}");
            }
        }
    }

    #[test]
    fn the_defaults_without_a_terminal_and_bad_answers() {
        let args = |extra: &[&str]| {
            let argv = ["perstack-sandbox", "init"].iter().chain(extra);
            use clap::Parser;
            match crate::cli::Cli::try_parse_from(argv)
                .expect("parses")
                .command
            {
                crate::cli::Command::Init(args) => args,
                other => panic!("{other:?}"),
            }
        };
        let got = super::answers(&args(&[]), false).expect("defaults");
        assert_eq!(got.name, "my-expert");
        assert_eq!(got.provider, ProviderName::Anthropic);
        assert_eq!(
            (got.delegate, got.pypi, got.npm, got.ask_user),
            (None, None, None, false)
        );
        let got = super::answers(
            &args(&[
                "--name",
                "coach",
                "--provider",
                "mock",
                "--ask-user",
                "--npm",
                "@scope/srv@1.2",
            ]),
            false,
        )
        .expect("flags");
        assert_eq!(
            (got.name.as_str(), got.provider, got.ask_user),
            ("coach", ProviderName::Mock, true)
        );
        assert_eq!(skill_name("@scope/srv@1.2"), "srv");
        assert!(matches!(
            super::answers(&args(&["--name", "coach.v2"]), false),
            Err(InitError::BadName(_))
        ));
        assert!(matches!(
            super::answers(&args(&["--name", "Bad Name"]), false),
            Err(InitError::BadName(_))
        ));
        assert!(matches!(
            super::answers(&args(&["--provider", "nope"]), false),
            Err(InitError::BadProvider(_))
        ));
    }
}
