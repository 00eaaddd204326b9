//! The CLI's own output: validation listings and the errors users hit before anything starts.

use std::process::Command;

use crate::support::{JobGuard, TestRun, binary, fixture};

fn perstack(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .expect("run the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_lists_experts_delegates_and_skills() {
    let (code, stdout, stderr) = perstack(&["validate", "--config", "examples/demo/perstack.toml"]);
    assert_eq!(code, Some(0), "{stderr}");
    insta::assert_snapshot!(stdout);
}

#[test]
fn validate_reports_every_mistake_with_its_position_and_exits_2() {
    let path = "tests/fixtures/config/invalid/many-mistakes.toml";
    let (code, stdout, stderr) = perstack(&["validate", "--config", path]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    let abs = regex::escape(
        &fixture("config/invalid/many-mistakes.toml")
            .display()
            .to_string(),
    );
    insta::with_settings!({filters => vec![(abs.as_str(), "[FILE]")]}, {
        insta::assert_snapshot!(stderr);
    });
}

#[test]
fn a_missing_config_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary())
        .args(["validate"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("perstack.toml not found"), "{stderr}");
}

#[test]
fn run_refuses_to_start_without_required_variables_and_names_each_one() {
    // Needs no Docker: nothing may start when validation fails.
    let guard = JobGuard::new();
    let workspace = tempfile::tempdir().expect("tempdir");
    let config = fixture("e2e/isolation/perstack.toml");
    let out = Command::new(binary())
        .args([
            "run",
            "--json",
            "--provider",
            "anthropic",
            "--job-id",
            &guard.job_id,
        ])
        .arg("--config")
        .arg(&config)
        .arg("--workspace")
        .arg(workspace.path())
        .args(["isolation", "go"])
        .current_dir(workspace.path())
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("FIXTURE_TOKEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing may be emitted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ANTHROPIC_API_KEY is not set; provider `anthropic` needs it"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "skill `fixture` of expert `isolation` needs FIXTURE_TOKEN, which is not set"
        ),
        "{stderr}"
    );
    // …pointing at the line that asks for it.
    assert!(
        stderr.contains(&format!("{}:16:16:", config.display())),
        "{stderr}"
    );
}

#[test]
fn an_unknown_expert_lists_the_known_ones() {
    let run = TestRun::new("e2e/isolation/perstack.toml", "isolaton");
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stderr
            .contains("unknown expert `isolaton`; Experts in ")
            && done.stderr.contains(": isolation"),
        "{}",
        done.stderr
    );
}

#[test]
fn a_workspace_that_is_not_a_folder_is_refused() {
    let run = TestRun::new("e2e/isolation/perstack.toml", "isolation")
        .host_env("FIXTURE_TOKEN", "x")
        .workspace_arg("/etc/hostname");
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stderr
            .contains("workspace /etc/hostname is not a folder"),
        "{}",
        done.stderr
    );
}

#[test]
fn doctor_reports_endpoint_engine_api_build_and_the_run_probe() {
    if !crate::support::require_docker() {
        return;
    }
    let (code, stdout, _) = perstack(&["doctor", "--config", "examples/demo/perstack.toml"]);
    crate::support::assert_doctor_ready(code, &stdout);
    for needle in [
        "✔ docker endpoint",
        "✔ engine",
        "✔ negotiated API",
        "✔ image build",
        // The run probe: what a run makes, made for real on this engine and removed.
        "✔   socket volume",
        "✔   internal network",
        "✔   hardened start",
        "✔   unix socket",
        "✔   network reach",
        "✔   hardening",
        "✔   workspace owner",
        "✔   removal",
        "✔ executable",
        "✔ CA bundle",
        "scratch",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

#[test]
fn help_lists_the_commands_and_the_run_and_gc_flags() {
    let (code, top, _) = perstack(&["--help"]);
    assert_eq!(code, Some(0));
    insta::assert_snapshot!("help", top);
    let (code, run, _) = perstack(&["run", "--help"]);
    assert_eq!(code, Some(0));
    insta::assert_snapshot!("run_help", run);
    let (code, gc, _) = perstack(&["gc", "--help"]);
    assert_eq!(code, Some(0));
    insta::assert_snapshot!("gc_help", gc);
}

/// `run` with the flags in every place a person puts them: each order gets as far as looking for
/// the job to continue (none in an empty workspace), never to a parse error.
#[test]
fn run_takes_flags_before_between_and_after_the_expert_and_the_query() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/perstack.toml");
    for order in [
        &["--continue", "demo", "next"][..],
        &["demo", "--continue", "next"],
        &["demo", "next", "--continue"],
        &["demo", "--continue", "--", "next"],
    ] {
        let out = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(order)
            .current_dir(workspace.path())
            .env("DEMO_TOKEN", "t")
            .output()
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{order:?}: {stderr}");
        assert!(
            stderr.contains("No checkpoint found"),
            "{order:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{order:?}");
    }
    // The parser still says what is missing.
    let out = Command::new(binary())
        .args(["run", "demo", "--continue"])
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("<QUERY>"), "{stderr}");
    assert!(!workspace.path().join("perstack").exists());
}

#[test]
fn runtime_docker_is_accepted_and_perstacks_other_runtimes_are_refused_with_why() {
    let config = "examples/demo/perstack.toml";
    for (runtime, why) in [
        ("local", "as processes on this host"),
        ("cursor", "another agent's CLI"),
        ("claude-code", "another agent's CLI"),
        ("gemini", "another agent's CLI"),
        ("invalid-runtime", "Perstack's runtimes are docker, local"),
    ] {
        let (code, stdout, stderr) =
            perstack(&["run", "--runtime", runtime, "--config", config, "demo", "q"]);
        assert_eq!(code, Some(2), "{runtime}: {stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.contains("runs Experts only in Docker") && stderr.contains(why),
            "{runtime}: {stderr}"
        );
    }
    // Accepted: the run goes on to its own checks (here: the Expert is unknown).
    let (code, _, stderr) = perstack(&[
        "run",
        "--runtime",
        "docker",
        "--config",
        config,
        "No-Such-Expert",
        "q",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown expert `No-Such-Expert`"),
        "{stderr}"
    );
}
