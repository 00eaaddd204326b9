//! One server life's part of the socket: waiting for the runtime to connect, then relaying
//! newline-delimited JSON-RPC (the MCP stdio framing) between that connection and the server's
//! stdin/stdout, noting which requests are still unanswered.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::OwnedWriteHalf;

use super::cause::Exit;
use super::requests::{Requests, error_line, host_codes_taken_back};
use super::server::{Server, Signals};
use crate::contract::supervision::HOST_LINE_PREFIX;

/// How a server life ended.
pub(super) enum Ended {
    /// The runtime hung up (the run is over) or we were told to stop: the host exits with this
    /// code.
    Over(i32),
    /// The server exited by itself; `runtime` is the runtime's connection, if it had one, with
    /// the requests the server left unanswered.
    Died {
        /// How it ended.
        exit: Exit,
        /// The runtime's side, still open.
        runtime: Option<Runtime>,
    },
}

/// The runtime's connection to a server that died.
pub(super) struct Runtime {
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    requests: Arc<Mutex<Requests>>,
}

impl Runtime {
    /// The server answered the runtime's MCP handshake on it.
    pub(super) fn answered_handshake(&self) -> bool {
        self.lock().answered_handshake()
    }

    /// Answers every request left unanswered with a JSON-RPC error (`code`, `message`), then
    /// hangs up, which tells the runtime to connect again.
    pub(super) async fn fail_pending(self, code: i32, message: &str) {
        let pending = self.lock().take_pending();
        let mut writer = self.writer.lock().await;
        for id in pending {
            if writer
                .write_all(error_line(&id, code, message).as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = writer.shutdown().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits for the runtime to connect (or the server to die, or a signal), then relays until one
/// side is done.
pub(super) async fn serve(
    listener: &UnixListener,
    server: &mut Server,
    signals: &mut Signals,
) -> Ended {
    let stream = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => break stream,
                Err(e) => eprintln!("{HOST_LINE_PREFIX}accept failed: {e}"),
            },
            _ = signals.child.recv() => if let Some(exit) = server.reap() {
                return Ended::Died { exit, runtime: None };
            },
            _ = signals.terminate.recv() => return Ended::Over(server.stop(Signal::SIGTERM, signals).await),
            _ = signals.interrupt.recv() => return Ended::Over(server.stop(Signal::SIGINT, signals).await),
        }
    };
    relay(stream, server, signals).await
}

/// Why the runtime-to-server direction stopped.
enum Inbound {
    /// The runtime hung up.
    HungUp,
    /// The server's stdin is gone (it is exiting).
    ServerGone,
}

async fn relay(
    stream: tokio::net::UnixStream,
    server: &mut Server,
    signals: &mut Signals,
) -> Ended {
    let (Some(server_in), Some(server_out)) = (server.stdin.take(), server.stdout.take()) else {
        return Ended::Over(server.stop(Signal::SIGTERM, signals).await);
    };
    let (socket_read, socket_write) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(socket_write));
    let requests = Arc::new(Mutex::new(Requests::default()));
    // Owns the server's stdin: when this future ends and is dropped, the server's stdin closes,
    // which tells a stdio MCP server to exit.
    let to_server = {
        let requests = requests.clone();
        async move {
            let mut server_in = server_in;
            let mut lines = BufReader::new(socket_read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                requests
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .sent(&line);
                if server_in
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return Inbound::ServerGone;
                }
            }
            Inbound::HungUp
        }
    };
    let from_server = {
        let (requests, writer) = (requests.clone(), writer.clone());
        async move {
            let mut lines = BufReader::new(server_out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line = host_codes_taken_back(line);
                requests
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .received(&line);
                let mut writer = writer.lock().await;
                if writer
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    };
    tokio::pin!(to_server, from_server);
    let mut to_done = false;
    let mut from_done = false;
    loop {
        tokio::select! {
            inbound = &mut to_server, if !to_done => match inbound {
                // The runtime hung up: the run is over; the server should exit on EOF.
                Inbound::HungUp => return Ended::Over(server.wait_or_kill(signals).await),
                Inbound::ServerGone => to_done = true,
            },
            _ = &mut from_server, if !from_done => from_done = true,
            _ = signals.child.recv() => if let Some(exit) = server.reap() {
                // Relay what it wrote before it died, then stop reading the runtime's requests.
                if !from_done {
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut from_server).await;
                }
                let runtime = Runtime { writer, requests };
                return Ended::Died { exit, runtime: Some(runtime) };
            },
            _ = signals.terminate.recv() => return Ended::Over(server.stop(Signal::SIGTERM, signals).await),
            _ = signals.interrupt.recv() => return Ended::Over(server.stop(Signal::SIGINT, signals).await),
        }
    }
}
