//! A standalone image on a read-only root (`docker run --read-only`, ECS
//! `readonlyRootFilesystem`, Kubernetes `readOnlyRootFilesystem`): refused before anything starts
//! without a tmpfs at `/run/perstack`, saying so; with one, the run works, each skill's own folder
//! keeps the image's owner and mode (reported as a shortfall) and Landlock alone walls it off; a
//! recipe skill's `/tmp` is read-only unless a tmpfs is mounted there too; base tools running as
//! uid 0 stay non-dumpable.

use std::os::unix::fs::MetadataExt;

use serde_json::Value;

use crate::standalone::{Image, attempts, build, build_with, docker_run_with};
use crate::standalone::{Ran, recipe_turn, results_of, workspace};
use crate::support::npm_registry::{NpmPackage, NpmRegistry};
use crate::support::{
    JobGuard, fixture, require_bookworm_image, require_bookworm_node_image, require_docker,
    template,
};

const EACCES: i64 = 13;
const EROFS: i64 = 30;

/// The `isolationReport`'s `missing` entries that name a read-only root's skill folders.
fn folder_shortfalls(report: &Value) -> Vec<String> {
    report["missing"]
        .as_array()
        .unwrap_or_else(|| panic!("no missing list: {report}"))
        .iter()
        .filter_map(Value::as_str)
        .filter(|m| m.starts_with("skill folders' owners"))
        .map(str::to_string)
        .collect()
}

/// `docker run --read-only OPTIONS… IMAGE "Go"` over a fresh workspace; gives its output and
/// the workspace.
fn run_read_only(
    image: &Image,
    job: &JobGuard,
    options: &[&str],
) -> (std::process::Output, tempfile::TempDir) {
    let ws = workspace();
    let mut all = vec!["--read-only"];
    all.extend_from_slice(options);
    let out = docker_run_with(image, job, &all, &[], ws.path(), &["Go"]);
    (out, ws)
}

#[test]
fn on_a_read_only_root_it_needs_a_tmpfs_at_run_perstack_and_landlock_alone_walls_skills_off() {
    if !require_bookworm_node_image() {
        return;
    }
    let registry = NpmRegistry::start(vec![NpmPackage::pack(&fixture("npm/node-info"))]);
    let dir = template("e2e/standalone-read-only", &registry.fixture_vars());
    let image = build_with(dir.path(), "read-only", &[]);
    let job = JobGuard::new();

    // Without a tmpfs: refused before anything starts, saying what to mount in Docker's and
    // Kubernetes' words; nothing written to the workspace, nothing left. Podman's `--read-only`
    // mounts a tmpfs at /run itself (its `--read-only-tmpfs`, on by default): the run works.
    let (refused, ws) = run_read_only(&image, &job, &[]);
    if crate::support::on_podman() {
        Ran::ok(refused);
    } else {
        Ran::refused(
            &refused,
            2,
            &[
                "cannot make /run/perstack",
                "docker run --read-only --tmpfs /run/perstack …",
                "an emptyDir volume (medium: Memory) mounted at /run/perstack",
            ],
        );
        let left: Vec<_> = std::fs::read_dir(ws.path()).expect("workspace").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    // With one: the run completes, the package answers under a uid of its own.
    let (out, _ws) = run_read_only(&image, &job, &["--tmpfs", "/run/perstack"]);
    let Ran { events, stderr, .. } = Ran::ok(out);
    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "completeRun")
        .collect();
    assert_eq!(completed[0]["text"], "Node answered on a read-only root.");
    assert_eq!(results_of(&events, "node_info")[0]["reversed"], "kcatsrep");

    // The skill's folder kept the image's owner and mode: reported, on stderr and in the event.
    let own = "/opt/perstack-skills/node";
    let shortfalls = folder_shortfalls(&events[0]);
    assert_eq!(shortfalls.len(), 1, "{}", events[0]);
    assert!(shortfalls[0].contains(own), "{shortfalls:?}");
    assert!(
        shortfalls[0].contains("run with a writable root"),
        "{shortfalls:?}"
    );
    assert!(
        stderr.contains("warning: weaker isolation: skill folders' owners"),
        "{stderr}"
    );

    // Landlock still walls it off: the attacker can read neither the package nor its folder.
    let outcomes = attempts(&events);
    assert_eq!(
        outcomes["system-file"]["outcome"]["ok"], true,
        "{outcomes:?}"
    );
    for label in ["node-package", "node-folder"] {
        let attempt = &outcomes[label];
        assert!(attempt["error"].is_null(), "{label}: {attempt}");
        assert_eq!(attempt["outcome"]["errno"], EACCES, "{label}: {attempt}");
    }
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}

