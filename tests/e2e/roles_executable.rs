//! Which executable our images carry: `perstack-sandbox-roles` of this build — the
//! in-container roles alone, without the host's commands and the Kubernetes client — and a run
//! works with it; the whole controller when the roles executable beside it is of another build,
//! which the build says and the images' labels record.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::versioned::image_id;
use crate::support::{TestRun, binary, docker, require_docker};

/// Where every image has our executable (`contract::paths::BINARY_PATH`), as a tar names it.
const IN_IMAGE: &str = "usr/local/bin/perstack-sandbox";

/// Bytes only the Kubernetes client compiles in: kube's in-cluster token path.
const KUBE_CLIENT_MARKER: &[u8] = b"/var/run/secrets/kubernetes.io/serviceaccount/token";

/// This build's id (build.rs) and the mark both of its executables carry.
const BUILD_ID: &str = env!("PERSTACK_SANDBOX_BUILD_ID");
const BUILD_MARK: &str = concat!("perstack-sandbox build ", env!("PERSTACK_SANDBOX_BUILD_ID"));

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An image label's value (empty when it has none).
fn label(image: &str, key: &str) -> String {
    docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{key}\"}}}}"),
        image,
    ])
    .trim()
    .to_string()
}

/// The executable in `image`, read from `docker save`'s archive: the file at [`IN_IMAGE`] in
/// whichever layer has it.
fn executable_in(image: &str) -> Vec<u8> {
    let saved = Command::new("docker")
        .args(["save", image])
        .stderr(Stdio::inherit())
        .output()
        .expect("docker save");
    assert!(saved.status.success(), "docker save {image} failed");
    let mut outer = tar::Archive::new(saved.stdout.as_slice());
    let mut found = None;
    for entry in outer.entries().expect("an image archive") {
        let mut blob = Vec::new();
        entry.expect("entry").read_to_end(&mut blob).expect("read");
        // A layer is a tar of its own; the manifest and config are not, and are skipped.
        let mut layer = tar::Archive::new(blob.as_slice());
        let Ok(files) = layer.entries() else { continue };
        for mut file in files.flatten() {
            if file.path().is_ok_and(|p| p == Path::new(IN_IMAGE)) {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).expect("read the executable");
                found = Some(bytes);
            }
        }
    }
    found.unwrap_or_else(|| panic!("{image} has no {IN_IMAGE}"))
}

#[test]
fn a_run_s_images_carry_the_lean_roles_executable_of_this_build_and_it_runs_them() {
    if !require_docker() {
        return;
    }
    let host = std::fs::read(binary()).expect("the controller");
    let roles = std::fs::read(env!("CARGO_BIN_EXE_perstack-sandbox-roles")).expect("roles");
    // The marker means what it says: the controller has the client when it is built with it,
    // the roles executable never; both carry this build's mark.
    assert_eq!(
        contains(&host, KUBE_CLIENT_MARKER),
        cfg!(feature = "kubernetes")
    );
    assert!(!contains(&roles, KUBE_CLIENT_MARKER));
    assert!(contains(&roles, BUILD_MARK.as_bytes()));
    assert!(roles.len() < host.len(), "{} ≥ {}", roles.len(), host.len());

    // The runtime, base-skill and a skill server, all from the roles executable.
    let done = TestRun::new("e2e/isolation/perstack.toml", "isolation")
        .host_env("FIXTURE_TOKEN", "fixture-secret")
        .run();
    done.assert_code(0);
    // The skill server the roles executable started answered.
    assert!(done.tool_result("get_env").contains("fixture-secret"));
    for service in ["runtime", "base-skill", "skill:fixture"] {
        let tag = done.image_tag(service);
        assert_eq!(
            label(&tag, "io.perstack.sandbox.executable"),
            "perstack-sandbox-roles",
            "{service}"
        );
        assert_eq!(
            label(&tag, "io.perstack.sandbox.build"),
            BUILD_ID,
            "{service}"
        );
        let inside = executable_in(&tag);
        assert!(
            inside == roles,
            "{service}: {tag} does not carry the roles executable"
        );
        assert!(!contains(&inside, KUBE_CLIENT_MARKER), "{service}");
    }
}

#[test]
fn beside_a_roles_executable_of_another_build_the_images_carry_the_whole_controller() {
    if !require_docker() {
        return;
    }
    // A copy of the controller with a roles executable whose build mark is another's.
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = dir.path().join("perstack-sandbox");
    std::fs::copy(binary(), &controller).expect("copy the controller");
    let roles = std::fs::read(env!("CARGO_BIN_EXE_perstack-sandbox-roles")).expect("roles");
    let other_id: String = BUILD_ID
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let other_mark = format!("perstack-sandbox build {other_id}");
    assert!(contains(&roles, BUILD_MARK.as_bytes()));
    let mut stale_roles = roles.clone();
    while let Some(at) = stale_roles
        .windows(BUILD_MARK.len())
        .position(|w| w == BUILD_MARK.as_bytes())
    {
        stale_roles[at..at + BUILD_MARK.len()].copy_from_slice(other_mark.as_bytes());
    }
    std::fs::write(dir.path().join("perstack-sandbox-roles"), &stale_roles).expect("write");

    let project = tempfile::tempdir().expect("project");
    std::fs::write(
        project.path().join("perstack.toml"),
        "model = \"mock-model\"\n\n[provider]\nproviderName = \"mock\"\n\
         setting = { script = \"script.toml\" }\n\n\
         [experts.whole]\nversion = \"1.0.0\"\ninstruction = \"Answer.\"\n",
    )
    .expect("config");
    std::fs::write(
        project.path().join("script.toml"),
        "[[turn]]\ntext = \"Done.\"\n",
    )
    .expect("script");
    let id = perstack_sandbox::test_support::internals::new_id();
    let reference = format!("psbx-e2e-{id}:1.0");
    let mut images = perstack_sandbox::test_support::docker::DockerGuard::new();
    images.repository(&format!("psbx-e2e-{id}"));
    let built = Command::new(&controller)
        .args(["build", "whole", "--tag", &reference])
        .current_dir(project.path())
        .stdin(Stdio::null())
        .output()
        .expect("build");
    // The whole controller's images are this test's alone (their executable is): they go too.
    for tag in [reference.clone(), format!("{reference}-base-skill")] {
        if let Some(image) = image_id(&tag) {
            images.image(&image);
        }
    }
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "build failed:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "note: the images carry this whole executable ({}, ",
            controller.display()
        )) && stderr.contains(&format!(
            "not the lean perstack-sandbox-roles: {} is from another build",
            dir.path().join("perstack-sandbox-roles").display()
        )),
        "{stderr}"
    );
    assert_eq!(
        label(&reference, "io.perstack.sandbox.executable"),
        "perstack-sandbox"
    );
    assert_eq!(label(&reference, "io.perstack.sandbox.build"), BUILD_ID);
    let host = std::fs::read(binary()).expect("the controller");
    assert!(executable_in(&reference) == host);
}
