//! A Kubernetes run's workspace, copied into the pod and back (KUBERNETES.md, "Workspace and
//! checkpoints"; ARC's "novolume" container hook does the same): the pod's workspace is an
//! emptyDir, the init container [`COPY_IN`] (our binary's `workspace-in`) unpacks the tar the
//! controller streams to its stdin over `attach`, and after the runtime has ended the controller
//! `exec`s `workspace-out` in base-skill and unpacks the tar it writes, on this machine.
//!
//! The tar's format and rules belong to `skill::base::archive`, for both directions. What comes back
//! is attacker-made (the run's tools ran what a model wrote), so it is spooled to a temporary
//! file within the caps, [`archive::check`]ed whole — base-skill's path rules, the protected
//! paths, no link followed or beneath a link, no hard link or device — and only then unpacked;
//! what went in and did not come back is removed. A refused archive changes nothing.
//!
//! The transport is [`PodStreams`]: `KubeApi` over the API's websockets in a real run (thin:
//! bytes in, bytes out; tested against a websocket server on loopback in `streams_tests.rs`),
//! the fake API server's in-process pod in the lifecycle tests, because `tower-test`'s mocked
//! service cannot answer the websocket upgrade `attach` and `exec` need (hyper's upgrade handle
//! cannot be made outside hyper).

use std::io::{Seek, Write};
use std::path::PathBuf;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::client::KubeError;
use crate::contract::paths::{BINARY_PATH, WORKSPACE_MOUNT};
use crate::files::Owner;
use crate::sandbox::labels;
use crate::sandbox::plan::{ContainerPlan, MountSource, RunPlan};
use crate::skill::base::archive::{self, ArchiveError, Caps, Tree};
use crate::trust::inputs::ProtectedPath;

/// The init container that unpacks the workspace.
pub(crate) const COPY_IN: &str = "workspace-in";
/// The container that keeps the pod (and base-skill, a sidecar) running after the runtime
/// ended, until the copy back is done and the pod deleted.
pub(crate) const HOLD: &str = "workspace-hold";
/// The most entries a workspace copy may hold, either way.
pub(crate) const MAX_ENTRIES: u64 = 500_000;

/// A chunk of a stream between the controller and a container.
const CHUNK: usize = 64 * 1024;

/// A pod's byte streams, as the workspace copy uses them.
pub(crate) trait PodStreams: Send + Sync {
    /// Writes what `input` carries to `container`'s stdin (attach), then closes it; ends when
    /// the API has taken it all.
    fn attach_stdin<'a>(
        &'a self,
        pod: &'a str,
        container: &'a str,
        input: mpsc::Receiver<Bytes>,
    ) -> BoxFuture<'a, Result<(), KubeError>>;

    /// Runs `command` in `container` (exec) and sends its stdout to `output`; an error when it
    /// fails (with its stderr).
    fn exec_stdout<'a>(
        &'a self,
        pod: &'a str,
        container: &'a str,
        command: Vec<String>,
        output: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'a, Result<(), KubeError>>;
}

/// The copy of one run's workspace: what goes in, where it comes back from, under which rules.
#[derive(Debug, Clone)]
pub(crate) struct WorkspaceCopy {
    /// The workspace on this machine (canonical).
    pub host: PathBuf,
    /// What goes in: the host's workspace less the run data (base-skill never sees it).
    pub sent: Tree,
    /// The paths base-skill may not change: never taken back.
    pub protected: Vec<ProtectedPath>,
    /// Both ways: the emptyDir's size limit, and [`MAX_ENTRIES`].
    pub caps: Caps,
    /// base-skill's container in the pod, where `workspace-out` is exec'd.
    pub out_container: String,
    /// base-skill's plan (image, user) for the init and hold containers.
    pub base_skill: ContainerPlan,
}

/// What the copy back did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CopiedBack {
    /// Files, links and folders written.
    pub written: usize,
    /// Files, links and folders removed (gone in the pod).
    pub removed: usize,
    /// What the run made that does not come back, and why.
    pub left_out: Vec<archive::LeftOut>,
}

/// The container of `plan` that base-skill is (the first, when several Experts have one).
pub(crate) fn base_skill(plan: &RunPlan) -> Option<&ContainerPlan> {
    plan.skills.iter().find(|c| {
        c.labels
            .get(labels::ROLE)
            .is_some_and(|role| role == "base-skill")
    })
}

/// Where `container` mounts the workspace from on this machine.
fn host_workspace(container: &ContainerPlan) -> Option<PathBuf> {
    container.mounts.iter().find_map(|m| match &m.source {
        MountSource::Bind { host } if m.target == WORKSPACE_MOUNT => Some(PathBuf::from(host)),
        _ => None,
    })
}

/// The protected paths on base-skill's command line (the plan's one statement of them).
fn protected_of(container: &ContainerPlan) -> Vec<ProtectedPath> {
    container
        .cmd
        .windows(2)
        .filter(|pair| pair[0] == "--protected")
        .filter_map(|pair| ProtectedPath::from_arg(&pair[1]))
        .collect()
}

impl WorkspaceCopy {
    /// The copy of `plan`'s workspace (none without base-skill: nothing mounts it), walked
    /// now; refused when it holds more than `caps`, before anything is created.
    pub(crate) fn prepare(
        plan: &RunPlan,
        caps: Caps,
        out_container: impl Fn(&str) -> String,
    ) -> Result<Option<WorkspaceCopy>, KubeError> {
        let Some(base) = base_skill(plan) else {
            return Ok(None);
        };
        let Some(host) = host_workspace(base) else {
            return Ok(None);
        };
        let sent = archive::walk(&host, &[]).map_err(|e| KubeError::CopyIn(e.to_string()))?;
        let entries = sent.items.len() as u64;
        if sent.bytes() > caps.bytes || entries > caps.entries {
            return Err(KubeError::WorkspaceTooBig {
                workspace: host,
                bytes: sent.bytes(),
                entries,
                max_bytes: caps.bytes,
                max_entries: caps.entries,
            });
        }
        Ok(Some(WorkspaceCopy {
            out_container: out_container(&base.service),
            protected: protected_of(base),
            base_skill: base.clone(),
            host,
            sent,
            caps,
        }))
    }

