//! What a trusted input holds, as one comparable string: its SHA-256 (and whether it is
//! executable), what a link says and holds, what a folder lists, or that it is absent or
//! something else.

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// The digest of the file at `path` as it is now: `absent`, `sha256:<hex>` (with `+x` when
/// anyone may execute it), `link:<target> -> <digest of what it reaches>`, `folder:<listing>`
/// (see [`listing`]), `other`, or `unreadable: <reason>`. Two calls give the same string exactly when nothing a reader of the
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
        return format!("folder:{}", listing(path));
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

/// The most entries a folder's listing walks.
const MAX_LISTED: usize = 20_000;

/// What a folder holds, by name: `sha256:<hex>` of every path below it with its kind (file,
/// folder, link and its target), sorted; links are not followed, and the folders a skill's
/// copy leaves out (`node_modules`, caches: `sandbox::skill_files`) are not listed: a host
/// tool's `npm install` or `__pycache__` changes nothing the next run copies.
/// Contents are not read: the files that matter are trusted inputs of their own. A folder too
/// big to list reads as `more than <n> entries`.
fn listing(folder: &Path) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut todo = vec![folder.to_path_buf()];
    while let Some(at) = todo.pop() {
        let entries = match std::fs::read_dir(&at) {
            Ok(entries) => entries,
            Err(error) => return format!("unreadable: {}: {error}", at.display()),
        };
        for entry in entries.filter_map(Result::ok) {
            if lines.len() >= MAX_LISTED {
                return format!("more than {MAX_LISTED} entries");
            }
            let path = entry.path();
            let relative = path.strip_prefix(folder).unwrap_or(&path).display();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue; // gone while listed: the next listing tells
            };
            let name = entry.file_name();
            let skipped = super::inputs::SKIPPED_FOLDERS
                .iter()
                .any(|s| name == std::ffi::OsStr::new(s));
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap_or_default();
                lines.push(format!("{relative} -> {}", target.display()));
            } else if meta.is_dir() {
                if !skipped {
                    lines.push(format!("{relative}/"));
                    todo.push(path);
                }
            } else {
                lines.push(relative.to_string());
            }
        }
    }
    lines.sort();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
        hasher.update(b"\0");
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
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
    }

    #[test]
    fn a_folder_is_told_by_what_it_lists_not_by_what_its_files_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("tools");
        std::fs::create_dir_all(folder.join("lib")).expect("mkdir");
        std::fs::write(folder.join("server.py"), "a").expect("write");
        let before = digest(&folder);
        assert!(before.starts_with("folder:sha256:"), "{before}");
        std::fs::write(folder.join("server.py"), "b").expect("rewrite");
        assert_eq!(
            digest(&folder),
            before,
            "contents are the files' own inputs"
        );
        std::fs::write(folder.join("lib/json.py"), "").expect("add");
        let added = digest(&folder);
        assert_ne!(added, before, "a file added below it");
        std::fs::remove_file(folder.join("lib/json.py")).expect("rm");
        std::os::unix::fs::symlink("/etc", folder.join("lib/json.py")).expect("symlink");
        assert_ne!(digest(&folder), before, "a link added below it");
        assert_ne!(digest(&folder), added);
        std::fs::remove_file(folder.join("lib/json.py")).expect("rm");
        assert_eq!(digest(&folder), before);
        std::fs::create_dir_all(folder.join("lib/__pycache__")).expect("mkdir");
        std::fs::write(folder.join("lib/__pycache__/x.pyc"), "").expect("write");
        assert_eq!(digest(&folder), before, "what a skill's copy leaves out");
    }
}
