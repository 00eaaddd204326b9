use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;

use super::*;
use crate::config::{Limits, ProviderName, RunSettings, Skill, load_str};
use crate::contract::paths::{BINARY_PATH, CA_BUNDLE_PATH, CA_BUNDLE_VARIABLES};
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::images::{ImageRole, ImageSpec};

const CONFIG: &str = r#"
[provider]
providerName = "mock"
setting = { script = "s.toml" }

[experts.main]
instruction = "Lead."
delegates = ["helper"]

[experts.main.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["WEB_KEY"]

[experts.helper]
instruction = "Help."
description = "Helps."
"#;

fn request() -> RunRequest {
    let loaded = load_str(std::path::Path::new("/cfg/perstack.toml"), CONFIG).expect("valid");
    RunRequest {
        run_id: "runid0000000abcdef".into(),
        job_id: "job1".into(),
        expert_key: "main".into(),
        query: "hello".into(),
        config: loaded.config,
        settings: RunSettings {
            provider: ProviderName::Mock,
            model: "mock-model".into(),
            max_steps: 7,
            max_retries: 1,
            timeout_ms: 1000,
            reasoning_budget: Some("low".into()),
        },
        workspace: PathBuf::from("/home/me/project"),
        user: (1000, 1000),
        protected: Default::default(),
        runtime_env: vec![("EXTRA".into(), "extra-value".into())],
        env: BTreeMap::from([
            ("WEB_KEY".to_string(), "web-secret".to_string()),
            ("ANTHROPIC_API_KEY".to_string(), "sk-ant".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ]),
        mock_script: None,
        skill_files: Default::default(),
        artifacts: Artifacts {
            binary: Bytes::from_static(b"\x7fELF fake"),
            executable: Default::default(),
            ca_bundle: Bytes::from_static(b"-----BEGIN CERTIFICATE-----"),
        },
        limits: Limits::default(),
        oci_runtime: None,
        controller: "host/boot/42/7".into(),
        resume: None,
        list_tools: false,
    }
}

#[test]
fn the_plan_gives_each_container_only_what_it_declared() {
    let plan = plan(&request()).expect("plan");
    // main: base + web; helper (delegate): base.
    let names: Vec<&str> = plan.skills.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        names,
        ["base-skill:main", "skill:web:main", "base-skill:helper"]
    );

    let web = &plan.skills[1];
    assert_eq!(web.env, [("WEB_KEY".to_string(), "web-secret".to_string())]);
    assert_eq!(web.user, "10002:10002");
    assert_eq!(web.network, NetworkPlan::None);
    assert!(
        web.mounts
            .iter()
            .all(|m| matches!(m.source, MountSource::Volume { .. }))
    );

    for base in [&plan.skills[0], &plan.skills[2]] {
        assert!(base.env.is_empty(), "base-skill gets no variables");
        assert_eq!(base.user, "1000:1000");
        assert_eq!(base.network, NetworkPlan::None);
        assert!(base.mounts.contains(&MountPlan {
            source: MountSource::Bind {
                host: "/home/me/project".into()
            },
            target: "/workspace".into(),
            read_only: false,
        }));
        // The run data below the workspace is hidden by an empty read-only tmpfs, and its
        // mount point is created on the host beforehand.
        assert!(base.mounts.contains(&MountPlan {
            source: MountSource::EmptyTmpfs,
            target: "/workspace/perstack".into(),
            read_only: true,
        }));
        assert_eq!(
            base.host_mount_points(),
            [PathBuf::from("/home/me/project/perstack")]
        );
    }
    assert!(web.host_mount_points().is_empty());

    let runtime = &plan.runtime;
    assert_eq!(
        runtime.env,
        [("EXTRA".to_string(), "extra-value".to_string())]
    );
    assert!(
        runtime
            .mounts
            .iter()
            .all(|m| matches!(m.source, MountSource::Volume { .. })),
        "the runtime never sees the workspace"
    );
    assert_eq!(runtime.mounts.len(), 3, "one socket volume per skill");
    assert_eq!(runtime.network, NetworkPlan::None, "mock needs no network");

    // Each socket volume is a tmpfs owned by its skill's user, readable by the runtime's group.
    assert_eq!(
        plan.volumes[1].driver_opts["o"],
        "uid=10002,gid=10001,mode=0750,nr_blocks=256"
    );
    assert_eq!(
        plan.volumes[0].driver_opts["o"],
        "uid=1000,gid=10001,mode=0750,nr_blocks=256"
    );

    insta::assert_json_snapshot!("containers", (&plan.skills, &plan.runtime));
    insta::assert_json_snapshot!("volumes", &plan.volumes);
    insta::assert_json_snapshot!("spec_skills", &plan.spec.skills);
    let dockerfiles: Vec<(String, String)> = plan
        .images
        .iter()
        .map(|i| (i.repository.clone(), i.dockerfile()))
        .collect();
    insta::assert_debug_snapshot!("dockerfiles", dockerfiles);
}

#[test]
fn base_skill_on_a_workspace_image_keeps_its_path_and_gets_a_writable_home() {
    let mut request = request();
    request.config.sandbox.workspace_image = Some("perstack-sandbox/bookworm:local".into());
    let plan = plan(&request).expect("plan");
    let image = &plan.images[plan.skills[0].image];
    assert_eq!(image.role, ImageRole::BaseSkill);
    assert_eq!(image.base, "perstack-sandbox/bookworm:local");
    // The image's own PATH stays; HOME is the /tmp tmpfs (the root is read-only).
    assert_eq!(image.config.env, [("HOME".to_string(), "/tmp".to_string())]);
    // No passwd of ours on a real base (only our binary and the name-service switch), and the
    // user is set per container: the invoker's.
    let paths: Vec<&str> = image.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, [BINARY_PATH, "/etc/nsswitch.conf"]);
    assert_eq!(image.config.user, None);
    assert_eq!(plan.skills[0].user, "1000:1000");
    assert_eq!(plan.skills[0].env, []);
}

