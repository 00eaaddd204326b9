//! Local skills end to end: MCP servers from files beside perstack.toml
//! (tests/fixtures/e2e/local-skills), as people write them — `python3 py/server.py` on the
//! official MCP SDK, which its requirements.txt asks for and the image build installs from PyPI,
//! and `node ./tools/js/server.js` in plain Node. Their files are copied into their images, the
//! command lines point at them there, and each works in the folder its files came from. Editing
//! one server rebuilds that skill's image and nothing else. `uv run --directory tools/x
//! server.py` runs a uv project whose dependencies the image build synced.

use std::process::Command;

use perstack_sandbox::test_support::docker::DockerGuard;
use serde_json::Value;

use crate::support::{
    Finished, TestRun, binary, docker, require_bookworm_image, require_bookworm_node_image,
};

const FOLDER: &str = "e2e/local-skills";

/// The JSON a tool answered with.
fn answer(done: &Finished, tool: &str) -> Value {
    let text = done.tool_result(tool);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Both servers answered from their files in the image, in their folders.
fn assert_local_answers(done: &Finished) {
    done.assert_code(0);
    let py = answer(done, "py_where");
    assert_eq!(py["text"], "perstack");
    assert_eq!(py["file"], "/opt/skill/py/server.py");
    assert_eq!(py["cwd"], "/opt/skill/py");
    // requirements.txt was installed into a venv, whose python runs the script.
    assert_eq!(py["python"], "/opt/perstack-skill/bin/python3");
    // A file the command does not name, listed in `files`, read relative to the folder.
    assert_eq!(py["greeting"], "hello from a data file");
    let js = answer(done, "js_where");
    assert_eq!(
        js["text"], "SANDBOX",
        "the helper module listed in `files` ran"
    );
    assert_eq!(js["file"], "/opt/skill/tools/js/server.js");
    assert_eq!(js["cwd"], "/opt/skill/tools/js");
    assert_eq!(js["greeting"], "hello from node");
    // The recipe's image, with its ENV, its WORKDIR, and our user rather than its root.
    let recipe = answer(done, "echo_where");
    assert_eq!(recipe["text"], "echo:recipe");
    assert_eq!(recipe["cwd"], "/srv/echo");
    assert_eq!(recipe["file"], "/srv/echo/server.py");
    assert_eq!(
        recipe["uid"], 10002,
        "the skill user, not the recipe's root"
    );
    assert_eq!(
        done.of_type("completeRun")[0]["text"],
        "The local servers answered."
    );
}

#[test]
fn servers_from_files_beside_perstack_toml_and_from_a_dockerfile_answer_and_an_edit_rebuilds_only_its_skill()
 {
    if !require_bookworm_image() || !require_bookworm_node_image() {
        return;
    }
    let first = TestRun::templated(FOLDER, "local", &[]);
    let done = first.run();
    assert_local_answers(&done);
    // Events show the commands as configured.
    let starting: Vec<&Value> = done.of_type("skillStarting");
    let py = starting
        .iter()
        .find(|e| e["skillName"] == "local-py")
        .expect("skillStarting local-py");
    assert_eq!(py["command"], "python3");
    assert_eq!(py["args"], serde_json::json!(["py/server.py"]));
    // The images say where their skills work; the containers had no network.
    let py_tag = done.image_tag("skill:local-py");
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.WorkingDir}}",
            &py_tag
        ])
        .trim(),
        "/opt/skill/py"
    );
    assert_eq!(first.guard.leftovers(), Vec::<String>::new());

    // Edit the Python server (uniquely, so this run builds whatever ran before it).
    let dir = first.templated.as_ref().expect("a templated folder").path();
    let server = dir.join("py/server.py");
    let mut text = std::fs::read_to_string(&server).expect("read");
    text.push_str(&format!("# edited by {}\n", first.guard.job_id));
    std::fs::write(&server, text).expect("write");
    let second = TestRun::with_config(&dir.join("perstack.toml"), "local");
    let again = second.run();
    let mut edited = DockerGuard::new();
    let edited_tag = again.image_tag("skill:local-py");
    edited.image(&edited_tag);
    assert_local_answers(&again);
    assert_ne!(edited_tag, py_tag);
    let built = again.build_messages("skill:local-py");
    assert!(
        built.iter().any(|m| m.starts_with("Built image ")),
        "{built:?}"
    );
    for service in ["skill:local-js", "skill:local-recipe", "runtime"] {
        let messages = again.build_messages(service);
        assert!(
            messages
                .iter()
                .all(|m| m.starts_with("Using cached image ")),
            "{service} was rebuilt: {messages:?}"
        );
    }
    assert_eq!(
        again.image_tag("skill:local-js"),
        done.image_tag("skill:local-js")
    );
    assert_eq!(second.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn validate_points_at_each_missing_or_escaping_skill_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.py"), "").expect("write");
    std::os::unix::fs::symlink(outside.path().join("secret.py"), dir.path().join("link.py"))
        .expect("symlink");
    let config = dir.path().join("perstack.toml");
    std::fs::write(
        &config,
        "[experts.e]\ninstruction = \"x\"\n\
         [experts.e.skills.gone]\ntype = \"mcpStdioSkill\"\ncommand = \"python3\"\nargs = [\"server.py\"]\n\
         [experts.e.skills.up]\ntype = \"mcpStdioSkill\"\ncommand = \"node\"\nargs = [\"../x/server.js\"]\n\
         [experts.e.skills.link]\ntype = \"mcpStdioSkill\"\ncommand = \"python3\"\nargs = [\"link.py\"]\n\
         [experts.e.skills.db]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\n\
         args = [\"mcp-server-sqlite\", \"--db-path\", \"/workspace/x.db\"]\n",
    )
    .expect("write");
    let out = Command::new(binary())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = |line: usize, col: usize| format!("{}:{line}:{col}: ", config.display());
    assert!(
        stderr.contains(&format!(
            "{}skill `gone`: `server.py` does not exist in",
            at(6, 9)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}skill `up`: `../x/server.js` resolves to",
            at(10, 9)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}skill `link`: `link.py` resolves to", at(14, 9))),
        "{stderr}"
    );
    // The absolute path names a place in the container: no problem.
    assert!(!stderr.contains("skill `db`"), "{stderr}");
    assert_eq!(stderr.matches("outside").count(), 2, "{stderr}");
}

