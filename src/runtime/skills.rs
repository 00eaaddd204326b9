//! Connecting an Expert's skills. Their `skillStarting` / `skillConnected` / `skillDisconnected`
//! events are told per run segment by the [`SkillRoster`]; this module tells it when each
//! connection is made or ends, and what `pick`/`omit` named that the skill does not offer.
//!
//! - `mcpStdioSkill`: one skill container each, reached over its unix socket. All of them connect
//!   in parallel before the run starts — except `lazyInit` ones (never `@perstack/base`), which
//!   connect in the background; the first tool listing waits for them ([`ToolSet::ready`]).
//! - `mcpSseSkill`: a remote server, reached from the runtime container over HTTP (streamable
//!   HTTP, else the older HTTP+SSE transport). Its `skillStarting` names the endpoint URL as
//!   `command` (there is no process to start) with no `args`, and its `skillConnected` has no
//!   `spawnDurationMs`.
//!
//! Tools join the set in the file's skill order (which decides routing), `lazyInit` skills' after
//! the rest.
//!
//! Each connected skill is watched ([`SkillEvents::watch`]): when a stdio skill's connection
//! ends without us closing it, its skill host is restarting the server (or says the skill is
//! down), so the runtime connects again on the same socket and puts the new session under the
//! skill's calls (`skill/link.rs`, docs/skills.md "Supervision").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::RuntimeError;
use super::skill_events::{Connected, SkillRoster};
use crate::agent::tools::{ToolSet, unmatched_filters};
use crate::config::{Expert, McpSseSkill, Skill};
use crate::contract::paths::CA_BUNDLE_PATH;
use crate::contract::spec::{RuntimeSpec, SkillEndpoint};
use crate::skill::client::{ConnectTimings, Connection, McpSkill, SkillConnectError};
use crate::skill::lazy::LazySkill;
use crate::skill::link::{Link, RECONNECT_WAIT};

/// How long the runtime waits for a skill container to open its socket, or for a remote skill
/// to complete its handshake.
const SKILL_CONNECT_WAIT: Duration = Duration::from_secs(60);

/// How long connecting again waits for the socket: the skill host keeps listening while it
/// restarts the server, so a socket that does not answer means the skill container has ended.
const REDIAL_WAIT: Duration = Duration::from_secs(2);

/// Why a remote skill whose connection ended is down for the rest of the run: nothing restarts
/// a remote server, and a call it may have read is not safe to send again.
pub(crate) const REMOTE_CLOSED: &str = "its connection to the remote server closed, and a remote \
     (mcpSseSkill) skill is not reconnected during a run: once the server answers again, continue \
     the job with --continue (docs/skills.md, \"Supervision\")";

/// Puts the MCP skills of `expert` on the roster, in file order, with what their
/// `skillStarting` reports: a stdio skill's command and args as configured, a remote skill's
/// endpoint URL and no args (there is no process to start).
pub(crate) fn register(roster: &SkillRoster, spec: &RuntimeSpec, expert: &Expert) {
    for skill in expert.skills.values() {
        match skill {
            Skill::McpStdio(stdio) => {
                if let Some(endpoint) = endpoint_of(spec, expert, &stdio.name) {
                    roster.add(
                        &expert.key,
                        &endpoint.skill,
                        &endpoint.command,
                        &endpoint.args,
                    );
                    if let Some(grant) = endpoint.workspace {
                        roster.grant_workspace(&expert.key, &endpoint.skill, grant);
                    }
                }
            }
            Skill::McpSse(sse) => roster.add(&expert.key, &sse.name, &sse.endpoint, &[]),
            Skill::Interactive(_) => {}
        }
    }
}

fn endpoint_of<'a>(
    spec: &'a RuntimeSpec,
    expert: &Expert,
    skill: &str,
) -> Option<&'a SkillEndpoint> {
    spec.skills
        .iter()
        .find(|e| e.expert == expert.key && e.skill == skill)
}