#[test]
fn real_providers_reach_their_host_through_the_proxy_and_images_dedupe() {
    let mut request = request();
    request.settings.provider = ProviderName::Anthropic;
    let plan = plan(&request).expect("plan");
    // The runtime sits on a network of its own, shared only with the proxy.
    let runtime_net = "psbx-runid0000000-net-runtime";
    assert_eq!(
        plan.runtime.network,
        NetworkPlan::Internal(runtime_net.into())
    );
    assert_eq!(
        plan.networks
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        [runtime_net]
    );
    assert!(plan.runtime.env.contains(&(
        "HTTPS_PROXY".to_string(),
        "http://egress-proxy:3128".to_string()
    )));
    let proxy = plan.proxy.as_ref().expect("a proxy");
    assert_eq!(proxy.container.network, NetworkPlan::Bridge);
    assert_eq!(proxy.container.user, "65534:65534");
    assert_eq!(
        plan.images[proxy.container.image].role,
        ImageRole::EgressProxy
    );
    assert_eq!(proxy.principals.len(), 1);
    assert_eq!(proxy.principals[0].name, "runtime");
    assert_eq!(proxy.principals[0].network, runtime_net);
    let allow: Vec<String> = proxy.principals[0]
        .allow
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(allow, ["api.anthropic.com"]);
    // Skills without allowedDomains stay off every network.
    assert!(plan.skills.iter().all(|s| s.network == NetworkPlan::None));
    // Both Experts' base skills share one image; web has its own; the runtime; the proxy.
    assert_eq!(plan.images.len(), 4);
    assert_eq!(plan.skills[0].image, plan.skills[2].image);
}

#[test]
fn a_mock_run_without_remote_skills_starts_no_proxy_and_no_network() {
    let plan = plan(&request()).expect("plan");
    assert!(plan.proxy.is_none());
    assert!(plan.networks.is_empty());
    assert_eq!(plan.runtime.network, NetworkPlan::None);
    assert!(!plan.runtime.env.iter().any(|(k, _)| k == "HTTPS_PROXY"));
}

