//! What goes into each image we build, its content digest, and its in-memory build context.
//!
//! Every image is `FROM` a base (`scratch` unless configured) plus our own static binary, so no
//! registry is needed and the image always matches the controller's version. Tags are
//! content-addressed: the digest covers the Dockerfile, every file of the context and the base
//! image's id, so the same inputs never build twice and changed inputs always do.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::labels;

/// Where our binary lives in every image.
pub const BINARY_PATH: &str = "/usr/local/bin/perstack-sandbox";
/// Where the runtime reads its spec.
pub const SPEC_PATH: &str = "/etc/perstack-sandbox/runtime.json";
/// Where the CA bundle goes in `scratch` images.
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// `PATH` for `scratch` images (which have none).
pub const SCRATCH_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The kinds of image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageRole {
    /// The agent runtime.
    Runtime,
    /// An MCP skill behind the skill host.
    Skill,
    /// The workspace tools.
    BaseSkill,
}

impl ImageRole {
    /// The name used in tags and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageRole::Runtime => "runtime",
            ImageRole::Skill => "skill",
            ImageRole::BaseSkill => "base-skill",
        }
    }
}

/// One file of a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    /// Path inside the context.
    pub path: String,
    /// Unix mode.
    pub mode: u32,
    /// Contents.
    pub contents: Bytes,
}

/// Everything needed to build (or find) one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// What it is for.
    pub role: ImageRole,
    /// The name events use (`runtime`, `skill:<name>`, `base-skill`).
    pub service: String,
    /// Repository part of the tag, e.g. `perstack-sandbox/runtime-demo`.
    pub repository: String,
    /// The base image reference, or `scratch`.
    pub base: String,
    /// The Dockerfile.
    pub dockerfile: String,
    /// The rest of the context.
    pub files: Vec<ContextFile>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
}

impl ImageSpec {
    /// The content digest: sha256 over the base image id, the Dockerfile and every file (path,
    /// mode, contents), each length-prefixed so no two inputs hash alike.
    pub fn digest(&self, base_id: &str) -> String {
        let mut hasher = Sha256::new();
        let mut feed = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        feed(b"perstack-sandbox image v1");
        feed(base_id.as_bytes());
        feed(self.dockerfile.as_bytes());
        for file in &self.files {
            feed(file.path.as_bytes());
            feed(&file.mode.to_le_bytes());
            feed(&file.contents);
        }
        for (k, v) in &self.labels {
            feed(k.as_bytes());
            feed(v.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The full tag for a given base image id: `<repository>:<first 16 hex digits>`.
    pub fn tag(&self, base_id: &str) -> String {
        format!("{}:{}", self.repository, &self.digest(base_id)[..16])
    }

    /// The build context: a tar with the Dockerfile and the files.
    pub fn context_tar(&self) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, mode: u32, contents: &[u8]| -> std::io::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            // A fixed mtime keeps the context byte-identical across runs.
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append_data(&mut header, path, contents)
        };
        add("Dockerfile", 0o644, self.dockerfile.as_bytes())?;
        for file in &self.files {
            add(&file.path, file.mode, &file.contents)?;
        }
        builder.into_inner()
    }
}

/// A slug safe for image repositories and container names: lowercase `[a-z0-9-]`, at most 40.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out: String = out.chars().take(40).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "x".to_string() } else { out }
}

/// `/etc/passwd` and `/etc/group` for `scratch` images: the runtime and skill users
/// (images/passwd, images/group).
pub fn passwd_files() -> Vec<ContextFile> {
    vec![
        ContextFile {
            path: "passwd".into(),
            mode: 0o644,
            contents: Bytes::from_static(include_bytes!("../../images/passwd")),
        },
        ContextFile {
            path: "group".into(),
            mode: 0o644,
            contents: Bytes::from_static(include_bytes!("../../images/group")),
        },
    ]
}

/// Labels every image carries.
pub fn base_labels(role: ImageRole) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::ROLE.to_string(), role.as_str().to_string()),
        (
            "org.opencontainers.image.vendor".to_string(),
            "perstack-sandbox".to_string(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ])
}

/// A JSON array for Dockerfile exec-form instructions.
pub fn exec_form(args: &[String]) -> String {
    serde_json::to_string(args).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(file: &'static [u8]) -> ImageSpec {
        ImageSpec {
            role: ImageRole::Runtime,
            service: "runtime".into(),
            repository: "perstack-sandbox/runtime-x".into(),
            base: "scratch".into(),
            dockerfile: "FROM scratch\n".into(),
            files: vec![ContextFile {
                path: "a".into(),
                mode: 0o644,
                contents: Bytes::from_static(file),
            }],
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn digest_changes_with_any_input() {
        let a = spec(b"one");
        assert_eq!(a.digest("scratch"), spec(b"one").digest("scratch"));
        assert_ne!(a.digest("scratch"), spec(b"two").digest("scratch"));
        assert_ne!(a.digest("scratch"), a.digest("sha256:other-base"));
        let mut moved = spec(b"one");
        moved.files[0].mode = 0o755;
        assert_ne!(a.digest("scratch"), moved.digest("scratch"));
        assert!(a.tag("scratch").starts_with("perstack-sandbox/runtime-x:"));
        assert_eq!(
            a.tag("scratch").len(),
            "perstack-sandbox/runtime-x:".len() + 16
        );
    }

    #[test]
    fn context_is_reproducible_and_holds_the_files() {
        let a = spec(b"one");
        let tar_bytes = a.context_tar().expect("tar");
        assert_eq!(tar_bytes, a.context_tar().expect("tar"));
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["Dockerfile", "a"]);
    }

    #[test]
    fn slugs_are_docker_safe() {
        assert_eq!(slug("@perstack/base"), "perstack-base");
        assert_eq!(slug("Fitness Assistant!"), "fitness-assistant");
        assert_eq!(slug("--"), "x");
        assert_eq!(slug(&"a".repeat(60)).len(), 40);
    }
}
