//! An `npx` skill end to end, with no public registry in reach: a stdio MCP server in plain Node
//! (tests/fixtures/npm/node-info) is published on a local npm registry the test serves on the
//! Docker bridge, `[sandbox] npmRegistry` points the image build at it, and `npx -y
//! @perstack-e2e/node-info` runs it as Perstack configs write it, on the local Debian Node image
//! of `make test-images` (Debian's node 18 and npm 9). The package is fetched while the skill's image is
//! built, and the skill container runs with no network at all.
//!
//! A second skill runs the same package with `allowedDomains`: Node skills behind the egress
//! proxy are told to use it, and must still start on a Node that predates the proxy support.

use std::time::Duration;

use perstack_sandbox::test_support::docker::{DockerGuard, lines};
use serde_json::Value;

use crate::support::npm_registry::{NpmPackage, NpmRegistry};
use crate::support::{
    BOOKWORM_NODE_IMAGE, Finished, TestRun, docker, finish_after, fixture, read_until,
    require_bookworm_node_image,
};

/// The skills' names (as tests/fixtures/e2e/npx-skill/perstack.toml spells them), which name
/// their images: `perstack-sandbox/skill-<name>`.
const PLAIN: &str = "npx-node-info";
const PROXIED: &str = "npx-node-info-proxied";

/// A guard over the images this test's builds make, removed when it ends (panics included):
/// the skill images (every tag of their repositories: their tags are digests over this run's
/// registry URL) and the install stages left as build cache, found by the registry URL in their
/// install step.
fn built_images(registry: &str) -> DockerGuard {
    let mut images = DockerGuard::new();
    for skill in [PLAIN, PROXIED] {
        images.repository(&format!("perstack-sandbox/skill-{skill}"));
    }
    let registry = registry.to_string();
    images.images_found_by(move || {
        let stages = lines(&[
            "images",
            "-a",
            "-q",
            "--filter",
            "label=io.perstack.sandbox.role=skill-install",
        ]);
        stages
            .into_iter()
            .filter(|id| {
                lines(&[
                    "image",
                    "inspect",
                    "--format",
                    "{{json .ContainerConfig.Cmd}}",
                    id,
                ])
                .iter()
                .any(|step| step.contains(&registry))
            })
            .collect()
    });
    images
}

/// The JSON the server's tool answered with.
fn node_info(done: &Finished, tool: &str) -> Value {
    let text = done.tool_result(tool);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The Node of the base image, as its own `node --version` says.
fn base_image_node() -> String {
    docker(&["run", "--rm", BOOKWORM_NODE_IMAGE, "node", "--version"])
        .trim()
        .to_string()
}

fn network_mode(job_id: &str, service: &str) -> String {
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.perstack.sandbox.job-id={job_id}"),
        "--filter",
        &format!("label=io.perstack.sandbox.service={service}"),
    ]);
    let id = id.trim();
    assert!(!id.is_empty(), "no running {service} container");
    docker(&["inspect", "--format", "{{.HostConfig.NetworkMode}}", id])
        .trim()
        .to_string()
}

#[test]
fn an_npx_skill_is_installed_from_the_configured_registry_at_build_time_and_runs_in_node() {
    if !require_bookworm_node_image() {
        return;
    }
    let package = NpmPackage::pack(&fixture("npm/node-info"));
    let registry = NpmRegistry::start(vec![package.clone()]);
    let _images = built_images(&registry.url());
    let run = TestRun::templated("e2e/npx-skill", "node", &registry.fixture_vars());
    let mut child = run.spawn();

    // Both skill containers are up while the first turn takes its time: every image is built.
    let seen = read_until(
        &mut child,
        &format!("\"service\":\"skill:{PLAIN}\",\"message\":\"Skill container"),
        Duration::from_secs(600),
    );
    let during_build = registry.requests();
    assert_eq!(
        network_mode(&run.guard.job_id, &format!("skill:{PLAIN}")),
        "none",
        "the skill container must have no network at run time"
    );
    let done = finish_after(child, seen);
    done.assert_code(0);

    // The build fetched the packument (the scoped name encoded) and the tarball it names from
    // the configured registry, and nothing asked for anything once the containers ran.
    let paths: Vec<&str> = during_build.iter().map(|r| r.path.as_str()).collect();
    assert!(
        paths.contains(&"/@perstack-e2e%2fnode-info"),
        "no packument request: {paths:?}"
    );
    assert!(
        paths.contains(&"/@perstack-e2e/node-info/-/node-info-1.0.0.tgz"),
        "no tarball request: {paths:?}"
    );
    assert_eq!(package.packument_path(), "/@perstack-e2e%2fnode-info");
    assert_eq!(
        registry.requests().len(),
        during_build.len(),
        "the registry was asked for something at run time"
    );

    // The real server answered, in the base image's node inside the skill container.
    let node = base_image_node();
    let plain = node_info(&done, "node_info");
    assert_eq!(plain["node"], node.as_str(), "{plain}");
    assert_eq!(plain["execPath"], "/usr/bin/node", "{plain}");
    assert_eq!(plain["reversed"], "kcatsrep", "{plain}");
    // Without allowedDomains: no proxy, and no Node proxy setting.
    assert_eq!(plain["httpsProxy"], Value::Null, "{plain}");
    assert_eq!(plain["nodeUseEnvProxy"], Value::Null, "{plain}");

    // With allowedDomains: the same package started on this Node (18: it refuses to start with
    // an unknown flag in NODE_OPTIONS), with the proxy and Node's own switch for it.
    let proxied = node_info(&done, "proxied_node_info");
    assert_eq!(proxied["node"], node.as_str(), "{proxied}");
    assert_eq!(proxied["reversed"], "xobdnas", "{proxied}");
    assert_eq!(
        proxied["httpsProxy"], "http://egress-proxy:3128",
        "{proxied}"
    );
    assert_eq!(proxied["nodeUseEnvProxy"], "1", "{proxied}");

    assert_eq!(
        done.of_type("completeRun")[0]["text"],
        "Node answered from both skill containers."
    );
    // Events show the command as configured.
    let starting = done
        .of_type("skillStarting")
        .into_iter()
        .find(|e| e["skillName"] == PLAIN)
        .expect("skillStarting");
    assert_eq!(starting["command"], "npx");
    assert_eq!(
        starting["args"],
        serde_json::json!(["-y", "@perstack-e2e/node-info"])
    );

    // The registry was for the build step only: neither the image's config nor its history
    // (the final stage starts again from the base) mentions it.
    let tag = done.image_tag(&format!("skill:{PLAIN}"));
    let env = docker(&["image", "inspect", "--format", "{{json .Config.Env}}", &tag]);
    assert!(
        !env.contains("npm_config_registry") && !env.contains(&registry.url()),
        "{env}"
    );
    let history = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]);
    assert!(!history.contains(&registry.url()), "{history}");

    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}
