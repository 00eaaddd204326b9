//! A fixture MCP server for isolation tests (`perstack-sandbox fixture-mcp`).
//!
//! Run as a skill inside a sandbox, it reports what the skill can see (environment, user,
//! hostname) and misbehaves on request (protocol errors, crashes, stderr output, slow calls), so
//! the Docker tests can check isolation and error relaying from the outside.
//!
//! Tools:
//! - `echo {text}` → text content `text`
//! - `get_env {}` → JSON object of the whole process environment
//! - `whoami {}` → `{"uid","gid","hostname"}`
//! - `fail {message?}` → a JSON-RPC error (internal error) with the message
//! - `crash {code?, afterMs?}` → `fixture-mcp: crashing on request` on stderr, then exit with
//!   `code` (default 1) at once, without answering; with `afterMs`, answers
//!   `{"exitingInMs": afterMs}` first and exits that long after (a server that dies between
//!   calls)
//! - `stderr {text}` → the text as one line on stderr; result `{}`
//! - `sleep {ms}` → waits, then `{"slept": ms}`
//! - `allocate {mb}` → allocates and touches `mb` MiB, then `{"allocated": mb}`: past the
//!   container's memory limit the kernel kills the server instead
//!
//! And the probes of the security tests (`skill/probe.rs`), each answering with the concrete
//! outcome as JSON:
//! - `tcp_connect {host, port}` → `{"connected", "error"?}`, ignoring proxy settings
//! - `resolve {host}` → `{"addresses", "error"?}`
//! - `proxy_connect {host, port}` → the `HTTPS_PROXY`'s answer to `CONNECT`: `{"status", "body"}`
//! - `proxy_get {url}` → the `HTTP_PROXY`'s answer to a plain-HTTP `GET url`: `{"status"}`
//! - `read_file {path}` → `{"content"}` or `{"error", "kind"}`
//! - `symlink_read {target}` → the same, read through a fresh symlink to `target`
//! - `proxy_connect_as {host, port, claim}` → the same `CONNECT` with the proxy URL's token
//!   presented as `claim`: `self`, `none` (no credentials) or another principal's name
//! - `attempt {label, args}` → one move of `perstack-sandbox confine attempt ARGS…` made by a
//!   child of this server (so under its confinement): `{"label", "args", "outcome"}`. An
//!   argument `{pid:TEXT}` becomes the pid of the first other process whose command line holds
//!   `TEXT` (the standalone image's hostile-skill tests aim at the runtime and other skills so)

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{CallToolResult, JsonObject};
use serde::Deserialize;
use serde_json::json;

use crate::skill::probe;
use crate::skill::server::{
    self, ServeError, ToolDef, ToolServer, json_result, object_schema, parse_args, text_result,
};

/// The fixture's MCP server name.
pub(crate) const SERVER_NAME: &str = "perstack-sandbox-fixture";

/// Message of `fail` when none is given.
pub(crate) const DEFAULT_FAIL_MESSAGE: &str = "fixture failure requested";

/// What `crash` writes to stderr before exiting.
pub(crate) const CRASH_MESSAGE: &str = "fixture-mcp: crashing on request";

/// The fixture MCP server. Stateless.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FixtureServer;

#[derive(Deserialize)]
struct TextArgs {
    text: String,
}

#[derive(Deserialize)]
struct FailArgs {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrashArgs {
    #[serde(default)]
    code: Option<i32>,
    /// Answer first and exit this long after: a server that dies between calls.
    #[serde(default)]
    after_ms: Option<u64>,
}

#[derive(Deserialize)]
struct SleepArgs {
    ms: u64,
}

#[derive(Deserialize)]
struct AllocateArgs {
    mb: usize,
}

#[derive(Deserialize)]
struct HostPortArgs {
    host: String,
    #[serde(default)]
    port: u16,
}

#[derive(Deserialize)]
struct UrlArgs {
    url: String,
}

#[derive(Deserialize)]
struct ClaimArgs {
    host: String,
    port: u16,
    claim: String,
}

#[derive(Deserialize)]
struct AttemptToolArgs {
    label: String,
    args: Vec<String>,
}

#[derive(Deserialize)]
struct PathArgs {
    path: String,
}

impl ToolServer for FixtureServer {
    const NAME: &'static str = SERVER_NAME;
    const TOOLS: &'static [ToolDef] = TOOLS;

