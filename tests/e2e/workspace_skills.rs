//! Real third-party MCP servers from PyPI that need the workspace, granted it in perstack.toml
//! (`[sandbox.skills."x"] workspace`): `uvx mcp-server-git` with a read-only grant reports
//! `git_status` of a repository in the workspace, and a write through it (`git_add`) fails;
//! `uvx mcp-server-sqlite` with a read-write grant creates a table in `/workspace/x.db`, a file
//! the invoking user owns afterwards. Both grants show in `skillStarting`; the repository is
//! unchanged.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::support::{TestRun, require_bookworm_image};

const CONFIG: &str = "e2e/workspace-skills/perstack.toml";

fn git(ws: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .current_dir(ws)
        .output()
        .expect("git (the tests need it on the host)");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// `.git` as it is: every file's path and bytes.
fn git_dir(ws: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![ws.join(".git")];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn mcp_server_git_reads_a_granted_workspace_and_mcp_server_sqlite_writes_it_as_the_user() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new(CONFIG, "keeper");
    let ws = run.workspace.path();
    std::fs::write(ws.join("README.md"), "tracked\n").unwrap();
    git(ws, &["init", "-q", "-b", "main"]);
    git(ws, &["add", "README.md"]);
    git(ws, &["commit", "-q", "-m", "first"]);
    std::fs::write(ws.join("notes.txt"), "untracked\n").unwrap();
    let before = git_dir(ws);

    let done = run.run();
    done.assert_code(0);

    let starting: Vec<(String, Option<String>)> = done
        .of_type("skillStarting")
        .iter()
        .map(|e| {
            (
                e["skillName"].as_str().unwrap_or_default().to_string(),
                e["workspace"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert!(
        starting.contains(&("git".into(), Some("read-only".into()))),
        "{starting:?}"
    );
    assert!(
        starting.contains(&("sqlite".into(), Some("read-write".into()))),
        "{starting:?}"
    );
    assert!(
        starting.contains(&("@perstack/base".into(), None)),
        "{starting:?}"
    );

    // Read-only: the status of the repository, as git sees it on the host.
    let status = done.tool_text("status");
    assert!(status.contains("On branch main"), "{status}");
    assert!(status.contains("notes.txt"), "{status}");
    // A write through it fails, and the repository is as it was.
    let add = done.tool_text("add");
    assert!(
        add.contains("Read-only file system") || add.contains("index.lock"),
        "git_add should fail: {add}"
    );
    assert_eq!(git_dir(ws), before, "the read-only skill changed .git");

    // Read-write: the database is in the workspace, the invoking user's.
    let create = done.tool_text("create");
    assert!(!create.to_lowercase().contains("error"), "{create}");
    let insert = done.tool_text("insert");
    assert!(!insert.to_lowercase().contains("error"), "{insert}");
    let db = ws.join("x.db");
    let meta = std::fs::metadata(&db).expect("x.db in the workspace");
    let me = std::fs::metadata("/proc/self").unwrap();
    assert_eq!((meta.uid(), meta.gid()), (me.uid(), me.gid()));
    let bytes = std::fs::read(&db).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("CREATE TABLE notes"), "no table in x.db");
    assert!(text.contains("kept by the sqlite skill"), "no row in x.db");

    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}

const TRIED: &str = "e2e/pypi-tried/perstack.toml";

/// A skill granted the workspace starts in it, as Perstack's starts in the folder it runs in:
/// `mcp-server-sqlite --db-path notes.db` keeps its database in the workspace, not on the
/// read-only root (where it could not even start).
#[test]
fn a_granted_skill_starts_in_the_workspace_so_relative_paths_land_there() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new(TRIED, "relative");
    let done = run.run();
    done.assert_code(0);
    let insert = done.tool_text("insert");
    assert!(!insert.to_lowercase().contains("error"), "{insert}");
    let db = run.workspace.path().join("notes.db");
    let meta = std::fs::metadata(&db).expect("notes.db in the workspace");
    let me = std::fs::metadata("/proc/self").unwrap();
    assert_eq!((meta.uid(), meta.gid()), (me.uid(), me.gid()));
    let text = String::from_utf8_lossy(&std::fs::read(&db).unwrap()).to_string();
    assert!(
        text.contains("relative to the workspace"),
        "no row in notes.db"
    );
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}

/// `uvx mcp-server-sqlite` unpinned gets the newest MCP SDK, 2.x, which dropped the API the
/// server uses: it cannot start, and the hint says to pin the SDK rather than (as a
/// `ModuleNotFoundError` would suggest) to install a module.
#[test]
fn a_server_written_for_the_sdk_1_is_told_to_pin_it() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new(TRIED, "unpinned");
    let done = run.run();
    done.assert_code(1);
    assert!(
        done.stderr
            .contains("hint: the server was written for the MCP Python SDK 1.x")
            && done.stderr.contains("uvx --with \"mcp<2\" <package>"),
        "{}",
        done.stderr
    );
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}
