//! Path safety: which paths the workspace tools may touch, and what they resolve to.
//!
//! The rules follow `@perstack/base` (PERSTACK-COMPAT.md §6), tightened where its implementation
//! lets a path slip through:
//!
//! 1. `~` and `~/…` expand to the **workspace root**. Perstack expands to the user's home, but the
//!    base-skill container has no real home (HOME is whatever the image sets, usually `/` or
//!    `/root`, always outside the mounted workspace), so a home-relative path could only ever be
//!    denied; the workspace is the only home the model has. `~user/…` is not expanded.
//! 2. A relative path is resolved against the workspace; `.` and `..` are resolved lexically, like
//!    Node's `path.resolve`.
//! 3. `<ws>/perstack` and everything below it is reserved for run data, compared
//!    case-insensitively. Perstack checks only the lexical path; we also check the path after
//!    symlinks are resolved, so `ln -s perstack p` does not open the run data.
//! 4. An existing path's realpath must be the workspace or below it. (Perstack falls back to the
//!    parent check when this fails, which lets a symlink to outside through; we do not.)
//! 5. A path that does not exist yet must have an existing parent whose realpath is inside
//!    (`Parent directory does not exist: …`). `writeTextFile` and `moveFile` first create missing
//!    parents with [`Workspace::create_parents`] (`mkdir -p`), which applies the same rules to
//!    every directory it makes: the nearest existing ancestor's realpath must be inside the
//!    workspace and outside `perstack/`, so nothing is created through a symlink leading out.
//! 6. A dangling symlink cannot be resolved, so it cannot be shown to stay inside: denied.
//!
//! These rules keep Perstack's semantics and stop accidental escapes. The security boundary is
//! the container: the workspace is its only host path, and `exec` runs arbitrary commands there
//! anyway. Checks and the later `open` are therefore not made race-free (no `openat2`); the file
//! tools still open with `O_NOFOLLOW` so the final component cannot be swapped for a symlink.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::error::ToolError;
use crate::config::workspace::RESERVED_DIR;
use crate::trust::inputs::{self, ProtectedPath, Rule};

/// Arguments of the tools that take only a path.
#[derive(Debug, Deserialize)]
pub(crate) struct PathArgs {
    /// File or directory, relative to the workspace or absolute.
    pub path: String,
}

/// The base skill's `--workspace` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The directory does not exist or cannot be resolved.
    #[error(
        "workspace {} cannot be resolved: {source}\n  hint: pass an existing directory with --workspace",
        path.display()
    )]
    Unresolvable {
        /// The path as given.
        path: PathBuf,
        /// Why `realpath` failed.
        #[source]
        source: io::Error,
    },
    /// The path exists but is not a directory.
    #[error("workspace {} is not a directory\n  hint: pass a directory with --workspace", path.display())]
    NotADirectory {
        /// The resolved path.
        path: PathBuf,
    },
}

/// The workspace root and the path rules relative to it.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    root: PathBuf,
    /// `<root>/perstack`, ASCII-lowercased, as bytes.
    reserved_lower: Vec<u8>,
    /// The protected paths (`trust::inputs`), which the tools read but never change: the
    /// controller passes them on base-skill's command line. The read-only mounts over them are
    /// the wall (they hold `exec` too); this is for the model to be told which rule it hit.
    protected: Vec<ProtectedPath>,
    /// `exec` runs its programs in a narrower Landlock domain that keeps the protected paths as
    /// they are (`confine::workspace`): the wall where no read-only mount is (standalone).
    confine_exec: bool,
}

/// What a requested path resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The path with its parent directory resolved but its last component kept as is: what
    /// `unlink` and `rename` act on (the link itself when the last component is a symlink).
    pub entry: PathBuf,
    /// The fully resolved path: the realpath of an existing path; `entry` for a new one.
    pub target: PathBuf,
    /// Whether something exists at the path.
    pub exists: bool,
    /// Whether the last component is a symlink (into the workspace; others are denied).
    pub is_symlink: bool,
}

