//! The workspace as a tar stream, both ways: the one owner of the format a Kubernetes run's
//! workspace travels in (`sandbox/k8s/workspace.rs`), and of the rules an archive must keep to be
//! unpacked.
//!
//! - [`walk`] lists a tree without following a link: folders, regular files, links (as links).
//!   The reserved run-data folder is never listed, nor are the protected paths it is given; a
//!   FIFO, socket or device is left out and said so ([`LeftOut`]). [`write`] writes what a walk
//!   listed as a tar (GNU long names).
//! - [`unpack`] reads a tar into a folder through [`Beneath`] (no component of any path is ever
//!   followed if it is a link) and refuses, naming the entry, what the path rules of base-skill
//!   (`skill/base/paths.rs`) would refuse and what our own [`write`] never makes: an absolute
//!   path or one with `..`, the reserved folder, a protected path (`trust::inputs`), an entry
//!   beneath a link of the archive, a hard link, a device or FIFO; and more entries or bytes than
//!   its [`Caps`]. A link whose target leaves the folder (or enters the reserved one) is left out
//!   rather than refused: runs make such links for real (a virtualenv's `python`), and on the
//!   host it would point outside the workspace. [`check`] is the same reading without a write,
//!   so the host can refuse a whole archive before it changes anything.
//! - [`removed`] is what a copy back takes away: what went in and did not come back.
//!
//! The host's side (`check`, `removed`, `remove`) is the controller's, with the `kubernetes`
//! feature; the in-container roles use the rest.
//!
//! Times and owners do not travel: what is unpacked is new, owned by whom the caller says, and
//! a file's mode is `0755` when any execute bit was set, else `0644`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::paths::Workspace;
use crate::config::discover::normalize;
use crate::files::{Beneath, FileError, Kind, Owner};
use crate::trust::inputs::{self, ProtectedPath};

/// The most an archive may hold: bytes of file contents and entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Total bytes of the files' contents.
    pub bytes: u64,
    /// Entries: folders, files and links.
    pub entries: u64,
}

/// One thing of a tree, by its path relative to the tree's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A folder.
    Folder(PathBuf),
    /// A regular file of `size` bytes (when walked) with permissions `mode`.
    File {
        /// Where.
        path: PathBuf,
        /// Its size when walked.
        size: u64,
        /// Its permissions.
        mode: u32,
    },
    /// A symbolic link, and what it says.
    Link {
        /// Where.
        path: PathBuf,
        /// Its target, as written in it.
        target: PathBuf,
    },
}

impl Item {
    /// Its path, relative to the root.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub(crate) fn path(&self) -> &Path {
        match self {
            Item::Folder(path) | Item::File { path, .. } | Item::Link { path, .. } => path,
        }
    }
}

/// Something a walk or an unpack left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeftOut {
    /// Relative to the root.
    pub path: PathBuf,
    /// Why, for a message.
    pub why: String,
}

/// What [`walk`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tree {
    /// Folders before what they hold, names sorted.
    pub items: Vec<Item>,
    /// What cannot travel.
    pub left_out: Vec<LeftOut>,
}

impl Tree {
    /// The bytes of its files, as walked.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub(crate) fn bytes(&self) -> u64 {
        self.items
            .iter()
            .map(|item| match item {
                Item::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }
}

/// What [`unpack`] or [`check`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Unpacked {
    /// Every path written (or that would be), folders included.
    pub paths: BTreeSet<PathBuf>,
    /// Bytes of file contents.
    pub bytes: u64,
    /// Links whose target leaves the folder: not written.
    pub left_out: Vec<LeftOut>,
}

