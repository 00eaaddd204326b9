//! The narrower Landlock domain of a program that a principal with the workspace read-write
//! runs for the model (the base tools' `exec`): the workspace's protected paths stay as they
//! are, which the principal's own domain — a grant of the whole `/workspace` tree — cannot say.
//!
//! Landlock grants trees: a right on a folder holds for everything below it. So a folder that
//! holds a protected path (the workspace root holds `.git` and `perstack`) can get no right to
//! change anything, or the right would hold inside the protected path too — `MAKE_SYM` on the
//! root is a symlink planted in `.git/hooks`, `WRITE_FILE` is `.git/config` rewritten,
//! `REMOVE_DIR` is `.git` renamed away. Instead each entry that is neither protected nor above a
//! protected path gets every right, on its own: the program may change everything inside those,
//! and nothing directly in the folders above protected paths — it cannot create, remove or
//! rename an entry there (so not a `.git` the workspace lacks either), though it may write the
//! files that were there when it started. The rules are computed at each start, so what an
//! earlier command made is the next one's to change.
//!
//! The domain is stacked on the principal's own (Landlock intersects them) and handles the
//! rights that change files only: reading and executing stay as the principal's domain grants.
//! It is prepared before the fork ([`ExecDomain::prepare`]) and enforced in the child right
//! before `execve` ([`restrict`], two system calls, async-signal-safe).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr,
};

use super::landlock::{LandlockError, TARGET_ABI};

/// What an entry of a folder is, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum EntryKind {
    /// A folder (not a symlink to one).
    Folder,
    /// A regular file.
    File,
    /// A symlink, socket, FIFO or device: granted nothing (a symlink's target is governed
    /// where it lies).
    Other,
}

/// The entries of `root` a program may change, with their kind: every entry of the root and of
/// each folder above a protected path that is neither protected nor above one (compared
/// ignoring ASCII case, as a case-insensitive host file system would). `protected` is relative
/// to the root; `list` gives a folder's entries. An entry where a folder above a protected path
/// should be but that is no folder (a `.git` file while `.git/hooks` is protected) is left
/// alone.
pub(crate) fn writable_entries(
    root: &Path,
    protected: &[PathBuf],
    list: impl Fn(&Path) -> Vec<(OsString, EntryKind)>,
) -> Vec<(PathBuf, EntryKind)> {
    let mut writable = Vec::new();
    let mut folders = vec![PathBuf::new()];
    while let Some(folder) = folders.pop() {
        for (name, kind) in list(&root.join(&folder)) {
            let relative = folder.join(&name);
            if protected.iter().any(|p| is_within(p, &relative)) {
                continue;
            }
            if protected.iter().any(|p| is_within(&relative, p)) {
                if kind == EntryKind::Folder {
                    folders.push(relative);
                }
                continue;
            }
            if kind != EntryKind::Other {
                writable.push((root.join(relative), kind));
            }
        }
    }
    writable.sort();
    writable
}

/// Whether `path` is `base` or lies below it, component by component, ignoring ASCII case.
fn is_within(base: &Path, path: &Path) -> bool {
    let mut have = path.components();
    base.components().all(|c| {
        have.next().is_some_and(|h| match (c, h) {
            (Component::Normal(c), Component::Normal(h)) => c
                .to_string_lossy()
                .eq_ignore_ascii_case(&h.to_string_lossy()),
            (c, h) => c == h,
        })
    })
}

/// A folder's entries as the file system has them, symlinks not followed; an unreadable
/// folder has none.
pub(crate) fn list_folder(folder: &Path) -> Vec<(OsString, EntryKind)> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| {
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => EntryKind::Folder,
                Ok(t) if t.is_file() => EntryKind::File,
                _ => EntryKind::Other,
            };
            (entry.file_name(), kind)
        })
        .collect()
}

/// The rights this domain handles: every right that changes files; reading and executing are
/// left to the principal's own domain.
fn handled() -> BitFlags<AccessFs> {
    AccessFs::from_all(TARGET_ABI) & !(AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute)
}

/// A prepared ruleset, to be enforced in the child before `execve`.
#[derive(Debug)]
pub(crate) struct ExecDomain {
    /// `None` when the kernel has no Landlock (a weaker isolation the supervisor reported).
    fd: Option<OwnedFd>,
}

