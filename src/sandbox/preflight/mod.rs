//! Everything checked before a run starts anything: the Expert exists, every variable the
//! provider and the skills need is set, the skills can be built, the workspace is a safe folder,
//! the mock script is valid. All problems are reported together, and nothing has touched Docker
//! yet. The checks read the config, the env map and the host's file system (the workspace's
//! path, the mock script), never the engine; the two checks that need the engine — every base
//! image is there, the runtime asked for is registered — are `engine/base_images.rs`, over
//! [`base_images()`], and `engine/runtime_engine.rs`, over [`check_runtime_engine()`].
//!
//! One function per check, each in the file named for what it checks:
//! `expert.rs`, `provider.rs` (supported, endpoint, key), `extra_env.rs` (`--env`), `skills.rs`
//! (`requiredEnv`, package commands, base image, local files), `registry.rs` (no container
//! reaches the Perstack Registry or gets its token), `workspace.rs`, `protected.rs` (the
//! workspace's protected paths as found on disk), `mock_script.rs`,
//! `base_images.rs` (which images, and the problems for the missing ones), and
//! `runtime_engine.rs` (the OCI runtime asked for, against those the engine has).

mod base_images;
mod expert;
mod extra_env;
mod mock_script;
mod protected;
mod provider;
mod registry;
mod runtime_engine;
mod skills;
#[cfg(test)]
mod tests;
mod workspace;

pub(crate) use base_images::{MISSING_BASE_IMAGE_HINT, base_images, missing_base_images};
pub(crate) use protected::{ProtectedEntry, ProtectedLayout};
pub(crate) use runtime_engine::{GVISOR_ARGS, RegisteredRuntime, check_runtime_engine_on};
pub(crate) use skills::file_problem;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{LoadedConfig, ProviderName};
use crate::llm::mock::MockScript;
use crate::sandbox::skill_files::FilesBySkill;
use crate::trust::inputs::TrustedInput;

/// One problem found before the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file:line:col` when the problem has a place in the config.
    pub location: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The problems found; `Display` lists them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "cannot start the run ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// What the checks need to know.
pub(crate) struct Preflight<'a> {
    /// The loaded config.
    pub config: &'a LoadedConfig,
    /// The Expert to run.
    pub expert_key: &'a str,
    /// The provider the run will use.
    pub provider: ProviderName,
    /// The env map (process + dotenv files).
    pub env: &'a BTreeMap<String, String>,
    /// `--env` names.
    pub extra_env: &'a [String],
    /// `--workspace`, or the current folder.
    pub workspace: &'a Path,
    /// The files the run reads and trusts (`trust::inputs::of_run`).
    pub trusted: &'a [TrustedInput],
}

/// What the checks produce for the plan.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    /// Canonical workspace path.
    pub workspace: PathBuf,
    /// Variables for the runtime container (provider variables and `--env` extras).
    pub runtime_env: Vec<(String, String)>,
    /// The mock script, when the provider is `mock`.
    pub mock_script: Option<MockScript>,
    /// The workspace's protected paths, found.
    pub protected: ProtectedLayout,
    /// The stdio skills' own files from the config's folder (none for a versioned image).
    pub skill_files: FilesBySkill,
    /// The files the run reads and trusts: [`Preflight::trusted`] and the skills' own files
    /// (`sandbox::skill_files::trusted_inputs`).
    pub trusted: Vec<TrustedInput>,
}