#[test]
fn on_a_read_only_root_a_recipe_skill_s_tmp_is_read_only_until_a_tmpfs_is_mounted_there() {
    if !require_bookworm_image() {
        return;
    }
    let _recipe = recipe_turn("prober");
    let image = build(&fixture("e2e/standalone-recipe"), "recipe");
    let job = JobGuard::new();
    let env = [("PROBER_TOKEN", "p"), ("VICTIM_TOKEN", "v")];
    let tmp = "/opt/perstack-skills/prober/rootfs/tmp";
    let run = |options: &[&str]| {
        let ws = workspace();
        let mut all = vec!["--read-only", "--tmpfs", "/run/perstack"];
        all.extend_from_slice(options);
        docker_run_with(&image, &job, &all, &env, ws.path(), &["Probe"])
    };

    // Its /tmp is the recipe's, on the read-only root: it starts, warned of, and cannot write
    // there; nor anywhere else in its root (the read-only mount answers before Landlock does).
    let Ran { events, stderr, .. } = Ran::ok(run(&[]));
    assert!(
        stderr.contains(&format!(
            "warning: skill `prober`'s /tmp ({tmp}) is on the container's read-only root"
        )) && stderr.contains(&format!("docker run --tmpfs {tmp}")),
        "{stderr}"
    );
    let outcomes = attempts(&events);
    assert_eq!(
        outcomes["own-tmp"]["outcome"]["errno"], EROFS,
        "{outcomes:?}"
    );
    assert_eq!(outcomes["write-root"]["outcome"]["errno"], EROFS);
    let shortfalls = folder_shortfalls(&events[0]);
    assert!(
        shortfalls
            .first()
            .is_some_and(|s| s.contains("/opt/perstack-skills/prober")),
        "{shortfalls:?}"
    );

    // A tmpfs there: made the skill's own, no warning, and it writes.
    let Ran { events, stderr, .. } = Ran::ok(run(&["--tmpfs", tmp]));
    assert!(!stderr.contains("/tmp ("), "{stderr}");
    let outcomes = attempts(&events);
    assert_eq!(outcomes["own-tmp"]["outcome"]["ok"], true, "{outcomes:?}");
    assert_eq!(outcomes["write-root"]["outcome"]["errno"], EROFS);
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}

/// A root-owned workspace (a Kubernetes `emptyDir`, a folder Docker made) runs the base tools as
/// uid 0 without capabilities. On a read-only root our binary cannot be re-owned for them: it is
/// exec-only in the image for root's own bits too, so their processes stay non-dumpable.
#[test]
fn on_a_read_only_root_base_tools_running_as_uid_0_stay_non_dumpable() {
    if !require_docker() {
        return;
    }
    let image = build(&fixture("e2e/standalone"), "demo");
    let ws = tempfile::tempdir().expect("tempdir");
    assert_eq!(std::fs::metadata(ws.path()).expect("meta").uid(), 0);
    let job = JobGuard::new();
    let Ran { events, .. } = Ran::ok(docker_run_with(
        &image,
        &job,
        &["--read-only", "--tmpfs", "/run/perstack"],
        &[("DEMO_TOKEN", "x")],
        ws.path(),
        &["Say hello"],
    ));
    let base = &events[0]["principals"][0];
    assert_eq!(base["principal"], "base tools", "{base}");
    assert_eq!(base["identity"]["uid"], 0, "{base}");
    assert_eq!(base["identity"]["capabilities_empty"], true, "{base}");
    assert_eq!(base["dumpable"]["after_exec"], "non-dumpable", "{base}");
    assert!(ws.path().join("hello.md").exists());
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}
