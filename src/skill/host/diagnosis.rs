//! Hints for a server that could not start, from what the skill host can see inside the skill
//! container: the server's command line, the end of its stderr, and whether `/workspace` is
//! mounted (docs/skills.md, "When a skill fails").

use std::ffi::OsString;

use crate::contract::paths::WORKSPACE_MOUNT;

/// What servers print when a file they were told to open is not there: Python, Node, libuv,
/// libc's `strerror`, and shells.
const MISSING_FILE: [&str; 6] = [
    "can't open file",
    "Cannot find module",
    "ENOENT",
    "No such file or directory",
    "does not exist",
    "command not found",
];

/// What Python and Node print when a module the server imports is not installed.
const MISSING_MODULE: [&str; 2] = ["ModuleNotFoundError", "ERR_MODULE_NOT_FOUND"];

/// What a server written for the MCP Python SDK 1.x prints under mcp 2, which renamed
/// `FastMCP` (importing `mcp.server.fastmcp` raises a `ModuleNotFoundError` saying "This is mcp
/// 2.x") and dropped the low-level `Server`'s decorators. Checked before [`MISSING_MODULE`]:
/// installing more would not help.
const SDK_MAJOR: [&str; 5] = [
    "This is mcp 2.x",
    "object has no attribute 'list_tools'",
    "object has no attribute 'call_tool'",
    "object has no attribute 'list_resources'",
    "object has no attribute 'list_prompts'",
];

/// What a write to a read-only place prints.
const READ_ONLY: [&str; 2] = ["Read-only file system", "EROFS"];

/// The hints for a server that exited before it answered (each one line, without `hint: `).
/// `workspace_mounted` says whether `/workspace` exists in this container.
pub(super) fn hints(
    command: &OsString,
    args: &[OsString],
    stderr: &[String],
    workspace_mounted: bool,
) -> Vec<String> {
    let said = |needles: &[&str]| {
        stderr
            .iter()
            .any(|line| needles.iter().any(|n| line.contains(n)))
    };
    let names_workspace = std::iter::once(command)
        .chain(args)
        .any(|a| a.to_string_lossy().contains(WORKSPACE_MOUNT))
        || said(&[WORKSPACE_MOUNT]);
    let mut hints = Vec::new();
    if names_workspace && !workspace_mounted {
        hints.push(format!(
            "{WORKSPACE_MOUNT} is not mounted for this skill: a skill sees the workspace only when \
             perstack.toml grants it, with workspace = \"read-only\" or \"read-write\" in the \
             skill's [sandbox.skills.\"<name>\"] table (docs/skills.md, \"What a skill can see and reach\")"
        ));
    } else if said(&READ_ONLY) {
        hints.push(format!(
            "the server wrote where its container is read-only: the root file system always is, \
             /tmp is writable, and {WORKSPACE_MOUNT} only with workspace = \"read-write\" \
             (docs/skills.md, \"What a skill can see and reach\")"
        ));
    } else if said(&SDK_MAJOR) {
        hints.push(
            "the server was written for the MCP Python SDK 1.x, and the image build installed \
             mcp 2 (the newest), which removed that API: pin the SDK — `uvx --with \"mcp<2\" \
             <package>`, or `mcp<2` in the requirements.txt or pyproject.toml beside the server \
             (docs/skills.md, \"When a skill cannot start\")"
                .to_string(),
        );
    } else if said(&MISSING_MODULE) {
        hints.push(
            "a module the server imports is not in its image: list it in requirements.txt or \
             pyproject.toml (python) or package.json (node) in the server's folder, which is \
             installed when the image is built, or add the module's file with \
             [sandbox.skills.\"<name>\"] files (docs/skills.md, \"Local files\")"
                .to_string(),
        );
    } else if said(&MISSING_FILE) {
        hints.push(
            "a file the server needs is not in its container, which holds the skill's image and \
             nothing else of this machine: files beside perstack.toml are copied only when the \
             command line names them (`python3 server.py`, `./bin/x`) or \
             [sandbox.skills.\"<name>\"] files lists them, and paths inside the container are \
             absolute (docs/skills.md, \"Local files\")"
                .to_string(),
        );
    }
    hints
}

