//! Turning a provider's [`StreamDelta`]s into the streaming events of §3, as they arrive.
//!
//! Reasoning streams in every generation (`startStreamingReasoning`, `streamReasoning`…,
//! `completeStreamingReasoning`); answer text streams only in the final-result generation
//! (`startStreamingRunResult`, `streamRunResult`…, `completeStreamingRunResult`), as in
//! Perstack: in a tool-calling generation, text is not known to be the answer until the
//! generation ends.

use std::sync::Mutex;

use crate::event::{Event, EventSink, RunPayload};
use crate::llm::StreamDelta;

/// Where the streaming events of one generation attempt go, and what has streamed so far.
pub(super) struct StreamRelay<'a> {
    sink: &'a EventSink,
    job_id: &'a str,
    run_id: &'a str,
    expert_key: &'a str,
    step_number: u32,
    /// Whether answer text is streamed (the final-result generation).
    stream_text: bool,
    state: Mutex<Streams>,
}

#[derive(Default)]
struct Streams {
    /// Reasoning streamed so far, while its stream is open.
    reasoning: Option<String>,
    /// Answer text streamed so far, while its stream is open.
    text: Option<String>,
}

impl<'a> StreamRelay<'a> {
    /// A relay for one generation attempt of `expert_key` at `step_number`.
    pub(super) fn new(
        sink: &'a EventSink,
        (job_id, run_id, expert_key): (&'a str, &'a str, &'a str),
        step_number: u32,
        stream_text: bool,
    ) -> StreamRelay<'a> {
        StreamRelay {
            sink,
            job_id,
            run_id,
            expert_key,
            step_number,
            stream_text,
            state: Mutex::new(Streams::default()),
        }
    }

    fn emit(&self, payload: RunPayload) {
        self.sink.emit(Event::run(
            self.job_id,
            self.run_id,
            self.expert_key,
            self.step_number,
            payload,
        ));
    }

    /// Reports one delta: opens its stream on the first chunk, closes the reasoning stream
    /// when text starts.
    pub(super) fn delta(&self, delta: StreamDelta) {
        // A poisoned lock means a panic mid-emit elsewhere; streaming events are best effort.
        let Ok(mut streams) = self.state.lock() else {
            return;
        };
        match delta {
            StreamDelta::Reasoning(chunk) => {
                if streams.reasoning.is_none() {
                    self.emit(RunPayload::StartStreamingReasoning {});
                }
                streams
                    .reasoning
                    .get_or_insert_with(String::new)
                    .push_str(&chunk);
                self.emit(RunPayload::StreamReasoning { delta: chunk });
            }
            StreamDelta::Text(chunk) => {
                if let Some(text) = streams.reasoning.take() {
                    self.emit(RunPayload::CompleteStreamingReasoning { text });
                }
                if !self.stream_text {
                    return;
                }
                if streams.text.is_none() {
                    self.emit(RunPayload::StartStreamingRunResult {});
                }
                streams
                    .text
                    .get_or_insert_with(String::new)
                    .push_str(&chunk);
                self.emit(RunPayload::StreamRunResult { delta: chunk });
            }
        }
    }

    /// Closes whatever stream is still open (the generation ended, or failed).
    pub(super) fn finish(&self) {
        let Ok(mut streams) = self.state.lock() else {
            return;
        };
        if let Some(text) = streams.reasoning.take() {
            self.emit(RunPayload::CompleteStreamingReasoning { text });
        }
        if let Some(text) = streams.text.take() {
            self.emit(RunPayload::CompleteStreamingRunResult { text });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_events(stream_text: bool, deltas: Vec<StreamDelta>) -> Vec<RunPayload> {
        let (sink, mut rx) = EventSink::channel();
        let relay = StreamRelay::new(&sink, ("j", "r", "e"), 3, stream_text);
        for d in deltas {
            relay.delta(d);
        }
        relay.finish();
        drop(relay);
        drop(sink);
        let mut out = vec![];
        while let Ok(e) = rx.try_recv() {
            out.push(e.run_payload().cloned().expect("run event"));
        }
        out
    }

    #[test]
    fn reasoning_then_text_in_the_final_generation() {
        let events = relay_events(
            true,
            vec![
                StreamDelta::Reasoning("Think ".into()),
                StreamDelta::Reasoning("hard".into()),
                StreamDelta::Text("The ".into()),
                StreamDelta::Text("answer".into()),
            ],
        );
        assert_eq!(
            events,
            [
                RunPayload::StartStreamingReasoning {},
                RunPayload::StreamReasoning {
                    delta: "Think ".into()
                },
                RunPayload::StreamReasoning {
                    delta: "hard".into()
                },
                RunPayload::CompleteStreamingReasoning {
                    text: "Think hard".into()
                },
                RunPayload::StartStreamingRunResult {},
                RunPayload::StreamRunResult {
                    delta: "The ".into()
                },
                RunPayload::StreamRunResult {
                    delta: "answer".into()
                },
                RunPayload::CompleteStreamingRunResult {
                    text: "The answer".into()
                },
            ]
        );
    }

    #[test]
    fn text_of_a_tool_calling_generation_is_not_streamed_as_a_result() {
        let events = relay_events(
            false,
            vec![
                StreamDelta::Reasoning("Plan".into()),
                StreamDelta::Text("Calling a tool".into()),
            ],
        );
        assert_eq!(
            events,
            [
                RunPayload::StartStreamingReasoning {},
                RunPayload::StreamReasoning {
                    delta: "Plan".into()
                },
                RunPayload::CompleteStreamingReasoning {
                    text: "Plan".into()
                },
            ]
        );
    }
}
