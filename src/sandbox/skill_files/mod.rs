//! A stdio skill's own files from the config's folder: which its command line names
//! (`detect.rs`), reading them safely (`walk.rs`), and the command the skill host then starts.
//!
//! `python3 server.py`, `node ./tools/server.js`, `./bin/my-server` or
//! `uv run --directory tools/x` name files beside perstack.toml. They — and what
//! `[sandbox.skills."<name>"] files` lists — are copied into the skill's image under
//! [`SKILL_FILES_DIR`] at the same relative path, and each word that named one is rewritten to
//! its path there. The skill's working directory is the folder of the first of them (a named
//! folder itself). In that folder, a dependency manifest is installed when the image is built, in
//! the install stage, with the CA bundle and the configured index:
//! `requirements.txt` (else `pyproject.toml`) for `python`/`python3` — into a venv, whose python
//! then runs the script — and `package.json` (with `package-lock.json` or
//! `npm-shrinkwrap.json`, `npm ci`) for `node`.
//!
//! The files are part of the image's content, so of its digest: editing `server.py` rebuilds
//! that skill's image and no other. They are trusted inputs of the run as well
//! ([`trusted_inputs`]): watched from its start to its end, and read-only to the
//! containers when they lie in the workspace.

mod detect;
mod walk;

pub(crate) use walk::LocalFile;

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{Config, LoadedConfig, McpStdioSkill, Skill, dotted_path};
use crate::contract::paths::{INSTALL_PREFIX, SKILL_FILES_DIR};
use crate::sandbox::packages::{self, Install, Installer, Prepared};
use crate::trust::inputs::{InputKind, TrustedInput};

use walk::{Collected, PathError, Resolved, Root};

/// A skill's local files and the command that runs with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SkillFiles {
    /// The files, by relative path.
    pub files: Vec<LocalFile>,
    /// The paths the config named and the manifests found beside them, relative to the config's
    /// folder, sorted: a folder stands for every file it holds (`trust::inputs` watches and
    /// protects these).
    pub named: Vec<NamedPath>,
    /// The program the skill host starts (a named file rewritten to its place in the image).
    pub command: String,
    /// Its arguments, rewritten likewise.
    pub args: Vec<String>,
    /// The working directory in the image: the folder the files came from (`None` for a
    /// recipe, whose image says its own).
    pub workdir: Option<String>,
    /// What the install stage installs: the command's packages (`packages.rs`), with the
    /// folder's manifest.
    pub install: Option<Install>,
    /// The files the install stage reads (the manifest and its lockfile; a `pyproject.toml`
    /// project's every file), by relative path: only these are copied into it, so editing
    /// `server.py` reuses the installed dependencies.
    pub install_files: Vec<String>,
    /// `[sandbox.skills."<name>"] dockerfile`: the skill's image starts from the user's recipe,
    /// built with `files` (its folder) as the context; the command runs as written.
    pub recipe: Option<Recipe>,
}

/// Where a skill's own Dockerfile is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recipe {
    /// Its folder, the build context, relative to the config's folder (`skills/x`).
    pub context: String,
    /// The Dockerfile's path inside it.
    pub dockerfile: String,
}

/// A path of the config's folder that went into a skill's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPath {
    /// Relative to the config's folder, normalized (`tools/x`).
    pub relative: String,
    /// A folder, copied whole (less [`SKIPPED_FOLDERS`](crate::trust::inputs::SKIPPED_FOLDERS)).
    pub is_dir: bool,
}

impl From<Resolved> for NamedPath {
    fn from(resolved: Resolved) -> NamedPath {
        NamedPath {
            relative: resolved.relative,
            is_dir: resolved.is_dir,
        }
    }
}

/// The local files of every stdio skill of a run, by Expert and skill name.
pub(crate) type FilesBySkill = BTreeMap<(String, String), SkillFiles>;

/// The skills' own files as trusted inputs (`trust::inputs`), as the controller reads
/// them from the config's folder `dir`: each file copied into an image, and each folder copied
/// whole (a file added to it would be copied by the next run). Sorted, each once.
pub(crate) fn trusted_inputs(dir: &Path, skills: &FilesBySkill) -> Vec<TrustedInput> {
    let mut inputs: Vec<TrustedInput> = Vec::new();
    for skill in skills.values() {
        let folders = skill
            .named
            .iter()
            .filter(|named| named.is_dir)
            .map(|named| TrustedInput {
                kind: InputKind::SkillFolder,
                path: dir.join(&named.relative),
            });
        let files = skill.files.iter().map(|file| TrustedInput {
            kind: InputKind::SkillFile,
            path: dir.join(&file.relative),
        });
        inputs.extend(folders.chain(files));
    }
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    inputs.dedup_by(|a, b| a.path == b.path);
    inputs
}