/// Connects every MCP skill of `expert` (put on `roster` by [`register`]), telling the roster
/// as each connects, and builds its tool set with `pick`/`omit` applied. `lazyInit` skills are
/// still connecting when this returns.
pub(crate) async fn connect_skills(
    spec: &RuntimeSpec,
    expert: &Expert,
    roster: &SkillRoster,
) -> Result<ToolSet, RuntimeError> {
    let events = SkillEvents {
        roster: roster.clone(),
        expert: expert.key.clone(),
    };
    let skill_error = |source| RuntimeError::Skill {
        expert: expert.key.clone(),
        source,
    };
    let remote = remote_skills(expert).map_err(skill_error)?;
    // Lazy skills first, so they get going while the others connect.
    let lazy = spawn_lazy(spec, expert, &events);
    let (local, remote) = futures::future::join(
        connect_local(spec, expert, &events),
        connect_remote(&remote, &events),
    )
    .await;
    let mut connected = Vec::new();
    for connection in local.into_iter().chain(remote) {
        connected.push(Arc::new(connection.map_err(skill_error)?));
    }
    let mut tools = tool_set(expert, &connected)?;
    for pending in lazy {
        tools.add_lazy(pending);
    }
    Ok(tools)
}

/// The remote (SSE) skills of `expert`, each with the one HTTP client (a cheap handle) they
/// share, built only when there are some.
fn remote_skills(
    expert: &Expert,
) -> Result<Vec<(&McpSseSkill, reqwest::Client)>, SkillConnectError> {
    let remote: Vec<&McpSseSkill> = expert
        .skills
        .values()
        .filter_map(|s| match s {
            Skill::McpSse(sse) => Some(sse),
            _ => None,
        })
        .collect();
    let Some(first) = remote.first() else {
        return Ok(vec![]);
    };
    let http = remote_http_client(first)?;
    Ok(remote.iter().map(|sse| (*sse, http.clone())).collect())
}

/// Connects the stdio skills of `expert` that are not lazy, on their sockets, all at once.
async fn connect_local(
    spec: &RuntimeSpec,
    expert: &Expert,
    events: &SkillEvents,
) -> Vec<Result<McpSkill, SkillConnectError>> {
    let stdio = expert.skills.values().filter_map(|skill| match skill {
        Skill::McpStdio(stdio) if !is_lazy(skill) => {
            Some((stdio, endpoint_of(spec, expert, &stdio.name)?))
        }
        _ => None,
    });
    futures::future::join_all(stdio.map(|(stdio, endpoint)| async move {
        let socket = Path::new(&endpoint.socket);
        let (skill, timings) =
            McpSkill::connect_unix(&endpoint.skill, socket, SKILL_CONNECT_WAIT).await?;
        // The server process is started by its container, before we connect.
        events.connected(
            &skill,
            timings,
            Some(0),
            &stdio.pick,
            &stdio.omit,
            Some(socket),
        );
        Ok(skill)
    }))
    .await
}

/// Connects the remote skills, all at once.
async fn connect_remote(
    remote: &[(&McpSseSkill, reqwest::Client)],
    events: &SkillEvents,
) -> Vec<Result<McpSkill, SkillConnectError>> {
    futures::future::join_all(remote.iter().map(|(sse, http)| async move {
        let (skill, timings, _transport) =
            McpSkill::connect_http(&sse.name, &sse.endpoint, http, SKILL_CONNECT_WAIT).await?;
        events.connected(&skill, timings, None, &sse.pick, &sse.omit, None);
        Ok(skill)
    }))
    .await
}

/// The tools of the `connected` skills, with `pick`/`omit` applied; skill order in the file
/// decides routing order (§5).
fn tool_set(expert: &Expert, connected: &[Arc<McpSkill>]) -> Result<ToolSet, RuntimeError> {
    let mut tools = ToolSet::new();
    for skill in expert.skills.values() {
        let (pick, omit) = match skill {
            Skill::McpStdio(s) if !is_lazy(skill) => (&s.pick, &s.omit),
            Skill::McpSse(s) => (&s.pick, &s.omit),
            _ => continue,
        };
        if let Some(client) = connected.iter().find(|c| c.name == skill.name()) {
            tools.add_mcp(client.clone(), pick, omit)?;
        }
    }
    Ok(tools)
}