impl Workspace {
    /// Resolves `root` with `realpath` and checks it is a directory.
    pub(crate) fn new(root: impl AsRef<Path>) -> Result<Self, WorkspaceError> {
        let given = root.as_ref();
        let root = fs::canonicalize(given).map_err(|source| WorkspaceError::Unresolvable {
            path: given.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(WorkspaceError::NotADirectory { path: root });
        }
        let reserved_lower = root
            .join(RESERVED_DIR)
            .as_os_str()
            .as_bytes()
            .to_ascii_lowercase();
        Ok(Self {
            root,
            reserved_lower,
            protected: Vec::new(),
            confine_exec: false,
        })
    }

    /// The same workspace, with `protected` paths the tools refuse to change.
    pub(crate) fn with_protected(mut self, protected: Vec<ProtectedPath>) -> Self {
        self.protected = protected;
        self
    }

    /// The same workspace, whose `exec` confines its programs (see [`Self::confined_exec`]).
    pub(crate) fn with_confined_exec(mut self, confine: bool) -> Self {
        self.confine_exec = confine;
        self
    }

    /// The protected paths (relative) when `exec` must keep them from its programs; `None` when
    /// read-only mounts do.
    pub(crate) fn confined_exec(&self) -> Option<Vec<PathBuf>> {
        self.confine_exec
            .then(|| self.protected.iter().map(|p| p.relative.clone()).collect())
    }

    /// Refuses, before anything is touched, a change at `requested` as written when it is a
    /// protected path or lies below one — or, with `tree` (a move or a delete of a folder),
    /// holds one below it.
    pub(crate) fn refuse_protected(&self, requested: &str, tree: bool) -> Result<(), ToolError> {
        let lexical = normalize(&self.root.join(self.expand_home(Path::new(requested))));
        self.refuse_protected_at(&lexical, tree)
    }

    /// [`Self::resolve`] for a tool that changes the path: refused when the path as written, or
    /// as it resolves (a symlinked folder leading into `.git`), is protected (see
    /// [`Self::refuse_protected`]).
    pub(crate) fn resolve_for_change(
        &self,
        requested: &str,
        tree: bool,
    ) -> Result<Resolved, ToolError> {
        self.refuse_protected(requested, tree)?;
        let resolved = self.resolve(requested)?;
        self.refuse_protected_at(&resolved.entry, tree)?;
        self.refuse_protected_at(&resolved.target, tree)?;
        Ok(resolved)
    }

    fn refuse_protected_at(&self, path: &Path, tree: bool) -> Result<(), ToolError> {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return Ok(());
        };
        let hit = inputs::protecting(&self.protected, relative).or_else(|| {
            tree.then(|| {
                self.protected
                    .iter()
                    .find(|p| relative.as_os_str().is_empty() || p.relative.starts_with(relative))
            })
            .flatten()
        });
        match hit {
            Some(protected) => Err(protected_denied(protected)),
            None => Ok(()),
        }
    }

    /// The workspace root (a realpath).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Applies the path rules to a path as the model gave it.
    pub(crate) fn resolve(&self, requested: &str) -> Result<Resolved, ToolError> {
        self.resolve_path(Path::new(requested))
    }

