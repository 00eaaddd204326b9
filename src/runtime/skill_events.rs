//! The skill events of run segments: `skillStarting`, `skillConnected` and `skillDisconnected`
//! under the `runId` of each segment that uses the skill (PERSTACK-COMPAT.md §3, docs/skills.md).
//!
//! Perstack starts an Expert's skills when a run segment begins and closes them when it ends, so
//! its events say whose skill connected: the segment's `runId` names the Expert. Our skill
//! containers and their connections live for the whole job (a container serves one connection;
//! starting it again per segment would cost seconds and lose the server's state), yet the events
//! are told per segment the same way:
//!
//! - when a segment begins (after its `initializeRuntime`), each MCP skill of its Expert gets a
//!   `skillStarting` and — once connected — a `skillConnected` under the segment's `runId`;
//! - the first report of a connection carries its durations (and the warnings found when it was
//!   made, as `skillStderr` lines); a later segment reusing it gets a `skillConnected` without
//!   durations, since nothing was connected for it;
//! - when a segment ends, each skill it held gets a `skillDisconnected` under its `runId`; a
//!   server that goes away mid-run gets one under every segment holding it then, and a segment
//!   beginning after that gets only the `skillDisconnected`;
//! - a stdio skill whose server the skill host restarted is connected again: the segments
//!   holding it get a `skillDisconnected` when the connection ends and a `skillConnected` (with
//!   the new connection's durations for the first told) when the new one is made; a segment
//!   ending in between gets nothing more, one beginning gets its `skillStarting` and waits.
//!
//! Several segments can hold a skill at once: concurrent delegates of the same Expert.

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::WorkspaceGrant;
use crate::event::{Event, EventSink, RUNTIME_WARNING_PREFIX, RuntimePayload, ServerInfo};
use crate::skill::client::ConnectTimings;

/// What a skill's first `skillConnected` reports about the connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connected {
    /// What the server says it is.
    pub server_info: Option<ServerInfo>,
    /// How long connecting took.
    pub timings: ConnectTimings,
    /// `Some(0)` for a skill container (it started the server before we connected); `None` for
    /// a remote skill, which has no process to spawn.
    pub spawn_ms: Option<u64>,
    /// Problems found when connecting (a `pick` or `omit` naming a tool the skill lacks), told
    /// as `skillStderr` lines after the first `skillConnected`.
    pub warnings: Vec<String>,
}

enum State {
    /// Not connected yet (connecting in the background, or never will).
    Connecting,
    /// Connected; `first` is taken by the first segment told.
    Connected {
        server_info: Option<ServerInfo>,
        first: Option<Connected>,
    },
    /// The connection has ended.
    Ended,
}

struct Skill {
    expert: String,
    name: String,
    command: String,
    args: Vec<String>,
    /// The workspace grant `skillStarting` reports.
    workspace: Option<WorkspaceGrant>,
    state: State,
    /// The segments holding it now.
    holders: Vec<Holder>,
}

/// A segment holding a skill.
struct Holder {
    run_id: String,
    /// It was told the skill is starting or connected, and not yet that it disconnected.
    open: bool,
}

/// The MCP skills of every Expert of a job and the segments holding them; emits their events.
/// Cheap to clone: clones share the roster.
#[derive(Clone)]
pub(crate) struct SkillRoster {
    sink: EventSink,
    job_id: String,
    skills: Arc<Mutex<Vec<Skill>>>,
}

impl SkillRoster {
    /// An empty roster emitting into `sink`.
    pub(crate) fn new(sink: EventSink, job_id: &str) -> SkillRoster {
        SkillRoster {
            sink,
            job_id: job_id.to_string(),
            skills: Arc::default(),
        }
    }

