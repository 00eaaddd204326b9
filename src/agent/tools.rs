//! The flat tool namespace the model sees, and routing each call to what owns it: an MCP skill,
//! an interactive skill (the user answers) or a delegate Expert (a child run answers).

use std::sync::Arc;

use serde_json::Value;

use crate::llm::ToolSpec;
use crate::skill::client::{McpSkill, SkillConnectError};
use crate::skill::lazy::LazySkill;
use crate::skill::result::{ToolOutput, map_call_result};

/// The `skillName` of a call to a tool the Expert lacks (and of its error result): no skill
/// offers it (docs/skills.md, "Calls to a tool the Expert lacks"). Perstack's schema wants a
/// non-empty name there; the parentheses keep it apart from the names skills are given.
pub(crate) const NO_SKILL: &str = "(none)";

/// Two skills offer a tool of the same name; the model could not tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tool `{tool}` is offered by both skill `{first}` and skill `{second}`; hide one with `pick` or `omit` in perstack.toml"
)]
pub(crate) struct DuplicateTool {
    /// The tool name.
    pub tool: String,
    /// The skill that offered it first.
    pub first: String,
    /// The skill that offered it again.
    pub second: String,
}

/// A skill connecting in the background (`lazyInit`) could not be added at the first listing.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LazySkillError {
    /// It failed to connect.
    #[error(transparent)]
    Connect(std::sync::Arc<SkillConnectError>),
    /// One of its tools clashes with another skill's.
    #[error(transparent)]
    Duplicate(DuplicateTool),
}

/// What answers calls to a tool.
#[derive(Clone)]
pub(crate) enum ToolKind {
    /// An MCP skill's tool, run by its server.
    Mcp(Arc<McpSkill>),
    /// A tool of an `interactiveSkill`: the run stops and the user answers it.
    Interactive,
    /// A delegate Expert, by key: a child run answers it.
    Delegate(String),
}

struct Entry {
    skill_name: String,
    spec: ToolSpec,
    kind: ToolKind,
}

/// Every tool of an Expert's skills, by name.
#[derive(Default)]
pub(crate) struct ToolSet {
    entries: Vec<Entry>,
    /// `lazyInit` skills, still connecting.
    lazy: Vec<LazySkill>,
    /// Their tools, once [`ToolSet::ready`] has seen them connect; after `entries`.
    late: tokio::sync::OnceCell<Vec<Entry>>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.all()
                    .map(|e| format!("{}/{}", e.skill_name, e.spec.name))
                    .chain(
                        self.lazy
                            .iter()
                            .map(|l| format!("{}/… (connecting)", l.name)),
                    ),
            )
            .finish()
    }
}

impl ToolSet {
    /// An empty set.
    pub(crate) fn new() -> ToolSet {
        ToolSet::default()
    }

    /// Adds a skill's tools, filtered by `pick` (a whitelist when non-empty; unknown names are
    /// ignored, as in Perstack) and `omit`.
    pub(crate) fn add_mcp(
        &mut self,
        skill: Arc<McpSkill>,
        pick: &[String],
        omit: &[String],
    ) -> Result<(), DuplicateTool> {
        add_filtered(&mut self.entries, &[], skill, pick, omit)
    }

    /// Adds a skill that is still connecting (`lazyInit`). Its tools join the set — after the
    /// others, `pick`/`omit` applied — when [`ToolSet::ready`] has seen it connect.
    pub(crate) fn add_lazy(&mut self, skill: LazySkill) {
        self.lazy.push(skill);
    }

    /// Waits for the `lazyInit` skills and adds their tools. Call it before listing tools for a
    /// generation; after the first success it returns at once.
    pub(crate) async fn ready(&self) -> Result<(), LazySkillError> {
        if self.lazy.is_empty() {
            return Ok(());
        }
        self.late
            .get_or_try_init(|| async {
                let mut late = Vec::new();
                for pending in &self.lazy {
                    let skill = pending.connected().await.map_err(LazySkillError::Connect)?;
                    add_filtered(
                        &mut late,
                        &self.entries,
                        skill,
                        &pending.pick,
                        &pending.omit,
                    )
                    .map_err(LazySkillError::Duplicate)?;
                }
                Ok(late)
            })
            .await
            .map(|_| ())
    }

    /// Closes every skill's connection (the end of a run segment) and waits until each has
    /// ended. Skills still connecting are abandoned when the set is dropped.
    pub(crate) async fn close(&self) {
        let mut skills: Vec<Arc<McpSkill>> = Vec::new();
        let connected = self.all().filter_map(|e| match &e.kind {
            ToolKind::Mcp(skill) => Some(skill.clone()),
            _ => None,
        });
        for skill in connected.chain(self.lazy.iter().filter_map(LazySkill::peek)) {
            if !skills.iter().any(|s| Arc::ptr_eq(s, &skill)) {
                skills.push(skill);
            }
        }
        futures::future::join_all(skills.iter().map(|skill| {
            skill.close();
            skill.ended()
        }))
        .await;
    }

