//! Run-time trust and name lookups, on the real engine, from two kinds of client: our static
//! binary (the fixture, on `scratch`) and Debian's glibc, Python, OpenSSL and curl (a stdlib-only
//! MCP server on the local Debian image, `tests/fixtures/e2e/tls-dns/probe.py`).
//!
//! - A skill with `allowedDomains` trusts the chosen CA bundle (`--ca-certificates`, else the
//!   host's) through every variable common stacks read, and reaches its domain over HTTPS through
//!   the egress proxy — behind this machine's TLS-intercepting proxy, only with the host's CA.
//!   Another bundle is another image; a bundle without that CA fails verification.
//! - In a container without a resolver (network none, or an internal network) a lookup fails at
//!   once, not after the resolver's ~10 s; the proxy's own name still resolves.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::registry::{registry_host, registry_vars};
use crate::support::{Finished, JobGuard, TestRun, docker, fixture, require_bookworm_image};

const CONFIG: &str = "e2e/tls-dns";
/// Where images keep the chosen bundle (`contract::paths::CA_BUNDLE_PATH`).
const CA_PATH: &str = "/etc/perstack-sandbox/ca-certificates.crt";
/// The variables that must point at it.
const CA_VARIABLES: [&str; 6] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
];
/// A failed lookup must return well within this (it takes milliseconds; the resolver's own
/// timeouts would take 10–20 s).
const LOOKUP_BOUND_MS: u64 = 3000;

/// The host's bundle, as the controller finds it: `SSL_CERT_FILE`, else Debian's place.
fn host_bundle() -> String {
    let path = std::env::var("SSL_CERT_FILE")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".to_string());
    assert!(
        Path::new(&path).is_file(),
        "these tests need the host's CA bundle at {path}"
    );
    path
}

fn sha256_of(path: &str) -> String {
    hex::encode(Sha256::digest(
        std::fs::read(path).expect("read the bundle"),
    ))
}

fn probe_run(expert: &str, args: &[&str]) -> (TestRun, Finished) {
    let probe = std::fs::read_to_string(fixture("e2e/tls-dns/probe.py")).expect("probe.py");
    let mut run = TestRun::templated(CONFIG, expert, &registry_vars())
        .host_env("PROBE", &probe)
        .host_env("SSL_CERT_FILE", &host_bundle());
    for arg in args {
        run = run.arg(arg);
    }
    let done = run.run();
    done.assert_code(0);
    (run, done)
}

/// A lookup's answer: no address, an error, and back within the bound. Returns its `ms`.
fn failed_at_once(done: &Finished, id: &str) -> u64 {
    let lookup = done.tool_json(id);
    assert_eq!(lookup["addresses"], serde_json::json!([]), "{id}: {lookup}");
    assert!(lookup["error"].is_string(), "{id}: {lookup}");
    let ms = lookup["ms"].as_u64().expect("ms");
    assert!(ms < LOOKUP_BOUND_MS, "{id}: {ms} ms: {lookup}");
    ms
}

