//! The trust record of one workspace, in the state folder: `trust/<key>.json`, the key a digest
//! of the canonical workspace path. It holds the runs under way — each with the digests of its
//! trusted inputs when it started — and the changes runs made that the user has not accepted
//! yet. Every read-modify-write holds an exclusive `flock` on `trust/<key>.lock`, so concurrent
//! runs in one workspace do not lose each other's entries.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::TrustError;
use crate::files::{Beneath, Owner};

/// One trusted input and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Watched {
    /// The file, absolute.
    pub path: PathBuf,
    /// What it is to the controller ([`super::inputs::Rule::name`]): `config`, `dotenv`,
    /// `mock-script`.
    pub kind: String,
    /// [`super::digest::digest`] of it.
    pub digest: String,
}

/// A run under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InFlight {
    /// Its job.
    pub job_id: String,
    /// Its run.
    pub run_id: String,
    /// The controller running it ([`crate::ids::controller::ControllerId`]), so the
    /// next run can tell one that was killed from one still going.
    pub controller: String,
    /// Its trusted inputs as it started.
    pub inputs: Vec<Watched>,
}

/// A change a run made to a trusted input that the user has not accepted yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The file, absolute.
    pub path: PathBuf,
    /// What it is to the controller (`config`, `dotenv`, `mock-script`).
    pub kind: String,
    /// The job whose run changed it.
    pub job_id: String,
    /// That run.
    pub run_id: String,
    /// Its digest as the run started.
    pub before: String,
    /// Its digest as the run ended.
    pub after: String,
    /// When the change was found, ms since the epoch.
    pub found_at: u64,
}

impl Change {
    /// "created", "changed" or "removed".
    pub(crate) fn verb(&self) -> &'static str {
        match (self.before.as_str(), self.after.as_str()) {
            ("absent", _) => "created",
            (_, "absent") => "removed",
            _ => "changed",
        }
    }
}

/// The record of one workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    /// The canonical workspace it is about.
    pub workspace: PathBuf,
    /// Changes not accepted yet, oldest first.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Runs under way.
    #[serde(default)]
    pub runs: Vec<InFlight>,
}

/// The record's files for one workspace.
#[derive(Debug)]
pub(crate) struct RecordFiles {
    state: Beneath,
    owner: Owner,
    key: String,
    workspace: PathBuf,
}

/// An exclusive hold on a workspace's record; released when dropped.
pub(crate) struct Locked<'a> {
    files: &'a RecordFiles,
    _lock: nix::fcntl::Flock<std::fs::File>,
    /// The record as read under the lock.
    pub record: Record,
}

impl RecordFiles {
    /// The record of `workspace` (canonical) in the state folder `state`, which is created
    /// (mode 0700, given to `owner`) when missing. Fails when the folder cannot be made or
    /// written, or lies inside the workspace.
    pub(crate) fn open(
        state: &Path,
        workspace: &Path,
        owner: Owner,
    ) -> Result<RecordFiles, TrustError> {
        let unwritable = |source| TrustError::Unwritable {
            dir: state.to_path_buf(),
            source,
        };
        create_private_dir(state, owner).map_err(unwritable)?;
        let canonical = std::fs::canonicalize(state).map_err(unwritable)?;
        if canonical.starts_with(workspace) {
            return Err(TrustError::InsideWorkspace {
                dir: canonical,
                workspace: workspace.to_path_buf(),
            });
        }
        let files = RecordFiles {
            state: Beneath::open(&canonical).map_err(TrustError::File)?,
            owner,
            key: key(workspace),
            workspace: workspace.to_path_buf(),
        };
        // Proves the folder writable before any run starts: the lock file is created here.
        drop(files.lock()?);
        Ok(files)
    }

    /// The workspace the record is about.
    pub(crate) fn workspace(&self) -> &Path {
        &self.workspace
    }

    fn record_rel(&self) -> PathBuf {
        Path::new("trust").join(format!("{}.json", self.key))
    }

    /// The record's file, for messages.
    pub(crate) fn path(&self) -> PathBuf {
        self.state.path(&self.record_rel())
    }

    /// Takes the lock and reads the record (an empty one when there is none yet).
    pub(crate) fn lock(&self) -> Result<Locked<'_>, TrustError> {
        let lock_rel = Path::new("trust").join(format!("{}.lock", self.key));
        let unwritable = |source| TrustError::Unwritable {
            dir: self.state.path(Path::new("trust")),
            source,
        };
        let dir = self
            .state
            .create_dir_all(Path::new("trust"), self.owner)
            .map_err(TrustError::File)?;
        let fd = nix::fcntl::openat(
            &dir,
            lock_rel.file_name().unwrap_or_default(),
            nix::fcntl::OFlag::O_RDWR
                | nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(|errno| unwritable(errno.into()))?;
        self.owner.apply(&fd).map_err(unwritable)?;
        let lock =
            nix::fcntl::Flock::lock(std::fs::File::from(fd), nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, errno)| unwritable(errno.into()))?;
        let record = match self
            .state
            .read(&self.record_rel())
            .map_err(TrustError::File)?
        {
            None => Record {
                workspace: self.workspace.clone(),
                ..Record::default()
            },
            Some(read) => serde_json::from_slice(&read.bytes).map_err(|e| TrustError::Corrupt {
                path: self.path(),
                message: e.to_string(),
            })?,
        };
        Ok(Locked {
            files: self,
            _lock: lock,
            record,
        })
    }
}

impl Locked<'_> {
    /// Writes the record back (atomically) and releases the lock.
    pub(crate) fn save(self) -> Result<(), TrustError> {
        let mut text =
            serde_json::to_string_pretty(&self.record).map_err(|e| TrustError::Corrupt {
                path: self.files.path(),
                message: e.to_string(),
            })?;
        text.push('\n');
        self.files
            .state
            .write_atomic(&self.files.record_rel(), text.as_bytes(), self.files.owner)
            .map_err(TrustError::File)
    }
}

/// The record's key: the first 128 bits of the SHA-256 of the canonical workspace path.
fn key(workspace: &Path) -> String {
    let digest = Sha256::digest(workspace.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..16])
}

/// Creates `dir` and its missing parents; the folders it creates are private (0700) and given to
/// `owner`.
fn create_private_dir(dir: &Path, owner: Owner) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if std::fs::symlink_metadata(path).is_ok() {
            break;
        }
        missing.push(path.to_path_buf());
        cursor = path.parent();
    }
    for path in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
        let folder = std::fs::File::open(path)?;
        owner.apply(&folder)?;
    }
    Ok(())
}
