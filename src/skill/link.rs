//! A skill's MCP session as its calls see it (docs/skills.md, "Supervision").
//!
//! A remote skill has one session. A stdio skill's is made again each time its skill host
//! restarts the server: the runtime's supervisor (`runtime/skills.rs`) sees the session end,
//! marks the link reconnecting, connects again and puts the new session in — or marks the skill
//! down with the skill host's reason. A call waits while the link reconnects.
//!
//! A call that fails because its session closed under it (not with an answer) was never read
//! by a server: the skill host answers every request it passed on, with an error when the
//! server died. So on a supervised link such a call is sent once more, on the next session.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::ClientConfig;
use rmcp::service::{Peer, RunningService, RunningServiceCancellationToken};
use tokio::sync::watch;

/// How long a call waits for a skill that is reconnecting: the skill host's backoffs add up to
/// under 8 s, and a server may take a while to start again.
pub(crate) const RECONNECT_WAIT: Duration = Duration::from_secs(120);

/// One MCP connection: requests go out through its peer; a task owns the rmcp service.
pub(crate) struct Session {
    /// Sends requests.
    pub(crate) peer: Peer<RoleClient>,
    /// Cancels the service's task (taken by the first close).
    cancel: Mutex<Option<RunningServiceCancellationToken>>,
    /// Becomes true when the connection is over: it has ended, for whatever reason, or the
    /// session was retired ([`Session::retire`]).
    over: Arc<watch::Sender<bool>>,
}

impl Session {
    /// Runs `service` on a task of its own.
    pub(crate) fn start(service: RunningService<RoleClient, ClientConfig>) -> Arc<Session> {
        let peer = service.peer().clone();
        let cancel = Mutex::new(Some(service.cancellation_token()));
        let over = Arc::new(watch::Sender::new(false));
        let ended = over.clone();
        tokio::spawn(async move {
            let _ = service.waiting().await;
            ended.send_replace(true);
        });
        Arc::new(Session { peer, cancel, over })
    }

    /// The connection is over.
    pub(crate) fn has_ended(&self) -> bool {
        *self.over.borrow()
    }

    /// Resolves once the connection is over: closed by us, the other side went away, or
    /// retired.
    pub(crate) fn ended(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut over = self.over.subscribe();
        async move {
            let _ = over.wait_for(|over| *over).await;
        }
    }

    /// Retires the session: it is over for new calls and for its supervisor, which connects
    /// again, from now on rather than when its end is read — the other side said it hangs up,
    /// or a request could not go out on it, and a socket between two gVisor sandboxes can fail
    /// to deliver the hang-up. Calls still waiting on it keep it open to read the answers
    /// already sent; it closes when the last of them lets go.
    pub(crate) fn retire(&self) {
        self.over.send_replace(true);
    }

    /// Ends the connection.
    pub(crate) fn close(&self) {
        let token = self
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(token) = token {
            token.cancel();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

#[derive(Clone)]
enum State {
    /// Calls go through this session.
    Up(Arc<Session>),
    /// The session ended; a new one is being made.
    Reconnecting,
    /// No session will come: the reason.
    Down(String),
    /// Closed by us, with the session it had (which may still be ending).
    Closed(Option<Arc<Session>>),
}

/// Why a call cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The skill is down for the rest of the run.
    Down(String),
    /// We closed it.
    Closed,
    /// It did not reconnect in [`RECONNECT_WAIT`].
    StillReconnecting,
}

/// The session calls use now. Shared by a skill's calls and its supervisor.
pub(crate) struct Link {
    state: watch::Sender<State>,
    /// A supervisor makes the session again when it ends.
    supervised: bool,
}

impl Link {
    /// A link up on `session`; `supervised` when something will reconnect it.
    pub(crate) fn new(session: Arc<Session>, supervised: bool) -> Arc<Link> {
        Arc::new(Link {
            state: watch::Sender::new(State::Up(session)),
            supervised,
        })
    }

    /// The session to send a call on, waiting while the link reconnects.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, Unavailable> {
        let mut rx = self.state.subscribe();
        let settled = |s: &State| match s {
            State::Reconnecting => false,
            // Ended but not yet noticed by the supervisor: the next state is coming.
            State::Up(session) => !(self.supervised && session.has_ended()),
            State::Down(_) | State::Closed(_) => true,
        };
        let state = match tokio::time::timeout(RECONNECT_WAIT, rx.wait_for(settled)).await {
            Ok(Ok(state)) => state.clone(),
            Ok(Err(_)) => return Err(Unavailable::Closed),
            Err(_) => return Err(Unavailable::StillReconnecting),
        };
        match state {
            State::Up(session) => Ok(session),
            State::Down(reason) => Err(Unavailable::Down(reason)),
            State::Closed(_) | State::Reconnecting => Err(Unavailable::Closed),
        }
    }

    /// Whether a call that lost its session should be sent again on the next one.
    pub(crate) fn is_supervised(&self) -> bool {
        self.supervised
    }

    /// The session now, if the link is up.
    pub(crate) fn current(&self) -> Option<Arc<Session>> {
        match &*self.state.borrow() {
            State::Up(session) => Some(session.clone()),
            _ => None,
        }
    }

    /// The session ended and a new one is being made; `false` if we closed the link meanwhile.
    pub(crate) fn reconnecting(&self) -> bool {
        self.state.send_if_modified(|state| match state {
            State::Closed(_) => false,
            _ => {
                *state = State::Reconnecting;
                true
            }
        })
    }

    /// Calls go through `session` from now on; `false` (and `session` closed) if we closed the
    /// link meanwhile.
    pub(crate) fn reconnected(&self, session: Arc<Session>) -> bool {
        let taken = self.state.send_if_modified(|state| match state {
            State::Closed(_) => false,
            _ => {
                *state = State::Up(session.clone());
                true
            }
        });
        if !taken {
            session.close();
        }
        taken
    }

    /// No session will come, for `reason` (unless we closed the link already).
    pub(crate) fn down(&self, reason: String) {
        self.state.send_if_modified(|state| match state {
            State::Closed(_) => false,
            _ => {
                *state = State::Down(reason);
                true
            }
        });
    }

    /// Closes the link and its session.
    pub(crate) fn close(&self) {
        self.state.send_modify(|state| {
            let session = match std::mem::replace(state, State::Closed(None)) {
                State::Up(session) | State::Closed(Some(session)) => Some(session),
                _ => None,
            };
            if let Some(session) = &session {
                session.close();
            }
            *state = State::Closed(session);
        });
    }

    /// Waits until `old` is no longer the link's session (a new one is up, or none will come).
    pub(crate) async fn replaced(&self, old: &Arc<Session>) {
        let mut rx = self.state.subscribe();
        let moved_on = |s: &State| match s {
            State::Up(session) => !Arc::ptr_eq(session, old),
            State::Reconnecting => false,
            State::Down(_) | State::Closed(_) => true,
        };
        let _ = tokio::time::timeout(RECONNECT_WAIT, rx.wait_for(moved_on)).await;
    }

    /// Resolves once the link is finished: closed (and its session ended) or down.
    pub(crate) fn ended(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.state.subscribe();
        async move {
            let last = match rx
                .wait_for(|s| matches!(s, State::Down(_) | State::Closed(_)))
                .await
            {
                Ok(state) => match &*state {
                    State::Closed(Some(session)) => Some(session.ended()),
                    _ => None,
                },
                Err(_) => None,
            };
            if let Some(ended) = last {
                ended.await;
            }
        }
    }
}