#[test]
fn a_skill_with_allowed_domains_gets_its_own_network_and_exactly_its_domains() {
    let mut request = request();
    let text = CONFIG.replace(
        "requiredEnv = [\"WEB_KEY\"]",
        "requiredEnv = [\"WEB_KEY\"]\nallowedDomains = [\"api.github.com\", \"*.github.com\"]",
    );
    request.config = load_str(std::path::Path::new("/cfg/perstack.toml"), &text)
        .expect("valid")
        .config;
    let plan = plan(&request).expect("plan");
    let web = plan
        .skills
        .iter()
        .find(|s| s.skill.as_deref() == Some("web"))
        .expect("web");
    let NetworkPlan::Internal(net) = &web.network else {
        panic!("web has no network of its own: {:?}", web.network);
    };
    assert!(web.env.contains(&(
        "HTTPS_PROXY".to_string(),
        "http://egress-proxy:3128".to_string()
    )));
    // Our own binary is not Node: no Node settings.
    assert!(!web.env.iter().any(|(k, _)| k.starts_with("NODE_")));
    // The skill host passes the proxy settings to the server.
    let image = &plan.images[web.image];
    assert!(
        image
            .config
            .entrypoint
            .windows(2)
            .any(|w| w == ["--pass-env", "HTTPS_PROXY"])
    );
    // Base skills stay offline; the mock runtime needs no network.
    assert!(
        plan.skills
            .iter()
            .filter(|s| s.skill.as_deref() != Some("web"))
            .all(|s| s.network == NetworkPlan::None)
    );
    assert_eq!(plan.runtime.network, NetworkPlan::None);
    let proxy = plan.proxy.as_ref().expect("a proxy");
    assert_eq!(proxy.principals.len(), 1);
    assert_eq!(proxy.principals[0].name, "skill:web:main");
    assert_eq!(&proxy.principals[0].network, net);
    let allow: Vec<String> = proxy.principals[0]
        .allow
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(allow, ["api.github.com", "*.github.com"]);
}

/// Whether an image carries the CA bundle, checked both ways: the file and all six variables,
/// or neither.
fn carries_ca(image: &ImageSpec) -> bool {
    let file = image.files.iter().find(|f| f.path == CA_BUNDLE_PATH);
    let vars: Vec<&String> = image
        .config
        .env
        .iter()
        .filter(|(k, _)| CA_BUNDLE_VARIABLES.contains(&k.as_str()))
        .map(|(_, v)| v)
        .collect();
    match file {
        Some(file) => {
            assert_eq!(file.mode, 0o644);
            assert_eq!(vars.len(), CA_BUNDLE_VARIABLES.len(), "{image:?}");
            assert!(vars.iter().all(|v| *v == CA_BUNDLE_PATH));
            true
        }
        None => {
            assert!(vars.is_empty(), "variables without a bundle: {image:?}");
            false
        }
    }
}

