//! Definitions fetched from the Registry, kept on the host per version: a published version
//! never changes, so a pinned key (`name@1.2.3`) found here needs no network — a second run is
//! faster and an offline one works. Tags and bare names are always asked again (they move), and
//! what they answer is kept under its version. Perstack keeps nothing and asks at every segment.
//!
//! `<cache>/registry/<sha256 of the base URL, 16 hex>/<name, percent-encoded>/<version>.json`,
//! where `<cache>` is `$PERSTACK_SANDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/perstack-sandbox`,
//! else `~/.cache/perstack-sandbox`. Files hold the `expert` object as received and are
//! replaced atomically; one that does not parse any more is ignored and fetched again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use super::definition::RegistryExpert;

/// Beats the XDG cache folder.
pub(crate) const CACHE_DIR_VAR: &str = "PERSTACK_SANDBOX_CACHE_DIR";

/// One Registry's folder in the cache.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// The cache of the Registry at `base`; without a home folder, none (every lookup misses).
    pub(crate) fn new(base: &str, env: &BTreeMap<String, String>) -> Cache {
        let root = env
            .get(CACHE_DIR_VAR)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                env.get("XDG_CACHE_HOME")
                    .filter(|d| d.starts_with('/'))
                    .map(|d| Path::new(d).join("perstack-sandbox"))
            })
            .or_else(|| {
                env.get("HOME")
                    .filter(|d| d.starts_with('/'))
                    .map(|d| Path::new(d).join(".cache/perstack-sandbox"))
            });
        let digest = hex::encode(Sha256::digest(base.as_bytes()));
        Cache {
            dir: root.map(|root| root.join("registry").join(&digest[..16])),
        }
    }

    fn file(&self, name: &str, version: &str) -> Option<PathBuf> {
        let name = utf8_percent_encode(name, NON_ALPHANUMERIC).to_string();
        let version = utf8_percent_encode(version, NON_ALPHANUMERIC).to_string();
        Some(
            self.dir
                .as_ref()?
                .join(name)
                .join(format!("{version}.json")),
        )
    }

    /// `name@version`, if kept and still a valid definition of exactly that.
    pub(crate) fn get(&self, name: &str, version: &str) -> Option<RegistryExpert> {
        let text = std::fs::read(self.file(name, version)?).ok()?;
        let found = RegistryExpert::from_value(serde_json::from_slice(&text).ok()?).ok()?;
        (found.name == name && found.version == version).then_some(found)
    }

    /// Keeps `expert` under its name and version. Failing to write only costs a later fetch.
    pub(crate) fn put(&self, expert: &RegistryExpert) {
        let Some(file) = self.file(&expert.name, &expert.version) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            let dir = file.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{}.tmp", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec_pretty(&expert.raw)?)?;
            std::fs::rename(&tmp, &file)
        };
        if let Err(e) = write() {
            tracing::debug!("cannot cache {}: {e}", file.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::definition::tests::published;

    #[test]
    fn a_kept_version_is_found_again_and_only_under_its_own_name_and_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = BTreeMap::from([(CACHE_DIR_VAR.to_string(), dir.path().display().to_string())]);
        let cache = Cache::new("https://r.example", &env);
        assert!(cache.get("@acme/reviewer", "1.2.0").is_none());
        let expert = RegistryExpert::from_value(published("@acme/reviewer", "1.2.0")).expect("ok");
        cache.put(&expert);
        let found = cache.get("@acme/reviewer", "1.2.0").expect("kept");
        assert_eq!(found.raw, expert.raw);
        assert!(cache.get("@acme/reviewer", "1.2.1").is_none());
        assert!(
            Cache::new("https://other.example", &env)
                .get("@acme/reviewer", "1.2.0")
                .is_none()
        );
        // A damaged file is a miss, not an error.
        let file = cache.file("@acme/reviewer", "1.2.0").expect("file");
        std::fs::write(&file, "{").expect("write");
        assert!(cache.get("@acme/reviewer", "1.2.0").is_none());
    }
}
