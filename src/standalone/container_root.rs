//! Which of the container's files are the recipe's, for a skill built from its own Dockerfile
//! that is granted the workspace: the standalone image is built `FROM` its recipe's image
//! (`super::image::recipe_base`), so the recipe's files are at their real paths, among ours. The
//! supervisor lists them at start — everything under `/` but [`NOT_THE_RECIPE_S`] and the
//! container's mount points — and the skill may read and execute them (`super::principals`).
//!
//! Whatever the recipe's image has is in the list: its tools, its interpreters, its `/etc`,
//! `/var`, `/home`, `/root` (file modes still apply: the skill runs as the workspace's owner, not
//! root). What a platform mounts into the container (a secret, a config file, `/etc/hosts`) is a
//! mount point, and left out; a link is followed to where it leads, and left out when that is
//! one of [`NOT_THE_RECIPE_S`].

use std::path::{Path, PathBuf};

use super::skill_root::SKILLS_DIR;
use crate::contract::paths::WORKSPACE_MOUNT;

/// What of the container's root is not the recipe's, so never granted by this list: the
/// workspace (granted per the skill's grant, with the protected paths' rules), `/run` (the
/// supervisor's folders: every principal's home and socket, `super::STATE_DIR`), `/proc`, `/sys`
/// and `/dev` (the kernel's: `/proc` and the standard devices are granted as to every principal,
/// `/sys` to none), `/tmp` (the skill gets a private `HOME` and `TMPDIR` as every principal), and
/// the other skills' own folders. The folders above one of these (`/opt`) are listed in turn.
pub(crate) const NOT_THE_RECIPE_S: [&str; 7] = [
    WORKSPACE_MOUNT,
    "/run",
    "/proc",
    "/sys",
    "/dev",
    "/tmp",
    SKILLS_DIR,
];

/// One entry of a folder: its path, and where it leads (itself unless it is a link; `None` when
/// it leads nowhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `folder/name`.
    pub path: PathBuf,
    /// Its resolved path.
    pub leads_to: Option<PathBuf>,
}

/// The recipe's files under `/`: each entry of `/` that is neither in [`NOT_THE_RECIPE_S`], nor
/// one of `mounts`, nor leads into one of them, whole; the folders above one of those listed in
/// turn. `list` gives a folder's entries ([`list_folder`]).
pub(crate) fn recipe_files(
    list: &impl Fn(&Path) -> Vec<Entry>,
    mounts: &[PathBuf],
) -> Vec<PathBuf> {
    let excluded: Vec<PathBuf> = NOT_THE_RECIPE_S
        .iter()
        .map(PathBuf::from)
        .chain(
            mounts
                .iter()
                .filter(|m| m.as_path() != Path::new("/"))
                .cloned(),
        )
        .collect();
    let mut found = Vec::new();
    walk(Path::new("/"), list, &excluded, &mut found);
    found
}

fn walk(
    folder: &Path,
    list: &impl Fn(&Path) -> Vec<Entry>,
    excluded: &[PathBuf],
    found: &mut Vec<PathBuf>,
) {
    for entry in list(folder) {
        let Some(leads_to) = &entry.leads_to else {
            continue;
        };
        let within = |path: &Path| excluded.iter().any(|e| path.starts_with(e));
        if within(&entry.path) || within(leads_to) {
            continue;
        }
        let above = excluded
            .iter()
            .any(|e| e.starts_with(&entry.path) || e.starts_with(leads_to));
        match (above, leads_to == &entry.path) {
            (false, _) => found.push(entry.path),
            // Listed in turn, unless a link: what it leads to is listed where it is.
            (true, true) => walk(&entry.path, list, excluded, found),
            (true, false) => {}
        }
    }
}

/// A folder's entries as the container has them, links resolved (an unreadable folder: none).
pub(crate) fn list_folder(folder: &Path) -> Vec<Entry> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            Entry {
                leads_to: std::fs::canonicalize(&path).ok(),
                path,
            }
        })
        .collect()
}

/// The container's mount points (`/proc/self/mountinfo`'s fifth field, its octal escapes — a
/// space is `\040` — decoded).
pub(crate) fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

fn unescape(field: &str) -> String {
    let mut out = Vec::new();
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let text = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container's root as `ls` would show it: the recipe's folders and ours.
    fn fake_root(folder: &Path) -> Vec<Entry> {
        let names: &[&str] = match folder.to_str() {
            Some("/") => &[
                "bin",
                "dev",
                "etc",
                "home",
                "lib",
                "opt",
                "proc",
                "root",
                "run",
                "srv",
                "sys",
                "tmp",
                "usr",
                "var",
                "workspace",
                "secrets",
                "escape",
                "broken",
                ".dockerenv",
            ],
            Some("/opt") => &["perstack-skills", "venv"],
            Some("/var") => &["lib", "run"],
            _ => &[],
        };
        names
            .iter()
            .map(|name| {
                let path = folder.join(name);
                let leads_to = match path.to_str() {
                    Some("/bin") => Some(PathBuf::from("/usr/bin")),
                    Some("/escape") => Some(PathBuf::from("/run/perstack")),
                    Some("/var/run") => Some(PathBuf::from("/run")),
                    Some("/broken") => None,
                    _ => Some(path.clone()),
                };
                Entry { path, leads_to }
            })
            .collect()
    }

    #[test]
    fn the_recipe_s_files_are_the_root_s_entries_but_ours_the_kernel_s_and_mounts() {
        let mounts = ["/", "/proc", "/dev", "/workspace", "/secrets"].map(PathBuf::from);
        let found = recipe_files(&fake_root, &mounts);
        let expected = [
            "/bin",
            "/etc",
            "/home",
            "/lib",
            "/opt/venv",
            "/root",
            "/srv",
            "/usr",
            "/var",
            "/.dockerenv",
        ]
        .map(PathBuf::from);
        assert_eq!(found, expected);
        // Never ours, another skill's, the kernel's, a mount, a link into them, nor `/` itself.
        for private in [
            "/",
            "/run",
            "/proc",
            "/sys",
            "/dev",
            "/tmp",
            "/workspace",
            "/opt",
            "/opt/perstack-skills",
            "/secrets",
            "/escape",
            "/broken",
        ] {
            assert!(!found.contains(&PathBuf::from(private)), "{private}");
        }
    }

    #[test]
    fn a_mount_inside_a_recipe_folder_leaves_its_folder_listed_in_turn() {
        let mounts = [PathBuf::from("/var/lib")];
        let found = recipe_files(&fake_root, &mounts);
        assert!(!found.contains(&PathBuf::from("/var")), "{found:?}");
        assert!(!found.contains(&PathBuf::from("/var/lib")), "{found:?}");
        // `/var/run` leads to `/run`: left out.
        assert!(!found.iter().any(|p| p.starts_with("/var")), "{found:?}");
    }

    #[test]
    fn mount_points_are_decoded() {
        assert_eq!(unescape("/mnt/my\\040data"), "/mnt/my data");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/odd\\"), "/odd\\");
    }
}
