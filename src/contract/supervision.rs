//! What the skill host and the runtime agree on when a skill's server goes away
//! (docs/skills.md, "Supervision").
//!
//! The skill host answers the requests a dead server left unanswered with a JSON-RPC error of
//! code [`SERVER_EXITED`] (a new server is on its way) or [`SKILL_DOWN`] (none is), then hangs
//! up; the runtime connects again — as soon as it reads such an answer, since the hang-up itself
//! can go unread between two gVisor sandboxes. The codes are the host's alone: a server's own
//! error answer carrying one is relayed as an internal error. While a skill is down, the skill
//! host answers every handshake with [`SKILL_DOWN`] and the reason, which the runtime keeps for
//! the rest of the run.

/// The error code of a request the server did not answer because it exited; the skill host is
/// restarting it. The message names the cause (`exited with code 3`, `killed: out of memory
/// (limit 512m)`).
pub(crate) const SERVER_EXITED: i32 = -32090;

/// The error code of a request or handshake the skill will not answer this run: its server could
/// not start, or exited again after the last restart the run allows. The message says why.
pub(crate) const SKILL_DOWN: i32 = -32091;

/// How the skill host's own lines on the skill container's stderr begin (they become
/// `skillStderr` events beside the server's lines): its server's exits, restarts, the skill
/// going down, and hints.
pub(crate) const HOST_LINE_PREFIX: &str = "skill-host: ";
