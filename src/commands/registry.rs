//! What `run`, `build` and `install` share about published Experts: the Experts of a closure
//! that perstack.toml lacks, resolved (from perstack.lock, the host cache or the Registry) and
//! added to the loaded config.

use std::collections::BTreeMap;

use crate::config::LoadedConfig;
use crate::registry::lock::LockFile;
use crate::registry::{self, ResolveError, Resolved, Sources};

/// Why the published Experts of a run could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryLoadError {
    /// An Expert could not be resolved.
    #[error(transparent)]
    Resolve(Box<ResolveError>),
    /// perstack.lock is there but cannot be used.
    #[error(transparent)]
    Lock(#[from] crate::registry::lock::LockError),
    /// `--frozen-lockfile`/`--locked`, and perstack.lock does not match the Experts of the run.
    #[error(
        "{}: the lock is stale, run `perstack-sandbox install`:\n{}\n  hint: --frozen-lockfile \
         (--locked) refuses a stale lock; run `perstack-sandbox install` and commit perstack.lock",
        path.display(),
        reasons.iter().map(|r| format!("  - {r}")).collect::<Vec<_>>().join("\n")
    )]
    Stale {
        /// The lock.
        path: std::path::PathBuf,
        /// What does not match.
        reasons: Vec<String>,
    },
    /// `--frozen-lockfile`/`--locked` without a perstack.lock.
    #[error(
        "--frozen-lockfile (--locked) needs {}, and there is none\n  hint: run \
         `perstack-sandbox install` and commit perstack.lock",
        path.display()
    )]
    NoLock {
        /// Where it would be.
        path: std::path::PathBuf,
    },
    /// The run's Expert is not in the file, and the Registry did not give it either: perhaps a
    /// typo, so the file's Experts are listed first.
    #[error("unknown expert `{key}`; Experts in {}: {}; as a Registry key: {source}", path.display(), known.join(", "))]
    Unknown {
        /// The key given.
        key: String,
        /// The config.
        path: std::path::PathBuf,
        /// Its Experts.
        known: Vec<String>,
        /// What the Registry said.
        source: Box<crate::registry::client::RegistryError>,
    },
}

/// Resolves the Experts reachable from `expert` that the file lacks and adds them to `loaded`.
/// An Expert key that is neither in the file nor a valid key is left to preflight, which lists
/// the file's Experts. A stale perstack.lock is a warning, or with `frozen` an error (as is no
/// lock at all).
pub(crate) async fn resolve_for(
    loaded: &mut LoadedConfig,
    expert: &str,
    env: &BTreeMap<String, String>,
    frozen: bool,
) -> Result<Resolved, RegistryLoadError> {
    // perstack.lock pins the published Experts it holds to their locked version and content.
    // It is read first: a lock that does not parse stops every run, whatever its Expert.
    let lock = LockFile::read(loaded.dir())?;
    if frozen && lock.is_none() {
        return Err(RegistryLoadError::NoLock {
            path: loaded.dir().join(crate::registry::lock::LOCK_FILE),
        });
    }
    if !loaded.config.experts.contains_key(expert) && crate::config::key::parse(expert).is_err() {
        return Ok(Resolved::default());
    }
    let locked = match &lock {
        Some(lock) => lock.published(&loaded.config)?,
        None => Default::default(),
    };
    let mut resolved = resolve_closure(loaded, expert, env, &locked).await?;
    let Some(lock) = lock else {
        return Ok(resolved);
    };
    let reasons = lock.stale(&loaded.config, expert, &resolved.from_lock);
    if reasons.is_empty() {
        return Ok(resolved);
    }
    if frozen {
        return Err(RegistryLoadError::Stale {
            path: lock.path,
            reasons,
        });
    }
    resolved.warnings.push(format!(
        "{}: the lock is stale, run `perstack-sandbox install` ({}); this run starts every skill \
         and resolves every Expert as perstack.toml says now",
        lock.path.display(),
        reasons.join("; ")
    ));
    Ok(resolved)
}

async fn resolve_closure(
    loaded: &mut LoadedConfig,
    expert: &str,
    env: &BTreeMap<String, String>,
    locked: &indexmap::IndexMap<String, crate::registry::definition::RegistryExpert>,
) -> Result<Resolved, RegistryLoadError> {
    let sources = Sources {
        env,
        locked,
        refresh: false,
    };
    let known: Vec<String> = loaded.config.experts.keys().cloned().collect();
    let path = loaded.path.clone();
    registry::resolve(&mut loaded.config, expert, &sources)
        .await
        .map_err(|e| match e {
            ResolveError::Registry {
                asked_by: None,
                source,
                ..
            } if !known.is_empty() => RegistryLoadError::Unknown {
                key: expert.to_string(),
                path,
                known,
                source,
            },
            e => RegistryLoadError::Resolve(Box::new(e)),
        })
}
