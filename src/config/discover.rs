//! Finding `perstack.toml` (PERSTACK-COMPAT.md §1, "Discovery").
//!
//! `--config <path>` is taken relative to the current folder and must exist; when it names a
//! folder, that folder's `perstack.toml` is used (so `--config ../other-project` works). Without
//! `--config`, the current folder and then each parent up to `/` is searched. Perstack can fetch
//! a config from raw.githubusercontent.com; we refuse URLs, so what runs is always a file the
//! user can read first.

use std::path::{Component, Path, PathBuf};

use super::diagnostic::ConfigError;

/// The file name searched for.
pub(crate) const CONFIG_FILE_NAME: &str = "perstack.toml";

/// The absolute path of the config to load: `explicit` (the `--config` value) resolved against
/// `cwd`, else the nearest `perstack.toml` in `cwd` or a parent.
///
/// Paths are made absolute lexically (`..` removes the previous component, symlinks are kept),
/// as Perstack's `path.resolve` does, so relative paths in the config are taken from the folder
/// the user sees it in.
pub(crate) fn discover(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf, ConfigError> {
    let cwd = absolute(cwd)?;
    if let Some(given) = explicit {
        let text = given.to_string_lossy();
        if text.starts_with("http://") || text.starts_with("https://") {
            return Err(ConfigError::RemoteNotSupported {
                url: text.into_owned(),
            });
        }
        let path = normalize(&cwd.join(given));
        if path.is_dir() {
            let inside = path.join(CONFIG_FILE_NAME);
            if inside.is_file() {
                return Ok(inside);
            }
            return Err(ConfigError::GivenPathNotFound {
                path: given.join(CONFIG_FILE_NAME),
            });
        }
        if path.exists() {
            return Ok(path);
        }
        return Err(ConfigError::GivenPathNotFound {
            path: given.to_path_buf(),
        });
    }
    cwd.ancestors()
        .map(|dir| dir.join(CONFIG_FILE_NAME))
        .find(|candidate| candidate.is_file())
        .ok_or(ConfigError::NotFound { start: cwd })
}

/// `path` made absolute against the process's current folder, and normalized.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path)
        .map(|p| normalize(&p))
        .map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Drops `.` and resolves `..` without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn finds_the_nearest_config_upwards() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        touch(&root.path().join("perstack.toml"));
        touch(&root.path().join("a/perstack.toml"));
        assert_eq!(
            discover(None, &deep).unwrap(),
            root.path().join("a/perstack.toml")
        );
        assert_eq!(
            discover(None, root.path()).unwrap(),
            root.path().join("perstack.toml")
        );
    }

    #[test]
    fn a_folder_named_perstack_toml_is_not_a_config() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("x/perstack.toml")).unwrap();
        touch(&root.path().join("perstack.toml"));
        let found = discover(None, &root.path().join("x")).unwrap();
        assert_eq!(found, root.path().join("perstack.toml"));
    }

    #[test]
    fn explicit_paths_are_cwd_relative_and_must_exist() {
        let root = tempfile::tempdir().unwrap();
        touch(&root.path().join("conf/dev.toml"));
        touch(&root.path().join("other/perstack.toml"));
        let cwd = root.path().join("conf");
        assert_eq!(
            discover(Some(Path::new("./dev.toml")), &cwd).unwrap(),
            root.path().join("conf/dev.toml")
        );
        assert_eq!(
            discover(Some(Path::new("../other")), &cwd).unwrap(),
            root.path().join("other/perstack.toml")
        );
        let abs = root.path().join("conf/dev.toml");
        assert_eq!(discover(Some(&abs), Path::new("/")).unwrap(), abs);

        let err = discover(Some(Path::new("missing.toml")), &cwd).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Given config path \"missing.toml\" is not found"
        );
        let err = discover(Some(Path::new(".")), &cwd).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Given config path \"./perstack.toml\" is not found"
        );
    }

    #[test]
    fn urls_are_refused() {
        let err = discover(
            Some(Path::new(
                "https://raw.githubusercontent.com/x/perstack.toml",
            )),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::RemoteNotSupported { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("remote configs are not supported"));
    }

    #[test]
    fn nothing_found_names_the_start_folder() {
        let root = tempfile::tempdir().unwrap();
        // A tempdir normally has no perstack.toml above it; skip if this machine has one.
        if root
            .path()
            .ancestors()
            .any(|d| d.join(CONFIG_FILE_NAME).is_file())
        {
            return;
        }
        let err = discover(None, root.path()).unwrap_err();
        assert!(
            matches!(&err, ConfigError::NotFound { start } if start == root.path()),
            "{err:?}"
        );
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../a")), PathBuf::from("/a"));
    }
}
