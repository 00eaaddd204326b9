//! `uvx mcp-server-fetch` — a real third-party MCP server from PyPI that talks HTTPS — allowed
//! one domain: the registry host this machine reaches (found at test time, never written here).
//! Its page comes back through the egress proxy, trusted with the CA bundle the skill's image
//! carries (the host's, by default); a domain it was not allowed is refused by the proxy. The
//! same Expert built into one standalone image and run with plain `docker run` reads the same
//! page: there the skill is a process told where the image's bundle is.

use std::process::Command;

use serde_json::Value;

use crate::standalone::{Ran, build, docker_run, workspace};
use crate::support::registry::{registry_host, registry_vars};
use crate::support::{JobGuard, TestRun, require_bookworm_image, template};

#[test]
fn mcp_server_fetch_reads_a_page_of_its_allowed_domain_through_the_proxy_and_no_other() {
    if !require_bookworm_image() {
        return;
    }
    let host = registry_host();
    let run = TestRun::templated("e2e/fetch-skill", "reader", &registry_vars());
    let done = run.run();
    done.assert_code(0);
    assert_eq!(done.of_type("completeRun")[0]["text"], "Read it.");

    assert_the_hosts_page(&done.tool_text("allowed"), host);
    let allowed = done
        .of_type("proxyAccess")
        .into_iter()
        .filter(|a| a["domain"] == host && a["port"] == 443 && a["client"] == "skill:fetch")
        .map(|a| a["action"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>();
    // robots.txt, then the page.
    assert!(allowed.len() >= 2, "{allowed:?}");
    assert!(allowed.iter().all(|a| a == "allowed"), "{allowed:?}");

    // Any other domain: the proxy refuses the tunnel, and the server reports the failure.
    let other = done.tool_text("other");
    assert!(
        !other.contains("Contents of https://example.com/"),
        "{other}"
    );
    let blocked = done
        .of_type("proxyAccess")
        .into_iter()
        .find(|a| a["domain"] == "example.com" && a["client"] == "skill:fetch")
        .cloned()
        .unwrap_or_else(|| panic!("no record for example.com: {}", done.stdout));
    assert_eq!(blocked["action"], "blocked", "{blocked}");
    assert_eq!(run.guard.leftovers(), Vec::<String>::new());
}

#[test]
fn in_a_standalone_image_mcp_server_fetch_trusts_the_images_bundle_and_reads_the_page() {
    if !require_bookworm_image() {
        return;
    }
    let host = registry_host();
    let dir = template("e2e/fetch-skill", &registry_vars());
    let image = build(dir.path(), "reader");
    let (job, ws) = (JobGuard::new(), workspace());
    let ran = Ran::ok(docker_run(&image, &job, &[], ws.path(), &["Read it"]));
    let text_of = |id: &str| -> String {
        let result = ran
            .events
            .iter()
            .filter(|e| e["type"] == "resolveToolResults")
            .flat_map(|e| e["toolResults"].as_array().cloned().unwrap_or_default())
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no result {id}: {}", ran.stderr));
        result["result"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_the_hosts_page(&text_of("allowed"), host);
    assert!(!text_of("other").contains("Contents of https://example.com/"));
    let access = |domain: &str| -> Vec<Value> {
        let records = ran.events.iter().filter(|e| e["type"] == "proxyAccess");
        records.filter(|a| a["domain"] == domain).cloned().collect()
    };
    assert!(
        access(host)
            .iter()
            .all(|a| a["action"] == "allowed" && a["client"] == "skill:fetch"),
        "{:?}",
        access(host)
    );
    assert!(!access("example.com").is_empty());
    assert!(
        access("example.com")
            .iter()
            .all(|a| a["action"] == "blocked")
    );
}

/// `page`, the answer of `mcp-server-fetch` for `https://<host>/` raw, is the page this machine
/// is served: its header, then the start of the raw page (the rest may change from one request
/// to the next, and the server returns at most 5000 characters).
fn assert_the_hosts_page(page: &str, host: &str) {
    let header = format!("Contents of https://{host}/:\n");
    let Some((_, body)) = page.split_once(&header) else {
        panic!("not the page of {host}: {page}");
    };
    let served = host_page(&format!("https://{host}/"));
    let start: String = served.trim().chars().take(200).collect();
    assert!(!start.is_empty(), "the host is served an empty page");
    assert!(
        body.trim().starts_with(&start),
        "{page}\n--- the host is served:\n{served}"
    );
}

/// The page at `url` as this machine is served it (curl, with the host's trust and proxy
/// settings).
fn host_page(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", url])
        .output()
        .expect("curl on the host");
    assert!(
        out.status.success(),
        "the host cannot fetch {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
