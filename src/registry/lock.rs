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

/// perstack.lock, read: its Experts by key, each entry as written.
pub(crate) struct LockFile {
    /// Where it is.
    pub path: PathBuf,
    experts: IndexMap<String, toml::Value>,
}

impl LockFile {
    /// The lock next to the config; `None` when there is none.
    pub(crate) fn read(config_dir: &Path) -> Result<Option<LockFile>, LockError> {
        let path = config_dir.join(LOCK_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
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
        Ok(Some(LockFile {
            path,
            experts: lock.experts,
        }))
    }

    fn definition(&self, key: &str, entry: &toml::Value) -> Result<RegistryExpert, LockError> {
        let fail = |message: String| LockError {
            path: self.path.clone(),
            message: format!("experts.\"{key}\": {message}"),
        };
        let named: LockedExpert = entry.clone().try_into().map_err(|e| fail(format!("{e}")))?;
        let raw = serde_json::to_value(entry).map_err(|e| fail(e.to_string()))?;
        Ok(RegistryExpert {
            name: named.name,
            version: named.version,
            status: Status::Available,
            raw,
        })
    }

    /// The published Experts it pins, by key: its Experts that perstack.toml does not define.
    pub(crate) fn published(
        &self,
        config: &Config,
    ) -> Result<IndexMap<String, RegistryExpert>, LockError> {
        let mut locked = IndexMap::new();
        for (key, entry) in &self.experts {
            if !config.experts.contains_key(key) {
                locked.insert(key.clone(), self.definition(key, entry)?);
            }
        }
        Ok(locked)
    }

    /// Why the lock no longer matches the Experts reachable from `root` (the config holding the
    /// resolved ones too; `from_lock` the published ones taken from the lock): an Expert it
    /// lacks, or a perstack.toml Expert whose skills or delegates changed since `install`.
    /// Perstack never checks, and gives a skill added since `install` no tools at all.
    pub(crate) fn stale(
        &self,
        config: &Config,
        root: &str,
        from_lock: &std::collections::BTreeSet<String>,
    ) -> Vec<String> {
        let mut reasons = Vec::new();
        for key in closure(config, root) {
            if from_lock.contains(&key) {
                continue;
            }
            let Some(entry) = self.experts.get(&key) else {
                reasons.push(format!("expert \"{key}\" is not in it"));
                continue;
            };
            let Some(now) = config.experts.get(&key) else {
                continue;
            };
            let locked = self
                .definition(&key, entry)
                .ok()
                .and_then(|d| d.parse_as(&key).ok());
            match locked {
                Some(locked) => reasons.extend(changes(now, &locked)),
                None => reasons.push(format!("expert \"{key}\": its entry cannot be read")),
            }
        }
        reasons
    }
}

/// The keys reachable from `root` through delegates, `root` first.
fn closure(config: &Config, root: &str) -> Vec<String> {
    let mut order = vec![root.to_string()];
    let mut next = 0;
    while let Some(key) = order.get(next).cloned() {
        next += 1;
        for delegate in config.experts.get(&key).map_or(&[][..], |e| &e.delegates) {
            if !order.contains(delegate) {
                order.push(delegate.clone());
            }
        }
    }
    order
}

/// How an Expert's skills and delegates differ from its locked entry.
fn changes(now: &crate::config::Expert, locked: &crate::config::Expert) -> Vec<String> {
    let key = &now.key;
    let mut out = Vec::new();
    for (name, skill) in &now.skills {
        match locked.skills.get(name) {
            None => out.push(format!(
                "expert \"{key}\": skill \"{name}\" was added since `install`"
            )),
            Some(was) if was != skill => out.push(format!(
                "expert \"{key}\": skill \"{name}\" changed since `install`"
            )),
            Some(_) => {}
        }
    }
    for name in locked
        .skills
        .keys()
        .filter(|n| !now.skills.contains_key(*n))
    {
        out.push(format!(
            "expert \"{key}\": skill \"{name}\" was removed since `install`"
        ));
    }
    if now.delegates != locked.delegates {
        out.push(format!(
            "expert \"{key}\": its delegates changed since `install` (locked: [{}])",
            locked.delegates.join(", ")
        ));
    }
    out
}

/// Writes perstack.lock next to the config (atomically: a reader never sees half a lock), with
/// `entries` (`experts.<key>` tables) in the given order. Gives its path.
pub(crate) fn write(
    config_path: &Path,
    entries: serde_json::Map<String, serde_json::Value>,
    generated_at: i64,
) -> std::io::Result<PathBuf> {
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let base = config_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut root = serde_json::Map::new();
    root.insert("version".into(), "1".into());
    root.insert("generatedAt".into(), generated_at.into());
    root.insert("configPath".into(), base.into());
    root.insert("experts".into(), serde_json::Value::Object(entries));
    let path = dir.join(LOCK_FILE);
    let tmp = dir.join(format!(".{LOCK_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, super::lock_toml::stringify(&root))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
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
        assert!(LockFile::read(dir.path()).expect("no lock").is_none());
        std::fs::write(dir.path().join(LOCK_FILE), LOCK).expect("write");
        let lock = LockFile::read(dir.path()).expect("parses").expect("there");
        let locked = lock.published(&config).expect("pins");
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
        let error = LockFile::read(dir.path())
            .err()
            .expect("broken")
            .to_string();
        assert!(error.contains("perstack.lock: does not parse"), "{error}");
    }

    fn config_of(dir: &Path, text: &str) -> Config {
        load_str(&dir.join("perstack.toml"), text)
            .expect("valid")
            .config
    }

    const INSTALLED: &str = r#"
[experts.main]
instruction = "Main."
delegates = ["helper"]
[experts.main.skills."@perstack/base"]
type = "mcpStdioSkill"
command = "npx"
packageName = "@perstack/base"
pick = ["attemptCompletion"]
[experts.main.skills.ask]
type = "interactiveSkill"
[experts.main.skills.ask.tools.confirm]
inputJsonSchema = '{"type":"object"}'
[experts.helper]
instruction = "Helps."
"#;

    /// Writes the lock `install` would write for `text`.
    fn install(dir: &Path, text: &str) {
        let config = config_of(dir, text);
        let entries = config
            .experts
            .iter()
            .map(|(key, expert)| {
                (
                    key.clone(),
                    super::super::lock_entry::entry(expert, None, None).table,
                )
            })
            .collect();
        write(&dir.join("perstack.toml"), entries, 1).expect("written");
    }

    fn stale_reasons(dir: &Path, text: &str) -> Vec<String> {
        let lock = LockFile::read(dir).expect("parses").expect("there");
        lock.stale(&config_of(dir, text), "main", &Default::default())
    }

    #[test]
    fn a_lock_written_for_the_file_matches_it_until_a_skill_or_delegate_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        install(dir.path(), INSTALLED);
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).expect("lock");
        assert!(
            text.starts_with("version = \"1\"\ngeneratedAt = 1\nconfigPath = \"perstack.toml\"")
        );
        assert_eq!(stale_reasons(dir.path(), INSTALLED), Vec::<String>::new());

        let added = format!(
            "{INSTALLED}[experts.main.skills.search]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\npackageName = \"mcp-search\"\n"
        );
        assert_eq!(
            stale_reasons(dir.path(), &added),
            ["expert \"main\": skill \"search\" was added since `install`"]
        );
        let picked = INSTALLED.replace(
            "pick = [\"attemptCompletion\"]",
            "pick = [\"attemptCompletion\", \"todo\"]",
        );
        assert_eq!(
            stale_reasons(dir.path(), &picked),
            ["expert \"main\": skill \"@perstack/base\" changed since `install`"]
        );
        let delegates = INSTALLED.replace(
            "delegates = [\"helper\"]",
            "delegates = [\"helper\", \"other\"]",
        ) + "[experts.other]\ninstruction = \"Other.\"\n";
        assert_eq!(
            stale_reasons(dir.path(), &delegates),
            [
                "expert \"main\": its delegates changed since `install` (locked: [helper])",
                "expert \"other\" is not in it"
            ]
        );
        // Only the run's closure counts: an Expert it never reaches may change freely.
        let unrelated = format!("{INSTALLED}[experts.unrelated]\ninstruction = \"U.\"\n");
        assert_eq!(stale_reasons(dir.path(), &unrelated), Vec::<String>::new());
    }

