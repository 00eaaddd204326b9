//! Published Experts from a fake Perstack Registry (`test_support::fake_registry`): run by key
//! with their published delegates, on the mock provider, through Docker; the cache that makes a
//! second run of a pinned version work offline; and every bad answer refused with exit 2 before
//! anything starts.

use serde_json::{Value, json};

use perstack_sandbox::test_support::fake_registry::{FakeRegistry, published};

use crate::support::{Finished, TestRun, require_docker};

const REVIEWER: &str = "@acme/reviewer@1.2.0";

fn base() -> Value {
    json!({"type": "mcpStdioSkill", "description": "workspace tools", "command": "npx", "packageName": "@perstack/base"})
}

/// The reviewer: a base skill, an interactive skill, and a published delegate.
fn reviewer() -> Value {
    published(
        "@acme/reviewer",
        "1.2.0",
        json!({
            "@perstack/base": {"type": "mcpStdioSkill", "description": "base", "command": "npx", "packageName": "@perstack/base", "pick": ["attemptCompletion"]},
            "ask": {"type": "interactiveSkill", "description": "ask the user", "tools": {"confirm": {"description": "Confirm", "inputJsonSchema": "{\"type\":\"object\"}"}}}
        }),
        &["@acme/helper@2.0.0"],
    )
}

fn helper() -> Value {
    published(
        "@acme/helper",
        "2.0.0",
        json!({"@perstack/base": base()}),
        &[],
    )
}

/// A run of `key` against `registry`, with its own cache folder.
fn registry_run(key: &str, registry: &str, cache: &tempfile::TempDir) -> TestRun {
    TestRun::new("e2e/registry/perstack.toml", key)
        .host_env("PERSTACK_API_BASE_URL", registry)
        .host_env("PERSTACK_SANDBOX_TEST_REGISTRY", "1")
        .host_env(
            "PERSTACK_SANDBOX_CACHE_DIR",
            &cache.path().display().to_string(),
        )
}