impl Preflight<'_> {
    /// Runs every check; returns what the plan needs, or every problem found.
    pub(crate) fn check(&self) -> Result<Checked, Problems> {
        self.check_all(None, true)
    }

    /// [`Preflight::check`] for `install`'s listing run, which asks no model: everything but the
    /// provider, its key and the mock script (the runtime gets no provider variables).
    pub(crate) fn check_for_listing(&self) -> Result<Checked, Problems> {
        self.check_all(None, false)
    }

    /// [`Preflight::check`] for an Expert whose mock script is loaded already (`run --image`:
    /// it is baked into the image, and there is no file to read it from).
    pub(crate) fn check_with_mock_script(
        &self,
        script: Option<MockScript>,
    ) -> Result<Checked, Problems> {
        self.check_all(Some(script), true)
    }

    /// Every check in turn, each adding its problems in this order; the runtime's variables
    /// are the provider's, then the `--env` extras. `model`: the run asks the provider (not a
    /// listing run).
    fn check_all(
        &self,
        baked_script: Option<Option<MockScript>>,
        model: bool,
    ) -> Result<Checked, Problems> {
        let mut found = Found::default();
        let runtime_env = self.check_runtime_env(&mut found, model);
        let skill_files = self.check_skills(&mut found, baked_script.is_some());
        let mut trusted = self.trusted.to_vec();
        if let Some(skill_files) = &skill_files {
            trusted.extend(crate::sandbox::skill_files::trusted_inputs(
                self.config.dir(),
                skill_files,
            ));
        }
        let (workspace, protected) = self.check_workspace(&mut found, &trusted);
        let mock_script = match model {
            true => found.add(mock_script::check_mock_script(
                self.config,
                self.provider,
                baked_script,
            )),
            false => Some(None),
        };
        match (runtime_env, workspace, mock_script, protected, skill_files) {
            (
                Some(runtime_env),
                Some(workspace),
                Some(mock_script),
                Some(protected),
                Some(skill_files),
            ) if found.0.is_empty() => Ok(Checked {
                workspace,
                runtime_env,
                mock_script,
                protected,
                skill_files,
                trusted,
            }),
            _ => Err(Problems(found.0)),
        }
    }

    /// The Expert, then the runtime's variables: the provider's (none for a listing run, which
    /// asks no model), then the `--env` extras.
    fn check_runtime_env(&self, found: &mut Found, model: bool) -> Option<Vec<(String, String)>> {
        found
            .0
            .extend(expert::check_expert(self.config, self.expert_key).err());
        let provider_env = match model {
            true => found.add(provider::check_provider(
                self.config,
                self.provider,
                self.env,
            )),
            false => Some(Vec::new()),
        };
        let extra_env = found.add(extra_env::check_extra_env(self.extra_env, self.env));
        let mut runtime_env = provider_env?;
        runtime_env.extend(extra_env?);
        Some(runtime_env)
    }

    /// The skills, the registry they come from, and their own files from the config's folder;
    /// `baked`: a versioned image's skill images hold their files already, there is no folder
    /// to read.
    fn check_skills(&self, found: &mut Found, baked: bool) -> Option<FilesBySkill> {
        let loaded = self.config;
        found
            .0
            .extend(skills::check_skills(loaded, self.expert_key, self.env));
        found.0.extend(registry::check_registry_reach(
            loaded,
            self.expert_key,
            self.env,
        ));
        match baked {
            true => Some(FilesBySkill::new()),
            false => found.add(skills::check_skill_files(loaded, self.expert_key)),
        }
    }

    /// The workspace, and its protected paths given the `trusted` files.
    fn check_workspace(
        &self,
        found: &mut Found,
        trusted: &[TrustedInput],
    ) -> (Option<PathBuf>, Option<ProtectedLayout>) {
        let workspace = found.add(
            workspace::check_workspace(self.workspace).map_err(|message| {
                vec![Problem {
                    location: None,
                    message,
                }]
            }),
        );
        let protected = workspace.as_deref().and_then(|workspace| {
            found.add(protected::check_protected(
                trusted,
                workspace,
                &self.config.config.sandbox.writable,
            ))
        });
        (workspace, protected)
    }
}

/// The problems found so far, in the order found.
#[derive(Default)]
struct Found(Vec<Problem>);

impl Found {
    /// A check's value, or `None` after keeping its problems.
    fn add<T>(&mut self, checked: Result<T, Vec<Problem>>) -> Option<T> {
        checked.map_err(|problems| self.0.extend(problems)).ok()
    }
}

/// `file:line:col` of a dotted path of the config, when the file has it.
fn location(loaded: &LoadedConfig, dotted: &str) -> Option<String> {
    loaded.location(dotted).map(|l| l.to_string())
}
