//! `install` collects the tools of every MCP skill by starting it as `run` does (a listing run:
//! images, skill containers, a runtime that lists and exits), writes them to perstack.lock as
//! Perstack does, and leaves no container, volume or network behind; a skill whose
//! `requiredEnv` is missing stops it before anything starts, and no lock is written.

use serde_json::Value;

use crate::support::{JobGuard, binary, fixture, require_docker};

/// A copy of the project, so the lock is written beside it.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(
        fixture("e2e/install-tools/perstack.toml"),
        dir.path().join("perstack.toml"),
    )
    .expect("copy");
    dir
}

/// `install --job-id <guard's>` in `project`: exit code, stdout, stderr.
fn install(
    project: &std::path::Path,
    guard: &JobGuard,
    token: Option<&str>,
) -> (i32, String, String) {
    let mut command = std::process::Command::new(binary());
    command
        .args(["install", "--job-id", &guard.job_id, "--config"])
        .arg(project.join("perstack.toml"))
        .current_dir(project)
        .env_remove("FIXTURE_TOKEN")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(std::process::Stdio::null());
    if let Some(token) = token {
        command.env("FIXTURE_TOKEN", token);
    }
    let out = command.output().expect("install");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `(skillName, name)` of an Expert's locked tool definitions.
fn tools(lock: &toml::Table, expert: &str) -> Vec<(String, String)> {
    lock["experts"][expert]["toolDefinitions"]
        .as_array()
        .expect("toolDefinitions")
        .iter()
        .map(|t| {
            (
                t["skillName"].as_str().unwrap_or("").to_string(),
                t["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn install_starts_each_mcp_skill_and_locks_its_tools_then_removes_everything() {
    if !require_docker() {
        return;
    }
    let project = project();
    let guard = JobGuard::new();
    let (code, stdout, stderr) = install(project.path(), &guard, Some("token"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for line in [
        "Resolving experts...",
        "Found 2 expert(s)",
        "Collecting tool definitions for lister...",
        "  Found 3 tool(s)",
        "Collecting tool definitions for helper...",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("listed when it starts"), "{stdout}");
    let text = std::fs::read_to_string(project.path().join("perstack.lock")).expect("lock");
    let lock: toml::Table = toml::from_str(&text).expect("TOML");
    let pair = |s: &str, n: &str| (s.to_string(), n.to_string());
    // pick applied, in skill order: base first, then the fixture server's as it lists them.
    assert_eq!(
        tools(&lock, "lister"),
        [
            pair("@perstack/base", "attemptCompletion"),
            pair("fixture", "echo"),
            pair("fixture", "whoami")
        ]
    );
    // The delegate's skill, listed in the same listing run, with omit applied.
    let helper = tools(&lock, "helper");
    assert!(helper.contains(&pair("tools", "echo")), "{helper:?}");
    assert!(helper.contains(&pair("tools", "get_env")), "{helper:?}");
    for omitted in ["sleep", "crash", "allocate"] {
        assert!(!helper.contains(&pair("tools", omitted)), "{helper:?}");
    }
    // Each definition is Perstack's `{skillName, name, description, inputSchema}`, the schema
    // a table as the server gave it.
    let echo: &Value =
        &serde_json::to_value(&lock["experts"]["lister"]["toolDefinitions"][1]).expect("json");
    let keys: Vec<&str> = echo
        .as_object()
        .expect("table")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["skillName", "name", "description", "inputSchema"]);
    assert_eq!(echo["inputSchema"]["type"], "object");
    assert!(echo["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(
        text.contains("[experts.lister.toolDefinitions.inputSchema]"),
        "written with smol-toml's layout:\n{text}"
    );
    assert_eq!(guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_skill_whose_required_variable_is_missing_stops_install_before_anything_starts() {
    if !require_docker() {
        return;
    }
    let project = project();
    let guard = JobGuard::new();
    let (code, stdout, stderr) = install(project.path(), &guard, None);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot list the tools of the skills of expert \"lister\"")
            && stderr.contains("FIXTURE_TOKEN"),
        "{stderr}"
    );
    assert!(!project.path().join("perstack.lock").exists());
    assert_eq!(guard.leftovers(), Vec::<String>::new());
}