    async fn call_tool(
        &self,
        name: &str,
        args: Option<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        match name {
            "echo" => {
                let TextArgs { text } = parse_args(name, args)?;
                Ok(text_result(text))
            }
            "get_env" => Ok(json_result(&environment())),
            "whoami" => Ok(json_result(&whoami()?)),
            "fail" => {
                let FailArgs { message } = parse_args(name, args)?;
                Err(ErrorData::internal_error(
                    message.unwrap_or_else(|| DEFAULT_FAIL_MESSAGE.to_owned()),
                    None,
                ))
            }
            "crash" => {
                let CrashArgs { code, after_ms } = parse_args(name, args)?;
                let code = code.unwrap_or(1);
                let Some(after_ms) = after_ms else {
                    crash(code)
                };
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(after_ms));
                    crash(code)
                });
                Ok(json_result(&json!({ "exitingInMs": after_ms })))
            }
            "stderr" => {
                let TextArgs { text } = parse_args(name, args)?;
                let _ = writeln!(std::io::stderr().lock(), "{text}");
                Ok(json_result(&json!({})))
            }
            "sleep" => {
                let SleepArgs { ms } = parse_args(name, args)?;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json_result(&json!({ "slept": ms })))
            }
            "allocate" => {
                let AllocateArgs { mb } = parse_args(name, args)?;
                Ok(json_result(&allocate(mb)))
            }
            _ => call_probe(name, args).await,
        }
    }
}

/// The whole process environment: sorted, so a test failure diff is readable; lossy so odd
/// bytes cannot fail it.
fn environment() -> serde_json::Value {
    let env: BTreeMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    json!(env)
}

/// Who and where this process is: `{"uid","gid","hostname"}`.
fn whoami() -> Result<serde_json::Value, ErrorData> {
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .map_err(|e| ErrorData::internal_error(format!("gethostname failed: {e}"), None))?;
    Ok(json!({
        "uid": nix::unistd::getuid().as_raw(),
        "gid": nix::unistd::getgid().as_raw(),
        "hostname": hostname,
    }))
}

/// Says so on stderr and exits with `code` at once.
fn crash(code: i32) -> ! {
    let mut stderr = std::io::stderr().lock();
    // Nothing useful can be done if stderr is gone; exit anyway.
    let _ = writeln!(stderr, "{CRASH_MESSAGE}");
    let _ = stderr.flush();
    // Deliberately abrupt: no reply, no shutdown, like a skill that dies mid-call.
    std::process::exit(code);
}

/// Allocates `mb` MiB and writes every byte, so the pages are really the process's.
fn allocate(mb: usize) -> serde_json::Value {
    let memory = vec![1u8; mb << 20];
    let touched = memory
        .iter()
        .step_by(4096)
        .map(|b| *b as usize)
        .sum::<usize>();
    json!({ "allocated": mb, "pages": touched })
}

