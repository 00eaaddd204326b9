//! `KubeApi`'s pod streams — the real `attach` and `exec` of kube over websockets — against the
//! tests' HTTP server on loopback (`test_support::http`), which answers the upgrade as the API
//! server does: the first subprotocol of kube's offer it speaks (`v5.channel.k8s.io`, else
//! `v4.channel.k8s.io`), binary frames whose first byte is the channel (0 stdin, 1 stdout,
//! 2 stderr, 3 the Status as JSON; v5's `[255, 0]` closes stdin), a one-byte frame per channel
//! first. Then the workspace's copy in and back through them, end to end.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::client::{KubeApi, KubeError};
use super::lifecycle_tests::{assert_came_back, pinned_plan, read, run_changes, workspace};
use super::workspace::{PodStreams, WorkspaceCopy};
use crate::test_support::http::{Recorded, Response, TestServer, WebSocket};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// A connection to the server as a kubeconfig with an `http://` cluster URL gives it.
fn api(server: &TestServer) -> KubeApi {
    let url = server.url().parse().expect("url");
    let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
    KubeApi::with_client(client, "ci-agents")
}

/// What the pod's end of a stream got.
#[derive(Debug, Default, Clone)]
struct Got {
    /// The subprotocol chosen.
    protocol: String,
    /// The request's path and query.
    target: String,
    /// Everything on channel 0.
    stdin: Vec<u8>,
    /// Stdin was closed: v5's close signal, or (v4) the websocket's close.
    closed: bool,
}

/// Sends `bytes` on `channel`.
async fn send(socket: &mut WebSocket, channel: u8, bytes: &[u8]) {
    let mut frame = vec![channel];
    frame.extend_from_slice(bytes);
    socket.send(Message::binary(frame)).await.expect("send");
}

/// The API server's first frames: each channel's number alone.
async fn open(socket: &mut WebSocket) {
    for channel in 0..4 {
        socket
            .send(Message::binary(vec![channel]))
            .await
            .expect("send");
    }
}

/// Reads stdin until it is closed (or the connection ends) into `got`.
async fn take_stdin(socket: &mut WebSocket, got: &mut Got) {
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Binary(frame) if frame[..] == [255, 0] => {
                got.closed = true;
                return;
            }
            Message::Binary(frame) if frame.first() == Some(&0) => {
                got.stdin.extend_from_slice(&frame[1..]);
            }
            Message::Close(_) => {
                got.closed = true;
                return;
            }
            _ => {}
        }
    }
}

/// Closes the websocket as the API server does: its close frame (or the answer to the
/// client's), then what the client still sends until its close completes the handshake.
async fn close(mut socket: WebSocket) {
    let _ = socket.close(None).await;
    while let Some(Ok(_)) = socket.next().await {}
}

fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// The Status the API server sends for a command that exited with 2.
fn exit_2() -> Value {
    json!({"metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [workspace-out], exit code 2",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}})
}

/// How an exec's stream ends after its output.
#[derive(Clone)]
enum Ending {
    /// This Status on channel 3, then the websocket's close.
    Status(Value),
    /// The websocket's close, no Status.
    Closed,
    /// The connection dropped, no close either.
    Dropped,
}

/// A pod whose attach takes stdin (and answers `status` after it, when given) and whose exec
/// writes `stdout` in frames of 7,000 bytes and `stderr`, then ends as `ending`; what each
/// stream got goes to the returned list.
fn pod(
    protocols: &'static [&'static str],
    attach_status: Option<Value>,
    stdout: Vec<u8>,
    stderr: &'static str,
    ending: Ending,
) -> (TestServer, Arc<Mutex<Vec<Got>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = TestServer::start(move |request: Recorded| {
        let (log, stdout, ending) = (log.clone(), stdout.clone(), ending.clone());
        let attach_status = attach_status.clone();
        async move {
            Response::websocket(protocols, move |mut socket, protocol| async move {
                let mut got = Got {
                    protocol,
                    target: request.target.clone(),
                    ..Got::default()
                };
                open(&mut socket).await;
                let attach = request.path.ends_with("/attach");
                if attach {
                    take_stdin(&mut socket, &mut got).await;
                }
                // Told before the stream ends, when the client may look.
                log.lock().expect("lock").push(got);
                if attach {
                    if let Some(status) = attach_status {
                        send(&mut socket, 3, status.to_string().as_bytes()).await;
                    }
                    close(socket).await;
                } else {
                    for piece in stdout.chunks(7000) {
                        send(&mut socket, 1, piece).await;
                    }
                    send(&mut socket, 2, stderr.as_bytes()).await;
                    end(socket, ending).await;
                }
            })
        }
    });
    (server, seen)
}