    /// Adds a skill of `expert`; `command` and `args` are what its `skillStarting` reports.
    /// Skills are reported in the order they are added.
    pub(crate) fn add(&self, expert: &str, skill: &str, command: &str, args: &[String]) {
        self.with(|skills| {
            skills.push(Skill {
                expert: expert.to_string(),
                name: skill.to_string(),
                command: command.to_string(),
                args: args.to_vec(),
                workspace: None,
                state: State::Connecting,
                holders: vec![],
            });
        });
    }

    /// Records that `skill` of `expert` mounts the workspace, for its `skillStarting`.
    pub(crate) fn grant_workspace(&self, expert: &str, skill: &str, grant: WorkspaceGrant) {
        self.with(|skills| {
            for known in skills
                .iter_mut()
                .filter(|s| s.expert == expert && s.name == skill)
            {
                known.workspace = Some(grant);
            }
        });
    }

    /// Segment `run_id` of `expert` begins.
    pub(crate) fn begin(&self, expert: &str, run_id: &str) {
        self.with(|skills| {
            for skill in skills.iter_mut().filter(|s| s.expert == expert) {
                if matches!(skill.state, State::Ended) {
                    self.emit(run_id, disconnected(skill));
                    continue;
                }
                skill.holders.push(Holder {
                    run_id: run_id.to_string(),
                    open: true,
                });
                self.emit(
                    run_id,
                    RuntimePayload::SkillStarting {
                        skill_name: skill.name.clone(),
                        command: skill.command.clone(),
                        args: skill.args.clone(),
                        workspace: skill.workspace.map(|g| g.as_str().to_string()),
                    },
                );
                if matches!(skill.state, State::Connected { .. }) {
                    self.tell_connected(skill, run_id);
                }
            }
        });
    }

    /// Segment `run_id` of `expert` ended.
    pub(crate) fn end(&self, expert: &str, run_id: &str) {
        self.with(|skills| {
            for skill in skills.iter_mut().filter(|s| s.expert == expert) {
                if let Some(at) = skill.holders.iter().position(|h| h.run_id == run_id)
                    && skill.holders.remove(at).open
                {
                    self.emit(run_id, disconnected(skill));
                }
            }
        });
    }

    /// `skill` of `expert` has connected.
    pub(crate) fn connected(&self, expert: &str, skill: &str, connected: Connected) {
        self.with(|skills| {
            let Some(skill) = find(skills, expert, skill) else {
                return;
            };
            skill.state = State::Connected {
                server_info: connected.server_info.clone(),
                first: Some(connected),
            };
            let run_ids: Vec<String> = skill.holders.iter().map(|h| h.run_id.clone()).collect();
            for run_id in run_ids {
                self.tell_connected(skill, &run_id);
            }
            for holder in &mut skill.holders {
                holder.open = true;
            }
        });
    }

    /// The connection of `skill` of `expert` has ended and is being made again (its server was
    /// restarted): the segments holding it are told it disconnected, and keep holding it.
    pub(crate) fn reconnecting(&self, expert: &str, skill: &str) {
        self.with(|skills| {
            let Some(skill) = find(skills, expert, skill) else {
                return;
            };
            skill.state = State::Connecting;
            let payload = disconnected(skill);
            for holder in skill.holders.iter_mut().filter(|h| h.open) {
                holder.open = false;
                self.emit(&holder.run_id, payload.clone());
            }
        });
    }

    /// The connection of `skill` of `expert` has ended: closed, or the server went away.
    pub(crate) fn ended(&self, expert: &str, skill: &str) {
        self.with(|skills| {
            let Some(skill) = find(skills, expert, skill) else {
                return;
            };
            skill.state = State::Ended;
            for holder in std::mem::take(&mut skill.holders) {
                if holder.open {
                    self.emit(&holder.run_id, disconnected(skill));
                }
            }
        });
    }

