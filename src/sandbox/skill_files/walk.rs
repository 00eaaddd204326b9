//! Reading the files a skill names from the config's folder: each path must exist and stay
//! inside that folder (lexically and after symlinks), and what is read is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use crate::trust::inputs::SKIPPED_FOLDERS;

/// The largest single file copied into a skill's image.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The most a skill's files may hold together.
pub(crate) const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// The most files a skill may have copied.
pub(crate) const MAX_FILES: usize = 10_000;

/// Files left out when a named folder is copied: dotenv files hold secrets, which must not be
/// baked into an image (a skill gets its variables through `requiredEnv`). Named one by one,
/// they are copied.
fn skipped_file(name: &str) -> bool {
    name == ".env" || name.starts_with(".env.")
}

/// One file for a skill's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalFile {
    /// Where it is on the host (symlinks resolved).
    pub host: PathBuf,
    /// Its path relative to the config's folder, as named (`tools/server.py`).
    pub relative: String,
    /// 0o755 when the host's file is executable by anyone, else 0o644.
    pub mode: u32,
    /// Its contents.
    pub contents: Bytes,
}

/// Why a named path cannot be copied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    /// Nothing by that name.
    #[error("`{written}` does not exist in {dir}")]
    Missing {
        /// The path as written.
        written: String,
        /// The config's folder.
        dir: String,
    },
    /// It leads out of the config's folder.
    #[error(
        "`{written}` resolves to {resolved}, outside {dir}; a skill's files must be inside the config's folder (an absolute path names a place inside the container and is left as written)"
    )]
    Outside {
        /// The path as written.
        written: String,
        /// Where it leads.
        resolved: String,
        /// The config's folder.
        dir: String,
    },
    /// It is the config's folder itself.
    #[error(
        "`{written}` is the config's own folder; copying it would put everything beside perstack.toml (.env, perstack/, …) into the image: name the skill's own folder or its files"
    )]
    ConfigFolder {
        /// The path as written.
        written: String,
    },
    /// A file is too big.
    #[error(
        "{path} holds {size} bytes, more than the {} MiB a skill's file may hold; leave it out of the image (mount data through the workspace instead)",
        MAX_FILE_BYTES / 1024 / 1024
    )]
    TooBig {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The skill's files are too many or too big together.
    #[error(
        "the skill's files exceed {what} (limit: {MAX_FILES} files, {} MiB together); name fewer files or a smaller folder",
        MAX_TOTAL_BYTES / 1024 / 1024
    )]
    TooMuch {
        /// Which limit.
        what: String,
    },
    /// It could not be read.
    #[error("cannot read {path}: {error}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
}

/// The config's folder, where named paths start.
pub(crate) struct Root {
    /// As given (for messages).
    dir: PathBuf,
    /// Canonical (for the inside check).
    canonical: PathBuf,
}

/// A named path, checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Resolved {
    /// Relative to the config's folder, normalized (`tools/x`, never `.` or `..`).
    pub relative: String,
    /// A folder rather than a file.
    pub is_dir: bool,
}

/// What a skill's paths have read so far, by relative path.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    /// The files.
    pub files: BTreeMap<String, LocalFile>,
    /// The paths read, as named (a folder stands for everything in it, now and later).
    pub named: BTreeSet<Resolved>,
    total: u64,
}

