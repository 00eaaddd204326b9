//! The standalone mode next to the multi-container one: the bench Expert built into one image
//! (`build --standalone --tag REF`) and run as the seed runs it, with plain `docker run --rm -v
//! WORKSPACE:/workspace REF "query"`, no controller and no Docker socket.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BENCH_LABEL, Result, docker, events};

/// The query every run of the bench Expert gets.
pub(crate) const QUERY: &str = "Call one tool of each skill.";

/// The standalone image of the bench Expert under a reference of this bench's own; that
/// reference is removed when dropped (the content-addressed tag the build made it from stays,
/// labelled as our images are, as the multi-container images stay cached).
pub(crate) struct Image {
    pub(crate) reference: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.reference]);
    }
}

/// `perstack-sandbox build EXPERT --standalone --tag REF` in the config's folder.
pub(crate) fn build(binary: &Path, folder: &Path, expert: &str, nonce: &str) -> Result<Image> {
    let image = Image {
        reference: format!("perstack-sandbox-bench/standalone-{expert}:{nonce}"),
    };
    let out = Command::new(binary)
        .args(["build", expert, "--standalone", "--tag", &image.reference])
        .current_dir(folder)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "build --standalone of `{expert}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(image)
}

/// One standalone run, timed from spawning `docker run`.
pub(crate) struct Timed {
    /// Spawn → the `initializeRuntime` line read.
    pub(crate) first_event: Duration,
    /// Spawn → `docker run` exited, the run complete and the container removed.
    pub(crate) total: Duration,
}

/// `docker run --rm` of the image with `workspace` as `/workspace`; the container carries our
/// `managed` label and the bench's, so an interrupted bench's leftover is found and removed.
pub(crate) fn run(image: &Image, workspace: &Path, nonce: &str) -> Result<Timed> {
    let started = Instant::now();
    let mut child = Command::new("docker")
        .args(["run", "--rm", "--label", "io.perstack.sandbox.managed=true"])
        .args(["--label", &format!("{BENCH_LABEL}={nonce}")])
        .arg("-v")
        .arg(format!("{}:/workspace", workspace.display()))
        .args([image.reference.as_str(), QUERY])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    let mut first_event = None;
    let mut completed = false;
    events::each(&mut child, started, "the standalone run", |event, now| {
        match event["type"].as_str().unwrap_or_default() {
            "initializeRuntime" if first_event.is_none() => first_event = Some(now),
            "completeRun" => completed = true,
            _ => {}
        }
        Ok(())
    })?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for docker run: {e}"))?;
    let total = started.elapsed();
    match first_event {
        Some(first_event) if out.status.success() && completed => Ok(Timed { first_event, total }),
        _ => Err(format!(
            "the standalone run did not complete ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// Times of one mode over the rounds.
#[derive(Default)]
pub(crate) struct Mode {
    /// Spawn → `initializeRuntime`.
    pub(crate) first_event: Vec<Duration>,
    /// Spawn → exit.
    pub(crate) total: Vec<Duration>,
    /// What it runs from, in MB as `docker image inspect` reports it.
    pub(crate) image_mb: f64,
}

/// The section comparing the modes: `multi` (three images, `images` naming them) and the
/// standalone image `reference`.
pub(crate) fn section(multi: &Mode, one: &Mode, images: &str, reference: &str) -> String {
    let header = "| measure | median | min | max | runs |\n|---|---|---|---|---|\n";
    format!(
        "\n## The two modes: multi-container and standalone\n\n\
         The same Expert `bench`, the same query and the same mock provider, run to completion \
         both ways with warm images; each round above also ran it standalone, right after the \
         multi-container warm run, so both met the same load.\n\n\
         - **Multi-container**: `perstack-sandbox run --json --config benches/fixture/perstack.toml \
         --workspace WORKSPACE --job-id ID bench \"{QUERY}\"`: the controller starts the runtime \
         and two skill containers and removes them after.\n\
         - **Standalone**: `perstack-sandbox build bench --standalone --tag {reference}` in \
         `benches/fixture` once, then per run `docker run --rm --label \
         io.perstack.sandbox.managed=true --label {BENCH_LABEL}=NONCE -v WORKSPACE:/workspace \
         {reference} \"{QUERY}\"`: one container, its supervisor starting the runtime, the base \
         tools and the skill as processes walled off from each other; the time to exit includes \
         the engine removing the container (`--rm`).\n\n\
         ### Multi-container\n\n{header}{}{}\n\
         ### Standalone\n\n{header}{}{}\n\
         ### Image size\n\n\
         | mode | images | size |\n|---|---|---|\n\
         | multi-container | {images} | {:.1} MB (sum) |\n\
         | standalone | one: `{reference}` | {:.1} MB |\n",
        super::row("start-up, to `initializeRuntime`", &multi.first_event),
        super::row("the run to completion: spawn to exit", &multi.total),
        super::row("start-up, to `initializeRuntime`", &one.first_event),
        super::row("the run to completion: spawn to exit", &one.total),
        multi.image_mb,
        one.image_mb,
    )
}