/// Starts connecting the `lazyInit` skills of `expert`, each on its own task.
fn spawn_lazy(spec: &RuntimeSpec, expert: &Expert, events: &SkillEvents) -> Vec<LazySkill> {
    let mut lazy = Vec::new();
    for skill in expert.skills.values() {
        let Skill::McpStdio(stdio) = skill else {
            continue;
        };
        let Some(endpoint) = endpoint_of(spec, expert, &stdio.name).filter(|_| is_lazy(skill))
        else {
            continue;
        };
        let (events, name, socket, filters) = (
            events.clone(),
            endpoint.skill.clone(),
            PathBuf::from(&endpoint.socket),
            (stdio.pick.clone(), stdio.omit.clone()),
        );
        lazy.push(LazySkill::spawn(
            &stdio.name,
            &stdio.pick,
            &stdio.omit,
            async move {
                let (skill, timings) =
                    McpSkill::connect_unix(&name, &socket, SKILL_CONNECT_WAIT).await?;
                events.connected(
                    &skill,
                    timings,
                    Some(0),
                    &filters.0,
                    &filters.1,
                    Some(&socket),
                );
                Ok(skill)
            },
        ));
    }
    lazy
}

/// `lazyInit = true` on a stdio skill other than `@perstack/base`, which is never lazy (§5).
fn is_lazy(skill: &Skill) -> bool {
    matches!(skill, Skill::McpStdio(stdio) if stdio.lazy_init && !stdio.is_base())
}

/// The HTTP client for remote skills: it trusts the CA bundle baked into the runtime image.
fn remote_http_client(first: &McpSseSkill) -> Result<reqwest::Client, SkillConnectError> {
    let settings = crate::llm::HttpSettings {
        ca_bundle: std::fs::read(CA_BUNDLE_PATH).ok().filter(|b| !b.is_empty()),
        // Event streams stay open for the whole run; the handshake has its own deadline.
        timeout: None,
    };
    crate::llm::http_client(&settings).map_err(|e| SkillConnectError::Remote {
        skill: first.name.clone(),
        endpoint: first.endpoint.clone(),
        message: format!("cannot set up an HTTP client: {e}"),
    })
}

/// Tells the roster about one Expert's connections.
#[derive(Clone)]
struct SkillEvents {
    roster: SkillRoster,
    expert: String,
}

impl SkillEvents {
    /// `skill` has connected; it is watched from now on ([`SkillEvents::watch`]), and connected
    /// again on `socket` (a stdio skill's) when its server is restarted.
    fn connected(
        &self,
        skill: &McpSkill,
        timings: ConnectTimings,
        spawn_ms: Option<u64>,
        pick: &[String],
        omit: &[String],
        socket: Option<&Path>,
    ) {
        self.roster.connected(
            &self.expert,
            &skill.name,
            Connected {
                server_info: skill.server_info.clone(),
                timings,
                spawn_ms,
                warnings: filter_warnings(skill, pick, omit),
            },
        );
        let (events, link, name) = (self.clone(), skill.link(), skill.name.clone());
        let socket = socket.map(Path::to_path_buf);
        tokio::spawn(async move { events.watch(link, &name, socket.as_deref()).await });
    }

    /// Follows a skill's connections until it is finished: closed when the job ends, or gone for
    /// good. Each time a stdio skill's connection ends without us closing it, connects again on
    /// `socket` and tells the roster; a remote skill's end is final.
    async fn watch(&self, link: Arc<Link>, name: &str, socket: Option<&Path>) {
        while let Some(session) = link.current() {
            session.ended().await;
            drop(session);
            let Some(socket) = socket else {
                link.down(REMOTE_CLOSED.to_string());
                break;
            };
            if !link.reconnecting() {
                break;
            }
            self.roster.reconnecting(&self.expert, name);
            match reconnect(name, socket).await {
                Ok((connection, timings)) => {
                    let server_info = connection.server_info.clone();
                    if !link.reconnected(connection.session) {
                        break;
                    }
                    let connected = Connected {
                        server_info,
                        timings,
                        spawn_ms: Some(0),
                        warnings: vec![],
                    };
                    self.roster.connected(&self.expert, name, connected);
                }
                Err(reason) => link.down(reason),
            }
        }
        self.roster.ended(&self.expert, name);
    }
}

