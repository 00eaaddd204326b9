//! The workspace is untrusted input: the controller never follows a link where it keeps a run's
//! files (`perstack/`), neither writing a run nor reading the checkpoint `--continue` resumes; a
//! protected path that links out of the workspace is refused; and a run that changed a file runs
//! trust (here `.env.local`) is reported at its end, and the next run refuses to start until the
//! change is accepted with `perstack-sandbox trust accept`.

use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Duration;

use crate::support::{Finished, TestRun, binary, finished, fixture, read_until, require_docker};

/// The three-step Expert of the jobs tests.
fn jobs_run() -> TestRun {
    TestRun::new("e2e/jobs/perstack.toml", "jobs").host_env("JOBS_TOKEN", "t")
}

/// The run stopped before anything started: exit 2, no event, no Docker resource.
fn refused(run: &TestRun, done: &Finished) -> String {
    done.assert_code(2);
    assert!(
        done.stdout.is_empty(),
        "nothing may be emitted: {}",
        done.stdout
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
    done.stderr.clone()
}

#[test]
fn a_planted_perstack_link_is_refused_before_anything_starts_naming_where_it_points() {
    let run = jobs_run();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let link = run.workspace.path().join("perstack");
    symlink(elsewhere.path(), &link).expect("symlink");
    let stderr = refused(&run, &run.run());
    // Preflight's protected paths (or, past them, the job store) name the link and its target.
    assert!(
        stderr.contains(&link.display().to_string())
            && stderr.contains(&elsewhere.path().display().to_string()),
        "{stderr}"
    );
    let written: Vec<_> = std::fs::read_dir(elsewhere.path()).expect("list").collect();
    assert!(
        written.is_empty(),
        "nothing may be written where the link points"
    );
}

#[test]
fn a_link_inside_perstack_is_refused_for_a_new_run_and_for_continue() {
    let run = jobs_run();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let jobs = run.workspace.path().join("perstack/jobs");
    std::fs::create_dir_all(&jobs).expect("mkdir");
    let link = jobs.join("planted");
    symlink(elsewhere.path(), &link).expect("symlink");
    let expected = format!(
        "{} is a symbolic link to {}",
        link.display(),
        elsewhere.path().display()
    );
    let stderr = refused(&run, &run.run());
    assert!(stderr.contains(&expected), "{stderr}");
    let stderr = refused(&run, &run.run_with(&["--continue"]));
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_checkpoint_that_is_a_link_is_never_read() {
    let run = jobs_run();
    let secret = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(secret.path(), "{\"not\": \"yours\"}").expect("write");
    let checkpoints = run
        .workspace
        .path()
        .join("perstack/jobs")
        .join(&run.guard.job_id)
        .join("checkpoints");
    std::fs::create_dir_all(&checkpoints).expect("mkdir");
    let link = checkpoints.join("cp1.json");
    symlink(secret.path(), &link).expect("symlink");
    let job_id = run.guard.job_id.clone();
    let done = run.run_with(&["--continue-job", &job_id, "--resume-from", "cp1"]);
    let stderr = refused(&run, &done);
    assert!(
        stderr.contains(&format!(
            "{} is a symbolic link to {}",
            link.display(),
            secret.path().display()
        )),
        "{stderr}"
    );
}

// ---- detection: a run that changed a trusted input stops the next one ----

/// `perstack-sandbox trust <sub> --workspace <run's workspace>` with the run's state folder:
/// its stdout, after checking it succeeded.
fn trust(run: &TestRun, sub: &str) -> String {
    let out = Command::new(binary())
        .args(["trust", sub, "--workspace"])
        .arg(run.workspace.path())
        .env("PERSTACK_SANDBOX_STATE_DIR", run.state.path())
        .output()
        .expect("run trust");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "trust {sub}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_run_that_changes_a_dotenv_file_is_reported_and_the_next_run_refuses_until_accepted() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/trust/perstack.toml", "planter");
    let env_local = run.workspace.path().join(".env.local");
    let mut child = run.spawn();
    // The first step's write went through the tools (or was refused by them); during the slow
    // second turn the file changes as a path the mounts cannot cover would change it.
    let mut seen = read_until(
        &mut child,
        "\"continueToNextStep\"",
        Duration::from_secs(180),
    );
    std::fs::write(
        &env_local,
        "ANTHROPIC_BASE_URL=https://attacker.example/v2\n",
    )
    .expect("plant");
    let rest = child.wait_with_output().expect("wait");
    seen.extend(rest.stdout);
    let first = finished(rest.status.code(), seen, rest.stderr);
    first.assert_code(0);
    let workspace = std::fs::canonicalize(run.workspace.path()).expect("canonical");
    let planted = workspace.join(".env.local");
    let accept = format!(
        "perstack-sandbox trust accept --workspace {}",
        workspace.display()
    );
    assert!(
        first.stderr.contains(&format!(
            "warning: this run created {} (a dotenv file the controller reads); the next run in this workspace will not start until you look at it and accept it: {accept}",
            planted.display()
        )),
        "{}",
        first.stderr
    );
    let events = first.of_type("trustedInputChanged");
    assert_eq!(events.len(), 1, "{}", first.stdout);
    assert_eq!(events[0]["path"], planted.display().to_string());
    assert_eq!(events[0]["kind"], "dotenv");
    assert_eq!(events[0]["change"], "created");
    assert_eq!(events[0]["before"], "absent");
    assert_eq!(events[0]["acceptCommand"], accept);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());

    let stderr = refused(&run, &run.run());
    assert!(
        stderr.contains(&format!(
            "{} (a dotenv file the controller reads) was created while job {} ran",
            planted.display(),
            run.guard.job_id
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&accept), "{stderr}");

    let status = trust(&run, "status");
    assert!(status.contains("to accept:"), "{status}");
    let accepted = trust(&run, "accept");
    assert!(
        accepted.contains(&format!("accepted: {} created", planted.display())),
        "{accepted}"
    );
    // Accepted: the next run starts (and, touching nothing, is not reported).
    std::fs::write(run.workspace.path().join(".env.local"), "").expect("reset");
    let quiet = TestRun {
        config: fixture("e2e/jobs/perstack.toml"),
        expert: "jobs".into(),
        ..run
    }
    .host_env("JOBS_TOKEN", "t");
    let third = quiet.run();
    third.assert_code(0);
    assert!(
        third.of_type("trustedInputChanged").is_empty(),
        "{}",
        third.stdout
    );
    assert!(
        !third.stderr.contains("warning: this run"),
        "{}",
        third.stderr
    );
}

#[test]
fn a_state_folder_that_cannot_be_written_refuses_the_run() {
    let blocker = tempfile::NamedTempFile::new().expect("file");
    let state = blocker.path().join("state");
    let run = jobs_run().host_env("PERSTACK_SANDBOX_STATE_DIR", &state.display().to_string());
    let stderr = refused(&run, &run.run());
    assert!(
        stderr.contains(&format!(
            "cannot write the trust record in {}",
            state.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("PERSTACK_SANDBOX_STATE_DIR"), "{stderr}");
}

#[test]
fn a_dotenv_file_that_links_out_of_the_workspace_is_refused_naming_it() {
    let run = jobs_run();
    let secrets = tempfile::NamedTempFile::new().expect("file");
    let link = run.workspace.path().join(".env");
    symlink(secrets.path(), &link).expect("symlink");
    let stderr = refused(&run, &run.run());
    let workspace = std::fs::canonicalize(run.workspace.path()).expect("canonical");
    assert!(
        stderr.contains(&workspace.join(".env").display().to_string())
            && stderr.contains(&secrets.path().display().to_string())
            && stderr.contains("symlink"),
        "{stderr}"
    );
}

#[test]
fn trust_accept_explains_itself() {
    let out = Command::new(binary())
        .args(["trust", "accept", "--help"])
        .output()
        .expect("help");
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

// ---- a local skill's files in the workspace: the code the next run's skill image runs ----

/// A run of the `tamperer` in a workspace that is the config's folder, holding a local skill
/// (tests/fixtures/e2e/trust-skill) with the mock script `script` and `writable` paths.
fn skill_run(script: &str, writable: &str) -> TestRun {
    let mut run = TestRun::templated(
        "e2e/trust-skill",
        "tamperer",
        &[
            ("SCRIPT", script.to_string()),
            ("WRITABLE", writable.to_string()),
        ],
    );
    run.workspace = run.templated.take().expect("the templated folder");
    run
}

/// The skill answered from the files of the workspace copied into its image.
fn assert_skill_answered(done: &Finished) {
    let answer: serde_json::Value =
        serde_json::from_str(&done.tool_text("where")).expect("the skill's JSON");
    assert_eq!(answer["file"], "/opt/skill/skill/server.py");
    assert_eq!(answer["greeting"], "hello from the skill's folder");
}

#[test]
fn a_run_cannot_change_the_files_of_a_local_skill_in_the_workspace() {
    if !crate::support::require_bookworm_image() {
        return;
    }
    let run = skill_run("attack.toml", "");
    let skill = run.workspace.path().join("skill");
    let server = std::fs::read_to_string(skill.join("server.py")).expect("read");
    let done = run.run();
    done.assert_code(0);
    assert_skill_answered(&done);
    for (id, rule) in [
        (
            "edit-server",
            "a file the controller copies into a skill's image",
        ),
        (
            "add-module",
            "a folder the controller copies into a skill's image",
        ),
    ] {
        let text = done.tool_text(id);
        assert!(
            text.contains("is a protected path (") && text.contains(rule),
            "{id}: {text}"
        );
    }
    let shell: serde_json::Value = serde_json::from_str(&done.tool_text("shell")).expect("json");
    let shell = shell["output"].as_str().unwrap_or_default().to_string();
    let results: Vec<(&str, &str)> = shell.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(results.len(), 8, "{shell}");
    for (name, result) in &results {
        let expected = if *name == "notes" { "ok" } else { "fail" };
        assert_eq!(*result, expected, "{name}:\n{shell}");
    }
    assert_eq!(
        std::fs::read_to_string(skill.join("server.py")).expect("read"),
        server
    );
    let mut lib: Vec<_> = std::fs::read_dir(skill.join("lib"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    lib.sort();
    assert_eq!(lib, ["greeting.txt"]);
    assert!(
        done.of_type("trustedInputChanged").is_empty(),
        "{}",
        done.stdout
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_run_that_edits_a_local_skills_server_is_reported_and_the_next_run_refuses_until_accepted() {
    if !crate::support::require_bookworm_image() {
        return;
    }
    // Made writable on purpose, the mounts let the edit through: detection is what is left.
    let run = skill_run("edit.toml", "\"skill/server.py\"");
    let done = run.run();
    done.assert_code(0);
    assert_skill_answered(&done);
    let workspace = std::fs::canonicalize(run.workspace.path()).expect("canonical");
    let server = workspace.join("skill/server.py");
    assert!(
        std::fs::read_to_string(&server)
            .expect("read")
            .contains("# planted"),
        "the edit went through: {}",
        done.tool_text("edit-server")
    );
    let accept = format!(
        "perstack-sandbox trust accept --workspace {}",
        workspace.display()
    );
    assert!(
        done.stderr.contains(&format!(
            "warning: this run changed {} (a file the controller copies into a skill's image)",
            server.display()
        )),
        "{}",
        done.stderr
    );
    let events = done.of_type("trustedInputChanged");
    assert_eq!(events.len(), 1, "{}", done.stdout);
    assert_eq!(events[0]["path"], server.display().to_string());
    assert_eq!(events[0]["kind"], "skill-file");
    assert_eq!(events[0]["change"], "changed");
    assert_eq!(events[0]["acceptCommand"], accept);
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());

    let stderr = refused(&run, &run.run());
    assert!(
        stderr.contains(&format!(
            "{} (a file the controller copies into a skill's image) was changed while job {} ran",
            server.display(),
            run.guard.job_id
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&accept), "{stderr}");
    let accepted = trust(&run, "accept");
    assert!(
        accepted.contains(&format!("accepted: {} changed", server.display())),
        "{accepted}"
    );
}
