//! `export kubernetes --image REF` on a real versioned image: the objects name the version's
//! images, every variable is a reference to a Secret key (the value in this process's
//! environment is nowhere in the output), a token key exists exactly for the principal with
//! `allowedDomains`, and bad flags are refused before anything is read.
//!
//! The objects themselves are pinned by `src/sandbox/k8s` (snapshot and invariants) and checked
//! against Kubernetes' schemas by `scripts/validate-k8s-manifests.sh`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::versioned::{REGISTRY, VersionedProject, image_id, require_registry};
use crate::support::{binary, require_docker};

/// An Expert whose one skill needs `var` and may reach example.com, so it is a principal of
/// the proxy; the mock provider keeps the runtime off the network.
fn write_config(dir: &Path, var: &str) {
    std::fs::write(
        dir.join("perstack.toml"),
        format!(
            r#"
model = "mock-model"

[provider]
providerName = "mock"
setting = {{ script = "script.toml" }}

[experts.exported]
version = "1.0.0"
instruction = "Ask the probe."

[experts.exported.skills.probe]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["{var}"]
allowedDomains = ["example.com"]
"#
        ),
    )
    .expect("write config");
    std::fs::write(dir.join("script.toml"), "[[turn]]\ntext = \"done\"\n").expect("write script");
}

fn export(args: &[&str], var: &str) -> (Option<i32>, String, String) {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = Command::new(binary())
        .args(["export", "kubernetes"])
        .args(args)
        .current_dir(elsewhere.path())
        .env(var, "value-from-the-host-environment")
        .stdin(Stdio::null())
        .output()
        .expect("export");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_versioned_image_exports_as_objects_that_reference_its_images_and_secrets_only() {
    if !require_docker() {
        return;
    }
    let mut project = VersionedProject::new("EXPORTED", None, write_config);
    let (reference, var, repository) = (
        project.reference.clone(),
        project.var.clone(),
        project.repository.clone(),
    );
    project.build("exported", &[]);
    project.own_images();

    let secret_ref = format!("{var}=app-keys/probe");
    let (code, yaml, stderr) = export(
        &[
            "--image",
            &reference,
            "-n",
            "ci-agents",
            "--secret",
            &secret_ref,
            "--workspace-pvc",
            "ws-1",
            "--timeout",
            "30m",
        ],
        &var,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!yaml.contains("value-from-the-host-environment"), "{yaml}");
    for kind in ["NetworkPolicy", "Service", "Deployment", "Job"] {
        assert!(
            yaml.contains(&format!("kind: \"{kind}\"")),
            "{kind}: {yaml}"
        );
    }
    for image in [
        reference.clone(),
        format!("{reference}-skill-probe"),
        format!("{reference}-base-skill"),
        format!("{reference}-egress-proxy"),
    ] {
        assert!(
            yaml.contains(&format!("image: \"{image}\"")),
            "{image}: {yaml}"
        );
    }
    // The object's name is the repository's; the skill's variable comes from where --secret
    // says, the query and the skill's token from the default Secret.
    assert!(yaml.contains(&format!("name: \"{repository}\"")), "{yaml}");
    assert!(yaml.contains("namespace: \"ci-agents\""));
    assert!(yaml.contains("claimName: \"ws-1\""));
    assert!(yaml.contains("activeDeadlineSeconds: 1800"));
    assert!(
        yaml.contains(&format!(
            "- name: \"{var}\"\n              valueFrom:\n                secretKeyRef:\n                  name: \"app-keys\"\n                  key: \"probe\""
        )),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("#   app-keys/probe <- {var}")),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("#   {repository}/query <- query")),
        "{yaml}"
    );
    // One principal (the skill), so one token key; the mock runtime is no principal.
    let tokens: Vec<&str> = yaml
        .lines()
        .filter(|l| l.starts_with("#   ") && l.contains("<- proxy-token-"))
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(tokens[0].contains("proxy-token-skill-probe"), "{tokens:?}");
    assert!(yaml.contains("value: \"http://skill%3Aprobe:$(PSB_PROXY_TOKEN)@"));
}

#[test]
fn push_to_builds_tags_and_pushes_the_version_then_exports_it() {
    if !require_registry() {
        return;
    }
    let mut project = VersionedProject::new("EXPORTED", Some(REGISTRY), write_config);
    let (reference, var, id) = (
        project.reference.clone(),
        project.var.clone(),
        project.id.clone(),
    );
    let config = project.dir.path().join("perstack.toml");
    let (code, yaml, stderr) = export(
        &[
            "exported",
            "--push-to",
            &reference,
            "--config",
            config.to_str().expect("utf-8"),
        ],
        &var,
    );
    for suffix in ["", "-skill-probe"] {
        if let Some(image) = image_id(&format!("{reference}{suffix}")) {
            project.images.image(&image);
        }
    }
    assert_eq!(code, Some(0), "{stderr}");
    // Only YAML on stdout; the build's progress and summary on stderr.
    assert!(
        yaml.starts_with("# Made by `perstack-sandbox export kubernetes --image "),
        "{yaml}"
    );
    assert!(
        stderr.contains("built, tagged and pushed 4 image(s)"),
        "{stderr}"
    );
    assert!(
        yaml.contains(&format!("image: \"{reference}-skill-probe\"")),
        "{yaml}"
    );
    // The registry has every image of the version.
    let tags = Command::new("curl")
        .args(["-sS", "-m", "10"])
        .arg(format!("http://{REGISTRY}/v2/psbx-e2e-{id}/tags/list"))
        .output()
        .expect("curl");
    let tags = String::from_utf8_lossy(&tags.stdout);
    for tag in [
        "\"1.0\"",
        "\"1.0-skill-probe\"",
        "\"1.0-base-skill\"",
        "\"1.0-egress-proxy\"",
    ] {
        assert!(tags.contains(tag), "{tag}: {tags}");
    }
}

#[test]
fn bad_flags_are_refused_before_any_image_is_read() {
    for (args, why) in [
        (
            vec!["--image", "nowhere.invalid/x:1", "--workspace-user", "0:0"],
            "--workspace-user 0:0",
        ),
        (
            vec!["--image", "nowhere.invalid/x:1", "--secret", "KEY"],
            "--secret KEY: expected VAR=SECRET/KEY",
        ),
        (vec!["--push-to", "reg.example/x:1"], "<EXPERT>"),
        (vec!["exported"], "--push-to"),
        (vec![], "--image"),
    ] {
        let (code, yaml, stderr) = export(&args, "UNUSED");
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(yaml.is_empty(), "{yaml}");
    }
}
