//! Making and removing the placeholders of a run (`plan/workspace.rs`): empty files and folders
//! that hold the place of missing protected paths while the run's containers mount the
//! workspace, so a run cannot create `.env` where there was none.
//!
//! They are made before the containers — never through a symlink (`O_EXCL` and `mkdir` do not
//! follow one at the name made) — and removed after the containers are gone, by the run, or by
//! `gc` from the label of a run whose controller died. Only what is still empty is removed: a
//! file someone wrote since is theirs.

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sandbox::plan::Placeholder;

/// A placeholder that could not be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot hold the place of the protected path {} for the run: {source}\n  hint: make sure the workspace is writable",
    path.display()
)]
pub struct PlaceholderError {
    /// The host path.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Makes each placeholder, outermost first. One that exists already (made meanwhile) is left
/// as it is: the read-only mount holds it all the same. Run as root, each is given to the
/// owner of the folder it is made in, as what the run writes is the workspace user's.
pub(crate) fn create(placeholders: &[Placeholder]) -> Result<(), PlaceholderError> {
    for placeholder in placeholders {
        let path = &placeholder.path;
        let made = match placeholder.dir {
            true => std::fs::create_dir(path),
            false => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(path)
                .map(drop),
        };
        match made {
            Ok(()) => give_to_folder_owner(path).map_err(|source| PlaceholderError {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(PlaceholderError {
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Removes each placeholder that is still an empty file or an empty folder, innermost first;
/// what cannot be removed is left and returned with why.
pub(crate) fn remove(placeholders: &[Placeholder]) -> Vec<(PathBuf, io::Error)> {
    let mut failures = Vec::new();
    for placeholder in placeholders.iter().rev() {
        let path = &placeholder.path;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                failures.push((path.clone(), e));
                continue;
            }
        };
        let removed = match (placeholder.dir, meta.is_dir(), meta.is_file()) {
            // `rmdir` fails on a folder that is not empty: it is kept.
            (true, true, _) => match std::fs::remove_dir(path) {
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(()),
                other => other,
            },
            (false, _, true) if meta.len() == 0 => std::fs::remove_file(path),
            _ => Ok(()),
        };
        if let Err(e) = removed {
            failures.push((path.clone(), e));
        }
    }
    failures
}

fn give_to_folder_owner(path: &Path) -> io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let folder = path.parent().unwrap_or(Path::new("/"));
    let owner = std::fs::metadata(folder)?;
    std::os::unix::fs::lchown(path, Some(owner.uid()), Some(owner.gid()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn placeholder(path: PathBuf, dir: bool) -> Placeholder {
        Placeholder { path, dir }
    }

    #[test]
    fn placeholders_are_made_and_removed_while_empty() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        let all = [
            placeholder(ws.join("conf"), true),
            placeholder(ws.join("conf/dev.env"), false),
            placeholder(ws.join(".env"), false),
            placeholder(ws.join(".git"), true),
        ];
        create(&all).unwrap();
        assert!(ws.join("conf/dev.env").is_file() && ws.join(".git").is_dir());
        assert_eq!(std::fs::read(ws.join(".env")).unwrap(), b"");
        assert!(remove(&all).is_empty());
        assert_eq!(std::fs::read_dir(ws).unwrap().count(), 0);
    }

    #[test]
    fn what_was_written_since_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        let all = [
            placeholder(ws.join(".env"), false),
            placeholder(ws.join(".git"), true),
        ];
        create(&all).unwrap();
        std::fs::write(ws.join(".env"), "KEY=mine").unwrap();
        std::fs::write(ws.join(".git/HEAD"), "ref").unwrap();
        assert!(remove(&all).is_empty());
        assert_eq!(std::fs::read(ws.join(".env")).unwrap(), b"KEY=mine");
        assert!(ws.join(".git/HEAD").is_file());
    }

    #[test]
    fn a_placeholder_is_never_made_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        let target = ws.join("target");
        symlink(&target, ws.join(".env")).unwrap();
        create(&[placeholder(ws.join(".env"), false)]).unwrap();
        assert!(!target.exists(), "the link's target was created");
        // Nor removed through one.
        std::fs::write(&target, "").unwrap();
        assert!(remove(&[placeholder(ws.join(".env"), false)]).is_empty());
        assert!(target.exists() && ws.join(".env").is_symlink());
    }
}