/// A problem with a skill's files, at a dotted path of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileProblem {
    /// Where the path was written (`experts.e.skills.x.args[0]`).
    pub at: String,
    /// What is wrong, and what to do.
    pub message: String,
}

/// Where `relative` (a path of the config's folder) is in a skill's image.
pub(crate) fn image_path(relative: &str) -> String {
    if relative.is_empty() {
        SKILL_FILES_DIR.to_string()
    } else {
        format!("{SKILL_FILES_DIR}/{relative}")
    }
}

/// The local files of every stdio skill of the Experts `keys`; every problem of them all.
pub(crate) fn collect_all(
    loaded: &LoadedConfig,
    keys: &[String],
) -> Result<FilesBySkill, Vec<FileProblem>> {
    let mut found = FilesBySkill::new();
    let mut problems = Vec::new();
    for key in keys {
        let Some(expert) = loaded.config.experts.get(key) else {
            continue;
        };
        for skill in expert.skills.values() {
            let Skill::McpStdio(stdio) = skill else {
                continue;
            };
            let at = dotted_path(&["experts", key, "skills", &stdio.name]);
            match collect(loaded.dir(), &loaded.config, stdio, &at) {
                Ok(Some(files)) => {
                    found.insert((key.clone(), stdio.name.clone()), files);
                }
                Ok(None) => {}
                Err(mut more) => problems.append(&mut more),
            }
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

/// `skill`'s local files (module docs), `None` when it has none; `at` is the skill's dotted
/// path, where problems point. Stages: the skill's own Dockerfile, if it has one, stands for
/// everything; else the paths its command line names are read and rewritten, then the files
/// `[sandbox.skills]` lists, then the manifest in the first one's folder.
pub(crate) fn collect(
    dir: &Path,
    config: &Config,
    skill: &McpStdioSkill,
    at: &str,
) -> Result<Option<SkillFiles>, Vec<FileProblem>> {
    if skill.is_base() {
        return Ok(None);
    }
    if let Some(dockerfile) = config
        .sandbox
        .skills
        .get(&skill.name)
        .and_then(|s| s.dockerfile.as_deref())
    {
        let at = dotted_path(&["sandbox", "skills", &skill.name, "dockerfile"]);
        return recipe(dir, skill, dockerfile)
            .map(Some)
            .map_err(|error| vec![problem(skill, at, error)]);
    }
    // A command that cannot be prepared is preflight's own problem (`packages.rs`).
    let Ok(prepared) = packages::prepare(skill) else {
        return Ok(None);
    };
    let mut reading = Reading {
        root: Root::new(dir),
        skill,
        collected: Collected::default(),
        folders: Vec::new(),
        problems: Vec::new(),
    };
    let places = WordPlaces::new(skill, &prepared, at);
    let named = detect::named_paths(&prepared.command, &prepared.args, |p| {
        reading.root.exists(p)
    });
    let (command, args) = reading.named(&named, &prepared, &places);
    reading.listed(config);
    if !reading.problems.is_empty() {
        return Err(reading.problems);
    }
    let Some(folder) = reading.folders.first().cloned() else {
        return Ok(None);
    };
    let installs = prepared.install.is_some();
    let manifest = manifest(
        &reading.root,
        &folder,
        &command,
        installs,
        &mut reading.collected,
    )
    .map_err(|error| {
        let at = places.of(named.first().and_then(|w| w.arg));
        vec![problem(skill, at, error)]
    })?;
    Ok(Some(with_manifest(
        reading.collected,
        Prepared {
            command,
            args,
            ..prepared
        },
        &folder,
        manifest,
    )))
}

/// A problem of `skill`'s at `at`.
fn problem(skill: &McpStdioSkill, at: String, error: PathError) -> FileProblem {
    FileProblem {
        at,
        message: format!("skill `{}`: {error}", skill.name),
    }
}

/// Where each word of a skill's prepared command line was written in the config.
struct WordPlaces<'a> {
    /// The skill's dotted path.
    at: &'a str,
    /// The index in `args` of the prepared args' first word (they are its tail), if they are.
    offset: Option<usize>,
}

impl WordPlaces<'_> {
    fn new<'a>(skill: &McpStdioSkill, prepared: &Prepared, at: &'a str) -> WordPlaces<'a> {
        WordPlaces {
            at,
            offset: skill
                .args
                .ends_with(&prepared.args)
                .then(|| skill.args.len() - prepared.args.len()),
        }
    }

    /// The dotted path of the command (`None`) or of the prepared arg `arg`.
    fn of(&self, arg: Option<usize>) -> String {
        let at = self.at;
        match (arg, self.offset) {
            (None, _) => format!("{at}.command"),
            (Some(i), Some(offset)) => format!("{at}.args[{}]", offset + i),
            (Some(_), None) => format!("{at}.args"),
        }
    }
}