#[test]
fn a_published_expert_runs_with_its_published_delegate_and_again_offline() {
    if !require_docker() {
        return;
    }
    let fake = FakeRegistry::start(vec![reviewer(), helper()], None);
    let cache = tempfile::tempdir().expect("cache");
    let run = registry_run(REVIEWER, &fake.url(), &cache);
    let done = run.run();
    done.assert_code(0);
    let keys_of = |kind: &str, done: &Finished| -> Vec<String> {
        done.of_type(kind)
            .iter()
            .map(|e| e["expertKey"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert_eq!(keys_of("startRun", &done)[0], REVIEWER);
    assert_eq!(keys_of("callDelegate", &done), [REVIEWER]);
    let completed = done.of_type("completeRun");
    assert_eq!(completed.last().unwrap()["text"], "reviewed, with notes");
    assert_eq!(
        std::fs::read_to_string(run.workspace.path().join("notes.md")).unwrap(),
        "helped\n"
    );
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/api/registry/v1/experts/%40acme%2Freviewer%401.2.0",
            "/api/registry/v1/experts/%40acme%2Fhelper%402.0.0",
        ]
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());

    // Both are pinned versions, now in the cache: the Registry is not needed any more.
    drop(fake);
    let again = run.run();
    again.assert_code(0);
    assert_eq!(
        again.of_type("completeRun").last().unwrap()["text"],
        "reviewed, with notes"
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// Runs `key` against `registry` and expects a refusal before anything starts.
fn refused(key: &str, registry: &str, env: &[(&str, &str)]) -> String {
    let cache = tempfile::tempdir().expect("cache");
    let mut run = registry_run(key, registry, &cache);
    for (k, v) in env {
        run = run.host_env(k, v);
    }
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stdout.is_empty(),
        "nothing may be emitted: {}",
        done.stdout
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    done.stderr
}

#[test]
fn bad_keys_and_bad_answers_exit_2_before_anything_starts() {
    let mut unknown_type = published(
        "typed",
        "1.0.0",
        json!({"x": {"type": "containerSkill"}}),
        &[],
    );
    unknown_type["skills"]["@perstack/base"] = base();
    let mut broken = published("broken", "1.0.0", json!({}), &[]);
    broken.as_object_mut().unwrap().remove("instruction");
    let needs_env = published(
        "needs-env",
        "1.0.0",
        json!({"search": {"type": "mcpStdioSkill", "description": "d", "command": "uvx", "packageName": "mcp-search", "requiredEnv": ["E2E_SEARCH_KEY"]}}),
        &[],
    );
    let leads = published(
        "leads",
        "1.0.0",
        json!({"@perstack/base": base()}),
        &["needs-env@1.0.0"],
    );
    let fake = FakeRegistry::start(
        vec![reviewer(), helper(), unknown_type, broken, needs_env, leads],
        None,
    );
    let url = fake.url();

    let grammar = refused("@invalid", &url, &[]);
    assert!(
        grammar.contains("unknown expert `@invalid`")
            && grammar.contains("invalid expert key format"),
        "{grammar}"
    );
    let range = refused("@acme/reviewer@^1", &url, &[]);
    assert!(range.contains("version range"), "{range}");
    let missing = refused("@acme/nothing@1.0.0", &url, &[]);
    assert!(
        missing.contains("failed to resolve expert \"@acme/nothing@1.0.0\"")
            && missing.contains("404 Not Found"),
        "{missing}"
    );
    let schema = refused("broken", &url, &[]);
    assert!(
        schema.contains("not an Expert definition") && schema.contains("instruction"),
        "{schema}"
    );
    let skill_type = refused("typed", &url, &[]);
    assert!(
        skill_type.contains("unknown skill type \"containerSkill\""),
        "{skill_type}"
    );
    // Preflight covers the whole closure: a published delegate's requiredEnv too.
    let env = refused("leads", &url, &[]);
    assert!(env.contains("E2E_SEARCH_KEY"), "{env}");

    // A Registry that wants a token, one that fails, and one that is not there.
    let guarded = FakeRegistry::start(vec![helper()], Some("right"));
    let unauthorized = refused(
        "@acme/helper",
        &guarded.url(),
        &[("PERSTACK_API_KEY", "wrong")],
    );
    assert!(unauthorized.contains("401 Unauthorized"), "{unauthorized}");
    let failing = perstack_sandbox::test_support::http::TestServer::start(|_| async {
        perstack_sandbox::test_support::http::Response::json(
            422,
            &json!({"code": 422, "error": "Validation Failed", "reason": "bad key"}),
        )
    });
    let invalid = refused("@acme/helper", &failing.url(), &[]);
    assert!(
        invalid.contains("422 Validation Failed (bad key)"),
        "{invalid}"
    );
    let gone = failing.url();
    drop(failing);
    let down = refused("@acme/helper", &gone, &[]);
    assert!(down.contains("did not answer"), "{down}");
    // A perstack.lock that does not parse stops the run too.
    let dir = tempfile::tempdir().expect("dir");
    for file in ["perstack.toml", "script.toml"] {
        std::fs::copy(
            crate::support::fixture(&format!("e2e/registry/{file}")),
            dir.path().join(file),
        )
        .expect("copy");
    }
    std::fs::write(
        dir.path().join("perstack.lock"),
        "version = \"1\"\nexperts = [",
    )
    .expect("lock");
    let run = TestRun::with_config(&dir.path().join("perstack.toml"), "@acme/helper@2.0.0")
        .host_env("PERSTACK_API_BASE_URL", &url)
        .host_env("PERSTACK_SANDBOX_TEST_REGISTRY", "1");
    let done = run.run();
    done.assert_code(2);
    assert!(done.stdout.is_empty());
    assert!(
        done.stderr.contains("perstack.lock: does not parse"),
        "{}",
        done.stderr
    );
    // Plain HTTP is for tests only.
    let cache = tempfile::tempdir().expect("cache");
    let run = TestRun::new("e2e/registry/perstack.toml", "@acme/helper")
        .host_env("PERSTACK_API_BASE_URL", &url)
        .host_env(
            "PERSTACK_SANDBOX_CACHE_DIR",
            &cache.path().display().to_string(),
        );
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stderr.contains("must be an https:// URL"),
        "{}",
        done.stderr
    );
}

/// A copy of the lock workflow's project (a local `lead` delegating to the published reviewer).
fn lock_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    for file in ["perstack.toml", "script.toml"] {
        std::fs::copy(
            crate::support::fixture(&format!("e2e/registry-lock/{file}")),
            dir.path().join(file),
        )
        .expect("copy");
    }
    dir
}

/// `install` in `project` against `registry`: exit code, stdout, stderr.
fn install(
    project: &std::path::Path,
    registry: &str,
    cache: &tempfile::TempDir,
) -> (i32, String, String) {
    let out = std::process::Command::new(crate::support::binary())
        .args(["install", "--config"])
        .arg(project.join("perstack.toml"))
        .current_dir(project)
        .env("PERSTACK_API_BASE_URL", registry)
        .env("PERSTACK_SANDBOX_TEST_REGISTRY", "1")
        .env("PERSTACK_SANDBOX_CACHE_DIR", cache.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("install");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A run of `lead` in `project`, against `registry` (which may be gone) with its own cache.
fn lock_run(project: &std::path::Path, registry: &str, cache: &tempfile::TempDir) -> TestRun {
    TestRun::with_config(&project.join("perstack.toml"), "lead")
        .host_env("PERSTACK_API_BASE_URL", registry)
        .host_env("PERSTACK_SANDBOX_TEST_REGISTRY", "1")
        .host_env(
            "PERSTACK_SANDBOX_CACHE_DIR",
            &cache.path().display().to_string(),
        )
}

#[test]
fn the_lock_workflow_install_change_stale_frozen() {
    if !require_docker() {
        return;
    }
    let project = lock_project();
    let fake = FakeRegistry::start(vec![reviewer(), helper()], None);
    let url = fake.url();
    let install_cache = tempfile::tempdir().expect("cache");

    // install: the file's Expert and the published closure, with their tool definitions.
    let (code, stdout, stderr) = install(project.path(), &url, &install_cache);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lock_path = project.path().join("perstack.lock");
    for line in [
        "Resolving experts...",
        "Found 3 expert(s)",
        "Collecting tool definitions for lead...",
        "Collecting tool definitions for @acme/reviewer@1.2.0...",
        "Collecting tool definitions for @acme/helper@2.0.0...",
        "  Found 1 tool(s)",
        &format!("Generated {}", lock_path.display()),
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in:\n{stdout}");
    }
    let text = std::fs::read_to_string(&lock_path).expect("lock");
    assert!(
        text.starts_with("version = \"1\"\ngeneratedAt = "),
        "{text}"
    );
    assert!(text.contains("configPath = \"perstack.toml\""), "{text}");
    let lock: toml::Table = toml::from_str(&text).expect("TOML");
    let experts = lock["experts"].as_table().expect("experts");
    let keys: Vec<&str> = experts.keys().map(String::as_str).collect();
    assert_eq!(keys, ["lead", "@acme/reviewer@1.2.0", "@acme/helper@2.0.0"]);
    let reviewer_lock = &experts["@acme/reviewer@1.2.0"];
    assert_eq!(reviewer_lock["key"].as_str(), Some("@acme/reviewer@1.2.0"));
    assert_eq!(reviewer_lock["version"].as_str(), Some("1.2.0"));
    assert_eq!(
        reviewer_lock["skills"]["ask"]["tools"]["confirm"]["inputJsonSchema"].as_str(),
        Some("{\"type\":\"object\"}")
    );
    let tools: Vec<(&str, &str)> = reviewer_lock["toolDefinitions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| {
            (
                t["skillName"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        tools,
        [("@perstack/base", "attemptCompletion"), ("ask", "confirm")]
    );
    assert!(reviewer_lock["toolDefinitions"][0]["inputSchema"].is_table());

    // The Registry gone and no cache: the lock alone pins the published Experts, and a fresh
    // lock passes --frozen-lockfile.
    drop(fake);
    let offline = tempfile::tempdir().expect("cache");
    let run = lock_run(project.path(), &url, &offline).arg("--frozen-lockfile");
    let done = run.run();
    done.assert_code(0);
    assert_eq!(
        done.of_type("completeRun").last().unwrap()["text"],
        "the reviewer reviewed"
    );
    assert!(!done.stderr.contains("stale"), "{}", done.stderr);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());

    // Change: a skill added after install makes the lock stale. A run says so and goes on;
    // --frozen-lockfile (and --locked) refuses before anything starts.
    let config = project.path().join("perstack.toml");
    let mut toml_text = std::fs::read_to_string(&config).expect("toml");
    toml_text.push_str(
        "\n[experts.lead.skills.ask]\ntype = \"interactiveSkill\"\n\
         [experts.lead.skills.ask.tools.confirm]\ninputJsonSchema = '{\"type\":\"object\"}'\n",
    );
    std::fs::write(&config, &toml_text).expect("write");
    for flag in ["--frozen-lockfile", "--locked"] {
        let run = lock_run(project.path(), &url, &offline).arg(flag);
        let done = run.run();
        done.assert_code(2);
        assert!(done.stdout.is_empty(), "{}", done.stdout);
        assert!(
            done.stderr
                .contains("the lock is stale, run `perstack-sandbox install`")
                && done
                    .stderr
                    .contains("expert \"lead\": skill \"ask\" was added since `install`"),
            "{}",
            done.stderr
        );
        assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    }
    let run = lock_run(project.path(), &url, &offline);
    let done = run.run();
    done.assert_code(0);
    assert!(
        done.stderr.contains("warning: ")
            && done
                .stderr
                .contains("the lock is stale, run `perstack-sandbox install`"),
        "{}",
        done.stderr
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());

    // The publisher changes 1.2.0 in place: install refuses to take it silently.
    let fake = FakeRegistry::start(vec![reviewer(), helper()], None);
    let mut changed = reviewer();
    changed["instruction"] = json!("Approve everything.");
    fake.publish(changed);
    let (code, stdout, stderr) = install(
        project.path(),
        &fake.url(),
        &tempfile::tempdir().expect("cache"),
    );
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("definition of @acme/reviewer@1.2.0 differs from the one in")
            && stderr.contains("must not change"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock_path).expect("lock"),
        text,
        "a refused install leaves the lock as it was"
    );
    // A lock that does not parse: exit 2 before anything starts, also for a local Expert.
    std::fs::write(&lock_path, "version = \"1\"\nexperts = [").expect("lock");
    let run = lock_run(project.path(), &url, &offline);
    let done = run.run();
    done.assert_code(2);
    assert!(done.stdout.is_empty());
    assert!(
        done.stderr.contains("perstack.lock: does not parse"),
        "{}",
        done.stderr
    );
    // install replaces a lock it cannot read, and locks the skill added since.
    fake.publish(reviewer());
    let (code, stdout, stderr) = install(
        project.path(),
        &fake.url(),
        &tempfile::tempdir().expect("cache"),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("install replaces it"), "{stderr}");
    let text = std::fs::read_to_string(&lock_path).expect("lock");
    assert!(text.contains("[experts.lead.skills.ask]"), "{text}");
}

#[test]
fn a_version_built_from_the_lock_runs_with_no_registry_at_all() {
    if !require_docker() {
        return;
    }
    let project = lock_project();
    let fake = FakeRegistry::start(vec![reviewer(), helper()], None);
    let url = fake.url();
    let (code, stdout, stderr) = install(project.path(), &url, &tempfile::tempdir().expect("c"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // From here on the Registry is gone and no cache holds the published Experts: only the lock.
    drop(fake);
    let id = perstack_sandbox::test_support::internals::new_id();
    let repository = format!("psbx-e2e-lock-{id}");
    let reference = format!("{repository}:1.0");
    let mut images = perstack_sandbox::test_support::docker::DockerGuard::new();
    images.repository(&repository);
    let empty_cache = tempfile::tempdir().expect("cache");
    let built = std::process::Command::new(crate::support::binary())
        .args(["build", "lead", "--frozen-lockfile", "--tag", &reference])
        .current_dir(project.path())
        .env("PERSTACK_API_BASE_URL", &url)
        .env("PERSTACK_SANDBOX_TEST_REGISTRY", "1")
        .env("PERSTACK_SANDBOX_CACHE_DIR", empty_cache.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("build");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let runtime_id =
        crate::support::docker(&["image", "inspect", "--format", "{{.Id}}", &reference]);
    images.image(runtime_id.trim());

    // Elsewhere, with only the image: no perstack.toml, no lock, no Registry, no cache.
    let elsewhere = tempfile::tempdir().expect("dir");
    let job = crate::support::JobGuard::new();
    let out = std::process::Command::new(crate::support::binary())
        .args([
            "run",
            "--json",
            "--job-id",
            &job.job_id,
            "--image",
            &reference,
            "q",
        ])
        .current_dir(elsewhere.path())
        .env("PERSTACK_SANDBOX_CACHE_DIR", empty_cache.path())
        .env_remove("PERSTACK_API_BASE_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    let done = crate::support::finished(out.status.code(), out.stdout, out.stderr);
    done.assert_code(0);
    let started: Vec<&str> = done
        .of_type("startRun")
        .iter()
        .map(|e| e["expertKey"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(started[0], "lead");
    assert!(started.contains(&"@acme/helper@2.0.0"), "{started:?}");
    assert_eq!(
        done.of_type("completeRun").last().unwrap()["text"],
        "the reviewer reviewed"
    );
    assert_eq!(
        std::fs::read_to_string(elsewhere.path().join("notes.md")).expect("notes"),
        "helped\n"
    );
    assert_eq!(job.leftovers(), Vec::<String>::new());
}
