//! Which words of a skill's command line name a file or folder beside perstack.toml.
//!
//! A word is a path of the config's folder when it is relative and:
//! - it is the command and holds a `/` (`./bin/server`, `bin/server`: `exec` would look it up
//!   from the working directory, never on `PATH`);
//! - it starts with `./` or `../` (or is `..`): written as a path on purpose;
//! - it is the script of an interpreter (`python3 server.py`, `node -r x server.js`,
//!   `bash run.sh`): the first word after the interpreter's own options;
//! - or it holds a `/` or a `.` after its first character, and something by that name exists
//!   in the config's folder (`--directory tools/x`, `--config settings.json`).
//!
//! These must exist; a missing one is an error (the skill could not start). Other words — flags,
//! package names (`@scope/pkg`, `mcp-server-time`), values like `America/New_York` — are left as
//! written, and so are absolute paths: they name places inside the container (`/workspace/x.db`).
//! In `--opt=value`, the value is the word. A bare word (`data`) is never taken for a path, even
//! when a folder of that name exists: write `./data`.

/// A word of the command line that names a path of the config's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    /// Which word: `None` for the command, else the index into the args.
    pub arg: Option<usize>,
    /// What precedes the path in the word (`--config=`), kept when it is rewritten.
    pub prefix: String,
    /// The path as written.
    pub path: String,
    /// True when the word is a path whatever the folder holds (it must exist); false when it
    /// was taken for one because something by its name exists.
    pub certain: bool,
}

/// Interpreters whose first word after their options is a script to run.
const INTERPRETERS: &[&str] = &[
    "python", "python3", "node", "bash", "sh", "ruby", "perl", "php",
];
/// Interpreter options after which no script follows (a module, code on the command line).
const NO_SCRIPT: &[&str] = &["-m", "-c", "-e", "--eval", "-p", "--print", "-"];
/// Interpreter options that take the next word as their value.
const WITH_VALUE: &[&str] = &[
    "-W",
    "-X",
    "-r",
    "--require",
    "--import",
    "--loader",
    "--experimental-loader",
    "-I",
];

/// The words of `command` and `args` that name paths of the config's folder; `exists` says
/// whether a relative path exists there.
pub(crate) fn named_paths(
    command: &str,
    args: &[String],
    exists: impl Fn(&str) -> bool,
) -> Vec<Named> {
    let mut named = Vec::new();
    if !command.starts_with('/') && command.contains('/') {
        named.push(Named {
            arg: None,
            prefix: String::new(),
            path: command.to_string(),
            certain: true,
        });
    }
    let script = script_index(command, args);
    for (i, word) in args.iter().enumerate() {
        let (prefix, path) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with('-') => (format!("{flag}="), value),
            _ if word.starts_with('-') => continue,
            _ => (String::new(), word.as_str()),
        };
        if path.is_empty() || path.starts_with('/') || path.contains("://") {
            continue;
        }
        let explicit = path.starts_with("./") || path.starts_with("../") || path == "..";
        let certain = explicit || (script == Some(i) && prefix.is_empty());
        let looks_like_a_path = path.chars().skip(1).any(|c| c == '/' || c == '.');
        if certain || (looks_like_a_path && exists(path)) {
            named.push(Named {
                arg: Some(i),
                prefix,
                path: path.to_string(),
                certain,
            });
        }
    }
    named
}

/// The index of an interpreter's script among `args`, if the command is one and has one.
fn script_index(command: &str, args: &[String]) -> Option<usize> {
    let program = command.rsplit('/').next().unwrap_or(command);
    if !INTERPRETERS.contains(&program) {
        return None;
    }
    let mut i = 0;
    while let Some(word) = args.get(i) {
        if NO_SCRIPT.contains(&word.as_str()) {
            return None;
        }
        if !word.starts_with('-') {
            return Some(i);
        }
        if WITH_VALUE.contains(&word.as_str()) {
            i += 1;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(command: &str, args: &[&str], existing: &[&str]) -> Vec<(Option<usize>, String)> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        named_paths(command, &args, |p| existing.contains(&p))
            .into_iter()
            .map(|n| (n.arg, format!("{}{}", n.prefix, n.path)))
            .collect()
    }

    #[test]
    fn interpreters_scripts_are_paths_whether_or_not_they_exist() {
        assert_eq!(
            named("python3", &["server.py"], &[]),
            [(Some(0), "server.py".into())]
        );
        assert_eq!(
            named(
                "node",
                &["--require", "x.js", "./tools/server.js", "--port", "1"],
                &[]
            ),
            [(Some(2), "./tools/server.js".into())]
        );
        assert_eq!(
            named("python3", &["-u", "-X", "utf8", "srv/main.py"], &[]),
            [(Some(3), "srv/main.py".into())]
        );
        // A module or inline code: no script.
        assert!(named("python3", &["-m", "my_server"], &[]).is_empty());
        assert!(named("node", &["-e", "1"], &[]).is_empty());
        // Absolute scripts are places in the container.
        assert!(named("node", &["/srv/server.js"], &[]).is_empty());
    }

    #[test]
    fn a_command_with_a_slash_is_a_path_and_a_bare_one_is_looked_up_on_path() {
        assert_eq!(
            named("./bin/my-server", &["--stdio"], &[]),
            [(None, "./bin/my-server".into())]
        );
        assert_eq!(named("bin/srv", &[], &[]), [(None, "bin/srv".into())]);
        assert!(named("my-server", &[], &["my-server"]).is_empty());
        assert!(named("/usr/bin/my-server", &[], &[]).is_empty());
    }

    #[test]
    fn other_words_are_paths_only_when_written_as_one_or_found_in_the_folder() {
        // `uv run --directory tools/x`: found.
        assert_eq!(
            named(
                "uv",
                &["run", "--directory", "tools/x", "server.py"],
                &["tools/x"]
            ),
            [(Some(2), "tools/x".into())]
        );
        // `--opt=value` keeps its flag.
        assert_eq!(
            named("my-server", &["--config=settings.json"], &["settings.json"]),
            [(Some(0), "--config=settings.json".into())]
        );
        // Values that look like paths but name nothing here are left alone.
        assert!(
            named(
                "mcp-server-time",
                &["--local-timezone", "America/New_York"],
                &[]
            )
            .is_empty()
        );
        // Package names, flags, bare words, absolute paths and URLs too.
        assert!(
            named(
                "/opt/perstack-skill/entry",
                &[
                    "@scope/pkg",
                    "--db-path",
                    "/workspace/x.db",
                    "data",
                    "https://a.b/c"
                ],
                &["data"]
            )
            .is_empty()
        );
        // Written as a path on purpose: it must exist.
        let args = vec!["./data".to_string(), "../up".to_string()];
        let found = named_paths("srv", &args, |_| false);
        assert!(found.iter().all(|n| n.certain));
        assert_eq!(found.len(), 2);
    }
}
