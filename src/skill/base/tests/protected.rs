//! The base tools and the protected paths (`trust::inputs`): every tool that changes a path
//! refuses one — written as is, in another letter case, through a symlinked folder, as a move's
//! source or destination, or as a folder holding one — naming the rule, and changes nothing.
//! Reading stays allowed. (The read-only mounts are the wall for `exec`; they are tested
//! through the engine in `tests/e2e/protected.rs`.)

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::path_safety::tree;
use crate::skill::base::BaseSkill;
use crate::skill::server::testing::{Client, connect};
use crate::trust::inputs::{InputKind, TrustedInput, protected_paths};

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    client: Client,
}

/// `<ws>`: perstack.toml, .env, .git/hooks/, conf/dev.env (an `envPath` entry), notes.txt, and
/// `g -> .git`; `.env.local` is protected but missing.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::create_dir_all(root.join(".git/hooks")).unwrap();
    fs::create_dir_all(root.join("conf")).unwrap();
    fs::write(root.join("perstack.toml"), "[experts.a]\n").unwrap();
    fs::write(root.join(".env"), "KEY=original\n").unwrap();
    fs::write(root.join("conf/dev.env"), "DEV=1\n").unwrap();
    fs::write(root.join("notes.txt"), "notes").unwrap();
    symlink(".git", root.join("g")).unwrap();
    let trusted = [
        (InputKind::Config, "perstack.toml"),
        (InputKind::Dotenv, ".env"),
        (InputKind::Dotenv, ".env.local"),
        (InputKind::Dotenv, "conf/dev.env"),
    ]
    .map(|(kind, path)| TrustedInput {
        kind,
        path: root.join(path),
    });
    let protected = protected_paths(&trusted, &root, &[]);
    let skill = BaseSkill::new(&root)
        .unwrap()
        .with_protected(protected, false);
    World {
        client: connect(skill).await,
        root,
        _dir: dir,
    }
}

impl World {
    async fn call(&self, tool: &str, args: Value) -> Value {
        self.client.call_json(tool, args).await
    }
}

#[tokio::test]
async fn every_change_of_a_protected_path_is_refused_naming_the_rule() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "writeTextFile",
            json!({"path": ".env", "text": "X=1"}),
            ".env is a protected path (a dotenv file the controller reads)",
        ),
        (
            "writeTextFile",
            json!({"path": "./.ENV", "text": "X=1"}),
            ".env is a protected path",
        ),
        (
            "writeTextFile",
            json!({"path": ".env.local", "text": "ANTHROPIC_BASE_URL=https://attacker.example/v1"}),
            ".env.local is a protected path (a dotenv file",
        ),
        (
            "writeTextFile",
            json!({"path": "/workspace/../x/.env", "text": "X"}),
            "outside",
        ),
        (
            "writeTextFile",
            json!({"path": ".git/hooks/pre-commit", "text": "#!/bin/sh\ncurl attacker"}),
            ".git is a protected path (git's folder, whose hooks and config run on the host)",
        ),
        (
            "writeTextFile",
            json!({"path": "g/hooks/pre-commit", "text": "#!/bin/sh"}),
            ".git is a protected path",
        ),
        (
            "writeTextFile",
            json!({"path": "~/perstack.toml", "text": "[experts.evil]"}),
            "perstack.toml is a protected path (the config the controller reads)",
        ),
        (
            "appendTextFile",
            json!({"path": ".env", "text": "\nX=1"}),
            ".env is a protected path",
        ),
        (
            "editTextFile",
            json!({"path": "perstack.toml", "oldText": "a", "newText": "evil"}),
            "perstack.toml is a protected path",
        ),
        (
            "editTextFile",
            json!({"path": "conf/dev.env", "oldText": "1", "newText": "2"}),
            "conf/dev.env is a protected path",
        ),
        (
            "deleteFile",
            json!({"path": ".env"}),
            ".env is a protected path",
        ),
        (
            "moveFile",
            json!({"source": ".env", "destination": "old.env"}),
            ".env is a protected path",
        ),
        (
            "moveFile",
            json!({"source": "notes.txt", "destination": ".env.local"}),
            ".env.local is a protected path",
        ),
        (
            "moveFile",
            json!({"source": "notes.txt", "destination": ".git/hooks/post-checkout"}),
            ".git is a protected path",
        ),
        (
            "moveFile",
            json!({"source": ".git", "destination": "old-git"}),
            ".git is a protected path",
        ),
        (
            "moveFile",
            json!({"source": "conf", "destination": "conf2"}),
            "conf/dev.env is a protected path",
        ),
        (
            "deleteDirectory",
            json!({"path": "conf", "recursive": true}),
            "conf/dev.env is a protected path",
        ),
        (
            "deleteDirectory",
            json!({"path": ".git/hooks", "recursive": true}),
            ".git is a protected path",
        ),
        (
            "createDirectory",
            json!({"path": ".git/info"}),
            ".git is a protected path",
        ),
        (
            "createDirectory",
            json!({"path": ".env.local"}),
            ".env.local is a protected path",
        ),
    ];
    for (tool, args, expected) in cases {
        let w = world().await;
        let before = tree(&w.root);
        let out = w.call(tool, args.clone()).await;
        let message = out["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{tool} {args}: {out}");
        if message.contains("protected path") {
            assert!(
                message.contains("writable = ["),
                "the answer says who can allow it: {message}"
            );
        }
        assert_eq!(tree(&w.root), before, "{tool} {args} changed the workspace");
    }
}

#[tokio::test]
async fn protected_paths_stay_readable_and_the_rest_writable() {
    let w = world().await;
    let out = w.call("readTextFile", json!({"path": ".env"})).await;
    assert_eq!(out["content"], "KEY=original\n", "{out}");
    let out = w
        .call("writeTextFile", json!({"path": ".envrc", "text": "ok"}))
        .await;
    assert!(out.get("message").is_none(), "{out}");
    let out = w
        .call(
            "writeTextFile",
            json!({"path": "conf/other.env", "text": "ok"}),
        )
        .await;
    assert!(out.get("message").is_none(), "{out}");
    let out = w
        .call("writeTextFile", json!({"path": ".gitignore", "text": "x"}))
        .await;
    assert!(out.get("message").is_none(), "{out}");
    assert_eq!(fs::read_to_string(w.root.join(".gitignore")).unwrap(), "x");
}
