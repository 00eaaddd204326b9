//! The base images the run builds on, who needs each and which setting chose it; and, given
//! which of them the engine has, the problems for the missing ones (there is no registry to
//! pull from). Asking the engine is `engine/base_images.rs`'s part.

use super::Problem;
use crate::config::{Config, Skill};
use crate::sandbox::images::base::{SkillBase, builds_own_base, skill_base_image};

/// The base images the run's skill containers are built on, with who needs each and the
/// setting that chose it; `scratch` (built in) is left out.
pub(crate) fn base_images(config: &Config, expert_key: &str) -> Vec<BaseImageUse> {
    let mut uses: Vec<BaseImageUse> = Vec::new();
    for key in config.delegation_closure(expert_key) {
        let Some(expert) = config.experts.get(&key) else {
            continue;
        };
        for skill in expert.skills.values() {
            let Skill::McpStdio(stdio) = skill else {
                continue;
            };
            // Its base is built from its own Dockerfile, whose FROM the build itself checks.
            if builds_own_base(config, stdio) {
                continue;
            }
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
pub(crate) struct BaseImageUse {
    /// The image reference.
    pub image: String,
    /// `base-skill`, ``skill `x` ``.
    pub users: Vec<String>,
    /// The settings that name it.
    pub settings: Vec<String>,
}

/// What to do about a missing base image: there is no registry to pull it from.
pub(crate) const MISSING_BASE_IMAGE_HINT: &str = "there is no registry to pull it from: build or load it first (`make test-images` builds perstack-sandbox/bookworm:local, a Debian image with a shell and python3, and perstack-sandbox/bookworm-node:local, the same with node and npm, without a registry; or `docker import` a debootstrapped rootfs, or `docker load -i image.tar` saved on a machine that has it)";

/// The missing-image problems for `uses`, given which images the engine has (`present`).
pub(crate) fn missing_base_images(
    uses: &[BaseImageUse],
    present: impl Fn(&str) -> bool,
) -> Vec<Problem> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

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
}
