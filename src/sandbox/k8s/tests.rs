//! `export kubernetes`'s objects: a snapshot, and invariants checked over every object and
//! container, whatever the snapshot says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use bytes::Bytes;
use serde_json::Value;

use super::manifest::{self, Export, SecretKey, Workspace};
use crate::config::{Limits, ProviderName, RunSettings, load_str};
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::plan::{RunPlan, RunRequest, plan};

/// The runtime reaches Anthropic; `web` may reach exa.ai; `offline` may reach nothing; each
/// Expert has base-skill.
const CONFIG: &str = r#"
[provider]
providerName = "anthropic"

[experts.main]
instruction = "Lead."
delegates = ["helper"]

[experts.main.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["WEB_KEY"]
allowedDomains = ["*.exa.ai"]

[experts.main.skills.offline]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["OFFLINE_KEY"]

[experts.helper]
instruction = "Help."
description = "Helps."
"#;

/// Values that must never appear in an exported object.
const SECRETS: [&str; 4] = [
    "sk-ant-value",
    "web-secret-value",
    "offline-secret-value",
    "the query",
];

pub(super) fn request() -> RunRequest {
    let loaded = load_str(std::path::Path::new("/cfg/perstack.toml"), CONFIG).expect("valid");
    RunRequest {
        run_id: "runid0000000abcdef".into(),
        job_id: "job1".into(),
        expert_key: "main".into(),
        query: "the query".into(),
        config: loaded.config,
        settings: RunSettings {
            provider: ProviderName::Anthropic,
            model: "claude-sonnet-4-5".into(),
            max_steps: 7,
            max_retries: 1,
            timeout_ms: 1000,
            reasoning_budget: None,
        },
        workspace: PathBuf::from("/workspace"),
        user: (1000, 1000),
        protected: super::protected_layout(&[]),
        runtime_env: vec![("ANTHROPIC_API_KEY".into(), "sk-ant-value".into())],
        env: BTreeMap::from([
            ("WEB_KEY".to_string(), "web-secret-value".to_string()),
            (
                "OFFLINE_KEY".to_string(),
                "offline-secret-value".to_string(),
            ),
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

pub(super) fn export(plan: &RunPlan, workspace: Workspace) -> Export {
    Export {
        name: "fitness".into(),
        namespace: Some("ci-agents".into()),
        images: plan
            .images
            .iter()
            .enumerate()
            .map(|(i, spec)| format!("reg.example/fitness:1.2-{}-{i}", spec.role.as_str()))
            .collect(),
        secret: "fitness".into(),
        secrets: BTreeMap::from([(
            "ANTHROPIC_API_KEY".to_string(),
            SecretKey {
                secret: "llm-keys".into(),
                key: "anthropic".into(),
            },
        )]),
        workspace,
        deadline_seconds: Some(3600),
        copy: None,
    }
}

fn objects(workspace: Workspace) -> Vec<Value> {
    let plan = plan(&request()).expect("plan");
    manifest::objects(&plan, &export(&plan, workspace)).expect("objects")
}

/// Every pod spec among the objects, with its kind.
fn pod_specs(objects: &[Value]) -> Vec<(&str, &Value)> {
    objects
        .iter()
        .filter_map(|o| {
            let spec = o["spec"]["template"]["spec"].as_object()?;
            Some((o["kind"].as_str()?, &o["spec"]["template"]["spec"])).filter(|_| !spec.is_empty())
        })
        .collect()
}

/// Every container of a pod spec: sidecars and the main ones.
fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod[k].as_array())
        .flatten()
        .collect()
}

fn by_name<'a>(pod: &'a Value, prefix: &str) -> &'a Value {
    containers(pod)
        .into_iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no container {prefix}"))
}

fn job(objects: &[Value]) -> &Value {
    let (_, pod) = pod_specs(objects)
        .into_iter()
        .find(|(kind, _)| *kind == "Job")
        .expect("a Job");
    pod
}

#[test]
fn the_objects_of_a_run_as_yaml() {
    let objects = objects(Workspace::Claim("ws-1".into()));
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "NetworkPolicy",
            "NetworkPolicy",
            "Service",
            "Deployment",
            "Job"
        ],
        "the fences before anything runs"
    );
    insta::assert_snapshot!(super::yaml::stream(&[], &objects));
}

