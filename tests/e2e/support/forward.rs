//! A TCP endpoint for the engine: forwards every connection on 127.0.0.1 to the engine's unix
//! socket, so tests can point `DOCKER_HOST=tcp://…` at a real engine.

use std::path::PathBuf;

use tokio::net::{TcpListener, UnixStream};

/// Forwards 127.0.0.1:`port` to the engine's socket until dropped.
pub struct TcpForwarder {
    pub port: u16,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TcpForwarder {
    /// Listens on a free port; the engine's socket is the `unix://` DOCKER_HOST of the test
    /// environment, else /var/run/docker.sock.
    pub fn start() -> TcpForwarder {
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("forwarder runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let socket = socket.clone();
                tokio::spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect(&socket).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
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