async fn end(mut socket: WebSocket, ending: Ending) {
    match ending {
        Ending::Status(status) => {
            send(&mut socket, 3, status.to_string().as_bytes()).await;
            close(socket).await;
        }
        Ending::Closed => close(socket).await,
        Ending::Dropped => drop(socket),
    }
}

/// Bytes that show a reordering or a lost piece: a counter's bytes.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Attaches `input`, sent in pieces of 5,000 bytes.
async fn attach(api: &KubeApi, input: &[u8]) -> Result<(), KubeError> {
    let (sender, receiver) = mpsc::channel(4);
    let pieces: Vec<Bytes> = input.chunks(5000).map(Bytes::copy_from_slice).collect();
    let feed = async move {
        for piece in pieces {
            sender.send(piece).await.expect("attach reads");
        }
    };
    let (attached, ()) = tokio::join!(api.attach_stdin("p", "workspace-in", receiver), feed);
    attached
}

/// Execs `workspace-out` and gathers its stdout.
async fn exec(api: &KubeApi) -> (Result<(), KubeError>, Vec<u8>) {
    let (sender, mut receiver) = mpsc::channel::<Bytes>(4);
    let command = ["/usr/local/bin/perstack-sandbox", "workspace-out"].map(String::from);
    let gather = async move {
        let mut out = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            out.extend_from_slice(&chunk);
        }
        out
    };
    tokio::join!(
        api.exec_stdout("p", "base-skill-main", command.to_vec(), sender),
        gather
    )
}

#[tokio::test]
async fn attach_delivers_every_byte_in_order_then_closes_stdin_on_v5_and_on_v4() {
    let input = payload(300_000);
    for (protocols, status) in [(&[V5, V4][..], Some(success())), (&[V4][..], None)] {
        let (server, seen) = pod(protocols, status, Vec::new(), "", Ending::Closed);
        attach(&api(&server), &input).await.expect("attached");
        let got = seen.lock().expect("lock")[0].clone();
        // kube offers v5 first; a server without it gets v4, whose stdin ends with the
        // websocket's close (and so without a Status).
        assert_eq!(got.protocol, protocols[0]);
        assert_eq!(got.stdin.len(), input.len());
        assert!(got.stdin == input, "the bytes arrived whole and in order");
        assert!(got.closed, "stdin was closed after the last byte");
        assert!(
            got.target
                .starts_with("/api/v1/namespaces/ci-agents/pods/p/attach?"),
            "{}",
            got.target
        );
        for param in ["container=workspace-in", "stdin=true"] {
            assert!(got.target.contains(param), "{param} in {}", got.target);
        }
        assert!(!got.target.contains("stdout="), "{}", got.target);
    }
}

#[tokio::test]
async fn an_attach_that_ends_with_a_failure_status_is_an_error() {
    let failure = json!({"metadata": {}, "status": "Failure",
        "message": "error attaching to container: container workspace-in is not running"});
    let (server, _) = pod(&[V5], Some(failure), Vec::new(), "", Ending::Closed);
    let error = attach(&api(&server), b"tar").await.expect_err("failed");
    let message = error.to_string();
    assert!(
        message.starts_with("Kubernetes API: cannot create pods/attach in namespace ci-agents: "),
        "{message}"
    );
    assert!(
        message.contains("container workspace-in is not running"),
        "{message}"
    );
}

#[tokio::test]
async fn exec_relays_stdout_whole_and_ends_well_only_on_the_success_status() {
    let stdout = payload(200_000);
    let (server, seen) = pod(
        &[V5, V4],
        None,
        stdout.clone(),
        "",
        Ending::Status(success()),
    );
    let (result, out) = exec(&api(&server)).await;
    result.expect("ran");
    assert_eq!(out.len(), stdout.len());
    assert!(out == stdout, "stdout arrived whole and in order");
    let got = seen.lock().expect("lock")[0].clone();
    assert_eq!(got.protocol, V5);
    for param in [
        "command=%2Fusr%2Flocal%2Fbin%2Fperstack-sandbox",
        "command=workspace-out",
        "container=base-skill-main",
        "stdout=true",
        "stderr=true",
    ] {
        assert!(got.target.contains(param), "{param} in {}", got.target);
    }
    assert!(!got.target.contains("stdin="), "{}", got.target);
}

#[tokio::test]
async fn an_exec_that_fails_is_the_error_the_user_sees_with_its_stderr() {
    let (server, _) = pod(
        &[V5],
        None,
        payload(1000),
        "workspace-out: cannot read /workspace/x: permission denied\n",
        Ending::Status(exit_2()),
    );
    let (result, _) = exec(&api(&server)).await;
    let message = result.expect_err("failed").to_string();
    assert_eq!(
        message,
        "Kubernetes API: cannot create pods/exec in namespace ci-agents: command terminated with non-zero exit code: error executing command [workspace-out], exit code 2 (workspace-out: cannot read /workspace/x: permission denied)"
    );
}

