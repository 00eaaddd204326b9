//! A local npm registry, for `npx` skills with no public registry in reach: it packs package
//! folders (tests/fixtures/npm/…) into `.tgz` tarballs laid out as `npm pack` lays them out
//! (`package/…`), and serves what `npm install` asks for — the packument at `GET /<name>`, where
//! scoped names arrive encoded (`/@scope%2fname`), and the tarball its `dist.tarball` names.
//!
//! It is a handler on the tests' one HTTP server ([`TestServer`]), listening on the Docker
//! bridge's gateway only:
//! image builds (the classic builder's `RUN` steps are on the default bridge) reach it there,
//! and nothing outside this machine does. Podman 4.3's service runs a build's `RUN` steps in the
//! host's network namespace instead (whatever network the build asks for): there it listens on
//! loopback, where those steps reach it. Every request is recorded.
//!
//! What npm 9 (Debian bookworm's) reads of a packument: `dist-tags.latest` to pick the version,
//! that version's manifest (`name`, `version`, `bin`, `dependencies`), and its `dist.tarball`. It
//! checks the tarball against `dist.integrity` (an SRI string) when there is one, else against
//! the older `dist.shasum`, else not at all; we give the sha512 integrity, so a tarball that is
//! not what the packument promised fails the install.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use perstack_sandbox::test_support::http::{Recorded, Response, TestServer, bridge_gateway};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

/// `npm pack` dates every entry 1985-10-26T08:15:00Z, so the same files give the same tarball.
const NPM_PACK_MTIME: u64 = 499_162_500;

/// One package version, packed.
#[derive(Debug, Clone)]
pub struct NpmPackage {
    /// `name` of its package.json.
    pub name: String,
    /// `version` of its package.json.
    pub version: String,
    /// Its package.json.
    pub manifest: Value,
    /// The gzipped tarball.
    pub tarball: Vec<u8>,
}

impl NpmPackage {
    /// Packs the folder `dir`: its package.json (which must have `name` and `version`) and every
    /// other file below it, as `package/<path>`.
    pub fn pack(dir: &Path) -> NpmPackage {
        let text = std::fs::read_to_string(dir.join("package.json"))
            .unwrap_or_else(|e| panic!("{}/package.json: {e}", dir.display()));
        let manifest: Value = serde_json::from_str(&text).expect("package.json is JSON");
        let field = |key: &str| {
            manifest[key]
                .as_str()
                .unwrap_or_else(|| panic!("package.json has no {key}"))
                .to_string()
        };
        let (name, version) = (field("name"), field("version"));
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files);
        files.sort();
        let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gzip);
        for relative in files {
            let contents = std::fs::read(dir.join(&relative)).expect("read a package file");
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(contents.len() as u64);
            header.set_mtime(NPM_PACK_MTIME);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, format!("package/{relative}"), &contents[..])
                .expect("append to the tarball");
        }
        let tarball = tar
            .into_inner()
            .expect("finish the tar")
            .finish()
            .expect("finish the gzip");
        NpmPackage {
            name,
            version,
            manifest,
            tarball,
        }
    }

    /// The SRI string npm checks the tarball against: `sha512-<base64>`.
    pub fn integrity(&self) -> String {
        let digest = Sha512::digest(&self.tarball);
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }

    /// The path npm fetches the tarball at: `/<name>/-/<name without scope>-<version>.tgz`, the
    /// public registry's layout.
    pub fn tarball_path(&self) -> String {
        let own = self.name.rsplit('/').next().unwrap_or(&self.name);
        format!("/{}/-/{own}-{}.tgz", self.name, self.version)
    }

    /// The path npm asks for the packument at: the name with its `/` encoded.
    pub fn packument_path(&self) -> String {
        format!("/{}", self.name.replace('/', "%2f"))
    }

    /// The packument, its tarball URL on `base` (`http://host:port`).
    fn packument(&self, base: &str) -> Value {
        let mut version = self.manifest.clone();
        version["_id"] = json!(format!("{}@{}", self.name, self.version));
        version["dist"] = json!({
            "tarball": format!("{base}{}", self.tarball_path()),
            "integrity": self.integrity(),
        });
        json!({
            "_id": self.name,
            "name": self.name,
            "dist-tags": { "latest": self.version },
            "versions": { self.version.clone(): version },
        })
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read a package folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).expect("below the package folder");
            out.push(relative.display().to_string());
        }
    }
}

/// The running registry; stops when dropped.
pub struct NpmRegistry {
    server: TestServer,
}

impl NpmRegistry {
    /// Serves `packages` on the Docker bridge's gateway, at an ephemeral port.
    pub fn start(packages: Vec<NpmPackage>) -> NpmRegistry {
        let listen: IpAddr = if super::on_podman() {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            bridge_gateway()
                .parse()
                .expect("the bridge gateway is an IP")
        };
        let packages = Arc::new(packages);
        let server = TestServer::start_on(listen, move |request| {
            let response = answer(&request, &packages);
            async move { response }
        });
        NpmRegistry { server }
    }

    /// The registry URL for `npmRegistry`: `http://<bridge gateway>:<port>/` (on Podman
    /// `http://127.0.0.1:<port>/`, see above).
    pub fn url(&self) -> String {
        if super::on_podman() {
            return format!("{}/", self.server.url());
        }
        format!("{}/", self.server.url_for_containers())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// The placeholders of a fixture whose `npx` skills install from this registry, for
    /// [`super::template`]: `NODE_IMAGE`, the local Node image of `make test-images`, and
    /// `NPM_REGISTRY`, [`Self::url`].
    pub fn fixture_vars(&self) -> [(&'static str, String); 2] {
        [
            ("NODE_IMAGE", super::BOOKWORM_NODE_IMAGE.to_string()),
            ("NPM_REGISTRY", self.url()),
        ]
    }
}

fn answer(request: &Recorded, packages: &[NpmPackage]) -> Response {
    // The host npm reached us at, so the tarball URL works from where it asked.
    let base = format!("http://{}", request.header("host").unwrap_or("localhost"));
    let path = request.path.replace("%2f", "/").replace("%2F", "/");
    let found = packages.iter().find_map(|p| {
        if request.method != "GET" {
            None
        } else if path == format!("/{}", p.name) {
            let body = p.packument(&base).to_string().into_bytes();
            Some(("application/json", body))
        } else if path == p.tarball_path() {
            Some(("application/octet-stream", p.tarball.clone()))
        } else {
            None
        }
    });
    match found {
        Some((content_type, body)) => Response::new(200)
            .header("content-type", content_type)
            .body(body),
        None => Response::json(404, &json!({"error": "not_found"})),
    }
}