/// The probes of the security tests (`skill/probe.rs`), and the error of an unknown tool.
async fn call_probe(name: &str, args: Option<JsonObject>) -> Result<CallToolResult, ErrorData> {
    match name {
        "tcp_connect" => {
            let HostPortArgs { host, port } = parse_args(name, args)?;
            Ok(json_result(&probe::tcp_connect(&host, port).await))
        }
        "resolve" => {
            let HostPortArgs { host, .. } = parse_args(name, args)?;
            Ok(json_result(&probe::resolve(&host).await))
        }
        "proxy_connect" => {
            let HostPortArgs { host, port } = parse_args(name, args)?;
            Ok(json_result(&probe::proxy_connect(&host, port).await))
        }
        "proxy_get" => {
            let UrlArgs { url } = parse_args(name, args)?;
            Ok(json_result(&probe::proxy_get(&url).await))
        }
        "read_file" => {
            let PathArgs { path } = parse_args(name, args)?;
            Ok(json_result(&probe::read_file(&path)))
        }
        "symlink_read" => {
            let PathArgs { path } = parse_args(name, args)?;
            Ok(json_result(&probe::symlink_read(&path)))
        }
        "proxy_connect_as" => {
            let ClaimArgs { host, port, claim } = parse_args(name, args)?;
            Ok(json_result(
                &probe::proxy_connect_as(&host, port, &claim).await,
            ))
        }
        "attempt" => {
            let AttemptToolArgs { label, args } = parse_args(name, args)?;
            Ok(json_result(&probe::attempt(&label, &args).await))
        }
        _ => Err(server::unknown_tool(name)),
    }
}

/// Serves the fixture on stdin/stdout until the client hangs up (or `crash` is called).
pub(crate) async fn serve_stdio() -> Result<(), ServeError> {
    server::serve_stdio(FixtureServer).await
}

fn text_schema(description: &'static str) -> JsonObject {
    object_schema(
        json!({ "text": { "type": "string", "description": description } }),
        &["text"],
    )
}

/// The fixture's tools, in the order `tools/list` shows them.
pub(crate) const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "echo",
        title: "Echo",
        description: "Return the given text unchanged.",
        input_schema: || text_schema("Text to return."),
    },
    ToolDef {
        name: "get_env",
        title: "Get environment",
        description: "Return this server's whole process environment as a JSON object.",
        input_schema: || object_schema(json!({}), &[]),
    },
    ToolDef {
        name: "whoami",
        title: "Who am I",
        description: "Return the server process's uid, gid and hostname as JSON.",
        input_schema: || object_schema(json!({}), &[]),
    },
    ToolDef {
        name: "fail",
        title: "Fail",
        description: "Answer with a JSON-RPC error carrying the message (not an isError result).",
        input_schema: || {
            object_schema(
                json!({ "message": { "type": "string", "description": "Error message; default \"fixture failure requested\"." } }),
                &[],
            )
        },
    },
    ToolDef {
        name: "crash",
        title: "Crash",
        description: "Write a line to stderr and exit the server process with the code: at \
            once, without answering, or afterMs milliseconds after answering {\"exitingInMs\"}.",
        input_schema: || {
            object_schema(
                json!({
                    "code": { "type": "integer", "description": "Exit code; default 1." },
                    "afterMs": { "type": "integer", "description": "Answer first, exit this long after." }
                }),
                &[],
            )
        },
    },
    ToolDef {
        name: "stderr",
        title: "Write to stderr",
        description: "Write the text as one line to the server's stderr and return {}.",
        input_schema: || text_schema("Line to write."),
    },
    ToolDef {
        name: "sleep",
        title: "Sleep",
        description: "Wait the given number of milliseconds, then return {\"slept\": ms}.",
        input_schema: || {
            object_schema(
                json!({ "ms": { "type": "integer", "minimum": 0, "description": "Milliseconds to wait." } }),
                &["ms"],
            )
        },
    },
    ToolDef {
        name: "allocate",
        title: "Allocate",
        description: "Allocate and touch the given number of MiB, then return {\"allocated\": mb}.",
        input_schema: || {
            object_schema(
                json!({ "mb": { "type": "integer", "minimum": 0, "description": "Mebibytes to allocate." } }),
                &["mb"],
            )
        },
    },
    ToolDef {
        name: "tcp_connect",
        title: "TCP connect",
        description: "Open a TCP connection to host:port directly (no proxy); report whether it connected.",
        input_schema: host_port_schema,
    },
    ToolDef {
        name: "resolve",
        title: "Resolve",
        description: "Resolve a host name; report its addresses or the error, and how long it took (ms).",
        input_schema: || {
            object_schema(
                json!({ "host": { "type": "string", "description": "Name to resolve." } }),
                &["host"],
            )
        },
    },
    ToolDef {
        name: "proxy_connect",
        title: "Proxy CONNECT",
        description: "Ask the HTTPS_PROXY for a tunnel to host:port; report its status and body.",
        input_schema: host_port_schema,
    },
    ToolDef {
        name: "proxy_get",
        title: "Plain HTTP through the proxy",
        description: "Send GET url (plain http://) to the HTTP_PROXY; report its status.",
        input_schema: || {
            object_schema(
                json!({ "url": { "type": "string", "description": "An http:// URL." } }),
                &["url"],
            )
        },
    },
    ToolDef {
        name: "read_file",
        title: "Read file",
        description: "Read up to 64 KiB of a file; report its content or the error.",
        input_schema: || path_schema("File to read."),
    },
    ToolDef {
        name: "proxy_connect_as",
        title: "Proxy CONNECT under a claimed name",
        description: "Ask the HTTPS_PROXY for a tunnel, presenting its token as `self`, `none` or another principal's name; report its status.",
        input_schema: || {
            object_schema(
                json!({
                    "host": { "type": "string" },
                    "port": { "type": "integer", "minimum": 1, "maximum": 65535 },
                    "claim": { "type": "string", "description": "self, none, or a principal's name." }
                }),
                &["host", "port", "claim"],
            )
        },
    },
    ToolDef {
        name: "attempt",
        title: "Breakout attempt",
        description: "Make one `confine attempt` move from a child process; {pid:TEXT} names another process by its command line.",
        input_schema: || {
            object_schema(
                json!({
                    "label": { "type": "string", "description": "Echoed back, to find the answer." },
                    "args": { "type": "array", "items": { "type": "string" }, "description": "The attempt and its arguments." }
                }),
                &["label", "args"],
            )
        },
    },
    ToolDef {
        name: "symlink_read",
        title: "Read through a symlink",
        description: "Make a symlink to the path in the temporary folder and read through it.",
        input_schema: || path_schema("Symlink target."),
    },
];