const MANIFESTS: &str = "e2e/local-manifests/perstack.toml";

#[test]
fn a_pyproject_and_a_package_json_beside_the_servers_are_installed_into_their_images() {
    if !require_bookworm_image() || !require_bookworm_node_image() {
        return;
    }
    let run = TestRun::new(MANIFESTS, "manifests");
    let done = run.run();
    done.assert_code(0);
    // pip installed the project and its dependency (the MCP SDK the server imports) into the
    // venv whose python runs the server.
    let py = answer(&done, "pyproject_where");
    assert_eq!(py["text"], "project");
    assert_eq!(py["cwd"], "/opt/skill/pyproj");
    assert_eq!(py["python"], "/opt/perstack-skill/bin/python3");
    assert_eq!(py["project"], "0.1.0");
    // package.json came along ("type": "module" made server.js an ES module) and npm ran in
    // the server's folder, with no registry to ask: there are no dependencies.
    let js = answer(&done, "esm_where");
    assert_eq!(js["text"], "module");
    assert_eq!(js["cwd"], "/opt/skill/esm");
    assert_eq!(js["file"], "/opt/skill/esm/server.js");
    assert_eq!(js["installed"], true);
    assert_eq!(done.of_type("completeRun")[0]["text"], "Both answered.");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// `uv run --directory tools/x server.py` on a uv project (tests/fixtures/e2e/local-uv): the
/// image build installs uv and syncs the project's dependencies (the MCP SDK, from PyPI); the
/// skill, with no network, runs on that environment.
#[test]
fn uv_run_on_a_local_project_runs_the_environment_synced_at_build_time() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new("e2e/local-uv/perstack.toml", "uv");
    let done = run.run();
    done.assert_code(0);
    let uv = answer(&done, "uv_where");
    assert_eq!(uv["text"], "synced");
    assert_eq!(uv["cwd"], "/opt/skill/tools/x");
    assert_eq!(uv["file"], "/opt/skill/tools/x/server.py");
    // The environment `uv sync` made in the install stage, with the SDK from pyproject.toml.
    assert_eq!(uv["prefix"], "/opt/perstack-skill/uv-project");
    assert!(
        uv["mcp"].as_str().is_some_and(|v| v.starts_with("1.")),
        "{uv}"
    );
    let starting = done.of_type("skillStarting");
    let skill = starting
        .iter()
        .find(|e| e["skillName"] == "uv-project")
        .expect("skillStarting uv-project");
    assert_eq!(skill["command"], "uv");
    // The skill host started the uv the build installed (the base image has none).
    let tag = done.image_tag("skill:uv-project");
    let entrypoint = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}}",
        &tag,
    ]);
    assert!(
        entrypoint.contains("\"/opt/perstack-skill/bin/uv\",\"run\""),
        "{entrypoint}"
    );
    assert_eq!(
        done.of_type("completeRun")[0]["text"],
        "The uv project answered."
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// A uv project asking for a Python the image lacks fails to build with uv's own words, and the
/// hint says the installer stopped for a reason of its own rather than sending the user after
/// the network.
#[test]
fn a_uv_project_for_a_python_the_image_lacks_fails_to_build_saying_so() {
    if !require_bookworm_image() {
        return;
    }
    let run = TestRun::new("e2e/local-uv/perstack.toml", "too-new");
    let done = run.run();
    assert_ne!(done.code, Some(0), "{}", done.stderr);
    assert!(
        done.stderr.contains(">=3.99")
            && done
                .stderr
                .contains("hint: the installer stopped for a reason of its own")
            && !done.stderr.contains("the build needs the package index"),
        "{}",
        done.stderr
    );
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}
