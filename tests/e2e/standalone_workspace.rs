//! The standalone image's workspace: a root-owned one (the seed's `docker run` as root, or a
//! folder Docker made), where the base tools run as uid 0 without capabilities, and what the
//! programs their `exec` runs, and a skill granted it read-write, may change in it.

use std::os::unix::fs::MetadataExt;

use std::path::Path;

use serde_json::Value;

use crate::standalone::{Ran, attempts, build, docker_run, results_of};
use crate::support::{JobGuard, fixture, require_docker};

/// The outcome of each `exec` the script made, in order: the JSON our binary's attempt printed.
fn exec_outcomes(events: &[Value]) -> Vec<Value> {
    results_of(events, "exec")
        .into_iter()
        .map(|result| {
            let output = result["output"]
                .as_str()
                .unwrap_or_else(|| panic!("{result}"));
            serde_json::from_str(output.trim()).unwrap_or_else(|e| panic!("{e}: {output}"))
        })
        .collect()
}

/// The outcomes by the labels the script's comment lists, in its order.
fn labelled(outcomes: Vec<Value>, labels: &[&str]) -> std::collections::BTreeMap<String, Value> {
    assert_eq!(outcomes.len(), labels.len(), "{outcomes:?}");
    labels.iter().map(|l| l.to_string()).zip(outcomes).collect()
}

fn refused(outcome: &Value, errno: i64) {
    assert_eq!(outcome["ok"], false, "{outcome}");
    assert_eq!(outcome["errno"], errno, "{outcome}");
}

#[test]
fn a_root_owned_workspace_is_written_by_base_tools_as_root_without_capabilities() {
    if !require_docker() {
        return;
    }
    let image = build(&fixture("e2e/standalone-root"), "demo");
    // A folder root made, as `mkdir ws` as root or Docker's own for a missing one.
    let ws = tempfile::tempdir().expect("tempdir");
    assert_eq!(std::fs::metadata(ws.path()).expect("meta").uid(), 0);
    let job = JobGuard::new();
    let env = [("DEMO_TOKEN", "x")];
    let Ran { events, .. } = Ran::ok(docker_run(&image, &job, &env, ws.path(), &["Say hello"]));
    let principals = events[0]["principals"].as_array().expect("principals");
    let base = &principals[0];
    assert_eq!(base["principal"], "base tools");
    assert_eq!(base["identity"]["uid"], 0, "{base}");
    assert_eq!(base["identity"]["groups"], serde_json::json!([]), "{base}");
    assert_eq!(base["identity"]["capabilities_empty"], true, "{base}");
    assert_eq!(base["identity"]["bounding_set_empty"], true, "{base}");
    assert_eq!(base["dumpable"]["after_exec"], "non-dumpable", "{base}");
    assert!(principals[1]["identity"]["uid"].as_u64() > Some(0));

    // The files the run writes are the workspace owner's: root's.
    let hello = ws.path().join("hello.md");
    assert!(
        std::fs::read_to_string(&hello)
            .expect("hello.md")
            .contains("Hello")
    );
    assert_eq!(std::fs::metadata(&hello).expect("meta").uid(), 0);
    let written = ws.path().join("work/out.txt");
    assert_eq!(
        std::fs::read_to_string(&written).expect("out.txt"),
        "written"
    );
    assert_eq!(std::fs::metadata(&written).expect("meta").uid(), 0);

    let outcomes = labelled(
        exec_outcomes(&events),
        &[
            "status",
            "binary-chmod",
            "state-chmod",
            "supervisor-environ",
            "supervisor-signal",
            "supervisor-prlimit",
            "skill-home-write",
            "run-data-write",
            "work-write",
        ],
    );
    // What `exec` runs is uid 0 with no capability, and none comes back at execve.
    let status = &outcomes["status"]["value"];
    assert_eq!(status["Uid"], "0\t0\t0\t0", "{status}");
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
        assert_eq!(status[set], "0000000000000000", "{set}: {status}");
    }
    // What must not be uid 0's is not: our binary and the supervisor's folders (EPERM: not
    // the owner, and no CAP_FOWNER).
    refused(&outcomes["binary-chmod"], 1);
    refused(&outcomes["state-chmod"], 1);
    // The supervisor (root, PID 1, every secret in its environment): not readable, no signal.
    refused(&outcomes["supervisor-environ"], 13);
    refused(&outcomes["supervisor-signal"], 1);
    // Nor its resource limits, which uid 0 could otherwise set as the supervisor's uid (an
    // RLIMIT_CPU of one second is a SIGKILL from the kernel, which no signal scope sees).
    refused(&outcomes["supervisor-prlimit"], 1);
    // Another principal's files: outside the base tools' Landlock domain.
    refused(&outcomes["skill-home-write"], 13);
    // The run data is root's, as the base tools are: Landlock keeps it from `exec`'s programs.
    refused(&outcomes["run-data-write"], 13);
    assert_eq!(
        outcomes["work-write"]["ok"], true,
        "{}",
        outcomes["work-write"]
    );
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}

/// The labels of `standalone-protected`'s script, in its order.
const PROTECTED_PROBES: [&str; 19] = [
    "git-config-write",
    "git-config-rename",
    "git-config-remove",
    "git-rename",
    "git-mkdir",
    "git-file",
    "git-symlink",
    "run-data-write",
    "run-data-rename",
    "run-data-remove",
    "config-create",
    "config-rename",
    "config-remove",
    "work-write",
    "work-mkdir",
    "work-rename",
    "work-remove",
    "notes-write",
    "root-mkdir",
];

