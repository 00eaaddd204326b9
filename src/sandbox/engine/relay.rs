//! Turning the runtime container's demultiplexed stdout into event lines as they arrive.
//!
//! Docker hands us stdout in chunks that do not respect line boundaries; [`LineSplitter`]
//! reassembles lines. Each line is then classified: one of our events, some other JSON (passed
//! through untouched), or not JSON at all (reported; the relay goes on).

use crate::event::{Event, EventParseError};

/// Reassembles `\n`-terminated lines from arbitrary chunks.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

/// Lines longer than this are cut, so a runaway writer cannot exhaust memory.
const MAX_LINE: usize = 64 * 1024 * 1024;

impl LineSplitter {
    /// Feeds a chunk; returns the lines it completed (without `\n` or a trailing `\r`).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&rest[..i]);
            lines.push(self.take());
            rest = &rest[i + 1..];
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_LINE {
            lines.push(self.take());
        }
        lines
    }

    /// The unterminated last line, if any.
    pub(crate) fn finish(mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.pending);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What a stdout line turned out to be.
#[derive(Debug)]
pub(crate) enum Line {
    /// One of our events (the original text is kept for byte-exact relaying).
    Event(String, Box<Event>),
    /// Valid JSON that is not an event we know: relayed as is.
    OtherJson(String),
    /// Not JSON: reported, not relayed.
    NotJson(String, String),
    /// Blank.
    Blank,
}

/// Classifies one stdout line.
pub(crate) fn classify(line: String) -> Line {
    if line.trim().is_empty() {
        return Line::Blank;
    }
    match Event::from_line(&line) {
        Ok(event) => Line::Event(line, Box::new(event)),
        Err(EventParseError::NotEvent(_)) => Line::OtherJson(line),
        Err(EventParseError::NotJson(e)) => Line::NotJson(line, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_reassembled_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"{\"a\":").is_empty());
        assert_eq!(s.push(b"1}\r\n{\"b\""), vec!["{\"a\":1}"]);
        assert_eq!(s.push(b":2}\n\nx"), vec!["{\"b\":2}", ""]);
        assert_eq!(s.finish().as_deref(), Some("x"));
    }

    #[test]
    fn multibyte_characters_split_across_chunks_survive() {
        let mut s = LineSplitter::default();
        let text = "héllo\n".as_bytes();
        assert!(s.push(&text[..2]).is_empty());
        assert_eq!(s.push(&text[2..]), vec!["héllo"]);
    }

    #[test]
    fn lines_are_classified() {
        let event = r#"{"type":"skillStderr","id":"e","timestamp":1,"jobId":"j","runId":"r","skillName":"s","message":"m"}"#;
        assert!(matches!(classify(event.into()), Line::Event(raw, _) if raw == event));
        assert!(matches!(
            classify(r#"{"hello":1}"#.into()),
            Line::OtherJson(_)
        ));
        assert!(matches!(
            classify("panic at the disco".into()),
            Line::NotJson(..)
        ));
        assert!(matches!(classify("  ".into()), Line::Blank));
    }
}
