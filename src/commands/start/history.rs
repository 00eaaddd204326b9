//! What a re-entered job has said so far, shown before the session's first prompt: the
//! coordinator's conversation from its latest checkpoint, and the question it waits on.

use crate::event::{Checkpoint, CheckpointStatus, Message, MessageKind, Part};
use crate::jobs::continuation::{ContinueFrom, select_checkpoint};
use crate::jobs::store::JobStore;

use super::{Pending, StartError};

/// Prints the job's history; says whether it waits for an answer.
pub(super) fn show(store: &JobStore, job_id: &str, expert: &str) -> Result<Pending, StartError> {
    let from = ContinueFrom::Job {
        job_id: job_id.to_string(),
        checkpoint_id: None,
    };
    let stored = select_checkpoint(store, &from, expert)?;
    println!("{}", transcript(job_id, &stored.checkpoint));
    Ok(pending(&stored.checkpoint))
}

/// What the next input answers, from the checkpoint's status.
fn pending(checkpoint: &Checkpoint) -> Pending {
    match checkpoint.status {
        CheckpointStatus::StoppedByInteractiveTool => Pending::Answer,
        _ => Pending::Message,
    }
}

/// The conversation as the session shows it: the user's messages, the Expert's texts and tool
/// calls (tool results and the instruction left out), then the question it waits on.
fn transcript(job_id: &str, checkpoint: &Checkpoint) -> String {
    let mut lines = vec![format!(
        "▸ job {job_id} · {} · step {} · {} tokens so far",
        checkpoint.expert.key, checkpoint.step_number, checkpoint.usage.total_tokens
    )];
    for message in &checkpoint.messages {
        lines.extend(message_lines(&checkpoint.expert.key, message));
    }
    if let Some(calls) = checkpoint
        .pending_tool_calls
        .as_ref()
        .filter(|_| pending(checkpoint) == Pending::Answer)
    {
        for call in calls {
            lines.push(format!(
                "? {} asks via {}: {}",
                checkpoint.expert.key, call.tool_name, call.args
            ));
        }
    }
    lines.join("\n")
}

fn message_lines(expert: &str, message: &Message) -> Vec<String> {
    let texts = || message.contents.iter().filter_map(Part::as_text);
    match message.kind {
        MessageKind::UserMessage => texts().map(|t| format!("you> {t}")).collect(),
        MessageKind::ExpertMessage => message
            .contents
            .iter()
            .filter_map(|part| match part {
                Part::ToolCallPart {
                    tool_name, args, ..
                } => Some(format!("● {expert} · {tool_name} {args}")),
                other => other
                    .as_text()
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| format!("{expert}> {t}")),
            })
            .collect(),
        MessageKind::InstructionMessage | MessageKind::ToolMessage => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExpertRef, ToolCall, Usage};

    fn message(kind: MessageKind, contents: Vec<Part>) -> Message {
        Message {
            kind,
            id: "m".into(),
            contents,
            cache: None,
        }
    }

    #[test]
    fn the_history_shows_the_conversation_and_the_question_waiting() {
        let checkpoint = Checkpoint {
            id: "c".into(),
            job_id: "j".into(),
            run_id: "r".into(),
            status: CheckpointStatus::StoppedByInteractiveTool,
            step_number: 2,
            messages: vec![
                message(
                    MessageKind::InstructionMessage,
                    vec![Part::text("You coach.")],
                ),
                message(MessageKind::UserMessage, vec![Part::text("Plan my week")]),
                message(MessageKind::ExpertMessage, vec![Part::text("Gladly.")]),
            ],
            expert: ExpertRef {
                key: "coach".into(),
                name: "coach".into(),
                version: "1.0.0".into(),
            },
            delegate_to: None,
            delegated_by: None,
            usage: Usage {
                total_tokens: 42,
                ..Usage::default()
            },
            context_window: None,
            context_window_usage: None,
            pending_tool_calls: Some(vec![ToolCall {
                id: "t".into(),
                skill_name: "ask".into(),
                tool_name: "askDays".into(),
                args: serde_json::json!({"question": "Which days?"}),
            }]),
            partial_tool_results: None,
            metadata: None,
            error: None,
            retry_count: None,
        };
        assert_eq!(
            transcript("j", &checkpoint),
            "▸ job j · coach · step 2 · 42 tokens so far\n\
             you> Plan my week\n\
             coach> Gladly.\n\
             ? coach asks via askDays: {\"question\":\"Which days?\"}"
        );
        assert_eq!(pending(&checkpoint), Pending::Answer);
    }
}
