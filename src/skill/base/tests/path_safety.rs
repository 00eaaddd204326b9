//! Path safety of every base tool that takes a path, over MCP: each rule of
//! [`crate::skill::base::paths`] against each tool it applies to, asserting the concrete outcome
//! (the error, and that nothing outside the workspace or under `perstack/` changed; or, for the
//! rules that allow a path, the effect on the right file).
//!
//! Each case runs against a fresh workspace:
//!
//! ```text
//! <tmp>/ws         a.txt ("secret"), src.txt, pic.png, doc.pdf, sub/keep.txt,
//!                  perstack/secret.json,
//!                  leak -> outside/secret.txt, leakpng -> outside/pic.png,
//!                  leakpdf -> outside/doc.pdf, outdir -> outside/, dangling -> outside/missing,
//!                  inlink -> a.txt, inpng -> pic.png, inpdf -> doc.pdf, p -> perstack/
//! <tmp>/outside    secret.txt ("secret"), pic.png, doc.pdf, dir/keep.txt
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::skill::base::BaseSkill;
use crate::skill::server::testing::{Client, connect};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const PDF: &[u8] = b"%PDF-1.4 secret";
const RESERVED: &str = "Access denied - perstack directory is not allowed";
const NOFOLLOW: &str = "Operation denied: target is a symbolic link";

/// A tool and the argument that carries the path under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    GetFileInfo,
    ReadTextFile,
    ReadImageFile,
    ReadPdfFile,
    WriteTextFile,
    AppendTextFile,
    EditTextFile,
    MoveSource,
    MoveDestination,
    DeleteFile,
    ListDirectory,
    CreateDirectory,
    DeleteDirectory,
    ExecCwd,
}

use Tool::*;

const EVERY_TOOL: [Tool; 14] = [
    GetFileInfo,
    ReadTextFile,
    ReadImageFile,
    ReadPdfFile,
    WriteTextFile,
    AppendTextFile,
    EditTextFile,
    MoveSource,
    MoveDestination,
    DeleteFile,
    ListDirectory,
    CreateDirectory,
    DeleteDirectory,
    ExecCwd,
];

impl Tool {
    fn call(self, path: &str) -> (&'static str, Value) {
        match self {
            GetFileInfo => ("getFileInfo", json!({ "path": path })),
            ReadTextFile => ("readTextFile", json!({ "path": path })),
            ReadImageFile => ("readImageFile", json!({ "path": path })),
            ReadPdfFile => ("readPdfFile", json!({ "path": path })),
            WriteTextFile => ("writeTextFile", json!({ "path": path, "text": "pwned" })),
            AppendTextFile => ("appendTextFile", json!({ "path": path, "text": "pwned" })),
            EditTextFile => (
                "editTextFile",
                json!({ "path": path, "oldText": "secret", "newText": "pwned" }),
            ),
            MoveSource => (
                "moveFile",
                json!({ "source": path, "destination": "moved" }),
            ),
            MoveDestination => (
                "moveFile",
                json!({ "source": "src.txt", "destination": path }),
            ),
            DeleteFile => ("deleteFile", json!({ "path": path })),
            ListDirectory => ("listDirectory", json!({ "path": path })),
            CreateDirectory => ("createDirectory", json!({ "path": path })),
            DeleteDirectory => (
                "deleteDirectory",
                json!({ "path": path, "recursive": true }),
            ),
            ExecCwd => (
                "exec",
                json!({ "command": "ls", "args": [], "env": {}, "cwd": path,
                        "stdout": true, "stderr": true }),
            ),
        }
    }
}

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    client: Client,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(dir.path()).unwrap();
    let (root, outside) = (base.join("ws"), base.join("outside"));
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::create_dir_all(root.join("perstack")).unwrap();
    fs::create_dir_all(outside.join("dir")).unwrap();
    for place in [&root, &outside] {
        fs::write(place.join("pic.png"), PNG).unwrap();
        fs::write(place.join("doc.pdf"), PDF).unwrap();
    }
    fs::write(root.join("a.txt"), "secret").unwrap();
    fs::write(root.join("src.txt"), "source").unwrap();
    fs::write(root.join("sub/keep.txt"), "keep").unwrap();
    fs::write(root.join("perstack/secret.json"), "secret").unwrap();
    fs::write(outside.join("secret.txt"), "secret").unwrap();
    fs::write(outside.join("dir/keep.txt"), "keep").unwrap();
    for (link, target) in [
        ("leak", outside.join("secret.txt")),
        ("leakpng", outside.join("pic.png")),
        ("leakpdf", outside.join("doc.pdf")),
        ("outdir", outside.clone()),
        ("dangling", outside.join("missing")),
        ("inlink", root.join("a.txt")),
        ("inpng", root.join("pic.png")),
        ("inpdf", root.join("doc.pdf")),
        ("p", root.join("perstack")),
    ] {
        symlink(target, root.join(link)).unwrap();
    }
    let client = connect(BaseSkill::new(&root).unwrap()).await;
    World {
        _dir: dir,
        root,
        outside,
        client,
    }
}

