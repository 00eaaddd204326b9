//! The trusted inputs of a run, and the workspace paths protected because of them.
//!
//! The controller reads a few files and acts on what they say: perstack.toml (or `--config`)
//! decides which skills run with which secrets and domains; the dotenv files hold the
//! provider's key and base URL; the mock script decides what the mock provider answers; the
//! skills' own files (`server.py` beside perstack.toml) are the code their images run. A run
//! that could change one of them would decide what the next run does. [`of_run`] and
//! `sandbox::skill_files::trusted_inputs` list them — the one list the protections (read-only mounts) and the
//! detection (digests at start and end) both take.
//!
//! [`protected_paths`] turns that list into the workspace paths that every container mounting
//! the workspace sees read-only: the trusted inputs that lie inside the workspace, `.git` (git
//! runs its hooks and reads its config on the host), and the reserved run-data folder (hidden
//! altogether). A user can make one writable on purpose with `[sandbox] writable`; `.git` then
//! keeps its `hooks/` and `config` protected unless they are listed too.
//!
//! Everything here is pure but [`resolve_lenient`], which the caller applies to the paths first
//! so that they compare with the canonical workspace.

use crate::config::discover::normalize;
use std::path::{Component, Path, PathBuf};

use crate::config::LoadedConfig;
use crate::config::workspace::RESERVED_DIR;

/// Why the controller reads a trusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum InputKind {
    /// perstack.toml, or the file `--config` names.
    Config,
    /// A dotenv file of the env map (`.env`, `.env.local`, `envPath`, `--env-path`).
    Dotenv,
    /// The mock provider's script (`[provider] setting.script`).
    MockScript,
    /// A file of the config's folder that the controller copies into a skill's image
    /// (`sandbox::skill_files`): the code the skill runs.
    SkillFile,
    /// A folder of the config's folder copied whole into a skill's image: a file added to it
    /// would be copied too.
    SkillFolder,
}

/// What a [`InputKind::SkillFolder`] holds: everything but these folders — version control,
/// caches, installed dependencies (the image installs its own from the folder's manifests). The
/// copy into the image (`sandbox::skill_files`) leaves them out, so a folder's digest
/// (`digest.rs`) does not list them. Defined here, the lower layer of the two.
pub(crate) const SKIPPED_FOLDERS: &[&str] = &[
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    ".mypy_cache",
    ".pytest_cache",
];

impl InputKind {
    /// What the file is to the controller, for messages: "the config the controller reads".
    pub(crate) fn describe(self) -> &'static str {
        match self {
            InputKind::Config => "the config the controller reads",
            InputKind::Dotenv => "a dotenv file the controller reads",
            InputKind::MockScript => "the mock provider's script the controller reads",
            InputKind::SkillFile => "a file the controller copies into a skill's image",
            InputKind::SkillFolder => "a folder the controller copies into a skill's image",
        }
    }
}

/// One file the controller reads and trusts. It may not exist (a dotenv file is optional):
/// a file created where there was none is as much a change as an edited one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrustedInput {
    pub kind: InputKind,
    /// Absolute; as the controller reads it (see [`resolve_lenient`] to compare it).
    pub path: PathBuf,
}

/// The files a run reads and trusts, in the order it reads them: the config (unless it comes
/// from a versioned image, `config_is_file` false), the dotenv files (the same list
/// [`crate::config::env::load`] reads, relative to `cwd`), the mock script the config names.
/// A file listed twice (`--env-path .env --env-path .env`) is listed once.
pub(crate) fn of_run(
    loaded: &LoadedConfig,
    config_is_file: bool,
    cwd: &Path,
    cli_env_paths: &[PathBuf],
) -> Vec<TrustedInput> {
    let config = config_is_file.then(|| TrustedInput {
        kind: InputKind::Config,
        path: loaded.path.clone(),
    });
    let dotenv =
        crate::config::env::env_files(cwd, cli_env_paths, loaded.config.env_path.as_deref())
            .into_iter()
            .map(|path| TrustedInput {
                kind: InputKind::Dotenv,
                path,
            });
    let mock = config_is_file
        .then(|| loaded.mock_script_path())
        .flatten()
        .map(|path| TrustedInput {
            kind: InputKind::MockScript,
            path,
        });
    let mut inputs: Vec<TrustedInput> = Vec::new();
    for input in config.into_iter().chain(dotenv).chain(mock) {
        if !inputs.iter().any(|known| known.path == input.path) {
            inputs.push(input);
        }
    }
    inputs
}

