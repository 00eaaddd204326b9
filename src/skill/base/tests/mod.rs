//! MCP round trips: the base skill on one end of an in-memory pipe, an rmcp client on the other.

mod path_safety;
mod protected;

use std::fs;
use std::os::unix::fs::symlink;

use rmcp::ServiceError;
use serde_json::json;

use super::*;
use crate::skill::server::testing::{Client, connect};

struct Fixture {
    dir: tempfile::TempDir,
    client: Client,
}

impl Fixture {
    fn root(&self) -> PathBuf {
        fs::canonicalize(self.dir.path()).unwrap()
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("hello.txt"), "line0\nline1\nline2").unwrap();
    fs::create_dir(dir.path().join("perstack")).unwrap();
    let client = connect(BaseSkill::new(dir.path()).unwrap()).await;
    Fixture { dir, client }
}

fn denied(message: &str) -> String {
    json!({ "error": "Error", "message": message }).to_string()
}

#[tokio::test]
async fn lists_every_base_tool_with_its_schema() {
    let f = fixture().await;
    let info = f.client.service.peer_info().expect("server info");
    assert_eq!(info.server_info.as_ref().unwrap().name, "@perstack/base");
    assert_eq!(
        info.server_info.as_ref().unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        f.client.tool_names().await,
        [
            "attemptCompletion",
            "todo",
            "clearTodo",
            "exec",
            "getFileInfo",
            "healthCheck",
            "readTextFile",
            "readImageFile",
            "readPdfFile",
            "writeTextFile",
            "appendTextFile",
            "editTextFile",
            "moveFile",
            "deleteFile",
            "listDirectory",
            "createDirectory",
            "deleteDirectory",
        ]
    );
    let tools = f.client.service.list_all_tools().await.unwrap();
    let required = |name: &str| {
        let tool = tools.iter().find(|t| t.name == name).unwrap();
        assert_eq!(tool.input_schema["type"], "object", "{name}");
        assert!(
            tool.description.as_deref().is_some_and(|d| d.len() > 20),
            "{name} needs a description"
        );
        tool.input_schema
            .get("required")
            .cloned()
            .unwrap_or(json!([]))
    };
    assert_eq!(
        required("exec"),
        json!(["command", "args", "env", "cwd", "stdout", "stderr"])
    );
    assert_eq!(
        required("editTextFile"),
        json!(["path", "newText", "oldText"])
    );
    assert_eq!(required("moveFile"), json!(["source", "destination"]));
    assert_eq!(required("todo"), json!([]));
    assert_eq!(required("readTextFile"), json!(["path"]));
}