#[test]
fn every_container_is_hardened_and_limited_and_every_pod_has_no_way_to_the_host_or_the_api() {
    for workspace in [
        Workspace::Claim("ws".into()),
        Workspace::EmptyDir("1Gi".into()),
    ] {
        let objects = objects(workspace);
        let pods = pod_specs(&objects);
        assert_eq!(pods.len(), 2, "the run's Job and the proxy's Deployment");
        for (kind, pod) in pods {
            for (key, want) in [
                ("automountServiceAccountToken", false),
                ("enableServiceLinks", false),
                ("shareProcessNamespace", false),
                ("hostNetwork", false),
                ("hostPID", false),
                ("hostIPC", false),
                ("hostUsers", false),
            ] {
                assert_eq!(pod[key], Value::Bool(want), "{kind}: {key}");
            }
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{kind}");
            for volume in pod["volumes"].as_array().expect("volumes") {
                let volume = volume.as_object().expect("volume");
                let sources: Vec<&String> = volume.keys().filter(|k| *k != "name").collect();
                assert!(
                    matches!(sources[..], [s] if s == "emptyDir" || s == "persistentVolumeClaim"),
                    "{kind}: {volume:?}"
                );
            }
            for c in containers(pod) {
                let sc = &c["securityContext"];
                let name = &c["name"];
                assert!(sc["runAsUser"].as_u64().is_some_and(|u| u > 0), "{name}");
                assert!(sc["runAsGroup"].is_u64(), "{name}");
                assert_eq!(sc["runAsNonRoot"], true, "{name}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
                assert_eq!(sc["privileged"], false, "{name}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
                assert_eq!(
                    sc["capabilities"],
                    serde_json::json!({"drop": ["ALL"]}),
                    "{name}"
                );
                assert!(sc["capabilities"].get("add").is_none(), "{name}");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
                let resources = &c["resources"];
                assert!(resources["limits"]["memory"].is_string(), "{name}");
                assert!(resources["limits"]["cpu"].is_string(), "{name}");
                assert_eq!(resources["limits"], resources["requests"], "{name}");
                let tmp = c["volumeMounts"]
                    .as_array()
                    .expect("mounts")
                    .iter()
                    .find(|m| m["mountPath"] == "/tmp")
                    .unwrap_or_else(|| panic!("{name}: no /tmp"));
                let tmp_volume = pod["volumes"]
                    .as_array()
                    .expect("volumes")
                    .iter()
                    .find(|v| v["name"] == tmp["name"])
                    .expect("tmp volume");
                assert_eq!(tmp_volume["emptyDir"]["medium"], "Memory", "{name}");
            }
        }
    }
}

#[test]
fn no_object_holds_a_secret_and_every_other_variable_is_a_secret_key_ref() {
    let objects = objects(Workspace::Claim("ws".into()));
    let text = serde_json::to_string(&objects).expect("json");
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} is in the objects");
    }
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Secret" || o["kind"] == "ConfigMap")
    );
    for (_, pod) in pod_specs(&objects) {
        for c in containers(pod) {
            for var in c["env"].as_array().into_iter().flatten() {
                let name = var["name"].as_str().expect("name");
                match var.get("value") {
                    Some(value) => assert!(
                        manifest::is_literal(name) || name == "PERSTACK_PROXY_CONFIG",
                        "{name} = {value}"
                    ),
                    None => assert!(
                        var["valueFrom"]["secretKeyRef"]["key"].is_string(),
                        "{name}: {var}"
                    ),
                }
            }
        }
    }
    // The query reaches the runtime by reference, expanded by the kubelet.
    let runtime = by_name(job(&objects), "runtime");
    let args = runtime["args"].as_array().expect("args");
    assert_eq!(args.last(), Some(&Value::from("$(PSB_QUERY)")));
    assert!(
        runtime["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|v| v["name"] == "PSB_QUERY" && v["valueFrom"]["secretKeyRef"]["key"] == "query")
    );
    // A variable mapped elsewhere comes from there.
    assert!(
        runtime["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|v| v["name"] == "ANTHROPIC_API_KEY"
                && v["valueFrom"]["secretKeyRef"]
                    == serde_json::json!({"name": "llm-keys", "key": "anthropic"}))
    );
}