/// Why an archive was not written or not taken.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// More bytes than the caps allow.
    #[error(
        "the workspace archive holds more than {limit} bytes of files (the cap; reached at {})",
        path.display()
    )]
    TooBig {
        /// The cap.
        limit: u64,
        /// The entry that passed it.
        path: PathBuf,
    },
    /// More entries than the caps allow.
    #[error("the workspace archive holds more than {limit} entries (the cap)")]
    TooMany {
        /// The cap.
        limit: u64,
    },
    /// An entry no archive of ours holds.
    #[error("the workspace archive's entry {path} is refused: {why}")]
    Refused {
        /// The entry's path, as the archive writes it.
        path: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The stream is not a readable tar.
    #[error("cannot read the workspace archive: {0}")]
    Read(#[source] io::Error),
    /// The stream could not be written.
    #[error("cannot write the workspace archive: {0}")]
    Write(#[source] io::Error),
    /// A file or folder of the tree could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Walk {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The folder to unpack into refused a write (a link in the way, a folder where a file
    /// goes).
    #[error(transparent)]
    File(#[from] FileError),
}

/// The tree at `root` (not followed if it is a link itself only in its contents), less the
/// reserved folder and the `protected` paths; nothing is followed.
pub(crate) fn walk(root: &Path, protected: &[ProtectedPath]) -> Result<Tree, ArchiveError> {
    let rules = Rules::new(root, protected)?;
    let mut tree = Tree::default();
    walk_folder(root, Path::new(""), &rules, &mut tree)?;
    Ok(tree)
}

fn walk_folder(
    root: &Path,
    rel: &Path,
    rules: &Rules,
    tree: &mut Tree,
) -> Result<(), ArchiveError> {
    let folder = root.join(rel);
    let failed = |source| ArchiveError::Walk {
        path: folder.clone(),
        source,
    };
    let mut names: Vec<_> = fs::read_dir(&folder)
        .map_err(failed)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        if rules.reserved(&path) || rules.protected(&path) {
            continue;
        }
        let meta = fs::symlink_metadata(root.join(&path)).map_err(|source| ArchiveError::Walk {
            path: root.join(&path),
            source,
        })?;
        let kind = meta.file_type();
        if kind.is_dir() {
            tree.items.push(Item::Folder(path.clone()));
            walk_folder(root, &path, rules, tree)?;
        } else if kind.is_file() {
            tree.items.push(Item::File {
                path,
                size: meta.len(),
                mode: meta.permissions().mode(),
            });
        } else if kind.is_symlink() {
            let target = fs::read_link(root.join(&path)).map_err(|source| ArchiveError::Walk {
                path: root.join(&path),
                source,
            })?;
            tree.items.push(Item::Link { path, target });
        } else {
            let why = if kind.is_fifo() {
                "a FIFO"
            } else {
                "a socket or device"
            };
            tree.left_out.push(LeftOut {
                path,
                why: format!("{why}, which a workspace copy does not carry"),
            });
        }
    }
    Ok(())
}

/// Writes the `tree` walked at `root` to `out` as a tar. A file is read as it is now, never
/// through a link; one that changed size since the walk is cut or padded with zeros to its
/// walked size, one that became something else is written empty.
pub(crate) fn write(root: &Path, tree: &Tree, out: impl Write) -> Result<(), ArchiveError> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    for item in &tree.items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        match item {
            Item::Folder(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, io::empty())
            }
            Item::File { path, size, mode } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(file_mode(*mode));
                header.set_size(*size);
                let contents = open_plain(&root.join(path))
                    .map(|file| Exact::new(Some(file), *size))
                    .unwrap_or_else(|_| Exact::new(None, *size));
                builder.append_data(&mut header, path, contents)
            }
            Item::Link { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)
            }
        }
        .map_err(ArchiveError::Write)?;
    }
    builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(ArchiveError::Write)
}

/// Reads the tar `input` into `root` (an existing folder) for `owner`, under the rules of this
/// module: every refusal is an error naming the entry, and what was written before it stays.
/// Callers that must not change anything on a refusal [`check`] the same archive first.
pub(crate) fn unpack(
    input: impl Read,
    root: &Path,
    protected: &[ProtectedPath],
    caps: Caps,
    owner: Owner,
) -> Result<Unpacked, ArchiveError> {
    let beneath = Beneath::open(root)?;
    read(input, root, protected, caps, Some((&beneath, owner)))
}

/// [`unpack`] without writing anything: the same refusals, and also a link or a file of `root`
/// in the way of an entry.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
pub(crate) fn check(
    input: impl Read,
    root: &Path,
    protected: &[ProtectedPath],
    caps: Caps,
) -> Result<Unpacked, ArchiveError> {
    read(input, root, protected, caps, None)
}

fn read(
    input: impl Read,
    root: &Path,
    protected: &[ProtectedPath],
    caps: Caps,
    write: Option<(&Beneath, Owner)>,
) -> Result<Unpacked, ArchiveError> {
    let rules = Rules::new(root, protected)?;
    let looked_at = Beneath::open(root)?;
    let mut admission = Admission::new(rules, caps);
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let Some(admitted) = admission.admit(&entry)? else {
            continue;
        };
        match write {
            Some((beneath, owner)) => admitted.write(beneath, &mut entry, owner)?,
            None => admitted.check(&looked_at)?,
        }
    }
    Ok(admission.done)
}