#[tokio::test]
async fn an_exec_cut_before_its_status_is_an_error_even_when_its_stdout_looks_whole() {
    for ending in [Ending::Closed, Ending::Dropped] {
        let (server, _) = pod(&[V5], None, payload(50_000), "", ending);
        let (result, _) = exec(&api(&server)).await;
        let message = result.expect_err("cut").to_string();
        assert!(
            message.contains("the exec ended without its status"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_refused_upgrade_says_which_permission_is_missing_and_what_to_do() {
    let server = TestServer::start(|_| async {
        Response::json(
            403,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "Forbidden", "code": 403,
                "message": "pods \"p\" is forbidden: User \"ci\" cannot create resource \"pods/exec\""}),
        )
    });
    let api = api(&server);
    let (result, _) = exec(&api).await;
    let attached = attach(&api, b"tar").await;
    for (error, resource) in [(result, "pods/exec"), (attached, "pods/attach")] {
        let error = error.expect_err("refused");
        assert!(matches!(error, KubeError::Forbidden { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "the cluster refused to create {resource} in namespace ci-agents (403 Forbidden"
            )),
            "{message}"
        );
        assert!(
            message.contains("doctor --backend kubernetes -n ci-agents"),
            "{message}"
        );
    }
}

/// A pod that runs the workspace's roles behind its streams: attach feeds `workspace-in` (the
/// command line the pod spec gives that container) into the pod's workspace, exec runs the
/// command line it was sent (`workspace-out`) there after the run's changes.
fn pod_running_the_roles(copy_in: Vec<String>, dir: std::path::PathBuf) -> TestServer {
    TestServer::start(move |request: Recorded| {
        let (copy_in, dir) = (copy_in.clone(), dir.clone());
        async move {
            Response::websocket(&[V5, V4], move |mut socket, _| async move {
                open(&mut socket).await;
                if request.path.ends_with("/attach") {
                    let mut got = Got::default();
                    take_stdin(&mut socket, &mut got).await;
                    let crate::cli::RoleCommand::WorkspaceIn(mut args) =
                        super::fake::parse(&copy_in)
                    else {
                        panic!("{copy_in:?}")
                    };
                    args.workspace = dir;
                    crate::commands::roles::copy_in(&args, &got.stdin[..]).expect("unpacked");
                    send(&mut socket, 3, success().to_string().as_bytes()).await;
                } else {
                    let command: Vec<String> =
                        url::form_urlencoded::parse(request.query.as_bytes())
                            .filter(|(k, _)| k == "command")
                            .map(|(_, v)| v.into_owned())
                            .collect();
                    let crate::cli::RoleCommand::WorkspaceOut(mut args) =
                        super::fake::parse(&command)
                    else {
                        panic!("{command:?}")
                    };
                    run_changes(&dir);
                    args.workspace = dir;
                    let mut tar = Vec::new();
                    crate::commands::roles::copy_out(&args, &mut tar).expect("packed");
                    for piece in tar.chunks(7000) {
                        send(&mut socket, 1, piece).await;
                    }
                    send(&mut socket, 3, success().to_string().as_bytes()).await;
                }
                close(socket).await;
            })
        }
    })
}

#[tokio::test]
async fn the_workspace_goes_in_and_comes_back_through_the_real_streams() {
    let host = workspace();
    let plan = pinned_plan(host.path());
    let caps = crate::skill::base::archive::Caps {
        bytes: 1 << 20,
        entries: 1000,
    };
    let copy = WorkspaceCopy::prepare(&plan, caps, |s| super::manifest::container_name(&plan, s))
        .expect("prepared")
        .expect("base-skill mounts the workspace");
    let pod_dir = tempfile::tempdir().expect("tempdir");
    let server = pod_running_the_roles(copy.copy_in_command(), pod_dir.path().to_path_buf());
    let api = api(&server);
    copy.copy_in(&api, "p").await.expect("in");
    let pod = pod_dir.path();
    assert_eq!(read(pod, "notes.md").as_deref(), Some("before"));
    assert_eq!(read(pod, "old.txt").as_deref(), Some("old"));
    assert!(!pod.join("perstack").exists(), "the run data never goes in");
    let copied = copy.copy_back(&api, "p").await.expect("back");
    assert_eq!(copied.removed, 1, "{copied:?}");
    assert_came_back(host.path());
}