impl ExecDomain {
    /// The ruleset for a program started in `root`: the [`writable_entries`] with every right,
    /// and `private` (its home, the devices every program writes) as well. Paths that vanished
    /// meanwhile grant nothing.
    pub(crate) fn prepare(
        root: &Path,
        protected: &[PathBuf],
        private: &[PathBuf],
    ) -> Result<ExecDomain, LandlockError> {
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(handled())?
            .create()?;
        let folder = |p: &PathBuf| {
            let kind = match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => EntryKind::Folder,
                _ => EntryKind::File,
            };
            (p.clone(), kind)
        };
        let entries = writable_entries(root, protected, list_folder);
        for (path, kind) in entries.into_iter().chain(private.iter().map(folder)) {
            let Ok(fd) = PathFd::new(&path) else { continue };
            let rights = match kind {
                EntryKind::Folder => handled(),
                _ => handled() & AccessFs::from_file(TARGET_ABI),
            };
            ruleset = ruleset.add_rule(PathBeneath::new(fd, rights))?;
        }
        Ok(ExecDomain { fd: ruleset.into() })
    }

    /// The ruleset's descriptor for [`restrict`]; `None` without Landlock.
    pub(crate) fn raw_fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(AsRawFd::as_raw_fd)
    }
}

/// Enforces the ruleset `fd` on the calling thread. For a `pre_exec` hook: two system calls,
/// nothing allocated.
pub(crate) fn restrict(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: prctl and landlock_restrict_self take integers and touch no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use EntryKind::{File, Folder, Other};

    /// A file system as a map from folder (relative) to its entries.
    fn tree(
        folders: &[(&str, &[(&str, EntryKind)])],
    ) -> impl Fn(&Path) -> Vec<(OsString, EntryKind)> {
        let map: BTreeMap<PathBuf, Vec<(OsString, EntryKind)>> = folders
            .iter()
            .map(|(folder, entries)| {
                let entries = entries
                    .iter()
                    .map(|(n, k)| (OsString::from(n), *k))
                    .collect();
                (Path::new("/w").join(folder), entries)
            })
            .collect();
        move |folder: &Path| map.get(folder).cloned().unwrap_or_default()
    }

    fn relative(entries: Vec<(PathBuf, EntryKind)>) -> Vec<String> {
        entries
            .into_iter()
            .map(|(p, _)| p.strip_prefix("/w").expect("below").display().to_string())
            .collect()
    }

    fn protected(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn every_entry_but_the_protected_ones_is_writable_and_the_root_itself_is_not() {
        let list = tree(&[(
            "",
            &[
                (".git", Folder),
                ("perstack", Folder),
                ("src", Folder),
                ("README.md", File),
                ("link", Other),
            ],
        )]);
        let writable = writable_entries(Path::new("/w"), &protected(&[".git", "perstack"]), list);
        assert_eq!(
            writable,
            vec![
                (PathBuf::from("/w/README.md"), File),
                (PathBuf::from("/w/src"), Folder)
            ]
        );
    }

    #[test]
    fn folders_above_nested_protected_paths_are_entered_not_granted() {
        // `.git` made writable: its hooks and config stay protected, as does a dotenv file in
        // `conf`.
        let list = tree(&[
            ("", &[(".git", Folder), ("conf", Folder), ("a", File)]),
            (
                ".git",
                &[
                    ("hooks", Folder),
                    ("config", File),
                    ("objects", Folder),
                    ("HEAD", File),
                ],
            ),
            ("conf", &[("dev.env", File), ("other.env", File)]),
        ]);
        let rules = protected(&[".git/config", ".git/hooks", "conf/dev.env", "perstack"]);
        assert_eq!(
            relative(writable_entries(Path::new("/w"), &rules, list)),
            [".git/HEAD", ".git/objects", "a", "conf/other.env"]
        );
    }

    #[test]
    fn an_absent_protected_name_has_no_entry_to_grant_and_its_folder_none_to_create_it() {
        let list = tree(&[("", &[("src", Folder)])]);
        assert_eq!(
            relative(writable_entries(
                Path::new("/w"),
                &protected(&[".git", "perstack"]),
                list
            )),
            ["src"]
        );
    }

    #[test]
    fn names_compare_ignoring_case_and_a_file_above_a_protected_path_is_left_alone() {
        let list = tree(&[("", &[(".GIT", Folder), ("Perstack", File), ("x", File)])]);
        assert_eq!(
            relative(writable_entries(
                Path::new("/w"),
                &protected(&[".git/hooks", "perstack"]),
                list
            )),
            ["x"]
        );
    }

    #[test]
    fn the_domain_handles_changes_only() {
        let rights = handled();
        assert!(!rights.intersects(AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::Execute));
        assert!(rights.contains(AccessFs::WriteFile | AccessFs::MakeSym | AccessFs::RemoveDir));
        assert!(rights.contains(AccessFs::Refer | AccessFs::Truncate));
    }
}
