//! Plumbing shared by the MCP servers we ship: tools declared as data, argument parsing, result
//! builders, and running a handler on stdin/stdout.
//!
//! Each server is a [`ToolServer`]: a name, a [`ToolDef`] table and a dispatch on the tool's
//! name. [`Handler`] turns one into an [`rmcp::ServerHandler`] (rmcp's macros are off), so the
//! MCP glue is written once.

use std::future::Future;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{QuitReason, RequestContext, ServerInitializeError};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Why an MCP server could not be started or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The client closed the connection or sent something other than `initialize` first.
    /// (Boxed: rmcp's error is large and would bloat every `Result` carrying this.)
    #[error("MCP handshake on stdio failed: {0}")]
    Initialize(Box<ServerInitializeError>),
    /// The task serving requests panicked or was aborted.
    #[error("MCP server task ended abnormally: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl From<ServerInitializeError> for ServeError {
    fn from(err: ServerInitializeError) -> Self {
        Self::Initialize(Box::new(err))
    }
}

/// One tool as data: what `tools/list` shows the model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolDef {
    /// Tool name the model calls (flat namespace, unique per server).
    pub name: &'static str,
    /// Short human-readable title.
    pub title: &'static str,
    /// What the tool does, written for a model deciding whether and how to call it.
    pub description: &'static str,
    /// Builds the JSON Schema of the arguments (a function because `serde_json` values are not
    /// `const`).
    pub input_schema: fn() -> JsonObject,
}

impl ToolDef {
    /// The rmcp [`Tool`] that `tools/list` returns for this definition.
    pub(crate) fn to_tool(self) -> Tool {
        Tool::new(self.name, self.description, Arc::new((self.input_schema)()))
            .with_title(self.title)
    }
}

/// An MCP server whose tools are a [`ToolDef`] table and a dispatch on the tool's name.
pub(crate) trait ToolServer: Send + Sync + 'static {
    /// The server name `initialize` reports.
    const NAME: &'static str;
    /// The tools, in the order `tools/list` shows them.
    const TOOLS: &'static [ToolDef];

    /// Runs tool `name`. Protocol errors (an unknown tool, bad arguments) are `Err`; a tool that
    /// ran and failed is an `Ok` result in the server's own failure shape.
    fn call_tool(
        &self,
        name: &str,
        args: Option<JsonObject>,
    ) -> impl Future<Output = Result<CallToolResult, ErrorData>> + Send;
}

/// Serves a [`ToolServer`] as an rmcp [`ServerHandler`] with the tools capability only.
#[derive(Debug)]
pub(crate) struct Handler<T>(pub T);

impl<T: ToolServer> ServerHandler for Handler<T> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(T::NAME, env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools(T::TOOLS)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(self
            .0
            .call_tool(&request.name, request.arguments)
            .await?
            .into())
    }
}

/// All tools of a table, in table order.
pub(crate) fn tools(defs: &[ToolDef]) -> Vec<Tool> {
    defs.iter().copied().map(ToolDef::to_tool).collect()
}

/// An object schema: `properties` (a JSON object of property schemas) and the required names.
///
/// Non-object `properties` are ignored (an empty object is used), which only a typo in a tool
/// table could cause; the table tests catch that.
pub(crate) fn object_schema(properties: Value, required: &[&str]) -> JsonObject {
    let properties = match properties {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut schema = Map::new();
    schema.insert("type".into(), Value::from("object"));
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::from(required.to_vec()));
    }
    schema
}

/// Parses a tool's arguments into `T`; a missing `arguments` counts as `{}`.
///
/// A mismatch is a protocol error (`-32602`), like the TypeScript SDK's schema validation: the
/// runtime shows the model `Error calling tool <n>: <message>`, and the message names the field.
pub(crate) fn parse_args<T: DeserializeOwned>(
    tool: &str,
    arguments: Option<JsonObject>,
) -> Result<T, ErrorData> {
    let value = Value::Object(arguments.unwrap_or_default());
    serde_json::from_value(value).map_err(|e| {
        ErrorData::invalid_params(format!("Invalid arguments for tool {tool}: {e}"), None)
    })
}

/// The error for a tool name the server does not have.
pub(crate) fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("Tool {name} not found"), None)
}

/// A result with one text content item.
pub(crate) fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// A result with one text content item holding `value` as compact JSON (`JSON.stringify`).
pub(crate) fn json_result(value: &Value) -> CallToolResult {
    text_result(value.to_string())
}