impl World {
    /// Calls the tool and returns its first content item parsed as JSON.
    async fn call(&self, tool: Tool, path: &str) -> Value {
        let (name, args) = tool.call(path);
        let result = self.client.call_raw(name, args).await.expect("tool call");
        let text = &result.content[0].as_text().expect("text item").text;
        serde_json::from_str(text).unwrap()
    }
}

/// The failure message of a result: `message` for the file tools, `error` for `exec`.
fn failure(tool: Tool, out: &Value) -> String {
    let key = if tool == ExecCwd { "error" } else { "message" };
    match out[key].as_str() {
        Some(message) => message.to_owned(),
        None => panic!("{tool:?} should have failed: {out}"),
    }
}

/// Every entry below `dir` (symlinks not followed) with a file's contents, a link's target, or
/// `<dir>`: what must not change.
pub(super) fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", target.display()));
            } else if meta.is_dir() {
                out.insert(rel, "<dir>".into());
                walk(base, &path, out);
            } else {
                out.insert(
                    rel,
                    String::from_utf8_lossy(&fs::read(&path).unwrap()).into(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[tokio::test]
async fn symlink_escapes_are_refused_and_nothing_outside_changes() {
    let cases: &[(Tool, &[&str])] = &[
        (GetFileInfo, &["leak", "outdir/secret.txt", "outdir/dir"]),
        (ReadTextFile, &["leak", "outdir/secret.txt"]),
        (ReadImageFile, &["leakpng", "outdir/pic.png"]),
        (ReadPdfFile, &["leakpdf", "outdir/doc.pdf"]),
        (
            WriteTextFile,
            &[
                "leak",
                "outdir/secret.txt",
                "outdir/new.txt",
                "outdir/new/deeper.txt",
                "dangling",
                "dangling/x.txt",
            ],
        ),
        (AppendTextFile, &["leak", "outdir/secret.txt"]),
        (EditTextFile, &["leak", "outdir/secret.txt"]),
        (MoveSource, &["leak", "outdir/secret.txt", "outdir/dir"]),
        (
            MoveDestination,
            &["outdir/moved", "outdir/new/moved", "dangling/moved"],
        ),
        (DeleteFile, &["leak", "outdir/secret.txt"]),
        (ListDirectory, &["outdir", "outdir/dir"]),
        (CreateDirectory, &["outdir/newdir", "dangling"]),
        (DeleteDirectory, &["outdir", "outdir/dir"]),
        (ExecCwd, &["outdir", "outdir/dir"]),
    ];
    assert_eq!(cases.len(), EVERY_TOOL.len(), "every tool has a case");
    for (tool, paths) in cases {
        for path in *paths {
            let w = world().await;
            let before = (tree(&w.outside), tree(&w.root));
            let out = w.call(*tool, path).await;
            let message = failure(*tool, &out);
            assert!(
                message.starts_with("Access denied"),
                "{tool:?} {path}: {out}"
            );
            assert_eq!(
                (tree(&w.outside), tree(&w.root)),
                before,
                "{tool:?} {path} changed files"
            );
        }
    }
}

#[tokio::test]
async fn the_perstack_directory_is_reserved_in_any_case_and_through_symlinks() {
    let file = [
        "perstack/secret.json",
        "PERSTACK/secret.json",
        "p/secret.json",
    ];
    let dir = ["perstack", "PerStack", "p"];
    let new = ["perstack/new", "PERSTACK/new", "p/new", "perstack/a/b/new"];
    let cases: &[(Tool, &[&str])] = &[
        (GetFileInfo, &file),
        (ReadTextFile, &file),
        (ReadImageFile, &file),
        (ReadPdfFile, &file),
        (WriteTextFile, &[&file[..], &new[..]].concat()),
        (AppendTextFile, &file),
        (EditTextFile, &file),
        (MoveSource, &[&file[..], &dir[..]].concat()),
        (MoveDestination, &new),
        (DeleteFile, &file),
        (ListDirectory, &dir),
        (CreateDirectory, &new),
        (DeleteDirectory, &dir),
        (ExecCwd, &dir),
    ];
    assert_eq!(cases.len(), EVERY_TOOL.len(), "every tool has a case");
    for (tool, paths) in cases {
        for path in *paths {
            let w = world().await;
            let before = tree(&w.root);
            let out = w.call(*tool, path).await;
            assert_eq!(failure(*tool, &out), RESERVED, "{tool:?} {path}");
            assert_eq!(tree(&w.root), before, "{tool:?} {path} changed files");
        }
    }
}

/// What a successful call must have done, given the workspace root and the result.
type Effect = fn(&Path, &Value);

fn success_cases() -> Vec<(Tool, &'static str, Effect)> {
    vec![
        (GetFileInfo, "a.txt", |root, out| {
            assert_eq!(out["path"], json!(root.join("a.txt")))
        }),
        (ReadTextFile, "a.txt", |_, out| {
            assert_eq!(out["content"], "secret")
        }),
        (ReadImageFile, "pic.png", |root, out| {
            assert_eq!(out["path"], json!(root.join("pic.png")))
        }),
        (ReadPdfFile, "doc.pdf", |root, out| {
            assert_eq!(out["path"], json!(root.join("doc.pdf")))
        }),
        (WriteTextFile, "new.txt", |root, _| {
            assert_eq!(fs::read_to_string(root.join("new.txt")).unwrap(), "pwned")
        }),
        (AppendTextFile, "a.txt", |root, _| {
            assert_eq!(
                fs::read_to_string(root.join("a.txt")).unwrap(),
                "secretpwned"
            )
        }),
        (EditTextFile, "a.txt", |root, _| {
            assert_eq!(fs::read_to_string(root.join("a.txt")).unwrap(), "pwned")
        }),
        (MoveSource, "src.txt", |root, _| {
            assert_eq!(fs::read_to_string(root.join("moved")).unwrap(), "source");
            assert!(!root.join("src.txt").exists());
        }),
        (MoveDestination, "moved2", |root, _| {
            assert_eq!(fs::read_to_string(root.join("moved2")).unwrap(), "source")
        }),
        (DeleteFile, "a.txt", |root, _| {
            assert!(!root.join("a.txt").exists())
        }),
        (ListDirectory, "sub", |_, out| {
            assert_eq!(out["items"][0]["name"], "keep.txt")
        }),
        (CreateDirectory, "newdir", |root, _| {
            assert!(root.join("newdir").is_dir())
        }),
        (DeleteDirectory, "sub", |root, _| {
            assert!(!root.join("sub").exists())
        }),
        (ExecCwd, "sub", |_, out| {
            assert_eq!(out["output"], "keep.txt\n")
        }),
    ]
}

#[tokio::test]
async fn relative_paths_resolve_against_the_workspace() {
    let cases = success_cases();
    assert_eq!(cases.len(), EVERY_TOOL.len(), "every tool has a case");
    for (tool, name, effect) in cases {
        // Against the workspace, not the test's current directory; `..` resolved lexically.
        for path in [name.to_string(), format!("sub/../{name}")] {
            let w = world().await;
            let out = w.call(tool, &path).await;
            assert!(out.get("message").is_none(), "{tool:?} {path}: {out}");
            effect(&w.root, &out);
        }
    }
}

#[tokio::test]
async fn tilde_expands_to_the_workspace() {
    let cases = success_cases();
    assert_eq!(cases.len(), EVERY_TOOL.len(), "every tool has a case");
    for (tool, name, effect) in cases {
        let w = world().await;
        let path = format!("~/{name}");
        let out = w.call(tool, &path).await;
        assert!(out.get("message").is_none(), "{tool:?} {path}: {out}");
        effect(&w.root, &out);
    }
}

#[tokio::test]
async fn a_missing_parent_is_refused_except_where_mkdir_p_applies() {
    for tool in EVERY_TOOL {
        let w = world().await;
        let out = w.call(tool, "no/such/x").await;
        match tool {
            WriteTextFile => {
                assert_eq!(
                    fs::read_to_string(w.root.join("no/such/x")).unwrap(),
                    "pwned"
                );
            }
            MoveDestination => {
                assert_eq!(
                    fs::read_to_string(w.root.join("no/such/x")).unwrap(),
                    "source"
                );
                assert!(!w.root.join("src.txt").exists());
            }
            _ => {
                assert_eq!(
                    failure(tool, &out),
                    format!(
                        "Parent directory does not exist: {}",
                        w.root.join("no/such").display()
                    ),
                    "{tool:?}"
                );
                assert!(!w.root.join("no").exists(), "{tool:?} created a parent");
            }
        }
    }
}

#[tokio::test]
async fn reads_and_writes_never_follow_a_symlink_even_inside() {
    let cases = [
        (ReadTextFile, "inlink"),
        (ReadImageFile, "inpng"),
        (ReadPdfFile, "inpdf"),
        (WriteTextFile, "inlink"),
        (AppendTextFile, "inlink"),
        (EditTextFile, "inlink"),
    ];
    for (tool, path) in cases {
        let w = world().await;
        let before = tree(&w.root);
        let out = w.call(tool, path).await;
        assert_eq!(failure(tool, &out), NOFOLLOW, "{tool:?} {path}");
        assert_eq!(tree(&w.root), before, "{tool:?} {path} changed files");
    }
}
