//! The Experts a run needs that perstack.toml does not define, resolved from the Registry and
//! added to the config, so that everything after — preflight, the plan, the images, the runtime
//! spec — treats them exactly like local ones.
//!
//! Order for each key, the run's Expert first and then every delegate, breadth first and
//! recursively: perstack.toml (exact key, as in Perstack) → perstack.lock (pinned content) →
//! the host cache (a pinned version) → the Registry. Perstack resolves only direct delegates, at
//! every run segment, and only at run time; here the whole closure is known before anything
//! starts, so preflight covers every registry Expert's `requiredEnv`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use indexmap::IndexMap;

use super::cache::Cache;
use super::client::{Registry, RegistryError};
use super::definition::{DefinitionError, RegistryExpert, Status};
use crate::config::key::{self, KeyError};
use crate::config::{Config, Expert};

/// Why an Expert of the closure could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Not a key.
    #[error("{}{source}", asked(asked_by))]
    Key {
        /// Who names it: `None` for the run's Expert.
        asked_by: Option<String>,
        /// What is wrong with it.
        source: KeyError,
    },
    /// The Registry gave nothing usable.
    #[error("failed to resolve expert \"{key}\"{}: {source}", by(asked_by))]
    Registry {
        /// The key.
        key: String,
        /// Who names it.
        asked_by: Option<String>,
        /// Why.
        source: Box<RegistryError>,
    },
    /// The definition breaks the rules.
    #[error("failed to resolve expert \"{key}\"{}: {source}", by(asked_by))]
    Definition {
        /// The key.
        key: String,
        /// Who names it.
        asked_by: Option<String>,
        /// Why.
        source: DefinitionError,
    },
    /// The Registry answered for another Expert or version than asked.
    #[error(
        "the Perstack Registry answered {answered} when asked for \"{key}\"; refusing a \
         definition that is not the one asked for"
    )]
    Mismatch {
        /// The key asked.
        key: String,
        /// `name@version` answered.
        answered: String,
    },
    /// The publisher disabled it (Perstack runs it anyway).
    #[error(
        "expert \"{key}\" ({name}@{version}) is disabled in the Perstack Registry: its publisher \
         withdrew it; choose another version"
    )]
    Disabled {
        /// The key.
        key: String,
        /// Its name.
        name: String,
        /// Its version.
        version: String,
    },
    /// Two definitions of one published version differ: the cache's and the lock's, or the
    /// Registry's and the cache's.
    #[error(
        "expert \"{key}\": the definition of {name}@{version} {what}, under the same version; a \
         published version must not change\n  hint: {hint}"
    )]
    Changed {
        /// Which two differ.
        what: &'static str,
        /// What to do about it.
        hint: &'static str,
        /// The key.
        key: String,
        /// Its name.
        name: String,
        /// Its version.
        version: String,
    },
}

fn asked(asked_by: &Option<String>) -> String {
    match asked_by {
        Some(parent) => format!("delegate of \"{parent}\": "),
        None => String::new(),
    }
}

fn by(asked_by: &Option<String>) -> String {
    match asked_by {
        Some(parent) => format!(" (delegate of \"{parent}\")"),
        None => " (not in perstack.toml, so asked the Perstack Registry)".to_string(),
    }
}

/// What resolution found.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    /// The registry Experts added to the config, by key, each with its definition.
    pub experts: IndexMap<String, RegistryExpert>,
    /// Keys taken from perstack.lock as locked.
    pub from_lock: BTreeSet<String>,
    /// Warnings for the user (deprecated Experts).
    pub warnings: Vec<String>,
}

/// Where definitions come from besides the file.
pub(crate) struct Sources<'a> {
    /// The process's and the dotenv files' variables (`PERSTACK_API_KEY`, the base URL override,
    /// the cache folder).
    pub env: &'a BTreeMap<String, String>,
    /// perstack.lock's registry Experts, by key, with the definitions they lock.
    pub locked: &'a IndexMap<String, RegistryExpert>,
    /// Ask the Registry even for a pinned version in the cache (`install`).
    pub refresh: bool,
}

/// Adds every Expert reachable from `root` that the config lacks, from the lock, the cache or the
/// Registry, under the key that names it.
pub(crate) async fn resolve(
    config: &mut Config,
    root: &str,
    sources: &Sources<'_>,
) -> Result<Resolved, ResolveError> {
    resolve_all(config, &[root.to_string()], sources).await
}

