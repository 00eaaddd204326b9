//! Everything checked before a run starts anything: the Expert exists, every variable the
//! provider and the skills need is set, the workspace is a folder, the mock script is valid.
//! All problems are reported together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{LoadedConfig, ProviderName, Skill, dotted_path};
use crate::llm::mock::MockScript;
use crate::llm::providers::Endpoint;

use super::docker::{DockerClient, DockerError};
use super::packages;
use super::plan::{SkillBase, skill_base_image};

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

/// A provider that lives at a per-account resource (azure-openai) needs to know which: the
/// resource name or a base URL, in `[provider.setting]` or their variables.
fn missing_endpoint(
    config: &crate::config::Config,
    provider: ProviderName,
    env: &BTreeMap<String, String>,
) -> Option<String> {
    let info = provider.info();
    if !matches!(info.endpoint, Endpoint::PerResource { .. }) {
        return None;
    }
    let no_setting = Default::default();
    let setting = config
        .provider
        .as_ref()
        .filter(|p| p.provider_name == provider)
        .map_or(&no_setting, |p| &p.setting);
    let env = |var: &str| env.get(var).cloned();
    let known =
        info.resource(setting, &env).is_some() || info.configured_base_url(setting, &env).is_some();
    (!known).then(|| {
        format!(
            "{} is not set; provider `{provider}` needs the resource name (or a base URL: {}, \
             or resourceName / baseUrl in [provider.setting])",
            info.resource_var(),
            info.base_url_var().unwrap_or("baseUrl"),
        )
    })
}

/// What the checks need to know.
pub struct Preflight<'a> {
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
}

/// What the checks produce for the plan.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Canonical workspace path.
    pub workspace: PathBuf,
    /// Variables for the runtime container (provider variables and `--env` extras).
    pub runtime_env: Vec<(String, String)>,
    /// The mock script, when the provider is `mock`.
    pub mock_script: Option<MockScript>,
}

/// Folders of the host that must never be mounted as the workspace, nor anything inside them:
/// the system's own files, devices and kernel interfaces, and the engine's state and socket.
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/lib/docker",
];

/// Folders that hold everybody's files: fine to work below, never as the workspace itself.
const SHARED_ROOTS: &[&str] = &[
    "/", "/home", "/root", "/tmp", "/var", "/mnt", "/media", "/opt", "/srv",
];

/// The workspace, checked and made canonical. The path as given must not contain `..` or a
/// control character (a newline would forge lines in logs and labels); what it resolves to —
/// after every symlink — must be a folder, and neither a folder that holds everybody's files
/// (`/`, `/home`, `/tmp`, …, or the user's home itself) nor anything inside the system's trees
/// (`/etc`, `/proc`, `/var/run`, …). base-skill mounts it read-write: a workspace that is a
/// symlink to `/` would hand the host to every `exec`.
pub fn check_workspace(given: &Path) -> Result<PathBuf, String> {
    let shown = given.display().to_string();
    if shown.chars().any(char::is_control) {
        return Err(format!(
            "workspace {shown:?} contains a control character (a newline?); choose a folder whose path has none"
        ));
    }
    if given
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!(
            "workspace {shown} contains `..`; give the folder's path without `..`"
        ));
    }
    let resolved = std::fs::canonicalize(given)
        .map_err(|error| format!("workspace {shown} does not exist or cannot be read: {error}"))?;
    if !resolved.is_dir() {
        return Err(format!("workspace {} is not a folder", resolved.display()));
    }
    let resolved_shown = resolved.display().to_string();
    if resolved_shown.chars().any(char::is_control) {
        return Err(format!(
            "workspace {shown} resolves to {resolved_shown:?}, which contains a control character; choose a folder whose path has none"
        ));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .and_then(|h| std::fs::canonicalize(h).ok());
    let shared = SHARED_ROOTS.iter().any(|root| resolved == Path::new(root))
        || home.as_deref() == Some(resolved.as_path());
    let system = SYSTEM_TREES.iter().any(|tree| resolved.starts_with(tree));
    if shared || system {
        let via = if resolved.as_path() == given {
            String::new()
        } else {
            format!(" (it resolves to {resolved_shown})")
        };
        return Err(format!(
            "workspace {shown}{via} would give the workspace tools read-write access to {}; choose a project folder (`--workspace ./my-project`)",
            if system {
                "the host's system files"
            } else {
                "files that are not the project's"
            }
        ));
    }
    Ok(resolved)
}