#[test]
fn only_containers_that_talk_tls_carry_the_ca_bundle_and_it_is_part_of_their_digest() {
    let with_domains = |provider, bundle: &'static [u8]| {
        let mut request = request();
        let text = CONFIG.replace(
            "requiredEnv = [\"WEB_KEY\"]",
            "requiredEnv = [\"WEB_KEY\"]\nallowedDomains = [\"api.github.com\"]",
        );
        request.config = load_str(std::path::Path::new("/cfg/perstack.toml"), &text)
            .expect("valid")
            .config;
        request.settings.provider = provider;
        request.artifacts.ca_bundle = Bytes::from_static(bundle);
        plan(&request).expect("plan")
    };
    let by_service = |plan: &RunPlan, service: &str| -> ImageSpec {
        let container = plan
            .skills
            .iter()
            .chain([&plan.runtime])
            .chain(plan.proxy.as_ref().map(|p| &p.container))
            .find(|c| c.service == service)
            .unwrap_or_else(|| panic!("no {service}"));
        plan.images[container.image].clone()
    };

    // The mock runtime needs no network: no bundle; nor base-skill (no network), nor the proxy
    // (it never looks inside TLS); the skill with allowedDomains has it.
    let mock = with_domains(ProviderName::Mock, b"PEM one");
    assert!(!carries_ca(&by_service(&mock, "runtime")));
    assert!(!carries_ca(&by_service(&mock, "base-skill:main")));
    assert!(!carries_ca(&by_service(&mock, "egress-proxy")));
    let web = by_service(&mock, "skill:web:main");
    assert!(carries_ca(&web));
    let file = web.files.iter().find(|f| f.path == CA_BUNDLE_PATH);
    assert_eq!(file.map(|f| &f.contents[..]), Some(&b"PEM one"[..]));
    // Without allowedDomains a skill has no network and no bundle.
    assert!(!carries_ca(&plan(&request()).expect("plan").images[1]));

    // A networked provider: the runtime has it.
    let networked = with_domains(ProviderName::Anthropic, b"PEM one");
    assert!(carries_ca(&by_service(&networked, "runtime")));

    // Another bundle is another image for exactly those that carry it.
    let other = with_domains(ProviderName::Anthropic, b"PEM two");
    for (service, changes) in [
        ("runtime", true),
        ("skill:web:main", true),
        ("base-skill:main", false),
        ("egress-proxy", false),
    ] {
        let (a, b) = (by_service(&networked, service), by_service(&other, service));
        assert_eq!(
            a.digest("scratch") != b.digest("scratch"),
            changes,
            "{service}"
        );
    }

    // No bundle on the host: nothing is added anywhere.
    let bare = with_domains(ProviderName::Anthropic, b"");
    assert!(bare.images.iter().all(|i| !carries_ca(i)));
}

#[test]
fn every_image_but_the_proxys_takes_names_from_etc_hosts_alone() {
    let mut request = request();
    request.settings.provider = ProviderName::Anthropic;
    let plan = plan(&request).expect("plan");
    for image in &plan.images {
        let nsswitch = image.files.iter().find(|f| f.path == "/etc/nsswitch.conf");
        match image.role {
            // The proxy is the one container that resolves names.
            ImageRole::EgressProxy => assert!(nsswitch.is_none()),
            _ => {
                let text = String::from_utf8_lossy(&nsswitch.expect("nsswitch.conf").contents)
                    .into_owned();
                let hosts: Vec<&str> = text.lines().filter(|l| l.starts_with("hosts:")).collect();
                assert_eq!(hosts, ["hosts:      files"], "{}", image.repository);
                assert!(
                    !text
                        .lines()
                        .any(|l| !l.starts_with('#') && l.contains("dns"))
                );
            }
        }
    }
}

#[test]
fn a_remote_skill_in_the_closure_gives_the_runtime_a_network_and_no_container() {
    let mut request = request();
    let remote = "[experts.helper.skills.remote]\ntype = \"mcpSseSkill\"\n\
                  endpoint = \"https://mcp.example.com/mcp\"\n";
    let text = format!("{CONFIG}{remote}");
    request.config = load_str(std::path::Path::new("/cfg/perstack.toml"), &text)
        .expect("valid")
        .config;
    let plan = plan(&request).expect("plan");
    // Even with the mock provider: the helper's remote skill is reached from the runtime,
    // through the proxy, which lets it reach exactly that endpoint.
    assert_eq!(
        plan.runtime.network,
        NetworkPlan::Internal("psbx-runid0000000-net-runtime".into())
    );
    let proxy = plan.proxy.as_ref().expect("a proxy");
    assert_eq!(proxy.principals[0].allow[0].to_string(), "mcp.example.com");
    assert!(
        plan.skills
            .iter()
            .all(|s| s.skill.as_deref() != Some("remote"))
    );
    assert!(plan.spec.skills.iter().all(|e| e.skill != "remote"));
    // The runtime finds its endpoint in the Expert it carries.
    let helper = &plan.spec.experts["helper"];
    assert!(matches!(
        &helper.skills["remote"],
        Skill::McpSse(sse) if sse.endpoint == "https://mcp.example.com/mcp"
    ));
}

