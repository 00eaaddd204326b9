//! `perstack-sandbox start [expert] [query]`: an interactive session on a terminal.
//!
//! A line-mode design, chosen over a full-screen one: every turn is a `run` of the same job
//! (the same containers, checks and guarantees), shown by the same human view, so what happened
//! stays in the terminal's own scrollback — searchable, copyable, intact after the session and
//! inside tmux or ssh — and the input line is a real line editor (rustyline: cursor keys,
//! Emacs keys, history with ↑/↓). The session:
//!
//! 1. refuses without a terminal, pointing to `run --json`;
//! 2. picks the Expert ([`prompt::pick_expert`]) and, re-entering a job (`--continue`,
//!    `--continue-job`), shows its history first ([`history`]);
//! 3. loops: reads a message (or the answer to the pending interactive tool call), runs one turn,
//!    and reads what the turn's exit says about the next one. Ctrl-C during a turn stops its
//!    step gracefully and keeps the checkpoint, as `run` does; Ctrl-D or `/exit` leaves.

mod history;
mod prompt;

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::{RunArgs, RunFlags, StartArgs};
use crate::commands::run::{self, RunError};
use crate::exit::Exit;
use crate::files::Owner;
use crate::jobs::JobsError;
use crate::jobs::store::JobStore;
use crate::render::SessionLines;

use prompt::{Input, LineReader};

/// Why a session could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// stdin or stdout is not a terminal, or `--json` was given.
    #[error(
        "start is interactive and needs a terminal on stdin and stdout; in scripts and CI use \
         `perstack-sandbox run --json <expert> <query>` (continue with --continue-job, answer \
         with -i)"
    )]
    NotATerminal,
    /// The terminal's line editor failed.
    #[error("cannot read from the terminal: {0}")]
    Terminal(String),
    /// perstack.toml could not be loaded.
    #[error(transparent)]
    Load(#[from] crate::commands::LoadError),
    /// No Expert to offer.
    #[error(
        "{0} defines no Expert; add one under [experts.\"<name>\"] (see `perstack-sandbox init`)"
    )]
    NoExpert(PathBuf),
    /// The job store could not be read.
    #[error("{0}")]
    Jobs(#[from] JobsError),
    /// The first turn failed before anything ran.
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<&StartError> for Exit {
    fn from(error: &StartError) -> Exit {
        match error {
            StartError::Run(error) => error.into(),
            StartError::Terminal(_) => Exit::RunFailed,
            StartError::NotATerminal
            | StartError::Load(_)
            | StartError::NoExpert(_)
            | StartError::Jobs(_) => Exit::Usage,
        }
    }
}

/// What the next turn of the session answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// A new message to the coordinator.
    Message,
    /// The answer to the interactive tool call the job waits on.
    Answer,
}

/// The job the session works on.
struct Session {
    /// The coordinator Expert's key (empty with `--image`: the image names it).
    expert: String,
    /// The job's id.
    job_id: String,
    /// Whether the job has been stored (a run of it has started).
    stored: bool,
    /// What the next input is.
    pending: Pending,
    /// The user's options, for every turn.
    flags: RunFlags,
    /// What the turns have shown, so that each says only what is new.
    shown: SessionLines,
}

/// Runs the session; gives the exit code of the last turn, or success when the user left.
pub async fn start(args: StartArgs) -> Result<Exit, StartError> {
    if args.flags.json || !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(StartError::NotATerminal);
    }
    let mut reader = LineReader::new()?;
    let (mut session, first) = open(args, &mut reader).await?;
    let mut query = first;
    loop {
        let text = match query.take() {
            Some(text) => text,
            None => match reader.read(session.pending).await? {
                Input::Line(text) => text,
                Input::Leave => {
                    session.leave();
                    return Ok(Exit::Success);
                }
            },
        };
        match run::run(session.turn(text)).await {
            // Told to go (SIGTERM, or the terminal hung up): the turn's run was removed; leave.
            Ok(exit) if exit.ends_the_session() => return Ok(exit),
            Ok(exit) => session.after(exit),
            // Nothing of the job exists yet: the session has nothing to go on with.
            Err(error) if !session.stored => return Err(error.into()),
            Err(error) => eprintln!("error: {error}"),
        }
    }
}

/// The session's job and its first message: a new job, or the one `--continue`/`--continue-job`
/// names, whose history is shown.
async fn open(
    args: StartArgs,
    reader: &mut LineReader,
) -> Result<(Session, Option<String>), StartError> {
    let StartArgs {
        expert,
        query,
        mut flags,
    } = args;
    let continued = continued_job(&flags)?;
    let expert = match (expert, &continued, &flags.image) {
        (Some(expert), _, _) => expert,
        (None, _, Some(_)) => String::new(),
        (None, Some((_, coordinator, _)), None) => coordinator.clone(),
        (None, None, None) => {
            let (_, loaded) = crate::commands::load_config(flags.config.as_deref())?;
            prompt::pick_expert(reader, &loaded).await?
        }
    };
    let session = match continued {
        Some((job_id, _, store)) => {
            let pending = history::show(&store, &job_id, &expert)?;
            Session {
                expert,
                job_id,
                stored: true,
                pending,
                flags,
                shown: SessionLines::default(),
            }
        }
        None => {
            let job_id = flags.job_id.take().unwrap_or_else(crate::ids::new_id);
            Session {
                expert,
                job_id,
                stored: false,
                pending: Pending::Message,
                flags,
                shown: SessionLines::default(),
            }
        }
    };
    Ok((session, query))
}