impl Preflight<'_> {
    /// Runs every check; returns what the plan needs, or every problem found.
    pub fn check(&self) -> Result<Checked, Problems> {
        self.check_all(None)
    }

    /// [`Preflight::check`] for an Expert whose mock script is loaded already (`run --image`:
    /// it is baked into the image, and there is no file to read it from).
    pub fn check_with_mock_script(&self, script: Option<MockScript>) -> Result<Checked, Problems> {
        self.check_all(Some(script))
    }

    fn check_all(&self, baked_script: Option<Option<MockScript>>) -> Result<Checked, Problems> {
        let mut problems = Vec::new();
        let loaded = self.config;
        let config = &loaded.config;
        let here = |dotted: &str| loaded.location(dotted).map(|l| l.to_string());

        if !config.experts.contains_key(self.expert_key) {
            let known: Vec<&str> = config.experts.keys().map(String::as_str).collect();
            problems.push(Problem {
                location: None,
                message: if known.is_empty() {
                    format!(
                        "unknown expert `{}`: {} defines no Experts",
                        self.expert_key,
                        loaded.path.display()
                    )
                } else {
                    format!(
                        "unknown expert `{}`; Experts in {}: {}",
                        self.expert_key,
                        loaded.path.display(),
                        known.join(", ")
                    )
                },
            });
        }

        if !self.provider.info().is_supported() {
            let from_file =
                config.provider.as_ref().map(|p| p.provider_name) == Some(self.provider);
            problems.push(Problem {
                location: if from_file {
                    here("provider.providerName")
                } else {
                    None
                },
                message: self.provider.info().unsupported_message(),
            });
        }
        if let Some(message) = missing_endpoint(config, self.provider, self.env) {
            problems.push(Problem {
                location: None,
                message,
            });
        }
        let mut runtime_env = Vec::new();
        for var in self.provider.info().key_vars {
            match self.env.get(*var) {
                Some(value) => runtime_env.push((var.to_string(), value.clone())),
                None => problems.push(Problem {
                    location: None,
                    message: format!(
                        "{var} is not set; provider `{}` needs it (export it or add it to .env)",
                        self.provider
                    ),
                }),
            }
        }
        for var in self.provider.info().optional_var_names() {
            if let Some(value) = self.env.get(var) {
                runtime_env.push((var.to_string(), value.clone()));
            }
        }
        for name in self.extra_env {
            match self.env.get(name) {
                Some(value) => runtime_env.push((name.clone(), value.clone())),
                None => problems.push(Problem {
                    location: None,
                    message: format!(
                        "--env {name}: {name} is not set (export it or add it to .env)"
                    ),
                }),
            }
        }

        // An unknown Expert was reported above; its closure is empty.
        for key in config.delegation_closure(self.expert_key) {
            let Some(expert) = config.experts.get(&key) else {
                continue;
            };
            for skill in expert.skills.values() {
                let path = dotted_path(&["experts", &key, "skills", skill.name()]);
                match skill {
                    Skill::McpStdio(stdio) => {
                        for (i, var) in stdio.required_env.iter().enumerate() {
                            if !self.env.contains_key(var) {
                                problems.push(Problem {
                                    location: here(&format!("{path}.requiredEnv[{i}]"))
                                        .or_else(|| here(&path)),
                                    message: format!(
                                        "skill `{}` of expert `{key}` needs {var}, which is not set (export it or add it to .env)",
                                        stdio.name
                                    ),
                                });
                            }
                        }
                        let prepared = if stdio.is_base() {
                            None
                        } else {
                            match packages::prepare(stdio) {
                                Ok(prepared) => Some(prepared),
                                Err(error) => {
                                    problems.push(Problem {
                                        location: here(&format!("{path}.args"))
                                            .or_else(|| here(&format!("{path}.command"))),
                                        message: format!("skill `{}`: {error}", stdio.name),
                                    });
                                    None
                                }
                            }
                        };
                        let base = skill_base_image(config, stdio);
                        if let (Some(prepared), Some("scratch")) = (&prepared, base.as_deref())
                            && prepared.install.is_some()
                        {
                            problems.push(Problem {
                                location: here(&format!("{path}.command")),
                                message: format!(
                                    "skill `{}` runs `{}`, whose packages are installed when its image is built, but its base image is `scratch`, which has no {}; choose a base with one",
                                    stdio.name,
                                    stdio.command,
                                    match SkillBase::of(&stdio.command) {
                                        SkillBase::Node => "node and npm",
                                        _ => "python3",
                                    },
                                ),
                            });
                        }
                        if !stdio.is_base() && base.is_none() {
                            problems.push(Problem {
                                location: here(&format!("{path}.command")),
                                message: format!(
                                    "skill `{}` runs `{}`, and no base image is configured for it; set {} or [sandbox.skills.\"{}\"] image (there is no registry to pull a default from){}",
                                    stdio.name,
                                    stdio.command,
                                    // Only our own binary has no setting, and it never
                                    // lacks a base (scratch).
                                    SkillBase::of(&stdio.command)
                                        .setting()
                                        .unwrap_or("[sandbox] skillImage"),
                                    stdio.name,
                                    base_hint(SkillBase::of(&stdio.command)),
                                ),
                            });
                        }
                    }
                    // Answered by the user through `-i`, or reached by the runtime over HTTP
                    // (config validation checked the URL): nothing to start.
                    Skill::Interactive(_) | Skill::McpSse(_) => {}
                }
            }
        }

        let workspace = match check_workspace(self.workspace) {
            Ok(path) => Some(path),
            Err(message) => {
                problems.push(Problem {
                    location: None,
                    message,
                });
                None
            }
        };

        let mock_script = match (self.provider == ProviderName::Mock, baked_script) {
            (false, _) => None,
            (true, None) => self.mock_script(&mut problems),
            (true, Some(Some(script))) => Some(script),
            (true, Some(None)) => {
                problems.push(Problem {
                    location: None,
                    message: format!(
                        "provider `mock` needs a script, and {} was built without one (its perstack.toml's provider is not `mock`)",
                        loaded.path.display()
                    ),
                });
                None
            }
        };

        match (problems.is_empty(), workspace) {
            (true, Some(workspace)) => Ok(Checked {
                workspace,
                runtime_env,
                mock_script,
            }),
            _ => Err(Problems(problems)),
        }
    }

    fn mock_script(&self, problems: &mut Vec<Problem>) -> Option<MockScript> {
        let loaded = self.config;
        let setting = loaded
            .config
            .provider
            .as_ref()
            .filter(|p| p.provider_name == ProviderName::Mock)
            .and_then(|p| p.setting.script.as_ref());
        let Some(script) = setting else {
            problems.push(Problem {
                location: loaded
                    .location("provider")
                    .map(|l| l.to_string()),
                message: "provider `mock` needs a script: add `[provider] providerName = \"mock\"` with `setting = { script = \"<file>\" }` to perstack.toml".to_string(),
            });
            return None;
        };
        let path = loaded.dir().join(script);
        match MockScript::load(&path) {
            Ok(script) => {
                for expert in script.named_experts() {
                    if !loaded.config.experts.contains_key(expert) {
                        problems.push(Problem {
                            location: Some(path.display().to_string()),
                            message: format!(
                                "mock script names expert `{expert}`, which perstack.toml does not define"
                            ),
                        });
                    }
                }
                Some(script)
            }
            Err(error) => {
                problems.push(Problem {
                    location: loaded
                        .location("provider.setting.script")
                        .map(|l| l.to_string()),
                    message: error.to_string(),
                });
                None
            }
        }
    }
}

