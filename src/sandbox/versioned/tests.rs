use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::*;
use crate::config::load_str;
use crate::config::{Limits, RunSettings};
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::plan::{RunRequest, plan};

const CONFIG: &str = r#"
model = "file-model"
maxSteps = 9
envPath = [".env.build"]

[provider]
providerName = "mock"
setting = { script = "s.toml" }

[sandbox]
memory = "1g"

[experts.main]
version = "1.2.0"
instruction = "Lead."
delegates = ["helper"]

[experts.main.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["WEB_KEY"]
allowedDomains = ["api.example.com"]

[experts.helper]
instruction = "Help."
description = "Helps."

[experts.helper.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp", "--other"]
"#;

fn config() -> Config {
    load_str(Path::new("/cfg/perstack.toml"), CONFIG)
        .expect("valid")
        .config
}

fn request(config: Config, provider: ProviderName) -> RunRequest {
    RunRequest {
        run_id: "runid0000000abcdef".into(),
        job_id: "job1".into(),
        expert_key: "main".into(),
        query: "hello".into(),
        config,
        settings: RunSettings {
            provider,
            model: "m".into(),
            max_steps: 3,
            max_retries: 1,
            timeout_ms: 1000,
            reasoning_budget: None,
        },
        workspace: PathBuf::from("/home/me/project"),
        user: (1000, 1000),
        runtime_env: vec![],
        env: BTreeMap::from([("WEB_KEY".to_string(), "secret".to_string())]),
        mock_script: None,
        artifacts: Artifacts {
            binary: Bytes::from_static(b"\x7fELF fake"),
            ca_bundle: Bytes::new(),
        },
        limits: Limits::default(),
        controller: "host/boot/1/2".into(),
        resume: None,
    }
}

#[test]
fn references_keep_the_registry_port_and_default_to_latest() {
    let r = ImageRef::parse("127.0.0.1:5000/demo:1.0").expect("valid");
    assert_eq!(r.repository, "127.0.0.1:5000/demo");
    assert_eq!(r.tag, "1.0");
    assert_eq!(r.derived("skill-web"), "127.0.0.1:5000/demo:1.0-skill-web");
    assert_eq!(r.to_string(), "127.0.0.1:5000/demo:1.0");
    let r = ImageRef::parse("127.0.0.1:5000/team/demo").expect("valid");
    assert_eq!(
        (r.repository.as_str(), r.tag.as_str()),
        ("127.0.0.1:5000/team/demo", "latest")
    );
    for bad in [
        "demo@sha256:abc",
        "Demo:1.0",
        "demo:",
        "demo:-x",
        ":1.0",
        "a//b:1",
        "demo:has space",
    ] {
        assert!(ImageRef::parse(bad).is_err(), "{bad} was accepted");
    }
}

#[test]
fn the_manifest_survives_its_labels_and_rebuilds_the_config_with_the_spec() {
    let config = config();
    let images = BTreeMap::from([(
        "skill:web:main".to_string(),
        NeededImage {
            suffix: "skill-web".into(),
            id: "sha256:aa".into(),
        },
    )]);
    let manifest = Manifest::new(&config, "main", "sha256:cfg".into(), images);
    assert_eq!(manifest.version, "1.2.0");
    let labels = manifest.labels().expect("labels");
    assert_eq!(labels[labels::EXPERT], "main");
    assert_eq!(labels[labels::EXPERT_VERSION], "1.2.0");
    assert_eq!(labels[labels::CONFIG_DIGEST], "sha256:cfg");
    // The Experts and the provider are in the spec, dotenv files belong to where it runs.
    assert!(!labels[labels::SETTINGS].contains("experts\":{\""));
    assert!(!labels[labels::SETTINGS].contains("envPath"));
    let read = Manifest::from_labels("r", &labels.clone().into_iter().collect()).expect("readable");
    assert_eq!(read, manifest);

    let plan = plan(&request(config.clone(), ProviderName::Mock)).expect("plan");
    let rebuilt = read.config("r", &plan.spec).expect("config");
    assert_eq!(rebuilt.model.as_deref(), Some("file-model"));
    assert_eq!(rebuilt.max_steps, Some(9));
    assert_eq!(rebuilt.sandbox.memory.as_deref(), Some("1g"));
    assert_eq!(rebuilt.provider, config.provider);
    assert_eq!(rebuilt.experts, config.experts);
    assert_eq!(rebuilt.env_path, None);

    // An image without the labels is not a versioned one.
    let mut partial: HashMap<String, String> = labels.into_iter().collect();
    partial.remove(labels::NEEDED_IMAGES);
    assert!(matches!(
        Manifest::from_labels("r", &partial),
        Err(VersionedError::NotVersioned { label, .. }) if label == labels::NEEDED_IMAGES
    ));
}

#[test]
fn a_rebuilt_config_plans_the_same_containers_and_pins_every_image() {
    // Built with a real provider: the egress proxy is in the plan too.
    let config = config();
    let built = plan(&request(config.clone(), ProviderName::Anthropic)).expect("plan");
    let suffixes = suffixes(&built);
    // Two skills called `web` with different commands get different images and names.
    let mut names: Vec<&str> = suffixes.values().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["base-skill", "egress-proxy", "skill-web", "skill-web-2"]
    );
    let ids: BTreeMap<usize, String> = suffixes
        .keys()
        .map(|i| (*i, format!("sha256:{i}")))
        .collect();
    let needed = needed_images(&built, &suffixes, &ids);
    assert_eq!(
        needed.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "base-skill:helper",
            "base-skill:main",
            "egress-proxy",
            "skill:web:helper",
            "skill:web:main"
        ]
    );
    let manifest = Manifest::new(&config, "main", "sha256:cfg".into(), needed);

    // The run, from the image: same containers, each on its versioned image.
    let rebuilt = manifest.config("r", &built.spec).expect("config");
    let mut run = plan(&request(rebuilt, ProviderName::Anthropic)).expect("plan");
    let runtime = ImageRef::parse("127.0.0.1:5000/demo:1.0").expect("ref");
    run.prebuilt = Some(pin(&run, &manifest, &runtime, "sha256:rt").expect("pinned"));
    let pinned = run.prebuilt.as_ref().expect("pinned");
    let image_of = |service: &str| {
        let container = run
            .skills
            .iter()
            .chain(run.proxy.as_ref().map(|p| &p.container))
            .chain([&run.runtime])
            .find(|c| c.service == service)
            .unwrap_or_else(|| panic!("no {service}"));
        pinned[container.image].reference.as_str()
    };
    assert_eq!(image_of("runtime"), "127.0.0.1:5000/demo:1.0");
    assert_eq!(
        image_of("skill:web:main"),
        "127.0.0.1:5000/demo:1.0-skill-web"
    );
    assert_eq!(
        image_of("skill:web:helper"),
        "127.0.0.1:5000/demo:1.0-skill-web-2"
    );
    assert_eq!(
        image_of("base-skill:main"),
        "127.0.0.1:5000/demo:1.0-base-skill"
    );
    assert_eq!(
        image_of("egress-proxy"),
        "127.0.0.1:5000/demo:1.0-egress-proxy"
    );
    assert_eq!(pinned[run.runtime.image].id, "sha256:rt");
    // requiredEnv, networks and users come out as from the file.
    let web = run
        .skills
        .iter()
        .find(|s| s.service == "skill:web:main")
        .expect("web");
    assert_eq!(web.env[0], ("WEB_KEY".to_string(), "secret".to_string()));
    assert!(matches!(
        web.network,
        crate::sandbox::plan::NetworkPlan::Internal(_)
    ));
    assert_eq!(web.user, "10002:10002");

    // A plan needing a container the image did not record is refused, naming it.
    let mut short = manifest.clone();
    short.images.remove("egress-proxy");
    assert!(matches!(
        pin(&run, &short, &runtime, "sha256:rt"),
        Err(VersionedError::MissingImage { service, .. }) if service == "egress-proxy"
    ));
}
