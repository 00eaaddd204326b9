//! Which base image a stdio skill's image starts from: its own Dockerfile's image
//! (`[sandbox.skills.<name>] dockerfile`), else `[sandbox.skills.<name>] image`, else
//! the `[sandbox]` setting for its kind of command (Node, Python, anything else), else none;
//! our own binary needs none (`scratch`).

use crate::config::{Config, McpStdioSkill, SandboxConfig};

/// Which base a skill's command needs, by the program's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkillBase {
    /// `perstack-sandbox`: our own binary is in every image already and is static, so `scratch`.
    Own,
    /// `npx`, `node`: `[sandbox] nodeImage`.
    Node,
    /// `uvx`, `uv`, `python`, `python3`: `[sandbox] pythonImage` (`uv` is pip-installed).
    Python,
    /// Anything else: `[sandbox] skillImage`.
    Other,
}

impl SkillBase {
    /// Classifies a command (a path's last segment counts).
    pub(crate) fn of(command: &str) -> SkillBase {
        match command.rsplit('/').next().unwrap_or(command) {
            "perstack-sandbox" => SkillBase::Own,
            "npx" | "node" => SkillBase::Node,
            "uvx" | "uv" | "python" | "python3" => SkillBase::Python,
            _ => SkillBase::Other,
        }
    }

    /// The `[sandbox]` setting that chooses this base (`None` for our own binary).
    pub(crate) fn setting(self) -> Option<&'static str> {
        match self {
            SkillBase::Own => None,
            SkillBase::Node => Some("[sandbox] nodeImage"),
            SkillBase::Python => Some("[sandbox] pythonImage"),
            SkillBase::Other => Some("[sandbox] skillImage"),
        }
    }

    fn image(self, sandbox: &SandboxConfig) -> Option<String> {
        match self {
            SkillBase::Own => Some("scratch".to_string()),
            SkillBase::Node => sandbox.node_image.clone(),
            SkillBase::Python => sandbox.python_image.clone(),
            SkillBase::Other => sandbox.skill_image.clone(),
        }
    }
}

/// True when the skill's base is built from its own Dockerfile (`[sandbox.skills.<name>]
/// dockerfile`, `user_recipe.rs`) rather than chosen by a setting.
pub(crate) fn builds_own_base(config: &Config, skill: &McpStdioSkill) -> bool {
    config
        .sandbox
        .skills
        .get(&skill.name)
        .is_some_and(|s| s.dockerfile.is_some())
}

/// The base image for a stdio skill: `[sandbox.skills.<name>] image`, else by command.
pub(crate) fn skill_base_image(config: &Config, skill: &McpStdioSkill) -> Option<String> {
    let sandbox = &config.sandbox;
    sandbox
        .skills
        .get(&skill.name)
        .and_then(|s| s.image.clone())
        .or_else(|| SkillBase::of(&skill.command).image(sandbox))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Skill, load_str};

    #[test]
    fn a_skill_gets_its_own_image_else_the_one_for_its_kind_of_command() {
        assert_eq!(SkillBase::of("/usr/bin/npx"), SkillBase::Node);
        assert_eq!(SkillBase::of("python3"), SkillBase::Python);
        assert_eq!(SkillBase::of("perstack-sandbox"), SkillBase::Own);
        assert_eq!(SkillBase::of("deno"), SkillBase::Other);

        let text = "[sandbox]\npythonImage = \"py:1\"\n[sandbox.skills.pinned]\nimage = \"own:1\"\n\
                    [experts.e]\ninstruction = \"x\"\n\
                    [experts.e.skills.pinned]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\nargs = [\"a\"]\n\
                    [experts.e.skills.time]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\nargs = [\"b\"]\n\
                    [experts.e.skills.web]\ntype = \"mcpStdioSkill\"\ncommand = \"npx\"\nargs = [\"c\"]\n\
                    [experts.e.skills.own]\ntype = \"mcpStdioSkill\"\ncommand = \"perstack-sandbox\"\nargs = [\"fixture-mcp\"]\n";
        let config = load_str(std::path::Path::new("/p/perstack.toml"), text)
            .expect("valid")
            .config;
        let image = |name: &str| {
            let Some(Skill::McpStdio(stdio)) = config.experts["e"].skills.get(name) else {
                panic!("no stdio skill {name}");
            };
            skill_base_image(&config, stdio)
        };
        assert_eq!(image("pinned").as_deref(), Some("own:1"));
        assert_eq!(image("time").as_deref(), Some("py:1"));
        assert_eq!(image("web"), None, "no nodeImage configured");
        assert_eq!(image("own").as_deref(), Some("scratch"));
    }
}
