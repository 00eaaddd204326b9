//! Files beneath one folder, reached without following a symbolic link on any component.
//!
//! The controller writes the job store into the workspace as the invoking user — root, for
//! whoever runs it with `sudo` — and the workspace is hostile input: a cloned repository can
//! carry a `perstack` link to `/etc`, or a link deeper down. So every path is relative to an open
//! folder and walked one component at a time, each opened with `O_NOFOLLOW` relative to the one
//! before (`openat`), and only plain names are accepted (no `..`, no `/`, no `.`): resolution can
//! neither follow a link nor leave the folder, which is what `openat2`'s `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS` gives, on every kernel and under any seccomp profile (the controller may
//! itself run in a container whose profile refuses `openat2`). A link met on the way is an error
//! naming it and what it points to; so is a folder where a file should be, or a file, FIFO or
//! device where a folder should be. Files are opened with `O_NONBLOCK` and checked to be regular
//! files, so a planted FIFO cannot hang a read.
//!
//! Writes go to a temporary file in the same folder, created with `O_EXCL | O_NOFOLLOW`, then
//! renamed over the real name (`renameat` replaces a link rather than writing through it), so a
//! reader never sees half a file.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::owner::Owner;

/// What can go wrong reaching a file beneath the folder.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A component is a symbolic link.
    #[error(
        "{} is a symbolic link to {}; perstack-sandbox never follows links in the folders it keeps its files in\n  hint: look at why it is there (a cloned repository can carry one), then remove it: rm {}",
        path.display(), target.display(), path.display()
    )]
    Link {
        /// The link.
        path: PathBuf,
        /// What it points to, as the link says.
        target: PathBuf,
    },
    /// Something that is not a folder where a folder should be.
    #[error("{} is not a folder\n  hint: move it away; perstack-sandbox keeps its files there", path.display())]
    NotAFolder {
        /// The path.
        path: PathBuf,
    },
    /// Something that is not a regular file where a file should be.
    #[error("{} is not a regular file\n  hint: move it away; perstack-sandbox keeps its files there", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The system refused.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a name beneath the folder is, not following links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A folder.
    Folder,
    /// A regular file.
    File,
    /// A symbolic link, and what it points to.
    Link(PathBuf),
    /// A FIFO, socket or device.
    Other,
}

/// A file read beneath the folder.
#[derive(Debug)]
pub(crate) struct Contents {
    /// Its contents.
    pub bytes: Vec<u8>,
    /// When it was last written.
    pub modified: SystemTime,
}

