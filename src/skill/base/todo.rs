//! `todo`, `clearTodo` and `attemptCompletion`: a per-process todo list.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One todo as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct TodoItem {
    /// Assigned in creation order from 0; `clearTodo` starts again at 0.
    pub id: u64,
    /// The text the model gave.
    pub title: String,
    /// Whether the model marked it done.
    pub completed: bool,
}

/// Arguments of `todo`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TodoArgs {
    /// Titles of todos to add.
    #[serde(default)]
    pub new_todos: Option<Vec<String>>,
    /// Ids to mark completed. Numbers as JSON gives them (an id never matches a fraction).
    #[serde(default)]
    pub completed_todos: Option<Vec<f64>>,
}

/// The todo list of one server process.
#[derive(Debug, Default)]
pub(crate) struct Todos {
    next_id: u64,
    items: Vec<TodoItem>,
}

impl Todos {
    /// `todo`: adds the new todos, then marks the completed ones; returns `{todos}`.
    pub(crate) fn update(&mut self, args: TodoArgs) -> Value {
        for title in args.new_todos.unwrap_or_default() {
            self.items.push(TodoItem {
                id: self.next_id,
                title,
                completed: false,
            });
            self.next_id += 1;
        }
        // Unknown ids are ignored, as in Perstack; marking is one-way.
        let completed = args.completed_todos.unwrap_or_default();
        for item in &mut self.items {
            // Ids stay far below 2^53, so the conversion to f64 is exact.
            if completed.contains(&(item.id as f64)) {
                item.completed = true;
            }
        }
        json!({ "todos": self.items })
    }

    /// `clearTodo`: empties the list and restarts ids at 0; returns `{todos: []}`.
    pub(crate) fn clear(&mut self) -> Value {
        *self = Self::default();
        json!({ "todos": [] })
    }

    /// `attemptCompletion`: `{}` when nothing is left, else `{remainingTodos}`.
    pub(crate) fn attempt_completion(&self) -> Value {
        let remaining: Vec<&TodoItem> = self.items.iter().filter(|t| !t.completed).collect();
        if remaining.is_empty() {
            json!({})
        } else {
            json!({ "remainingTodos": remaining })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(new: &[&str], completed: &[f64]) -> TodoArgs {
        TodoArgs {
            new_todos: Some(new.iter().map(|s| s.to_string()).collect()),
            completed_todos: Some(completed.to_vec()),
        }
    }

    #[test]
    fn ids_count_from_zero_and_completion_is_tracked() {
        let mut todos = Todos::default();
        assert_eq!(
            todos.update(args(&["a", "b"], &[])).to_string(),
            r#"{"todos":[{"id":0,"title":"a","completed":false},{"id":1,"title":"b","completed":false}]}"#
        );
        todos.update(args(&["c"], &[1.0, 7.0]));
        assert_eq!(
            todos.attempt_completion().to_string(),
            r#"{"remainingTodos":[{"id":0,"title":"a","completed":false},{"id":2,"title":"c","completed":false}]}"#
        );
        todos.update(args(&[], &[0.0, 2.0]));
        assert_eq!(todos.attempt_completion().to_string(), "{}");
    }

    #[test]
    fn clear_restarts_ids() {
        let mut todos = Todos::default();
        todos.update(args(&["a", "b"], &[]));
        assert_eq!(todos.clear().to_string(), r#"{"todos":[]}"#);
        assert_eq!(todos.attempt_completion().to_string(), "{}");
        assert_eq!(
            todos.update(args(&["x"], &[])).to_string(),
            r#"{"todos":[{"id":0,"title":"x","completed":false}]}"#
        );
    }

    #[test]
    fn empty_update_lists_the_todos() {
        let mut todos = Todos::default();
        assert_eq!(
            todos.update(TodoArgs::default()).to_string(),
            r#"{"todos":[]}"#
        );
    }
}
