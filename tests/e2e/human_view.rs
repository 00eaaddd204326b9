//! The human view on a real pseudo-terminal running the real binary: while an image builds, one
//! live line shows the builder's step and the time so far, and when the image is ready that line
//! gives way to one summary line.

use std::process::Command;

use perstack_sandbox::test_support::docker::DockerGuard;

use crate::support::terminal::{Terminal, bytes};
use crate::support::{JobGuard, binary, fixture, require_bookworm_image, template, test_runtime};

/// Time for the whole run, the images it builds included.
const RUN_MS: u64 = 300_000;

#[test]
fn an_image_build_shows_one_live_line_with_its_step_that_gives_way_to_one_summary_line() {
    if !require_bookworm_image() {
        return;
    }
    let guard = JobGuard::new();
    // The skill's own Dockerfile's image and the skill image on it are new to this test;
    // removed however the test ends.
    let mut images = DockerGuard::new();
    images.images_found_by(built_with(guard.job_id.clone()));
    let dir = template("e2e/live-build", &[("NONCE", guard.job_id.clone())]);
    std::fs::copy(
        fixture("e2e/local-skills/skills/echo/server.py"),
        dir.path().join("skill/server.py"),
    )
    .expect("copy the echo server");
    let workspace = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(binary());
    cmd.arg("run")
        .arg("--config")
        .arg(dir.path().join("perstack.toml"))
        .arg("--workspace")
        .arg(workspace.path())
        .arg("--job-id")
        .arg(&guard.job_id)
        .args(
            test_runtime()
                .iter()
                .flat_map(|r| ["--runtime-engine", r.as_str()]),
        )
        .args(["builder", "go"])
        .current_dir(workspace.path())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .env("PERSTACK_SANDBOX_STATE_DIR", state.path())
        .env_remove("ANTHROPIC_API_KEY");
    let mut term = Terminal::spawn(cmd, RUN_MS);
    // The live line: the service and the step its own Dockerfile is at (the fourth step is the
    // label that marks the image ours), the time so far after it.
    term.expect("skill:slow-recipe: step 2/4: RUN echo");
    term.expect("Built and done.");
    let shown = term.finish();
    let summary: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("skill:slow-recipe"))
        .collect();
    // Once built, one line says so, and nothing of the live line stays on the screen.
    assert_eq!(summary.len(), 1, "{shown}");
    let tag = summary[0]
        .split_once("Built image ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no built image in {:?}\n{shown}", summary[0]));
    assert!(
        tag.starts_with("perstack-sandbox/skill-slow-recipe:"),
        "{tag}"
    );
    assert!(!shown.contains("step 2/4"), "{shown}");
    // The live line was redrawn in place while the slow step ran.
    let drawn = String::from_utf8_lossy(&bytes(&term.seen)).into_owned();
    let redraws = drawn
        .matches("skill:slow-recipe: step 2/4: RUN echo")
        .count();
    assert!(redraws > 1, "drawn {redraws} time(s):\n{drawn}");
    assert!(shown.contains("completed"), "{shown}");
    assert!(guard.leftovers().is_empty(), "{:?}", guard.leftovers());
}

/// The fixture's images (its recipe's and its skill's) whose history holds `nonce`: this test's
/// only, though another may build the same fixture on the same engine at the same time. The
/// skill's image first, as it is built on the recipe's.
fn built_with(nonce: String) -> impl Fn() -> Vec<String> + Send + Sync + 'static {
    // A guard's finder runs in `drop`, perhaps while a failed test unwinds: it must not panic.
    let quiet = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    };
    move || {
        let listed = quiet(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=perstack-sandbox/*-slow-recipe",
        ]);
        let mut ours: Vec<String> = listed
            .lines()
            .filter(|image| {
                quiet(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", image])
                    .contains(&nonce)
            })
            .map(String::from)
            .collect();
        ours.sort_unstable_by(|a, b| b.cmp(a));
        ours
    }
}
