//! A package registry this machine reaches over HTTPS, found when the tests run: the tests need
//! one real public host (an allowed domain, a page to fetch, a name to look up), and no
//! registry's name is ever written into the repository.
//!
//! The host is pip's: the `index-url` of pip's configuration (`python3 -m pip config list`) when
//! it is an `https://` URL on the default port, else the default index pip itself carries
//! (`pip._internal.models.index.PyPI`). Fixtures that need it are templates (see
//! [`super::template`]): `{{REGISTRY_HOST}}` and the names below stand in for it.

use std::process::Command;
use std::sync::OnceLock;

/// The registry host, looked up once per test process.
pub fn registry_host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        configured_index()
            .and_then(|url| https_host(&url))
            .or_else(|| pip_default_index().and_then(|url| https_host(&url)))
            .unwrap_or_else(|| {
                panic!(
                    "no package registry host: `python3 -m pip config list` names no https:// \
                     index-url and `python3 -c 'from pip._internal.models.index import PyPI'` \
                     failed; the e2e tests need python3 with pip to find a host they may reach"
                )
            })
    })
}

/// A name that imitates the registry's with one accented letter, and the punycode (`xn--`) form
/// it is sent as: what a homograph attack would ask the proxy for.
pub fn registry_lookalike() -> (String, String) {
    let host = registry_host();
    let (first, rest) = host.split_once('.').unwrap_or((host, ""));
    let accented = |c: char| match c {
        'a' => Some('á'),
        'e' => Some('é'),
        'i' => Some('í'),
        'o' => Some('ó'),
        'u' => Some('ú'),
        'y' => Some('ý'),
        _ => None,
    };
    let at = first
        .char_indices()
        .find(|(_, c)| accented(*c).is_some())
        .map(|(i, _)| i);
    let label = match at {
        Some(i) => {
            let c = first[i..].chars().next().and_then(accented).unwrap_or('é');
            format!("{}{c}{}", &first[..i], &first[i + 1..])
        }
        None => format!("{first}é"),
    };
    let unicode = if rest.is_empty() {
        label
    } else {
        format!("{label}.{rest}")
    };
    let ascii = url::Url::parse(&format!("https://{unicode}/"))
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .expect("an IDNA name");
    assert!(ascii.starts_with("xn--"), "{unicode} → {ascii}");
    (unicode, ascii)
}

/// The substitutions of the fixtures that are templates.
pub fn registry_vars() -> Vec<(&'static str, String)> {
    let (_, punycode) = registry_lookalike();
    vec![
        ("REGISTRY_HOST", registry_host().to_string()),
        ("REGISTRY_PUNYCODE", punycode),
    ]
}

/// `index-url` from pip's configuration (any scope; the environment's `PIP_INDEX_URL` shows up
/// as `:env:.index-url`).
fn configured_index() -> Option<String> {
    let out = Command::new("python3")
        .args(["-m", "pip", "config", "list"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.ends_with(".index-url")
                .then(|| value.trim().trim_matches(['\'', '"']).to_string())
        })
}

/// The index pip uses when nothing is configured, from pip's own module.
fn pip_default_index() -> Option<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "from pip._internal.models.index import PyPI; print(PyPI.url)",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The host of an `https://` URL on port 443; `None` for anything else (the tests tunnel to 443).
fn https_host(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    (url.scheme() == "https" && url.port_or_known_default() == Some(443))
        .then(|| url.host_str().map(str::to_string))
        .flatten()
}