    /// The init container's command: `workspace-in` with the caps.
    pub(crate) fn copy_in_command(&self) -> Vec<String> {
        vec![
            BINARY_PATH.into(),
            "workspace-in".into(),
            "--workspace".into(),
            WORKSPACE_MOUNT.into(),
            "--max-bytes".into(),
            self.caps.bytes.to_string(),
            "--max-entries".into(),
            self.caps.entries.to_string(),
        ]
    }

    /// The command exec'd in base-skill: `workspace-out`, leaving the protected paths out.
    pub(crate) fn copy_out_command(&self) -> Vec<String> {
        let mut command = vec![
            BINARY_PATH.into(),
            "workspace-out".into(),
            "--workspace".into(),
            WORKSPACE_MOUNT.into(),
        ];
        for path in &self.protected {
            command.push("--protected".into());
            command.push(path.to_arg());
        }
        command
    }

    /// Streams the workspace as a tar into `pod`'s [`COPY_IN`] container.
    pub(crate) async fn copy_in(
        &self,
        streams: &dyn PodStreams,
        pod: &str,
    ) -> Result<(), KubeError> {
        let (sender, receiver) = mpsc::channel(8);
        let (host, sent) = (self.host.clone(), self.sent.clone());
        let writer = tokio::task::spawn_blocking(move || {
            archive::write(&host, &sent, ChannelWriter::new(sender))
        });
        let attached = streams.attach_stdin(pod, COPY_IN, receiver).await;
        let written = writer.await.map_err(|e| KubeError::CopyIn(e.to_string()))?;
        attached?;
        written.map_err(|e| KubeError::CopyIn(e.to_string()))
    }

    /// Reads the workspace back from `pod`'s base-skill and applies it to the host's, or
    /// changes nothing when the archive is refused.
    pub(crate) async fn copy_back(
        &self,
        streams: &dyn PodStreams,
        pod: &str,
    ) -> Result<CopiedBack, KubeError> {
        let failed = |why: String| self.failed(pod, why);
        let (sender, receiver) = mpsc::channel(8);
        let command = self.copy_out_command();
        let exec = streams.exec_stdout(pod, &self.out_container, command, sender);
        let spool = spool(receiver, stream_cap(self.caps));
        let (exec, spool) = tokio::join!(exec, spool);
        // A spool over its cap ends the exec early: its error is the one to tell.
        let spooled = spool.map_err(|e| failed(e.to_string()))?;
        exec.map_err(|e| failed(e.to_string()))?;
        let copy = self.clone();
        tokio::task::spawn_blocking(move || copy.apply(spooled))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))
    }

    /// The copy back from `pod` failed, `why`.
    pub(crate) fn failed(&self, pod: &str, why: String) -> KubeError {
        KubeError::CopyBack {
            pod: pod.to_string(),
            workspace: self.host.clone(),
            why,
        }
    }

    /// Checks the spooled archive whole, then unpacks it and removes what the run removed.
    fn apply(&self, mut spooled: std::fs::File) -> Result<CopiedBack, ArchiveError> {
        if !archive::ends_whole(&mut spooled).map_err(ArchiveError::Read)? {
            return Err(ArchiveError::Read(std::io::Error::other(
                "it ends before its end-of-archive marker (the stream was cut)",
            )));
        }
        let checked = archive::check(&spooled, &self.host, &self.protected, self.caps)?;
        spooled.rewind().map_err(ArchiveError::Read)?;
        let unpacked = archive::unpack(
            &spooled,
            &self.host,
            &self.protected,
            self.caps,
            Owner::detect(),
        )?;
        let gone = archive::removed(&self.sent, &checked, &self.protected);
        let removed = archive::remove(&self.host, &gone)?;
        Ok(CopiedBack {
            written: unpacked.paths.len(),
            removed,
            left_out: unpacked.left_out,
        })
    }
}

/// The most bytes a tar within `caps` can take: the contents, a header and a long-name record
/// for each entry (three 512-byte blocks) and the end.
fn stream_cap(caps: Caps) -> u64 {
    caps.bytes
        .saturating_add(caps.entries.saturating_mul(3 * 512 + 511))
        .saturating_add(10 * 1024)
}

/// What `receiver` carries, in an anonymous temporary file (gone when closed), rewound; an
/// error past `cap` bytes.
async fn spool(
    mut receiver: mpsc::Receiver<Bytes>,
    cap: u64,
) -> Result<std::fs::File, ArchiveError> {
    let mut file = tempfile::tempfile().map_err(ArchiveError::Write)?;
    let mut total = 0u64;
    while let Some(chunk) = receiver.recv().await {
        total += chunk.len() as u64;
        if total > cap {
            return Err(ArchiveError::TooBig {
                limit: cap,
                path: PathBuf::from("(the stream itself)"),
            });
        }
        file.write_all(&chunk).map_err(ArchiveError::Write)?;
    }
    file.rewind().map_err(ArchiveError::Write)?;
    Ok(file)
}

/// A blocking writer whose bytes go, in chunks, to an async receiver.
struct ChannelWriter {
    sender: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn new(sender: mpsc::Sender<Bytes>) -> ChannelWriter {
        ChannelWriter {
            sender,
            buffer: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the pod stopped reading")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