/// `path` with the symlinks of its folders resolved, the last component kept as written (so a
/// trusted input that is itself a symlink stays visible as one), `..` and `.` removed. Folders
/// that do not exist are kept as written below the deepest one that does.
pub(crate) fn resolve_lenient(path: &Path) -> PathBuf {
    let path = normalize(path);
    let Some(name) = path.file_name() else {
        return path;
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let mut existing = parent;
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return normalize(&out.join(name));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(last), Some(up)) => {
                rest.push(last);
                existing = up;
            }
            _ => return path.clone(),
        }
    }
}

/// The workspace's git folder: git runs its hooks and reads its config on the host.
pub(crate) const GIT_DIR: &str = ".git";
/// What stays protected in `.git` when the user makes `.git` itself writable: what git runs
/// or obeys on the host (hooks, `core.hooksPath`, filters, `core.fsmonitor`, aliases).
const GIT_DANGEROUS: [(&str, Rule); 2] = [("hooks", Rule::GitHooks), ("config", Rule::GitConfig)];

/// Why a workspace path is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rule {
    /// A trusted input of the run.
    Input(InputKind),
    /// `.git`.
    GitDir,
    /// `.git/hooks`, kept when `.git` is writable.
    GitHooks,
    /// `.git/config`, kept when `.git` is writable.
    GitConfig,
    /// The reserved run-data folder: hidden, not only read-only.
    RunData,
}

impl Rule {
    /// Whether the path is a folder (else a file).
    pub(crate) fn is_dir(self) -> bool {
        matches!(
            self,
            Rule::GitDir | Rule::GitHooks | Rule::RunData | Rule::Input(InputKind::SkillFolder)
        )
    }

    /// Why it is protected, for messages: "a dotenv file the controller reads".
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Rule::Input(kind) => kind.describe(),
            Rule::GitDir => "git's folder, whose hooks and config run on the host",
            Rule::GitHooks => "git's hooks, which run on the host",
            Rule::GitConfig => "git's config, which can make git run programs on the host",
            Rule::RunData => "the controller's run data",
        }
    }

    /// A short stable name, for events and for the base tools' command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Rule::Input(InputKind::Config) => "config",
            Rule::Input(InputKind::Dotenv) => "dotenv",
            Rule::Input(InputKind::MockScript) => "mock-script",
            Rule::Input(InputKind::SkillFile) => "skill-file",
            Rule::Input(InputKind::SkillFolder) => "skill-folder",
            Rule::GitDir => "git",
            Rule::GitHooks => "git-hooks",
            Rule::GitConfig => "git-config",
            Rule::RunData => "run-data",
        }
    }

    /// The rule [`Rule::name`] names.
    pub(crate) fn from_name(name: &str) -> Option<Rule> {
        ALL_RULES.into_iter().find(|rule| rule.name() == name)
    }
}

const ALL_RULES: [Rule; 9] = [
    Rule::Input(InputKind::Config),
    Rule::Input(InputKind::Dotenv),
    Rule::Input(InputKind::MockScript),
    Rule::Input(InputKind::SkillFile),
    Rule::Input(InputKind::SkillFolder),
    Rule::GitDir,
    Rule::GitHooks,
    Rule::GitConfig,
    Rule::RunData,
];

/// A workspace path that containers mounting the workspace may not change (or, for the run
/// data, see).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtectedPath {
    /// Relative to the workspace, normal components only.
    pub relative: PathBuf,
    pub rule: Rule,
}

impl ProtectedPath {
    /// `<rule>:<path>`, as base-skill's `--protected` takes it.
    pub(crate) fn to_arg(&self) -> String {
        format!("{}:{}", self.rule.name(), self.relative.display())
    }