/// Connects again to a stdio skill whose connection ended: its skill host is starting the
/// server again, or answers with the reason the skill is down. A restarted server that dies
/// during the handshake is restarted again by the host, so that is tried again, until
/// [`RECONNECT_WAIT`].
async fn reconnect(name: &str, socket: &Path) -> Result<(Connection, ConnectTimings), String> {
    let deadline = Instant::now() + RECONNECT_WAIT;
    loop {
        match McpSkill::session_unix(name, socket, REDIAL_WAIT).await {
            Ok(connected) => return Ok(connected),
            Err(SkillConnectError::Refused {
                down: true,
                message,
                ..
            }) => return Err(message),
            Err(SkillConnectError::NotListening { .. }) => {
                return Err("its skill host no longer answers (its container has ended)".into());
            }
            Err(error) if Instant::now() >= deadline => return Err(error.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What `pick` and `omit` named that the skill does not offer. Perstack ignores such names
/// silently; a typo there hides a tool, or — in `pick` — every tool.
fn filter_warnings(skill: &McpSkill, pick: &[String], omit: &[String]) -> Vec<String> {
    let unmatched = unmatched_filters(&skill.tools, pick, omit);
    if unmatched.is_empty() {
        return vec![];
    }
    let offered: Vec<&str> = skill.tools.iter().map(|t| t.name.as_str()).collect();
    let offered = if offered.is_empty() {
        "none".to_string()
    } else {
        offered.join(", ")
    };
    let mut warnings: Vec<String> = unmatched
        .iter()
        .map(|(list, name)| {
            format!(
                "`{list}` names `{name}`, which skill `{}` does not offer (its tools: {offered})",
                skill.name
            )
        })
        .collect();
    if !pick.is_empty() && pick.iter().all(|p| unmatched.iter().any(|(_, n)| n == p)) {
        warnings.push(format!(
            "`pick` matches none of the tools of skill `{}`, so the Expert gets none of them",
            skill.name
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::super::{RuntimeArgs, run_inner};
    use super::*;
    use crate::agent::RunOutcome;
    use crate::config::{McpStdioSkill, ProviderName};
    use crate::contract::supervision::{SERVER_EXITED, SKILL_DOWN};
    use crate::event::{Event, EventSink};
    use crate::llm::mock::MockScript;
    use crate::skill::fixture::FixtureServer;
    use crate::skill::http_fixture::{Mode, serve};
    use crate::skill::server::Handler;
    use indexmap::IndexMap;
    use rmcp::ServiceExt;
    use serde_json::{Value, json};
    use tokio::net::UnixListener;

    fn stdio_skill(name: &str, lazy_init: bool, pick: &[&str]) -> Skill {
        Skill::McpStdio(McpStdioSkill {
            name: name.into(),
            description: None,
            rule: None,
            command: "perstack-sandbox".into(),
            package_name: None,
            args: vec!["fixture-mcp".into()],
            pick: pick.iter().map(|p| p.to_string()).collect(),
            omit: vec![],
            required_env: vec![],
            allowed_domains: vec![],
            lazy_init,
        })
    }

    /// A runtime spec for expert `main` with `skills`, the stdio ones listening under `dir`,
    /// and a mock script; and the runtime's arguments to run it.
    fn runtime(dir: &std::path::Path, skills: Vec<Skill>, script: &str) -> RuntimeArgs {
        let endpoints = skills
            .iter()
            .filter_map(|s| match s {
                Skill::McpStdio(stdio) => Some(SkillEndpoint {
                    expert: "main".into(),
                    skill: stdio.name.clone(),
                    socket: dir.join(&stdio.name).display().to_string(),
                    command: stdio.command.clone(),
                    args: stdio.argv(),
                    workspace: None,
                }),
                _ => None,
            })
            .collect();
        let expert = Expert {
            key: "main".into(),
            name: "main".into(),
            version: "1.0.0".into(),
            instruction: "Do it.".into(),
            description: None,
            min_runtime_version: None,
            delegates: vec![],
            tags: vec![],
            skills: skills
                .into_iter()
                .map(|s| (s.name().to_string(), s))
                .collect(),
        };
        let spec = RuntimeSpec {
            expert_key: "main".into(),
            experts: IndexMap::from([("main".to_string(), expert)]),
            provider_name: Some("mock".into()),
            provider_setting: Default::default(),
            skills: endpoints,
            mock_script: Some(
                MockScript::parse(std::path::Path::new("test.mock.toml"), script).expect("script"),
            ),
        };
        let path = dir.join("runtime.json");
        std::fs::write(&path, serde_json::to_vec(&spec).expect("spec")).expect("write spec");
        RuntimeArgs {
            spec: path,
            job_id: "j".into(),
            run_id: "r".into(),
            provider: Some(ProviderName::Mock),
            model: None,
            max_steps: Some(5),
            max_retries: Some(0),
            timeout_ms: None,
            reasoning_budget: None,
            checkpoint_stdin: false,
            interactive_tool_call_result: None,
            only_expert: None,
            mock_played: Vec::new(),
            list_tools: false,
            expert_key: "main".into(),
            query: "go".into(),
        }
    }

    /// Serves the fixture on every connection to `socket`.
    fn listen(socket: &std::path::Path) -> tokio::task::JoinHandle<()> {
        let listener = UnixListener::bind(socket).expect("bind");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(service) = Handler(FixtureServer).serve(stream).await {
                        let _ = service.waiting().await;
                    }
                });
            }
        })
    }

    fn json_of(event: &Event) -> Value {
        serde_json::from_str(&event.to_line()).expect("event JSON")
    }

    fn position(events: &[Value], kind: &str, skill: Option<&str>) -> usize {
        events
            .iter()
            .position(|e| {
                e["type"] == kind
                    && skill.is_none_or(|s| e["skillName"] == s || e["skillName"].is_null())
            })
            .unwrap_or_else(|| panic!("no {kind} for {skill:?} in {events:#?}"))
    }

    const ECHO_THEN_DONE: &str = r#"
[[turn]]
[[turn.toolCalls]]
name = "echo"
args = { text = "late but here" }

[[turn]]
text = "done"
"#;

    #[tokio::test]
    async fn a_lazy_skill_connects_after_the_run_starts_and_is_in_the_first_generation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = runtime(
            dir.path(),
            // Both are the fixture: each offers a different tool of it.
            vec![
                stdio_skill("eager", false, &["whoami"]),
                stdio_skill("late", true, &["echo"]),
            ],
            ECHO_THEN_DONE,
        );
        let _eager = listen(&dir.path().join("eager"));
        let (sink, mut rx) = EventSink::channel();
        let run = tokio::spawn(async move {
            run_inner(&args, &sink, &crate::agent::StopRequest::default()).await
        });

        // The lazy skill's socket only starts listening once the run has started: a run that
        // waited for it at start would never get there.
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            let event = json_of(&event);
            let started = event["type"] == "startRun";
            events.push(event);
            if started {
                break;
            }
        }
        let _late = listen(&dir.path().join("late"));
        let outcome = run.await.expect("joined").expect("runs");
        while let Some(event) = rx.recv().await {
            events.push(json_of(&event));
        }

        assert_eq!(
            outcome,
            RunOutcome::Completed {
                text: "done".into()
            }
        );
        let start_run = position(&events, "startRun", None);
        assert!(position(&events, "skillStarting", Some("late")) < start_run);
        assert!(position(&events, "skillConnected", Some("eager")) < start_run);
        let late_connected = position(&events, "skillConnected", Some("late"));
        assert!(start_run < late_connected, "{events:#?}");
        assert!(late_connected < position(&events, "startGeneration", None));
        // The first generation already had the lazy skill's tool, routed to it.
        let call = &events[position(&events, "callTools", None)];
        assert_eq!(call["stepNumber"], 1);
        assert_eq!(call["toolCalls"][0]["skillName"], "late");
        let results = &events[position(&events, "resolveToolResults", None)];
        assert_eq!(
            results["toolResults"][0]["result"][0]["text"],
            "late but here"
        );
        // Both are closed at the end of the run segment.
        let complete = position(&events, "completeRun", None);
        assert!(complete < position(&events, "skillDisconnected", Some("eager")));
        assert!(complete < position(&events, "skillDisconnected", Some("late")));
    }

    #[tokio::test]
    async fn a_lazy_skill_that_fails_to_connect_stops_the_run_with_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = runtime(
            dir.path(),
            vec![stdio_skill("late", true, &[])],
            ECHO_THEN_DONE,
        );
        // Something listens, but hangs up without speaking MCP.
        let listener = UnixListener::bind(dir.path().join("late")).expect("bind");
        let _rude = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let (sink, mut rx) = EventSink::channel();
        let outcome = run_inner(&args, &sink, &crate::agent::StopRequest::default())
            .await
            .expect("the run itself starts");
        drop(sink);
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(json_of(&event));
        }
        let RunOutcome::StoppedByError(error) = outcome else {
            panic!("expected a stop by error, got {outcome:?}");
        };
        assert_eq!(error.name, "SkillError");
        assert!(
            error
                .message
                .starts_with("skill `late`: MCP handshake failed"),
            "{}",
            error.message
        );
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "initializeRuntime",
                "skillStarting",
                "startRun",
                "stopRunByError",
                "skillDisconnected"
            ]
        );
    }

    #[tokio::test]
    async fn a_lazy_skill_clashing_with_another_stops_the_run_naming_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = runtime(
            dir.path(),
            vec![
                stdio_skill("eager", false, &[]),
                stdio_skill("late", true, &[]),
            ],
            ECHO_THEN_DONE,
        );
        let _eager = listen(&dir.path().join("eager"));
        let _late = listen(&dir.path().join("late"));
        let (sink, _rx) = EventSink::channel();
        let outcome = run_inner(&args, &sink, &crate::agent::StopRequest::default())
            .await
            .expect("the run itself starts");
        let RunOutcome::StoppedByError(error) = outcome else {
            panic!("expected a stop by error, got {outcome:?}");
        };
        assert_eq!(
            error.message,
            "tool `echo` is offered by both skill `eager` and skill `late`; hide one with `pick` or `omit` in perstack.toml"
        );
    }

    #[tokio::test]
    async fn a_remote_skill_is_connected_with_its_endpoint_and_pick_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = serve(FixtureServer, Mode::LegacySse).await;
        let remote = Skill::McpSse(McpSseSkill {
            name: "remote".into(),
            description: None,
            rule: None,
            endpoint: server.url.clone(),
            // `ehco` is a typo: warned about when the skill connects.
            pick: vec!["echo".into(), "fail".into(), "ehco".into()],
            omit: vec!["fail".into()],
            allowed_domains: vec![],
        });
        let script = ECHO_THEN_DONE.replace("late but here", "from afar");
        let (tools, roster, mut rx) = connect(dir.path(), vec![remote], &script).await;
        drop(roster);
        let names: Vec<String> = tools.specs(true).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["echo"]);
        assert_eq!(tools.skill_of("echo"), Some("remote"));
        let out = tools.call("echo", &json!({"text": "from afar"})).await;
        assert_eq!(out.parts[0].as_text(), Some("from afar"));
        tools.close().await;
        drop(tools);

        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(json_of(&event));
        }
        assert_eq!(events[0]["type"], "skillStarting");
        assert_eq!(events[0]["command"], server.url.as_str());
        assert_eq!(events[0]["args"], json!([]));
        assert_eq!(events[1]["type"], "skillConnected");
        assert_eq!(events[1]["serverInfo"]["name"], "perstack-sandbox-fixture");
        assert!(
            events[1].get("spawnDurationMs").is_none(),
            "{:#}",
            events[1]
        );
        assert!(events[1]["totalDurationMs"].is_u64());
        assert_eq!(events[2]["type"], "skillStderr");
        assert_eq!(
            events[2]["message"],
            format!(
                "{}`pick` names `ehco`, which skill `remote` does not offer (its tools: {})",
                crate::event::RUNTIME_WARNING_PREFIX,
                <FixtureServer as crate::skill::server::ToolServer>::TOOLS
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        assert_eq!(events[3]["type"], "skillDisconnected");
        assert_eq!(events[3]["skillName"], "remote");
        assert!(events.iter().all(|e| e["runId"] == "r"), "{events:#?}");
        assert_eq!(events.len(), 4);
    }

    #[tokio::test]
    async fn a_remote_skill_whose_server_went_away_is_down_saying_it_is_not_reconnected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = serve(FixtureServer, Mode::LegacySse).await;
        let remote = Skill::McpSse(McpSseSkill {
            name: "remote".into(),
            description: None,
            rule: None,
            endpoint: server.url.clone(),
            pick: vec![],
            omit: vec![],
            allowed_domains: vec![],
        });
        let (tools, _roster, mut rx) = connect(dir.path(), vec![remote], ECHO_THEN_DONE).await;
        drop(server);
        // The supervisor tells the segment the skill went away once it has marked it down.
        let gone = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = rx.recv().await {
                if json_of(&event)["type"] == "skillDisconnected" {
                    return true;
                }
            }
            false
        });
        assert!(gone.await.expect("noticed within 10 s"));
        let out = tools.call("echo", &json!({"text": "anyone?"})).await;
        let text = out.parts[0].as_text().unwrap_or_default().to_string();
        assert!(
            text.contains("skill `remote` is down: ")
                && text.contains("is not reconnected during a run"),
            "{text}"
        );
        tools.close().await;
    }

    #[tokio::test]
    async fn a_skill_whose_server_goes_away_is_reported_disconnected() {
        let dir = tempfile::tempdir().expect("tempdir");
        // One connection, served on this one task.
        let listener = UnixListener::bind(dir.path().join("flaky")).expect("bind");
        let server = tokio::spawn(async move {
            if let Ok((stream, _)) = listener.accept().await
                && let Ok(service) = Handler(FixtureServer).serve(stream).await
            {
                let _ = service.waiting().await;
            }
        });
        let (tools, roster, mut rx) = connect_one(dir.path(), "flaky").await;
        let mut types = Vec::new();
        while types.last().map(String::as_str) != Some("skillConnected") {
            let event = json_of(&rx.recv().await.expect("event"));
            types.push(event["type"].as_str().unwrap_or("").to_string());
        }
        // The server dies (its task, with the socket's server end, is gone).
        server.abort();
        let disconnected = json_of(&rx.recv().await.expect("skillDisconnected"));
        assert_eq!(disconnected["type"], "skillDisconnected");
        assert_eq!(disconnected["skillName"], "flaky");
        // A call now is an error result for the model, not a crash of the run.
        let out = tools.call("echo", &json!({"text": "anyone?"})).await;
        assert!(out.is_error);
        // The segment's end has nothing more to say about it.
        roster.end("main", "r");
        drop(tools);
        drop(roster);
        assert!(
            rx.recv().await.is_none(),
            "nothing more, and no second disconnect"
        );
    }

    /// Connects `skills`, those of the Expert `main` of a runtime under `dir` (run `r` of job
    /// `j`), as a run segment does at its start; with its roster's events.
    async fn connect(
        dir: &std::path::Path,
        skills: Vec<Skill>,
        script: &str,
    ) -> (
        ToolSet,
        SkillRoster,
        tokio::sync::mpsc::UnboundedReceiver<Event>,
    ) {
        let args = runtime(dir, skills, script);
        let spec: RuntimeSpec =
            serde_json::from_slice(&std::fs::read(&args.spec).expect("spec")).expect("spec");
        let (sink, rx) = EventSink::channel();
        let roster = SkillRoster::new(sink, "j");
        register(&roster, &spec, &spec.experts["main"]);
        roster.begin("main", "r");
        let tools = connect_skills(&spec, &spec.experts["main"], &roster)
            .await
            .expect("connects");
        (tools, roster, rx)
    }

    /// How the first connection of a [`dying_host`] ends after its answer for the dead server.
    #[derive(Clone, Copy, PartialEq)]
    enum HangUp {
        /// The hang-up reaches the runtime.
        Seen,
        /// The runtime never reads it, as between two gVisor sandboxes: the connection stays
        /// open and silent.
        Lost,
    }

    /// A skill host in miniature on `socket`: the first server answers the handshake, then
    /// "dies" on the first tool call — answered with `code` and `reason`, then a hang-up
    /// (`hang_up` says whether the runtime sees it). With [`SERVER_EXITED`] the next
    /// connections are served by the fixture (a restarted server); with [`SKILL_DOWN`] each
    /// next handshake is refused with the reason.
    fn dying_host(
        socket: &std::path::Path,
        code: i32,
        reason: &str,
        hang_up: HangUp,
    ) -> tokio::task::JoinHandle<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = UnixListener::bind(socket).expect("bind");
        let reason = reason.to_string();
        let answer = move |id: &Value| {
            format!(
                "{}\n",
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": reason}})
            )
        };
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let message: Value = serde_json::from_str(&line).expect("JSON-RPC");
                let Some(id) = message.get("id") else {
                    continue;
                };
                let reply = match message["method"].as_str() {
                    Some("initialize") => json!({"jsonrpc": "2.0", "id": id, "result": {
                        "protocolVersion": message["params"]["protocolVersion"],
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "first", "version": "1"}}}),
                    Some("tools/list") => json!({"jsonrpc": "2.0", "id": id, "result": {
                        "tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}}),
                    _ => {
                        let _ = write.write_all(answer(id).as_bytes()).await;
                        break;
                    }
                };
                let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
            }
            // Kept open until the task ends when the hang-up is lost.
            let _open = (hang_up == HangUp::Lost).then_some((lines, write));
            while let Ok((stream, _)) = listener.accept().await {
                if code == SKILL_DOWN {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    if let Ok(Some(line)) = lines.next_line().await {
                        let message: Value = serde_json::from_str(&line).expect("JSON-RPC");
                        let _ = write.write_all(answer(&message["id"]).as_bytes()).await;
                    }
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(service) = Handler(FixtureServer).serve(stream).await {
                        let _ = service.waiting().await;
                    }
                });
            }
        })
    }

    /// Connects `skill` of a one-skill Expert under `dir`, with its roster's events.
    async fn connect_one(
        dir: &std::path::Path,
        skill: &str,
    ) -> (
        ToolSet,
        SkillRoster,
        tokio::sync::mpsc::UnboundedReceiver<Event>,
    ) {
        connect(dir, vec![stdio_skill(skill, false, &[])], ECHO_THEN_DONE).await
    }

    /// Ends segment `r`, closes `tools`, and returns every event the roster sent.
    async fn events_after_closing(
        tools: ToolSet,
        roster: SkillRoster,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    ) -> Vec<Value> {
        roster.end("main", "r");
        tools.close().await;
        drop((tools, roster));
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(json_of(&event));
        }
        events
    }

    /// A server that dies on the first call, answered for by its host: the failed call names
    /// the cause, the next one — sent at once, before the runtime may even have read the
    /// hang-up — waits for the new connection and reaches the restarted server.
    async fn a_restarted_server_answers_the_next_call(hang_up: HangUp) {
        let dir = tempfile::tempdir().expect("tempdir");
        let reason =
            "the server exited with code 3; restarting it in 0.25 s (restart 1 of 5 this run)";
        let _host = dying_host(&dir.path().join("flaky"), SERVER_EXITED, reason, hang_up);
        let (tools, roster, rx) = connect_one(dir.path(), "flaky").await;

        let failed = tools.call("echo", &json!({"text": "first"})).await;
        assert!(failed.is_error);
        assert_eq!(
            failed.parts[0].as_text(),
            Some(format!("Error calling tool echo: {reason}").as_str())
        );
        // Far less than RECONNECT_WAIT, after which the call would fail: a failing test ends
        // sooner.
        let answered = tokio::time::timeout(
            Duration::from_secs(30),
            tools.call("echo", &json!({"text": "second"})),
        )
        .await
        .expect("the next call reaches the restarted server");
        assert!(!answered.is_error, "{answered:?}");
        assert_eq!(answered.parts[0].as_text(), Some("second"));

        let events = events_after_closing(tools, roster, rx).await;
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "skillStarting",
                "skillConnected",
                "skillDisconnected",
                "skillConnected",
                "skillDisconnected"
            ]
        );
        assert_eq!(events[1]["serverInfo"]["name"], "first");
        assert_eq!(events[3]["serverInfo"]["name"], "perstack-sandbox-fixture");
        assert!(events[3]["totalDurationMs"].is_u64());
    }

    #[tokio::test]
    async fn a_restarted_server_is_connected_again_and_answers_the_next_call() {
        a_restarted_server_answers_the_next_call(HangUp::Seen).await;
    }

    /// Between two gVisor sandboxes the host's hang-up can go unread (measured: 3 runs of 5),
    /// and the next call waited out [`RECONNECT_WAIT`]: the host's answer for the dead server
    /// is enough to connect again.
    #[tokio::test]
    async fn the_hosts_answer_for_a_dead_server_is_enough_to_connect_again() {
        a_restarted_server_answers_the_next_call(HangUp::Lost).await;
    }

    #[tokio::test]
    async fn a_skill_the_host_gave_up_on_stays_down_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reason = "its server exited with code 4 after 5 restarts, the most one run allows; the skill stays down";
        let _host = dying_host(&dir.path().join("doomed"), SKILL_DOWN, reason, HangUp::Seen);
        let (tools, roster, rx) = connect_one(dir.path(), "doomed").await;

        let failed = tools.call("echo", &json!({"text": "first"})).await;
        assert_eq!(
            failed.parts[0].as_text(),
            Some(format!("Error calling tool echo: {reason}").as_str())
        );
        for _ in 0..2 {
            let refused = tools.call("echo", &json!({"text": "again"})).await;
            assert!(refused.is_error);
            assert_eq!(
                refused.parts[0].as_text(),
                Some(format!("Error calling tool echo: skill `doomed` is down: {reason}").as_str())
            );
        }
        let events = events_after_closing(tools, roster, rx).await;
        let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types,
            ["skillStarting", "skillConnected", "skillDisconnected"]
        );
    }
}
