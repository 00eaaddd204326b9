//! Protected paths through the real engine: a run of the mock provider tries to change what the
//! next run or the host trusts — perstack.toml, `.env` (there) and `.env.local` (not there), the
//! mock script, `.git` — with base-skill's file tools and with `exec` and a shell (writes,
//! truncation, removal, renames, hard and symbolic links, `git init`, a rename of the folder
//! above). Every attempt fails; the tools name the rule; nothing is left behind (no
//! placeholder, no container). In the default layout (the workspace is the config's folder)
//! and in a `--workspace` layout (the config's folder below the workspace).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::{TestRun, fixture, require_bookworm_image};

const ENV: &str = "PROTECTED_MARK=original\n";
const GIT_CONFIG: &str = "[core]\n\tbare = false\n";

/// Writes the fixture into `dir` with `{{P}}` = `prefix`.
fn write_project(dir: &Path, prefix: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for name in ["perstack.toml", "script.toml"] {
        let text = std::fs::read_to_string(fixture("e2e/protected").join(name)).unwrap();
        std::fs::write(dir.join(name), text.replace("{{P}}", prefix)).unwrap();
    }
    std::fs::write(dir.join(".env"), ENV).unwrap();
}

/// Every entry below `dir` (links not followed), with a file's bytes or a link's target.
fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let shown = if meta.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                todo.push(path.clone());
                "<dir>".to_string()
            } else {
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()
            };
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), shown);
        }
    }
    out
}

/// Runs the intruder in `run` and checks every attempt failed; `project` is where the config
/// lies, `prefix` the same relative to the workspace.
fn attack(run: &TestRun, project: &Path, prefix: &str) {
    let ws = run.workspace.path();
    let before = tree(ws);
    let done = run.run();
    done.assert_code(0);
    for id in ["write-env-local", "edit-config", "write-hook"] {
        let text = done.tool_text(id);
        assert!(
            text.contains("is a protected path (") && text.contains("writable = ["),
            "{id}: {text}"
        );
    }
    let shell: serde_json::Value = serde_json::from_str(&done.tool_text("shell")).unwrap();
    let shell = shell["output"].as_str().unwrap_or_default().to_string();
    let results: Vec<(&str, &str)> = shell.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(results.len(), 19, "{shell}");
    for (name, result) in &results {
        let expected = if *name == "notes" { "ok" } else { "fail" };
        assert_eq!(*result, expected, "{name}:\n{shell}");
    }
    // What the next run and the host read is as it was; only notes.txt is new.
    let mut after = tree(ws);
    assert_eq!(
        after.remove(Path::new("notes.txt")).as_deref(),
        Some("ok\n")
    );
    let owner = std::fs::metadata(ws.join("notes.txt")).unwrap().uid();
    assert_eq!(
        owner,
        nix_uid(),
        "what the run writes is the invoking user's"
    );
    // The controller's own run data is new too, and so is the link the symlink attempt made
    // on its way (`g -> .git`, through which nothing could be written).
    after.retain(|path, _| !path.starts_with("perstack"));
    assert_eq!(after.remove(Path::new("g")).as_deref(), Some("-> .git"));
    let mut before = before;
    before.retain(|path, _| !path.starts_with("perstack"));
    assert_eq!(after, before, "the run changed the workspace:\n{shell}");
    assert_eq!(std::fs::read_to_string(project.join(".env")).unwrap(), ENV);
    assert!(!project.join(".env.local").exists(), "no placeholder left");
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
    // The folder above a nested config cannot be renamed away: it was tried.
    assert!(prefix.is_empty() || results.contains(&("rename-parent", "fail")));
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

#[test]
fn a_run_cannot_change_what_the_next_run_trusts_in_the_default_layout() {
    if !require_bookworm_image() {
        return;
    }
    let mut run = TestRun::new("unused", "intruder");
    let ws = run.workspace.path().to_path_buf();
    write_project(&ws, "");
    std::fs::create_dir_all(ws.join(".git/hooks")).unwrap();
    std::fs::write(ws.join(".git/config"), GIT_CONFIG).unwrap();
    run.config = ws.join("perstack.toml");
    attack(&run, &ws, "");
    assert_eq!(
        std::fs::read_to_string(ws.join(".git/config")).unwrap(),
        GIT_CONFIG
    );
}

#[test]
fn a_run_cannot_change_what_the_next_run_trusts_with_the_config_below_the_workspace() {
    if !require_bookworm_image() {
        return;
    }
    // No `.git` at all: a run must not be able to create one either.
    let mut run = TestRun::new("unused", "intruder");
    let project = run.workspace.path().join("project");
    write_project(&project, "project/");
    run.config = project.join("perstack.toml");
    run.current_dir = Some(project.clone());
    attack(&run, &project, "project/");
    assert!(
        !run.workspace.path().join(".git").exists(),
        "no placeholder left"
    );
}