    /// Every tool that can be called now: the connected skills', then the lazy ones' once ready.
    fn all(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .chain(self.late.get().into_iter().flatten())
    }

    /// Adds the tools of an `interactiveSkill`.
    pub(crate) fn add_interactive(
        &mut self,
        skill: &crate::config::InteractiveSkill,
    ) -> Result<(), DuplicateTool> {
        for (name, tool) in &skill.tools {
            let spec = ToolSpec {
                name: name.clone(),
                description: tool.description.clone().unwrap_or_default(),
                input_schema: tool.input_json_schema.clone(),
            };
            self.push(&skill.name, spec, ToolKind::Interactive)?;
        }
        Ok(())
    }

    /// Adds a delegate: a tool named after the last `/` segment of its name, described by its
    /// description, taking `{query}` (§5 "Delegation"). Calls carry the delegate's name as
    /// their skill name.
    pub(crate) fn add_delegate(
        &mut self,
        delegate: &crate::config::Expert,
    ) -> Result<(), DuplicateTool> {
        let spec = ToolSpec {
            name: delegate_tool_name(&delegate.name).to_string(),
            description: delegate.description.clone().unwrap_or_default(),
            input_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to ask the delegate."}
                },
                "required": ["query"],
            }),
        };
        self.push(
            &delegate.name,
            spec,
            ToolKind::Delegate(delegate.key.clone()),
        )
    }

    fn push(
        &mut self,
        skill_name: &str,
        spec: ToolSpec,
        kind: ToolKind,
    ) -> Result<(), DuplicateTool> {
        if let Some(existing) = self.all().find(|e| e.spec.name == spec.name) {
            return Err(DuplicateTool {
                tool: spec.name,
                first: existing.skill_name.clone(),
                second: skill_name.to_string(),
            });
        }
        self.entries.push(Entry {
            skill_name: skill_name.to_string(),
            spec,
            kind,
        });
        Ok(())
    }

    /// The tools to offer the model, in skill order; interactive tools only when `interactive`
    /// (delegated runs get none, §5).
    pub(crate) fn specs(&self, interactive: bool) -> Vec<ToolSpec> {
        self.all()
            .filter(|e| interactive || !matches!(e.kind, ToolKind::Interactive))
            .map(|e| e.spec.clone())
            .collect()
    }

    /// The MCP skills' tools, in skill order, each with its skill's name (`install` locks them).
    pub(crate) fn mcp_tools(&self) -> Vec<(&str, &ToolSpec)> {
        self.all()
            .filter(|e| matches!(e.kind, ToolKind::Mcp(_)))
            .map(|e| (e.skill_name.as_str(), &e.spec))
            .collect()
    }

    /// What answers `tool`; `None` for a tool nobody offers.
    pub(crate) fn kind_of(&self, tool: &str) -> Option<&ToolKind> {
        self.all().find(|e| e.spec.name == tool).map(|e| &e.kind)
    }

    /// The skill that owns `tool`.
    pub(crate) fn skill_of(&self, tool: &str) -> Option<&str> {
        self.all()
            .find(|e| e.spec.name == tool)
            .map(|e| e.skill_name.as_str())
    }

    /// Runs one call. Unknown tools, MCP errors and dead skills all come back as error output,
    /// so the model can react and the run goes on.
    pub(crate) async fn call(&self, tool: &str, args: &Value) -> ToolOutput {
        match self.kind_of(tool) {
            Some(ToolKind::Mcp(skill)) => match skill.call(tool, args).await {
                Ok(result) => map_call_result(tool, args, &result),
                Err(failure) => ToolOutput::error(failure.0),
            },
            // The loop answers these itself; reaching here is a routing bug, reported to the
            // model rather than crashing the run.
            Some(ToolKind::Interactive | ToolKind::Delegate(_)) => ToolOutput::error(format!(
                "Error calling tool {tool}: it is answered by the user or a delegate, not run"
            )),
            None => {
                let known: Vec<&str> = self.all().map(|e| e.spec.name.as_str()).collect();
                ToolOutput::error(format!(
                    "Error calling tool {tool}: no such tool (available: {})",
                    known.join(", ")
                ))
            }
        }
    }
}

/// The names in a skill's `pick` and `omit` that none of its `tools` has, each with its list
/// (`"pick"` or `"omit"`), in list order.
pub(crate) fn unmatched_filters<'a>(
    tools: &[ToolSpec],
    pick: &'a [String],
    omit: &'a [String],
) -> Vec<(&'static str, &'a str)> {
    let offered = |name: &str| tools.iter().any(|t| t.name == name);
    let pick = pick.iter().map(|name| ("pick", name.as_str()));
    let omit = omit.iter().map(|name| ("omit", name.as_str()));
    pick.chain(omit)
        .filter(|(_, name)| !offered(name))
        .collect()
}

