//! Where events go: a cheap, cloneable handle that any task can emit through.

use tokio::sync::mpsc;

use super::Event;

/// A handle to the event stream. Emitting never blocks and never fails: when the consumer is
/// gone, the run is being torn down and the event has nowhere useful to go.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
}

impl EventSink {
    /// A sink and the receiving end of its stream.
    pub(crate) fn channel() -> (EventSink, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (EventSink { tx }, rx)
    }

    /// Sends one event.
    pub(crate) fn emit(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}
