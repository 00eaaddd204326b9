//! `perstack-sandbox install`: every Expert of perstack.toml, the published Experts they delegate
//! to (recursively, always asking the Registry), and any published Expert named on the command
//! line, written to perstack.lock next to the config in Perstack's format with their tool
//! definitions. `run` and `build` then pin the published ones to it and check that it still
//! matches the file (`--frozen-lockfile` for CI).
//!
//! Tool definitions: `@perstack/base`'s are listed in-process and interactive skills' read from
//! their definition; every other MCP skill's are listed by a listing run
//! (`run::list_tools`: the run's own stages, images and skill containers, all removed after),
//! one per Expert whose own skills need one, covering its delegation closure.
//!
//! Output as Perstack's `install`: `Resolving experts...`, `Found N expert(s)`, per Expert
//! `Collecting tool definitions for <key>...` and `  Found N tool(s)`, then `Generated <path>`.

use std::collections::BTreeMap;

use super::run::list_tools::{Listed, Listing, list_tools};
use crate::cli::InstallArgs;
use crate::config;
use crate::exit::Exit;
use crate::registry::definition::RegistryExpert;
use crate::registry::lock::LockFile;
use crate::registry::lock_entry::entry;
use crate::registry::{ResolveError, Resolved, Sources, resolve_all};

/// Why the lock could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// perstack.toml could not be found or loaded.
    #[error(transparent)]
    Load(#[from] super::LoadError),
    /// A dotenv file could not be read.
    #[error(transparent)]
    Env(#[from] config::ConfigError),
    /// An Expert could not be resolved.
    #[error(transparent)]
    Resolve(Box<ResolveError>),
    /// The Registry now answers another definition for a version the lock holds.
    #[error(
        "expert \"{key}\": the Perstack Registry's definition of {name}@{version} differs from \
         the one in {}, under the same version; a published version must not change\n  hint: if \
         you trust the new definition, delete its entry (or the whole lock) and run `install` \
         again",
        path.display()
    )]
    Changed {
        /// The key.
        key: String,
        /// Its name.
        name: String,
        /// Its version.
        version: String,
        /// The lock.
        path: std::path::PathBuf,
    },
    /// The tools of an Expert's skills could not be listed (nothing is written).
    #[error("cannot list the tools of the skills of expert \"{expert}\": {source}")]
    Listing {
        /// The Expert whose closure was being listed.
        expert: String,
        /// Why.
        source: Box<super::run::RunError>,
    },
    /// `--job-id` is not a plain name.
    #[error(
        "--job-id {0}: a job id is a folder name: letters, digits, `_`, `-` and `.`, not starting with `.`"
    )]
    JobId(String),
    /// The lock could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// Where.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<&InstallError> for Exit {
    fn from(error: &InstallError) -> Exit {
        match error {
            InstallError::Write { .. } => Exit::RunFailed,
            InstallError::Listing { source, .. } => Exit::from(source.as_ref()),
            _ => Exit::Usage,
        }
    }
}

/// Runs the command: the environment, the old lock, the Experts resolved, their tools listed,
/// the new lock written.
pub async fn run(args: InstallArgs) -> Result<Exit, InstallError> {
    let (cwd, mut loaded) = super::load_config(args.config.as_deref())?;
    let env: BTreeMap<String, String> = config::env::load(
        &cwd,
        &args.env_path,
        loaded.config.env_path.as_deref(),
        std::env::vars(),
    )?
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (old, before) = old_lock(&loaded);
    println!("Resolving experts...");
    let resolved = resolve(&mut loaded.config, &args.experts, &env).await?;
    if let Some(old) = &old {
        unchanged(old, &before, &resolved.experts)?;
    }
    println!("Found {} expert(s)", loaded.config.experts.len());
    let job_id = args.job_id.clone().unwrap_or_else(crate::ids::new_id);
    if !crate::jobs::store::is_safe_id(&job_id) {
        return Err(InstallError::JobId(job_id));
    }
    let listed = list_all(&loaded, &env, &job_id, args.allow_weaker_isolation).await?;
    let entries = lock_entries(&loaded.config, &resolved, &listed);
    let path = write_lock(&loaded, entries)?;
    println!("Generated {}", path.display());
    Ok(Exit::Success)
}

