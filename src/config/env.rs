//! The env map (PERSTACK-COMPAT.md §1, "Env map"): process variables plus dotenv files.
//!
//! Non-empty process variables win; then each dotenv file in order, never overriding (so an
//! earlier file wins over a later one). Files are `--env-path` when given, else `envPath` from
//! the config, else `.env` and `.env.local`; relative paths are taken from the current folder and
//! missing files are skipped. The process environment is only read (and only through the
//! iterator passed in), never modified.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::diagnostic::ConfigError;

/// The files read when neither `--env-path` nor `envPath` names any.
pub(crate) const DEFAULT_ENV_FILES: [&str; 2] = [".env", ".env.local"];

/// Variable name → value, in the order they were first defined (process first, then files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvMap {
    vars: IndexMap<String, String>,
}

impl EnvMap {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Whether `name` is set (possibly to an empty value from a file).
    pub fn contains(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// Every variable, in definition order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many variables are set.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether no variable is set.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Sets `name` unless it is already set: the first definition wins.
    fn set_default(&mut self, name: String, value: String) {
        self.vars.entry(name).or_insert(value);
    }
}

impl<'a> IntoIterator for &'a EnvMap {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl FromIterator<(String, String)> for EnvMap {
    /// Collects pairs; the first value of a repeated name wins, as in [`load`].
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut map = EnvMap::default();
        for (name, value) in iter {
            map.set_default(name, value);
        }
        map
    }
}

/// The dotenv files to read, absolute, in precedence order.
pub(crate) fn env_files(
    cwd: &Path,
    cli_env_paths: &[PathBuf],
    config_env_path: Option<&[String]>,
) -> Vec<PathBuf> {
    let relative: Vec<PathBuf> = if !cli_env_paths.is_empty() {
        cli_env_paths.to_vec()
    } else if let Some(paths) = config_env_path {
        paths.iter().map(PathBuf::from).collect()
    } else {
        DEFAULT_ENV_FILES.iter().map(PathBuf::from).collect()
    };
    relative.into_iter().map(|p| cwd.join(p)).collect()
}

/// Builds the env map from `process_env` and the dotenv files (see the module docs).
///
/// An unreadable file (other than a missing one) or a line that does not parse is an error
/// naming the file and line; the line itself is not shown, as it may hold a secret.
pub(crate) fn load(
    cwd: &Path,
    cli_env_paths: &[PathBuf],
    config_env_path: Option<&[String]>,
    process_env: impl IntoIterator<Item = (String, String)>,
) -> Result<EnvMap, ConfigError> {
    let mut map: EnvMap = process_env
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    for path in env_files(cwd, cli_env_paths, config_env_path) {
        let content = match std::fs::read(&path) {
            Ok(content) => content,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        for (name, value) in parse_dotenv(&path, &content)? {
            map.set_default(name, value);
        }
    }
    Ok(map)
}

/// Every `NAME=value` of one dotenv file, in file order.
fn parse_dotenv(path: &Path, content: &[u8]) -> Result<Vec<(String, String)>, ConfigError> {
    // dotenvy strips a byte-order mark only when it loads into the process environment, which we
    // must not do; its iterator would read the mark as part of the first name.
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    match parse_all(content) {
        Ok(vars) => Ok(vars),
        Err(dotenvy::Error::Io(source)) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
        Err(error) => Err(ConfigError::EnvFile {
            path: path.to_path_buf(),
            line: failing_line(content, &error),
        }),
    }
}

fn parse_all(content: &[u8]) -> Result<Vec<(String, String)>, dotenvy::Error> {
    dotenvy::from_read_iter(content).collect()
}

/// The line on which the entry that fails to parse starts.
///
/// dotenvy reports the text of the failing entry (sometimes only its value) but not its line.
/// The shortest run of whole lines that fails the same way ends with the bad entry; walking back
/// from there, runs cut inside that entry fail too (an open quote), and the first run that parses
/// again ends just before it. Env files are small; the quadratic cost does not matter.
fn failing_line(content: &[u8], error: &dotenvy::Error) -> usize {
    let dotenvy::Error::LineParse(text, index) = error else {
        return 1;
    };
    let ends: Vec<usize> = content
        .split_inclusive(|b| *b == b'\n')
        .scan(0, |end, line| {
            *end += line.len();
            Some(*end)
        })
        .collect();
    let same_error = |end: usize| {
        matches!(
            parse_all(&content[..end]),
            Err(dotenvy::Error::LineParse(t, i)) if t == *text && i == *index
        )
    };
    let Some(last) = ends.iter().position(|&end| same_error(end)) else {
        return ends.len().max(1);
    };
    let mut first = last;
    while first > 0 && parse_all(&content[..ends[first - 1]]).is_err() {
        first -= 1;
    }
    first + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &str) {
        std::fs::write(dir.join(name), content).unwrap();
    }

    fn pairs(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn process_wins_then_earlier_files() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            ".env",
            "A=from-env\nB=from-env\n# comment\nC=\"quoted value\"\n",
        );
        write(
            dir.path(),
            ".env.local",
            "B=from-local\nD=from-local\nE=from-local\n",
        );
        let process = pairs(&[("A", "from-process"), ("E", ""), ("PATH", "/bin")]);
        let env = load(dir.path(), &[], None, process).unwrap();
        assert_eq!(env.get("A"), Some("from-process"));
        assert_eq!(env.get("B"), Some("from-env"));
        assert_eq!(env.get("C"), Some("quoted value"));
        assert_eq!(env.get("D"), Some("from-local"));
        // An empty process value does not shadow a file's.
        assert_eq!(env.get("E"), Some("from-local"));
        assert_eq!(env.get("PATH"), Some("/bin"));
        assert!(!env.contains("F"));
        let names: Vec<&str> = env.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["A", "PATH", "B", "C", "D", "E"]);
    }

    #[test]
    fn cli_paths_beat_config_paths_which_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".env", "X=default\n");
        write(dir.path(), "config.env", "X=config\n");
        write(dir.path(), "cli.env", "X=cli\n");
        let config = ["config.env".to_string()];
        let from_cli = load(dir.path(), &[PathBuf::from("cli.env")], Some(&config), []).unwrap();
        assert_eq!(from_cli.get("X"), Some("cli"));
        let from_config = load(dir.path(), &[], Some(&config), []).unwrap();
        assert_eq!(from_config.get("X"), Some("config"));
        let default = load(dir.path(), &[], None, []).unwrap();
        assert_eq!(default.get("X"), Some("default"));
    }

    #[test]
    fn missing_files_are_skipped_and_absolute_paths_kept() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        write(other.path(), "abs.env", "\u{feff}ABS=1\n");
        let paths = [PathBuf::from("nope.env"), other.path().join("abs.env")];
        let env = load(dir.path(), &paths, None, []).unwrap();
        assert_eq!(env.get("ABS"), Some("1"));
        assert_eq!(env.len(), 1);
    }

    #[test]
    fn a_malformed_line_is_reported_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            ".env",
            "A=1\n\nMULTI=\"one\ntwo\"\nB=2\nthis line is wrong\nC=3\n",
        );
        let err = load(dir.path(), &[], None, []).unwrap_err();
        let ConfigError::EnvFile { path, line } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(path, &dir.path().join(".env"));
        assert_eq!(*line, 6);
        assert!(err.to_string().contains(".env:6:"), "{err}");
        assert!(!err.to_string().contains("wrong"), "{err}");

        write(dir.path(), ".env", "A=1\nB='unterminated\nC=3\n");
        let err = load(dir.path(), &[], None, []).unwrap_err();
        assert!(
            matches!(err, ConfigError::EnvFile { line: 2, .. }),
            "{err:?}"
        );

        write(dir.path(), ".env", "A=1\nB=\"a\" trailing\n");
        let err = load(dir.path(), &[], None, []).unwrap_err();
        assert!(
            matches!(err, ConfigError::EnvFile { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_directory_in_place_of_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".env")).unwrap();
        let err = load(dir.path(), &[], None, []).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    }
}
