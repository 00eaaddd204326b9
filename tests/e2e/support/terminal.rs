//! The real binary on a real pseudo-terminal (rexpect): keys are sent and the screen read back
//! (vt100), as a person at a terminal would use it.

use std::process::Command;

use rexpect::session::PtySession;

/// A pty session that keeps everything the terminal was sent, for the screen at the end.
pub struct Terminal {
    pub pty: PtySession,
    /// Every byte the program wrote so far (one char per byte, as rexpect hands them over).
    pub seen: String,
}

impl Terminal {
    /// `cmd` started on a new pseudo-terminal; each wait fails after `timeout_ms`.
    pub fn spawn(cmd: Command, timeout_ms: u64) -> Terminal {
        let pty = rexpect::session::spawn_command(cmd, Some(timeout_ms)).expect("spawn on a pty");
        Terminal {
            pty,
            seen: String::new(),
        }
    }

    /// Waits for `text`; fails the test with what the screen showed if it never comes.
    pub fn expect(&mut self, text: &str) {
        match self.pty.exp_string(text) {
            Ok(before) => {
                self.seen.push_str(&before);
                self.seen.push_str(text);
            }
            Err(error) => {
                // rexpect's error holds everything read since the last match: its end will do.
                let error: Vec<char> = error.to_string().chars().collect();
                let tail: String = error[error.len().saturating_sub(4000)..].iter().collect();
                panic!(
                    "waited for {text:?}: …{tail}\n--- screen so far ---\n{}",
                    screen(&self.seen)
                )
            }
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.pty.send_line(line).expect("type a line");
    }

    /// Waits for the program to end; the screen it leaves.
    pub fn finish(&mut self) -> String {
        let rest = self.pty.exp_eof().expect("the program ends");
        self.seen.push_str(&rest);
        screen(&self.seen)
    }
}

/// What a 120×300 terminal shows after `seen`: escape sequences applied, spinners redrawn.
pub fn screen(seen: &str) -> String {
    let mut parser = vt100::Parser::new(300, 120, 0);
    parser.process(&bytes(seen));
    parser
        .screen()
        .contents()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// The bytes the terminal was sent: rexpect hands them over one char per byte (Latin-1).
pub fn bytes(seen: &str) -> Vec<u8> {
    seen.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}
