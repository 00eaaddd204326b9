//! `uvx mcp-server-fetch` — a real third-party MCP server from PyPI that talks HTTPS — allowed
//! one domain: the registry host this machine reaches (found at test time, never written here).
//! Its page comes back through the egress proxy, trusted with the CA bundle the skill's image
//! carries (the host's, by default); a domain it was not allowed is refused by the proxy.

use std::process::Command;

use crate::support::registry::{registry_host, registry_vars};
use crate::support::{TestRun, require_bookworm_image};

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

    // The page as the server returns it — its header, then the raw page — is the page this
    // machine is served: the start of it (the rest may change from one request to the next,
    // and the server returns at most 5000 characters).
    let page = done.tool_text("allowed");
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
