//! Following the runtime's log: the events of a Kubernetes run.
//!
//! A follow of `pods/log` can end before the container does (the kubelet rotates the file, a
//! proxy drops the connection: kubernetes#115701, #126564). [`follow`] reconnects from the last
//! line's time; the API takes whole seconds, so it may hand lines back again, and [`LogCursor`]
//! drops each line it has already passed on. When the container has ended, one last read
//! without follow picks up what a dropped follow missed.

use std::time::Duration;

use futures::AsyncReadExt;
use k8s_openapi::jiff::Timestamp;

use super::client::{ContainerPhase, KubeApi, KubeError};
use crate::sandbox::engine::relay::LineSplitter;

/// Where the relay is in a container's log: the time of the last line passed on, how many
/// lines of that very time were passed on, and how many of those the current read has seen.
#[derive(Debug, Default)]
pub(crate) struct LogCursor {
    last: Option<Timestamp>,
    passed_at_last: usize,
    seen_at_last: usize,
}

impl LogCursor {
    /// Where a (re)connect starts reading: the last line's time (`None`: the beginning). The
    /// lines of that time come back first, in the same order, and are skipped.
    pub(crate) fn restart(&mut self) -> Option<Timestamp> {
        self.seen_at_last = 0;
        self.last
    }

    /// The text of `line` (`<RFC 3339 time> <text>`, as `timestamps=true` writes it) when it
    /// comes after everything passed on so far; `None` for a line already passed on. A line
    /// without a time is passed on as it is (it cannot be placed).
    pub(crate) fn accept(&mut self, line: &str) -> Option<String> {
        let Some((time, text)) = line
            .split_once(' ')
            .and_then(|(t, rest)| Some((t.parse::<Timestamp>().ok()?, rest)))
        else {
            return Some(line.to_string());
        };
        match self.last {
            Some(last) if time < last => None,
            Some(last) if time == last => {
                self.seen_at_last += 1;
                if self.seen_at_last <= self.passed_at_last {
                    return None;
                }
                self.passed_at_last += 1;
                Some(text.to_string())
            }
            _ => {
                self.last = Some(time);
                self.passed_at_last = 1;
                self.seen_at_last = 1;
                Some(text.to_string())
            }
        }
    }
}

/// How patiently the log is followed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    /// Between two looks at the pod (waiting for it to start, between reconnects).
    pub poll: Duration,
    /// Reconnects in a row that bring no new line before giving up.
    pub max_reconnects: u32,
}

/// Relays `container`'s log lines of `pod` to `on_line` (without their times, each once), to
/// the container's end; its exit code and reason come back.
pub(crate) async fn follow(
    api: &KubeApi,
    pod: &str,
    container: &str,
    pacing: Pacing,
    on_line: &mut (dyn FnMut(String) + Send),
) -> Result<(i32, Option<String>), KubeError> {
    let mut cursor = LogCursor::default();
    let mut fruitless = 0;
    let mut last_failure = String::from("the log ended while the container ran");
    loop {
        match read(api, pod, container, &mut cursor, true, on_line).await {
            Ok(0) => {}
            Ok(_) => fruitless = 0,
            Err(e @ KubeError::Forbidden { .. }) => return Err(e),
            Err(e) => last_failure = e.to_string(),
        }
        if let Some((code, reason)) = ended(api, pod, container).await? {
            read(api, pod, container, &mut cursor, false, on_line).await?;
            return Ok((code, reason));
        }
        fruitless += 1;
        if fruitless > pacing.max_reconnects {
            return Err(KubeError::LogLost {
                pod: pod.to_string(),
                attempts: pacing.max_reconnects,
                last: last_failure,
            });
        }
        tokio::time::sleep(pacing.poll).await;
    }
}

/// One read of the log from `cursor` on; how many new lines it passed on.
async fn read(
    api: &KubeApi,
    pod: &str,
    container: &str,
    cursor: &mut LogCursor,
    follow: bool,
    on_line: &mut (dyn FnMut(String) + Send),
) -> Result<usize, KubeError> {
    let mut log = api.log(pod, container, cursor.restart(), follow).await?;
    // The one line splitter of runtime output (with its cap on a line's length), as on Docker.
    let mut lines = LineSplitter::default();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut new = 0;
    let mut pass_on = |line: String| {
        if let Some(text) = cursor.accept(&line) {
            new += 1;
            on_line(text);
        }
    };
    loop {
        let read = log.read(&mut chunk).await.map_err(|e| KubeError::Api {
            verb: "get".into(),
            resource: "pods/log".into(),
            namespace: api.namespace().to_string(),
            message: e.to_string(),
        })?;
        if read == 0 {
            break;
        }
        lines
            .push(&chunk[..read])
            .into_iter()
            .for_each(&mut pass_on);
    }
    lines.finish().into_iter().for_each(&mut pass_on);
    Ok(new)
}

/// `container`'s exit code and reason once it has ended.
async fn ended(
    api: &KubeApi,
    pod: &str,
    container: &str,
) -> Result<Option<(i32, Option<String>)>, KubeError> {
    Ok(match api.pod(pod, container).await?.container {
        Some(ContainerPhase::Terminated(code, reason)) => Some((code, reason)),
        _ => None,
    })
}
