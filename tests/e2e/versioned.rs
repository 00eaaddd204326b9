//! Versioned images: `build --tag REF --push` to a local registry, the local images removed,
//! then `run --image REF "query"` from a folder without perstack.toml pulls and runs them.
//!
//! Needs the registry of `make test-registry` on 127.0.0.1:5000 (Debian's `docker-registry`,
//! started by `make test`); a missing registry is a failure that says how to start it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::versioned::{REGISTRY, VersionedProject, image_id, require_registry};
use crate::support::{JobGuard, binary, finished, require_docker};

/// An Expert whose skill needs a variable named after the test run, so its skill and runtime
/// images are this test's own (the base-skill and proxy images are shared with every test).
fn write_config(dir: &Path, var: &str) {
    std::fs::write(
        dir.join("perstack.toml"),
        format!(
            r#"
model = "mock-model"
maxSteps = 7

[provider]
providerName = "mock"
setting = {{ script = "script.toml" }}

[experts.versioned]
version = "1.0.0"
instruction = "Ask the probe what it sees."

[experts.versioned.skills.probe]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["{var}"]
pick = ["get_env"]
"#
        ),
    )
    .expect("write config");
    std::fs::write(
        dir.join("script.toml"),
        r#"
[[turn]]
[[turn.toolCalls]]
name = "get_env"

[[turn]]
[[turn.toolCalls]]
name = "attemptCompletion"

[[turn]]
text = "The probe saw its variable."
"#,
    )
    .expect("write script");
}

