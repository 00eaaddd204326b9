//! A protected path that is a link out of the workspace is refused before a run starts: the
//! controller would read, and the mounts protect, a file that is not the workspace's — and the
//! link itself, being the workspace's, is the run's to replace. A link that stays inside the
//! workspace is fine.

use std::path::{Component, Path, PathBuf};

use super::inputs::{GIT_DIR, Rule, TrustedInput};

/// A protected path that leads out of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOut {
    /// The link (the protected path, or a folder on its way).
    pub path: PathBuf,
    /// What the protected path is to the controller.
    pub what: &'static str,
    /// Where the link resolves to.
    pub resolves_to: PathBuf,
}

/// The links out of `workspace` (canonical) on the way to each trusted input inside it and to
/// `.git`, each named once.
pub(crate) fn links_out(workspace: &Path, inputs: &[TrustedInput]) -> Vec<LinkOut> {
    let candidates = inputs
        .iter()
        .map(|input| (input.path.clone(), Rule::Input(input.kind)))
        .chain(std::iter::once((workspace.join(GIT_DIR), Rule::GitDir)));
    let mut found: Vec<LinkOut> = Vec::new();
    for (path, rule) in candidates {
        let Ok(relative) = path.strip_prefix(workspace) else {
            continue;
        };
        let mut at = workspace.to_path_buf();
        for component in relative.components() {
            let Component::Normal(name) = component else {
                break;
            };
            at.push(name);
            let is_link = std::fs::symlink_metadata(&at)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if !is_link {
                continue;
            }
            let resolves_to = resolve(&at);
            if !resolves_to.starts_with(workspace) && !found.iter().any(|f| f.path == at) {
                found.push(LinkOut {
                    path: at.clone(),
                    what: rule.describe(),
                    resolves_to,
                });
            }
            break;
        }
    }
    found
}

/// Where the link `path` leads: canonical when it resolves, else its target taken from its
/// folder (a dangling link still points somewhere).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let target = std::fs::read_link(path).unwrap_or_default();
    let folder = path.parent().unwrap_or(Path::new("/"));
    super::inputs::resolve_lenient(&folder.join(target))
}

/// The refusal, one line per link.
pub(crate) fn refusal(links: &[LinkOut]) -> String {
    let mut text = String::from("protected paths of the workspace are links out of it:");
    for link in links {
        text.push_str(&format!(
            "\n  - {} ({}) is a symbolic link to {}, outside the workspace",
            link.path.display(),
            link.what,
            link.resolves_to.display()
        ));
    }
    text.push_str("\n  hint: a run could replace the link, and the controller would trust what it then points to; put the file itself there (or remove the link), or name the file where it is (--config, --env-path, envPath)");
    text
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::trust::inputs::InputKind;

    fn input(kind: InputKind, path: PathBuf) -> TrustedInput {
        TrustedInput { kind, path }
    }

    #[test]
    fn a_protected_path_linking_out_is_found_and_one_linking_inside_is_not() {
        let outside = tempfile::tempdir().expect("tempdir");
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::write(outside.path().join("secrets.env"), "A=1").expect("write");
        symlink(outside.path().join("secrets.env"), ws.join(".env")).expect("symlink");
        std::fs::write(ws.join("real.env"), "A=1").expect("write");
        symlink("real.env", ws.join(".env.local")).expect("symlink");
        symlink(outside.path(), ws.join("mock")).expect("symlink");
        symlink("/nowhere/git", ws.join(".git")).expect("symlink");
        let inputs = [
            input(InputKind::Dotenv, ws.join(".env")),
            input(InputKind::Dotenv, ws.join(".env.local")),
            input(InputKind::MockScript, ws.join("mock/script.toml")),
            input(InputKind::Config, outside.path().join("perstack.toml")),
        ];
        let found = links_out(&ws, &inputs);
        let canonical_outside = std::fs::canonicalize(outside.path()).expect("canonical");
        assert_eq!(
            found,
            vec![
                LinkOut {
                    path: ws.join(".env"),
                    what: "a dotenv file the controller reads",
                    resolves_to: canonical_outside.join("secrets.env"),
                },
                LinkOut {
                    path: ws.join("mock"),
                    what: "the mock provider's script the controller reads",
                    resolves_to: canonical_outside.clone(),
                },
                LinkOut {
                    path: ws.join(".git"),
                    what: "git's folder, whose hooks and config run on the host",
                    resolves_to: PathBuf::from("/nowhere/git"),
                },
            ]
        );
        let message = refusal(&found);
        assert!(
            message.contains(&format!(
                "{} (a dotenv file the controller reads) is a symbolic link to {}",
                ws.join(".env").display(),
                canonical_outside.join("secrets.env").display()
            )),
            "{message}"
        );
    }
}
