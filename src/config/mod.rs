//! `perstack.toml`: the model, its validation with file:line:col errors, discovery, env files.
//!
//! ```text
//! use std::path::Path;
//! use crate::config;
//!
//! let cwd = Path::new(".");
//! let path = config::discover(None, cwd)?;
//! let loaded = config::load(&path)?;
//! for key in loaded.config.delegation_closure("reviewer") {
//!     println!("{key} {}", loaded.config.experts[&key].version);
//! }
//! ```

pub(crate) mod discover;
pub(crate) mod env;
pub(crate) mod key;
pub(crate) mod limits;
pub(crate) mod schema;
pub(crate) mod settings;
pub(crate) mod workspace;

mod diagnostic;
mod dotted;
mod net;
mod parse;
pub(crate) mod patterns;
mod validate;

#[cfg(test)]
mod upstream_tests;

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

pub use diagnostic::ConfigError;
pub(crate) use discover::discover;
pub use dotted::dotted_path;
pub(crate) use limits::{parse_cpus, parse_duration, parse_memory_limit};
pub(crate) use schema::*;
pub(crate) use settings::{
    CaCertificates, CaSetting, DEFAULT_MAX_RETRIES, DEFAULT_MAX_STEPS, DEFAULT_MODEL,
    DEFAULT_PROVIDER, DEFAULT_TIMEOUT_MS, GVISOR_RUNTIME, Limits, RunSettings,
    RuntimeEngineSetting, SettingFlags, SettingSource, Settings, SettingsError,
};

/// A validated config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// The validated model, defaults applied (`version`, `@perstack/base`).
    pub config: Config,
    locations: parse::Locations,
}

impl LoadedConfig {
    /// A config that was not read from a file (`run --image` rebuilds one from an image's
    /// labels and spec); `path` names its origin in messages and nothing has a location.
    pub fn from_config(path: PathBuf, config: Config) -> LoadedConfig {
        LoadedConfig {
            path,
            config,
            locations: parse::Locations::default(),
        }
    }

    /// The folder holding the file: relative paths in the config (the mock script) start here.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// The mock provider's script, when the provider is `mock` and names one: relative to the
    /// file's folder.
    pub(crate) fn mock_script_path(&self) -> Option<PathBuf> {
        let provider = self.config.provider.as_ref()?;
        if provider.provider_name != ProviderName::Mock {
            return None;
        }
        provider.setting.script.as_ref().map(|s| self.dir().join(s))
    }

    /// Where the value at `dotted` is in the file, for errors found after loading. `dotted` uses
    /// the syntax of diagnostics; build it with [`dotted_path`]. A table's location is its
    /// `[header]`; an implicit `@perstack/base` is located at the Expert (or its `skills` table).
    pub fn location(&self, dotted: &str) -> Option<Location> {
        self.locations.value(dotted).map(|pos| Location {
            file: self.path.clone(),
            line: pos.line,
            col: pos.col,
        })
    }
}

/// Reads and validates the config at `path` (see [`load_str`]).
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let path = discover::absolute(path)?;
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    load_str(&path, &text)
}

/// Validates `text` as if read from `path`. Every problem in the file is reported at once, in
/// [`ConfigError::Invalid`].
pub(crate) fn load_str(path: &Path, text: &str) -> Result<LoadedConfig, ConfigError> {
    let path = discover::absolute(path)?;
    let mut report = diagnostic::Report::new(&path);
    let parsed = parse::parse(text, &mut report);
    if let Some(parsed) = &parsed {
        validate::validate(&parsed.config, &parsed.locations, &mut report);
    }
    match parsed {
        Some(parsed) if report.is_empty() => Ok(LoadedConfig {
            path,
            config: parsed.config,
            locations: parsed.locations,
        }),
        _ => Err(report.into_error()),
    }
}

impl Config {
    /// The keys of the Expert `key` and of every Expert it can reach through `delegates`, each
    /// once, breadth first (the Expert itself first). Empty when `key` is not defined; delegates
    /// that are not defined are skipped (validation has rejected them already).
    pub fn delegation_closure(&self, key: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([key]);
        let mut out = Vec::new();
        while let Some(key) = queue.pop_front() {
            if !seen.insert(key) {
                continue;
            }
            if let Some(expert) = self.experts.get(key) {
                out.push(key.to_string());
                queue.extend(expert.delegates.iter().map(String::as_str));
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the config tests.

    use std::path::Path;

    use super::{ConfigError, load_str};

    /// `line:col path: message` of every diagnostic of `text` (empty when it is valid).
    pub(crate) fn problems(text: &str) -> Vec<String> {
        match load_str(Path::new("/p/perstack.toml"), text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics
                .iter()
                .map(|d| format!("{}:{} {}: {}", d.line, d.col, d.path, d.message))
                .collect(),
            Err(other) => panic!("{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_closure_is_breadth_first_and_visits_each_expert_once() {
        let text = r#"
            [experts.lead]
            instruction = "lead"
            delegates = ["writer", "checker"]
            [experts.writer]
            instruction = "write"
            delegates = ["researcher", "lead"]
            [experts.checker]
            instruction = "check"
            delegates = ["researcher"]
            [experts.researcher]
            instruction = "research"
            [experts.loner]
            instruction = "alone"
        "#;
        let loaded = load_str(Path::new("/p/perstack.toml"), text).unwrap();
        let keys = |key| loaded.config.delegation_closure(key);
        assert_eq!(keys("lead"), ["lead", "writer", "checker", "researcher"]);
        assert_eq!(keys("checker"), ["checker", "researcher"]);
        assert_eq!(keys("loner"), ["loner"]);
        assert!(keys("nobody").is_empty());
    }

    #[test]
    fn locations_point_into_the_file() {
        let text = "[experts.a]\ninstruction = \"x\"\n\n[experts.a.skills.web]\ntype = \"mcpSseSkill\"\nendpoint = \"https://mcp.example.com\"\n";
        let loaded = load_str(Path::new("/p/perstack.toml"), text).unwrap();
        assert_eq!(loaded.dir(), Path::new("/p"));
        let at = |path: &str| loaded.location(path).map(|l| (l.line, l.col));
        assert_eq!(at("experts.a"), Some((1, 1)));
        assert_eq!(at("experts.a.instruction"), Some((2, 15)));
        let endpoint = dotted_path(&["experts", "a", "skills", "web", "endpoint"]);
        assert_eq!(at(&endpoint), Some((6, 12)));
        // The implicit base skill is located at the skills table that implied it; that table is
        // itself implicit here, so it sits at its key in `[experts.a.skills.web]`.
        assert_eq!(at(r#"experts.a.skills."@perstack/base""#), Some((4, 12)));
        assert_eq!(at("experts.b"), None);
        let location = loaded.location("experts.a.instruction").unwrap();
        assert_eq!(location.to_string(), "/p/perstack.toml:2:15");
    }
}