/// A skill's files being read: what was read, the folder of each path, and every problem.
struct Reading<'a> {
    root: Root,
    skill: &'a McpStdioSkill,
    collected: Collected,
    folders: Vec<String>,
    problems: Vec<FileProblem>,
}

impl Reading<'_> {
    /// Reads each path the command line names; the command and args rewritten to their places
    /// in the image.
    fn named(
        &mut self,
        named: &[detect::Named],
        prepared: &Prepared,
        places: &WordPlaces<'_>,
    ) -> (String, Vec<String>) {
        let mut command = prepared.command.clone();
        let mut args = prepared.args.clone();
        for word in named {
            let Some(resolved) = self.read(&word.path, || places.of(word.arg)) else {
                continue;
            };
            let rewritten = format!("{}{}", word.prefix, rewritten(&word.path, &resolved));
            match word.arg {
                None => command = rewritten,
                Some(i) => args[i] = rewritten,
            }
        }
        (command, args)
    }

    /// Reads what `[sandbox.skills."<name>"] files` lists.
    fn listed(&mut self, config: &Config) {
        let name = &self.skill.name;
        let Some(listed) = config.sandbox.skills.get(name) else {
            return;
        };
        let files_at = dotted_path(&["sandbox", "skills", name, "files"]);
        for (i, file) in listed.files.iter().enumerate() {
            self.read(file, || format!("{files_at}[{i}]"));
        }
    }

    /// Reads `written`, keeping its folder; a problem at `at()` when it cannot be.
    fn read(&mut self, written: &str, at: impl FnOnce() -> String) -> Option<Resolved> {
        match read(&self.root, written, &mut self.collected) {
            Ok(resolved) => {
                self.folders.push(folder_of(&resolved));
                Some(resolved)
            }
            Err(error) => {
                self.problems.push(problem(self.skill, at(), error));
                None
            }
        }
    }
}

/// The skill's files working in `folder`, with the manifest found there installed (and the
/// command become the venv's interpreter for a Python one), else the command's own install.
fn with_manifest(
    collected: Collected,
    prepared: Prepared,
    folder: &str,
    manifest: Option<Manifest>,
) -> SkillFiles {
    let (install, command, install_files) = match manifest {
        Some(Manifest {
            install,
            python,
            files,
        }) => {
            let command = match python {
                true => format!("{INSTALL_PREFIX}/bin/{}", program(&prepared.command)),
                false => prepared.command,
            };
            let files = match files {
                Some(files) => files,
                None => collected.files.keys().cloned().collect(),
            };
            (Some(install), command, files)
        }
        None => (prepared.install, prepared.command, Vec::new()),
    };
    SkillFiles {
        named: collected.named.into_iter().map(NamedPath::from).collect(),
        files: collected.files.into_values().collect(),
        command,
        args: prepared.args,
        workdir: Some(image_path(folder)),
        install,
        install_files,
        recipe: None,
    }
}

/// A skill built from the user's Dockerfile: its folder is read whole as the context (less what
/// a named folder always leaves out: `walk.rs`), and the command runs as written — its paths
/// name places in the recipe's image.
fn recipe(dir: &Path, skill: &McpStdioSkill, dockerfile: &str) -> Result<SkillFiles, PathError> {
    let root = Root::new(dir);
    let resolved = root.resolve(dockerfile)?;
    let (context, name) = match resolved.relative.rsplit_once('/') {
        Some((context, name)) => (context.to_string(), name.to_string()),
        None => (String::new(), resolved.relative.clone()),
    };
    let mut collected = Collected::default();
    if context.is_empty() {
        // The config's own folder is never copied whole: the Dockerfile alone is the context.
        root.read(&resolved, &mut collected)?;
    } else {
        root.read(&root.resolve(&context)?, &mut collected)?;
    }
    // `uv` in a recipe is the recipe's own, with the project environment it made: ours would
    // replace it.
    let prepared = packages::prepare(skill)
        .ok()
        .filter(|p| {
            p.install
                .as_ref()
                .is_none_or(|i| i.installer != Installer::Uv)
        })
        .unwrap_or_else(|| packages::Prepared {
            install: None,
            command: skill.command.clone(),
            args: skill.argv(),
        });
    Ok(SkillFiles {
        named: collected.named.into_iter().map(NamedPath::from).collect(),
        files: collected.files.into_values().collect(),
        command: prepared.command,
        args: prepared.args,
        workdir: None,
        install: prepared.install,
        install_files: Vec::new(),
        recipe: Some(Recipe {
            context,
            dockerfile: name,
        }),
    })
}