#[test]
fn a_name_lookup_without_a_resolver_fails_at_once_and_the_proxy_still_resolves() {
    if !require_bookworm_image() {
        return;
    }
    // Internal networks: Docker's embedded resolver has nowhere to forward.
    let (online, done) = probe_run("online", &[]);
    let static_ms = failed_at_once(&done, "static-lookup");
    let glibc_ms = failed_at_once(&done, "glibc-lookup");
    // The proxy's name comes from /etc/hosts, with its address on the skill's network.
    let proxy = done.tool_json("proxy-lookup");
    let addresses = proxy["addresses"].as_array().expect("addresses");
    assert_eq!(addresses.len(), 1, "{proxy}");
    assert!(proxy["error"].is_null(), "{proxy}");
    assert!(
        done.of_type("proxyAccess")
            .iter()
            .all(|a| a["action"] == "allowed")
    );
    assert_eq!(online.guard.leftovers(), Vec::<String>::new());

    // Network none.
    let (offline, done) = probe_run("offline", &[]);
    let none_static_ms = failed_at_once(&done, "static-lookup");
    let none_glibc_ms = failed_at_once(&done, "glibc-lookup");
    eprintln!(
        "failed lookups (runc): internal network: static {static_ms} ms, glibc {glibc_ms} ms; \
         network none: static {none_static_ms} ms, glibc {none_glibc_ms} ms"
    );
    assert_eq!(offline.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn a_skill_that_reaches_out_trusts_the_chosen_bundle_and_another_bundle_is_another_image() {
    if !require_bookworm_image() {
        return;
    }
    let host = registry_host();
    let (first, done) = probe_run("online", &[]);
    // Every variable points at the bundle, the server sees them (the skill host passes them),
    // and the file is the host's bundle.
    let trust = done.tool_json("trust");
    for name in CA_VARIABLES {
        assert_eq!(trust["env"][name], CA_PATH, "{name}: {trust}");
    }
    assert_eq!(trust["sha256"], sha256_of(&host_bundle()), "{trust}");
    // Python's urllib and curl reach the allowed host over HTTPS through the proxy, trusting
    // what this machine trusts. Neither resolved the name first (it cannot resolve here). A
    // connection the outside world broke under way is tried again by the probe (`broken`).
    let urllib = done.tool_json("urllib");
    assert_eq!(urllib["status"], 200, "{urllib}");
    let curl = done.tool_json("curl");
    assert_eq!(
        (&curl["exit"], &curl["status"]),
        (&0.into(), &"200".into()),
        "{curl}"
    );
    let retried = broken_tries(&urllib) + broken_tries(&curl);
    let allowed = done
        .of_type("proxyAccess")
        .into_iter()
        .filter(|a| a["domain"] == host && a["port"] == 443 && a["action"] == "allowed")
        .filter(|a| a["client"] == "skill:python")
        .count();
    assert!((2..=2 + retried).contains(&allowed), "{}", done.stdout);
    assert_eq!(first.guard.leftovers(), Vec::<String>::new());

    // Another bundle: a test CA that signed nothing this machine sees.
    let test_ca = fixture("ca/test-ca.pem");
    let test_ca = test_ca.to_str().expect("utf-8 path");
    let (second, again) = probe_run("online", &["--ca-certificates", test_ca]);
    let trust = again.tool_json("trust");
    assert_eq!(trust["sha256"], sha256_of(test_ca), "{trust}");
    let urllib = again.tool_json("urllib");
    assert!(
        urllib["error"]
            .as_str()
            .is_some_and(|e| e.contains("CERTIFICATE_VERIFY_FAILED")),
        "{urllib}"
    );
    // curl's "problem with the SSL CA cert" / "peer certificate cannot be authenticated".
    let curl = again.tool_json("curl");
    assert_eq!(curl["exit"], 60, "{curl}");
    // The bundle is part of the digest of the images that carry it, and only of those: the
    // mock runtime has no network and no bundle.
    for service in ["skill:python", "skill:fixture"] {
        assert_ne!(
            done.image_tag(service),
            again.image_tag(service),
            "{service}"
        );
    }
    assert_eq!(done.image_tag("runtime"), again.image_tag("runtime"));
    assert_eq!(second.guard.leftovers(), Vec::<String>::new());
}

/// How many of a probe's fetches broke under way before its last (`probe.py`'s `broken`); says
/// which on stderr, so a retried fetch shows in the test's output.
fn broken_tries(result: &Value) -> usize {
    let broken = result["broken"]
        .as_array()
        .expect("the probe lists broken tries");
    for why in broken {
        eprintln!("a fetch broke under way and was tried again: {why}");
    }
    broken.len()
}

#[test]
fn a_skill_without_a_network_gets_no_bundle() {
    if !require_bookworm_image() {
        return;
    }
    let (run, done) = probe_run("offline", &[]);
    let trust = done.tool_json("trust");
    for name in CA_VARIABLES {
        assert!(trust["env"][name].is_null(), "{name}: {trust}");
    }
    assert!(trust["sha256"].is_null(), "{trust}");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

/// The runtimes the engine has registered (`docker info`).
fn runtimes() -> Vec<String> {
    let json = docker(&["info", "--format", "{{json .Runtimes}}"]);
    let runtimes: Value = serde_json::from_str(json.trim()).expect("runtimes JSON");
    runtimes
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Runs `args` (after `docker run --rm`) with the guard's labels, our hardening, and `stdin`;
/// returns stdout.
fn run_container(guard: &JobGuard, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let label = format!("io.perstack.sandbox.job-id={}", guard.job_id);
    let mut child = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-i",
            "--label",
            "io.perstack.sandbox.managed=true",
        ])
        .args(["--label", &label, "--read-only", "--cap-drop", "ALL"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker run");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// MCP on stdin: the handshake, then `resolve` of `host` by the fixture.
fn resolve_request(host: &str) -> String {
    [
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "resolve", "arguments": {"host": host}}}),
    ]
    .iter()
    .map(|m| format!("{m}\n"))
    .collect()
}

/// The `ms` of the fixture's answer to call 2.
fn fixture_ms(stdout: &str) -> u64 {
    let answer = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["id"] == 2)
        .unwrap_or_else(|| panic!("no answer to resolve: {stdout}"));
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .expect("text");
    let result: Value = serde_json::from_str(text).expect("JSON");
    assert_eq!(result["addresses"], serde_json::json!([]), "{result}");
    result["ms"].as_u64().expect("ms")
}

/// The same images under every registered runtime (runc, and gVisor's runsc where the engine
/// has it): a run's images, started as a run starts them, on network none and on an internal
/// network with the proxy's name in /etc/hosts. The lookup is timed inside the container.
#[test]
fn lookups_fail_at_once_under_runc_and_runsc_too() {
    if !require_bookworm_image() {
        return;
    }
    let (run, done) = probe_run("offline", &[]);
    let python = done.image_tag("skill:python");
    let fixture_image = done.image_tag("skill:fixture");
    let guard = &run.guard;
    let network = format!("psbx-{}-internal", guard.job_id);
    let label = format!("io.perstack.sandbox.job-id={}", guard.job_id);
    docker(&[
        "network",
        "create",
        "--internal",
        "--label",
        &label,
        &network,
    ]);
    let host = registry_host();
    let getent = format!(
        "s=$(date +%s%N); getent hosts {host}; echo \"exit=$?\"; e=$(date +%s%N); \
         echo \"ms=$(( (e - s) / 1000000 ))\""
    );
    let available = runtimes();
    let mut measured = Vec::new();
    for runtime in ["runc", "runsc"] {
        if !available.iter().any(|r| r == runtime) {
            eprintln!("{runtime} is not registered with the engine: not measured");
            continue;
        }
        for net in ["none", network.as_str()] {
            let common = [
                "--runtime",
                runtime,
                "--network",
                net,
                "--add-host",
                "egress-proxy:10.255.0.2",
            ];
            let mut shell: Vec<&str> = common.to_vec();
            shell.extend(["--entrypoint", "sh", &python, "-c", &getent]);
            let started = Instant::now();
            let out = run_container(guard, &shell, "");
            let wall = started.elapsed();
            let ms: u64 = out
                .lines()
                .find_map(|l| l.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{runtime} {net}: {out}"));
            assert!(out.contains("exit=2"), "{runtime} {net}: resolved: {out}");
            assert!(ms < LOOKUP_BOUND_MS, "{runtime} {net}: glibc {ms} ms");
            assert!(wall < Duration::from_secs(30), "{runtime} {net}: {wall:?}");

            let mut own: Vec<&str> = common.to_vec();
            own.extend([
                "--entrypoint",
                "/usr/local/bin/perstack-sandbox",
                &fixture_image,
                "fixture-mcp",
            ]);
            let static_ms = fixture_ms(&run_container(guard, &own, &resolve_request(host)));
            assert!(
                static_ms < LOOKUP_BOUND_MS,
                "{runtime} {net}: static {static_ms} ms"
            );
            let kind = if net == "none" { "none" } else { "internal" };
            measured.push(format!(
                "{runtime}/{kind}: glibc {ms} ms, static {static_ms} ms"
            ));
        }
    }
    eprintln!("failed lookups: {}", measured.join("; "));
    assert!(!measured.is_empty());
}

/// The certificates of a PEM bundle, as their base64 bodies (equal bodies: equal DER).
fn pem_bodies(pem: &str) -> Vec<String> {
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|block| block.split("-----END CERTIFICATE-----").next())
        .map(|body| body.split_whitespace().collect())
        .collect()
}

#[test]
fn doctor_names_the_bundle_and_what_a_base_images_own_lacks() {
    if !require_bookworm_image() {
        return;
    }
    let guard = JobGuard::new();
    let own = pem_bodies(&run_container(
        &guard,
        &[
            "--network",
            "none",
            "--entrypoint",
            "cat",
            crate::support::BOOKWORM_IMAGE,
            "/etc/ssl/certs/ca-certificates.crt",
        ],
        "",
    ));
    assert!(!own.is_empty(), "the Debian image has a bundle");
    let doctor = |config: &Path| {
        let out = Command::new(crate::support::binary())
            .args(["doctor", "--config"])
            .arg(config)
            .env("SSL_CERT_FILE", host_bundle())
            .output()
            .expect("doctor");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        crate::support::assert_doctor_ready(out.status.code(), &stdout);
        stdout
    };

    // The host's bundle, by default: its count, and how many of its certificates the Debian
    // image's own bundle lacks (here, the TLS-intercepting proxy's CA).
    let report = doctor(&fixture("e2e/pypi-skill/perstack.toml"));
    let host = pem_bodies(&std::fs::read_to_string(host_bundle()).expect("host bundle"));
    assert!(
        report.contains(&format!(
            "✔ CA bundle        {} (the host's bundle, from SSL_CERT_FILE), {} certificates",
            host_bundle(),
            host.len()
        )),
        "{report}"
    );
    let lacking = host.iter().filter(|c| !own.contains(c)).count();
    let line = report
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("perstack-sandbox/bookworm:local (skill time): ")
        })
        .unwrap_or_else(|| panic!("no line for the Debian image:\n{report}"));
    if lacking == 0 {
        assert!(line.contains("already holds all of these"), "{line}");
    } else {
        assert!(
            line.contains(&format!(
                "({} certificates) lacks {lacking} of these",
                own.len()
            )),
            "{line}"
        );
    }

    // A bundle of the file's choosing: named with the setting's place, and what the image lacks
    // named by the certificates' own names.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("perstack.toml");
    let text = std::fs::read_to_string(fixture("e2e/pypi-skill/perstack.toml"))
        .expect("config")
        .replace(
            "[sandbox]\n",
            &format!(
                "[sandbox]\ncaCertificates = \"{}\"\n",
                fixture("ca/test-ca.pem").display()
            ),
        );
    std::fs::write(&config, text).expect("write");
    let report = doctor(&config);
    assert!(
        report.contains(&format!(
            "✔ CA bundle        {} ([sandbox] caCertificates at {}:",
            fixture("ca/test-ca.pem").display(),
            config.display()
        )),
        "{report}"
    );
    assert!(report.contains("), 2 certificates:"), "{report}");
    assert!(
        report.contains("lacks 2 of these: \"perstack-sandbox test CA\", \"Only An Organization\""),
        "{report}"
    );
    assert_eq!(guard.leftovers(), Vec::<String>::new());
}
