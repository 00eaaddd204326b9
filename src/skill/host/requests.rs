//! The runtime's requests the server has not answered yet, read from the JSON-RPC lines the
//! skill host relays, so that when the server dies each one still gets an answer: an error
//! naming the cause, instead of a wait that never ends.

use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::contract::supervision::{SERVER_EXITED, SKILL_DOWN};

/// What the relay needs of one JSON-RPC message; the rest is skipped unparsed.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<IgnoredAny>,
}

/// The messages of one line: JSON-RPC allows a batch (an array).
fn envelopes(line: &str) -> Vec<Envelope> {
    if line.trim_start().starts_with('[') {
        serde_json::from_str(line).unwrap_or_default()
    } else {
        serde_json::from_str(line)
            .map(|e| vec![e])
            .unwrap_or_default()
    }
}

/// The requests in flight on one connection.
#[derive(Debug, Default)]
pub(super) struct Requests {
    /// Ids of the runtime's requests the server has not answered, in the order they were sent.
    pending: Vec<Value>,
    /// The id of the runtime's `initialize`, while it waits for its answer.
    initialize: Option<Value>,
    /// The server answered `initialize` with a result.
    answered_handshake: bool,
}

impl Requests {
    /// A line from the runtime, on its way to the server.
    pub(super) fn sent(&mut self, line: &str) {
        for message in envelopes(line) {
            // A message from the runtime with an id but no method answers a server's request.
            let (Some(id), Some(method)) = (message.id, message.method) else {
                continue;
            };
            if method == "initialize" {
                self.initialize = Some(id.clone());
            }
            self.pending.push(id);
        }
    }

    /// A line from the server, on its way to the runtime.
    pub(super) fn received(&mut self, line: &str) {
        for message in envelopes(line) {
            let (Some(id), None) = (message.id, message.method) else {
                continue;
            };
            if self.initialize.as_ref() == Some(&id) {
                self.initialize = None;
                self.answered_handshake |= message.result.is_some();
            }
            self.pending.retain(|p| *p != id);
        }
    }

    /// The server has answered an `initialize` with a result on this connection.
    pub(super) fn answered_handshake(&self) -> bool {
        self.answered_handshake
    }

    /// The unanswered requests' ids, emptying the list.
    pub(super) fn take_pending(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.pending)
    }
}

/// What a server's error answer with one of the host's own codes ([`SERVER_EXITED`],
/// [`SKILL_DOWN`]) is relayed with instead: JSON-RPC's internal error.
const INTERNAL_ERROR: i64 = -32603;

/// `line` from the server, with the host's own error codes taken back: those codes tell the
/// runtime that the server is gone and the host hangs up, so a live server's error answer
/// carrying one — by chance or on purpose — reaches the runtime as an internal error, its
/// message and data kept. Any other line is returned as it is, byte for byte.
pub(super) fn host_codes_taken_back(line: String) -> String {
    // Only a line that can hold one of the codes is parsed; the codes' text is made once, not
    // for every line relayed.
    static CODES: LazyLock<[String; 2]> =
        LazyLock::new(|| [SERVER_EXITED, SKILL_DOWN].map(|code| code.to_string()));
    if !CODES.iter().any(|code| line.contains(code.as_str())) {
        return line;
    }
    let Ok(mut message) = serde_json::from_str::<Value>(&line) else {
        return line;
    };
    let mut changed = false;
    let mut take_back = |message: &mut Value| {
        if let Some(code) = message.pointer_mut("/error/code")
            && code
                .as_i64()
                .is_some_and(|c| c == i64::from(SERVER_EXITED) || c == i64::from(SKILL_DOWN))
        {
            *code = Value::from(INTERNAL_ERROR);
            changed = true;
        }
    };
    match &mut message {
        Value::Array(batch) => batch.iter_mut().for_each(&mut take_back),
        single => take_back(single),
    }
    if changed { message.to_string() } else { line }
}

/// The JSON-RPC error answer to request `id`, as one line.
pub(super) fn error_line(id: &Value, code: i32, message: &str) -> String {
    let answer = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message},
    });
    format!("{answer}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_servers_error_with_the_hosts_codes_is_relayed_as_an_internal_error() {
        let own =
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32090,"message":"mine","data":{"x":1}}}"#;
        let relayed: Value =
            serde_json::from_str(&host_codes_taken_back(own.into())).expect("json");
        assert_eq!(
            relayed,
            json!({"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"mine","data":{"x":1}}})
        );
        let batch = r#"[{"jsonrpc":"2.0","id":4,"error":{"code":-32091,"message":"m"}},{"jsonrpc":"2.0","id":5,"result":{"n":-32090}}]"#;
        let relayed: Value =
            serde_json::from_str(&host_codes_taken_back(batch.into())).expect("json");
        assert_eq!(relayed[0]["error"]["code"], -32603);
        assert_eq!(relayed[1]["result"]["n"], -32090);
        // Everything else is relayed byte for byte, a result that merely mentions the code too.
        for line in [
            r#"{"jsonrpc":"2.0","id":6,"result":{"text":"-32090"}}"#,
            r#"{"jsonrpc":"2.0", "id":7,"error":{"code":-32602,"message":"-32091"}}"#,
            "not json -32090",
        ] {
            assert_eq!(host_codes_taken_back(line.into()), line);
        }
    }

    #[test]
    fn requests_are_pending_until_answered() {
        let mut requests = Requests::default();
        requests.sent(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
        );
        assert!(!requests.answered_handshake());
        requests.received(r#"{"jsonrpc":"2.0","id":0,"result":{"serverInfo":{"name":"x"}}}"#);
        assert!(requests.answered_handshake());
        requests.sent(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        requests.sent(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#);
        requests.sent(r#"{"jsonrpc":"2.0","id":"two","method":"tools/call","params":{}}"#);
        // The server's own request and the runtime's answer to it are not the runtime's requests.
        requests.received(r#"{"jsonrpc":"2.0","id":1,"method":"roots/list"}"#);
        requests.sent(r#"{"jsonrpc":"2.0","id":1,"result":{"roots":[]}}"#);
        requests.received(r#"{"jsonrpc":"2.0","id":"two","error":{"code":-1,"message":"no"}}"#);
        // Not JSON at all is relayed, and ignored here.
        requests.received("Listening on stdio");
        assert_eq!(requests.take_pending(), [json!(1)]);
        assert!(requests.take_pending().is_empty());
    }

    #[test]
    fn an_initialize_answered_with_an_error_is_no_handshake() {
        let mut requests = Requests::default();
        requests.sent(r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#);
        requests.received(r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32602,"message":"v"}}"#);
        assert!(!requests.answered_handshake());
        assert!(requests.take_pending().is_empty());
    }

    #[test]
    fn batches_are_read_message_by_message() {
        let mut requests = Requests::default();
        requests.sent(
            r#"[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":6,"method":"ping"}]"#,
        );
        requests.received(r#"[{"jsonrpc":"2.0","id":6,"result":{}}]"#);
        assert_eq!(requests.take_pending(), [json!(5)]);
    }

    #[test]
    fn error_answers_are_json_rpc_lines() {
        let line = error_line(&json!(7), -32090, "the server exited with code 3");
        let answer: Value = serde_json::from_str(line.trim_end()).expect("JSON");
        assert_eq!(
            answer,
            json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32090, "message": "the server exited with code 3"}})
        );
        assert!(line.ends_with('\n'));
    }
}
