//! Proxy principals by token, in the topology of a Kubernetes pod, on the real engine: the
//! principals' containers share one network namespace (a "pause" container's, joined with
//! `--network container:<pause>`), so the network no longer says who is asking; the egress proxy
//! is a container of its own, reachable from that namespace as `egress-proxy`, as the proxy
//! Service is from a run pod. Each principal's container holds only its own proxy URL with its
//! token; the proxy's configuration holds digests (`proxy::token::issue` makes both).
//!
//! The clients are real ones that read the credentials from the proxy URL: curl, and Python's
//! urllib. The probes answer with concrete outcomes (the proxy's status to `CONNECT`, the HTTP
//! status through the tunnel, the headers an origin received), and each is asserted.

use std::process::Command;

use perstack_sandbox::test_support::internals::proxy::{Allowlist, DomainRule, Issued, token};
use perstack_sandbox::test_support::internals::proxy::{
    Identity, PROXY_CONFIG_VAR, PROXY_PORT, Principal, ProxyConfig, TrustedEndpoint,
};
use serde_json::Value;

use crate::support::registry::registry_host;
use crate::support::{BOOKWORM_IMAGE, JobGuard, binary, docker, require_bookworm_image};

/// The proxy's name on the pod's network, as in a run.
const PROXY_HOST: &str = "egress-proxy";
/// The variable the proxy finds the web skill's token in.
const WEB_TOKEN_VARIABLE: &str = "PSB_TOKEN_WEB";
/// The port of the origin server the runtime may reach over plain HTTP (like Ollama's).
const ORIGIN_PORT: u16 = 8080;

/// One test's Docker resources, all labelled with its job id (removed by the guard, panics
/// included).
struct Pod {
    guard: JobGuard,
}

impl Pod {
    fn name(&self, what: &str) -> String {
        format!("psbx-{}-{what}", self.guard.job_id)
    }

    fn labels(&self) -> Vec<String> {
        vec![
            "--label".into(),
            "io.perstack.sandbox.managed=true".into(),
            "--label".into(),
            format!("io.perstack.sandbox.job-id={}", self.guard.job_id),
        ]
    }

    /// Starts a detached container named `what` with `args` (options, then image and command).
    fn start(&self, what: &str, args: &[&str]) -> String {
        let name = self.name(what);
        let mut all: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.clone()];
        all.extend(self.labels());
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        docker(&all);
        name
    }
}

