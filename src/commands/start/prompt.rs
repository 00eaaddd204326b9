//! The session's input line: rustyline's editor (cursor and Emacs keys, ↑/↓ history of this
//! session), read on a blocking thread so the async runtime goes on; and the Expert picker.

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::config::LoadedConfig;

use super::{Pending, StartError};

/// What the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Input {
    /// A line with something in it.
    Line(String),
    /// Ctrl-D or `/exit`.
    Leave,
}

/// The line editor, lent to a blocking thread for each read.
pub(super) struct LineReader {
    editor: Option<DefaultEditor>,
}

impl LineReader {
    pub(super) fn new() -> Result<LineReader, StartError> {
        let editor = DefaultEditor::new().map_err(|e| StartError::Terminal(e.to_string()))?;
        Ok(LineReader {
            editor: Some(editor),
        })
    }

    /// Reads the next message or answer; Ctrl-C on the line clears it, as in a shell.
    pub(super) async fn read(&mut self, pending: Pending) -> Result<Input, StartError> {
        let prompt = match pending {
            Pending::Message => "you> ",
            Pending::Answer => "answer> ",
        };
        loop {
            if let Some(input) = self.line(prompt).await? {
                return Ok(input);
            }
        }
    }

    /// One line: `None` when it was blank or cleared with Ctrl-C.
    async fn line(&mut self, prompt: &'static str) -> Result<Option<Input>, StartError> {
        let mut editor = self
            .editor
            .take()
            .ok_or_else(|| StartError::Terminal("the line editor is gone".into()))?;
        let (editor, read) = tokio::task::spawn_blocking(move || {
            let read = editor.readline(prompt);
            (editor, read)
        })
        .await
        .map_err(|e| StartError::Terminal(e.to_string()))?;
        let mut editor = editor;
        let input = match read {
            Ok(line) => {
                let text = line.trim();
                if text.is_empty() {
                    None
                } else {
                    // History only serves recall; a failure to keep a line is not worth a stop.
                    let _ = editor.add_history_entry(text);
                    Some(parse(text))
                }
            }
            Err(ReadlineError::Interrupted) => None,
            Err(ReadlineError::Eof) => Some(Input::Leave),
            Err(error) => return Err(StartError::Terminal(error.to_string())),
        };
        self.editor = Some(editor);
        Ok(input)
    }
}

/// A typed line: `/exit` (or `/quit`) leaves, anything else is the text.
fn parse(text: &str) -> Input {
    match text {
        "/exit" | "/quit" => Input::Leave,
        _ => Input::Line(text.to_string()),
    }
}

/// Lists the file's Experts with their descriptions and asks for one, by number or key; the only
/// one is taken without asking.
pub(super) async fn pick_expert(
    reader: &mut LineReader,
    loaded: &LoadedConfig,
) -> Result<String, StartError> {
    let experts: Vec<(&String, String)> = loaded
        .config
        .experts
        .iter()
        .map(|(key, expert)| (key, expert.description.clone().unwrap_or_default()))
        .collect();
    match experts.as_slice() {
        [] => return Err(StartError::NoExpert(loaded.path.clone())),
        [(only, _)] => return Ok(only.to_string()),
        _ => {}
    }
    println!("Experts in {}:", loaded.path.display());
    println!("{}", menu(&experts));
    loop {
        let Some(input) = reader.line("expert (number or name)> ").await? else {
            continue;
        };
        let Input::Line(choice) = input else {
            return Err(StartError::Terminal("no Expert chosen".into()));
        };
        match choose(&experts, &choice) {
            Some(key) => return Ok(key),
            None => println!(
                "  no Expert `{choice}`: type a number from 1 to {}",
                experts.len()
            ),
        }
    }
}

/// `  1  key  description` lines, the keys in one column.
fn menu(experts: &[(&String, String)]) -> String {
    let width = experts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    experts
        .iter()
        .enumerate()
        .map(|(i, (key, description))| {
            format!("  {:>2}  {key:<width$}  {description}", i + 1)
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Expert a typed choice names: its number in the list or its key.
fn choose(experts: &[(&String, String)], choice: &str) -> Option<String> {
    if let Ok(n) = choice.parse::<usize>() {
        return experts.get(n.checked_sub(1)?).map(|(k, _)| k.to_string());
    }
    experts
        .iter()
        .find(|(k, _)| k.as_str() == choice)
        .map(|(k, _)| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_and_quit_leave_anything_else_is_text() {
        assert_eq!(parse("/exit"), Input::Leave);
        assert_eq!(parse("/quit"), Input::Leave);
        assert_eq!(parse("I run 5k"), Input::Line("I run 5k".into()));
    }

    #[test]
    fn an_expert_is_chosen_by_number_or_key() {
        let (a, b) = ("fitness-assistant".to_string(), "trainer".to_string());
        let experts = vec![(&a, "Plans workouts".to_string()), (&b, String::new())];
        assert_eq!(
            menu(&experts),
            "   1  fitness-assistant  Plans workouts\n   2  trainer"
        );
        assert_eq!(choose(&experts, "2").as_deref(), Some("trainer"));
        assert_eq!(
            choose(&experts, "fitness-assistant").as_deref(),
            Some("fitness-assistant")
        );
        assert_eq!(choose(&experts, "0"), None);
        assert_eq!(choose(&experts, "3"), None);
        assert_eq!(choose(&experts, "coach"), None);
    }
}