impl Root {
    /// The config's folder `dir`.
    pub(crate) fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
            canonical: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
        }
    }

    fn shown(&self) -> String {
        self.dir.display().to_string()
    }

    /// True when `written` names something in the folder (for [`super::detect`]).
    pub(crate) fn exists(&self, written: &str) -> bool {
        self.dir.join(written).symlink_metadata().is_ok()
    }

    /// True when `relative` is a regular file in the folder (a manifest beside a skill's files).
    pub(crate) fn dir_has_file(&self, relative: &str) -> bool {
        self.dir.join(relative).is_file()
    }

    /// Checks a relative path: it stays inside the folder, lexically and once symlinks are
    /// followed, and exists.
    pub(crate) fn resolve(&self, written: &str) -> Result<Resolved, PathError> {
        let outside = |resolved: &Path| PathError::Outside {
            written: written.to_string(),
            resolved: resolved.display().to_string(),
            dir: self.shown(),
        };
        let Some(relative) = normalize(written) else {
            return Err(outside(&self.dir.join(written)));
        };
        if relative.is_empty() {
            return Err(PathError::ConfigFolder {
                written: written.to_string(),
            });
        }
        let path = self.dir.join(&relative);
        let canonical = path.canonicalize().map_err(|_| PathError::Missing {
            written: written.to_string(),
            dir: self.shown(),
        })?;
        if !canonical.starts_with(&self.canonical) {
            return Err(outside(&canonical));
        }
        if canonical == self.canonical {
            return Err(PathError::ConfigFolder {
                written: written.to_string(),
            });
        }
        Ok(Resolved {
            relative,
            is_dir: canonical.is_dir(),
        })
    }

    /// Reads a resolved path (a file, or a folder's files) into `into`.
    pub(crate) fn read(&self, resolved: &Resolved, into: &mut Collected) -> Result<(), PathError> {
        into.named.insert(resolved.clone());
        let path = self.dir.join(&resolved.relative);
        if resolved.is_dir {
            let mut seen = BTreeSet::new();
            self.read_dir(&path, &resolved.relative, into, &mut seen)
        } else {
            self.read_file(&path, &resolved.relative, into)
        }
    }

    fn read_dir(
        &self,
        path: &Path,
        relative: &str,
        into: &mut Collected,
        seen: &mut BTreeSet<PathBuf>,
    ) -> Result<(), PathError> {
        let unreadable = |error: std::io::Error| PathError::Unreadable {
            path: path.display().to_string(),
            error: error.to_string(),
        };
        let canonical = path.canonicalize().map_err(unreadable)?;
        if !seen.insert(canonical) {
            return Ok(()); // a symlink back to a folder being read
        }
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(unreadable)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        for name in entries {
            let child = path.join(&name);
            let child_relative = format!("{relative}/{name}");
            let canonical = match child.canonicalize() {
                Ok(canonical) => canonical,
                Err(_) => continue, // a dangling symlink: nothing to copy
            };
            if !canonical.starts_with(&self.canonical) {
                return Err(PathError::Outside {
                    written: child_relative,
                    resolved: canonical.display().to_string(),
                    dir: self.shown(),
                });
            }
            if canonical.is_dir() {
                if !SKIPPED_FOLDERS.contains(&name.as_str()) {
                    self.read_dir(&child, &child_relative, into, seen)?;
                }
            } else if canonical.is_file() && !skipped_file(&name) {
                self.read_file(&child, &child_relative, into)?;
            }
        }
        Ok(())
    }

    fn read_file(
        &self,
        path: &Path,
        relative: &str,
        into: &mut Collected,
    ) -> Result<(), PathError> {
        if into.files.contains_key(relative) {
            return Ok(());
        }
        let unreadable = |error: std::io::Error| PathError::Unreadable {
            path: path.display().to_string(),
            error: error.to_string(),
        };
        let metadata = std::fs::metadata(path).map_err(unreadable)?;
        if metadata.len() > MAX_FILE_BYTES {
            return Err(PathError::TooBig {
                path: path.display().to_string(),
                size: metadata.len(),
            });
        }
        if into.files.len() >= MAX_FILES {
            return Err(PathError::TooMuch {
                what: format!("{MAX_FILES} files"),
            });
        }
        let contents = std::fs::read(path).map_err(unreadable)?;
        into.total += contents.len() as u64;
        if into.total > MAX_TOTAL_BYTES {
            return Err(PathError::TooMuch {
                what: format!("{} MiB", MAX_TOTAL_BYTES / 1024 / 1024),
            });
        }
        let executable = metadata.permissions().mode() & 0o111 != 0;
        into.files.insert(
            relative.to_string(),
            LocalFile {
                host: path.canonicalize().map_err(unreadable)?,
                relative: relative.to_string(),
                mode: if executable { 0o755 } else { 0o644 },
                contents: Bytes::from(contents),
            },
        );
        Ok(())
    }
}