#[test]
fn only_principals_with_allowed_domains_get_a_token_and_the_proxy_knows_each_by_it() {
    let objects = objects(Workspace::Claim("ws".into()));
    let pod = job(&objects);
    let token_of = |c: &Value| -> Option<String> {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "PSB_PROXY_TOKEN")
            .map(|v| {
                v["valueFrom"]["secretKeyRef"]["key"]
                    .as_str()
                    .expect("key")
                    .to_string()
            })
    };
    let with_token: BTreeMap<String, String> = containers(pod)
        .into_iter()
        .filter_map(|c| Some((c["name"].as_str()?.to_string(), token_of(c)?)))
        .collect();
    assert_eq!(
        with_token,
        BTreeMap::from([
            ("runtime".to_string(), "proxy-token-runtime".to_string()),
            (
                "skill-web-main".to_string(),
                "proxy-token-skill-web-main".to_string()
            ),
        ])
    );
    // Those without a token have no proxy URL either.
    for name in ["skill-offline-main", "base-skill-main", "base-skill-helper"] {
        let c = by_name(pod, name);
        let names: Vec<&str> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.to_ascii_uppercase().ends_with("_PROXY")),
            "{name}: {names:?}"
        );
    }
    let web = by_name(pod, "skill-web-main");
    let url = web["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|v| v["name"] == "HTTPS_PROXY")
        .expect("url");
    assert_eq!(
        url["value"],
        "http://skill%3Aweb%3Amain:$(PSB_PROXY_TOKEN)@fitness-egress-proxy:3128"
    );
    // The proxy: one tokenEnv per principal, each from that principal's key.
    let (_, proxy) = pod_specs(&objects)
        .into_iter()
        .find(|(k, _)| *k == "Deployment")
        .expect("proxy");
    let env = proxy["containers"][0]["env"].as_array().expect("env");
    let config: Value = env
        .iter()
        .find(|v| v["name"] == "PERSTACK_PROXY_CONFIG")
        .and_then(|v| serde_json::from_str(v["value"].as_str()?).ok())
        .expect("config");
    let principals = config["principals"].as_array().expect("principals");
    let names: Vec<&str> = principals
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["runtime", "skill:web:main"]);
    for principal in principals {
        let variable = &principal["tokenEnv"];
        let key = env
            .iter()
            .find(|v| &v["name"] == variable)
            .expect("token variable");
        let want = manifest::token_key(principal["name"].as_str().expect("name"));
        assert_eq!(key["valueFrom"]["secretKeyRef"]["key"], want.as_str());
    }
    // And the proxy reads it as it is written (digests of these variables).
    let env_values: BTreeMap<String, String> = BTreeMap::from([
        ("PSB_TOKEN_0".into(), "t0".into()),
        ("PSB_TOKEN_1".into(), "t1".into()),
    ]);
    let parsed =
        crate::proxy::ProxyConfig::parse_with(&config.to_string(), |n| env_values.get(n).cloned())
            .expect("the proxy takes it");
    assert_eq!(parsed.principals.len(), 2);
}

#[test]
fn each_socket_volume_is_in_exactly_its_skill_and_the_runtime() {
    let objects = objects(Workspace::Claim("ws".into()));
    let pod = job(&objects);
    let sockets: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .filter(|n| n.starts_with("socket-"))
        .collect();
    assert_eq!(sockets.len(), 4, "web, offline, two base-skills");
    for socket in sockets {
        let users: BTreeSet<&str> = containers(pod)
            .into_iter()
            .filter(|c| {
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["name"] == socket)
            })
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(users.len(), 2, "{socket}: {users:?}");
        assert!(users.contains("runtime"), "{socket}: {users:?}");
    }
}

#[test]
fn only_base_skill_mounts_the_workspace_and_its_run_data_is_hidden() {
    let objects = objects(Workspace::EmptyDir("2Gi".into()));
    let pod = job(&objects);
    for c in containers(pod) {
        let name = c["name"].as_str().expect("name");
        let mounts = c["volumeMounts"].as_array().expect("mounts");
        let workspace = mounts.iter().any(|m| m["name"] == "workspace");
        assert_eq!(workspace, name.starts_with("base-skill"), "{name}");
        if workspace {
            let hidden = mounts
                .iter()
                .find(|m| m["mountPath"] == "/workspace/perstack")
                .expect("run data hidden");
            assert_eq!(hidden["readOnly"], true);
            let git = mounts
                .iter()
                .find(|m| m["mountPath"] == "/workspace/.git")
                .expect(".git protected");
            assert_eq!(
                (&git["readOnly"], &git["subPath"]),
                (&Value::Bool(true), &Value::from(".git"))
            );
        }
    }
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "workspace")
        .expect("workspace");
    assert_eq!(volume["emptyDir"]["sizeLimit"], "2Gi");
}

#[test]
fn the_run_pod_may_reach_the_proxy_and_dns_only_and_the_proxy_only_hears_the_run_pod() {
    let objects = objects(Workspace::Claim("ws".into()));
    let run = &objects[0];
    assert_eq!(
        run["spec"]["podSelector"]["matchLabels"]["sandbox.perstack.io/role"],
        "run"
    );
    assert_eq!(run["spec"]["ingress"], serde_json::json!([]));
    let egress = run["spec"]["egress"].as_array().expect("egress");
    assert_eq!(egress.len(), 2);
    assert_eq!(
        egress[0]["to"][0]["podSelector"]["matchLabels"]["sandbox.perstack.io/role"],
        "egress-proxy"
    );
    assert_eq!(
        egress[0]["ports"],
        serde_json::json!([{"protocol": "TCP", "port": 3128}])
    );
    assert_eq!(
        egress[1]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    let proxy = &objects[1];
    assert_eq!(proxy["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    assert_eq!(
        proxy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["sandbox.perstack.io/role"],
        "run"
    );
}

#[test]
fn names_become_dns_labels_and_bad_users_are_refused() {
    assert_eq!(
        manifest::dns_label("skill:@org/Web_x:main", 50),
        "skill-org-web-x-main"
    );
    assert_eq!(manifest::dns_label("::", 50), "x");
    assert_eq!(manifest::dns_label(&"a".repeat(80), 50).len(), 50);
    let mut request = request();
    request.user = (0, 0);
    let plan = plan(&request).expect("plan");
    let error =
        manifest::objects(&plan, &export(&plan, Workspace::Claim("ws".into()))).expect_err("root");
    assert!(error.to_string().contains("--workspace-user"), "{error}");
}
