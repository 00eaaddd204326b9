//! The failure a base tool reports to the model.

use std::io;
use std::path::Path;

use serde_json::{Value, json};

/// A tool failure, reported as the text `{"error":"<name>","message":"<message>"}` in an ordinary
/// (not `isError`) result, the shape `@perstack/base` produces from a thrown JavaScript `Error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ToolError {
    /// The JavaScript error class name; Perstack's tools only ever throw plain `Error`s.
    pub name: &'static str,
    /// What went wrong, for the model to read.
    pub message: String,
}

impl ToolError {
    /// A plain `Error` with `message`.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            name: "Error",
            message: message.into(),
        }
    }

    /// An I/O failure in the style of Node's fs errors, e.g.
    /// `ENOENT: no such file or directory, open '/workspace/a.txt'`, so the model sees the errno.
    pub(crate) fn io(err: &io::Error, syscall: &str, path: &Path) -> Self {
        let code = err
            .raw_os_error()
            .map(|raw| format!("{:?}", nix::errno::Errno::from_raw(raw)))
            .unwrap_or_else(|| format!("{:?}", err.kind()));
        let description = err
            .raw_os_error()
            .map(|raw| nix::errno::Errno::from_raw(raw).desc().to_lowercase())
            .unwrap_or_else(|| err.to_string());
        Self::new(format!(
            "{code}: {description}, {syscall} '{}'",
            path.display()
        ))
    }

    /// The JSON the model sees.
    pub(crate) fn to_json(&self) -> Value {
        json!({ "error": self.name, "message": self.message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_node() {
        let err = io::Error::from_raw_os_error(nix::libc::ENOENT);
        let tool = ToolError::io(&err, "open", Path::new("/w/a.txt"));
        assert_eq!(
            tool.message,
            "ENOENT: no such file or directory, open '/w/a.txt'"
        );
        assert_eq!(
            tool.to_json().to_string(),
            r#"{"error":"Error","message":"ENOENT: no such file or directory, open '/w/a.txt'"}"#
        );
    }
}
