//! The security suite: what a skill under an attacker's control can reach, read and see, run
//! against the real engine. Each probe answers with the concrete outcome (connected or not, the
//! proxy's status, the addresses, the file's content or error kind), and each test asserts that
//! outcome — never a search for failure words.

use serde_json::Value;

use crate::support::registry::{registry_host, registry_lookalike, registry_vars};
use crate::support::{Finished, TestRun, require_docker, test_runtime, under_gvisor};

/// The suite's config: a template holding the registry host it may reach.
const CONFIG: &str = "e2e/security";

const PROVIDER_KEY: &str = "sk-ant-security-suite-must-not-leak";
const EGRESS_TOKEN: &str = "egress-token-for-the-skill-only";

fn probe_run(expert: &str) -> (TestRun, Finished) {
    let run = TestRun::templated(CONFIG, expert, &registry_vars())
        .host_env("EGRESS_TOKEN", EGRESS_TOKEN)
        .host_env("ANTHROPIC_API_KEY", PROVIDER_KEY)
        .host_env("AWS_SECRET_ACCESS_KEY", "aws-secret-must-not-leak");
    let done = run.run();
    done.assert_code(0);
    (run, done)
}

/// The JSON a probe answered with, by the call's id.
fn probe(done: &Finished, id: &str) -> Value {
    done.tool_json(id)
}

fn access(done: &Finished, domain: &str, port: u16) -> Value {
    done.of_type("proxyAccess")
        .into_iter()
        .find(|a| a["domain"] == domain && a["port"] == port)
        .cloned()
        .unwrap_or_else(|| panic!("no proxyAccess for {domain}:{port}"))
}