/// The tool name of a delegate: the last `/` segment of its name (`@acme/writer` → `writer`).
pub(crate) fn delegate_tool_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Appends `skill`'s tools to `entries`, filtered by `pick` (a whitelist when non-empty; unknown
/// names are ignored) and `omit`, refusing a name already in `entries` or `before`.
fn add_filtered(
    entries: &mut Vec<Entry>,
    before: &[Entry],
    skill: Arc<McpSkill>,
    pick: &[String],
    omit: &[String],
) -> Result<(), DuplicateTool> {
    for spec in &skill.tools {
        if (!pick.is_empty() && !pick.contains(&spec.name)) || omit.contains(&spec.name) {
            continue;
        }
        if let Some(existing) = before
            .iter()
            .chain(entries.iter())
            .find(|e| e.spec.name == spec.name)
        {
            return Err(DuplicateTool {
                tool: spec.name.clone(),
                first: existing.skill_name.clone(),
                second: skill.name.clone(),
            });
        }
        entries.push(Entry {
            skill_name: skill.name.clone(),
            spec: spec.clone(),
            kind: ToolKind::Mcp(skill.clone()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skill::base::BaseSkill;
    use crate::skill::fixture::FixtureServer;
    use crate::skill::server::ToolServer;

    /// A real MCP server on one end of an in-process pipe, our client on the other.
    async fn connect<T: ToolServer>(name: &str, server: T) -> Arc<McpSkill> {
        crate::skill::server::testing::skill(name, server).await
    }

    fn names(set: &ToolSet) -> Vec<String> {
        set.specs(true).into_iter().map(|s| s.name).collect()
    }

    #[tokio::test]
    async fn pick_whitelists_and_omit_hides() {
        let fixture = connect("fixture", FixtureServer).await;
        let mut picked = ToolSet::new();
        picked
            .add_mcp(
                fixture.clone(),
                &["echo".into(), "whoami".into(), "think".into()],
                &[],
            )
            .expect("no duplicates");
        // Unknown picks (Perstack's e2e picks a nonexistent `think`) are ignored.
        assert_eq!(names(&picked), ["echo", "whoami"]);

        let mut omitted = ToolSet::new();
        omitted
            .add_mcp(fixture, &[], &["crash".into(), "sleep".into()])
            .expect("no duplicates");
        let all = names(&omitted);
        assert!(all.contains(&"echo".to_string()) && all.contains(&"get_env".to_string()));
        assert!(!all.contains(&"crash".to_string()) && !all.contains(&"sleep".to_string()));
    }

    #[tokio::test]
    async fn pick_and_omit_names_the_skill_lacks_are_found() {
        let fixture = connect("fixture", FixtureServer).await;
        let pick = ["echo".to_string(), "think".to_string()];
        let omit = ["crash".to_string(), "crahs".to_string()];
        assert_eq!(
            unmatched_filters(&fixture.tools, &pick, &omit),
            [("pick", "think"), ("omit", "crahs")]
        );
        assert!(unmatched_filters(&fixture.tools, &[], &[]).is_empty());
    }

    #[tokio::test]
    async fn calls_route_to_their_skill_and_unknown_tools_are_errors() {
        let workspace = tempfile::tempdir().expect("tempdir");
        let base = connect(
            "@perstack/base",
            BaseSkill::new(workspace.path()).expect("workspace"),
        )
        .await;
        let fixture = connect("fixture", FixtureServer).await;
        let mut set = ToolSet::new();
        set.add_mcp(base, &[], &[]).expect("base");
        set.add_mcp(fixture, &[], &[]).expect("fixture");
        assert_eq!(set.skill_of("writeTextFile"), Some("@perstack/base"));
        assert_eq!(set.skill_of("echo"), Some("fixture"));

        let out = set.call("echo", &serde_json::json!({"text": "ping"})).await;
        assert_eq!(out.parts[0].as_text(), Some("ping"));
        assert!(!out.is_error);

        let out = set.call("fail", &serde_json::json!({})).await;
        assert!(out.is_error);
        assert!(
            out.parts[0]
                .as_text()
                .is_some_and(|t| t.starts_with("Error calling tool fail: "))
        );

        let out = set.call("nope", &serde_json::json!({})).await;
        assert!(out.is_error);
    }

    #[tokio::test]
    async fn the_same_tool_name_from_two_skills_is_refused() {
        let mut set = ToolSet::new();
        set.add_mcp(connect("one", FixtureServer).await, &[], &[])
            .expect("first");
        let err = set
            .add_mcp(connect("two", FixtureServer).await, &[], &[])
            .expect_err("duplicate");
        assert_eq!(err.first, "one");
        assert_eq!(err.second, "two");
        // …unless one side hides it.
        let mut set = ToolSet::new();
        set.add_mcp(connect("one", FixtureServer).await, &["echo".into()], &[])
            .expect("first");
        set.add_mcp(connect("two", FixtureServer).await, &[], &["echo".into()])
            .expect("disjoint");
    }
}