#[test]
fn a_continued_run_gets_the_checkpoint_on_stdin_and_the_answer_as_an_argument() {
    let fresh = plan(&request()).expect("plan");
    assert_eq!(fresh.runtime.stdin, None, "a fresh run has no stdin");
    assert!(
        !fresh
            .runtime
            .cmd
            .contains(&"--checkpoint-stdin".to_string())
    );

    let mut request = request();
    request.resume = Some(Resume {
        delegate_turns: Default::default(),
        checkpoint_json: r#"{"id":"cp1"}"#.into(),
        interactive_tool_call_result: Some(crate::event::InteractiveToolCallResult {
            tool_call_id: "call-1".into(),
            tool_name: "askUser".into(),
            skill_name: "ask".into(),
            text: "blue".into(),
        }),
    });
    let plan = plan(&request).expect("plan");
    assert_eq!(plan.runtime.stdin.as_deref(), Some(r#"{"id":"cp1"}"#));
    assert!(plan.skills.iter().all(|s| s.stdin.is_none()));
    // The flags go before `--`; the query stays the last positional.
    let cmd = &plan.runtime.cmd;
    let tail: Vec<&str> = cmd[cmd.len() - 6..].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "--checkpoint-stdin",
            "--interactive-tool-call-result",
            r#"{"toolCallId":"call-1","toolName":"askUser","skillName":"ask","text":"blue"}"#,
            "--",
            "main",
            "hello"
        ]
    );
    // The runtime's own parser reads them back.
    let args = crate::contract::runtime_args::parse(cmd).expect("the runtime parses it");
    assert!(args.checkpoint_stdin);
    assert_eq!(args.query, "hello");
    assert_eq!(
        args.interactive_tool_call_result,
        request
            .resume
            .as_ref()
            .and_then(|r| r.interactive_tool_call_result.clone())
    );
    assert_eq!(args.provider, Some(ProviderName::Mock));
    assert_eq!(args.timeout_ms, Some(1000));
}

#[test]
fn the_mock_provider_learns_which_turns_the_delegates_played_and_no_other_provider_does() {
    let mut request = request();
    request.resume = Some(Resume {
        delegate_turns: [("helper".to_string(), 3), ("leaf".to_string(), 1)].into(),
        checkpoint_json: r#"{"id":"cp1"}"#.into(),
        interactive_tool_call_result: None,
    });
    let mock = plan(&request).expect("plan");
    let args = crate::contract::runtime_args::parse(&mock.runtime.cmd).expect("parses");
    assert_eq!(
        args.mock_played,
        [("helper".to_string(), 3), ("leaf".to_string(), 1)]
    );
    request.settings.provider = ProviderName::Anthropic;
    let real = plan(&request).expect("plan");
    assert!(!real.runtime.cmd.iter().any(|a| a == "--mock-played"));
}

