//! The program a confined principal runs: where it is, and whether the process stays
//! non-dumpable once it runs.
//!
//! `PR_SET_DUMPABLE 0` does not survive `execve`: the kernel makes the new image dumpable again,
//! unless a file the exec loads is unreadable to the caller (then it keeps the process
//! non-dumpable, so nobody can copy the unreadable program out of its memory). Installing a
//! program exec-only (root-owned, mode 0711) therefore keeps every principal running it
//! non-dumpable, with no other effect: no `AT_SECURE`, no change of ids. That is the only way to
//! keep a program we did not write non-dumpable, so this module tells which case a program is.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::AccessFlags;
use serde::{Deserialize, Serialize};

/// The PATH used when the principal's environment has none (execvp's default).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `#!` lines nest at most this deep (the kernel allows 4 interpreters too).
const MAX_INTERPRETERS: usize = 4;

/// The program was not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{program}` is not an executable file in PATH ({path})")]
pub struct NotFound {
    /// The name looked for.
    pub program: String,
    /// The PATH searched.
    pub path: String,
}

/// Where a program name leads: itself when it holds a `/`, else the first executable file of
/// that name in `path_var` (the principal's own PATH, as `execvp` would search it).
pub(crate) fn resolve(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, NotFound> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(|| NotFound {
            program: program.to_string_lossy().into_owned(),
            path: path_var.to_string_lossy().into_owned(),
        })
}

fn is_executable_file(path: &Path) -> bool {
    path.is_file() && nix::unistd::access(path, AccessFlags::X_OK).is_ok()
}

/// Whether the process is dumpable once the program runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "after_exec", content = "file")]
pub enum AfterExec {
    /// This file of the exec is unreadable to the caller: the kernel keeps it non-dumpable.
    NonDumpable(PathBuf),
    /// The program that finally runs is readable: the kernel makes it dumpable again.
    Dumpable(PathBuf),
}

/// Follows `#!` lines (and `#!/usr/bin/env NAME`) from `program` to the program that finally
/// runs, and says whether that process stays non-dumpable for the caller's current ids.
pub(crate) fn after_exec(program: &Path, path_var: Option<&OsStr>) -> AfterExec {
    let mut file = program.to_path_buf();
    for _ in 0..MAX_INTERPRETERS {
        if nix::unistd::access(&file, AccessFlags::R_OK).is_err() {
            // A script must be readable to run, so an unreadable file is a binary: exec-only.
            return AfterExec::NonDumpable(file);
        }
        match interpreter(&file) {
            Some((interp, arg)) if interp.file_name() == Some(OsStr::new("env")) => {
                // env executes NAME itself: that second exec decides what finally runs.
                match arg.and_then(|name| resolve(&name, path_var).ok()) {
                    Some(next) => file = next,
                    None => return AfterExec::Dumpable(file),
                }
            }
            Some((interp, _)) => file = interp,
            None => return AfterExec::Dumpable(file),
        }
    }
    AfterExec::Dumpable(file)
}

/// The interpreter of a `#!` file and its optional single argument.
fn interpreter(file: &Path) -> Option<(PathBuf, Option<OsString>)> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(file).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let mut words = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    let interp = PathBuf::from(OsStr::from_bytes(words.next()?));
    let arg = words.next().map(|w| OsStr::from_bytes(w).to_os_string());
    Some((interp, arg))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn names_are_searched_in_the_principal_s_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = write(dir.path(), "tool", "#!/bin/sh\n", 0o755);
        write(dir.path(), "data", "x", 0o644);
        let path = std::env::join_paths(["/nonexistent", dir.path().to_str().expect("utf-8")])
            .expect("join");
        assert_eq!(resolve(OsStr::new("tool"), Some(&path)), Ok(tool));
        let missing = resolve(OsStr::new("data"), Some(&path)).unwrap_err();
        assert_eq!(missing.program, "data");
        assert_eq!(
            resolve(OsStr::new("/abs/x"), None),
            Ok(PathBuf::from("/abs/x"))
        );
    }

    #[test]
    fn a_readable_program_becomes_dumpable_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let readable = write(dir.path(), "readable", "\x7fELF", 0o755);
        assert_eq!(
            after_exec(&readable, None),
            AfterExec::Dumpable(readable.clone())
        );
        // The exec-only case needs a caller without CAP_DAC_OVERRIDE: the e2e tests run it
        // under a principal's uid (`confine::an_exec_only_program_stays_non_dumpable…`).
    }

    #[test]
    fn scripts_are_followed_to_their_interpreter_and_through_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = write(dir.path(), "node", "\x7fELF", 0o755);
        let direct = write(
            dir.path(),
            "direct",
            &format!("#!{} --flag\nconsole.log(1)\n", node.display()),
            0o755,
        );
        assert_eq!(after_exec(&direct, None), AfterExec::Dumpable(node.clone()));
        let via_env = write(dir.path(), "via-env", "#!/usr/bin/env node\n", 0o755);
        let path = dir.path().as_os_str();
        assert_eq!(
            after_exec(&via_env, Some(path)),
            AfterExec::Dumpable(node.clone())
        );
        let unknown = write(dir.path(), "unknown", "#!/usr/bin/env nowhere\n", 0o755);
        assert_eq!(
            after_exec(&unknown, Some(path)),
            AfterExec::Dumpable(unknown.clone())
        );
    }
}