    /// `skillConnected` for `run_id`: the first one told of a connection has its durations and
    /// is followed by its warnings.
    fn tell_connected(&self, skill: &mut Skill, run_id: &str) {
        let State::Connected { server_info, first } = &mut skill.state else {
            return;
        };
        let (payload, warnings) = match first.take() {
            Some(first) => {
                let t = first.timings;
                let payload = RuntimePayload::SkillConnected {
                    skill_name: skill.name.clone(),
                    server_info: first.server_info,
                    spawn_duration_ms: first.spawn_ms,
                    handshake_duration_ms: Some(t.handshake_ms),
                    tool_discovery_duration_ms: Some(t.discovery_ms),
                    connect_duration_ms: Some(t.connect_ms + t.handshake_ms),
                    total_duration_ms: Some(t.total_ms),
                };
                (payload, first.warnings)
            }
            None => {
                let payload = RuntimePayload::SkillConnected {
                    skill_name: skill.name.clone(),
                    server_info: server_info.clone(),
                    spawn_duration_ms: None,
                    handshake_duration_ms: None,
                    tool_discovery_duration_ms: None,
                    connect_duration_ms: None,
                    total_duration_ms: None,
                };
                (payload, vec![])
            }
        };
        self.emit(run_id, payload);
        for warning in warnings {
            self.emit(
                run_id,
                RuntimePayload::SkillStderr {
                    skill_name: skill.name.clone(),
                    message: format!("{RUNTIME_WARNING_PREFIX}{warning}"),
                },
            );
        }
    }

    fn emit(&self, run_id: &str, payload: RuntimePayload) {
        self.sink
            .emit(Event::runtime(&self.job_id, run_id, payload));
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<Skill>) -> T) -> T {
        // A panic while holding the lock leaves the list as consistent as any emit left it.
        let mut skills = self.skills.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut skills)
    }
}

impl crate::agent::SegmentSkills for SkillRoster {
    fn begin(&self, expert_key: &str, run_id: &str) {
        SkillRoster::begin(self, expert_key, run_id);
    }

    fn end(&self, expert_key: &str, run_id: &str) {
        SkillRoster::end(self, expert_key, run_id);
    }
}

fn find<'a>(skills: &'a mut [Skill], expert: &str, name: &str) -> Option<&'a mut Skill> {
    skills
        .iter_mut()
        .find(|s| s.expert == expert && s.name == name)
}

