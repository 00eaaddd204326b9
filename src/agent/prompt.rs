//! The system prompt: fixed meta rules, the instruction, each skill's rule, the delegates
//! (PERSTACK-COMPAT.md §5, "System prompt").

use crate::config::Expert;
use crate::contract::paths::WORKSPACE_MOUNT;

/// Builds the system prompt for `expert` at time `now_iso`.
pub(crate) fn system_prompt(expert: &Expert, delegates: &[&Expert], now_iso: &str) -> String {
    let mut prompt = format!(
        "You are \"{name}\", an Expert.\n\
         \n\
         # Meta rules\n\
         - Work by calling tools. Keep calling tools until the task is done.\n\
         - A reply without any tool call ends your run, and its text becomes your final answer.\n\
         - When the task is done, call attemptCompletion, alone, with no other tool in the same reply.\n\
         - The current time is {now_iso}.\n\
         - The working directory of the file tools is {WORKSPACE_MOUNT}; use paths relative to it.\n\
         \n\
         # Instruction\n\
         {instruction}\n",
        name = expert.name,
        instruction = expert.instruction.trim_end(),
    );
    let rules: Vec<(&str, &str)> = expert
        .skills
        .values()
        .filter_map(|s| s.rule().map(|r| (s.name(), r)))
        .collect();
    if !rules.is_empty() {
        prompt.push_str("\n# Skill rules\n");
        for (name, rule) in rules {
            prompt.push_str(&format!("\n## {name}\n{}\n", rule.trim_end()));
        }
    }
    if !delegates.is_empty() {
        prompt.push_str("\n# Delegates\nYou can delegate to these Experts by calling them as tools with a `query`:\n");
        for delegate in delegates {
            let tool = delegate
                .name
                .rsplit('/')
                .next()
                .unwrap_or(delegate.name.as_str());
            match &delegate.description {
                Some(d) => prompt.push_str(&format!("- {tool}: {}\n", d.trim_end())),
                None => prompt.push_str(&format!("- {tool}\n")),
            }
        }
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{McpStdioSkill, Skill};
    use indexmap::IndexMap;

    fn expert(name: &str, description: Option<&str>, rule: Option<&str>) -> Expert {
        let mut skills = IndexMap::new();
        skills.insert(
            "web".to_string(),
            Skill::McpStdio(McpStdioSkill {
                name: "web".into(),
                description: None,
                rule: rule.map(str::to_string),
                command: "npx".into(),
                package_name: Some("web-mcp".into()),
                args: vec![],
                pick: vec![],
                omit: vec![],
                required_env: vec![],
                allowed_domains: vec![],
                lazy_init: false,
            }),
        );
        Expert {
            key: name.into(),
            name: name.into(),
            version: "1.0.0".into(),
            instruction: "Help the user.\n".into(),
            description: description.map(str::to_string),
            min_runtime_version: None,
            delegates: vec![],
            tags: vec![],
            skills,
        }
    }

    #[test]
    fn prompt_has_rules_and_delegates() {
        let main = expert("main", None, Some("Only search docs.rs."));
        let helper = expert("@team/helper", Some("Finds things."), None);
        insta::assert_snapshot!(system_prompt(&main, &[&helper], "2026-01-01T00:00:00Z"));
    }
}