    /// The path [`ProtectedPath::to_arg`] wrote; `None` for anything else (an unknown rule, a
    /// path that is not plain and relative).
    pub(crate) fn from_arg(arg: &str) -> Option<ProtectedPath> {
        let (rule, path) = arg.split_once(':')?;
        let relative = PathBuf::from(path);
        is_plain_relative(&relative).then_some(ProtectedPath {
            relative,
            rule: Rule::from_name(rule)?,
        })
    }
}

/// The protected paths of a workspace, sorted by path: every trusted input inside `workspace`
/// (both canonical, see [`resolve_lenient`]), `.git` and the run-data folder — less those the
/// user lists in `writable` (relative to the workspace; `./` and a trailing `/` ignored). The
/// run-data folder cannot be made writable; `.git` made writable keeps `hooks` and `config`
/// unless they are listed as well.
pub(crate) fn protected_paths(
    inputs: &[TrustedInput],
    workspace: &Path,
    writable: &[String],
) -> Vec<ProtectedPath> {
    let writable: Vec<PathBuf> = writable.iter().map(|w| normalize(Path::new(w))).collect();
    let git = Path::new(GIT_DIR);
    let mut candidates: Vec<ProtectedPath> = inputs
        .iter()
        .filter_map(|input| {
            let relative = input.path.strip_prefix(workspace).ok()?;
            is_plain_relative(relative).then(|| ProtectedPath {
                relative: relative.to_path_buf(),
                rule: Rule::Input(input.kind),
            })
        })
        .collect();
    candidates.push(ProtectedPath {
        relative: git.to_path_buf(),
        rule: Rule::GitDir,
    });
    if writable.iter().any(|w| w == git) {
        candidates.extend(GIT_DANGEROUS.map(|(name, rule)| ProtectedPath {
            relative: git.join(name),
            rule,
        }));
    }
    let mut protected: Vec<ProtectedPath> = Vec::new();
    for candidate in candidates {
        let unprotected = writable.contains(&candidate.relative);
        let known = protected.iter().any(|p| p.relative == candidate.relative);
        if !unprotected && !known {
            protected.push(candidate);
        }
    }
    let folders: Vec<PathBuf> = protected
        .iter()
        .filter(|p| matches!(p.rule, Rule::Input(InputKind::SkillFolder)))
        .map(|p| p.relative.clone())
        .collect();
    // A skill folder's files need no mounts of their own: the folder's covers them.
    protected.retain(|p| {
        !folders
            .iter()
            .any(|folder| p.relative != *folder && p.relative.starts_with(folder))
    });
    protected.push(ProtectedPath {
        relative: PathBuf::from(RESERVED_DIR),
        rule: Rule::RunData,
    });
    protected.sort_by(|a, b| a.relative.cmp(&b.relative));
    protected
}

/// The protected path that `relative` (a path inside the workspace) is or lies below, if any.
/// Compared ignoring ASCII case, as a case-insensitive file system would name the same file.
pub(crate) fn protecting<'a>(
    protected: &'a [ProtectedPath],
    relative: &Path,
) -> Option<&'a ProtectedPath> {
    let wanted = normalize(relative);
    protected.iter().find(|p| {
        let mut have = wanted.components();
        p.relative.components().all(|c| {
            have.next().is_some_and(|h| {
                h.as_os_str()
                    .to_string_lossy()
                    .eq_ignore_ascii_case(&c.as_os_str().to_string_lossy())
            })
        })
    })
}