#[tokio::test]
async fn every_listed_tool_is_dispatched() {
    let f = fixture().await;
    for name in f.client.tool_names().await {
        match f.client.call_raw(&name, json!({})).await {
            Ok(_) => {}
            Err(ServiceError::McpError(e)) => {
                assert!(
                    e.message.starts_with("Invalid arguments"),
                    "{name}: {}",
                    e.message
                )
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[tokio::test]
async fn unknown_tools_and_bad_arguments_are_protocol_errors() {
    let f = fixture().await;
    let Err(ServiceError::McpError(e)) = f.client.call_raw("think", json!({})).await else {
        panic!("unknown tool must fail");
    };
    assert_eq!(e.message, "Tool think not found");
    let Err(ServiceError::McpError(e)) =
        f.client.call_raw("readTextFile", json!({"path": 3})).await
    else {
        panic!("bad arguments must fail");
    };
    assert!(
        e.message
            .starts_with("Invalid arguments for tool readTextFile"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn todo_and_attempt_completion() {
    let f = fixture().await;
    assert_eq!(
        f.client.call_text("attemptCompletion", json!({})).await,
        "{}"
    );
    assert_eq!(
        f.client
            .call_text("todo", json!({"newTodos": ["write", "test"]}))
            .await,
        r#"{"todos":[{"id":0,"title":"write","completed":false},{"id":1,"title":"test","completed":false}]}"#
    );
    f.client
        .call_text("todo", json!({"completedTodos": [0]}))
        .await;
    assert_eq!(
        f.client.call_text("attemptCompletion", json!({})).await,
        r#"{"remainingTodos":[{"id":1,"title":"test","completed":false}]}"#
    );
    assert_eq!(
        f.client.call_text("clearTodo", json!({})).await,
        r#"{"todos":[]}"#
    );
    assert_eq!(
        f.client.call_text("attemptCompletion", json!({})).await,
        "{}"
    );
    assert_eq!(
        f.client
            .call_text("todo", json!({"newTodos": ["again"]}))
            .await,
        r#"{"todos":[{"id":0,"title":"again","completed":false}]}"#
    );
}

#[tokio::test]
async fn write_then_read_round_trip() {
    let f = fixture().await;
    let path = f.root().join("notes.md");
    assert_eq!(
        f.client
            .call_text("writeTextFile", json!({"path": "notes.md", "text": "a\nb"}))
            .await,
        json!({"path": path, "text": "a\nb"}).to_string()
    );
    assert_eq!(
        f.client
            .call_text("readTextFile", json!({"path": "notes.md", "from": 1}))
            .await,
        r#"{"path":"notes.md","content":"b","from":1,"to":2}"#
    );
    assert_eq!(
        f.client
            .call_text(
                "editTextFile",
                json!({"path": "notes.md", "oldText": "b", "newText": "c"})
            )
            .await,
        json!({"path": path, "newText": "c", "oldText": "b"}).to_string()
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "a\nc");
}

#[tokio::test]
async fn failures_are_error_json_not_is_error() {
    let f = fixture().await;
    let reserved = denied("Access denied - perstack directory is not allowed");
    for path in ["perstack/x.json", "PERSTACK/jobs", "./Perstack"] {
        assert_eq!(
            f.client
                .call_text("readTextFile", json!({"path": path}))
                .await,
            reserved,
            "{path}"
        );
        assert_eq!(
            f.client
                .call_text("writeTextFile", json!({"path": path, "text": "x"}))
                .await,
            reserved,
            "{path}"
        );
    }
    let result = f
        .client
        .call_raw("readTextFile", json!({"path": "missing.txt"}))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true));
    assert_eq!(
        result.content[0].as_text().unwrap().text,
        denied("File missing.txt does not exist.")
    );
}

#[tokio::test]
async fn path_escapes_are_denied_over_mcp() {
    let f = fixture().await;
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "s").unwrap();
    symlink(outside.path().join("secret"), f.root().join("leak")).unwrap();
    symlink(outside.path(), f.root().join("outdir")).unwrap();
    let secret = outside.path().join("secret");
    for args in [
        json!({"path": "../x"}),
        json!({"path": secret}),
        json!({"path": "leak"}),
        json!({"path": "outdir/secret"}),
    ] {
        let out = f.client.call_json("readTextFile", args.clone()).await;
        assert_eq!(out["error"], "Error", "{args}");
        assert!(
            out["message"]
                .as_str()
                .unwrap()
                .starts_with("Access denied"),
            "{args}: {out}"
        );
    }
    let out = f
        .client
        .call_json("writeTextFile", json!({"path": "outdir/new", "text": "x"}))
        .await;
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .starts_with("Access denied"),
        "{out}"
    );
    assert!(!outside.path().join("new").exists());
}

#[tokio::test]
async fn list_directory_hides_perstack() {
    let f = fixture().await;
    let out = f
        .client
        .call_json("listDirectory", json!({"path": "."}))
        .await;
    let names: Vec<&str> = out["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello.txt"]);
}

#[tokio::test]
async fn exec_over_mcp() {
    let f = fixture().await;
    let args = json!({
        "command": "cat", "args": ["hello.txt"], "env": {}, "cwd": ".", "stdout": true, "stderr": true
    });
    assert_eq!(
        f.client.call_text("exec", args).await,
        r#"{"output":"line0\nline1\nline2"}"#
    );
    let args = json!({
        "command": "sleep", "args": ["5"], "env": {}, "cwd": ".", "stdout": true, "stderr": true, "timeout": 100
    });
    assert_eq!(
        f.client.call_text("exec", args).await,
        r#"{"error":"Command timed out after 100ms."}"#
    );
}

#[tokio::test]
async fn health_check_shape() {
    let f = fixture().await;
    let out = f.client.call_json("healthCheck", json!({})).await;
    let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["status", "workspace", "uptime", "memory", "pid"]);
    assert_eq!(out["workspace"], json!(f.root()));
    assert_eq!(out["status"], "ok");
}

#[test]
fn workspace_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let err = BaseSkill::new(dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("--workspace"), "{err}");
}

