//! Perstack's own perstack.toml files load here: hand-written fixtures shaped like its 28 files
//! (`tests/fixtures/upstream/toml/`), and, with `PERSTACK_UPSTREAM_TOML_DIR` set to a checkout of
//! Perstack, every `.toml` under it. `error-handling.toml` delegates to an Expert that only the
//! Registry could have: it loads, and resolving it asks the Registry, whose 404 names it.

use std::path::{Path, PathBuf};

use super::{Skill, load};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream/toml")
}

/// Every `.toml` under `dir`, sorted.
fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("readable folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() && !path.ends_with("node_modules") && !path.ends_with(".git") {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn load_all(files: &[PathBuf]) {
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| load(file).err().map(|e| format!("{}: {e}", file.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn perstack_shaped_files_load_with_their_registry_delegates_and_upstream_keys() {
    let files = tomls(&fixtures());
    assert_eq!(files.len(), 7, "{files:?}");
    load_all(&files);

    let handling = load(&fixtures().join("error-handling.toml")).expect("loads");
    let delegate = &handling.config.experts["invalid-delegate"];
    assert_eq!(delegate.delegates, ["nonexistent-expert"]);
    assert!(!handling.config.experts.contains_key("nonexistent-expert"));
    assert!(crate::config::key::parse("nonexistent-expert").is_ok());

    let resume = load(&fixtures().join("continue-resume.toml")).expect("loads");
    let Skill::Interactive(input) = &resume.config.experts["continue"].skills["user-input"] else {
        panic!("interactive");
    };
    assert_eq!(
        input.tools["askUser"].input_json_schema["required"],
        serde_json::json!(["question"])
    );
    // An Expert without skills gets the implicit base, as in Perstack.
    assert!(
        resume.config.experts["helper-b"]
            .skills
            .contains_key("@perstack/base")
    );

    let mixed = load(&fixtures().join("mixed-tools.toml")).expect("loads");
    let Skill::McpStdio(exa) = &mixed.config.experts["mixed-tools"].skills["exa"] else {
        panic!("stdio");
    };
    assert_eq!(exa.argv(), ["-y", "exa-mcp-server"]);
    assert_eq!(exa.required_env, ["EXA_API_KEY"]);
    assert_eq!(exa.allowed_domains, ["api.exa.ai", "*.exa.ai"]);
}

#[test]
fn perstacks_own_files_load_when_a_checkout_is_given() {
    let Some(dir) = std::env::var_os("PERSTACK_UPSTREAM_TOML_DIR") else {
        // The files are Perstack's, not ours: the fixtures above stand in for them.
        return;
    };
    let files = tomls(Path::new(&dir));
    assert_eq!(files.len(), 28, "Perstack at ef363a5 has 28: {files:?}");
    load_all(&files);
}

#[tokio::test]
async fn error_handlings_registry_delegate_is_asked_of_the_registry_and_its_404_named() {
    let fake = crate::test_support::fake_registry::FakeRegistry::start(vec![], None);
    let cache = tempfile::tempdir().expect("tempdir");
    let env = std::collections::BTreeMap::from([
        ("PERSTACK_API_BASE_URL".to_string(), fake.url()),
        (
            "PERSTACK_SANDBOX_TEST_REGISTRY".to_string(),
            "1".to_string(),
        ),
        (
            "PERSTACK_SANDBOX_CACHE_DIR".to_string(),
            cache.path().display().to_string(),
        ),
    ]);
    let mut config = load(&fixtures().join("error-handling.toml"))
        .expect("loads")
        .config;
    let sources = crate::registry::Sources {
        env: &env,
        locked: &Default::default(),
        refresh: false,
    };
    let error = crate::registry::resolve(&mut config, "invalid-delegate", &sources)
        .await
        .expect_err("404")
        .to_string();
    assert!(
        error.contains(
            "failed to resolve expert \"nonexistent-expert\" (delegate of \"invalid-delegate\")"
        ) && error.contains("404"),
        "{error}"
    );
    let asked: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(asked, ["/api/registry/v1/experts/nonexistent-expert"]);
}
