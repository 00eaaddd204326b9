//! A skill that connects in the background (`lazyInit = true`): the run starts at once, and the
//! first tool listing waits for it (PERSTACK-COMPAT.md §5, "Skills").

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::client::{McpSkill, SkillConnectError};

/// The outcome of a background connection, shareable by everyone who awaits it.
pub(crate) type Connection = Result<Arc<McpSkill>, Arc<SkillConnectError>>;

/// A skill whose connection is under way. Dropping it abandons a connection still under way.
pub(crate) struct LazySkill {
    /// The skill's name in `perstack.toml`.
    pub name: String,
    /// Its `pick` list.
    pub pick: Vec<String>,
    /// Its `omit` list.
    pub omit: Vec<String>,
    connection: Shared<BoxFuture<'static, Connection>>,
    task: tokio::task::AbortHandle,
}

impl std::fmt::Debug for LazySkill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazySkill")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LazySkill {
    /// Starts `connect` on its own task now; it makes progress whether or not anyone awaits it.
    pub(crate) fn spawn<F>(name: &str, pick: &[String], omit: &[String], connect: F) -> LazySkill
    where
        F: Future<Output = Result<McpSkill, SkillConnectError>> + Send + 'static,
    {
        let task = tokio::spawn(connect);
        let abort = task.abort_handle();
        let skill = name.to_string();
        let connection = async move {
            match task.await {
                Ok(Ok(connected)) => Ok(Arc::new(connected)),
                Ok(Err(error)) => Err(Arc::new(error)),
                Err(join) => Err(Arc::new(SkillConnectError::Handshake {
                    skill,
                    message: format!("the connecting task ended: {join}"),
                })),
            }
        }
        .boxed()
        .shared();
        LazySkill {
            name: name.to_string(),
            pick: pick.to_vec(),
            omit: omit.to_vec(),
            connection,
            task: abort,
        }
    }

    /// Waits until the skill is connected (or has failed to).
    pub(crate) async fn connected(&self) -> Connection {
        self.connection.clone().await
    }

    /// The skill, if it has connected by now and someone has awaited it.
    pub(crate) fn peek(&self) -> Option<Arc<McpSkill>> {
        self.connection
            .peek()
            .and_then(|c| c.as_ref().ok().cloned())
    }
}

impl Drop for LazySkill {
    fn drop(&mut self) {
        // The run segment is over: do not keep a connecting task (and its events) alive.
        self.task.abort();
    }
}
