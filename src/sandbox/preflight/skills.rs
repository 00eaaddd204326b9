//! The stdio skills of every Expert in the closure: their `requiredEnv` is set, their package
//! command can be installed at build time, they have a base image that can run it, and the
//! files they name beside perstack.toml can be copied into it.
//! Interactive skills (answered through `-i`) and `mcpSseSkill`s (reached over HTTP; config
//! validation checked the URL) start nothing, so nothing is checked for them here.

use std::collections::BTreeMap;

use super::{Problem, location};
use crate::config::{LoadedConfig, McpStdioSkill, Skill, dotted_path};
use crate::sandbox::images::base::{SkillBase, builds_own_base, skill_base_image};
use crate::sandbox::packages::{self, Prepared};
use crate::sandbox::skill_files::{self, FileProblem, FilesBySkill};

/// One stdio skill of the closure, and where the file defines it.
struct StdioSkill<'a> {
    /// Its Expert.
    expert: &'a str,
    skill: &'a McpStdioSkill,
    /// `experts.<key>.skills.<name>`.
    path: String,
}

/// Every check of every stdio skill in `expert_key`'s closure, skill by skill. An unknown
/// Expert's closure is just its key, which has no skills.
pub(super) fn check_skills(
    loaded: &LoadedConfig,
    expert_key: &str,
    env: &BTreeMap<String, String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for key in loaded.config.delegation_closure(expert_key) {
        let Some(expert) = loaded.config.experts.get(&key) else {
            continue;
        };
        for skill in expert.skills.values() {
            let Skill::McpStdio(stdio) = skill else {
                continue;
            };
            let skill = StdioSkill {
                expert: &key,
                skill: stdio,
                path: dotted_path(&["experts", &key, "skills", &stdio.name]),
            };
            problems.extend(check_required_env(loaded, &skill, env));
            if let Some(problem) = check_package_or_args(loaded, &skill) {
                problems.push(problem);
                continue;
            }
            let prepared = match check_package_command(loaded, &skill) {
                Ok(prepared) => prepared,
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            };
            problems.extend(check_skill_base(loaded, &skill, prepared.as_ref()));
        }
    }
    problems
}

/// The files the closure's stdio skills name in the config's folder exist, stay inside it and
/// are not too big (`sandbox::skill_files`); gives them, read. Each problem points at the word
/// or the `files` entry that named the path.
pub(super) fn check_skill_files(
    loaded: &LoadedConfig,
    expert_key: &str,
) -> Result<FilesBySkill, Vec<Problem>> {
    let closure = loaded.config.delegation_closure(expert_key);
    skill_files::collect_all(loaded, &closure).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| file_problem(loaded, p))
            .collect()
    })
}

/// A problem of a skill's files as preflight reports it.
pub(crate) fn file_problem(loaded: &LoadedConfig, problem: FileProblem) -> Problem {
    Problem {
        location: location(loaded, &problem.at).or_else(|| {
            // `args` as a whole when the word's own place is unknown.
            let parent = problem.at.rsplit_once('.').map(|(p, _)| p)?;
            location(loaded, parent)
        }),
        message: problem.message,
    }
}

/// The skill says what to run: a `packageName` or non-empty `args`. Perstack loads a file
/// without either and fails when the skill starts (its own e2e `errors.toml` relies on that), so
/// the file loads here too and the run that needs the skill is refused before anything starts.
fn check_package_or_args(loaded: &LoadedConfig, at: &StdioSkill) -> Option<Problem> {
    let stdio = at.skill;
    (stdio.package_name.is_none() && stdio.args.is_empty()).then(|| Problem {
        location: location(loaded, &at.path),
        message: format!(
            "skill `{}` of expert `{}` has no packageName or args; set one of them \
             (packageName = \"<npm package>\" or args = [...])",
            stdio.name, at.expert
        ),
    })
}