/// What a base image for each kind of command must hold, and where to get one offline.
fn base_hint(base: SkillBase) -> &'static str {
    match base {
        SkillBase::Node => {
            "; it needs node and npm (the package is installed with `npm install -g` when the image is built): `make test-images` builds perstack-sandbox/bookworm-node:local, which has Debian's nodejs 18 and npm 9; for another Node version `docker load -i` an image like node:22-bookworm-slim saved on a machine with a registry"
        }
        SkillBase::Python => {
            "; it needs python3 with venv (the package is pip-installed when the image is built): `make test-images` builds perstack-sandbox/bookworm:local, which has both"
        }
        SkillBase::Own | SkillBase::Other => "",
    }
}

/// The base images the run's skill containers are built on, with who needs each and the
/// setting that chose it; `scratch` (built in) is left out.
pub fn base_images(config: &crate::config::Config, expert_key: &str) -> Vec<BaseImageUse> {
    let mut uses: Vec<BaseImageUse> = Vec::new();
    for key in config.delegation_closure(expert_key) {
        let Some(expert) = config.experts.get(&key) else {
            continue;
        };
        for skill in expert.skills.values() {
            let Skill::McpStdio(stdio) = skill else {
                continue;
            };
            let (image, user, setting) = if stdio.is_base() {
                (
                    config.sandbox.workspace_image.clone(),
                    "base-skill".to_string(),
                    "[sandbox] workspaceImage".to_string(),
                )
            } else {
                let own = config
                    .sandbox
                    .skills
                    .get(&stdio.name)
                    .is_some_and(|s| s.image.is_some());
                let setting = if own {
                    format!("[sandbox.skills.\"{}\"] image", stdio.name)
                } else {
                    SkillBase::of(&stdio.command)
                        .setting()
                        .unwrap_or("[sandbox] skillImage")
                        .to_string()
                };
                (
                    skill_base_image(config, stdio),
                    format!("skill `{}`", stdio.name),
                    setting,
                )
            };
            let Some(image) = image.filter(|i| i != "scratch") else {
                continue;
            };
            match uses.iter_mut().find(|u| u.image == image) {
                Some(found) => {
                    if !found.users.contains(&user) {
                        found.users.push(user);
                    }
                    if !found.settings.contains(&setting) {
                        found.settings.push(setting);
                    }
                }
                None => uses.push(BaseImageUse {
                    image,
                    users: vec![user],
                    settings: vec![setting],
                }),
            }
        }
    }
    uses
}