/// Resolves a written path and reads what it names.
fn read(root: &Root, written: &str, into: &mut Collected) -> Result<Resolved, PathError> {
    let resolved = root.resolve(written)?;
    root.read(&resolved, into)?;
    Ok(resolved)
}

/// A path's place in the image, keeping a trailing `/` as written.
fn rewritten(written: &str, resolved: &Resolved) -> String {
    let path = image_path(&resolved.relative);
    if written.ends_with('/') {
        format!("{path}/")
    } else {
        path
    }
}

/// The folder a named path's files came from: a folder itself, else the file's.
fn folder_of(resolved: &Resolved) -> String {
    if resolved.is_dir {
        return resolved.relative.clone();
    }
    match resolved.relative.rsplit_once('/') {
        Some((folder, _)) => folder.to_string(),
        None => String::new(),
    }
}

/// The last segment of a command.
fn program(command: &str) -> &str {
    command.rsplit('/').next().unwrap_or(command)
}

/// A dependency manifest found in a skill's folder, as the install stage runs it.
struct Manifest {
    install: Install,
    /// True when the command becomes the venv's interpreter.
    python: bool,
    /// What the install reads; `None`: every file (a project).
    files: Option<Vec<String>>,
}

/// The manifest in `folder` that the command's interpreter would use, read into `into`:
/// `requirements.txt` (else `pyproject.toml`) for `python`/`python3`, `package.json` (and its
/// lockfile) for `node`, `pyproject.toml` (with `uv.lock` and `.python-version`) for `uv`,
/// whose project is synced with every file of the skill (it may be a package that installs
/// itself). None for other commands, and for commands that install packages of their own
/// (`uvx`, `npx`).
fn manifest(
    root: &Root,
    folder: &str,
    command: &str,
    installs: bool,
    into: &mut Collected,
) -> Result<Option<Manifest>, PathError> {
    let in_folder = |name: &str| match folder {
        "" => name.to_string(),
        folder => format!("{folder}/{name}"),
    };
    let found = |name: &str| root.dir_has_file(&in_folder(name));
    match program(command) {
        // `uv` installs itself (`packages.rs`); its project's dependencies come with it.
        "uv" if found("pyproject.toml") => {
            for name in ["pyproject.toml", "uv.lock", ".python-version"] {
                if found(name) {
                    read(root, &in_folder(name), into)?;
                }
            }
            Ok(Some(Manifest {
                install: Install {
                    installer: Installer::Uv,
                    packages: vec![image_path(folder)],
                    entry_package: None,
                },
                python: false,
                files: None,
            }))
        }
        _ if installs => Ok(None),
        "python" | "python3" => {
            let requirements = in_folder("requirements.txt");
            let (packages, files) = if found("requirements.txt") {
                read(root, &requirements, into)?;
                let packages = vec!["-r".to_string(), image_path(&requirements)];
                (packages, Some(vec![requirements]))
            } else if found("pyproject.toml") {
                read(root, &in_folder("pyproject.toml"), into)?;
                (vec![image_path(folder)], None)
            } else {
                return Ok(None);
            };
            Ok(Some(Manifest {
                install: Install {
                    installer: Installer::Pip,
                    packages,
                    entry_package: None,
                },
                python: true,
                files,
            }))
        }
        "node" if found("package.json") => {
            let mut files = Vec::new();
            for name in ["package.json", "package-lock.json", "npm-shrinkwrap.json"] {
                if found(name) {
                    read(root, &in_folder(name), into)?;
                    files.push(in_folder(name));
                }
            }
            Ok(Some(Manifest {
                files: Some(files),
                install: Install {
                    installer: Installer::NpmProject,
                    packages: vec![image_path(folder)],
                    entry_package: None,
                },
                python: false,
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
