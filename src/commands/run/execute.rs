//! Stage 6: the run itself. Records the job, carries out the plan while relaying the runtime's
//! events, answers Ctrl-C and SIGTERM, and removes every resource of the run however it ended.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::RunArgs;
use crate::event::Event;
use crate::exit::Exit;
use crate::jobs::Recorder;
use crate::render::{Mode, Output};
use crate::sandbox::backend::{Backend, Stopping};
use crate::sandbox::engine::placeholders;
use crate::sandbox::engine::run::{
    EventTap, RunError as ExecuteError, RunIds, RunReport, TimeLimit,
};
use crate::sandbox::plan::RunPlan;

use super::notice::Notice;
use super::plan::Planned;
use super::{Notify, RunError};

/// How the run went.
pub(super) struct Outcome {
    /// How it ended.
    pub ended: Ended,
    /// The run.
    pub run_id: String,
    /// The memory limit per container, for an out-of-memory runtime's message.
    pub memory: i64,
}

/// How a run ended.
pub(super) enum Ended {
    /// It went its course, or failed on the way; `interrupted` when Ctrl-C asked it to stop.
    Ran {
        /// What the sandbox reported.
        result: Result<RunReport, ExecuteError>,
        /// Whether the user asked it to stop.
        interrupted: bool,
    },
    /// A signal stopped it at once: [`Exit::Interrupted`], [`Exit::Terminated`] or
    /// [`Exit::HungUp`].
    Signal(Exit),
}

/// SIGINT, SIGTERM and SIGHUP, handled from before the job is recorded until the run ends.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    /// The terminal went away: by default the process would die on the spot and leave the
    /// run's containers to `gc`.
    hangup: Signal,
}

/// Runs the plan to its end. `notify` hears of interruptions and of a failed cleanup as they
/// happen.
pub(super) async fn execute(
    backend: &impl Backend,
    planned: Planned,
    args: &RunArgs,
    notify: Notify<'_>,
) -> Result<Outcome, RunError> {
    let mut signals = Signals::handle()?;
    let Planned {
        plan,
        ids,
        run_setting,
        job,
        store,
        inputs,
        trust,
        limit,
    } = planned;
    // The digests of the trusted inputs, before any container exists.
    let watch = crate::trust::watch::begin(trust, &inputs, &ids.job_id, &ids.run_id)
        .map_err(RunError::Trust)?;
    // Recording starts before any container exists: `perstack/` is then the user's own folder
    // before the workspace is mounted anywhere.
    let recorder = Recorder::start(store, job, &run_setting).map_err(RunError::Record)?;
    let (output, writer) = Output::spawn_in(
        Mode::detect(args.json, args.verbose),
        tokio::io::stdout(),
        args.session.clone(),
    );
    let record = |line: &str, event: &Event| recorder.record(line, event);
    let run = Run {
        backend,
        plan: &plan,
        ids: &ids,
        limit,
        output: &output,
        verbose: args.verbose,
        tap: &record,
    };
    let ended = run.relay(&mut signals, notify).await;
    // The one cleanup path: whatever happened above, remove everything labelled with this run.
    remove_run(backend, &plan, &ids.run_id, notify).await;
    // Every container is gone: compare what the run could have changed.
    compare_trusted_inputs(watch, &ids, &output, notify);
    drop(output);
    let _ = writer.await;
    recorder.finish().await;
    Ok(Outcome {
        ended,
        run_id: ids.run_id.clone(),
        memory: plan.runtime.limits.memory,
    })
}

impl Signals {
    /// SIGINT, SIGTERM and SIGHUP handled from now on.
    fn handle() -> Result<Signals, RunError> {
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(interrupt), Ok(terminate), Ok(hangup)) => Ok(Signals {
                interrupt,
                terminate,
                hangup,
            }),
            _ => Err(RunError::Signals),
        }
    }
}