/// A workspace of uid 1000's, with `files` (relative path, contents) in it, all theirs: what
/// keeps `exec`'s programs from them is Landlock, not ownership.
pub fn owned_workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let ws = crate::standalone::workspace();
    for (path, text) in files {
        let path = ws.path().join(path);
        let parent = path.parent().expect("parent");
        std::fs::create_dir_all(parent).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        for owned in [parent, path.as_path()] {
            std::os::unix::fs::chown(owned, Some(1000), Some(1000)).expect("chown");
        }
    }
    ws
}

fn run_probes(
    image: &crate::standalone::Image,
    ws: &Path,
) -> std::collections::BTreeMap<String, Value> {
    let job = JobGuard::new();
    let Ran { events, .. } = Ran::ok(docker_run(
        image,
        &job,
        &[("DEMO_TOKEN", "x")],
        ws,
        &["Probe"],
    ));
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
    labelled(exec_outcomes(&events), &PROTECTED_PROBES)
}

/// Ordinary work inside a folder of the workspace succeeds.
fn ordinary_work_succeeds(outcomes: &std::collections::BTreeMap<String, Value>) {
    for label in ["work-write", "work-mkdir", "work-rename", "work-remove"] {
        assert_eq!(outcomes[label]["ok"], true, "{label}: {}", outcomes[label]);
    }
}

#[test]
fn programs_the_base_tools_exec_runs_cannot_change_the_protected_paths() {
    if !require_docker() {
        return;
    }
    let image = build(&fixture("e2e/standalone-protected"), "demo");
    let config = "[remote]\nurl = x\n";
    let ws = owned_workspace(&[
        (".git/config", config),
        ("perstack.toml", "model = \"x\"\n"),
        ("notes.txt", "notes"),
    ]);
    let outcomes = run_probes(&image, ws.path());
    // `.git` and what is in it: no write, rename or removal (EACCES: Landlock).
    for label in [
        "git-config-write",
        "git-config-rename",
        "git-config-remove",
        "git-rename",
    ] {
        refused(&outcomes[label], 13);
    }
    // It is there, so nothing can be made in its place.
    refused(&outcomes["git-mkdir"], 17);
    refused(&outcomes["git-file"], 21);
    refused(&outcomes["git-symlink"], 17);
    // The run data: the checkpoints' folder can be neither written, moved nor removed.
    for label in ["run-data-write", "run-data-rename", "run-data-remove"] {
        refused(&outcomes[label], 13);
    }
    // A file directly in the workspace: written in place, never renamed or removed.
    for label in ["config-rename", "config-remove"] {
        refused(&outcomes[label], 13);
    }
    assert_eq!(outcomes["config-create"]["ok"], true);
    assert_eq!(outcomes["notes-write"]["ok"], true);
    // What that costs: nothing new directly in the workspace (the file tools can).
    refused(&outcomes["root-mkdir"], 13);
    ordinary_work_succeeds(&outcomes);

    assert_eq!(
        std::fs::read_to_string(ws.path().join(".git/config")).expect("config"),
        config
    );
    assert!(ws.path().join("perstack.toml").is_file());
    assert!(!ws.path().join("perstack/planted").exists());
    assert!(ws.path().join("perstack/jobs").is_dir());
    assert!(!ws.path().join("out").exists());
    assert!(ws.path().join("work/sub").is_dir());

    // A workspace without `.git`: none can be made, as a folder, a `gitdir:` file or a link.
    let bare = owned_workspace(&[]);
    let outcomes = run_probes(&image, bare.path());
    for label in [
        "git-mkdir",
        "git-file",
        "git-symlink",
        "config-create",
        "notes-write",
    ] {
        refused(&outcomes[label], 13);
    }
    ordinary_work_succeeds(&outcomes);
    for absent in [".git", "perstack.toml", "notes.txt", "out"] {
        assert!(!bare.path().join(absent).exists(), "{absent}");
    }
}

#[test]
fn a_skill_granted_the_workspace_read_write_cannot_change_the_protected_paths() {
    if !require_docker() {
        return;
    }
    let image = build(&fixture("e2e/standalone-granted"), "granted");
    let config = "[remote]\nurl = x\n";
    let ws = owned_workspace(&[(".git/config", config), ("work/keep", "")]);
    let job = JobGuard::new();
    let Ran { events, .. } = Ran::ok(docker_run(&image, &job, &[], ws.path(), &["Probe"]));
    let outcomes = attempts(&events);
    // Its Landlock domain grants the entries that are neither protected nor above one (EACCES).
    for label in [
        "git-config-write",
        "git-config-rename",
        "git-config-remove",
        "run-data-write",
        "root-mkdir",
    ] {
        refused(&outcomes[label]["outcome"], 13);
    }
    // It runs as the workspace's owner, as the base tools do; the base tools' socket (their
    // `exec` and file tools) is still the runtime's alone: its folder is not the owner's.
    refused(&outcomes["base-tools-socket"]["outcome"], 13);
    // Work inside a folder of the workspace is its own.
    assert_eq!(
        outcomes["work-write"]["outcome"]["ok"], true,
        "{}",
        outcomes["work-write"]
    );
    assert!(ws.path().join("work/out.txt").is_file());
    assert_eq!(
        std::fs::read_to_string(ws.path().join(".git/config")).expect("config"),
        config
    );
    assert!(!ws.path().join("perstack/planted").exists());
    assert!(!ws.path().join("out").exists());
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}