/// The hint for a server program that could not be started at all.
pub(super) fn cannot_spawn(command: &OsString, error: &std::io::Error) -> Option<String> {
    if error.kind() != std::io::ErrorKind::NotFound {
        return None;
    }
    Some(format!(
        "`{}` is not a program in the skill's image: install it there ([sandbox] skillImage, \
             or a uvx/npx/uv command the image build installs), or give its full path (docs/skills.md)",
        command.to_string_lossy()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn a_missing_file_gets_its_hint() {
        for said in [
            "python3: can't open file '//server.py': [Errno 2] No such file or directory",
            "Error: Cannot find module '/server.js'",
            "Error: ENOENT: no such file or directory, open 'config.json'",
            "sh: 1: my-server: command not found",
        ] {
            let hints = hints(&"python3".into(), &os(&["server.py"]), &lines(said), false);
            assert_eq!(hints.len(), 1, "{said}");
            assert!(hints[0].starts_with("a file the server needs"), "{hints:?}");
        }
    }

    #[test]
    fn a_missing_module_gets_the_manifest_hint_not_the_file_one() {
        for said in [
            "ModuleNotFoundError: No module named 'httpx'",
            "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'zod'",
        ] {
            let hints = hints(&"python3".into(), &os(&["server.py"]), &lines(said), false);
            assert_eq!(hints.len(), 1, "{said}");
            assert!(hints[0].contains("requirements.txt"), "{hints:?}");
        }
    }

    #[test]
    fn a_server_for_the_sdk_1_under_mcp_2_is_told_to_pin_it_not_to_install_a_module() {
        let renamed = lines(
            "ModuleNotFoundError: No module named 'mcp.server.fastmcp'. This is mcp 2.x, where \
             FastMCP was renamed to MCPServer",
        );
        let decorators = lines(
            "    @app.list_tools()\nAttributeError: 'Server' object has no attribute 'list_tools'",
        );
        for stderr in [renamed, decorators] {
            let hints = hints(&"/opt/perstack-skill/bin/x".into(), &[], &stderr, false);
            assert_eq!(hints.len(), 1, "{hints:?}");
            assert!(hints[0].contains("uvx --with \"mcp<2\""), "{hints:?}");
        }
    }

    #[test]
    fn the_missing_file_hint_says_how_local_files_get_in() {
        let hints = hints(
            &"python3".into(),
            &os(&["server.py"]),
            &lines("python3: can't open file '//server.py': [Errno 2] No such file or directory"),
            false,
        );
        assert!(
            hints[0].contains("[sandbox.skills.\"<name>\"] files"),
            "{hints:?}"
        );
    }

    #[test]
    fn args_naming_an_unmounted_workspace_get_the_grant_hint() {
        let hints = hints(
            &"mcp-server-git".into(),
            &os(&["--repository", "/workspace"]),
            &lines("/workspace does not exist"),
            false,
        );
        assert_eq!(hints.len(), 1);
        assert!(
            hints[0].starts_with("/workspace is not mounted for this skill"),
            "{hints:?}"
        );
        assert!(hints[0].contains("workspace = \"read-only\""), "{hints:?}");
    }

    #[test]
    fn a_mounted_workspace_is_no_grant_problem() {
        let hints = hints(
            &"mcp-server-sqlite".into(),
            &os(&["--db-path", "/workspace/x.db"]),
            &lines("sqlite3.OperationalError: attempt to write: Read-only file system"),
            true,
        );
        assert_eq!(hints.len(), 1);
        assert!(hints[0].contains("workspace = \"read-write\""), "{hints:?}");
    }

    #[test]
    fn other_failures_get_no_hint() {
        assert!(
            hints(
                &"server".into(),
                &os(&[]),
                &lines("Traceback…\nValueError: bad port"),
                false
            )
            .is_empty()
        );
    }

    #[test]
    fn a_program_missing_from_the_image_is_named() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let hint = cannot_spawn(&"no-such-mcp-server".into(), &missing).expect("a hint");
        assert!(
            hint.starts_with("`no-such-mcp-server` is not a program in the skill's image"),
            "{hint}"
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(cannot_spawn(&"x".into(), &denied), None);
    }
}