/// Removes everything labelled with the run, then (only once no container mounts them; else
/// `gc` removes them with the containers) the placeholders the plan made.
async fn remove_run(backend: &impl Backend, plan: &RunPlan, run_id: &str, notify: Notify<'_>) {
    match backend.remove_run(run_id).await {
        Ok(_) => {
            for (path, error) in placeholders::remove(&plan.placeholders) {
                notify(Notice::PlaceholderLeft { path, error });
            }
        }
        Err(error) => notify(Notice::CleanupFailed {
            run_id: run_id.to_string(),
            error,
        }),
    }
}

/// Ends the watch on the trusted inputs and tells of each the run changed.
fn compare_trusted_inputs(
    watch: crate::trust::watch::Watch,
    ids: &RunIds,
    output: &Output,
    notify: Notify<'_>,
) {
    let accept_command = crate::trust::accept_command(watch.workspace());
    match watch.end() {
        Ok(changes) => report_changes(changes, &accept_command, ids, output, notify),
        Err(error) => notify(Notice::TrustRecordFailed(error)),
    }
}

/// Tells of each trusted input the run changed: an event, and a line on stderr.
fn report_changes(
    changes: Vec<crate::trust::record::Change>,
    accept_command: &str,
    ids: &RunIds,
    output: &Output,
    notify: Notify<'_>,
) {
    for change in changes {
        let accept_command = accept_command.to_string();
        output.event(Event::runtime(
            &ids.job_id,
            &ids.run_id,
            crate::event::RuntimePayload::TrustedInputChanged {
                path: change.path.display().to_string(),
                kind: change.kind.clone(),
                change: change.verb().to_string(),
                before: change.before.clone(),
                after: change.after.clone(),
                accept_command: accept_command.clone(),
            },
        ));
        notify(Notice::TrustedInputChanged {
            change,
            accept_command,
        });
    }
}

/// What carrying out the plan takes.
struct Run<'a, B> {
    backend: &'a B,
    plan: &'a RunPlan,
    ids: &'a RunIds,
    limit: TimeLimit,
    output: &'a Output,
    verbose: bool,
    tap: EventTap<'a>,
}

impl<B: Backend> Run<'_, B> {
    /// Carries out the plan until it ends or a signal stops it. First Ctrl-C: the backend stops
    /// the run its way — Docker: the runtime gets SIGINT and stops after the step under way,
    /// whose checkpoint is relayed and stored like any other; Kubernetes: the runtime is
    /// stopped and the workspace copied back — and we go on relaying until it ends. Second Ctrl-C, SIGTERM, or a Ctrl-C before
    /// the runtime runs: stop at once (the run future is dropped and the caller removes
    /// everything).
    async fn relay(&self, signals: &mut Signals, notify: Notify<'_>) -> Ended {
        let run = self.backend.execute(
            self.plan,
            self.ids,
            self.output,
            self.verbose,
            self.limit,
            self.tap,
        );
        tokio::pin!(run);
        let mut interrupted = false;
        loop {
            tokio::select! {
                result = &mut run => break Ended::Ran { result, interrupted },
                _ = signals.interrupt.recv() => {
                    if interrupted {
                        notify(Notice::StoppingAtOnce);
                        break Ended::Signal(Exit::Interrupted);
                    }
                    interrupted = true;
                    match self.backend.interrupt(self.plan).await {
                        Ok(Stopping::AfterStep) => notify(Notice::StoppingAfterStep),
                        Ok(Stopping::CopyingBack) => notify(Notice::StoppingToCopyBack),
                        Ok(Stopping::Nothing) => break Ended::Signal(Exit::Interrupted),
                        Err(error) => {
                            notify(Notice::StopRequestFailed(error));
                            break Ended::Signal(Exit::Interrupted);
                        }
                    }
                }
                _ = signals.terminate.recv() => break Ended::Signal(Exit::Terminated),
                _ = signals.hangup.recv() => break Ended::Signal(Exit::HungUp),
            }
        }
    }
}
