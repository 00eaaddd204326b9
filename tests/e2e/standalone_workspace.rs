//! The standalone image's workspace: a root-owned one (the seed's `docker run` as root, or a
//! folder Docker made), where the base tools run as uid 0 without capabilities, and what the
//! programs their `exec` runs may change in it.

use std::os::unix::fs::MetadataExt;

use serde_json::Value;

use crate::standalone::{build, docker_run, json_lines};
use crate::support::{JobGuard, fixture, require_docker};

/// The outcome of each `exec` the script made, in order: the JSON our binary's attempt printed.
fn exec_outcomes(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "resolveToolResults")
        .flat_map(|e| e["toolResults"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["toolName"] == "exec")
        .map(|r| {
            let text = r["result"][0]["text"].as_str().expect("text");
            let result: Value = serde_json::from_str(text).expect("JSON");
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
    let out = docker_run(
        &image,
        &job,
        &[("DEMO_TOKEN", "x")],
        ws.path(),
        &["Say hello"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events = json_lines(&out);
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
            "skill-home-write",
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
    // Another principal's files: outside the base tools' Landlock domain.
    refused(&outcomes["skill-home-write"], 13);
    assert_eq!(
        outcomes["work-write"]["ok"], true,
        "{}",
        outcomes["work-write"]
    );
    assert!(job.leftovers().is_empty(), "{:?}", job.leftovers());
}