    /// Perstack's `install` output for its e2e lockfile Expert (PERSTACK-REGISTRY §2.1's
    /// example, abridged), with an interactive skill as Perstack writes it (tool `name` inside).
    const PERSTACK_WRITTEN: &str = r#"version = "1"
generatedAt = 1735300000000
configPath = "lockfile.toml"

[experts]
[experts.e2e-lockfile]
key = "e2e-lockfile"
name = "e2e-lockfile"
version = "1.0.0"
instruction = "Test."
delegates = []
tags = []

[experts.e2e-lockfile.skills]
[experts.e2e-lockfile.skills."@perstack/base"]
type = "mcpStdioSkill"
name = "@perstack/base"
pick = [ "attemptCompletion", "healthCheck" ]
omit = []
command = "npx"
packageName = "@perstack/base"
args = []
requiredEnv = []
lazyInit = false

[experts.e2e-lockfile.skills.ask]
type = "interactiveSkill"
name = "ask"

[experts.e2e-lockfile.skills.ask.tools]
[experts.e2e-lockfile.skills.ask.tools.askUser]
description = "Ask"
inputJsonSchema = "{\"type\":\"object\"}"
name = "askUser"

[[experts.e2e-lockfile.toolDefinitions]]
skillName = "@perstack/base"
name = "attemptCompletion"
description = "Done."

[experts.e2e-lockfile.toolDefinitions.inputSchema]
type = "object""#;

    #[test]
    fn a_lock_perstack_wrote_for_the_same_file_is_not_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(LOCK_FILE), PERSTACK_WRITTEN).expect("write");
        let text = r#"
[experts.e2e-lockfile]
instruction = "Test."
[experts.e2e-lockfile.skills."@perstack/base"]
type = "mcpStdioSkill"
command = "npx"
packageName = "@perstack/base"
pick = ["attemptCompletion", "healthCheck"]
[experts.e2e-lockfile.skills.ask]
type = "interactiveSkill"
[experts.e2e-lockfile.skills.ask.tools.askUser]
description = "Ask"
inputJsonSchema = '{"type":"object"}'
"#;
        let lock = LockFile::read(dir.path()).expect("parses").expect("there");
        let config = config_of(dir.path(), text);
        assert_eq!(
            lock.stale(&config, "e2e-lockfile", &Default::default()),
            Vec::<String>::new()
        );
    }
}
