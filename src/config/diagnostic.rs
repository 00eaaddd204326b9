//! What goes wrong when loading `perstack.toml` (and the dotenv files next to it), and where.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in `perstack.toml`, pointing at the offending value (or key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// Dotted path of the field (see [`dotted_path`](super::dotted_path)); `(syntax)` for TOML
    /// syntax errors.
    pub path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// The dotted path given to TOML syntax errors, which belong to no field.
pub(crate) const SYNTAX_PATH: &str = "(syntax)";

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.path,
            self.message
        )
    }
}

/// Why a config (or an env file) could not be found or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `perstack.toml` in the start folder or any parent.
    #[error(
        "perstack.toml not found in {} or any parent folder. Create one or specify --config <path>.",
        start.display()
    )]
    NotFound {
        /// The folder the search started in.
        start: PathBuf,
    },
    /// `--config <path>` names nothing.
    #[error("Given config path \"{}\" is not found", path.display())]
    GivenPathNotFound {
        /// The path as resolved against the current folder.
        path: PathBuf,
    },
    /// `--config` got a URL; Perstack can fetch some, we do not.
    #[error(
        "remote configs are not supported: \"{url}\"\n  hint: download the file and pass its local path to --config"
    )]
    RemoteNotSupported {
        /// The URL as given.
        url: String,
    },
    /// Reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The config has one or more problems; all of them are listed.
    #[error("{}", render_invalid(file, diagnostics))]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// Every problem found, in file order.
        diagnostics: Vec<Diagnostic>,
    },
    /// A dotenv file has an entry that does not parse. The entry is not shown: it may hold a
    /// secret.
    #[error(
        "{}:{line}: this env file entry does not parse; expected NAME=value, NAME=\"value\" or NAME='value'",
        path.display()
    )]
    EnvFile {
        /// The env file.
        path: PathBuf,
        /// 1-based line where the bad entry starts.
        line: usize,
    },
}

fn render_invalid(file: &Path, diagnostics: &[Diagnostic]) -> String {
    let mut out = format!("{}: Validation failed:", file.display());
    for d in diagnostics {
        out.push_str("\n  - ");
        out.push_str(&d.to_string());
    }
    out
}

/// A 1-based line and character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Turns byte offsets into line and character column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, line_starts }
    }

    pub(super) fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        // The parser's offsets sit on char boundaries; `get` keeps a bad one from panicking.
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        Pos { line, col: col + 1 }
    }

    pub(super) fn span_pos(&self, span: &Range<usize>) -> Pos {
        self.pos(span.start)
    }
}

/// Collects diagnostics, at most one per dotted path: a field that already has a problem (say a
/// missing `instruction`) is not reported again by a later rule about its value.
pub(crate) struct Report {
    file: PathBuf,
    diagnostics: Vec<(Pos, Diagnostic)>,
    reported: BTreeSet<String>,
}

impl Report {
    pub(super) fn new(file: &Path) -> Self {
        Report {
            file: file.to_path_buf(),
            diagnostics: Vec::new(),
            reported: BTreeSet::new(),
        }
    }

    pub(super) fn push(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        if !self.reported.insert(path.to_string()) {
            return;
        }
        let diagnostic = Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            path: path.to_string(),
            message: message.into(),
        };
        self.diagnostics.push((pos, diagnostic));
    }

    /// Syntax errors bypass the one-per-path rule: they all share [`SYNTAX_PATH`].
    pub(super) fn push_syntax(&mut self, pos: Pos, message: impl Into<String>) {
        let diagnostic = Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            path: SYNTAX_PATH.to_string(),
            message: message.into(),
        };
        self.diagnostics.push((pos, diagnostic));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// The diagnostics in file order (stable, so rules on one spot keep the order they ran in).
    pub(super) fn into_error(mut self) -> ConfigError {
        self.diagnostics.sort_by_key(|(pos, _)| *pos);
        ConfigError::Invalid {
            file: self.file,
            diagnostics: self.diagnostics.into_iter().map(|(_, d)| d).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "a = 1\nb = \"é\" ; x\n";
        let index = LineIndex::new(text);
        assert_eq!(index.pos(0), Pos { line: 1, col: 1 });
        assert_eq!(index.pos(6), Pos { line: 2, col: 1 });
        let semicolon = text.find(';').unwrap_or_default();
        assert_eq!(index.pos(semicolon), Pos { line: 2, col: 9 });
        assert_eq!(index.pos(text.len()), Pos { line: 3, col: 1 });
    }

    #[test]
    fn invalid_lists_every_diagnostic_under_the_file() {
        let file = PathBuf::from("/p/perstack.toml");
        let mut report = Report::new(&file);
        report.push("b", Pos { line: 3, col: 2 }, "second");
        report.push("a", Pos { line: 1, col: 5 }, "first");
        report.push("a", Pos { line: 1, col: 5 }, "dropped: same path");
        assert_eq!(
            report.into_error().to_string(),
            "/p/perstack.toml: Validation failed:\n  \
             - /p/perstack.toml:1:5: a: first\n  \
             - /p/perstack.toml:3:2: b: second"
        );
    }

    #[test]
    fn not_found_reads_like_perstack() {
        let err = ConfigError::NotFound {
            start: PathBuf::from("/w"),
        };
        assert_eq!(
            err.to_string(),
            "perstack.toml not found in /w or any parent folder. Create one or specify --config <path>."
        );
        let err = ConfigError::GivenPathNotFound {
            path: PathBuf::from("/w/x.toml"),
        };
        assert_eq!(
            err.to_string(),
            "Given config path \"/w/x.toml\" is not found"
        );
    }
}