/// The options every client container of the pod runs with: joined to the pause container's
/// network namespace, hardened as a run's containers are, as uid `uid`.
fn client_options(pause: &str, uid: u32) -> Vec<String> {
    let mut options: Vec<String> = [
        "--network",
        &format!("container:{pause}"),
        "--user",
        &format!("{uid}:{uid}"),
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The host's bundle, so TLS through the tunnel is verified for real (also behind a
    // TLS-intercepting gateway); the image's own otherwise.
    if std::path::Path::new(HOST_CA_BUNDLE).is_file() {
        options.extend(["-v".into(), format!("{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro")]);
    }
    options
}

/// Where Debian keeps the CA bundle, on the host and in the bookworm image.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The environment a principal's container gets: its proxy URL, nothing else of the proxy's.
fn proxy_env(url: &str) -> Vec<String> {
    ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"]
        .iter()
        .flat_map(|k| ["-e".to_string(), format!("{k}={url}")])
        .collect()
}

/// `docker exec` in `container`: (exit code, stdout, stderr), whatever the code.
fn exec(container: &str, script: &str) -> (i32, String, String) {
    let out = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .expect("docker exec");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// curl in `container` with `args`: the proxy's answer to `CONNECT` and the HTTP status
/// (`000` when there was none), as curl reports them.
fn curl(container: &str, args: &str) -> (String, String) {
    let script =
        format!("curl -sS -m 20 -o /dev/null -w '%{{http_connect}} %{{http_code}}' {args}; true");
    let (_, out, err) = exec(container, &script);
    let mut codes = out.split_whitespace().map(str::to_string);
    match (codes.next(), codes.next()) {
        (Some(connect), Some(http)) => (connect, http),
        _ => panic!("curl in {container} answered {out:?}; stderr: {err}"),
    }
}

fn principal(name: &str, issued: &Issued, rules: &[&str]) -> Principal {
    Principal {
        name: name.into(),
        identity: Identity::Token(issued.digest),
        allow: Allowlist {
            rules: rules
                .iter()
                .map(|r| DomainRule::parse(r).expect("rule"))
                .collect(),
        },
        trusted: vec![],
    }
}

/// The origin server: prints each request's head back as its body.
const ECHO_SERVER: &str = r#"
import http.server
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(self.headers).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", 8080), Echo).serve_forever()
"#;

/// Python's urllib through the proxy of `HTTPS_PROXY`: `{"status": N}` or `{"error": "..."}`.
const URLLIB_GET: &str = r#"
import json, sys, urllib.error, urllib.request
try:
    print(json.dumps({"status": urllib.request.urlopen(sys.argv[1], timeout=20).status}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code}))
except Exception as e:
    print(json.dumps({"error": str(e)}))
"#;

#[test]
fn principals_sharing_a_network_namespace_are_told_apart_by_their_tokens_only() {
    if !require_bookworm_image() {
        return;
    }
    let pod = Pod {
        guard: JobGuard::new(),
    };
    let up = pod.up();
    a_skill_with_its_token_reaches_its_allowlist_only(&up);
    the_runtime_reaches_its_origin_which_never_sees_the_credentials(&up);
    without_a_token_a_client_gets_407_and_no_way_around_the_proxy(&up);
    claiming_another_principal_gets_407(&up);
    another_principals_token_is_out_of_reach(&up);
    the_proxy_holds_digests_and_records_who_asked_without_tokens(&up);
}

/// A running pod: the principals' containers, the proxy, the origin, and the tokens the
/// controller issued.
struct Up {
    runtime: Issued,
    web: Issued,
    runtime_box: String,
    web_box: String,
    offline_box: String,
    proxy: String,
    origin_ip: String,
}

impl Up {
    /// The skill's allowed destination.
    fn https(&self) -> String {
        format!("https://{}/simple/", registry_host())
    }

    /// The runtime's origin, over plain HTTP.
    fn plain(&self) -> String {
        format!("http://{}:{ORIGIN_PORT}/", self.origin_ip)
    }
}

impl Pod {
    /// Starts the origin, issues the tokens, and starts the pod and the proxy.
    fn up(&self) -> Up {
        // An origin on the default bridge that only the runtime may reach, over plain HTTP.
        let origin = self.start("origin", &[BOOKWORM_IMAGE, "python3", "-c", ECHO_SERVER]);
        let origin_ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &origin])
            .trim()
            .to_string();

        // The controller's side: a token per principal with allowedDomains (the runtime, the
        // web skill); the offline skill has none, so no token.
        let runtime = token::issue("runtime", PROXY_HOST, PROXY_PORT).expect("issue");
        let web = token::issue("skill:web", PROXY_HOST, PROXY_PORT).expect("issue");
        let mut runtime_principal = principal("runtime", &runtime, &[]);
        runtime_principal.trusted = vec![TrustedEndpoint {
            host: origin_ip.clone(),
            port: ORIGIN_PORT,
            plain_http: true,
        }];
        let config = ProxyConfig {
            principals: vec![
                runtime_principal,
                principal("skill:web", &web, &[registry_host()]),
            ],
        };

        // The pod: an internal network (no route out, no DNS for outside names), the proxy on
        // it, and a pause container holding the namespace the principals join, which knows the
        // proxy by its name.
        let network = self.name("pod");
        self.create_internal_network(&network);
        let proxy = self.start_proxy(&network, &config, &token_of(&web));
        let proxy_ip = docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            &proxy,
        ])
        .trim()
        .to_string();
        let pause = self.start(
            "pause",
            &[
                "--network",
                &network,
                "--add-host",
                &format!("{PROXY_HOST}:{proxy_ip}"),
                BOOKWORM_IMAGE,
                "sleep",
                "infinity",
            ],
        );
        let client = |what: &str, uid: u32, url: Option<&str>| {
            let mut args = client_options(&pause, uid);
            if let Some(url) = url {
                args.extend(proxy_env(url));
            }
            args.extend([BOOKWORM_IMAGE, "sleep", "infinity"].map(String::from));
            self.start(what, &args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let up = Up {
            runtime_box: client("runtime", 10000, Some(runtime.url.expose())),
            web_box: client("web", 10002, Some(web.url.expose())),
            offline_box: client("offline", 10003, None),
            runtime,
            web,
            proxy,
            origin_ip,
        };
        wait_for_proxy(&up.offline_box);
        up
    }

    /// An internal network labelled as ours. Podman's Docker endpoint would switch its DNS
    /// server on, which answers outside names too: there it is made as a run makes it, through
    /// Podman's own endpoint with DNS off.
    fn create_internal_network(&self, network: &str) {
        if perstack_sandbox::test_support::http::default_bridge() != "podman" {
            let labels = self.labels();
            let mut create = vec!["network", "create", "--internal"];
            create.extend(labels.iter().map(String::as_str));
            create.push(network);
            docker(&create);
            return;
        }
        let body = serde_json::json!({
            "name": network,
            "driver": "bridge",
            "internal": true,
            "dns_enabled": false,
            "labels": {
                "io.perstack.sandbox.managed": "true",
                "io.perstack.sandbox.job-id": self.guard.job_id,
            },
        });
        let host = std::env::var("DOCKER_HOST").expect("DOCKER_HOST names the Podman service");
        let (socket, base) = match host.strip_prefix("unix://") {
            Some(path) => (
                vec!["--unix-socket".to_string(), path.to_string()],
                "http://d".into(),
            ),
            None => (vec![], host.replacen("tcp://", "http://", 1)),
        };
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail-with-body", "-X", "POST"])
            .args(&socket)
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(body.to_string())
            .arg(format!("{base}/v4.0.0/libpod/networks/create"))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "create {network}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The egress proxy (our binary's role, hardened as in a run) on the default bridge, and on
    /// the pod's network as `egress-proxy`, as the proxy Service is for a run pod.
    fn start_proxy(&self, network: &str, config: &ProxyConfig, web_token: &str) -> String {
        let proxy = self.name("egress-proxy");
        let bin = format!("{}:/usr/local/bin/perstack-sandbox:ro", binary());
        // The web skill's token as the exported Kubernetes proxy gets it (`export kubernetes`):
        // the configuration names the variable (`tokenEnv`), which holds the token (there from
        // a secretKeyRef); the runtime's as a digest, as a controller writes it.
        let mut config = serde_json::to_value(config).expect("config");
        let web = config["principals"]
            .as_array_mut()
            .expect("principals")
            .iter_mut()
            .find(|p| p["name"] == "skill:web")
            .expect("web")
            .as_object_mut()
            .expect("object");
        web.remove("tokenSha256");
        web.insert("tokenEnv".into(), WEB_TOKEN_VARIABLE.into());
        let config = config.to_string();
        let web_token = format!("{WEB_TOKEN_VARIABLE}={web_token}");
        let mut create: Vec<String> = vec!["create".into(), "--name".into(), proxy.clone()];
        create.extend(self.labels());
        create.extend(
            [
                "--user",
                "10001:10001",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "--read-only",
                "-v",
                &bin,
                "-e",
                &format!("{PROXY_CONFIG_VAR}={config}"),
                "-e",
                &web_token,
                BOOKWORM_IMAGE,
                "/usr/local/bin/perstack-sandbox",
                "egress-proxy",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        docker(&create.iter().map(String::as_str).collect::<Vec<_>>());
        docker(&["network", "connect", "--alias", PROXY_HOST, network, &proxy]);
        docker(&["start", &proxy]);
        proxy
    }
}

/// The web skill reaches its domain with its token, through curl and through urllib: the tunnel
/// opened, and TLS and HTTP went through it. Nothing of the runtime's, nothing unlisted.
fn a_skill_with_its_token_reaches_its_allowlist_only(up: &Up) {
    let (connect, status) = curl(&up.web_box, &up.https());
    assert_eq!(connect, "200", "CONNECT with the skill's own token");
    assert_ne!(status, "000", "no HTTP answer through the tunnel");
    let (_, out, err) = exec(
        &up.web_box,
        &format!("python3 -c '{URLLIB_GET}' {}", up.https()),
    );
    let urllib: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out} {err}"));
    assert!(urllib["status"].is_u64(), "urllib: {urllib}");
    assert_eq!(
        curl(&up.web_box, &up.plain()).1,
        "403",
        "the runtime's origin"
    );
    assert_eq!(
        curl(&up.web_box, "https://example.com/").0,
        "403",
        "a domain not listed"
    );
}

/// The runtime reaches its origin over plain HTTP; the origin never sees the credentials. Its
/// token does not open the skill's domain.
fn the_runtime_reaches_its_origin_which_never_sees_the_credentials(up: &Up) {
    let (_, headers, err) = exec(&up.runtime_box, &format!("curl -sS -m 20 {}", up.plain()));
    assert!(headers.contains("Host:"), "origin's echo: {headers} {err}");
    assert!(
        !headers.to_ascii_lowercase().contains("proxy-authorization"),
        "{headers}"
    );
    assert!(!headers.contains(&token_of(&up.runtime)), "{headers}");
    assert_eq!(curl(&up.runtime_box, &up.https()).0, "403");
}

/// A skill without allowedDomains has no token: the proxy answers 407 with a Basic challenge,
/// and there is no way around it (no DNS, no route).
fn without_a_token_a_client_gets_407_and_no_way_around_the_proxy(up: &Up) {
    let (_, head, _) = exec(
        &up.offline_box,
        &format!(
            "curl -sS -m 20 -D - -o /dev/null -x http://{PROXY_HOST}:{PROXY_PORT} {}",
            up.https()
        ),
    );
    assert!(
        head.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nProxy-Authenticate: Basic realm=\"perstack-sandbox\"\r\n"),
        "{head}"
    );
    // A name that resolves anywhere resolves in milliseconds; here the lookup times out.
    let (code, addresses, _) = exec(
        &up.offline_box,
        &format!("timeout 3 getent hosts {}", registry_host()),
    );
    assert!(code != 0 && addresses.is_empty(), "resolved: {addresses}");
    let (code, _, _) = exec(
        &up.offline_box,
        "curl -sS -m 10 --noproxy '*' -o /dev/null https://1.1.1.1/",
    );
    assert_ne!(code, 0, "a direct connection left the pod");
}

/// The skill claims the runtime with its own token, or with a guess, or an unknown name with its
/// own token: 407 for plain HTTP and for CONNECT.
fn claiming_another_principal_gets_407(up: &Up) {
    let web_token = token_of(&up.web);
    for url in [
        format!("http://runtime:{web_token}@{PROXY_HOST}:{PROXY_PORT}"),
        format!("http://runtime:guess@{PROXY_HOST}:{PROXY_PORT}"),
        format!("http://skill%3Anobody:{web_token}@{PROXY_HOST}:{PROXY_PORT}"),
    ] {
        // Plain HTTP answers with the proxy's status; HTTPS with its answer to CONNECT.
        let (_, forwarded) = curl(&up.web_box, &format!("-x '{url}' {}", up.plain()));
        let (tunnel, _) = curl(&up.web_box, &format!("-x '{url}' {}", up.https()));
        assert_eq!(
            (forwarded.as_str(), tunnel.as_str()),
            ("407", "407"),
            "{url}"
        );
    }
}

/// The runtime's token is out of the skill's reach: every environment and command line the
/// skill can read holds its own token at most (the containers share a network namespace, not a
/// PID namespace).
fn another_principals_token_is_out_of_reach(up: &Up) {
    let (_, readable, _) = exec(
        &up.web_box,
        "ls -d /proc/[0-9]*; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'",
    );
    assert!(readable.contains(&token_of(&up.web)), "{readable}");
    assert!(!readable.contains(&token_of(&up.runtime)), "{readable}");
    let (_, env, _) = exec(&up.runtime_box, "env");
    assert!(!env.contains(&token_of(&up.web)), "{env}");
}

/// The proxy's configuration holds the runtime's digest (never its token) and names the
/// variable that holds the web skill's token; its records say who asked without any token.
fn the_proxy_holds_digests_and_records_who_asked_without_tokens(up: &Up) {
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &up.proxy]);
    let digest = serde_json::to_value(up.runtime.digest).expect("digest");
    assert!(env.contains(digest.as_str().expect("hex")), "{env}");
    assert!(!env.contains(&token_of(&up.runtime)), "{env}");
    assert!(
        env.contains(&format!("{WEB_TOKEN_VARIABLE}={}", token_of(&up.web)))
            && env.contains(&format!(r#"\"tokenEnv\":\"{WEB_TOKEN_VARIABLE}\""#)),
        "{env}"
    );
    let log = docker(&["logs", &up.proxy]);
    for token in [token_of(&up.runtime), token_of(&up.web)] {
        assert!(!log.contains(&token), "{log}");
    }
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let count = |action: &str, client: &str, domain: &str| {
        records
            .iter()
            .filter(|r| r["action"] == action && r["client"] == client && r["domain"] == domain)
            .count()
    };
    assert_eq!(count("allowed", "skill:web", registry_host()), 2, "{log}");
    assert_eq!(count("blocked", "skill:web", &up.origin_ip), 1, "{log}");
    assert_eq!(count("allowed", "runtime", &up.origin_ip), 1, "{log}");
    assert_eq!(count("blocked", "runtime", registry_host()), 1, "{log}");
    // The offline skill's request and the three claims (twice each), refused before any
    // principal was known.
    let unknown: Vec<&Value> = records
        .iter()
        .filter(|r| r["client"] == "unknown")
        .collect();
    assert_eq!(unknown.len(), 7, "{log}");
    for record in unknown {
        assert_eq!(record["action"], "blocked", "{record}");
        assert!(record["reason"].as_str().is_some_and(|s| !s.is_empty()));
    }
}

/// Waits until the proxy answers on the pod's network (it starts in well under a second).
fn wait_for_proxy(client: &str) {
    for _ in 0..50 {
        let (code, _, _) = exec(
            client,
            &format!("curl -s -m 2 -o /dev/null http://{PROXY_HOST}:{PROXY_PORT}/"),
        );
        // Any HTTP answer (a 400 for this request) means it listens.
        if code == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the egress proxy never answered on the pod's network");
}

/// The token inside an issued proxy URL (the test plays both sides).
fn token_of(issued: &Issued) -> String {
    let url = url::Url::parse(issued.url.expose()).expect("url");
    url.password().expect("a token").to_string()
}