/// A base image, who needs it, and which settings chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImageUse {
    /// The image reference.
    pub image: String,
    /// `base-skill`, ``skill `x` ``.
    pub users: Vec<String>,
    /// The settings that name it.
    pub settings: Vec<String>,
}

/// What to do about a missing base image: there is no registry to pull it from.
pub const MISSING_BASE_IMAGE_HINT: &str = "there is no registry to pull it from: build or load it first (`make test-images` builds perstack-sandbox/bookworm:local, a Debian image with a shell and python3, and perstack-sandbox/bookworm-node:local, the same with node and npm, without a registry; or `docker import` a debootstrapped rootfs, or `docker load -i image.tar` saved on a machine that has it)";

/// The missing-image problems for `uses`, given which images the engine has (`present`).
pub fn missing_base_images(uses: &[BaseImageUse], present: impl Fn(&str) -> bool) -> Vec<Problem> {
    uses.iter()
        .filter(|u| !present(&u.image))
        .map(|u| Problem {
            location: None,
            message: format!(
                "base image `{}` is not available locally (needed by {}); {MISSING_BASE_IMAGE_HINT}, or change {} in perstack.toml (or override it with --workspace-image, --node-image, --python-image or --skill-image)",
                u.image,
                u.users.join(", "),
                u.settings.join(" / ")
            ),
        })
        .collect()
}