    /// [`Self::resolve`] for a path that need not be UTF-8 (directory entries).
    pub(crate) fn resolve_path(&self, requested: &Path) -> Result<Resolved, ToolError> {
        let expanded = self.expand_home(requested);
        let lexical = normalize(&self.root.join(expanded));
        if self.is_reserved(&lexical) {
            return Err(reserved_denied());
        }
        match fs::symlink_metadata(&lexical) {
            Ok(meta) => self.resolve_existing(&lexical, meta.file_type().is_symlink()),
            // ENOTDIR: a component of the parent is a file; the parent check reports it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.resolve_new(&lexical)
            }
            Err(e) => Err(ToolError::io(&e, "lstat", &lexical)),
        }
    }

    /// `mkdir -p` of the parent of `requested`, under the path rules: the nearest existing
    /// ancestor is resolved with `realpath` and must be inside the workspace (so a symlink leading
    /// out is never created through) and outside the reserved directory, and so must every
    /// directory created below it. Each one is made with `mkdir` (mode 0755 before the umask),
    /// which never follows a symlink at the created name. Does nothing when the parent exists.
    pub(crate) fn create_parents(&self, requested: &str) -> Result<(), ToolError> {
        let expanded = self.expand_home(Path::new(requested));
        let lexical = normalize(&self.root.join(expanded));
        if self.is_reserved(&lexical) {
            return Err(reserved_denied());
        }
        let Some(parent) = lexical.parent() else {
            return Ok(());
        };
        // Walk up to the nearest ancestor that exists (as anything, a symlink included).
        let mut missing = Vec::new();
        let mut ancestor = parent;
        loop {
            match fs::symlink_metadata(ancestor) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let (Some(up), Some(name)) = (ancestor.parent(), ancestor.file_name()) else {
                        return Ok(());
                    };
                    missing.push(name.to_owned());
                    ancestor = up;
                }
                // ENOTDIR and the like: the later resolve reports it.
                Err(_) => return Ok(()),
            }
        }
        // Resolved even when nothing is missing, so a dangling symlink as the parent is reported
        // as what it is rather than as a missing directory.
        let real = match fs::canonicalize(ancestor) {
            Ok(real) => real,
            Err(_) if !self.contains(ancestor) => return Err(self.outside(&lexical)),
            Err(_) => {
                return Err(ToolError::new(format!(
                    "Access denied - symlink target cannot be resolved: {}",
                    ancestor.display()
                )));
            }
        };
        if !self.contains(&real) {
            return Err(if self.contains(&lexical) {
                ToolError::new("Access denied - parent directory outside allowed directories")
            } else {
                self.outside(&lexical)
            });
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut dir = real;
        for name in missing.iter().rev() {
            dir.push(name);
            if self.is_reserved(&dir) {
                return Err(reserved_denied());
            }
            match fs::create_dir(&dir) {
                Ok(()) => {}
                // Made by someone else meanwhile: fine if it is a real directory.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta =
                        fs::symlink_metadata(&dir).map_err(|e| ToolError::io(&e, "lstat", &dir))?;
                    if !meta.is_dir() {
                        return Err(ToolError::io(&e, "mkdir", &dir));
                    }
                }
                Err(e) => return Err(ToolError::io(&e, "mkdir", &dir)),
            }
        }
        Ok(())
    }

    /// Whether `path` is the workspace or below it (component-wise, so `/ws2` is not in `/ws`).
    pub(crate) fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.root)
    }

    /// Whether `path` is the reserved directory or below it, ignoring ASCII case.
    pub(crate) fn is_reserved(&self, path: &Path) -> bool {
        let lower = path.as_os_str().as_bytes().to_ascii_lowercase();
        let reserved = &self.reserved_lower;
        lower == *reserved
            || (lower.starts_with(reserved) && lower.get(reserved.len()) == Some(&b'/'))
    }

    fn expand_home(&self, requested: &Path) -> PathBuf {
        let bytes = requested.as_os_str().as_bytes();
        if bytes == b"~" {
            self.root.clone()
        } else if let Some(rest) = bytes.strip_prefix(b"~/") {
            self.root.join(OsStr::from_bytes(rest))
        } else {
            requested.to_path_buf()
        }
    }

    fn resolve_existing(&self, lexical: &Path, is_symlink: bool) -> Result<Resolved, ToolError> {
        let target = fs::canonicalize(lexical).map_err(|e| {
            if is_symlink {
                ToolError::new(format!(
                    "Access denied - symlink target cannot be resolved: {}",
                    lexical.display()
                ))
            } else {
                ToolError::io(&e, "realpath", lexical)
            }
        })?;
        if !self.contains(&target) {
            return Err(if self.contains(lexical) {
                ToolError::new("Access denied - symlink target outside allowed directories")
            } else {
                self.outside(lexical)
            });
        }
        if self.is_reserved(&target) {
            return Err(reserved_denied());
        }
        let entry = if is_symlink {
            // The link itself: its directory must be inside too, or `/tmp/l -> <ws>/f` would let a
            // delete or move act outside.
            let real_parent = self.real_parent(lexical)?;
            if !self.contains(&real_parent) {
                return Err(self.outside(lexical));
            }
            real_parent.join(lexical.file_name().unwrap_or_default())
        } else {
            target.clone()
        };
        Ok(Resolved {
            entry,
            target,
            exists: true,
            is_symlink,
        })
    }

    fn resolve_new(&self, lexical: &Path) -> Result<Resolved, ToolError> {
        let parent = lexical.parent().unwrap_or(Path::new("/"));
        let real_parent = match fs::canonicalize(parent) {
            Ok(real_parent) => real_parent,
            Err(_) if !self.contains(lexical) => return Err(self.outside(lexical)),
            Err(_) => {
                return Err(ToolError::new(format!(
                    "Parent directory does not exist: {}",
                    parent.display()
                )));
            }
        };
        if !self.contains(&real_parent) {
            return Err(ToolError::new(
                "Access denied - parent directory outside allowed directories",
            ));
        }
        // A normalized absolute path that does not exist is never `/`, so it has a file name.
        let entry = real_parent.join(lexical.file_name().unwrap_or_default());
        if self.is_reserved(&entry) {
            return Err(reserved_denied());
        }
        Ok(Resolved {
            target: entry.clone(),
            entry,
            exists: false,
            is_symlink: false,
        })
    }

    fn real_parent(&self, lexical: &Path) -> Result<PathBuf, ToolError> {
        let parent = lexical.parent().unwrap_or(Path::new("/"));
        fs::canonicalize(parent).map_err(|e| ToolError::io(&e, "realpath", parent))
    }

    fn outside(&self, lexical: &Path) -> ToolError {
        ToolError::new(format!(
            "Access denied - path outside allowed directories: {} not in {}",
            lexical.display(),
            self.root.display()
        ))
    }
}