#[test]
fn uvx_and_npx_skills_get_their_packages_at_build_time_and_start_the_installed_program() {
    let mut request = request();
    let text = format!(
        "{CONFIG}\
         [experts.helper.skills.time]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\n\
         args = [\"mcp-server-time\", \"--local-timezone=UTC\"]\n\
         [experts.helper.skills.files]\ntype = \"mcpStdioSkill\"\ncommand = \"npx\"\n\
         packageName = \"@modelcontextprotocol/server-filesystem\"\n\
         [sandbox]\npythonImage = \"perstack-sandbox/bookworm:local\"\n\
         nodeImage = \"local/node:22\"\n\
         npmRegistry = \"https://npm.example.com/\"\n\
         pipIndexUrl = \"http://10.0.0.5:3141/simple/\"\n"
    );
    request.config = load_str(std::path::Path::new("/cfg/perstack.toml"), &text)
        .expect("valid")
        .config;
    let plan = plan(&request).expect("plan");
    let image_of = |name: &str| {
        let container = plan
            .skills
            .iter()
            .find(|s| s.skill.as_deref() == Some(name))
            .expect("skill container");
        // Installed at build time: nothing may be fetched at run time, and nothing can.
        assert_eq!(container.network, NetworkPlan::None, "{name}");
        &plan.images[container.image]
    };

    let time = image_of("time");
    assert_eq!(time.base, "perstack-sandbox/bookworm:local");
    let stage = time.install.first().expect("an install stage");
    assert_eq!(stage.install.packages, ["mcp-server-time"]);
    assert_eq!(stage.ca_bundle, request.artifacts.ca_bundle);
    // Each installer gets its own index setting, in its install stage only.
    assert_eq!(stage.index.as_deref(), Some("http://10.0.0.5:3141/simple/"));
    let after = |image: &ImageSpec| -> Vec<String> {
        let entry = &image.config.entrypoint;
        let at = entry.iter().position(|a| a == "--").expect("--");
        entry[at + 1..].to_vec()
    };
    assert_eq!(
        after(time),
        [
            "/opt/perstack-skill/bin/mcp-server-time",
            "--local-timezone=UTC"
        ]
    );
    assert_eq!(time.config.env, [("HOME".to_string(), "/tmp".to_string())]);

    let files = image_of("files");
    assert_eq!(files.base, "local/node:22");
    let npm = files.install.first().expect("an install stage");
    assert_eq!(npm.index.as_deref(), Some("https://npm.example.com/"));
    assert_eq!(after(files), ["/opt/perstack-skill/entry"]);

    // The runtime still reports the commands as configured (skillStarting).
    let endpoint = plan
        .spec
        .skills
        .iter()
        .find(|e| e.skill == "time")
        .expect("endpoint");
    assert_eq!(endpoint.command, "uvx");
    assert_eq!(endpoint.args, ["mcp-server-time", "--local-timezone=UTC"]);

    // The skill without packages is unchanged: no stage.
    assert!(plan.images.iter().filter(|i| !i.install.is_empty()).count() == 2);
    // The build id changes with every change to the sources.
    insta::with_settings!({filters => vec![(r"io\.perstack\.sandbox\.build=[0-9a-f]{64}", "io.perstack.sandbox.build=[BUILD]")]}, {
        insta::assert_snapshot!("uvx_dockerfile", time.dockerfile());
        insta::assert_snapshot!("npx_dockerfile", files.dockerfile());
    });
}

#[test]
fn the_closure_follows_delegates_once_each() {
    let text = "[experts.a]\ninstruction = \"x\"\ndelegates = [\"b\", \"c\"]\n\
                [experts.b]\ninstruction = \"x\"\ndelegates = [\"c\", \"a\"]\n\
                [experts.c]\ninstruction = \"x\"\n";
    let loaded = load_str(std::path::Path::new("/p.toml"), text).expect("valid");
    assert_eq!(loaded.config.delegation_closure("a"), ["a", "b", "c"]);
    assert_eq!(loaded.config.delegation_closure("c"), ["c"]);
}

#[test]
fn a_chosen_runtime_starts_every_container_of_the_run_and_none_names_none() {
    let mut request = request();
    request.settings.provider = ProviderName::Anthropic;
    let every = |plan: &RunPlan| -> Vec<(String, Option<String>)> {
        plan.skills
            .iter()
            .chain([&plan.runtime])
            .chain(plan.proxy.as_ref().map(|p| &p.container))
            .map(|c| (c.service.clone(), c.oci_runtime.clone()))
            .collect()
    };
    // The engine's default: no runtime named to the engine, and nothing in the plan's JSON.
    let default = plan(&request).expect("plan");
    assert!(every(&default).iter().all(|(_, r)| r.is_none()));
    let json = serde_json::to_value(&default.runtime).expect("json");
    assert!(json.get("ociRuntime").is_none(), "{json}");

    // gVisor: skills, base-skill, the runtime and the egress proxy alike.
    request.oci_runtime = Some("runsc".into());
    let gvisor = plan(&request).expect("plan");
    let runtimes = every(&gvisor);
    assert_eq!(
        runtimes.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        [
            "base-skill:main",
            "skill:web:main",
            "base-skill:helper",
            "runtime",
            "egress-proxy"
        ]
    );
    assert!(
        runtimes.iter().all(|(_, r)| r.as_deref() == Some("runsc")),
        "{runtimes:?}"
    );
    insta::assert_json_snapshot!(
        "containers_under_runsc",
        (
            &gvisor.skills[1],
            &gvisor.proxy.as_ref().map(|p| &p.container)
        )
    );
    // Only the runtime option differs from the default plan.
    let mut unchosen = gvisor.runtime.clone();
    unchosen.oci_runtime = None;
    assert_eq!(unchosen, default.runtime);
}

