//! Resolution against the fake Registry of `test_support`.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Value, json};

use super::cache::CACHE_DIR_VAR;
use super::client::{API_KEY_VAR, BASE_URL_VAR, TEST_REGISTRY_VAR};
use super::definition::RegistryExpert;
use super::*;
use crate::config::{Config, Skill, load_str};
use crate::test_support::fake_registry::{FakeRegistry, published};

fn skills() -> Value {
    json!({
        "@perstack/base": {"type": "mcpStdioSkill", "description": "base", "command": "npx", "packageName": "@perstack/base"},
        "search": {"type": "mcpStdioSkill", "description": "search", "command": "uvx", "packageName": "mcp-search", "requiredEnv": ["SEARCH_KEY"], "allowedDomains": ["api.search.example"]}
    })
}

fn registry() -> FakeRegistry {
    FakeRegistry::start(
        vec![
            published("@acme/reviewer", "1.2.0", skills(), &["@acme/helper"]),
            published("@acme/helper", "2.0.0", skills(), &["leaf@1.0.0", "local"]),
            published("@acme/helper", "1.0.0", skills(), &[]),
            published("leaf", "1.0.0", skills(), &[]),
        ],
        None,
    )
}

struct Env {
    vars: BTreeMap<String, String>,
    _cache: tempfile::TempDir,
}

fn env(registry: &str, extra: &[(&str, &str)]) -> Env {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut vars: BTreeMap<String, String> = [
        (BASE_URL_VAR, registry),
        (TEST_REGISTRY_VAR, "1"),
        (CACHE_DIR_VAR, &cache.path().display().to_string()),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.retain(|_, v| !v.is_empty());
    Env {
        vars,
        _cache: cache,
    }
}

fn config() -> Config {
    let text = "[experts.local]\ninstruction = \"I am local.\"\n";
    load_str(Path::new("/p/perstack.toml"), text)
        .expect("valid")
        .config
}

async fn run(config: &mut Config, root: &str, env: &Env) -> Result<Resolved, ResolveError> {
    let locked = IndexMap::new();
    let sources = Sources {
        env: &env.vars,
        locked: &locked,
        refresh: false,
    };
    resolve(config, root, &sources).await
}

#[tokio::test]
async fn a_published_expert_and_its_delegates_resolve_recursively_local_keys_first() {
    let fake = registry();
    let env = env(&fake.url(), &[]);
    let mut config = config();
    let resolved = run(&mut config, "@acme/reviewer@1.2.0", &env)
        .await
        .expect("resolves");
    let keys: Vec<&str> = config.experts.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "local",
            "@acme/reviewer@1.2.0",
            "@acme/helper",
            "leaf@1.0.0"
        ]
    );
    assert_eq!(resolved.experts.len(), 3);
    // A bare name is the version tagged latest, stored under the key as asked.
    assert_eq!(config.experts["@acme/helper"].version, "2.0.0");
    assert_eq!(config.experts["@acme/helper"].name, "@acme/helper");
    let Skill::McpStdio(search) = &config.experts["leaf@1.0.0"].skills["search"] else {
        panic!("stdio skill");
    };
    assert_eq!(search.required_env, ["SEARCH_KEY"]);
    assert_eq!(search.allowed_domains, ["api.search.example"]);
    // `local` is perstack.toml's: never asked for. Keys go out encoded, anonymously.
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/api/registry/v1/experts/%40acme%2Freviewer%401.2.0",
            "/api/registry/v1/experts/%40acme%2Fhelper",
            "/api/registry/v1/experts/leaf%401.0.0",
        ]
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
    assert_eq!(
        fake.requests()[0].header("content-type"),
        Some("application/json")
    );
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token_and_a_401_says_so() {
    let fake = FakeRegistry::start(
        vec![published("leaf", "1.0.0", skills(), &[])],
        Some("s3cret"),
    );
    let with_key = env(&fake.url(), &[(API_KEY_VAR, "s3cret")]);
    run(&mut config(), "leaf", &with_key)
        .await
        .expect("authorized");
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some("Bearer s3cret")
    );
    let without = env(&fake.url(), &[]);
    let error = run(&mut config(), "leaf", &without)
        .await
        .expect_err("401")
        .to_string();
    assert!(
        error.contains("401 Unauthorized (Failed to authenticate)"),
        "{error}"
    );
    assert!(error.contains("PERSTACK_API_KEY"), "{error}");
}

