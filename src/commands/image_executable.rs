//! Which executable our images carry: `perstack-sandbox-roles` from beside this program — the
//! in-container roles alone, without the host's commands and the Kubernetes client — when it
//! carries this build's id (`contract::build_id`); else this program itself, which plays every
//! role too, with the reason. Either way it must be static (it runs on `scratch`).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::artifacts::{ArtifactError, has_interpreter};
use crate::contract::build_id::{BUILD_MARK, ROLES_EXECUTABLE};
use crate::sandbox::images::recipes::Executable;

/// The executable chosen for the images.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    /// Its bytes, checked to be static.
    pub bytes: Bytes,
    /// Where it was read from.
    pub path: PathBuf,
    /// Which one it is.
    pub executable: Executable,
    /// Why the images get this whole program instead of the roles executable; `None` when they
    /// get the roles one.
    pub fallback: Option<String>,
}

impl Chosen {
    /// What `doctor` says about it: its size, which one it is, and why.
    pub(crate) fn describe(&self) -> String {
        let size = self.bytes.len() as f64 / 1e6;
        match &self.fallback {
            None => format!(
                "static, {size:.1} MB: {ROLES_EXECUTABLE} beside this one, of the same build (the \
                 in-container roles alone: no host commands, no Kubernetes client), copied into \
                 every image as is"
            ),
            Some(why) => format!(
                "static, {size:.1} MB: this one, host commands and all, copied into every image \
                 as is, not the lean {ROLES_EXECUTABLE}: {why}"
            ),
        }
    }

    /// What a run or a build tells its user when the images get this whole program.
    pub(crate) fn note(&self) -> Option<String> {
        self.fallback.as_ref().map(|why| {
            format!(
                "the images carry this whole executable ({}, {:.1} MB), not the lean \
                 {ROLES_EXECUTABLE}: {why}",
                self.path.display(),
                self.bytes.len() as f64 / 1e6
            )
        })
    }
}

/// The executable for the images, for this program at `own` (its `current_exe`).
pub(crate) fn choose(own: &Path) -> Result<Chosen, ArtifactError> {
    choose_with(own, BUILD_MARK.as_bytes())
}

/// [`choose`] with the build mark to look for.
fn choose_with(own: &Path, mark: &[u8]) -> Result<Chosen, ArtifactError> {
    let sibling = own.with_file_name(ROLES_EXECUTABLE);
    let fallback = match std::fs::read(&sibling) {
        Ok(bytes) if memchr::memmem::find(&bytes, mark).is_some() => {
            return checked(sibling, bytes, Executable::Roles, None);
        }
        Ok(_) => format!(
            "{} is from another build (it lacks this build's id {}); build both again with \
             `cargo build --release` (no `--bin`) or `make build`",
            sibling.display(),
            short(mark)
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => format!(
            "there is no {ROLES_EXECUTABLE} beside it; `cargo build`, `cargo install` and `make \
             build` build both executables, `--bin perstack-sandbox` only this one"
        ),
        Err(error) => format!("cannot read {}: {error}", sibling.display()),
    };
    let bytes = std::fs::read(own).map_err(|source| ArtifactError::Executable {
        path: own.display().to_string(),
        source,
    })?;
    checked(own.to_path_buf(), bytes, Executable::Whole, Some(fallback))
}

/// The chosen file, refused when it is dynamically linked.
fn checked(
    path: PathBuf,
    bytes: Vec<u8>,
    executable: Executable,
    fallback: Option<String>,
) -> Result<Chosen, ArtifactError> {
    if has_interpreter(&bytes) {
        return Err(ArtifactError::NotStatic {
            path: path.display().to_string(),
        });
    }
    Ok(Chosen {
        bytes: Bytes::from(bytes),
        path,
        executable,
        fallback,
    })
}

/// The first 12 hex digits of the id in a build mark, for messages.
fn short(mark: &[u8]) -> String {
    let text = String::from_utf8_lossy(mark);
    let id = text.rsplit(' ').next().unwrap_or_default();
    id.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &[u8] = b"perstack-sandbox build 0123456789abcdef0123";

    /// A folder with this program (`own`) and, when given, a roles executable beside it.
    fn folder(roles: Option<&[u8]>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let own = dir.path().join("perstack-sandbox");
        std::fs::write(&own, [b"host executable, ".as_slice(), MARK].concat()).expect("own");
        if let Some(roles) = roles {
            std::fs::write(dir.path().join(ROLES_EXECUTABLE), roles).expect("roles");
        }
        (dir, own)
    }

    #[test]
    fn the_roles_executable_of_this_build_beside_it_goes_into_the_images() {
        let roles = [b"roles executable, version 0.1.0 (".as_slice(), MARK, b")"].concat();
        let (dir, own) = folder(Some(&roles));
        let chosen = choose_with(&own, MARK).expect("chosen");
        assert_eq!(chosen.executable, Executable::Roles);
        assert_eq!(chosen.path, dir.path().join(ROLES_EXECUTABLE));
        assert_eq!(chosen.bytes.as_ref(), roles.as_slice());
        assert_eq!(chosen.fallback, None);
        assert_eq!(chosen.note(), None);
    }

    #[test]
    fn without_a_roles_executable_the_images_get_this_one_and_the_note_says_why() {
        let (_dir, own) = folder(None);
        let chosen = choose_with(&own, MARK).expect("chosen");
        assert_eq!(chosen.executable, Executable::Whole);
        assert_eq!(chosen.path, own);
        assert!(chosen.bytes.starts_with(b"host executable"));
        let note = chosen.note().expect("a note");
        assert!(
            note.starts_with(&format!(
                "the images carry this whole executable ({}, 0.0 MB), not the lean \
                 perstack-sandbox-roles: there is no perstack-sandbox-roles beside it;",
                own.display()
            )),
            "{note}"
        );
    }

    #[test]
    fn a_roles_executable_of_another_build_is_not_used() {
        let stale = b"roles executable (perstack-sandbox build fedcba9876543210fedc)";
        let (dir, own) = folder(Some(stale));
        let chosen = choose_with(&own, MARK).expect("chosen");
        assert_eq!(chosen.executable, Executable::Whole);
        assert_eq!(chosen.path, own);
        let why = chosen.fallback.expect("a reason");
        assert_eq!(
            why,
            format!(
                "{} is from another build (it lacks this build's id 0123456789ab); build both \
                 again with `cargo build --release` (no `--bin`) or `make build`",
                dir.path().join(ROLES_EXECUTABLE).display()
            )
        );
    }

    #[test]
    fn a_dynamically_linked_choice_is_refused_whichever_it_is() {
        let sh = std::fs::read("/bin/sh").expect("a dynamic /bin/sh");
        let (dir, own) = folder(Some(&[sh.as_slice(), MARK].concat()));
        let error = choose_with(&own, MARK).expect_err("dynamic").to_string();
        assert!(
            error.starts_with(&format!(
                "{} is dynamically linked",
                dir.path().join(ROLES_EXECUTABLE).display()
            )),
            "{error}"
        );
        std::fs::write(&own, &sh).expect("dynamic own");
        std::fs::remove_file(dir.path().join(ROLES_EXECUTABLE)).expect("remove");
        let error = choose_with(&own, MARK).expect_err("dynamic").to_string();
        assert!(
            error.starts_with(&format!("{} is dynamically linked", own.display())),
            "{error}"
        );
    }
}