/// The old lock, with the published versions it holds, to refuse one whose content changed
/// since. A lock that cannot be read is replaced.
fn old_lock(
    loaded: &config::LoadedConfig,
) -> (Option<LockFile>, indexmap::IndexMap<String, RegistryExpert>) {
    let old = LockFile::read(loaded.dir()).and_then(|old| {
        let before = match &old {
            Some(old) => old.published(&loaded.config)?,
            None => Default::default(),
        };
        Ok((old, before))
    });
    old.unwrap_or_else(|error| {
        eprintln!("warning: {error}; install replaces it");
        (None, Default::default())
    })
}

/// Every Expert of the file and those named on the command line, resolved afresh from the
/// Registry (never from the lock), the published ones added to `config`.
async fn resolve(
    config: &mut config::Config,
    named: &[String],
    env: &BTreeMap<String, String>,
) -> Result<Resolved, InstallError> {
    let mut roots: Vec<String> = config.experts.keys().cloned().collect();
    roots.extend(named.iter().cloned());
    let no_lock = Default::default();
    let sources = Sources {
        env,
        locked: &no_lock,
        refresh: true,
    };
    let resolved = resolve_all(config, &roots, &sources)
        .await
        .map_err(|e| InstallError::Resolve(Box::new(e)))?;
    resolved
        .warnings
        .iter()
        .for_each(|w| eprintln!("warning: {w}"));
    Ok(resolved)
}

/// Each Expert's lock entry, by key, saying how many tools it has.
fn lock_entries(
    config: &config::Config,
    resolved: &Resolved,
    listed: &Listed,
) -> serde_json::Map<String, serde_json::Value> {
    let mut entries = serde_json::Map::new();
    for (key, expert) in &config.experts {
        println!("Collecting tool definitions for {key}...");
        let locked = entry(expert, resolved.experts.get(key), listed.get(key));
        println!("  Found {} tool(s)", locked.tools);
        for skill in &locked.uncollected {
            println!(
                "  skill \"{skill}\": its tools are listed when it starts in its container at \
                 run time"
            );
        }
        entries.insert(key.clone(), locked.table);
    }
    entries
}

/// Writes perstack.lock beside the config, stamped with the time; its path.
fn write_lock(
    loaded: &config::LoadedConfig,
    entries: serde_json::Map<String, serde_json::Value>,
) -> Result<std::path::PathBuf, InstallError> {
    let generated_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    crate::registry::lock::write(&loaded.path, entries, generated_at).map_err(|source| {
        InstallError::Write {
            path: loaded.dir().join(crate::registry::lock::LOCK_FILE),
            source,
        }
    })
}

/// Lists the MCP tools of every Expert with a skill that must start to say them (any MCP skill
/// but `@perstack/base`): one listing run per such Expert not yet covered by an earlier one's
/// delegation closure.
async fn list_all(
    loaded: &config::LoadedConfig,
    env: &BTreeMap<String, String>,
    job_id: &str,
    allow_weaker_isolation: bool,
) -> Result<Listed, InstallError> {
    let mut listed = Listed::new();
    for (key, expert) in &loaded.config.experts {
        if listed.contains_key(key) || !needs_listing(expert) {
            continue;
        }
        let listing = Listing {
            config: loaded,
            env,
            expert: key,
            job_id,
            allow_weaker_isolation,
        };
        let found = list_tools(&listing, &|notice| eprintln!("{notice}"))
            .await
            .map_err(|source| InstallError::Listing {
                expert: key.clone(),
                source: Box::new(source),
            })?;
        listed.extend(found);
    }
    Ok(listed)
}

/// Whether an Expert has a skill whose tools only its server can say.
fn needs_listing(expert: &config::Expert) -> bool {
    expert.skills.values().any(|skill| match skill {
        config::Skill::McpStdio(stdio) => !stdio.is_base(),
        config::Skill::McpSse(_) => true,
        config::Skill::Interactive(_) => false,
    })
}

/// Refuses a published version whose definition differs from the one the old lock holds.
fn unchanged(
    old: &LockFile,
    before: &indexmap::IndexMap<String, RegistryExpert>,
    resolved: &indexmap::IndexMap<String, RegistryExpert>,
) -> Result<(), InstallError> {
    for (key, now) in resolved {
        let Some(was) = before.get(key) else {
            continue;
        };
        if was.name == now.name
            && was.version == now.version
            && was.to_expert(key).ok() != now.to_expert(key).ok()
        {
            return Err(InstallError::Changed {
                key: key.clone(),
                name: now.name.clone(),
                version: now.version.clone(),
                path: old.path.clone(),
            });
        }
    }
    Ok(())
}
