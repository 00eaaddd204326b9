use super::skills::base_hint;
use super::*;
use crate::config::load_str;
use crate::sandbox::images::base::SkillBase;

const CONFIG: &str = r#"
[provider]
providerName = "mock"
setting = { script = "script.toml" }

[experts.main]
instruction = "x"
delegates = ["helper"]

[experts.main.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["WEB_KEY"]

[experts.helper]
instruction = "x"

[experts.helper.skills.npm]
type = "mcpStdioSkill"
command = "npx"
packageName = "some-mcp"
requiredEnv = ["NPM_KEY"]

[experts.helper.skills.remote]
type = "mcpSseSkill"
endpoint = "https://mcp.example.com/sse"
"#;

struct Fixture {
    dir: tempfile::TempDir,
    loaded: LoadedConfig,
}

fn fixture(script: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(script) = script {
        std::fs::write(dir.path().join("script.toml"), script).expect("script");
    }
    let loaded = load_str(&dir.path().join("perstack.toml"), CONFIG).expect("valid");
    Fixture { dir, loaded }
}

fn check(
    f: &Fixture,
    expert: &str,
    provider: ProviderName,
    env: &[(&str, &str)],
    extra: &[&str],
) -> Result<Checked, Vec<String>> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    Preflight {
        config: &f.loaded,
        expert_key: expert,
        provider,
        env: &env,
        extra_env: &extra,
        workspace: f.dir.path(),
        trusted: &[],
    }
    .check()
    .map_err(|p| p.0.iter().map(|p| p.message.clone()).collect())
}

#[test]
fn a_versioned_image_brings_its_own_mock_script() {
    // No script file next to the config: `run --image` has only what the image carries.
    let f = fixture(None);
    let env = BTreeMap::from([
        ("WEB_KEY".to_string(), "w".to_string()),
        ("NPM_KEY".to_string(), "n".to_string()),
    ]);
    let mut loaded = f.loaded.clone();
    loaded.config.sandbox.node_image = Some("node:local".into());
    let preflight = Preflight {
        config: &loaded,
        expert_key: "main",
        provider: ProviderName::Mock,
        env: &env,
        extra_env: &[],
        workspace: f.dir.path(),
        trusted: &[],
    };
    assert!(preflight.check().is_err(), "the file's script is missing");
    let baked = MockScript::parse(Path::new("baked"), "[[turn]]\ntext = \"hi\"\n").expect("script");
    let checked = preflight
        .check_with_mock_script(Some(baked.clone()))
        .expect("the baked script is enough");
    assert_eq!(checked.mock_script, Some(baked));
    let problems = preflight
        .check_with_mock_script(None)
        .expect_err("an image built without a script");
    assert!(
        problems.0[0]
            .message
            .starts_with("provider `mock` needs a script, and "),
        "{problems}"
    );
}

#[test]
fn every_problem_of_the_closure_is_reported_together() {
    let f = fixture(Some("[[turn]]\ntext = \"hi\"\n"));
    let problems =
        check(&f, "main", ProviderName::Anthropic, &[], &["EXTRA"]).expect_err("problems");
    assert_eq!(
        problems,
        [
            "ANTHROPIC_API_KEY is not set; provider `anthropic` needs it (export it or add it to .env)".to_string(),
            "--env EXTRA: EXTRA is not set (export it or add it to .env)".to_string(),
            "skill `web` of expert `main` needs WEB_KEY, which is not set (export it or add it to .env)".to_string(),
            "skill `npm` of expert `helper` needs NPM_KEY, which is not set (export it or add it to .env)".to_string(),
            format!("skill `npm` runs `npx`, and no base image is configured for it; set [sandbox] nodeImage or [sandbox.skills.\"npm\"] image (there is no registry to pull a default from){}", base_hint(SkillBase::Node)),
        ]
    );
    assert!(base_hint(SkillBase::Node).contains("npm install -g"));
}

#[test]
fn delegates_skills_block_the_run_even_when_every_variable_is_set() {
    let f = fixture(Some("[[turn]]\ntext = \"hi\"\n"));
    let checked = check(
        &f,
        "main",
        ProviderName::Mock,
        &[("WEB_KEY", "w"), ("NPM_KEY", "n"), ("EXTRA", "e")],
        &["EXTRA"],
    );
    // The helper's npx skill still blocks the closure (its SSE skill does not).
    let problems = checked.expect_err("npx");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("skill `npm` runs `npx`"),
        "{problems:?}"
    );
}

#[test]
fn a_ready_run_gets_exactly_its_runtime_env_the_script_and_the_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("script.toml"), "[[turn]]\ntext = \"hi\"\n").expect("script");
    let text = "[provider]\nproviderName = \"mock\"\nsetting = { script = \"script.toml\" }\n\
                [experts.solo]\ninstruction = \"x\"\n\
                [experts.solo.skills.web]\ntype = \"mcpStdioSkill\"\ncommand = \"perstack-sandbox\"\n\
                args = [\"fixture-mcp\"]\nrequiredEnv = [\"WEB_KEY\"]\n";
    let loaded = load_str(&dir.path().join("perstack.toml"), text).expect("valid");
    let env: BTreeMap<String, String> = [
        ("WEB_KEY", "w"),
        ("EXTRA", "e"),
        ("ANTHROPIC_API_KEY", "sk"),
        ("ANTHROPIC_BASE_URL", "https://proxy.example.com/v1"),
        ("UNRELATED", "u"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let extra = ["EXTRA".to_string()];
    let check = |provider| {
        Preflight {
            config: &loaded,
            expert_key: "solo",
            provider,
            env: &env,
            extra_env: &extra,
            workspace: dir.path(),
            trusted: &[],
        }
        .check()
    };
    let mock = check(ProviderName::Mock).expect("ready");
    // No provider variable for mock; the skill's WEB_KEY is the skill's, not the runtime's.
    assert_eq!(mock.runtime_env, [("EXTRA".to_string(), "e".to_string())]);
    assert_eq!(mock.mock_script.map(|s| s.turns.len()), Some(1));
    assert_eq!(
        mock.workspace,
        std::fs::canonicalize(dir.path()).expect("canonical")
    );
    let anthropic = check(ProviderName::Anthropic).expect("ready");
    assert_eq!(
        anthropic.runtime_env,
        [
            ("ANTHROPIC_API_KEY".to_string(), "sk".to_string()),
            (
                "ANTHROPIC_BASE_URL".to_string(),
                "https://proxy.example.com/v1".to_string()
            ),
            ("EXTRA".to_string(), "e".to_string()),
        ]
    );
    assert!(anthropic.mock_script.is_none());
}