/// Whether the archive in `file` ends with tar's end-of-archive marker (two zero blocks, which
/// [`write`] always writes): a stream cut between two entries reads as a shorter archive, whose
/// missing files [`removed`] would take for files the run removed. Leaves `file` rewound.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
pub(crate) fn ends_whole(file: &mut fs::File) -> io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let length = file.seek(SeekFrom::End(0))?;
    let whole = if length < 1024 || length % 512 != 0 {
        false
    } else {
        file.seek(SeekFrom::End(-1024))?;
        let mut end = [1u8; 1024];
        file.read_exact(&mut end)?;
        end.iter().all(|b| *b == 0)
    };
    file.rewind()?;
    Ok(whole)
}

/// What `sent` (a walk of what went in) held that `back` (what came back) does not: what the
/// run removed, the deepest first. The `protected` paths never travel back, so they are never
/// among them.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
pub(crate) fn removed(sent: &Tree, back: &Unpacked, protected: &[ProtectedPath]) -> Vec<Item> {
    let mut gone: Vec<Item> = sent
        .items
        .iter()
        .filter(|item| !back.paths.contains(item.path()))
        .filter(|item| inputs::protecting(protected, item.path()).is_none())
        .cloned()
        .collect();
    gone.sort_by(|a, b| b.path().cmp(a.path()));
    gone
}

/// Removes `items` (from [`removed`]) beneath `root`: files and links, and folders left empty.
/// Nothing is followed; what is gone already is no error.
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
pub(crate) fn remove(root: &Path, items: &[Item]) -> Result<usize, ArchiveError> {
    let beneath = Beneath::open(root)?;
    let mut count = 0;
    for item in items {
        if beneath.remove(item.path(), matches!(item, Item::Folder(_)))? {
            count += 1;
        }
    }
    Ok(count)
}

/// The permissions a file is written with: `0755` when any execute bit is set, else `0644`.
fn file_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

/// Opens a regular file without following a link, without blocking on a FIFO.
fn open_plain(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::other("not a regular file"))
    }
}

/// Exactly `size` bytes of a file: cut, or padded with zeros when it ends early.
struct Exact {
    file: Option<fs::File>,
    left: u64,
}

impl Exact {
    fn new(file: Option<fs::File>, size: u64) -> Exact {
        Exact { file, left: size }
    }
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let got = match &mut self.file {
            Some(file) => file.read(&mut buf[..want])?,
            None => 0,
        };
        let got = if got == 0 {
            self.file = None;
            buf[..want].fill(0);
            want
        } else {
            got
        };
        self.left -= got as u64;
        Ok(got)
    }
}

/// The path rules, as base-skill keeps them for the same root.
struct Rules {
    workspace: Workspace,
    protected: Vec<ProtectedPath>,
}

