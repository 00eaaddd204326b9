//! Reading `perstack.lock` (Perstack's format, written by `perstack install`: `version = "1"`,
//! `generatedAt`, `configPath`, and `experts.<key>` with `name`, `version`, `instruction`,
//! `skills`, `delegates`, `tags`, `toolDefinitions`). Its Experts that perstack.toml does not
//! define are published ones, and a run takes them as locked: pinned to that version and that
//! content, with no Registry needed. Perstack reads only the tool definitions and silently
//! ignores a lock that does not parse; here a lock that does not parse stops the run.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use super::definition::{RegistryExpert, Status};
use crate::config::Config;

/// The lock's file name, next to perstack.toml.
pub(crate) const LOCK_FILE: &str = "perstack.lock";

/// Why perstack.lock cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "{}: {message}\n  hint: fix it or delete it (it is written by `perstack install`)",
    path.display()
)]
pub struct LockError {
    /// The lock.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Required by Perstack's schema; not read here.
struct Lock {
    version: String,
    generated_at: i64,
    config_path: String,
    #[serde(default)]
    experts: IndexMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct LockedExpert {
    name: String,
    version: String,
}

/// The published Experts the lock next to the config pins, by key; none without a lock.
pub(crate) fn read_locked(
    config_dir: &Path,
    config: &Config,
) -> Result<IndexMap<String, RegistryExpert>, LockError> {
    let path = config_dir.join(LOCK_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(IndexMap::new()),
        Err(e) => {
            return Err(LockError {
                path,
                message: format!("cannot read it: {e}"),
            });
        }
    };
    let fail = |message: String| LockError {
        path: path.clone(),
        message,
    };
    let lock: Lock = toml::from_str(&text).map_err(|e| fail(format!("does not parse: {e}")))?;
    if lock.version != "1" {
        return Err(fail(format!(
            "version \"{}\" is not the lock format \"1\"",
            lock.version
        )));
    }
    let mut locked = IndexMap::new();
    for (key, entry) in lock.experts {
        if config.experts.contains_key(&key) {
            continue;
        }
        let named: LockedExpert = entry
            .clone()
            .try_into()
            .map_err(|e| fail(format!("experts.\"{key}\": {e}")))?;
        let raw =
            serde_json::to_value(&entry).map_err(|e| fail(format!("experts.\"{key}\": {e}")))?;
        locked.insert(
            key,
            RegistryExpert {
                name: named.name,
                version: named.version,
                status: Status::Available,
                raw,
            },
        );
    }
    Ok(locked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const LOCK: &str = r#"
version = "1"
generatedAt = 1735300000000
configPath = "perstack.toml"

[experts]
[experts.local]
key = "local"
name = "local"
version = "1.0.0"
instruction = "local"
delegates = []
tags = []

[experts."@acme/reviewer"]
key = "@acme/reviewer"
name = "@acme/reviewer"
version = "1.2.0"
instruction = "Locked instruction."
delegates = []
tags = []

[experts."@acme/reviewer".skills."@perstack/base"]
type = "mcpStdioSkill"
name = "@perstack/base"
command = "npx"
packageName = "@perstack/base"
pick = ["attemptCompletion"]
omit = []
args = []
requiredEnv = []
lazyInit = false

[[experts."@acme/reviewer".toolDefinitions]]
skillName = "@perstack/base"
name = "attemptCompletion"

[experts."@acme/reviewer".toolDefinitions.inputSchema]
type = "object"
"#;

    #[test]
    fn perstacks_lock_pins_the_published_experts_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load_str(
            &dir.path().join("perstack.toml"),
            "[experts.local]\ninstruction = \"x\"\n",
        )
        .expect("valid")
        .config;
        assert!(
            read_locked(dir.path(), &config)
                .expect("no lock")
                .is_empty()
        );
        std::fs::write(dir.path().join(LOCK_FILE), LOCK).expect("write");
        let locked = read_locked(dir.path(), &config).expect("parses");
        let keys: Vec<&str> = locked.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["@acme/reviewer"],
            "perstack.toml's own Experts are not pinned"
        );
        let expert = locked["@acme/reviewer"]
            .to_expert("@acme/reviewer")
            .expect("converts");
        assert_eq!(expert.version, "1.2.0");
        assert_eq!(expert.instruction, "Locked instruction.");
        std::fs::write(dir.path().join(LOCK_FILE), "version = \"1\"\nexperts = 3\n")
            .expect("write");
        let error = read_locked(dir.path(), &config)
            .expect_err("broken")
            .to_string();
        assert!(error.contains("perstack.lock: does not parse"), "{error}");
    }
}