/// `written` without `.` and with `..` applied, `/`-joined; `None` when it climbs out.
fn normalize(written: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(written).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, relative: &str, contents: &str) {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }

    #[test]
    fn paths_are_normalized_inside_the_folder() {
        assert_eq!(
            normalize("./tools/../server.py").as_deref(),
            Some("server.py")
        );
        assert_eq!(normalize("tools/x/").as_deref(), Some("tools/x"));
        assert_eq!(normalize("."), Some(String::new()));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("a/../../x"), None);
    }

    #[test]
    fn named_paths_must_exist_and_stay_inside_through_dots_and_symlinks() {
        let root_dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let dir = root_dir.path();
        write(dir, "server.py", "print()");
        write(outside.path(), "secret", "s");
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.join("link"))
            .expect("symlink");
        std::os::unix::fs::symlink(outside.path(), dir.join("out")).expect("symlink");
        let root = Root::new(dir);
        assert_eq!(
            root.resolve("./server.py"),
            Ok(Resolved {
                relative: "server.py".into(),
                is_dir: false
            })
        );
        assert!(matches!(
            root.resolve("missing.py"),
            Err(PathError::Missing { .. })
        ));
        assert!(matches!(
            root.resolve("../x"),
            Err(PathError::Outside { .. })
        ));
        assert!(matches!(
            root.resolve("link"),
            Err(PathError::Outside { .. })
        ));
        assert!(matches!(
            root.resolve("out/secret"),
            Err(PathError::Outside { .. })
        ));
        assert!(matches!(
            root.resolve("."),
            Err(PathError::ConfigFolder { .. })
        ));
        let message = root.resolve("link").expect_err("outside").to_string();
        assert!(message.contains("outside"), "{message}");
    }

    #[test]
    fn folders_are_read_whole_without_caches_dotenv_files_or_escapes() {
        let root_dir = tempfile::tempdir().expect("tempdir");
        let dir = root_dir.path();
        write(dir, "tools/server.js", "x");
        write(dir, "tools/lib/util.js", "y");
        write(dir, "tools/node_modules/dep/index.js", "z");
        write(dir, "tools/.env", "KEY=secret");
        write(dir, "tools/.git/config", "g");
        std::fs::set_permissions(
            dir.join("tools/server.js"),
            std::fs::Permissions::from_mode(0o750),
        )
        .expect("chmod");
        let root = Root::new(dir);
        let mut collected = Collected::default();
        let tools = root.resolve("tools/").expect("tools");
        root.read(&tools, &mut collected).expect("read");
        let names: Vec<&str> = collected.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["tools/lib/util.js", "tools/server.js"]);
        assert_eq!(collected.files["tools/server.js"].mode, 0o755);
        assert_eq!(collected.files["tools/lib/util.js"].mode, 0o644);

        // A symlink inside a named folder that leads out is refused, not followed.
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.join("tools/escape")).expect("symlink");
        let error = root
            .read(&tools, &mut Collected::default())
            .expect_err("escape");
        assert!(matches!(error, PathError::Outside { .. }), "{error}");
    }

    #[test]
    fn too_big_files_are_refused_with_the_limit() {
        let root_dir = tempfile::tempdir().expect("tempdir");
        let dir = root_dir.path();
        let big = std::fs::File::create(dir.join("big.bin")).expect("create");
        big.set_len(MAX_FILE_BYTES + 1).expect("grow");
        let root = Root::new(dir);
        let resolved = root.resolve("big.bin").expect("resolved");
        let error = root
            .read(&resolved, &mut Collected::default())
            .expect_err("too big");
        assert!(matches!(error, PathError::TooBig { .. }));
        assert!(error.to_string().contains("16 MiB"), "{error}");
    }
}