/// The engine check of preflight: every base image the run builds on is on this engine. Runs
/// before anything is created or recorded.
pub async fn check_base_images(
    docker: &DockerClient,
    config: &crate::config::Config,
    expert_key: &str,
) -> Result<Result<(), Problems>, DockerError> {
    let uses = base_images(config, expert_key);
    let mut present = std::collections::HashSet::new();
    for u in &uses {
        if docker.image_id(&u.image).await?.is_some() {
            present.insert(u.image.clone());
        }
    }
    let problems = missing_base_images(&uses, |image| present.contains(image));
    Ok(if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems(problems))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = r#"
[provider]
providerName = "mock"
setting = { script = "script.toml" }

[experts.main]
instruction = "x"
delegates = ["helper"]

[experts.main.skills.web]
type = "mcpStdioSkill"
command = "perstack-sandbox"
args = ["fixture-mcp"]
requiredEnv = ["WEB_KEY"]

[experts.helper]
instruction = "x"

[experts.helper.skills.npm]
type = "mcpStdioSkill"
command = "npx"
packageName = "some-mcp"
requiredEnv = ["NPM_KEY"]

[experts.helper.skills.remote]
type = "mcpSseSkill"
endpoint = "https://mcp.example.com/sse"
"#;

    struct Fixture {
        dir: tempfile::TempDir,
        loaded: LoadedConfig,
    }

    fn fixture(script: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(script) = script {
            std::fs::write(dir.path().join("script.toml"), script).expect("script");
        }
        let loaded = load_str(&dir.path().join("perstack.toml"), CONFIG).expect("valid");
        Fixture { dir, loaded }
    }

    fn check(
        f: &Fixture,
        expert: &str,
        provider: ProviderName,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Result<Checked, Vec<String>> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Preflight {
            config: &f.loaded,
            expert_key: expert,
            provider,
            env: &env,
            extra_env: &extra,
            workspace: f.dir.path(),
        }
        .check()
        .map_err(|p| p.0.iter().map(|p| p.message.clone()).collect())
    }

    #[test]
    fn a_versioned_image_brings_its_own_mock_script() {
        // No script file next to the config: `run --image` has only what the image carries.
        let f = fixture(None);
        let env = BTreeMap::from([
            ("WEB_KEY".to_string(), "w".to_string()),
            ("NPM_KEY".to_string(), "n".to_string()),
        ]);
        let mut loaded = f.loaded.clone();
        loaded.config.sandbox.node_image = Some("node:local".into());
        let preflight = Preflight {
            config: &loaded,
            expert_key: "main",
            provider: ProviderName::Mock,
            env: &env,
            extra_env: &[],
            workspace: f.dir.path(),
        };
        assert!(preflight.check().is_err(), "the file's script is missing");
        let baked =
            MockScript::parse(Path::new("baked"), "[[turn]]\ntext = \"hi\"\n").expect("script");
        let checked = preflight
            .check_with_mock_script(Some(baked.clone()))
            .expect("the baked script is enough");
        assert_eq!(checked.mock_script, Some(baked));
        let problems = preflight
            .check_with_mock_script(None)
            .expect_err("an image built without a script");
        assert!(
            problems.0[0]
                .message
                .starts_with("provider `mock` needs a script, and "),
            "{problems}"
        );
    }

    #[test]
    fn every_problem_of_the_closure_is_reported_together() {
        let f = fixture(Some("[[turn]]\ntext = \"hi\"\n"));
        let problems =
            check(&f, "main", ProviderName::Anthropic, &[], &["EXTRA"]).expect_err("problems");
        assert_eq!(
            problems,
            [
                "ANTHROPIC_API_KEY is not set; provider `anthropic` needs it (export it or add it to .env)".to_string(),
                "--env EXTRA: EXTRA is not set (export it or add it to .env)".to_string(),
                "skill `web` of expert `main` needs WEB_KEY, which is not set (export it or add it to .env)".to_string(),
                "skill `npm` of expert `helper` needs NPM_KEY, which is not set (export it or add it to .env)".to_string(),
                format!("skill `npm` runs `npx`, and no base image is configured for it; set [sandbox] nodeImage or [sandbox.skills.\"npm\"] image (there is no registry to pull a default from){}", base_hint(SkillBase::Node)),
            ]
        );
        assert!(base_hint(SkillBase::Node).contains("npm install -g"));
    }

    fn problems_of(config: &str) -> Vec<Problem> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("script.toml"), "[[turn]]\ntext = \"hi\"\n")
            .expect("script");
        let text = format!(
            "[provider]\nproviderName = \"mock\"\nsetting = {{ script = \"script.toml\" }}\n{config}"
        );
        let loaded = load_str(&dir.path().join("perstack.toml"), &text).expect("valid");
        let env = BTreeMap::new();
        match (Preflight {
            config: &loaded,
            expert_key: "main",
            provider: ProviderName::Mock,
            env: &env,
            extra_env: &[],
            workspace: dir.path(),
        })
        .check()
        {
            Ok(_) => vec![],
            Err(problems) => problems.0,
        }
    }

    #[test]
    fn package_commands_that_cannot_be_installed_at_build_time_stop_the_run_before_it_starts() {
        let problems = problems_of(
            "[sandbox]\npythonImage = \"py:local\"\n\
             [sandbox.skills.pinned]\nimage = \"scratch\"\n\
             [experts.main]\ninstruction = \"x\"\n\
             [experts.main.skills.old]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\n\
             args = [\"--python\", \"3.9\", \"mcp-server-time\"]\n\
             [experts.main.skills.pinned]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\n\
             args = [\"mcp-server-time\"]\n\
             [experts.main.skills.fine]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\n\
             args = [\"mcp-server-time\"]\n",
        );
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(
            messages[0].starts_with("skill `old`: `uvx` option `--python` is not supported here"),
            "{}",
            messages[0]
        );
        assert!(
            messages[0].contains("[sandbox] pythonImage"),
            "{}",
            messages[0]
        );
        // The problem points at the skill's args.
        let location = problems[0].location.as_deref().expect("a location");
        assert!(location.contains("perstack.toml:"), "{location}");
        assert_eq!(
            messages[1],
            "skill `pinned` runs `uvx`, whose packages are installed when its image is built, but its base image is `scratch`, which has no python3; choose a base with one"
        );
    }

    #[test]
    fn missing_base_images_are_listed_once_each_with_who_needs_them_and_the_setting() {
        let text = "[sandbox]\npythonImage = \"py:local\"\nworkspaceImage = \"py:local\"\n\
                    [sandbox.skills.own]\nimage = \"own:1\"\n\
                    [experts.main]\ninstruction = \"x\"\ndelegates = [\"helper\"]\n\
                    [experts.main.skills.time]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\n\
                    args = [\"mcp-server-time\"]\n\
                    [experts.helper]\ninstruction = \"x\"\ndescription = \"h\"\n\
                    [experts.helper.skills.own]\ntype = \"mcpStdioSkill\"\ncommand = \"x\"\n\
                    args = [\"y\"]\n\
                    [experts.other]\ninstruction = \"x\"\n\
                    [experts.other.skills.far]\ntype = \"mcpStdioSkill\"\ncommand = \"npx\"\n\
                    args = [\"z\"]\n";
        let loaded = load_str(std::path::Path::new("/p/perstack.toml"), text).expect("valid");
        let uses = base_images(&loaded.config, "main");
        // The closure only (`other` is not reached), scratch left out.
        assert_eq!(
            uses,
            [
                BaseImageUse {
                    image: "py:local".into(),
                    users: vec!["base-skill".into(), "skill `time`".into()],
                    settings: vec![
                        "[sandbox] workspaceImage".into(),
                        "[sandbox] pythonImage".into()
                    ],
                },
                BaseImageUse {
                    image: "own:1".into(),
                    users: vec!["skill `own`".into()],
                    settings: vec!["[sandbox.skills.\"own\"] image".into()],
                },
            ]
        );
        let problems = missing_base_images(&uses, |image| image == "own:1");
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].message,
            format!(
                "base image `py:local` is not available locally (needed by base-skill, skill `time`); {MISSING_BASE_IMAGE_HINT}, or change [sandbox] workspaceImage / [sandbox] pythonImage in perstack.toml (or override it with --workspace-image, --node-image, --python-image or --skill-image)"
            )
        );
        assert!(MISSING_BASE_IMAGE_HINT.contains("make test-images"));
    }

    #[test]
    fn missing_variables_point_at_the_line_that_asks_for_them() {
        let f = fixture(Some("[[turn]]\ntext = \"hi\"\n"));
        let env: BTreeMap<String, String> = BTreeMap::new();
        let problems = Preflight {
            config: &f.loaded,
            expert_key: "main",
            provider: ProviderName::Mock,
            env: &env,
            extra_env: &[],
            workspace: f.dir.path(),
        }
        .check()
        .expect_err("problems");
        let web = problems
            .0
            .iter()
            .find(|p| p.message.contains("WEB_KEY"))
            .expect("WEB_KEY problem");
        let location = web.location.as_deref().expect("a location");
        assert!(location.ends_with("perstack.toml:14:16"), "{location}");
    }

    #[test]
    fn delegates_skills_block_the_run_even_when_every_variable_is_set() {
        let f = fixture(Some("[[turn]]\ntext = \"hi\"\n"));
        let checked = check(
            &f,
            "main",
            ProviderName::Mock,
            &[("WEB_KEY", "w"), ("NPM_KEY", "n"), ("EXTRA", "e")],
            &["EXTRA"],
        );
        // The helper's npx skill still blocks the closure (its SSE skill does not).
        let problems = checked.expect_err("npx");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("skill `npm` runs `npx`"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_ready_run_gets_exactly_its_runtime_env_the_script_and_the_workspace() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("script.toml"), "[[turn]]\ntext = \"hi\"\n")
            .expect("script");
        let text = "[provider]\nproviderName = \"mock\"\nsetting = { script = \"script.toml\" }\n\
                    [experts.solo]\ninstruction = \"x\"\n\
                    [experts.solo.skills.web]\ntype = \"mcpStdioSkill\"\ncommand = \"perstack-sandbox\"\n\
                    args = [\"fixture-mcp\"]\nrequiredEnv = [\"WEB_KEY\"]\n";
        let loaded = load_str(&dir.path().join("perstack.toml"), text).expect("valid");
        let env: BTreeMap<String, String> = [
            ("WEB_KEY", "w"),
            ("EXTRA", "e"),
            ("ANTHROPIC_API_KEY", "sk"),
            ("ANTHROPIC_BASE_URL", "https://proxy.example.com/v1"),
            ("UNRELATED", "u"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let extra = ["EXTRA".to_string()];
        let check = |provider| {
            Preflight {
                config: &loaded,
                expert_key: "solo",
                provider,
                env: &env,
                extra_env: &extra,
                workspace: dir.path(),
            }
            .check()
        };
        let mock = check(ProviderName::Mock).expect("ready");
        // No provider variable for mock; the skill's WEB_KEY is the skill's, not the runtime's.
        assert_eq!(mock.runtime_env, [("EXTRA".to_string(), "e".to_string())]);
        assert_eq!(mock.mock_script.map(|s| s.turns.len()), Some(1));
        assert_eq!(
            mock.workspace,
            std::fs::canonicalize(dir.path()).expect("canonical")
        );
        let anthropic = check(ProviderName::Anthropic).expect("ready");
        assert_eq!(
            anthropic.runtime_env,
            [
                ("ANTHROPIC_API_KEY".to_string(), "sk".to_string()),
                (
                    "ANTHROPIC_BASE_URL".to_string(),
                    "https://proxy.example.com/v1".to_string()
                ),
                ("EXTRA".to_string(), "e".to_string()),
            ]
        );
        assert!(anthropic.mock_script.is_none());
    }

    /// The problems of a run of `helper` (whose skills need nothing but NPM_KEY and a base
    /// image, so only provider problems differ between cases).
    fn provider_problems(provider: ProviderName, env: &[(&str, &str)]) -> Vec<String> {
        let f = fixture(Some("[[turn]]\ntext = \"hi\"\n"));
        let mut env = env.to_vec();
        env.push(("NPM_KEY", "n"));
        match check(&f, "helper", provider, &env, &[]) {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .into_iter()
                .filter(|p| p.contains("provider") || p.contains("AZURE"))
                .collect(),
        }
    }

    #[test]
    fn bedrock_and_vertex_from_the_command_line_are_refused() {
        for provider in [ProviderName::AmazonBedrock, ProviderName::GoogleVertex] {
            let problems = provider_problems(
                provider,
                &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")],
            );
            assert_eq!(
                problems,
                [format!(
                    "provider `{provider}` is not supported yet by perstack-sandbox; use anthropic, \
                     openai, google, deepseek, ollama or azure-openai"
                )]
            );
        }
    }

    #[test]
    fn azure_needs_a_resource_name_or_a_base_url() {
        assert_eq!(
            provider_problems(ProviderName::AzureOpenai, &[("AZURE_API_KEY", "k")]),
            [
                "AZURE_RESOURCE_NAME is not set; provider `azure-openai` needs the resource name \
              (or a base URL: AZURE_BASE_URL, or resourceName / baseUrl in [provider.setting])"
            ]
        );
        for var in ["AZURE_RESOURCE_NAME", "AZURE_BASE_URL"] {
            assert!(
                provider_problems(
                    ProviderName::AzureOpenai,
                    &[("AZURE_API_KEY", "k"), (var, "x")]
                )
                .is_empty()
            );
        }
    }

    #[test]
    fn each_provider_gets_its_key_and_optional_variables_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = load_str(
            &dir.path().join("perstack.toml"),
            "[experts.solo]\ninstruction = \"x\"\n",
        )
        .expect("valid");
        let env: BTreeMap<String, String> = [
            ("OPENAI_API_KEY", "o"),
            ("OPENAI_BASE_URL", "https://gw/v1"),
            ("OPENAI_ORGANIZATION", "org"),
            ("OPENAI_PROJECT", "proj"),
            ("ANTHROPIC_API_KEY", "a"),
            ("GOOGLE_GENERATIVE_AI_API_KEY", "g"),
            ("GOOGLE_GENERATIVE_AI_BASE_URL", "https://g/v1beta"),
            ("OLLAMA_BASE_URL", "http://ollama:11434/api"),
            ("AZURE_API_KEY", "z"),
            ("AZURE_RESOURCE_NAME", "res"),
            ("AZURE_API_VERSION", "v1"),
            ("DEEPSEEK_API_KEY", "d"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let names = |provider| -> Vec<String> {
            let checked = Preflight {
                config: &loaded,
                expert_key: "solo",
                provider,
                env: &env,
                extra_env: &[],
                workspace: dir.path(),
            }
            .check()
            .unwrap_or_else(|p| panic!("{p}"));
            let mut names: Vec<String> = checked.runtime_env.into_iter().map(|(k, _)| k).collect();
            names.sort();
            names
        };
        assert_eq!(
            names(ProviderName::Openai),
            [
                "OPENAI_API_KEY",
                "OPENAI_BASE_URL",
                "OPENAI_ORGANIZATION",
                "OPENAI_PROJECT"
            ]
        );
        assert_eq!(
            names(ProviderName::Google),
            [
                "GOOGLE_GENERATIVE_AI_API_KEY",
                "GOOGLE_GENERATIVE_AI_BASE_URL"
            ]
        );
        assert_eq!(names(ProviderName::Ollama), ["OLLAMA_BASE_URL"]);
        assert_eq!(
            names(ProviderName::AzureOpenai),
            ["AZURE_API_KEY", "AZURE_API_VERSION", "AZURE_RESOURCE_NAME"]
        );
        assert_eq!(names(ProviderName::Deepseek), ["DEEPSEEK_API_KEY"]);
    }

    #[test]
    fn unknown_experts_list_the_known_ones() {
        let f = fixture(Some("[[turn]]\ntext = \"hi\"\n"));
        let problems = check(&f, "mian", ProviderName::Mock, &[], &[]).expect_err("unknown");
        assert!(
            problems[0].starts_with("unknown expert `mian`; Experts in ")
                && problems[0].ends_with(": main, helper"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_bad_or_missing_mock_script_is_a_problem() {
        let f = fixture(None);
        let problems = check(&f, "mian", ProviderName::Mock, &[], &[]).expect_err("no script");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("cannot read mock script ")),
            "{problems:?}"
        );
        let f = fixture(Some("[[turn]]\nexpert = \"ghost\"\ntext = \"x\"\n"));
        let problems = check(&f, "mian", ProviderName::Mock, &[], &[]).expect_err("ghost");
        assert!(
            problems
                .iter()
                .any(|p| p
                    == "mock script names expert `ghost`, which perstack.toml does not define"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_workspace_path_with_dot_dot_or_a_newline_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("project");
        std::fs::create_dir(&inner).expect("mkdir");
        assert_eq!(
            check_workspace(&inner.join("..").join("project")),
            Err(format!(
                "workspace {}/../project contains `..`; give the folder's path without `..`",
                inner.display()
            ))
        );
        let newline = dir.path().join("a\nb");
        std::fs::create_dir(&newline).expect("mkdir");
        let refused = check_workspace(&newline).expect_err("newline");
        assert!(
            refused.contains("contains a control character"),
            "{refused}"
        );
        assert_eq!(
            check_workspace(&inner),
            Ok(std::fs::canonicalize(&inner).expect("canonical"))
        );
    }

    #[test]
    fn a_workspace_that_resolves_to_the_root_or_a_system_tree_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let to_root = dir.path().join("innocent");
        std::os::unix::fs::symlink("/", &to_root).expect("symlink");
        assert_eq!(
            check_workspace(&to_root),
            Err(format!(
                "workspace {} (it resolves to /) would give the workspace tools read-write access to files that are not the project's; choose a project folder (`--workspace ./my-project`)",
                to_root.display()
            ))
        );
        let to_etc = dir.path().join("config");
        std::os::unix::fs::symlink("/etc", &to_etc).expect("symlink");
        assert!(
            check_workspace(&to_etc)
                .expect_err("etc")
                .contains("the host's system files")
        );
        for refused in ["/", "/tmp", "/proc/self", "/var/run"] {
            assert!(check_workspace(Path::new(refused)).is_err(), "{refused}");
        }
        // A symlink to a real project folder is fine: the project is what gets mounted.
        let project = dir.path().join("project");
        std::fs::create_dir(&project).expect("mkdir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&project, &link).expect("symlink");
        assert_eq!(
            check_workspace(&link),
            Ok(std::fs::canonicalize(&project).expect("canonical"))
        );
    }

    #[test]
    fn the_workspace_must_be_a_folder() {
        let f = fixture(Some("[[turn]]\ntext = \"hi\"\n"));
        let file = f.dir.path().join("script.toml");
        let env = BTreeMap::new();
        let problems = Preflight {
            config: &f.loaded,
            expert_key: "mian",
            provider: ProviderName::Mock,
            env: &env,
            extra_env: &[],
            workspace: &file,
        }
        .check()
        .expect_err("not a folder");
        assert!(
            problems
                .0
                .iter()
                .any(|p| p.message.ends_with("script.toml is not a folder")),
            "{problems}"
        );
    }
}