#[test]
fn a_skill_reaches_exactly_its_allowed_domains_through_the_proxy() {
    if !require_docker() {
        return;
    }
    let (run, done) = probe_run("attacker");

    // The allowed domain really works: the proxy opened the tunnel, and a TLS server answered
    // a ClientHello through it.
    let tunnel = probe(&done, "allowed");
    assert_eq!(tunnel["status"], 200, "{tunnel}");
    assert_eq!(tunnel["tlsServerHello"], true, "{tunnel}");
    let host = registry_host();
    let lookalike = format!("{host}.evil.example");
    let (_, punycode) = registry_lookalike();
    let allowed = access(&done, host, 443);
    assert_eq!(allowed["action"], "allowed");
    assert_eq!(allowed["client"], "skill:egress");

    // Everything else is refused by the proxy, and each refusal is reported with its reason.
    for (id, domain, port) in [
        ("not-listed", "example.com", 443),
        ("other-port", host, 8443),
        ("lookalike", lookalike.as_str(), 443),
        ("punycode", punycode.as_str(), 443),
        ("metadata-ip", "169.254.169.254", 80),
        ("metadata-name", "metadata.google.internal", 80),
        ("docker-host", "host.docker.internal", 2375),
        ("loopback", "127.0.0.1", 80),
        ("kubernetes", "kubernetes.default.svc", 443),
        ("exfiltrate", "attacker-server.example.com", 443),
    ] {
        assert_eq!(
            probe(&done, id)["status"],
            403,
            "{id}: {}",
            probe(&done, id)
        );
        let record = access(&done, domain, port);
        assert_eq!(record["action"], "blocked", "{id}");
        assert_eq!(record["client"], "skill:egress", "{id}");
        assert!(
            record["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{id}"
        );
    }
    assert_eq!(
        access(&done, "example.com", 443)["reason"],
        "Domain not in allowlist"
    );

    // Plain HTTP is never forwarded to a skill's domains, allowed name or not.
    for (id, domain) in [
        ("plain-http", "example.com"),
        ("plain-http-allowed-name", host),
    ] {
        assert_eq!(
            probe(&done, id)["status"],
            403,
            "{id}: {}",
            probe(&done, id)
        );
        assert_eq!(access(&done, domain, 80)["action"], "blocked", "{id}");
    }

    // Around the proxy there is nothing: no route out, no DNS.
    for id in ["direct-ip", "direct-gateway"] {
        assert_eq!(
            probe(&done, id)["connected"],
            false,
            "{id}: {}",
            probe(&done, id)
        );
    }
    assert_eq!(probe(&done, "dns")["addresses"], serde_json::json!([]));

    // The skill sees its own variable and the proxy settings, never the provider key.
    let env = probe(&done, "env");
    assert_eq!(env["EGRESS_TOKEN"], EGRESS_TOKEN);
    assert_eq!(env["HTTPS_PROXY"], "http://egress-proxy:3128");
    assert!(env.get("ANTHROPIC_API_KEY").is_none(), "{env}");
    assert!(env.get("AWS_SECRET_ACCESS_KEY").is_none(), "{env}");
    let environ = probe(&done, "environ");
    let environ = environ["content"].as_str().unwrap_or_default();
    assert!(!environ.contains(PROVIDER_KEY) && !environ.contains("aws-secret"));

    // Host secrets are not in the container at all.
    for id in [
        "shadow",
        "docker-sock",
        "ssh-key",
        "aws-creds",
        "shadow-link",
        "host-root-link",
    ] {
        let read = probe(&done, id);
        assert!(read.get("content").is_none(), "{id}: {read}");
    }
    // A symlink to /etc/passwd reads the container's own, which knows no host user.
    let passwd = probe(&done, "passwd-link");
    let passwd = passwd["content"].as_str().unwrap_or_default();
    assert!(passwd.contains("skill:x:10002:10002"), "{passwd}");
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for user in host_passwd.lines().filter_map(|l| l.split(':').next()) {
        if !["root", "nobody"].contains(&user) {
            assert!(
                !passwd.contains(&format!("\n{user}:")),
                "host user {user} visible"
            );
        }
    }
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}

#[test]
fn a_skill_without_allowed_domains_has_no_network_at_all() {
    if !require_docker() {
        return;
    }
    let (run, done) = probe_run("bystander");
    // No proxy settings, and the proxy itself is out of reach (no proxy runs for this run).
    assert!(probe(&done, "no-proxy")["error"].is_string());
    assert_eq!(probe(&done, "reach-proxy")["connected"], false);
    assert_eq!(probe(&done, "direct-ip")["connected"], false);
    let env = probe(&done, "env");
    assert!(
        env.get("HTTPS_PROXY").is_none() && env.get("EGRESS_TOKEN").is_none(),
        "{env}"
    );
    assert!(done.of_type("proxyAccess").is_empty());
    // The kernel the skill sees: the host's under runc; gVisor's own (its Sentry answers every
    // system call) under runsc.
    let kernel = probe(&done, "kernel")["content"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", probe(&done, "kernel")))
        .to_string();
    let host_kernel = std::fs::read_to_string("/proc/version").expect("the host's /proc/version");
    if under_gvisor() {
        assert_ne!(kernel, host_kernel, "the skill saw the host's kernel");
    } else if test_runtime().is_none() {
        assert_eq!(kernel, host_kernel);
    }
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}

/// `docker inspect` of a live run's networks and containers, by the job's label.
fn inspect(kind: &str, job_id: &str) -> Vec<Value> {
    let list = std::process::Command::new("docker")
        .args(match kind {
            "network" => vec!["network", "ls", "-q"],
            _ => vec!["ps", "-q"],
        })
        .args([
            "--filter",
            &format!("label=io.perstack.sandbox.job-id={job_id}"),
        ])
        .output()
        .expect("docker ls");
    let ids: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return vec![];
    }
    let out = std::process::Command::new("docker")
        .arg(kind)
        .arg("inspect")
        .args(&ids)
        .output()
        .expect("docker inspect");
    serde_json::from_slice(&out.stdout).expect("inspect JSON")
}

#[test]
fn the_live_topology_gives_each_principal_an_internal_network_shared_only_with_the_proxy() {
    if !require_docker() {
        return;
    }
    let run = TestRun::templated(CONFIG, "inspected", &registry_vars())
        .host_env("EGRESS_TOKEN", EGRESS_TOKEN);
    let mut child = run.spawn();
    crate::support::read_until(
        &mut child,
        "\"callTools\"",
        std::time::Duration::from_secs(180),
    );
    let networks = inspect("network", &run.guard.job_id);
    let containers = inspect("container", &run.guard.job_id);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();

    // One network: the egress skill's (the mock runtime needs none); internal, no route out.
    assert_eq!(networks.len(), 1, "{networks:#?}");
    let network = &networks[0];
    assert_eq!(network["Internal"], true);
    let name = network["Name"].as_str().expect("name").to_string();
    let on = |c: &Value| -> Vec<String> {
        c["NetworkSettings"]["Networks"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let service = |c: &Value| {
        c["Config"]["Labels"]["io.perstack.sandbox.service"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    for container in &containers {
        let mut nets = on(container);
        nets.sort();
        match service(container).as_str() {
            // The proxy alone has a route out, and joins the skill's network.
            "egress-proxy" => assert_eq!(
                nets,
                [
                    perstack_sandbox::test_support::http::default_bridge().to_string(),
                    name.clone()
                ]
            ),
            "skill:egress" => {
                assert_eq!(nets, std::slice::from_ref(&name));
                // Podman's inspect says `bridge` for any bridge network; its list above holds.
                let podman = crate::support::on_podman();
                let mode = &container["HostConfig"]["NetworkMode"];
                assert!(
                    *mode == name.as_str() || (podman && *mode == "bridge"),
                    "NetworkMode {mode}"
                );
            }
            // The offline skill, base-skill and the mock runtime: no network at all.
            other => assert_eq!(
                container["HostConfig"]["NetworkMode"], "none",
                "{other}: {nets:?}"
            ),
        }
    }
    // Every container, the proxy's included, under the runtime the run was given (none named:
    // the engine's default).
    for container in &containers {
        let runtime = container["HostConfig"]["Runtime"].as_str().unwrap_or("");
        match test_runtime() {
            Some(expected) => assert_eq!(runtime, expected, "{}", service(container)),
            // Podman's inspect says `oci` for its default runtime, whatever `info` names it.
            None if crate::support::on_podman() => {
                assert_eq!(runtime, "oci", "{}", service(container))
            }
            None => assert_eq!(
                runtime,
                crate::support::docker(&["info", "--format", "{{.DefaultRuntime}}"]).trim(),
                "{}",
                service(container)
            ),
        }
    }
    let services: Vec<String> = containers.iter().map(service).collect();
    assert!(
        services.contains(&"egress-proxy".to_string()),
        "{services:?}"
    );
    assert!(
        services.contains(&"skill:offline".to_string()),
        "{services:?}"
    );
    assert!(
        run.guard.leftovers().is_empty(),
        "{:?}",
        run.guard.leftovers()
    );
}
