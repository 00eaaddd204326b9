//! base-skill on a real workspace image (the local Debian image of `make test-images`): `exec` is
//! useful — a shell, python3, getent — and still runs with no secrets, no network, as the
//! invoking user, and without the run data under `perstack/`. Also: image and PDF bytes reach the
//! model as inline parts through the containers, and a missing workspace image stops the run
//! before anything starts.

use std::os::unix::fs::MetadataExt;

use base64::Engine as _;
use serde_json::Value;

use crate::support::registry::{registry_host, registry_vars};
use crate::support::{TestRun, require_bookworm_image, require_docker};

const FIXTURE_SECRET: &str = "fixture-secret-value-7f3a";
const PROVIDER_SECRET: &str = "sk-ant-provider-secret-9c1e";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRtest-pixels";
/// A PDF over 16 MiB: as base64 it is larger than rmcp's default message limit, so it checks
/// the runtime's MCP client takes the messages the base skill sends at its limits.
fn pdf() -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n%test document\n".to_vec();
    pdf.resize(17 * 1024 * 1024, b'%');
    pdf
}

/// The `{output}` or `{error, stdout?, stderr?}` object of each `exec` call, in order.
fn exec_results(done: &crate::support::Finished) -> Vec<Value> {
    done.tool_results("exec")
        .iter()
        .map(|parts| {
            let text = parts[0]["text"].as_str().expect("exec result text");
            serde_json::from_str(text).expect("exec result JSON")
        })
        .collect()
}

#[test]
fn exec_on_the_bookworm_image_has_a_shell_but_no_secrets_no_network_and_no_run_data() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::templated("e2e/workspace-image", "shell", &registry_vars())
        .host_env("FIXTURE_TOKEN", FIXTURE_SECRET)
        // The runtime container gets this one (`--env`); base-skill must not.
        .host_env("ANTHROPIC_API_KEY", PROVIDER_SECRET)
        .arg("--env")
        .arg("ANTHROPIC_API_KEY");
    let ws = run.workspace.path();
    std::fs::create_dir_all(ws.join("perstack/jobs")).unwrap();
    std::fs::write(
        ws.join("perstack/secret.json"),
        r#"{"checkpoint":"host only"}"#,
    )
    .unwrap();
    std::fs::write(ws.join("shot.png"), PNG).unwrap();
    let pdf_bytes = pdf();
    std::fs::write(ws.join("paper.pdf"), &pdf_bytes).unwrap();

    let done = run.run();
    done.assert_code(0);
    assert_eq!(done.of_type("completeRun")[0]["text"], "Shell checks done.");
    let exec = exec_results(&done);
    assert_eq!(exec.len(), 9, "{exec:#?}");

    // 1, 2: neither `env` nor any process's environment holds a secret.
    let env = exec[0]["output"].as_str().expect("env output");
    assert!(env.contains("PATH="), "{env}");
    let environ = exec[1]["output"].as_str().expect("environ output");
    assert!(environ.ends_with("END\n"), "{environ}");
    for (what, text) in [("env", env), ("/proc/*/environ", environ)] {
        for secret in [FIXTURE_SECRET, PROVIDER_SECRET] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
        assert!(!text.contains("FIXTURE_TOKEN"), "{what}:\n{text}");
        assert!(!text.contains("ANTHROPIC_API_KEY"), "{what}:\n{text}");
    }

    // 3, 4: no network: no route out, no DNS.
    let connect = exec[2]["output"].as_str().expect("python output");
    assert!(connect.starts_with("refused:"), "{connect}");
    assert!(
        exec[3]["error"].as_str().is_some_and(
            |e| e.starts_with(&format!("Command failed: getent hosts {}", registry_host()))
        ),
        "{}",
        exec[3]
    );

    // 5, 6: the invoking user, inside (as the engine maps it: uid 0 inside a rootless engine)
    // and on the host.
    let uid = nix::unistd::getuid().as_raw();
    let (inside, _) = crate::support::base_skill_user_inside((uid, nix::unistd::getgid().as_raw()));
    assert_eq!(exec[4]["output"], format!("{inside}\n"));
    let made = ws.join("by-exec.txt");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "made by exec\n");
    let meta = std::fs::metadata(&made).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (uid, nix::unistd::getgid().as_raw())
    );

    // 7, 8: `perstack/` is an empty read-only folder inside; the host's stays as it was.
    let peek = exec[6]["error"].as_str().expect("cat must fail");
    assert!(peek.contains("No such file or directory"), "{peek}");
    assert!(
        exec[6].get("stdout").is_none(),
        "ls shows nothing: {}",
        exec[6]
    );
    let change = exec[7]["error"].as_str().expect("write must fail");
    assert!(change.contains("Read-only file system"), "{change}");
    assert_eq!(
        std::fs::read_to_string(ws.join("perstack/secret.json")).unwrap(),
        r#"{"checkpoint":"host only"}"#
    );
    assert!(ws.join("perstack/jobs").is_dir());

    // 9: the image's root is read-only; /tmp is a writable tmpfs.
    let fs = exec[8]["output"].as_str().expect("fs output");
    assert!(
        fs.contains("touch: cannot touch '/etc/x': Read-only file system"),
        "{fs}"
    );
    assert!(fs.ends_with("tmp-ok\n"), "{fs}");

    // The image and the PDF came back as inline parts, bytes intact, across the containers.
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let image = &done.tool_results("readImageFile")[0];
    assert_eq!(image[1]["type"], "imageInlinePart", "{image:?}");
    assert_eq!(image[1]["mimeType"], "image/png");
    assert_eq!(image[1]["encodedData"], b64(PNG));
    let pdf = &done.tool_results("readPdfFile")[0];
    assert_eq!(pdf[1]["type"], "fileInlinePart", "{pdf:?}");
    assert_eq!(pdf[1]["mimeType"], "application/pdf");
    assert!(
        pdf[1]["encodedData"] == b64(&pdf_bytes),
        "the PDF's bytes changed"
    );

    // writeTextFile made the missing folders, as the invoking user.
    let notes = ws.join("deep/er/notes.md");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "nested");
    assert_eq!(std::fs::metadata(ws.join("deep")).unwrap().uid(), uid);

    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_missing_workspace_image_stops_the_run_before_any_container_and_says_how_to_get_one() {
    if !require_docker() {
        return;
    }
    let run = TestRun::new("e2e/missing-workspace-image/perstack.toml", "nothing");
    let done = run.run();
    done.assert_code(2);
    assert!(
        done.stderr
            .contains("base image `perstack-sandbox/not-built-here:none` is not available locally"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("make test-images"), "{}", done.stderr);
    assert!(
        done.stderr.contains("[sandbox] workspaceImage"),
        "{}",
        done.stderr
    );
    assert!(
        done.of_type("dockerContainerStatus").is_empty(),
        "{}",
        done.stdout
    );
    // Found before anything was recorded either: no job in the workspace.
    assert!(
        !run.workspace.path().join("perstack").exists(),
        "the run recorded a job before checking its base images"
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_base_image_flag_beats_the_files_setting() {
    if !crate::support::require_bookworm_image() {
        return;
    }
    // The file names an image that is not here; the flag names one that is.
    let run = TestRun::new("e2e/missing-workspace-image/perstack.toml", "nothing")
        .arg("--workspace-image")
        .arg(crate::support::BOOKWORM_IMAGE);
    let done = run.run();
    done.assert_code(0);
    assert!(
        !done.stderr.contains("not available locally"),
        "{}",
        done.stderr
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}