fn disconnected(skill: &Skill) -> RuntimePayload {
    RuntimePayload::SkillDisconnected {
        skill_name: skill.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The events sent so far, one `run type skill` line each (`type+durations` when the event
    /// carries its durations).
    fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> String {
        let mut out = String::new();
        while let Ok(event) = rx.try_recv() {
            let line: Value = serde_json::from_str(&event.to_line()).expect("json");
            let durations = if line.get("totalDurationMs").is_some() {
                "+durations"
            } else {
                ""
            };
            out.push_str(&format!(
                "{} {}{durations} {}\n",
                line["runId"].as_str().unwrap_or(""),
                line["type"].as_str().unwrap_or(""),
                line["skillName"].as_str().unwrap_or(""),
            ));
        }
        out
    }

    #[tokio::test]
    async fn each_segment_reports_its_experts_skills_under_its_own_run_id() {
        let (sink, mut rx) = EventSink::channel();
        let roster = SkillRoster::new(sink, "j");
        roster.add("lead", "@perstack/base", "perstack-sandbox", &[]);
        roster.add("writer", "@perstack/base", "perstack-sandbox", &[]);
        roster.add("writer", "web", "npx", &["-y".into(), "web".into()]);

        // The lead's first segment begins before anything connected.
        roster.begin("lead", "r-lead");
        roster.connected("lead", "@perstack/base", Connected::default());
        // The writer's skills connect at job start, before any segment of it.
        roster.connected("writer", "@perstack/base", Connected::default());
        roster.connected(
            "writer",
            "web",
            Connected {
                warnings: vec!["`pick` names `nope`".into()],
                ..Connected::default()
            },
        );
        assert_eq!(
            drain(&mut rx),
            "r-lead skillStarting @perstack/base\n\
             r-lead skillConnected+durations @perstack/base\n"
        );
        roster.end("lead", "r-lead");
        roster.begin("writer", "r-writer");
        roster.end("writer", "r-writer");
        // The lead resumes in a new segment: its connection is reused, without durations.
        roster.begin("lead", "r-lead-2");
        assert_eq!(
            drain(&mut rx),
            "r-lead skillDisconnected @perstack/base\n\
             r-writer skillStarting @perstack/base\n\
             r-writer skillConnected+durations @perstack/base\n\
             r-writer skillStarting web\n\
             r-writer skillConnected+durations web\n\
             r-writer skillStderr web\n\
             r-writer skillDisconnected @perstack/base\n\
             r-writer skillDisconnected web\n\
             r-lead-2 skillStarting @perstack/base\n\
             r-lead-2 skillConnected @perstack/base\n"
        );
    }

    #[tokio::test]
    async fn a_server_gone_mid_run_is_disconnected_for_every_segment_holding_it_once() {
        let (sink, mut rx) = EventSink::channel();
        let roster = SkillRoster::new(sink, "j");
        roster.add("helper", "web", "npx", &[]);
        roster.connected("helper", "web", Connected::default());
        // Two concurrent delegates of the same Expert.
        roster.begin("helper", "r1");
        roster.begin("helper", "r2");
        drain(&mut rx);
        roster.ended("helper", "web");
        roster.end("helper", "r1");
        roster.end("helper", "r2");
        roster.begin("helper", "r3");
        assert_eq!(
            drain(&mut rx),
            "r1 skillDisconnected web\n\
             r2 skillDisconnected web\n\
             r3 skillDisconnected web\n"
        );
    }

    #[tokio::test]
    async fn a_warning_is_told_once_with_the_first_report() {
        let (sink, mut rx) = EventSink::channel();
        let roster = SkillRoster::new(sink, "j");
        roster.add("main", "web", "npx", &[]);
        roster.begin("main", "r1");
        roster.connected(
            "main",
            "web",
            Connected {
                warnings: vec!["`omit` names `gone`".into()],
                ..Connected::default()
            },
        );
        roster.end("main", "r1");
        roster.begin("main", "r2");
        let warnings: Vec<String> = {
            let mut out = vec![];
            while let Ok(event) = rx.try_recv() {
                if let crate::event::EventBody::Runtime(RuntimePayload::SkillStderr {
                    message,
                    ..
                }) = event.body
                {
                    out.push(message);
                }
            }
            out
        };
        assert_eq!(
            warnings,
            [format!("{RUNTIME_WARNING_PREFIX}`omit` names `gone`")]
        );
    }

    #[tokio::test]
    async fn a_restarted_server_is_disconnected_then_connected_again_for_its_holders() {
        let (sink, mut rx) = EventSink::channel();
        let roster = SkillRoster::new(sink, "j");
        roster.add("main", "fixture", "perstack-sandbox", &[]);
        roster.begin("main", "r1");
        roster.connected("main", "fixture", Connected::default());
        roster.reconnecting("main", "fixture");
        // A segment beginning meanwhile is told the skill is starting, and waits.
        roster.begin("main", "r2");
        roster.connected("main", "fixture", Connected::default());
        // Restarted again, and this time it stays down: nobody is told twice.
        roster.reconnecting("main", "fixture");
        roster.end("main", "r1");
        roster.ended("main", "fixture");
        roster.end("main", "r2");
        assert_eq!(
            drain(&mut rx),
            "r1 skillStarting fixture\n\
             r1 skillConnected+durations fixture\n\
             r1 skillDisconnected fixture\n\
             r2 skillStarting fixture\n\
             r1 skillConnected+durations fixture\n\
             r2 skillConnected fixture\n\
             r1 skillDisconnected fixture\n\
             r2 skillDisconnected fixture\n"
        );
    }
}