/// readImageFile / readPdfFile send the bytes themselves (the runtime has no workspace mount),
/// and the runtime's result mapping turns them into inline parts for the model.
#[tokio::test]
async fn image_and_pdf_bytes_reach_the_model_as_inline_parts() {
    use crate::event::Part;
    use crate::skill::result::map_call_result;
    use base64::Engine as _;

    let f = fixture().await;
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRpixels";
    let pdf: &[u8] = b"%PDF-1.7\n1 0 obj\n%%EOF\n";
    fs::write(f.root().join("shot.png"), png).unwrap();
    fs::write(f.root().join("paper.pdf"), pdf).unwrap();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    for (tool, file, bytes, mime) in [
        ("readImageFile", "shot.png", png, "image/png"),
        ("readPdfFile", "paper.pdf", pdf, "application/pdf"),
    ] {
        let args = json!({ "path": file });
        let result = f.client.call_raw(tool, args.clone()).await.unwrap();
        let wire = serde_json::to_value(&result).unwrap();
        let output = map_call_result(tool, &args, &wire);
        assert!(!output.is_error);
        let [Part::TextPart { text, .. }, inline] = output.parts.as_slice() else {
            panic!(
                "{tool}: text + inline part expected, got {:?}",
                output.parts
            );
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(text).unwrap(),
            json!({ "path": f.root().join(file), "mimeType": mime, "size": bytes.len() })
        );
        match inline {
            Part::ImageInlinePart {
                encoded_data,
                mime_type,
                ..
            } if tool == "readImageFile" => {
                assert_eq!(
                    (encoded_data.as_str(), mime_type.as_str()),
                    (b64(bytes).as_str(), mime)
                );
            }
            Part::FileInlinePart {
                encoded_data,
                mime_type,
                ..
            } if tool == "readPdfFile" => {
                assert_eq!(
                    (encoded_data.as_str(), mime_type.as_str()),
                    (b64(bytes).as_str(), mime)
                );
            }
            other => panic!("{tool}: wrong inline part {other:?}"),
        }
    }
}

/// The largest files the tools accept fit in one MCP message: a 30 MiB PDF is 40 MiB of base64,
/// more than rmcp's default line limit (16 MiB).
#[tokio::test]
async fn the_largest_image_and_pdf_cross_mcp_whole() {
    use crate::skill::base::files::{MAX_IMAGE_SIZE, MAX_PDF_SIZE};

    let f = fixture().await;
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(usize::try_from(MAX_IMAGE_SIZE).unwrap(), 7);
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.resize(usize::try_from(MAX_PDF_SIZE).unwrap(), b' ');
    fs::write(f.root().join("big.png"), &png).unwrap();
    fs::write(f.root().join("big.pdf"), &pdf).unwrap();
    for (tool, file, size) in [
        ("readImageFile", "big.png", MAX_IMAGE_SIZE),
        ("readPdfFile", "big.pdf", MAX_PDF_SIZE),
    ] {
        // rmcp drops an oversized line and waits on: the timeout turns that hang into a failure.
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            f.client.call_raw(tool, json!({ "path": file })),
        )
        .await
        .unwrap_or_else(|_| panic!("{tool}: no answer (message dropped?)"))
        .unwrap();
        assert_eq!(result.content.len(), 2, "{tool}");
        let info: serde_json::Value =
            serde_json::from_str(&result.content[0].as_text().unwrap().text).unwrap();
        assert_eq!(info["size"], size, "{tool}");
    }
}