#[test]
fn a_pushed_version_is_pulled_and_run_from_its_tag_alone() {
    if !require_registry() {
        return;
    }
    // Every local image this test tags or pulls goes when it ends, panics included.
    let mut project = VersionedProject::new("VERSIONED", Some(REGISTRY), write_config);
    let (reference, var) = (project.reference.clone(), project.var.clone());
    let (stdout, stderr) = project.build("versioned", &["--push"]);
    let tagged: Vec<String> = stdout.lines().map(str::to_string).collect();
    let mut expected = vec![
        reference.clone(),
        format!("{reference}-skill-probe"),
        format!("{reference}-base-skill"),
        format!("{reference}-egress-proxy"),
    ];
    expected.sort();
    let mut sorted = tagged.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "build printed:\n{stdout}\n{stderr}");

    // The runtime image records the version, and every image it needs by id.
    let (runtime_id, skill_id) = project.own_images();
    let labels = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &reference,
        ])
        .output()
        .expect("inspect");
    let labels: serde_json::Value =
        serde_json::from_slice(&labels.stdout).expect("labels are JSON");
    assert_eq!(labels["io.perstack.expert"], "versioned");
    assert_eq!(labels["io.perstack.expert.version"], "1.0.0");
    let digest = labels["io.perstack.sandbox.config-digest"]
        .as_str()
        .expect("a config digest");
    assert_eq!(digest.len(), "sha256:".len() + 64);
    let needed: serde_json::Value = serde_json::from_str(
        labels["io.perstack.sandbox.images"]
            .as_str()
            .expect("the needed images"),
    )
    .expect("JSON");
    assert_eq!(needed["skill:probe"]["suffix"], "skill-probe");
    assert_eq!(needed["skill:probe"]["id"], skill_id.as_str());

    // Gone from this engine: the runtime and the skill image entirely, the shared images'
    // version tags.
    for image in [&runtime_id, &skill_id] {
        let out = Command::new("docker")
            .args(["rmi", "-f", image])
            .output()
            .expect("rmi");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for reference in &tagged {
        let _ = Command::new("docker").args(["rmi", reference]).output();
        assert_eq!(image_id(reference), None, "{reference} is still here");
    }

    // From an empty folder: no perstack.toml anywhere, only the tag and the skill's variable.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let job = JobGuard::new();
    let out = Command::new(binary())
        .args([
            "run",
            "--image",
            &reference,
            "--json",
            "--job-id",
            &job.job_id,
        ])
        .arg("What does the probe see?")
        .current_dir(elsewhere.path())
        .env(&var, "from-the-host")
        .env_remove("ANTHROPIC_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let done = finished(out.status.code(), out.stdout, out.stderr);
    done.assert_code(0);
    assert!(
        done.stderr
            .contains(&format!("{reference} is not here; pulling it")),
        "{}",
        done.stderr
    );
    let pulled: Vec<&str> = done
        .of_type("dockerBuildProgress")
        .iter()
        .filter(|e| e["stage"] == "pulling")
        .filter_map(|e| e["service"].as_str())
        .collect();
    assert!(pulled.contains(&"skill:probe"), "pulled: {pulled:?}");
    assert!(pulled.contains(&"base-skill"), "pulled: {pulled:?}");
    // The skill got its requiredEnv, known from the image alone.
    let seen = done.tool_result("get_env");
    assert!(
        seen.contains(&format!("\"{var}\":\"from-the-host\"")),
        "{seen}"
    );
    assert_eq!(done.of_type("completeRun").len(), 1);
    assert_eq!(job.leftovers(), Vec::<String>::new());
    // The run stored its job in the folder it ran in.
    assert!(
        elsewhere
            .path()
            .join("perstack/jobs")
            .join(&job.job_id)
            .is_dir()
    );
    assert_eq!(image_id(&reference).as_deref(), Some(runtime_id.as_str()));
}

#[test]
fn a_version_knows_the_variables_its_skills_need_and_the_expert_it_runs() {
    if !require_docker() {
        return;
    }
    // Built locally, never pushed: `run --image` uses a local image as it is. Every image this
    // test tags goes when it ends, panics included.
    let mut project = VersionedProject::new("VERSIONED", None, write_config);
    let (reference, var) = (project.reference.clone(), project.var.clone());
    project.build("versioned", &[]);
    project.own_images();

    let elsewhere = tempfile::tempdir().expect("tempdir");
    let job = JobGuard::new();
    let run = |args: &[&str]| {
        Command::new(binary())
            .args(["run", "--job-id", &job.job_id])
            .args(args)
            .current_dir(elsewhere.path())
            .env_remove(&var)
            .stdin(Stdio::null())
            .output()
            .expect("run")
    };
    let missing = run(&["--image", &reference, "q"]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains(&format!("skill `probe` of expert `versioned` needs {var}")),
        "{stderr}"
    );
    let other = run(&["--image", &reference, "someone-else", "q"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&other.stderr)
            .contains("runs Expert `versioned`, not `someone-else`")
    );
    // The image's ENTRYPOINT fixes the Expert: started by hand with another one, it refuses.
    let entrypoint = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}}",
            &reference,
        ])
        .output()
        .expect("inspect");
    let entrypoint: Vec<String> = serde_json::from_slice(&entrypoint.stdout).expect("JSON");
    assert_eq!(
        entrypoint[entrypoint.len() - 2..],
        ["--only-expert".to_string(), "versioned".to_string()]
    );
    // Not `--rm`: the exit status is read (see `NamedRun`).
    let (mut by_hand, removed) = crate::support::NamedRun::command();
    let by_hand = by_hand
        .args(["--network", "none"])
        .args(["--label", "io.perstack.sandbox.managed=true"])
        .arg("--label")
        .arg(format!("io.perstack.sandbox.job-id={}", job.job_id))
        .arg(&reference)
        .args(["--job-id", "j", "--run-id", "r", "--", "someone-else", "q"])
        .output()
        .expect("docker run");
    drop(removed);
    assert_eq!(by_hand.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&by_hand.stderr)
            .contains("this image runs Expert `versioned` only, not `someone-else`")
    );
    // Started as a new user would start it, it says how to run it, not a usage error.
    let (mut plain, removed) = crate::support::NamedRun::command();
    let plain = plain
        .args(["--network", "none"])
        .args(["--label", "io.perstack.sandbox.managed=true"])
        .arg("--label")
        .arg(format!("io.perstack.sandbox.job-id={}", job.job_id))
        .args(["-e", "DEMO_TOKEN=x", &reference, "Say hello"])
        .output()
        .expect("docker run");
    drop(removed);
    let said = String::from_utf8_lossy(&plain.stderr);
    assert_eq!(plain.status.code(), Some(2), "{said}");
    assert!(
        said.contains("runtime image of Expert `versioned`")
            && said.contains("perstack-sandbox run --image")
            && said.contains("build versioned --standalone --tag"),
        "{said}"
    );
    assert!(
        !said.contains("Usage:") && !said.contains("--job-id"),
        "{said}"
    );
    // Nothing was started; the container that read the spec is gone too.
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("ancestor={reference}")])
        .output()
        .expect("ps");
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
}

#[test]
fn timeout_bounds_the_pull_of_a_versioned_image_too() {
    if !require_docker() {
        return;
    }
    // A "registry" that accepts connections and never answers: the engine's pull would hang
    // for as long as its own timeouts allow; --timeout stops the run, pull included.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in silent.incoming().take(8).flatten() {
            open.push(stream);
        }
    });
    let reference = format!("127.0.0.1:{port}/perstack-sandbox-e2e/silent:1");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let job = JobGuard::new();
    let out = Command::new(binary())
        .args(["run", "--image", &reference, "--timeout", "3s", "--json"])
        .args(["--job-id", &job.job_id])
        .arg("Anyone there?")
        .current_dir(elsewhere.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let done = finished(out.status.code(), out.stdout, out.stderr);
    done.assert_code(124);
    assert!(
        done.stderr.contains("the run did not finish within 3s"),
        "{}",
        done.stderr
    );
    assert_eq!(image_id(&reference), None);
    drop(held);
}