#[tokio::test]
async fn a_pinned_version_comes_from_the_cache_the_second_time_and_offline() {
    let fake = registry();
    let env = env(&fake.url(), &[]);
    run(&mut config(), "leaf@1.0.0", &env)
        .await
        .expect("fetched");
    assert_eq!(fake.requests().len(), 1);
    drop(fake);
    run(&mut config(), "leaf@1.0.0", &env)
        .await
        .expect("from the cache, offline");
    // A tag moves: it is asked again, and offline that fails, naming the Registry.
    let error = run(&mut config(), "leaf", &env)
        .await
        .expect_err("offline")
        .to_string();
    assert!(error.contains("did not answer"), "{error}");
    assert!(
        error.starts_with("failed to resolve expert \"leaf\""),
        "{error}"
    );
}

#[tokio::test]
async fn unknown_disabled_deprecated_and_invalid_answers() {
    let fake = registry();
    let env = env(&fake.url(), &[]);
    let error = run(&mut config(), "nonexistent-expert", &env)
        .await
        .expect_err("404")
        .to_string();
    assert!(
        error.contains("404 Not Found (Expert nonexistent-expert not found)"),
        "{error}"
    );

    let mut disabled = published("old", "1.0.0", skills(), &[]);
    disabled["status"] = json!("disabled");
    fake.publish(disabled);
    let error = run(&mut config(), "old@1.0.0", &env)
        .await
        .expect_err("disabled")
        .to_string();
    assert!(error.contains("is disabled"), "{error}");

    let mut deprecated = published("aging", "1.0.0", skills(), &[]);
    deprecated["status"] = json!("deprecated");
    fake.publish(deprecated);
    let resolved = run(&mut config(), "aging", &env)
        .await
        .expect("deprecated runs");
    assert!(
        resolved.warnings[0].contains("deprecated"),
        "{:?}",
        resolved.warnings
    );

    let mut bad = published("broken", "1.0.0", skills(), &[]);
    bad["skills"]["search"]["type"] = json!("dockerSkill");
    fake.publish(bad);
    let error = run(&mut config(), "broken", &env)
        .await
        .expect_err("bad type")
        .to_string();
    assert!(
        error.contains("unknown skill type \"dockerSkill\""),
        "{error}"
    );

    let mut config = config();
    config.experts["local"].delegates = vec!["Bad Key".into()];
    let error = run(&mut config, "local", &env)
        .await
        .expect_err("grammar")
        .to_string();
    assert!(
        error.starts_with("delegate of \"local\": invalid expert key format"),
        "{error}"
    );
}

#[tokio::test]
async fn a_changed_definition_under_a_cached_version_is_an_error() {
    let fake = registry();
    let env = env(&fake.url(), &[]);
    run(&mut config(), "leaf", &env).await.expect("first");
    let mut changed = published("leaf", "1.0.0", skills(), &[]);
    changed["instruction"] = json!("Something else entirely.");
    fake.publish(changed);
    let error = run(&mut config(), "leaf", &env)
        .await
        .expect_err("changed")
        .to_string();
    assert!(
        error.contains("differs from the one it answered before (kept in the host cache)"),
        "{error}"
    );
}

#[tokio::test]
async fn a_locked_expert_is_taken_as_locked_and_a_changed_cached_version_is_an_error() {
    let fake = registry();
    let env = env(&fake.url(), &[]);
    let mut locked_def = published("leaf", "1.0.0", skills(), &[]);
    locked_def["instruction"] = json!("The locked instruction.");
    let locked = IndexMap::from([(
        "leaf".to_string(),
        RegistryExpert::from_value(locked_def).expect("valid"),
    )]);
    let sources = Sources {
        env: &env.vars,
        locked: &locked,
        refresh: false,
    };
    let mut config = config();
    let resolved = resolve(&mut config, "leaf", &sources)
        .await
        .expect("from the lock");
    assert_eq!(
        config.experts["leaf"].instruction,
        "The locked instruction."
    );
    assert!(resolved.from_lock.contains("leaf"));
    assert!(
        fake.requests().is_empty(),
        "a locked Expert needs no Registry"
    );
    // The Registry's leaf@1.0.0, once cached, differs from the locked one: an error.
    run(&mut super::tests::config(), "leaf@1.0.0", &env)
        .await
        .expect("cached");
    let error = resolve(&mut config_fresh(), "leaf", &sources)
        .await
        .expect_err("changed");
    assert!(
        error
            .to_string()
            .contains("in the host cache differs from the one in perstack.lock"),
        "{error}"
    );
}

fn config_fresh() -> Config {
    config()
}
