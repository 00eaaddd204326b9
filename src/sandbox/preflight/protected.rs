//! The workspace's protected paths (`trust::inputs`) as they are on disk before the run: which
//! exist, which must be held by a placeholder, and none read through a symlink in the
//! workspace — a link there could be pointed elsewhere by a run, so the controller would read
//! what the run chose.

use std::io;
use std::path::{Path, PathBuf};

use super::Problem;
use crate::trust::inputs::{self, ProtectedPath, Rule, TrustedInput};

/// One protected path, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtectedEntry {
    /// What is protected, relative to the workspace.
    pub path: ProtectedPath,
    /// Whether something is there already; else the run holds the place with an empty file or
    /// folder of its own (so a run cannot create it), removed afterwards.
    pub exists: bool,
}

/// The protected paths of a run's workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProtectedLayout {
    /// Sorted by path; the run-data folder included.
    pub entries: Vec<ProtectedEntry>,
    /// Folders above a missing protected path that do not exist either (relative, outermost
    /// first): made for the run to hold the placeholder, removed afterwards.
    pub missing_dirs: Vec<PathBuf>,
}

/// Finds each protected path of `workspace` (canonical). Refused: a trusted input read through
/// a symlink that lies in the workspace, and a protected path that is one.
pub(crate) fn check_protected(
    trusted: &[TrustedInput],
    workspace: &Path,
    writable: &[String],
) -> Result<ProtectedLayout, Vec<Problem>> {
    let problems: Vec<Problem> = trusted
        .iter()
        .filter_map(|input| link_in_workspace(&input.path, workspace).map(|link| (input, link)))
        .map(|(input, (link, target))| Problem {
            location: None,
            message: format!(
                "{} ({}) is read through the symlink {} (to {}), which lies in the workspace: a \
                 run could point it elsewhere. Replace the link with the file itself, or name the \
                 file's real path",
                input.path.display(),
                input.kind.describe(),
                link.display(),
                target.display()
            ),
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let resolved: Vec<TrustedInput> = trusted
        .iter()
        .map(|input| TrustedInput {
            kind: input.kind,
            path: inputs::resolve_lenient(&input.path),
        })
        .collect();
    let mut layout = ProtectedLayout::default();
    let mut problems = Vec::new();
    for path in inputs::protected_paths(&resolved, workspace, writable) {
        match find(workspace, path, &mut layout.missing_dirs) {
            Ok(entry) => layout.entries.push(entry),
            Err(problem) => problems.push(problem),
        }
    }
    match problems.is_empty() {
        true => Ok(layout),
        false => Err(problems),
    }
}

/// How `path` is on disk; the folders above it that are missing are added to `missing_dirs`.
fn find(
    workspace: &Path,
    path: ProtectedPath,
    missing_dirs: &mut Vec<PathBuf>,
) -> Result<ProtectedEntry, Problem> {
    let refuse = |message: String| Problem {
        location: None,
        message,
    };
    let mut above = PathBuf::new();
    let parents: Vec<_> = path.relative.parent().into_iter().collect();
    for component in parents.iter().flat_map(|p| p.components()) {
        above.push(component);
        match std::fs::symlink_metadata(workspace.join(&above)) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(refuse(format!(
                    "{} is protected ({}), but {} in the workspace is not a folder; make it one \
                     or remove it",
                    path.relative.display(),
                    path.rule.describe(),
                    above.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !missing_dirs.contains(&above) {
                    missing_dirs.push(above.clone());
                }
            }
            Err(e) => return Err(refuse(format!("cannot inspect {}: {e}", above.display()))),
        }
    }
    let full = workspace.join(&path.relative);
    let exists = match std::fs::symlink_metadata(&full) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(&full).unwrap_or_default();
            return Err(refuse(format!(
                "{} is a symlink (to {}); it is protected ({}), and a link could be pointed \
                 elsewhere by a run. Replace it with the file itself",
                full.display(),
                target.display(),
                path.rule.describe()
            )));
        }
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(refuse(format!("cannot inspect {}: {e}", full.display()))),
    };
    // The run data is hidden by a tmpfs whose mount point the run makes anyway.
    let exists = exists || path.rule == Rule::RunData;
    Ok(ProtectedEntry { path, exists })
}

/// The first symlink on `path`'s way that lies in the workspace (its folder resolves inside
/// it), with what it points to.
fn link_in_workspace(path: &Path, workspace: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut walked = PathBuf::new();
    for component in path.components() {
        walked.push(component);
        let Ok(meta) = std::fs::symlink_metadata(&walked) else {
            return None;
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        let folder = walked
            .parent()
            .and_then(|p| std::fs::canonicalize(p).ok())?;
        if folder.starts_with(workspace) {
            let target = std::fs::read_link(&walked).unwrap_or_default();
            return Some((walked, target));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::trust::inputs::InputKind;

    fn input(kind: InputKind, path: PathBuf) -> TrustedInput {
        TrustedInput { kind, path }
    }

    fn workspace() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ws = std::fs::canonicalize(dir.path()).unwrap();
        (dir, ws)
    }

    fn found(layout: &ProtectedLayout) -> Vec<(String, bool)> {
        layout
            .entries
            .iter()
            .map(|e| (e.path.relative.display().to_string(), e.exists))
            .collect()
    }

    #[test]
    fn existing_and_missing_protected_paths_are_told_apart() {
        let (_dir, ws) = workspace();
        std::fs::write(ws.join("perstack.toml"), "").unwrap();
        std::fs::create_dir(ws.join(".git")).unwrap();
        let trusted = [
            input(InputKind::Config, ws.join("perstack.toml")),
            input(InputKind::Dotenv, ws.join(".env")),
            input(InputKind::Dotenv, ws.join("conf/deeper/dev.env")),
        ];
        let layout = check_protected(&trusted, &ws, &[]).unwrap();
        assert_eq!(
            found(&layout),
            [
                (".env".to_string(), false),
                (".git".to_string(), true),
                ("conf/deeper/dev.env".to_string(), false),
                ("perstack".to_string(), true),
                ("perstack.toml".to_string(), true),
            ]
        );
        assert_eq!(
            layout.missing_dirs,
            [PathBuf::from("conf"), PathBuf::from("conf/deeper")]
        );
    }

    #[test]
    fn a_protected_path_that_is_a_symlink_is_refused_naming_it() {
        let (_dir, ws) = workspace();
        symlink("/etc/passwd", ws.join(".env")).unwrap();
        let trusted = [input(InputKind::Dotenv, ws.join(".env"))];
        let problems = check_protected(&trusted, &ws, &[]).unwrap_err();
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].contains("is read through the symlink")
                && messages[0].contains("/etc/passwd"),
            "{messages:?}"
        );
        let (_dir, ws) = workspace();
        symlink("elsewhere", ws.join(".git")).unwrap();
        let problems = check_protected(&[], &ws, &[]).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains(".git is a symlink (to elsewhere)"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_trusted_input_read_through_a_folder_link_in_the_workspace_is_refused() {
        let (_dir, ws) = workspace();
        std::fs::create_dir(ws.join("real")).unwrap();
        symlink("real", ws.join("conf")).unwrap();
        let trusted = [input(InputKind::Dotenv, ws.join("conf/dev.env"))];
        let problems = check_protected(&trusted, &ws, &[]).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("conf (to real), which lies in the workspace"),
            "{problems:?}"
        );
    }

    #[test]
    fn links_outside_the_workspace_are_the_users_own_business() {
        let (_dir, root) = workspace();
        let ws = root.join("ws");
        std::fs::create_dir(&ws).unwrap();
        std::fs::write(root.join("shared.env"), "").unwrap();
        symlink(root.join("shared.env"), root.join("link.env")).unwrap();
        let trusted = [input(InputKind::Dotenv, root.join("link.env"))];
        let layout = check_protected(&trusted, &ws, &[]).unwrap();
        assert_eq!(
            found(&layout),
            [(".git".to_string(), false), ("perstack".to_string(), true)]
        );
    }

    #[test]
    fn a_file_where_a_protected_path_needs_a_folder_is_refused() {
        let (_dir, ws) = workspace();
        std::fs::write(ws.join("conf"), "").unwrap();
        let trusted = [input(InputKind::Dotenv, ws.join("conf/dev.env"))];
        let problems = check_protected(&trusted, &ws, &[]).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("conf in the workspace is not a folder"),
            "{problems:?}"
        );
    }
}
