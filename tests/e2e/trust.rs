//! The workspace is untrusted input: the controller never follows a link where it keeps a run's
//! files (`perstack/`), neither writing a run nor reading the checkpoint `--continue` resumes.

use std::os::unix::fs::symlink;

use crate::support::{Finished, TestRun};

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
    assert!(
        stderr.contains(&format!(
            "error: {} is a symbolic link to {}",
            link.display(),
            elsewhere.path().display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("rm {}", link.display())),
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