/// [`resolve`] from several roots at once (`install`: every Expert of the file), each key asked
/// once.
pub(crate) async fn resolve_all(
    config: &mut Config,
    roots: &[String],
    sources: &Sources<'_>,
) -> Result<Resolved, ResolveError> {
    let mut resolver = Resolver {
        base: config.perstack_api_base_url.clone(),
        sources,
        registry: None,
        resolved: Resolved::default(),
    };
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<(String, Option<String>)> =
        roots.iter().map(|root| (root.clone(), None)).collect();
    while let Some((key, asked_by)) = queue.pop_front() {
        if !seen.insert(key.clone()) {
            continue;
        }
        if !config.experts.contains_key(&key) {
            let expert = resolver.expert(&key, &asked_by).await?;
            config.experts.insert(key.clone(), expert);
        }
        if let Some(expert) = config.experts.get(&key) {
            let delegates = expert.delegates.iter().cloned();
            queue.extend(delegates.map(|d| (d, Some(key.clone()))));
        }
    }
    Ok(resolver.resolved)
}

struct Resolver<'a> {
    base: Option<String>,
    sources: &'a Sources<'a>,
    registry: Option<(Registry, Cache)>,
    resolved: Resolved,
}

impl Resolver<'_> {
    async fn expert(
        &mut self,
        key: &str,
        asked_by: &Option<String>,
    ) -> Result<Expert, ResolveError> {
        let parsed = key::parse(key).map_err(|source| ResolveError::Key {
            asked_by: asked_by.clone(),
            source,
        })?;
        let definition_error = |source| ResolveError::Definition {
            key: key.to_string(),
            asked_by: asked_by.clone(),
            source,
        };
        if let Some(locked) = self.sources.locked.get(key) {
            let expert = locked.to_expert(key).map_err(definition_error)?;
            let (_, cache) = self.registry(key, asked_by)?;
            if let Some(cached) = cache.get(&locked.name, &locked.version)
                && cached.to_expert(key).ok().as_ref() != Some(&expert)
            {
                return Err(ResolveError::Changed {
                    what: "in the host cache differs from the one in perstack.lock",
                    hint: "if you trust the new definition, run `perstack-sandbox install` to \
                           lock it",
                    key: key.to_string(),
                    name: locked.name.clone(),
                    version: locked.version.clone(),
                });
            }
            self.resolved.from_lock.insert(key.to_string());
            self.accept(key, locked.clone())?;
            return Ok(expert);
        }
        let refresh = self.sources.refresh;
        let (registry, cache) = self.registry(key, asked_by)?;
        let cached = match parsed.pinned_version() {
            Some(version) if !refresh => cache.get(&parsed.name, version),
            _ => None,
        };
        let found = match cached {
            Some(found) => found,
            None => {
                let found = registry
                    .fetch(key)
                    .await
                    .map_err(|source| ResolveError::Registry {
                        key: key.to_string(),
                        asked_by: asked_by.clone(),
                        source: Box::new(source),
                    })?;
                let asked_version = parsed.pinned_version().unwrap_or(&found.version);
                if found.name != parsed.name || found.version != asked_version {
                    return Err(ResolveError::Mismatch {
                        key: key.to_string(),
                        answered: format!("{}@{}", found.name, found.version),
                    });
                }
                if let Some(earlier) = cache.get(&found.name, &found.version)
                    && earlier.to_expert(key).ok() != found.to_expert(key).ok()
                {
                    return Err(ResolveError::Changed {
                        what: "the Perstack Registry answers differs from the one it answered \
                               before (kept in the host cache)",
                        hint: "if you trust the new definition, delete the cached copy (under \
                               $PERSTACK_SANDBOX_CACHE_DIR, else ~/.cache/perstack-sandbox, \
                               registry/) and ask again",
                        key: key.to_string(),
                        name: found.name.clone(),
                        version: found.version.clone(),
                    });
                }
                cache.put(&found);
                found
            }
        };
        let expert = found.to_expert(key).map_err(definition_error)?;
        self.accept(key, found)?;
        Ok(expert)
    }

    /// Records a definition, refusing a disabled one and warning about a deprecated one.
    fn accept(&mut self, key: &str, found: RegistryExpert) -> Result<(), ResolveError> {
        match found.status {
            Status::Available => {}
            Status::Deprecated => self.resolved.warnings.push(format!(
                "expert \"{key}\" ({}@{}) is deprecated in the Perstack Registry; it still runs, \
                 but its publisher advises against it",
                found.name, found.version
            )),
            Status::Disabled => {
                return Err(ResolveError::Disabled {
                    key: key.to_string(),
                    name: found.name,
                    version: found.version,
                });
            }
        }
        self.resolved.experts.insert(key.to_string(), found);
        Ok(())
    }

    /// The client and its cache, made at the first key that needs them.
    fn registry(
        &mut self,
        key: &str,
        asked_by: &Option<String>,
    ) -> Result<&(Registry, Cache), ResolveError> {
        let made = match self.registry.take() {
            Some(made) => made,
            None => {
                let registry =
                    Registry::new(self.base.as_deref(), self.sources.env).map_err(|source| {
                        ResolveError::Registry {
                            key: key.to_string(),
                            asked_by: asked_by.clone(),
                            source: Box::new(source),
                        }
                    })?;
                let cache = Cache::new(registry.base(), self.sources.env);
                (registry, cache)
            }
        };
        Ok(self.registry.insert(made))
    }
}
