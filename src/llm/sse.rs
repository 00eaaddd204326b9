//! Framing of streamed response bodies: Server-Sent Events (Anthropic, OpenAI, Gemini) and
//! newline-delimited JSON (Ollama's native API).
//!
//! Bytes arrive in arbitrary pieces — an event, a line, even a UTF-8 character can be split
//! across TCP reads — so the decoder keeps what it has not understood yet and hands out complete
//! events only.

/// One Server-Sent Event (or one NDJSON line, as `data`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct SseEvent {
    /// The `event:` field; empty when the server sent none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// How a response body is cut into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `text/event-stream`: `field: value` lines, events end at a blank line.
    Sse,
    /// One JSON document per line.
    JsonLines,
}

/// An incremental decoder.
#[derive(Debug)]
pub(super) struct Decoder {
    framing: Framing,
    buffer: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl Decoder {
    /// A decoder for `framing`.
    pub(super) fn new(framing: Framing) -> Decoder {
        Decoder {
            framing,
            buffer: Vec::new(),
            event: String::new(),
            data: Vec::new(),
        }
    }

    /// Feeds the next piece of the body; returns the events it completed, in order.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        events
    }

    /// The body ended: whatever is still pending (a last line without newline, an event
    /// without its blank line).
    pub(super) fn finish(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            let line = String::from_utf8_lossy(&rest).into_owned();
            let line = line.trim_end_matches('\r').to_string();
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        if let Some(event) = self.dispatch() {
            events.push(event);
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        match self.framing {
            Framing::JsonLines => (!line.trim().is_empty()).then(|| SseEvent {
                event: String::new(),
                data: line.to_string(),
            }),
            Framing::Sse => {
                if line.is_empty() {
                    return self.dispatch();
                }
                if line.starts_with(':') {
                    return None; // a comment, e.g. a keep-alive
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "event" => self.event = value.to_string(),
                    "data" => self.data.push(value.to_string()),
                    _ => {} // id, retry: nothing a generation needs
                }
                None
            }
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if self.data.is_empty() {
            self.event.clear();
            return None;
        }
        Some(SseEvent {
            event: std::mem::take(&mut self.event),
            data: std::mem::take(&mut self.data).join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_anywhere_across_reads_come_out_whole_and_in_order() {
        let body = "event: a\r\ndata: {\"x\":\"é\"}\r\n\r\n: keep-alive\n\ndata: one\ndata: two\n\nevent: b\ndata: last";
        let bytes = body.as_bytes();
        // Every split point, including inside the two-byte `é`.
        for cut in 0..bytes.len() {
            let mut d = Decoder::new(Framing::Sse);
            let mut got = d.feed(&bytes[..cut]);
            got.extend(d.feed(&bytes[cut..]));
            got.extend(d.finish());
            assert_eq!(
                got,
                [
                    ev("a", "{\"x\":\"é\"}"),
                    ev("", "one\ntwo"),
                    ev("b", "last")
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_event_is_handed_out_as_soon_as_its_blank_line_arrives() {
        let mut d = Decoder::new(Framing::Sse);
        assert!(d.feed(b"data: 1\n").is_empty());
        assert_eq!(d.feed(b"\n"), [ev("", "1")]);
    }

    #[test]
    fn json_lines_skip_blank_lines() {
        let mut d = Decoder::new(Framing::JsonLines);
        let mut got = d.feed(b"{\"a\":1}\n\n{\"b\"");
        got.extend(d.feed(b":2}"));
        got.extend(d.finish());
        assert_eq!(got, [ev("", "{\"a\":1}"), ev("", "{\"b\":2}")]);
    }
}
