//! Writing the store's files: each one to a temporary file in the same folder, then renamed over
//! the real name, so a reader (or a continuation after a crash) never sees half a file; and owned
//! by the user who invoked us.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Who should own the files and folders the store creates.
///
/// The controller normally runs as the invoking user, so what it creates is theirs already. Run as
/// root through `sudo`, it hands them back to `SUDO_UID`/`SUDO_GID`, so the workspace does not
/// fill up with root-owned files the user cannot change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Owner(Option<(u32, u32)>);

impl Owner {
    /// Keep whatever the process creates as it is.
    #[cfg(test)]
    pub(crate) fn process() -> Owner {
        Owner(None)
    }

    /// This user and group.
    pub(crate) fn user(uid: u32, gid: u32) -> Owner {
        Owner(Some((uid, gid)))
    }

    /// The sudo invoker when we are root through `sudo`, else the process itself.
    pub(crate) fn detect() -> Owner {
        Owner::from_sudo(
            nix::unistd::geteuid().is_root(),
            std::env::var("SUDO_UID").ok().as_deref(),
            std::env::var("SUDO_GID").ok().as_deref(),
        )
    }

    fn from_sudo(root: bool, sudo_uid: Option<&str>, sudo_gid: Option<&str>) -> Owner {
        let id = |value: Option<&str>| value?.parse::<u32>().ok();
        match (root, id(sudo_uid), id(sudo_gid)) {
            (true, Some(uid), Some(gid)) if uid != 0 => Owner::user(uid, gid),
            _ => Owner(None),
        }
    }

    fn apply(self, path: &Path) -> std::io::Result<()> {
        let Some((uid, gid)) = self.0 else {
            return Ok(());
        };
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(std::io::Error::from)
    }
}

/// Creates `dir` and its missing parents, giving each folder it creates to `owner`.
pub(crate) fn create_dir_all(dir: &Path, owner: Owner) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.exists() {
            break;
        }
        missing.push(path.to_path_buf());
        cursor = path.parent();
    }
    std::fs::create_dir_all(dir)?;
    for path in missing.iter().rev() {
        owner.apply(path)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then a rename. The folder
/// must exist. On failure the temporary file is removed and `path` is untouched.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], owner: Owner) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A dot name nobody lists, unique so concurrent writers never share a temporary file.
    let temp = dir.join(format!(".{name}.{}.tmp", crate::ids::new_id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        // No fsync: the rename is what keeps readers from seeing a partial file, and a power
        // cut mid-run loses the run anyway. An fsync per event would slow every run down.
        drop(file);
        owner.apply(&temp)?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.json");
        write_atomic(&path, b"first", Owner::process()).expect("write");
        write_atomic(&path, b"second", Owner::process()).expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["job.json"]);
    }

    #[test]
    fn a_failed_atomic_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("job.json");
        write_atomic(&path, b"old", Owner::process()).expect("write");
        // Renaming a file over a non-empty folder fails after the temporary file was written.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).expect("mkdir");
        assert!(write_atomic(&blocked, b"new", Owner::process()).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["blocked", "job.json"]);
    }

    #[test]
    fn files_go_to_the_sudo_invoker_only_when_we_are_root_through_sudo() {
        assert_eq!(
            Owner::from_sudo(true, Some("1000"), Some("1001")),
            Owner::user(1000, 1001)
        );
        assert_eq!(
            Owner::from_sudo(false, Some("1000"), Some("1001")),
            Owner::process()
        );
        assert_eq!(Owner::from_sudo(true, None, None), Owner::process());
        assert_eq!(
            Owner::from_sudo(true, Some("0"), Some("0")),
            Owner::process()
        );
        assert_eq!(
            Owner::from_sudo(true, Some("x"), Some("1")),
            Owner::process()
        );
    }

    #[test]
    fn an_owner_gets_the_files_and_the_folders_created_for_them() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let other = nix::unistd::getuid().as_raw() + 4242;
        let owner = Owner::user(other, other);
        let folder = dir.path().join("perstack/jobs");
        let result = create_dir_all(&folder, owner)
            .and_then(|()| write_atomic(&folder.join("job.json"), b"{}", owner));
        if nix::unistd::geteuid().is_root() {
            result.expect("root may give files away");
            for path in [
                dir.path().join("perstack"),
                folder.clone(),
                folder.join("job.json"),
            ] {
                let meta = std::fs::metadata(&path).expect("metadata");
                assert_eq!(
                    (meta.uid(), meta.gid()),
                    (other, other),
                    "{}",
                    path.display()
                );
            }
            // The folder that existed before keeps its owner.
            assert_ne!(std::fs::metadata(dir.path()).expect("meta").uid(), other);
        } else {
            // Anyone else cannot, and is told so rather than left with a stray file.
            assert!(result.is_err());
            assert!(!folder.join("job.json").exists());
        }
    }

    #[test]
    fn folders_are_created_with_their_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("perstack/jobs/j1/runs/r1");
        create_dir_all(&deep, Owner::process()).expect("mkdir");
        assert!(deep.is_dir());
        create_dir_all(&deep, Owner::process()).expect("again");
    }
}