impl Rules {
    fn new(root: &Path, protected: &[ProtectedPath]) -> Result<Rules, ArchiveError> {
        let workspace = Workspace::new(root).map_err(|e| ArchiveError::Walk {
            path: root.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        Ok(Rules {
            workspace,
            protected: protected.to_vec(),
        })
    }

    /// Whether `rel` is the reserved folder or below it (ignoring case, as base-skill does).
    fn reserved(&self, rel: &Path) -> bool {
        self.workspace.is_reserved(&self.workspace.root().join(rel))
    }

    fn protected(&self, rel: &Path) -> bool {
        inputs::protecting(&self.protected, rel).is_some()
    }

    /// Whether a link at `rel` saying `target` points inside the root, outside the reserved
    /// folder, as far as its words go (nothing is resolved).
    fn link_stays_inside(&self, rel: &Path, target: &Path) -> bool {
        let root = self.workspace.root();
        let from = root.join(rel.parent().unwrap_or(Path::new("")));
        let lexical = normalize(&from.join(target));
        self.workspace.contains(&lexical) && !self.workspace.is_reserved(&lexical)
    }
}

/// Entries admitted so far, against the rules and the caps.
struct Admission {
    rules: Rules,
    caps: Caps,
    entries: u64,
    /// Links of the archive (written or left out): nothing may lie beneath one.
    links: BTreeSet<PathBuf>,
    done: Unpacked,
}

/// One entry that passed, and what to do with it.
enum Admitted {
    Folder(PathBuf),
    File(PathBuf, u32),
    Link(PathBuf, PathBuf),
}

impl Admission {
    fn new(rules: Rules, caps: Caps) -> Admission {
        Admission {
            rules,
            caps,
            entries: 0,
            links: BTreeSet::new(),
            done: Unpacked::default(),
        }
    }

    /// What to do with `entry`; `None`: leave it out (said in `done.left_out`).
    fn admit<R: Read>(&mut self, entry: &tar::Entry<R>) -> Result<Option<Admitted>, ArchiveError> {
        let raw = entry.path_bytes();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |why| ArchiveError::Refused {
            path: shown.clone(),
            why,
        };
        let path = plain(&raw).ok_or_else(|| {
            refuse("not a plain relative path (absolute, empty, or with `.` or `..`)")
        })?;
        self.entries += 1;
        if self.entries > self.caps.entries {
            return Err(ArchiveError::TooMany {
                limit: self.caps.entries,
            });
        }
        if self.rules.reserved(&path) {
            return Err(refuse("it is in the reserved run-data folder"));
        }
        if self.rules.protected(&path) {
            return Err(refuse(
                "it is a protected path (see `writable` under [sandbox])",
            ));
        }
        if path.ancestors().skip(1).any(|up| self.links.contains(up)) {
            return Err(refuse("it lies beneath a link of the archive"));
        }
        let header = entry.header();
        let admitted = match header.entry_type() {
            tar::EntryType::Directory => Admitted::Folder(path.clone()),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = header.size().map_err(ArchiveError::Read)?;
                self.done.bytes = self.done.bytes.saturating_add(size);
                if self.done.bytes > self.caps.bytes {
                    return Err(ArchiveError::TooBig {
                        limit: self.caps.bytes,
                        path,
                    });
                }
                Admitted::File(path.clone(), header.mode().map_err(ArchiveError::Read)?)
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(ArchiveError::Read)?
                    .ok_or_else(|| refuse("a link without a target"))?
                    .into_owned();
                self.links.insert(path.clone());
                if !self.rules.link_stays_inside(&path, &target) {
                    self.done.left_out.push(LeftOut {
                        why: format!(
                            "a link to {}, outside the workspace (or into its run data)",
                            target.display()
                        ),
                        path,
                    });
                    return Ok(None);
                }
                Admitted::Link(path.clone(), target)
            }
            tar::EntryType::Link => return Err(refuse("a hard link")),
            _ => return Err(refuse("neither a folder, a regular file nor a link")),
        };
        self.done.paths.insert(path);
        Ok(Some(admitted))
    }
}

impl Admitted {
    fn write(
        self,
        beneath: &Beneath,
        contents: &mut dyn Read,
        owner: Owner,
    ) -> Result<(), ArchiveError> {
        match self {
            Admitted::Folder(path) => beneath.create_dir_all(&path, owner).map(|_| ()),
            Admitted::File(path, mode) => beneath
                .write_atomic_from(&path, contents, file_mode(mode), owner)
                .map(|_| ()),
            Admitted::Link(path, target) => beneath.symlink(&path, &target, owner),
        }
        .map_err(ArchiveError::File)
    }

    /// Whether writing would get through: no link or file of the folder on the way, and no
    /// folder where a file or link goes.
    fn check(self, beneath: &Beneath) -> Result<(), ArchiveError> {
        let (path, folder) = match self {
            Admitted::Folder(path) => (path, true),
            Admitted::File(path, _) | Admitted::Link(path, _) => (path, false),
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        beneath.dir(parent)?;
        match beneath.kind(&path)? {
            Some(Kind::Folder) if !folder => Err(FileError::NotAFile {
                path: beneath.path(&path),
            }
            .into()),
            Some(Kind::Link(target)) if folder => Err(FileError::Link {
                path: beneath.path(&path),
                target,
            }
            .into()),
            Some(Kind::File | Kind::Other) if folder => Err(FileError::NotAFolder {
                path: beneath.path(&path),
            }
            .into()),
            _ => Ok(()),
        }
    }
}

/// `raw` as a path of normal components only (a trailing `/` allowed); `None` otherwise.
fn plain(raw: &[u8]) -> Option<PathBuf> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests;