/// Each variable of the skill's `requiredEnv` is set; a problem points at the entry that asks
/// for it.
fn check_required_env(
    loaded: &LoadedConfig,
    at: &StdioSkill,
    env: &BTreeMap<String, String>,
) -> Vec<Problem> {
    let stdio = at.skill;
    stdio
        .required_env
        .iter()
        .enumerate()
        .filter(|(_, var)| !env.contains_key(*var))
        .map(|(i, var)| Problem {
            location: location(loaded, &format!("{}.requiredEnv[{i}]", at.path))
                .or_else(|| location(loaded, &at.path)),
            message: format!(
                "skill `{}` of expert `{}` needs {var}, which is not set (export it or add it to .env)",
                stdio.name, at.expert
            ),
        })
        .collect()
}

/// A skill's command can be prepared: what `uvx`/`npx` would fetch is installable at build time
/// (`packages.rs`). Returns what the image will install and run; `None` for base-skill.
fn check_package_command(
    loaded: &LoadedConfig,
    at: &StdioSkill,
) -> Result<Option<Prepared>, Problem> {
    let stdio = at.skill;
    if stdio.is_base() {
        return Ok(None);
    }
    packages::prepare(stdio).map(Some).map_err(|error| Problem {
        location: location(loaded, &format!("{}.args", at.path))
            .or_else(|| location(loaded, &format!("{}.command", at.path))),
        message: format!("skill `{}`: {error}", stdio.name),
    })
}

/// A skill has a base image, and one that can install its packages: not `scratch` when its
/// command installs any (`prepared`).
fn check_skill_base(
    loaded: &LoadedConfig,
    at: &StdioSkill,
    prepared: Option<&Prepared>,
) -> Option<Problem> {
    let stdio = at.skill;
    if builds_own_base(&loaded.config, stdio) {
        return None;
    }
    let here = location(loaded, &format!("{}.command", at.path));
    let kind = SkillBase::of(&stdio.command);
    match skill_base_image(&loaded.config, stdio).as_deref() {
        Some("scratch") if prepared.is_some_and(|p| p.install.is_some()) => Some(Problem {
            location: here,
            message: format!(
                "skill `{}` runs `{}`, whose packages are installed when its image is built, but its base image is `scratch`, which has no {}; choose a base with one",
                stdio.name,
                stdio.command,
                match kind {
                    SkillBase::Node => "node and npm",
                    _ => "python3",
                },
            ),
        }),
        None if !stdio.is_base() => Some(Problem {
            location: here,
            message: format!(
                "skill `{}` runs `{}`, and no base image is configured for it; set {} or [sandbox.skills.\"{}\"] image (there is no registry to pull a default from){}",
                stdio.name,
                stdio.command,
                // Only our own binary has no setting, and it never lacks a base (scratch).
                kind.setting().unwrap_or("[sandbox] skillImage"),
                stdio.name,
                base_hint(kind),
            ),
        }),
        _ => None,
    }
}

