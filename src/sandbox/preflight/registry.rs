//! Only perstack-sandbox itself, on the host, talks to the Perstack Registry: it resolves the
//! published Experts before anything starts. No container may reach it — no skill's
//! `allowedDomains` and no `mcpSseSkill` endpoint may name its host — and no skill receives
//! `PERSTACK_API_KEY`, the token that would let it publish, tag or withdraw Experts as the user.

use std::collections::BTreeMap;

use super::{Problem, location};
use crate::config::{LoadedConfig, Skill, dotted_path};
use crate::proxy::rules::DomainRule;
use crate::registry::client::{API_KEY_VAR, base_url};

/// The problems of every skill in `expert_key`'s closure that would reach the Registry.
pub(super) fn check_registry_reach(
    loaded: &LoadedConfig,
    expert_key: &str,
    env: &BTreeMap<String, String>,
) -> Vec<Problem> {
    // A base URL that cannot be used was refused when the Experts were resolved, if any was;
    // Perstack's default host is still the one to keep containers away from.
    let base = base_url(loaded.config.perstack_api_base_url.as_deref(), env)
        .unwrap_or_else(|_| crate::registry::client::DEFAULT_BASE_URL.to_string());
    let Some((host, port)) = url::Url::parse(&base)
        .ok()
        .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)))
    else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for key in loaded.config.delegation_closure(expert_key) {
        let Some(expert) = loaded.config.experts.get(&key) else {
            continue;
        };
        for skill in expert.skills.values() {
            let path = dotted_path(&["experts", &key, "skills", skill.name()]);
            let mut problem = |what: String| {
                problems.push(Problem {
                    location: location(loaded, &path),
                    message: format!(
                        "skill `{}` of `{key}` {what}; only perstack-sandbox itself talks to the \
                         Perstack Registry, never a container",
                        skill.name()
                    ),
                });
            };
            let (domains, required_env) = match skill {
                Skill::McpStdio(s) => (&s.allowed_domains, s.required_env.as_slice()),
                Skill::McpSse(s) => {
                    let endpoint = url::Url::parse(&s.endpoint).ok();
                    if endpoint.as_ref().and_then(|u| u.host_str()) == Some(host.as_str()) {
                        problem(format!("has its endpoint on the Registry's host {host}"));
                    }
                    (&s.allowed_domains, [].as_slice())
                }
                Skill::Interactive(_) => continue,
            };
            for domain in domains {
                if DomainRule::parse(domain).is_ok_and(|rule| rule.allows(&host, port)) {
                    problem(format!(
                        "may reach {host}, the Registry, through allowedDomains \"{domain}\""
                    ));
                }
            }
            if required_env.iter().any(|v| v == API_KEY_VAR) {
                problem(format!(
                    "asks for {API_KEY_VAR} in requiredEnv, the Registry's token"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str;

    fn problems(text: &str, env: &[(&str, &str)]) -> Vec<String> {
        let loaded = load_str(Path::new("/p/perstack.toml"), text).expect("valid");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check_registry_reach(&loaded, "a", &env)
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn no_skill_may_reach_the_registry_or_hold_its_token() {
        let text = r#"
[experts.a]
instruction = "x"
delegates = ["b"]
[experts.a.skills.web]
type = "mcpStdioSkill"
command = "uvx"
packageName = "web"
allowedDomains = ["*.perstack.ai", "example.com"]
[experts.b]
instruction = "x"
[experts.b.skills.sse]
type = "mcpSseSkill"
endpoint = "https://api.perstack.ai/mcp"
[experts.b.skills.publisher]
type = "mcpStdioSkill"
command = "npx"
packageName = "p"
requiredEnv = ["PERSTACK_API_KEY"]
"#;
        let found = problems(text, &[]);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0]
                .starts_with("/p/perstack.toml:5:1: skill `web` of `a` may reach api.perstack.ai"),
            "{}",
            found[0]
        );
        assert!(
            found[1].contains("endpoint on the Registry's host"),
            "{}",
            found[1]
        );
        assert!(found[2].contains("PERSTACK_API_KEY"), "{}", found[2]);
        // The Registry is wherever the base URL says: another host is fine then.
        let elsewhere = problems(
            text,
            &[("PERSTACK_API_BASE_URL", "https://registry.example")],
        );
        assert_eq!(elsewhere.len(), 1, "only the token remains: {elsewhere:#?}");
        let fine = "[experts.a]\ninstruction = \"x\"\n[experts.a.skills.w]\ntype = \"mcpStdioSkill\"\ncommand = \"uvx\"\npackageName = \"w\"\nallowedDomains = [\"example.com\"]\n";
        assert!(problems(fine, &[]).is_empty());
    }
}