/// Whether `path` is relative, not empty, and has only normal components.
fn is_plain_relative(path: &Path) -> bool {
    path.components().next().is_some()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(path: &str, text: &str) -> LoadedConfig {
        crate::config::load_str(Path::new(path), text).unwrap()
    }

    fn input(kind: InputKind, path: &str) -> TrustedInput {
        TrustedInput {
            kind,
            path: PathBuf::from(path),
        }
    }

    fn paths(protected: &[ProtectedPath]) -> Vec<(String, &'static str)> {
        protected
            .iter()
            .map(|p| (p.relative.display().to_string(), p.rule.name()))
            .collect()
    }

    #[test]
    fn a_run_trusts_its_config_its_dotenv_files_and_its_mock_script() {
        let loaded = load_str(
            "/p/perstack.toml",
            r#"
            [provider]
            providerName = "mock"
            setting = { script = "mock/script.json" }
            [experts."a"]
            instruction = "x"
            "#,
        );
        let inputs = of_run(&loaded, true, Path::new("/p/sub"), &[]);
        assert_eq!(
            inputs,
            vec![
                input(InputKind::Config, "/p/perstack.toml"),
                input(InputKind::Dotenv, "/p/sub/.env"),
                input(InputKind::Dotenv, "/p/sub/.env.local"),
                input(InputKind::MockScript, "/p/mock/script.json"),
            ]
        );
    }

    #[test]
    fn env_path_and_env_path_flags_replace_the_default_dotenv_files_once_each() {
        let loaded = load_str(
            "/p/perstack.toml",
            r#"
            envPath = ["conf/dev.env", "conf/dev.env"]
            [experts."a"]
            instruction = "x"
            "#,
        );
        let from_config = of_run(&loaded, true, Path::new("/p"), &[]);
        assert_eq!(
            from_config,
            vec![
                input(InputKind::Config, "/p/perstack.toml"),
                input(InputKind::Dotenv, "/p/conf/dev.env"),
            ]
        );
        let from_flags = of_run(&loaded, true, Path::new("/p"), &[PathBuf::from("x.env")]);
        assert_eq!(from_flags[1], input(InputKind::Dotenv, "/p/x.env"));
        assert_eq!(from_flags.len(), 2);
    }

    #[test]
    fn a_config_from_an_image_is_not_a_file_the_run_reads() {
        let loaded = load_str(
            "/img/perstack.toml",
            r#"
            [provider]
            providerName = "mock"
            setting = { script = "s.json" }
            [experts."a"]
            instruction = "x"
            "#,
        );
        let inputs = of_run(&loaded, false, Path::new("/p"), &[]);
        assert!(
            inputs.iter().all(|i| i.kind == InputKind::Dotenv),
            "{inputs:?}"
        );
    }

    #[test]
    fn inputs_inside_the_workspace_git_and_run_data_are_protected() {
        let inputs = [
            input(InputKind::Config, "/p/perstack.toml"),
            input(InputKind::Dotenv, "/p/.env"),
            input(InputKind::Dotenv, "/elsewhere/.env.local"),
            input(InputKind::MockScript, "/p/mock/script.json"),
        ];
        assert_eq!(
            paths(&protected_paths(&inputs, Path::new("/p"), &[])),
            vec![
                (".env".to_string(), "dotenv"),
                (".git".to_string(), "git"),
                ("mock/script.json".to_string(), "mock-script"),
                ("perstack".to_string(), "run-data"),
                ("perstack.toml".to_string(), "config"),
            ]
        );
    }

    #[test]
    fn a_workspace_below_the_config_protects_only_what_is_inside_it() {
        let inputs = [
            input(InputKind::Config, "/p/perstack.toml"),
            input(InputKind::Dotenv, "/p/.env"),
        ];
        assert_eq!(
            paths(&protected_paths(&inputs, Path::new("/p/work"), &[])),
            vec![
                (".git".to_string(), "git"),
                ("perstack".to_string(), "run-data"),
            ]
        );
    }

    #[test]
    fn writable_unprotects_what_it_names_but_never_the_run_data() {
        let inputs = [input(InputKind::Dotenv, "/p/.env")];
        let writable = ["./.env".to_string(), "perstack/".to_string()];
        assert_eq!(
            paths(&protected_paths(&inputs, Path::new("/p"), &writable)),
            vec![
                (".git".to_string(), "git"),
                ("perstack".to_string(), "run-data"),
            ]
        );
    }

    #[test]
    fn a_writable_git_keeps_its_hooks_and_config_unless_they_are_listed_too() {
        assert_eq!(
            paths(&protected_paths(
                &[],
                Path::new("/p"),
                &[".git/".to_string()]
            )),
            vec![
                (".git/config".to_string(), "git-config"),
                (".git/hooks".to_string(), "git-hooks"),
                ("perstack".to_string(), "run-data"),
            ]
        );
        let all = [
            ".git".to_string(),
            ".git/hooks".to_string(),
            ".git/config".to_string(),
        ];
        assert_eq!(
            paths(&protected_paths(&[], Path::new("/p"), &all)),
            vec![("perstack".to_string(), "run-data")]
        );
    }

    #[test]
    fn a_skill_folder_is_protected_as_one_path_and_its_files_with_it() {
        let inputs = [
            input(InputKind::Config, "/p/perstack.toml"),
            input(InputKind::SkillFolder, "/p/tools"),
            input(InputKind::SkillFile, "/p/tools/server.py"),
            input(InputKind::SkillFile, "/p/tools/lib/x.py"),
            input(InputKind::SkillFile, "/p/server.py"),
            input(InputKind::SkillFile, "/outside/other.py"),
        ];
        assert_eq!(
            paths(&protected_paths(&inputs, Path::new("/p"), &[])),
            vec![
                (".git".to_string(), "git"),
                ("perstack".to_string(), "run-data"),
                ("perstack.toml".to_string(), "config"),
                ("server.py".to_string(), "skill-file"),
                ("tools".to_string(), "skill-folder"),
            ]
        );
        // Made writable, the folder no longer covers the files named on their own.
        let writable = ["tools".to_string()];
        let protected = protected_paths(&inputs, Path::new("/p"), &writable);
        let rule = |p: &str| protecting(&protected, Path::new(p)).map(|p| p.rule.name());
        assert_eq!(rule("tools/server.py"), Some("skill-file"));
        assert_eq!(rule("tools/new.py"), None);
        assert!(Rule::Input(InputKind::SkillFolder).is_dir());
    }

    #[test]
    fn a_path_is_protected_when_it_is_or_lies_below_a_protected_one_in_any_case() {
        let protected =
            protected_paths(&[input(InputKind::Dotenv, "/p/.env")], Path::new("/p"), &[]);
        let rule = |p: &str| protecting(&protected, Path::new(p)).map(|p| p.rule.name());
        assert_eq!(rule(".env"), Some("dotenv"));
        assert_eq!(rule("./.ENV"), Some("dotenv"));
        assert_eq!(rule(".git/hooks/pre-commit"), Some("git"));
        assert_eq!(rule("Perstack/jobs"), Some("run-data"));
        assert_eq!(rule(".env.local"), None);
        assert_eq!(rule(".gitignore"), None);
        assert_eq!(rule("src/.env"), None);
    }

    #[test]
    fn protected_paths_round_trip_through_base_skills_arguments() {
        let protected = protected_paths(
            &[input(InputKind::MockScript, "/p/mock/s.json")],
            Path::new("/p"),
            &[],
        );
        for path in &protected {
            assert_eq!(ProtectedPath::from_arg(&path.to_arg()).as_ref(), Some(path));
        }
        assert_eq!(ProtectedPath::from_arg("dotenv:/etc/x"), None);
        assert_eq!(ProtectedPath::from_arg("dotenv:../x"), None);
        assert_eq!(ProtectedPath::from_arg("nope:x"), None);
        assert_eq!(ProtectedPath::from_arg("x"), None);
    }

    #[test]
    fn rules_round_trip_through_their_names() {
        for rule in ALL_RULES {
            assert_eq!(Rule::from_name(rule.name()), Some(rule));
        }
        assert_eq!(Rule::from_name("nope"), None);
    }

    #[test]
    fn resolve_lenient_resolves_folders_but_not_the_file_itself() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", real.join(".env")).unwrap();
        let canonical = std::fs::canonicalize(&real).unwrap();
        assert_eq!(
            resolve_lenient(&dir.path().join("link/.env")),
            canonical.join(".env")
        );
        assert_eq!(
            resolve_lenient(&dir.path().join("link/missing/deeper/x.env")),
            canonical.join("missing/deeper/x.env")
        );
        assert_eq!(
            resolve_lenient(&dir.path().join("link/./a/../b.env")),
            canonical.join("b.env")
        );
    }
}