/// What a base image for each kind of command must hold, and where to get one offline.
pub(super) fn base_hint(base: SkillBase) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn problems_of(config: &str, env: &[(&str, &str)]) -> Vec<Problem> {
        let loaded = load_str(std::path::Path::new("/p/perstack.toml"), config).expect("valid");
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check_skills(&loaded, "main", &env)
    }

    #[test]
    fn missing_variables_point_at_the_line_that_asks_for_them() {
        let config = "[experts.main]\ninstruction = \"x\"\n\
                      [experts.main.skills.web]\ntype = \"mcpStdioSkill\"\n\
                      command = \"perstack-sandbox\"\nargs = [\"fixture-mcp\"]\n\
                      requiredEnv = [\"SET\", \"WEB_KEY\"]\n";
        let problems = problems_of(config, &[("SET", "s")]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].message,
            "skill `web` of expert `main` needs WEB_KEY, which is not set (export it or add it to .env)"
        );
        let location = problems[0].location.as_deref().expect("a location");
        assert!(location.ends_with("perstack.toml:7:23"), "{location}");
        assert!(problems_of(config, &[("SET", "s"), ("WEB_KEY", "w")]).is_empty());
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
            &[],
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
    fn a_skill_without_a_base_image_names_the_setting_and_where_to_get_one() {
        let problems = problems_of(
            "[experts.main]\ninstruction = \"x\"\ndelegates = [\"helper\"]\n\
             [experts.main.skills.own]\ntype = \"mcpStdioSkill\"\ncommand = \"perstack-sandbox\"\n\
             args = [\"fixture-mcp\"]\n\
             [experts.helper]\ninstruction = \"x\"\ndescription = \"h\"\n\
             [experts.helper.skills.npm]\ntype = \"mcpStdioSkill\"\ncommand = \"npx\"\n\
             args = [\"-y\", \"some-mcp\"]\n\
             [experts.helper.skills.deno]\ntype = \"mcpStdioSkill\"\ncommand = \"deno\"\n\
             args = [\"run\", \"server.ts\"]\n",
            &[],
        );
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        // Our own binary runs on scratch; the delegate's skills have no base.
        assert_eq!(
            messages,
            [
                format!(
                    "skill `npm` runs `npx`, and no base image is configured for it; set [sandbox] nodeImage or [sandbox.skills.\"npm\"] image (there is no registry to pull a default from){}",
                    base_hint(SkillBase::Node)
                ),
                "skill `deno` runs `deno`, and no base image is configured for it; set [sandbox] skillImage or [sandbox.skills.\"deno\"] image (there is no registry to pull a default from)".to_string(),
            ]
        );
        assert!(base_hint(SkillBase::Node).contains("npm install -g"));
        assert!(problems.iter().all(|p| p.location.is_some()));
    }

    #[test]
    fn a_uv_skill_needs_a_python_base_which_installs_uv() {
        let problems = problems_of(
            "[experts.main]\ninstruction = \"x\"\n\
             [experts.main.skills.proj]\ntype = \"mcpStdioSkill\"\ncommand = \"uv\"\n\
             args = [\"run\", \"--directory\", \"/srv/x\", \"server.py\"]\n\
             [experts.main.skills.bare]\ntype = \"mcpStdioSkill\"\ncommand = \"uv\"\n\
             args = [\"run\", \"server.py\"]\n\
             [sandbox.skills.bare]\nimage = \"scratch\"\n",
            &[],
        );
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                format!(
                    "skill `proj` runs `uv`, and no base image is configured for it; set [sandbox] pythonImage or [sandbox.skills.\"proj\"] image (there is no registry to pull a default from){}",
                    base_hint(SkillBase::Python)
                )
                .as_str(),
                "skill `bare` runs `uv`, whose packages are installed when its image is built, but its base image is `scratch`, which has no python3; choose a base with one",
            ]
        );
    }
}

#[cfg(test)]
mod package_or_args_tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;

    #[test]
    fn a_skill_with_neither_package_nor_args_loads_but_its_run_is_refused() {
        // Perstack's own e2e errors.toml: the file loads, the skill fails when it would start.
        let text = "[experts.a]\ninstruction = \"x\"\n[experts.a.skills.broken]\ntype = \"mcpStdioSkill\"\ncommand = \"nonexistent-command\"\nargs = []\n[experts.b]\ninstruction = \"y\"\n";
        let loaded = load_str(Path::new("/p/perstack.toml"), text).expect("loads");
        let problems: Vec<String> = check_skills(&loaded, "a", &BTreeMap::new())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "/p/perstack.toml:3:1: skill `broken` of expert `a` has no packageName or args; set \
              one of them (packageName = \"<npm package>\" or args = [...])"
            ]
        );
        assert!(check_skills(&loaded, "b", &BTreeMap::new()).is_empty());
    }
}