fn host_port_schema() -> JsonObject {
    object_schema(
        json!({
            "host": { "type": "string", "description": "Host name or address." },
            "port": { "type": "integer", "minimum": 1, "maximum": 65535 }
        }),
        &["host", "port"],
    )
}

fn path_schema(description: &'static str) -> JsonObject {
    object_schema(
        json!({ "path": { "type": "string", "description": description } }),
        &["path"],
    )
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;
    use std::time::Instant;

    use rmcp::{ServiceError, ServiceExt};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::skill::server::testing::connect;

    #[tokio::test]
    async fn lists_its_tools() {
        let client = connect(FixtureServer).await;
        let info = client.service.peer_info().unwrap();
        assert_eq!(info.server_info.as_ref().unwrap().name, SERVER_NAME);
        assert_eq!(
            client.tool_names().await,
            [
                "echo",
                "get_env",
                "whoami",
                "fail",
                "crash",
                "stderr",
                "sleep",
                "allocate",
                "tcp_connect",
                "resolve",
                "proxy_connect",
                "proxy_get",
                "read_file",
                "proxy_connect_as",
                "attempt",
                "symlink_read"
            ]
        );
    }

    #[tokio::test]
    async fn allocate_keeps_nothing_after_answering() {
        let client = connect(FixtureServer).await;
        let out = client
            .call_json("allocate", serde_json::json!({"mb": 2}))
            .await;
        assert_eq!(out["allocated"], 2);
        assert_eq!(out["pages"], 512);
    }

    #[tokio::test]
    async fn echo_returns_the_text() {
        let client = connect(FixtureServer).await;
        assert_eq!(
            client
                .call_text("echo", json!({"text": "hi {there}"}))
                .await,
            "hi {there}"
        );
    }

    #[tokio::test]
    async fn get_env_returns_the_whole_environment() {
        let client = connect(FixtureServer).await;
        let env = client.call_json("get_env", json!({})).await;
        let expected: BTreeMap<String, String> = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        assert_eq!(env, json!(expected));
    }

    #[tokio::test]
    async fn whoami_reports_ids_and_hostname() {
        let client = connect(FixtureServer).await;
        let who = client.call_json("whoami", json!({})).await;
        assert_eq!(who["uid"], nix::unistd::getuid().as_raw());
        assert_eq!(who["gid"], nix::unistd::getgid().as_raw());
        assert_eq!(
            who["hostname"],
            nix::unistd::gethostname()
                .unwrap()
                .to_string_lossy()
                .as_ref()
        );
    }

    #[tokio::test]
    async fn fail_is_a_json_rpc_error() {
        let client = connect(FixtureServer).await;
        let Err(ServiceError::McpError(e)) =
            client.call_raw("fail", json!({"message": "boom"})).await
        else {
            panic!("fail must answer with an error");
        };
        assert_eq!(e.message, "boom");
        let Err(ServiceError::McpError(e)) = client.call_raw("fail", json!({})).await else {
            panic!("fail must answer with an error");
        };
        assert_eq!(e.message, DEFAULT_FAIL_MESSAGE);
    }

    #[tokio::test]
    async fn stderr_returns_an_empty_object() {
        let client = connect(FixtureServer).await;
        assert_eq!(
            client
                .call_text("stderr", json!({"text": "from a test"}))
                .await,
            "{}"
        );
    }

    #[tokio::test]
    async fn sleep_waits() {
        let client = connect(FixtureServer).await;
        let started = Instant::now();
        assert_eq!(
            client.call_text("sleep", json!({"ms": 50})).await,
            r#"{"slept":50}"#
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn unknown_tool_is_an_error() {
        let client = connect(FixtureServer).await;
        assert!(client.call_raw("nope", json!({})).await.is_err());
    }

    /// Env var that turns [`child_server`] from a no-op into the server of [`crash_exits_the_process`].
    const CHILD_ENV: &str = "PERSTACK_SANDBOX_FIXTURE_CHILD";

    /// Not a test of its own: when re-executed by [`crash_exits_the_process`] with [`CHILD_ENV`]
    /// set, this test binary serves the fixture on its real stdin/stdout.
    #[tokio::test]
    async fn child_server() {
        if std::env::var_os(CHILD_ENV).is_some() {
            serve_stdio().await.unwrap();
        }
    }

    /// `crash` and `stderr` act on the process itself, so they run the fixture in a child process:
    /// this test binary again, running only [`child_server`].
    #[tokio::test]
    async fn crash_exits_the_process() {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "skill::fixture::tests::child_server",
                "--nocapture",
                "-q",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        let mut stderr = child.stderr.take().unwrap();

        // libtest prints its own lines on the same stdout; pass on only the JSON-RPC messages.
        let (mut to_client, from_child) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(start) = line.find('{') {
                    let message = format!("{}\n", &line[start..]);
                    if to_client.write_all(message.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        });
        let client = ().serve((from_child, stdin)).await.unwrap();

        let mut params = rmcp::model::CallToolRequestParams::new("stderr");
        params =
            params.with_arguments(json!({"text": "relayed line"}).as_object().unwrap().clone());
        client.call_tool(params).await.unwrap();

        let mut params = rmcp::model::CallToolRequestParams::new("crash");
        params = params.with_arguments(json!({"code": 3}).as_object().unwrap().clone());
        let crashed = tokio::time::timeout(Duration::from_secs(30), client.call_tool(params)).await;
        assert!(
            matches!(crashed, Ok(Err(_))),
            "crash must end the connection: {crashed:?}"
        );

        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        let mut err = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
            .await
            .unwrap();
        assert!(err.contains("relayed line\n"), "{err}");
        assert!(err.contains(CRASH_MESSAGE), "{err}");
    }
}