/// The request with a workspace whose `.git` and perstack.toml exist, and whose `.env` and
/// `conf/dev.env` (an `envPath` entry, in a folder that is missing too) do not.
fn protected_request(config: &str) -> RunRequest {
    use crate::sandbox::preflight::{ProtectedEntry, ProtectedLayout};
    use crate::trust::inputs::{InputKind, ProtectedPath, Rule};
    let entry = |relative: &str, rule: Rule, exists: bool| ProtectedEntry {
        path: ProtectedPath {
            relative: relative.into(),
            rule,
        },
        exists,
    };
    let mut request = request();
    request.config = load_str(std::path::Path::new("/cfg/perstack.toml"), config)
        .expect("valid")
        .config;
    request.protected = ProtectedLayout {
        entries: vec![
            entry(".env", Rule::Input(InputKind::Dotenv), false),
            entry(".git", Rule::GitDir, true),
            entry("conf/dev.env", Rule::Input(InputKind::Dotenv), false),
            entry("perstack", Rule::RunData, true),
            entry("perstack.toml", Rule::Input(InputKind::Config), true),
        ],
        missing_dirs: vec!["conf".into()],
    };
    request
}

fn bind(host: &str, target: &str, read_only: bool) -> MountPlan {
    MountPlan {
        source: MountSource::Bind { host: host.into() },
        target: target.into(),
        read_only,
    }
}

#[test]
fn protected_paths_are_read_only_for_base_skill_and_missing_ones_get_placeholders() {
    let plan = plan(&protected_request(CONFIG)).expect("plan");
    let base = &plan.skills[0];
    let workspace_mounts: Vec<&MountPlan> = base
        .mounts
        .iter()
        .filter(|m| m.target.starts_with("/workspace"))
        .collect();
    let ws = "/home/me/project";
    assert_eq!(
        workspace_mounts,
        [
            &bind(ws, "/workspace", false),
            // A folder above a protected path is bound onto itself: it cannot be renamed away.
            &bind(&format!("{ws}/conf"), "/workspace/conf", false),
            &bind(&format!("{ws}/.env"), "/workspace/.env", true),
            &bind(&format!("{ws}/.git"), "/workspace/.git", true),
            &bind(
                &format!("{ws}/conf/dev.env"),
                "/workspace/conf/dev.env",
                true
            ),
            &bind(
                &format!("{ws}/perstack.toml"),
                "/workspace/perstack.toml",
                true
            ),
            &MountPlan {
                source: MountSource::EmptyTmpfs,
                target: "/workspace/perstack".into(),
                read_only: true,
            },
        ]
    );
    assert_eq!(
        plan.placeholders,
        [
            Placeholder {
                path: format!("{ws}/conf").into(),
                dir: true
            },
            Placeholder {
                path: format!("{ws}/.env").into(),
                dir: false
            },
            Placeholder {
                path: format!("{ws}/conf/dev.env").into(),
                dir: false
            },
        ]
    );
    // What gc needs should the controller die: on the container and on its socket volume,
    // which is made first.
    let label = Placeholder::label(&plan.placeholders);
    assert_eq!(
        base.labels.get(crate::sandbox::labels::PLACEHOLDERS),
        Some(&label)
    );
    assert!(
        plan.volumes
            .iter()
            .any(|v| v.labels.get(crate::sandbox::labels::PLACEHOLDERS) == Some(&label))
    );
    let web = &plan.skills[1];
    assert!(
        !web.labels
            .contains_key(crate::sandbox::labels::PLACEHOLDERS)
    );
    // base-skill's tools are told the rules, to name them in their answers.
    assert_eq!(
        base.cmd,
        [
            "--protected",
            "dotenv:.env",
            "--protected",
            "git:.git",
            "--protected",
            "dotenv:conf/dev.env",
            "--protected",
            "run-data:perstack",
            "--protected",
            "config:perstack.toml",
        ]
    );
}

