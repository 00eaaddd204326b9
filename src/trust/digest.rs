//! What a trusted input holds, as one comparable string: its SHA-256 (and whether it is
//! executable), what a link says and holds, or that it is absent, a folder or something else.

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// The digest of the file at `path` as it is now: `absent`, `sha256:<hex>` (with `+x` when
/// anyone may execute it), `link:<target> -> <digest of what it reaches>`, `folder`, `other`, or
/// `unreadable: <reason>`. Two calls give the same string exactly when nothing a reader of the
/// file would notice changed. An empty, non-executable file reads as `absent`: it says nothing
/// to the controller, and a placeholder the protections create where a file was missing must
/// not count as a change.
pub(crate) fn digest(path: &Path) -> String {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return "absent".into(),
        Err(error) => return format!("unreadable: {error}"),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|e| format!("? ({e})"));
        return format!("link:{target} -> {}", followed(path));
    }
    followed(path)
}

/// The digest of what `path` reaches, links followed.
fn followed(path: &Path) -> String {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return "absent".into(),
        Err(error) => return format!("unreadable: {error}"),
    };
    if meta.is_dir() {
        return "folder".into();
    }
    if !meta.is_file() {
        return "other".into();
    }
    // Non-blocking, so a FIFO swapped in after the check cannot hang the controller.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let mut hasher = Sha256::new();
    let mut buffer = [0u8; 64 * 1024];
    let hashed = file.and_then(|mut file| {
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buffer[..n]);
        }
    });
    if let Err(error) = hashed {
        return format!("unreadable: {error}");
    }
    let executable = if meta.permissions().mode() & 0o111 != 0 {
        "+x"
    } else {
        ""
    };
    if meta.len() == 0 && executable.is_empty() {
        return "absent".into();
    }
    format!("sha256:{}{executable}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_changes_exactly_when_what_a_reader_sees_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        assert_eq!(digest(&env), "absent");
        std::fs::write(&env, "").expect("write");
        assert_eq!(digest(&env), "absent", "an empty file says nothing");
        std::fs::write(&env, "A=1\n").expect("write");
        let first = digest(&env);
        assert!(first.starts_with("sha256:"), "{first}");
        assert_eq!(digest(&env), first);
        std::fs::write(&env, "A=1\n").expect("rewrite");
        assert_eq!(digest(&env), first, "the same bytes again");
        std::fs::write(&env, "A=2\n").expect("write");
        assert_ne!(digest(&env), first);
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(digest(&env).ends_with("+x"));
    }

    #[test]
    fn a_link_is_told_by_its_target_and_by_what_it_reaches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.env");
        std::fs::write(&real, "A=1\n").expect("write");
        let link = dir.path().join(".env");
        std::os::unix::fs::symlink("real.env", &link).expect("symlink");
        let before = digest(&link);
        assert!(before.starts_with("link:real.env -> sha256:"), "{before}");
        std::fs::write(&real, "A=2\n").expect("write");
        assert_ne!(digest(&link), before, "the file it reaches changed");
        std::fs::remove_file(&real).expect("rm");
        assert_eq!(digest(&link), "link:real.env -> absent");
        std::fs::create_dir(dir.path().join("folder")).expect("mkdir");
        assert_eq!(digest(&dir.path().join("folder")), "folder");
    }
}
