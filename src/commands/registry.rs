//! What `run`, `build` and `install` share about published Experts: the Experts of a closure
//! that perstack.toml lacks, resolved (from perstack.lock, the host cache or the Registry) and
//! added to the loaded config.

use std::collections::BTreeMap;

use crate::config::LoadedConfig;
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
/// the file's Experts.
pub(crate) async fn resolve_for(
    loaded: &mut LoadedConfig,
    expert: &str,
    env: &BTreeMap<String, String>,
) -> Result<Resolved, RegistryLoadError> {
    if !loaded.config.experts.contains_key(expert) && registry::key::parse(expert).is_err() {
        return Ok(Resolved::default());
    }
    // perstack.lock pins the published Experts it holds to their locked version and content.
    let locked = crate::registry::lock::read_locked(loaded.dir(), &loaded.config)?;
    let sources = Sources {
        env,
        locked: &locked,
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