#[test]
fn a_skill_without_a_grant_sees_no_workspace_and_a_granted_one_sees_it_as_granted() {
    let granted = |grant: &str| {
        let config = format!("{CONFIG}\n[sandbox.skills.\"web\"]\nworkspace = \"{grant}\"\n");
        plan(&protected_request(&config)).expect("plan")
    };
    let none = plan(&protected_request(CONFIG)).expect("plan");
    let web = &none.skills[1];
    assert!(
        web.mounts
            .iter()
            .all(|m| matches!(m.source, MountSource::Volume { .. }))
    );
    assert_eq!(web.user, "10002:10002");
    assert_eq!(none.spec.skills[1].workspace, None);

    let ws = "/home/me/project";
    let read_only = granted("read-only");
    let web = &read_only.skills[1];
    assert_eq!(web.user, "1000:1000", "it reads what the invoking user can");
    assert!(web.cmd.is_empty(), "its own server, not base-skill");
    assert!(web.mounts.contains(&bind(ws, "/workspace", true)));
    assert!(
        web.mounts
            .iter()
            .filter(|m| m.target.starts_with("/workspace"))
            .all(|m| m.read_only),
        "{:?}",
        web.mounts
    );
    assert!(
        web.mounts
            .contains(&bind(&format!("{ws}/.git"), "/workspace/.git", true))
    );
    assert!(web.env.iter().all(|(k, _)| k == "WEB_KEY"));
    assert_eq!(
        read_only.spec.skills[1].workspace,
        Some(crate::config::WorkspaceGrant::ReadOnly)
    );

    let read_write = granted("read-write");
    let web = &read_write.skills[1];
    assert_eq!(
        web.user, "1000:1000",
        "what it writes is the invoking user's"
    );
    assert!(web.mounts.contains(&bind(ws, "/workspace", false)));
    // Protected paths stay protected, placeholders and all, as in base-skill.
    for protected in [".env", ".git", "conf/dev.env", "perstack.toml"] {
        assert!(
            web.mounts.contains(&bind(
                &format!("{ws}/{protected}"),
                &format!("/workspace/{protected}"),
                true
            )),
            "{protected}: {:?}",
            web.mounts
        );
    }
    assert!(web.mounts.contains(&MountPlan {
        source: MountSource::EmptyTmpfs,
        target: "/workspace/perstack".into(),
        read_only: true,
    }));
    assert_eq!(
        web.labels,
        read_write.skills[0]
            .labels
            .clone()
            .into_iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    crate::sandbox::labels::ROLE => "skill".to_string(),
                    crate::sandbox::labels::SERVICE => web.service.clone(),
                    _ => v,
                };
                (k, v)
            })
            .collect()
    );
}

/// A granted skill starts in the workspace, as Perstack's starts in the folder it runs in:
/// relative paths in its args land there, not on the read-only root.
#[test]
fn a_granted_skill_starts_in_the_workspace() {
    let workdir = |config: &str| {
        plan(&protected_request(config))
            .expect("plan")
            .images
            .iter()
            .find(|i| i.service == "skill:web")
            .map(|i| i.config.workdir.clone())
            .expect("the skill's image")
    };
    assert_eq!(workdir(CONFIG), None);
    for grant in ["read-only", "read-write"] {
        let config = format!("{CONFIG}\n[sandbox.skills.\"web\"]\nworkspace = \"{grant}\"\n");
        assert_eq!(workdir(&config).as_deref(), Some("/workspace"), "{grant}");
    }
}