/// Serves `server` on this process's stdin/stdout until the client closes the connection.
///
/// stdout carries only newline-delimited JSON-RPC; anything else the process prints must go to
/// stderr.
pub(crate) async fn serve_stdio<T: ToolServer>(server: T) -> Result<(), ServeError> {
    let handler = Handler(server);
    // `stdio_pipes` drives pipes through the reactor when both ends are FIFOs (how the skill host
    // starts us), so a pending stdin read does not hold up shutdown; otherwise it falls back to
    // tokio's blocking stdio.
    let running = handler.serve(rmcp::transport::stdio_pipes()).await?;
    match running.waiting().await? {
        // Closed: the client hung up (stdin EOF), the normal end. Cancelled: someone cancelled the
        // service token, which only we could do, so also an orderly stop.
        QuitReason::Closed | QuitReason::Cancelled => Ok(()),
        QuitReason::JoinError(e) => Err(ServeError::Join(e)),
        // QuitReason is non_exhaustive; a future reason is not an error we know of.
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! In-process MCP round trips: a server on one end of a `tokio::io::duplex`, an rmcp client on
    //! the other.

    use rmcp::model::{CallToolRequestParams, CallToolResult};
    use rmcp::service::RunningService;
    use rmcp::{RoleClient, ServiceError, ServiceExt};
    use serde_json::Value;

    use super::{Handler, ToolServer};

    /// A connected client; the server task runs until the client is dropped.
    pub(crate) struct Client {
        pub service: RunningService<RoleClient, ()>,
    }

    /// Starts `server` on an in-memory pipe and connects a client to it.
    pub(crate) async fn connect<T: ToolServer>(server: T) -> Client {
        let handler = Handler(server);
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            let (read, write) = tokio::io::split(server_io);
            let running = handler
                .serve((read, write))
                .await
                .expect("server handshake");
            let _ = running.waiting().await;
        });
        let (read, write) = tokio::io::split(client_io);
        // Like the runtime's client (`skill::client`).
        let transport = rmcp::transport::async_rw::AsyncRwTransport::new_client(read, write)
            .with_max_line_length(crate::skill::MAX_MESSAGE_BYTES);
        let service = ().serve(transport).await.expect("client handshake");
        // The server task ends on its own once the client side closes.
        drop(server);
        Client { service }
    }

    /// Starts `server` on an in-memory pipe and connects our own MCP client (the runtime's) to
    /// it as skill `name`.
    pub(crate) async fn skill<T: ToolServer>(
        name: &str,
        server: T,
    ) -> std::sync::Arc<crate::skill::client::McpSkill> {
        let handler = Handler(server);
        let (client_end, server_end) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            if let Ok(service) = handler.serve(server_end).await {
                let _ = service.waiting().await;
            }
        });
        let (skill, _) = crate::skill::client::McpSkill::handshake(name, client_end)
            .await
            .expect("handshake");
        std::sync::Arc::new(skill)
    }

    impl Client {
        /// Calls `name` with `args` (a JSON object) and returns the raw result or error.
        pub(crate) async fn call_raw(
            &self,
            name: &str,
            args: Value,
        ) -> Result<CallToolResult, ServiceError> {
            let mut params = CallToolRequestParams::new(name.to_owned());
            if let Value::Object(map) = args {
                params = params.with_arguments(map);
            }
            self.service.call_tool(params).await
        }

        /// Calls `name` and returns the text of its single text content item.
        pub(crate) async fn call_text(&self, name: &str, args: Value) -> String {
            let result = self.call_raw(name, args).await.expect("tool call");
            assert_eq!(result.content.len(), 1, "one content item: {result:?}");
            assert_ne!(
                result.is_error,
                Some(true),
                "not an isError result: {result:?}"
            );
            result.content[0]
                .as_text()
                .expect("text content")
                .text
                .clone()
        }

        /// Calls `name` and parses its single text content item as JSON.
        pub(crate) async fn call_json(&self, name: &str, args: Value) -> Value {
            let text = self.call_text(name, args).await;
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} returned non-JSON {text:?}: {e}"))
        }

        /// The tools the server lists, in order.
        pub(crate) async fn tool_names(&self) -> Vec<String> {
            let tools = self.service.list_all_tools().await.expect("tools/list");
            tools.iter().map(|t| t.name.to_string()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_schema_lists_properties_and_required() {
        let schema = object_schema(json!({"a": {"type": "string"}}), &["a"]);
        assert_eq!(
            Value::Object(schema),
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
        );
        let empty = object_schema(json!({}), &[]);
        assert_eq!(
            Value::Object(empty),
            json!({"type": "object", "properties": {}})
        );
    }

    #[test]
    fn parse_args_names_the_tool_and_field() {
        #[derive(serde::Deserialize, Debug)]
        struct Args {
            #[allow(dead_code)]
            path: String,
        }
        let err = parse_args::<Args>("readTextFile", None).unwrap_err();
        assert!(err.message.contains("readTextFile"), "{}", err.message);
        assert!(err.message.contains("path"), "{}", err.message);
    }
}
