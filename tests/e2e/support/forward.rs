//! Other endpoints for the engine: every connection to a TCP port on 127.0.0.1, or to a unix
//! socket at a path of the test's choosing, is forwarded to the engine's own socket, so tests can
//! point `DOCKER_HOST=tcp://…` — or a rootless or Podman socket location — at a real engine.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixStream};

/// The engine's socket: the `unix://` DOCKER_HOST of the test environment, else the default.
fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("forwarder runtime")
}

async fn forward(mut client: impl AsyncRead + AsyncWrite + Unpin, socket: PathBuf) {
    if let Ok(mut engine) = UnixStream::connect(&socket).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
    }
}

/// Forwards a unix socket at a given path to the engine's socket until dropped.
pub struct UnixForwarder {
    runtime: Option<tokio::runtime::Runtime>,
}

impl UnixForwarder {
    /// Listens at `path` (its folder is created).
    pub fn start(path: &Path) -> UnixForwarder {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("socket folder");
        let runtime = runtime();
        let listener = {
            let _guard = runtime.enter();
            UnixListener::bind(path).expect("bind the socket")
        };
        let socket = engine_socket();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, socket.clone()));
            }
        });
        UnixForwarder {
            runtime: Some(runtime),
        }
    }
}

impl Drop for UnixForwarder {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Forwards 127.0.0.1:`port` to the engine's socket until dropped.
pub struct TcpForwarder {
    pub port: u16,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TcpForwarder {
    /// Listens on a free port.
    pub fn start() -> TcpForwarder {
        let runtime = runtime();
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let socket = engine_socket();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, socket.clone()));
            }
        });
        TcpForwarder {
            port,
            runtime: Some(runtime),
        }
    }

    /// `tcp://127.0.0.1:<port>`.
    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for TcpForwarder {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