/// An open folder; every path given to its methods is relative to it.
#[derive(Debug)]
pub(crate) struct Beneath {
    root: PathBuf,
    fd: OwnedFd,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

impl Beneath {
    /// Opens `root`, which the caller has made canonical (links in `root` itself are followed).
    pub(crate) fn open(root: &Path) -> Result<Beneath, FileError> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| io("open", root.to_path_buf(), errno))?;
        Ok(Beneath {
            root: root.to_path_buf(),
            fd,
        })
    }

    /// `rel` as a full path, for messages.
    pub(crate) fn path(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    /// The folder `rel`, opened; `None` when it (or a folder on the way) does not exist.
    pub(crate) fn dir(&self, rel: &Path) -> Result<Option<OwnedFd>, FileError> {
        self.walk(rel, None)
    }

    /// The folder `rel`, created with its missing parents, each given to `owner`.
    pub(crate) fn create_dir_all(&self, rel: &Path, owner: Owner) -> Result<OwnedFd, FileError> {
        match self.walk(rel, Some(owner))? {
            Some(fd) => Ok(fd),
            // `walk` creates what is missing, so it never gives `None` here.
            None => Err(io("create", self.path(rel), Errno::ENOENT)),
        }
    }

    /// What `rel` is, without following a link; `None` when it does not exist.
    pub(crate) fn kind(&self, rel: &Path) -> Result<Option<Kind>, FileError> {
        let (parent, name) = split(rel, &self.root)?;
        let Some(dir) = self.dir(parent)? else {
            return Ok(None);
        };
        match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(kind_of(&dir, name, stat.st_mode))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(io("look at", self.path(rel), errno)),
        }
    }

    /// The entries of the folder `rel` (none when it does not exist), by name, with their kinds.
    /// Names that are not UTF-8 are left out: nothing we write has one.
    pub(crate) fn entries(&self, rel: &Path) -> Result<Vec<(String, Kind)>, FileError> {
        let Some(fd) = self.dir(rel)? else {
            return Ok(Vec::new());
        };
        let listing = fd
            .try_clone()
            .map_err(|source| FileError::Io {
                action: "list",
                path: self.path(rel),
                source,
            })
            .and_then(|copy| {
                nix::dir::Dir::from_fd(copy).map_err(|errno| io("list", self.path(rel), errno))
            })?;
        let mut listing = listing;
        let mut found = Vec::new();
        for entry in listing.iter() {
            let entry = entry.map_err(|errno| io("list", self.path(rel), errno))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let name = name.to_string();
            let kind = match fstatat(&fd, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => kind_of(&fd, OsStr::new(&name), stat.st_mode),
                // Removed since it was listed.
                Err(Errno::ENOENT) => continue,
                Err(errno) => {
                    return Err(io("look at", self.path(&Path::new(rel).join(&name)), errno));
                }
            };
            found.push((name, kind));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Reads the regular file `rel`; `None` when it does not exist.
    pub(crate) fn read(&self, rel: &Path) -> Result<Option<Contents>, FileError> {
        let (parent, name) = split(rel, &self.root)?;
        let Some(dir) = self.dir(parent)? else {
            return Ok(None);
        };
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(self.refused(&dir, name, rel, errno, "read")),
        };
        let mut file = std::fs::File::from(fd);
        let fail = |source| FileError::Io {
            action: "read",
            path: self.path(rel),
            source,
        };
        let meta = file.metadata().map_err(fail)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile {
                path: self.path(rel),
            });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(fail)?;
        Ok(Some(Contents {
            bytes,
            modified: meta.modified().map_err(fail)?,
        }))
    }

    /// Writes `bytes` to `rel` atomically, creating its folder and giving what it creates to
    /// `owner`. On failure the temporary file is removed and `rel` is untouched.
    pub(crate) fn write_atomic(
        &self,
        rel: &Path,
        bytes: &[u8],
        owner: Owner,
    ) -> Result<(), FileError> {
        self.write_atomic_from(rel, &mut &bytes[..], 0o644, owner)
            .map(|_| ())
    }

    /// [`Beneath::write_atomic`] of what `contents` reads to its end, with permissions `mode`
    /// (before the umask); the bytes written come back.
    pub(crate) fn write_atomic_from(
        &self,
        rel: &Path,
        contents: &mut dyn Read,
        mode: u32,
        owner: Owner,
    ) -> Result<u64, FileError> {
        let (parent, name) = split(rel, &self.root)?;
        let dir = self.create_dir_all(parent, owner)?;
        let temp = temp_name(name);
        let fail = |source| FileError::Io {
            action: "write",
            path: self.path(rel),
            source,
        };
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&dir, temp.as_str(), flags, Mode::from_bits_truncate(mode))
            .map_err(|errno| fail(errno.into()))?;
        let result = (|| -> std::io::Result<u64> {
            let mut file = std::fs::File::from(fd);
            let written = std::io::copy(contents, &mut file)?;
            owner.apply(file.as_fd())?;
            // No fsync: the rename is what keeps readers from seeing a partial file, and a power
            // cut mid-run loses the run anyway. An fsync per event would slow every run down.
            drop(file);
            renameat(&dir, temp.as_str(), &dir, name).map_err(std::io::Error::from)?;
            Ok(written)
        })();
        match result {
            Ok(written) => Ok(written),
            Err(source) => {
                let _ = unlinkat(&dir, temp.as_str(), UnlinkatFlags::NoRemoveDir);
                if source.raw_os_error() == Some(libc::EISDIR) {
                    return Err(FileError::NotAFile {
                        path: self.path(rel),
                    });
                }
                Err(fail(source))
            }
        }
    }

    /// Makes `rel` a symbolic link to `target` (never followed here), replacing a file or link
    /// of that name atomically; its folder is created for `owner`.
    pub(crate) fn symlink(&self, rel: &Path, target: &Path, owner: Owner) -> Result<(), FileError> {
        let (parent, name) = split(rel, &self.root)?;
        let dir = self.create_dir_all(parent, owner)?;
        let temp = temp_name(name);
        let fail = |errno: Errno| io("link", self.path(rel), errno);
        nix::unistd::symlinkat(target, &dir, temp.as_str()).map_err(fail)?;
        if let Err(source) = owner.apply_link(&dir, temp.as_str()) {
            let _ = unlinkat(&dir, temp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(FileError::Io {
                action: "give away",
                path: self.path(rel),
                source,
            });
        }
        renameat(&dir, temp.as_str(), &dir, name).map_err(|errno| {
            let _ = unlinkat(&dir, temp.as_str(), UnlinkatFlags::NoRemoveDir);
            if errno == Errno::EISDIR {
                FileError::NotAFile {
                    path: self.path(rel),
                }
            } else {
                fail(errno)
            }
        })
    }

    /// Removes the file or link `rel` (`folder`: the empty folder `rel`), never following a
    /// link; whether it was there. A folder that is not empty stays, and is no error.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub(crate) fn remove(&self, rel: &Path, folder: bool) -> Result<bool, FileError> {
        let (parent, name) = split(rel, &self.root)?;
        let Some(dir) = self.dir(parent)? else {
            return Ok(false);
        };
        let how = if folder {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(&dir, name, how) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) if folder => Ok(false),
            Err(errno) => Err(io("remove", self.path(rel), errno)),
        }
    }

    /// Opens the folder `rel` one component at a time, never following a link; creates what is
    /// missing when given an owner.
    fn walk(&self, rel: &Path, create: Option<Owner>) -> Result<Option<OwnedFd>, FileError> {
        let mut current = self.fd.try_clone().map_err(|source| FileError::Io {
            action: "open",
            path: self.root.clone(),
            source,
        })?;
        let mut at = PathBuf::new();
        for name in names(rel, &self.root)? {
            at.push(name);
            let next = match openat(&current, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let Some(owner) = create else {
                        return Ok(None);
                    };
                    self.make_dir(&current, name, &at, owner)?
                }
                Err(errno) => return Err(self.refused(&current, name, &at, errno, "open")),
            };
            current = next;
        }
        Ok(Some(current))
    }

    /// Creates the folder `name` in `dir` for `owner` and opens it.
    fn make_dir(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        at: &Path,
        owner: Owner,
    ) -> Result<OwnedFd, FileError> {
        match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
            // Another writer made it meanwhile: it is opened below, link checks and all.
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(io("create", self.path(at), errno)),
        }
        let fd = openat(dir, name, DIR_FLAGS, Mode::empty())
            .map_err(|errno| self.refused(dir, name, at, errno, "open"))?;
        owner.apply(&fd).map_err(|source| FileError::Io {
            action: "give away",
            path: self.path(at),
            source,
        })?;
        Ok(fd)
    }

    /// The error for `name` in `dir` that could not be opened: a link or the wrong kind of
    /// thing when it is one, else what the system said.
    fn refused(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        at: &Path,
        errno: Errno,
        action: &'static str,
    ) -> FileError {
        let path = self.path(at);
        if !matches!(errno, Errno::ELOOP | Errno::ENOTDIR | Errno::EISDIR) {
            return io(action, path, errno);
        }
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => match kind_of(dir, name, stat.st_mode) {
                Kind::Link(target) => FileError::Link { path, target },
                Kind::Folder => FileError::NotAFile { path },
                Kind::File | Kind::Other if errno == Errno::ENOTDIR => {
                    FileError::NotAFolder { path }
                }
                Kind::File | Kind::Other => io(action, path, errno),
            },
            Err(errno) => io(action, path, errno),
        }
    }
}