/// A path as a JSON string. Paths the model sees are built from UTF-8 input, but a symlink can
/// resolve to a non-UTF-8 name, and serializing a `Path` would fail on that.
pub(crate) fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The answer to a change of a protected path: which path, which rule, and who can lift it.
fn protected_denied(protected: &ProtectedPath) -> ToolError {
    if protected.rule == Rule::RunData {
        return reserved_denied();
    }
    let path = protected.relative.display();
    ToolError::new(format!(
        "Access denied - {path} is a protected path ({}): runs may read it but not change, \
         create, move or delete it. Only the user can allow it, with `writable = [\"{path}\"]` \
         under [sandbox] in perstack.toml",
        protected.rule.describe()
    ))
}

fn reserved_denied() -> ToolError {
    ToolError::new("Access denied - perstack directory is not allowed")
}

/// Resolves `.` and `..` without touching the file system (`..` at `/` stays at `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        /// A directory next to the workspace, outside it.
        outside: PathBuf,
        ws: Workspace,
    }

    /// `<tmp>/ws` (the workspace, with `sub/`, `a.txt`) and `<tmp>/outside` (with `secret.txt`).
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret.txt"), "secret").unwrap();
        let ws = Workspace::new(&root).unwrap();
        let outside = fs::canonicalize(outside).unwrap();
        Fixture {
            _dir: dir,
            outside,
            ws,
        }
    }

    fn denied(result: Result<Resolved, ToolError>) -> String {
        let err = result.expect_err("path should be denied");
        assert!(
            err.message.starts_with("Access denied") || err.message.starts_with("Parent directory"),
            "{}",
            err.message
        );
        err.message
    }

    #[test]
    fn workspace_must_exist_and_be_a_directory() {
        let f = fixture();
        assert!(matches!(
            Workspace::new(f.ws.root().join("missing")),
            Err(WorkspaceError::Unresolvable { .. })
        ));
        assert!(matches!(
            Workspace::new(f.ws.root().join("a.txt")),
            Err(WorkspaceError::NotADirectory { .. })
        ));
    }

    #[test]
    fn relative_paths_resolve_against_the_workspace() {
        let f = fixture();
        let root = f.ws.root();
        let r = f.ws.resolve("a.txt").unwrap();
        assert_eq!(r.target, root.join("a.txt"));
        assert!(r.exists && !r.is_symlink);
        assert_eq!(
            f.ws.resolve("sub/../a.txt").unwrap().target,
            root.join("a.txt")
        );
        assert_eq!(
            f.ws.resolve("./sub/new.txt").unwrap().target,
            root.join("sub/new.txt")
        );
        assert!(!f.ws.resolve("./sub/new.txt").unwrap().exists);
        assert_eq!(f.ws.resolve(".").unwrap().target, root);
        assert_eq!(f.ws.resolve("").unwrap().target, root);
        let absolute = root.join("a.txt");
        assert_eq!(
            f.ws.resolve(absolute.to_str().unwrap()).unwrap().target,
            absolute
        );
    }

    #[test]
    fn tilde_is_the_workspace() {
        let f = fixture();
        assert_eq!(f.ws.resolve("~").unwrap().target, f.ws.root());
        assert_eq!(
            f.ws.resolve("~/a.txt").unwrap().target,
            f.ws.root().join("a.txt")
        );
        // `~user` is not expanded: it is a relative name like any other.
        assert_eq!(f.ws.resolve("~x").unwrap().target, f.ws.root().join("~x"));
    }

    #[test]
    fn dot_dot_cannot_leave_the_workspace() {
        let f = fixture();
        let msg = denied(f.ws.resolve("../outside/secret.txt"));
        assert!(msg.contains("path outside allowed directories"), "{msg}");
        denied(f.ws.resolve("sub/../../outside/new.txt"));
        denied(f.ws.resolve("../../../../../../etc/passwd"));
    }

    #[test]
    fn absolute_paths_outside_are_denied() {
        let f = fixture();
        denied(f.ws.resolve("/etc/passwd"));
        denied(f.ws.resolve(f.outside.join("secret.txt").to_str().unwrap()));
        denied(f.ws.resolve(f.outside.join("new.txt").to_str().unwrap()));
        // A sibling whose name merely starts with the workspace's name is outside too.
        let sibling = format!("{}2/x", f.ws.root().display());
        denied(f.ws.resolve(&sibling));
    }

    #[test]
    fn symlinked_file_pointing_outside_is_denied() {
        let f = fixture();
        symlink(f.outside.join("secret.txt"), f.ws.root().join("leak")).unwrap();
        let msg = denied(f.ws.resolve("leak"));
        assert!(msg.contains("symlink target outside"), "{msg}");
    }

    #[test]
    fn symlinked_parent_pointing_outside_is_denied() {
        let f = fixture();
        symlink(&f.outside, f.ws.root().join("out")).unwrap();
        denied(f.ws.resolve("out/secret.txt"));
        // A new file below it: its parent resolves outside.
        let msg = denied(f.ws.resolve("out/new.txt"));
        assert!(msg.contains("parent directory outside"), "{msg}");
        denied(f.ws.resolve("out"));
    }

    #[test]
    fn dangling_symlinks_are_denied() {
        let f = fixture();
        symlink(f.outside.join("not-yet"), f.ws.root().join("dangling")).unwrap();
        let msg = denied(f.ws.resolve("dangling"));
        assert!(msg.contains("cannot be resolved"), "{msg}");
    }

    #[test]
    fn symlink_inside_resolves_to_its_target_and_keeps_the_link_as_entry() {
        let f = fixture();
        symlink(f.ws.root().join("a.txt"), f.ws.root().join("link")).unwrap();
        let r = f.ws.resolve("link").unwrap();
        assert!(r.exists && r.is_symlink);
        assert_eq!(r.target, f.ws.root().join("a.txt"));
        assert_eq!(r.entry, f.ws.root().join("link"));
    }

    #[test]
    fn symlink_from_outside_into_the_workspace_is_denied() {
        let f = fixture();
        let link = f.outside.join("in");
        symlink(f.ws.root().join("a.txt"), &link).unwrap();
        denied(f.ws.resolve(link.to_str().unwrap()));
    }

    #[test]
    fn perstack_directory_is_reserved_in_any_case() {
        let f = fixture();
        fs::create_dir_all(f.ws.root().join("perstack/jobs")).unwrap();
        for path in [
            "perstack",
            "perstack/jobs",
            "PERSTACK",
            "PerStack/jobs/x.json",
            "sub/../perstack/new",
        ] {
            let msg = denied(f.ws.resolve(path));
            assert!(
                msg.contains("perstack directory is not allowed"),
                "{path}: {msg}"
            );
        }
        // Only the top-level one is reserved, and only that exact name.
        f.ws.resolve("sub/perstack").unwrap();
        f.ws.resolve("perstack2").unwrap();
        f.ws.resolve(".perstack").unwrap();
    }

    #[test]
    fn symlink_into_perstack_directory_is_reserved() {
        let f = fixture();
        fs::create_dir_all(f.ws.root().join("perstack/jobs")).unwrap();
        symlink(f.ws.root().join("perstack"), f.ws.root().join("p")).unwrap();
        denied(f.ws.resolve("p"));
        denied(f.ws.resolve("p/jobs"));
        denied(f.ws.resolve("p/new.json"));
    }

    #[test]
    fn new_file_in_a_missing_parent_is_refused() {
        let f = fixture();
        let err = f.ws.resolve("missing/dir/file.txt").unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "Parent directory does not exist: {}",
                f.ws.root().join("missing/dir").display()
            )
        );
    }

    #[test]
    fn new_path_in_an_existing_parent_is_allowed() {
        let f = fixture();
        let r = f.ws.resolve("sub/new.txt").unwrap();
        assert_eq!(r.entry, f.ws.root().join("sub/new.txt"));
        assert!(!r.exists);
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
    }
}
