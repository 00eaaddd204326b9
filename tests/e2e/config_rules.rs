//! Every perstack.toml rule, pinned by a fixture.
//!
//! Each `tests/fixtures/config/invalid/<rule>.toml` starts with comment lines
//! `# expect: <line>:<col> <dotted.path>: <message>`, and loading it must produce exactly those
//! diagnostics: a missing, extra or moved error fails. Each `valid/*.toml` must load.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use perstack_sandbox::test_support::internals::config::{
    self, ConfigError, McpStdioSkill, ProviderName, ReasoningBudget, ReasoningLevel, Skill,
};

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind)
}

/// The `.toml` files of a fixture folder, by name.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The `# expect:` lines of the leading comment block.
fn expected(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|line| line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

/// One rule per fixture; a fixture that disappears (or a new, unlisted one) fails the test.
const RULES: &[&str] = &[
    "allowed-domains",
    "delegates",
    "description-length",
    "expert-key",
    "expert-name",
    "expert-name-length",
    "instruction-length",
    "integers",
    "interactive-tools",
    "lazy-init",
    "many-mistakes",
    "min-runtime-version",
    "missing-instruction",
    "mock-script",
    "perstack-api-base-url",
    "pick-omit",
    "provider-base-url",
    "provider-headers",
    "provider-name",
    "provider-name-missing",
    "provider-settings-types",
    "reasoning-budget",
    "required-env",
    "runtime",
    "sandbox-ca-certificates",
    "sandbox-cpus",
    "sandbox-images",
    "sandbox-memory",
    "sandbox-package-indexes",
    "sandbox-pids",
    "sandbox-runtime",
    "sandbox-skill-files",
    "sandbox-skills",
    "sandbox-unknown-key",
    "skill-type",
    "sse-endpoint",
    "stdio-command",
    "stdio-package-or-args",
    "string-arrays",
    "syntax-error",
    "tags",
    "type-mismatch",
    "version-semver",
];

#[test]
fn every_rule_has_a_fixture() {
    let found: BTreeSet<String> = toml_files(&fixtures("invalid"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let listed: BTreeSet<String> = RULES.iter().map(|s| s.to_string()).collect();
    assert_eq!(found, listed);
}

#[test]
fn each_invalid_fixture_reports_exactly_its_expected_diagnostics() {
    let mut failures = Vec::new();
    for path in toml_files(&fixtures("invalid")) {
        let text = std::fs::read_to_string(&path).unwrap();
        let want = expected(&text);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if want.is_empty() {
            failures.push(format!("{name}: no `# expect:` lines"));
            continue;
        }
        let got = match config::load(&path) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { file, diagnostics }) => {
                assert_eq!(file, path, "{name}: diagnostics name another file");
                diagnostics
                    .iter()
                    .map(|d| {
                        assert_eq!(d.file, path, "{name}: {d}");
                        format!("{}:{} {}: {}", d.line, d.col, d.path, d.message)
                    })
                    .collect()
            }
            Err(other) => vec![format!("(not a validation error) {other}")],
        };
        let mut want_sorted = want.clone();
        want_sorted.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        if want_sorted != got_sorted {
            let got_lines: Vec<String> = got.iter().map(|g| format!("# expect: {g}")).collect();
            failures.push(format!(
                "{name}:\n  expected:\n    {}\n  got:\n{}",
                want.join("\n    "),
                got_lines.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn the_error_lists_every_diagnostic_under_the_file_like_perstack() {
    let path = fixtures("invalid").join("many-mistakes.toml");
    let err = config::load(&path).unwrap_err();
    let text = err.to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{}: Validation failed:", path.display()).as_str())
    );
    let rest: Vec<&str> = lines.collect();
    assert!(rest.len() >= 5, "{text}");
    let prefix = format!("  - {}:", path.display());
    assert!(rest.iter().all(|l| l.starts_with(&prefix)), "{text}");

    // File order, so the list reads top to bottom like the file.
    let ConfigError::Invalid { diagnostics, .. } = err else {
        panic!("not a validation error");
    };
    let positions: Vec<(usize, usize)> = diagnostics.iter().map(|d| (d.line, d.col)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
}

#[test]
fn every_valid_fixture_loads() {
    let files = toml_files(&fixtures("valid"));
    assert!(!files.is_empty());
    for path in files {
        if let Err(e) = config::load(&path) {
            panic!("{e}");
        }
    }
}

fn stdio(skill: &Skill) -> &McpStdioSkill {
    match skill {
        Skill::McpStdio(s) => s,
        other => panic!("expected an mcpStdioSkill, found {other:?}"),
    }
}

#[test]
fn a_perstack_style_file_loads_with_every_setting() {
    let loaded = config::load(&fixtures("valid").join("perstack-example.toml")).unwrap();
    let c = &loaded.config;
    assert_eq!(loaded.dir(), fixtures("valid"));
    assert_eq!(c.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(
        c.reasoning_budget,
        Some(ReasoningBudget::Level(ReasoningLevel::Medium))
    );
    assert_eq!(c.runtime.as_deref(), Some("docker"));
    assert_eq!(c.max_steps, Some(50));
    assert_eq!(c.max_retries, Some(3));
    assert_eq!(c.timeout, Some(120_000));
    assert_eq!(
        c.env_path.as_deref(),
        Some(&[".env".to_string(), ".env.secrets".to_string()][..])
    );
    assert_eq!(
        c.perstack_api_base_url.as_deref(),
        Some("https://api.perstack.ai")
    );
    assert_eq!(
        c.perstack_base_skill_command.as_deref(),
        Some(&["node".to_string(), "/opt/base/index.js".to_string()][..])
    );

    let provider = c.provider.as_ref().unwrap();
    assert_eq!(provider.provider_name, ProviderName::AzureOpenai);
    let s = &provider.setting;
    assert_eq!(
        s.base_url.as_deref(),
        Some("https://my-res.openai.azure.com/openai")
    );
    assert_eq!(s.resource_name.as_deref(), Some("my-res"));
    assert_eq!(s.api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(s.use_deployment_based_urls, Some(true));
    assert_eq!(s.headers.get("X-Team").map(String::as_str), Some("agents"));
    assert_eq!(s.headers.len(), 2);

    let keys: Vec<&str> = c.experts.keys().map(String::as_str).collect();
    assert_eq!(keys, ["@acme/coordinator", "researcher", "reviewer"]);

    let coordinator = &c.experts["@acme/coordinator"];
    assert_eq!(coordinator.name, "@acme/coordinator");
    assert_eq!(coordinator.version, "2.1.0-beta.1");
    assert_eq!(coordinator.min_runtime_version.as_deref(), Some("0.0.76"));
    assert_eq!(coordinator.delegates, ["researcher", "reviewer"]);
    assert_eq!(coordinator.tags, ["coordination", "multi_agent"]);
    assert!(coordinator.instruction.starts_with("You coordinate"));
    assert_eq!(
        coordinator.description.as_deref(),
        Some("Splits a task and delegates the parts.")
    );
    let names: Vec<&str> = coordinator.skills.keys().map(String::as_str).collect();
    assert_eq!(names, ["@perstack/base", "web", "remote", "ask"]);

    let base = stdio(&coordinator.skills["@perstack/base"]);
    assert_eq!(base.pick, ["readTextFile", "attemptCompletion"]);
    assert_eq!(base.allowed_domains, ["api.github.com", "*.github.com"]);
    assert_eq!(base.argv(), ["-y", "@perstack/base"]);

    let web = stdio(&coordinator.skills["web"]);
    assert_eq!(web.command, "npx");
    assert_eq!(web.package_name.as_deref(), Some("exa-mcp-server"));
    assert_eq!(web.required_env, ["EXA_API_KEY"]);
    assert_eq!(web.omit, ["crawling"]);
    assert!(web.lazy_init);
    assert_eq!(web.rule.as_deref(), Some("Cite every source."));
    assert_eq!(web.description.as_deref(), Some("Web search"));
    assert_eq!(web.argv(), ["-y", "exa-mcp-server"]);

    let Skill::McpSse(remote) = &coordinator.skills["remote"] else {
        panic!("remote is not an SSE skill");
    };
    assert_eq!(remote.endpoint, "https://mcp.example.com/sse");
    assert_eq!(remote.pick, ["search"]);
    assert_eq!(remote.allowed_domains, ["mcp.example.com"]);

    let Skill::Interactive(ask) = &coordinator.skills["ask"] else {
        panic!("ask is not an interactive skill");
    };
    let tools: Vec<&str> = ask.tools.keys().map(String::as_str).collect();
    assert_eq!(tools, ["confirm", "choose"]);
    let confirm = &ask.tools["confirm"];
    assert_eq!(
        confirm.description.as_deref(),
        Some("Ask the user to confirm")
    );
    assert_eq!(confirm.input_json_schema["type"], "object");
    assert_eq!(
        confirm.input_json_schema["properties"]["question"]["type"],
        "string"
    );
    assert_eq!(ask.tools["choose"].description, None);

    // No `skills` table: the base skill alone, as Perstack defines it.
    let researcher = &c.experts["researcher"];
    assert_eq!(researcher.version, "1.0.0");
    let names: Vec<&str> = researcher.skills.keys().map(String::as_str).collect();
    assert_eq!(names, ["@perstack/base"]);
    let base = stdio(&researcher.skills["@perstack/base"]);
    assert_eq!(base.command, "npx");
    assert_eq!(base.args, ["-y", "@perstack/base"]);

    // A `skills` table without the base skill gets it added first.
    let reviewer = &c.experts["reviewer"];
    let names: Vec<&str> = reviewer.skills.keys().map(String::as_str).collect();
    assert_eq!(names, ["@perstack/base", "lint"]);
    let lint = stdio(&reviewer.skills["lint"]);
    assert_eq!(lint.command, "uvx");
    assert_eq!(lint.args, ["ruff-mcp", "--stdio"]);
    assert_eq!(lint.argv(), ["ruff-mcp", "--stdio"]);

    let sandbox = &c.sandbox;
    assert_eq!(
        sandbox.workspace_image.as_deref(),
        Some("debian:bookworm-slim")
    );
    assert_eq!(sandbox.node_image.as_deref(), Some("node:22-bookworm-slim"));
    assert_eq!(sandbox.python_image.as_deref(), Some("python:3.12-slim"));
    assert_eq!(sandbox.skill_image.as_deref(), Some("debian:bookworm-slim"));
    assert_eq!(
        sandbox.ca_certificates.as_deref(),
        Some("certs/corporate-ca.pem")
    );
    assert_eq!(sandbox.runtime.as_deref(), Some("runsc"));
    assert_eq!(sandbox.memory.as_deref(), Some("1.5g"));
    assert_eq!(sandbox.cpus, Some(1.5));
    assert_eq!(sandbox.pids, Some(128));
    assert_eq!(
        sandbox.skills["lint"].image.as_deref(),
        Some("ghcr.io/acme/ruff-mcp:1")
    );

    assert_eq!(
        c.delegation_closure("@acme/coordinator"),
        ["@acme/coordinator", "researcher", "reviewer"]
    );

    let endpoint = config::dotted_path(&[
        "experts",
        "@acme/coordinator",
        "skills",
        "remote",
        "endpoint",
    ]);
    let location = loaded.location(&endpoint).unwrap();
    assert_eq!(location.file, loaded.path);
    let line = std::fs::read_to_string(&loaded.path)
        .unwrap()
        .lines()
        .nth(location.line - 1)
        .unwrap()
        .to_string();
    assert!(line.starts_with("endpoint = "), "{line}");
    assert_eq!(location.col, "endpoint = ".len() + 1);
}

#[test]
fn every_provider_and_its_settings_load() {
    let loaded = config::load(&fixtures("valid").join("providers.toml")).unwrap();
    let provider = loaded.config.provider.unwrap();
    assert_eq!(provider.provider_name, ProviderName::Ollama);
    assert_eq!(
        provider.setting.base_url.as_deref(),
        Some("http://localhost:11434/api")
    );

    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "anthropic",
            "baseUrl = \"https://proxy.example.com/v1\"\nheaders = { \"x-a\" = \"1\" }",
        ),
        ("google", "baseUrl = \"https://g.example.com\""),
        (
            "openai",
            "organization = \"org\"\nproject = \"proj\"\nname = \"openai-compat\"",
        ),
        ("deepseek", "baseUrl = \"https://api.deepseek.com\""),
        (
            "azure-openai",
            "resourceName = \"r\"\napiVersion = \"2024-10-21\"\nuseDeploymentBasedUrls = true",
        ),
        ("mock", "script = \"scripts/review.json\""),
    ];
    for (name, setting) in cases {
        let text =
            format!("[provider]\nproviderName = \"{name}\"\n[provider.setting]\n{setting}\n");
        let path = dir.path().join("perstack.toml");
        std::fs::write(&path, &text).unwrap();
        let loaded = config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let provider = loaded.config.provider.as_ref().unwrap();
        assert_eq!(provider.provider_name.as_str(), name);
        if name == "mock" {
            assert_eq!(
                provider.setting.script.as_deref(),
                Some("scripts/review.json")
            );
            assert_eq!(loaded.dir(), dir.path());
        }
    }
}

#[test]
fn bedrock_and_vertex_parse_but_are_refused_as_not_supported_yet() {
    let dir = tempfile::tempdir().unwrap();
    for (name, setting) in [
        ("amazon-bedrock", "region = \"eu-west-1\""),
        (
            "google-vertex",
            "project = \"p\"\nlocation = \"us-central1\"\nbaseUrl = \"https://v.example.com\"",
        ),
    ] {
        let text =
            format!("[provider]\nproviderName = \"{name}\"\n[provider.setting]\n{setting}\n");
        let path = dir.path().join("perstack.toml");
        std::fs::write(&path, &text).unwrap();
        let error = config::load(&path).expect_err(name).to_string();
        assert!(
            error.contains(&format!(
                "perstack.toml:2:16: provider.providerName: provider `{name}` is not supported yet \
                 by perstack-sandbox; use anthropic, openai, google, deepseek, ollama or azure-openai"
            )),
            "{error}"
        );
    }
}

#[test]
fn a_file_without_experts_or_provider_loads_with_defaults() {
    let loaded = config::load(&fixtures("valid").join("minimal.toml")).unwrap();
    let c = &loaded.config;
    assert_eq!(c.provider, None);
    assert_eq!(c.model, None);
    assert_eq!(c.sandbox, config::SandboxConfig::default());
    let expert = &c.experts["hello"];
    assert_eq!(expert.version, "1.0.0");
    assert_eq!(expert.description, None);
    assert!(expert.delegates.is_empty() && expert.tags.is_empty());
    assert_eq!(expert.skills.len(), 1);
}