/// A temporary name beside `name`: a dot name nobody lists, unique so concurrent writers never
/// share one.
fn temp_name(name: &OsStr) -> String {
    format!(".{}.{}.tmp", name.to_string_lossy(), crate::ids::new_id())
}

fn kind_of(dir: &impl AsFd, name: &OsStr, mode: libc::mode_t) -> Kind {
    match SFlag::from_bits_truncate(mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => Kind::Folder,
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFLNK => Kind::Link(
            readlinkat(dir, name)
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from("?")),
        ),
        _ => Kind::Other,
    }
}

/// The names of a plain relative path; anything else is refused.
fn names<'a>(rel: &'a Path, root: &Path) -> Result<Vec<&'a OsStr>, FileError> {
    rel.components()
        .map(|component| match component {
            Component::Normal(name) => Ok(name),
            _ => Err(FileError::Io {
                action: "reach",
                path: root.join(rel),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "only plain names beneath the folder are allowed",
                ),
            }),
        })
        .collect()
}

/// A file's folder and name.
fn split<'a>(rel: &'a Path, root: &Path) -> Result<(&'a Path, &'a OsStr), FileError> {
    names(rel, root)?;
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io("reach", root.join(rel), Errno::EINVAL)),
    }
}

fn io(action: &'static str, path: PathBuf, errno: Errno) -> FileError {
    FileError::Io {
        action,
        path,
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests;