/// The job `--continue` or `--continue-job` names, its coordinator and the store holding it.
fn continued_job(flags: &RunFlags) -> Result<Option<(String, String, JobStore)>, StartError> {
    if !flags.continue_latest && flags.continue_job.is_none() {
        return Ok(None);
    }
    let workspace = match &flags.workspace {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(crate::commands::LoadError::CurrentDir)?,
    };
    let store = JobStore::open(&workspace, Owner::detect())?;
    let job_id = match &flags.continue_job {
        Some(job_id) => job_id.clone(),
        None => match store.all_runs()?.into_iter().next() {
            Some(run) => run.job_id,
            None => {
                return Err(JobsError::NoCheckpoint {
                    hint: format!(
                        "no run has been stored in {} yet; start one without --continue",
                        store.root().display()
                    ),
                }
                .into());
            }
        },
    };
    let coordinator = store
        .read_job(&job_id)?
        .map(|job| job.coordinator_expert_key)
        .ok_or_else(|| JobsError::NoCheckpoint {
            hint: format!("job `{job_id}` is not in {}", store.root().display()),
        })?;
    Ok(Some((job_id, coordinator, store)))
}

impl Session {
    /// The `run` of one turn: the first of a new job records it under the session's id, every
    /// later one continues it — with a new message, or with the answer to its question.
    fn turn(&self, text: String) -> RunArgs {
        let mut flags = self.flags.clone();
        flags.continue_latest = false;
        if self.stored {
            flags.continue_job = Some(self.job_id.clone());
            flags.job_id = None;
        } else {
            flags.continue_job = None;
            flags.job_id = Some(self.job_id.clone());
        }
        flags.interactive_tool_call_result = self.pending == Pending::Answer;
        flags.session = Some(self.shown.clone());
        let expert = (!self.expert.is_empty()).then(|| self.expert.clone());
        RunArgs::session_turn(expert, text, flags)
    }

    /// Says, on leaving a job that was stored, how to come back to it.
    fn leave(&self) {
        if self.stored {
            println!("{}", self.resume_hint());
        }
    }

    fn resume_hint(&self) -> String {
        format!(
            "▸ job {} · back to it with: perstack-sandbox start --continue-job {}",
            self.job_id, self.job_id
        )
    }

    /// What the turn's exit means for the next one. `--resume-from` only applies to the first.
    fn after(&mut self, exit: Exit) {
        self.stored = true;
        self.flags.resume_from = None;
        self.pending = match exit {
            Exit::Interactive => Pending::Answer,
            _ => Pending::Message,
        };
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn flags(extra: &[&str]) -> RunFlags {
        let argv = [&["perstack-sandbox", "start"], extra].concat();
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Start(args) => args.flags,
            other => panic!("not start: {other:?}"),
        }
    }

    fn session(stored: bool, pending: Pending) -> Session {
        Session {
            expert: "coach".into(),
            job_id: "job1".into(),
            stored,
            pending,
            flags: flags(&["--provider", "mock", "--resume-from", "cp1"]),
            shown: SessionLines::default(),
        }
    }

    #[test]
    fn the_first_turn_of_a_new_job_records_it_under_the_sessions_id() {
        let args = session(false, Pending::Message).turn("hello".into());
        assert_eq!(args.expert(), "coach");
        assert_eq!(args.query(), "hello");
        assert_eq!(args.job_id.as_deref(), Some("job1"));
        assert_eq!(args.continue_job, None);
        assert!(!args.interactive_tool_call_result);
        assert_eq!(args.provider.as_deref(), Some("mock"));
    }

    #[test]
    fn later_turns_continue_the_job_and_answer_its_question() {
        let mut session = session(false, Pending::Message);
        session.after(Exit::Interactive);
        let args = session.turn("Tuesday".into());
        assert_eq!(args.continue_job.as_deref(), Some("job1"));
        assert_eq!(args.job_id, None);
        assert!(args.interactive_tool_call_result);
        assert_eq!(
            args.resume_from, None,
            "--resume-from is for the first turn"
        );
        session.after(Exit::Success);
        assert!(!session.turn("next".into()).interactive_tool_call_result);
    }

    #[test]
    fn every_turn_shares_what_the_session_has_shown() {
        let session = session(true, Pending::Message);
        let first = session.turn("a".into()).session.clone().expect("a session");
        assert!(first.first_time("▸ job job1"));
        let second = session.turn("b".into()).session.clone().expect("a session");
        assert!(!second.first_time("▸ job job1"), "seen in the first turn");
        assert_eq!(
            session.resume_hint(),
            "▸ job job1 · back to it with: perstack-sandbox start --continue-job job1"
        );
    }

    #[test]
    fn an_interrupted_turn_is_followed_by_a_new_message() {
        let mut session = session(true, Pending::Answer);
        session.after(Exit::Interrupted);
        assert_eq!(session.pending, Pending::Message);
    }
}
