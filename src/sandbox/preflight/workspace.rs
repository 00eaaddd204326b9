//! The workspace: a folder whose path is plain and which is neither a shared root nor inside
//! the system's trees. base-skill mounts it read-write.

use std::path::{Path, PathBuf};

/// Folders of the host that must never be mounted as the workspace, nor anything inside them:
/// the system's own files, devices and kernel interfaces, and the engine's state and socket.
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/lib/docker",
];

/// Folders that hold everybody's files: fine to work below, never as the workspace itself.
const SHARED_ROOTS: &[&str] = &[
    "/", "/home", "/root", "/tmp", "/var", "/mnt", "/media", "/opt", "/srv",
];

/// The workspace, checked and made canonical. The path as given must not contain `..` or a
/// control character (a newline would forge lines in logs and labels); what it resolves to —
/// after every symlink — must be a folder, and neither a folder that holds everybody's files
/// (`/`, `/home`, `/tmp`, …, or the user's home itself) nor anything inside the system's trees
/// (`/etc`, `/proc`, `/var/run`, …). base-skill mounts it read-write: a workspace that is a
/// symlink to `/` would hand the host to every `exec`.
pub(crate) fn check_workspace(given: &Path) -> Result<PathBuf, String> {
    let shown = given.display().to_string();
    if shown.chars().any(char::is_control) {
        return Err(format!(
            "workspace {shown:?} contains a control character (a newline?); choose a folder whose path has none"
        ));
    }
    if given
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(format!(
            "workspace {shown} contains `..`; give the folder's path without `..`"
        ));
    }
    let resolved = std::fs::canonicalize(given)
        .map_err(|error| format!("workspace {shown} does not exist or cannot be read: {error}"))?;
    if !resolved.is_dir() {
        return Err(format!("workspace {} is not a folder", resolved.display()));
    }
    let resolved_shown = resolved.display().to_string();
    if resolved_shown.chars().any(char::is_control) {
        return Err(format!(
            "workspace {shown} resolves to {resolved_shown:?}, which contains a control character; choose a folder whose path has none"
        ));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .and_then(|h| std::fs::canonicalize(h).ok());
    let shared = SHARED_ROOTS.iter().any(|root| resolved == Path::new(root))
        || home.as_deref() == Some(resolved.as_path());
    let system = SYSTEM_TREES.iter().any(|tree| resolved.starts_with(tree));
    if shared || system {
        let via = if resolved.as_path() == given {
            String::new()
        } else {
            format!(" (it resolves to {resolved_shown})")
        };
        return Err(format!(
            "workspace {shown}{via} would give the workspace tools read-write access to {}; choose a project folder (`--workspace ./my-project`)",
            if system {
                "the host's system files"
            } else {
                "files that are not the project's"
            }
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_path_with_dot_dot_or_a_newline_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("project");
        std::fs::create_dir(&inner).expect("mkdir");
        assert_eq!(
            check_workspace(&inner.join("..").join("project")),
            Err(format!(
                "workspace {}/../project contains `..`; give the folder's path without `..`",
                inner.display()
            ))
        );
        let newline = dir.path().join("a\nb");
        std::fs::create_dir(&newline).expect("mkdir");
        let refused = check_workspace(&newline).expect_err("newline");
        assert!(
            refused.contains("contains a control character"),
            "{refused}"
        );
        assert_eq!(
            check_workspace(&inner),
            Ok(std::fs::canonicalize(&inner).expect("canonical"))
        );
    }

    #[test]
    fn a_workspace_that_resolves_to_the_root_or_a_system_tree_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let to_root = dir.path().join("innocent");
        std::os::unix::fs::symlink("/", &to_root).expect("symlink");
        assert_eq!(
            check_workspace(&to_root),
            Err(format!(
                "workspace {} (it resolves to /) would give the workspace tools read-write access to files that are not the project's; choose a project folder (`--workspace ./my-project`)",
                to_root.display()
            ))
        );
        let to_etc = dir.path().join("config");
        std::os::unix::fs::symlink("/etc", &to_etc).expect("symlink");
        assert!(
            check_workspace(&to_etc)
                .expect_err("etc")
                .contains("the host's system files")
        );
        for refused in ["/", "/tmp", "/proc/self", "/var/run"] {
            assert!(check_workspace(Path::new(refused)).is_err(), "{refused}");
        }
        // A symlink to a real project folder is fine: the project is what gets mounted.
        let project = dir.path().join("project");
        std::fs::create_dir(&project).expect("mkdir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&project, &link).expect("symlink");
        assert_eq!(
            check_workspace(&link),
            Ok(std::fs::canonicalize(&project).expect("canonical"))
        );
    }

    #[test]
    fn the_workspace_must_be_a_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("script.toml");
        std::fs::write(&file, "").expect("file");
        let refused = check_workspace(&file).expect_err("not a folder");
        assert!(
            refused.ends_with("script.toml is not a folder"),
            "{refused}"
        );
    }
}
