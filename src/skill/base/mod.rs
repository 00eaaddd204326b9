//! Our implementation of `@perstack/base`, the workspace tools, as an MCP server.
//!
//! It runs in the base-skill container (`perstack-sandbox base-skill --workspace /workspace`) and
//! speaks MCP on stdio. Tools, arguments and result shapes follow PERSTACK-COMPAT.md §6: a success
//! is one text item holding the result as JSON, a failure is one text item
//! `{"error":"Error","message":"…"}` (not an `isError` result), except `exec`, whose failure is
//! `{"error":"<message>","stdout"?,"stderr"?}`. `readImageFile` and `readPdfFile` add the file's
//! bytes after the JSON text (an `image` item, or an embedded `resource` blob), because the
//! runtime container cannot read the workspace. Arguments that do not match a tool's schema are a
//! JSON-RPC `invalid params` error. Path rules: [`paths`]; user docs: docs/base-skill.md.

pub(crate) mod archive;
pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod files;
pub(crate) mod info;
pub(crate) mod paths;
pub(crate) mod todo;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, ResourceContents};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use self::error::ToolError;
use self::files::InlineFile;
use self::paths::{Workspace, WorkspaceError};
use self::todo::Todos;
use crate::skill::server::{
    self, ServeError, ToolDef, ToolServer, json_result, object_schema, parse_args,
};
use crate::trust::inputs::ProtectedPath;

/// The server name Perstack knows the base skill by.
pub(crate) const SERVER_NAME: &str = "@perstack/base";

/// The `@perstack/base` MCP server for one workspace.
#[derive(Debug)]
pub(crate) struct BaseSkill {
    workspace: Arc<Workspace>,
    /// Per process, like Perstack's module-level todo list.
    todos: Mutex<Todos>,
    started: Instant,
}

impl BaseSkill {
    /// A server for `workspace`, which must be an existing directory (it is resolved to its
    /// realpath).
    pub(crate) fn new(workspace: impl Into<PathBuf>) -> Result<Self, WorkspaceError> {
        Ok(Self {
            workspace: Arc::new(Workspace::new(workspace.into())?),
            todos: Mutex::new(Todos::default()),
            started: Instant::now(),
        })
    }

    /// The same server, refusing to change `protected` paths (`trust::inputs`); with
    /// `confine_exec`, `exec`'s programs cannot change them either.
    pub(crate) fn with_protected(self, protected: Vec<ProtectedPath>, confine_exec: bool) -> Self {
        let workspace = Workspace::clone(&self.workspace)
            .with_protected(protected)
            .with_confined_exec(confine_exec);
        Self {
            workspace: Arc::new(workspace),
            ..self
        }
    }

    /// Runs `f` on the todo list. The guard stays in this (synchronous) frame, so it is never
    /// held across an `.await` of the tool dispatch.
    fn with_todos<T>(&self, f: impl FnOnce(&mut Todos) -> T) -> T {
        // Every update completes before the lock is released, so a panic elsewhere cannot leave
        // the list half-changed: keep using a poisoned lock.
        let mut todos = self
            .todos
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut todos)
    }

    /// Runs one tool and returns its result (success or failure shape).
    async fn call(&self, name: &str, args: Option<JsonObject>) -> Result<Reply, ErrorData> {
        let ws = &self.workspace;
        Ok(match name {
            "attemptCompletion" => self.with_todos(|t| t.attempt_completion()).into(),
            "todo" => {
                let args = parse_args(name, args)?;
                self.with_todos(|t| t.update(args)).into()
            }
            "clearTodo" => self.with_todos(Todos::clear).into(),
            "healthCheck" => info::health_check(ws, self.started).into(),
            "exec" => exec::exec(ws, parse_args(name, args)?).await.into(),
            "getFileInfo" => blocking(ws, name, args, info::get_file_info).await?,
            "readTextFile" => blocking(ws, name, args, files::read_text_file).await?,
            "readImageFile" => blocking(ws, name, args, files::read_image_file).await?,
            "readPdfFile" => blocking(ws, name, args, files::read_pdf_file).await?,
            "writeTextFile" => blocking(ws, name, args, files::write_text_file).await?,
            "appendTextFile" => blocking(ws, name, args, files::append_text_file).await?,
            "editTextFile" => blocking(ws, name, args, files::edit_text_file).await?,
            "moveFile" => blocking(ws, name, args, files::move_file).await?,
            "deleteFile" => blocking(ws, name, args, files::delete_file).await?,
            "listDirectory" => blocking(ws, name, args, files::list_directory).await?,
            "createDirectory" => blocking(ws, name, args, files::create_directory).await?,
            "deleteDirectory" => blocking(ws, name, args, files::delete_directory).await?,
            _ => return Err(server::unknown_tool(name)),
        })
    }
}

/// What a tool returns: a result object (sent as one JSON text item), or a file sent inline.
#[derive(Debug)]
enum Reply {
    Json(Value),
    Inline(InlineFile),
}

impl From<Value> for Reply {
    fn from(value: Value) -> Reply {
        Reply::Json(value)
    }
}

impl From<InlineFile> for Reply {
    fn from(file: InlineFile) -> Reply {
        Reply::Inline(file)
    }
}

impl Reply {
    /// The MCP result: one JSON text item; for an inline file, the `{path, mimeType, size}` text
    /// followed by an `image` item or an embedded `resource` with a base64 `blob`.
    fn into_result(self) -> CallToolResult {
        match self {
            Reply::Json(value) => json_result(&value),
            Reply::Inline(file) => {
                let data = BASE64.encode(&file.bytes);
                let item = if file.is_image() {
                    ContentBlock::image(data, file.mime_type)
                } else {
                    let uri = format!("file://{}", paths::lossy(&file.path));
                    ContentBlock::resource(
                        ResourceContents::blob(data, uri).with_mime_type(file.mime_type),
                    )
                };
                CallToolResult::success(vec![ContentBlock::text(file.info().to_string()), item])
            }
        }
    }
}

/// Parses the arguments, then runs a file tool on the blocking pool (file system calls block).
async fn blocking<A, T, F>(
    ws: &Arc<Workspace>,
    name: &str,
    args: Option<JsonObject>,
    tool: F,
) -> Result<Reply, ErrorData>
where
    A: DeserializeOwned + Send + 'static,
    T: Into<Reply> + Send + 'static,
    F: FnOnce(&Workspace, A) -> Result<T, ToolError> + Send + 'static,
{
    let args: A = parse_args(name, args)?;
    let ws = Arc::clone(ws);
    let outcome = tokio::task::spawn_blocking(move || tool(&ws, args))
        .await
        .map_err(|e| ErrorData::internal_error(format!("tool {name} did not finish: {e}"), None))?;
    Ok(outcome.map_or_else(|e| Reply::Json(e.to_json()), Into::into))
}

impl ToolServer for BaseSkill {
    const NAME: &'static str = SERVER_NAME;
    const TOOLS: &'static [ToolDef] = TOOLS;

    async fn call_tool(
        &self,
        name: &str,
        args: Option<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(self.call(name, args).await?.into_result())
    }
}

/// Why the base skill could not be served.
#[derive(Debug, thiserror::Error)]
pub enum BaseServeError {
    /// It was pointed at a workspace it cannot use.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// Serving it failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serves the base skill for `workspace` on stdin/stdout until the client hangs up.
pub(crate) async fn serve_stdio(
    workspace: PathBuf,
    protected: Vec<ProtectedPath>,
    confine_exec: bool,
) -> Result<(), BaseServeError> {
    let skill = BaseSkill::new(workspace)?.with_protected(protected, confine_exec);
    Ok(server::serve_stdio(skill).await?)
}

fn path_only(description: &'static str) -> JsonObject {
    object_schema(
        json!({ "path": { "type": "string", "description": description } }),
        &["path"],
    )
}

fn no_args() -> JsonObject {
    object_schema(json!({}), &[])
}

/// The tools, in the order `tools/list` shows them.
pub(crate) const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "attemptCompletion",
        title: "Attempt completion",
        description: "Signal that the task is done. Call it alone, after marking every todo \
            completed. Returns {} when nothing is left; otherwise returns the remainingTodos and \
            the run continues so you can finish them (or clearTodo to drop them).",
        input_schema: no_args,
    },
    ToolDef {
        name: "todo",
        title: "Todo list",
        description: "Keep a todo list for the current task. newTodos adds items (each gets an id, \
            counting from 0); completedTodos marks items done by id. Returns the whole list after \
            every call; call with no arguments to see it.",
        input_schema: || {
            object_schema(
                json!({
                    "newTodos": {
                        "type": "array", "items": { "type": "string" },
                        "description": "Titles of todos to add."
                    },
                    "completedTodos": {
                        "type": "array", "items": { "type": "number" },
                        "description": "Ids of todos to mark completed."
                    }
                }),
                &[],
            )
        },
    },
    ToolDef {
        name: "clearTodo",
        title: "Clear todo list",
        description: "Empty the todo list and restart ids at 0.",
        input_schema: no_args,
    },
    ToolDef {
        name: "exec",
        title: "Execute command",
        description: "Run a program in the workspace and return its output. No shell is used: \
            command is the program (looked up on PATH), args are passed as they are, so pipes, \
            redirections, globs and $VARS are not interpreted (run `sh` with args [\"-c\", \"...\"] \
            when you need them). Only PATH, HOME, SHELL, TERM, NODE_PATH and proxy settings are \
            inherited; env adds variables (PATH, HOME, LD_PRELOAD and similar cannot be \
            overridden). stdout/stderr choose which streams the output includes. The process is \
            killed after timeout milliseconds. Do not start commands that never end (servers, \
            `tail -f`) in the foreground.",
        input_schema: || {
            object_schema(
                json!({
                    "command": { "type": "string", "description": "Program to run, e.g. \"ls\" or \"python3\"." },
                    "args": {
                        "type": "array", "items": { "type": "string" },
                        "description": "Arguments, one string each."
                    },
                    "env": {
                        "type": "object", "additionalProperties": { "type": "string" },
                        "description": "Extra environment variables ({} for none)."
                    },
                    "cwd": { "type": "string", "description": "Working directory inside the workspace, e.g. \".\"." },
                    "stdout": { "type": "boolean", "description": "Include standard output in the result." },
                    "stderr": { "type": "boolean", "description": "Include standard error in the result." },
                    "timeout": {
                        "type": "number", "default": exec::DEFAULT_TIMEOUT_MS,
                        "description": "Milliseconds before the command is killed (default 60000)."
                    }
                }),
                &["command", "args", "env", "cwd", "stdout", "stderr"],
            )
        },
    },
    ToolDef {
        name: "getFileInfo",
        title: "Get file info",
        description: "Metadata of a file or directory: type, size, MIME type (from the extension), \
            timestamps and permissions.",
        input_schema: || path_only("File or directory, relative to the workspace or absolute."),
    },
    ToolDef {
        name: "healthCheck",
        title: "Health check",
        description: "Report that the workspace tools are running: workspace path, uptime, memory \
            and process id. Touches no files.",
        input_schema: no_args,
    },
    ToolDef {
        name: "readTextFile",
        title: "Read text file",
        description: "Read a UTF-8 text file, whole or a range of lines. Lines are counted from 0; \
            from is inclusive, to is exclusive (negative values count from the end). Not for \
            binary files: use readImageFile or readPdfFile for those.",
        input_schema: || {
            object_schema(
                json!({
                    "path": { "type": "string", "description": "File to read." },
                    "from": { "type": "number", "description": "First line to return (0-based). Default 0." },
                    "to": { "type": "number", "description": "Line to stop before. Default: end of file." }
                }),
                &["path"],
            )
        },
    },
    ToolDef {
        name: "readImageFile",
        title: "Read image file",
        description: "Load a PNG, JPEG, GIF or WebP image (at most 15 MB) so you can see it. \
            The type is recognized from the file's contents.",
        input_schema: || path_only("Image file to read."),
    },
    ToolDef {
        name: "readPdfFile",
        title: "Read PDF file",
        description: "Load a PDF document (at most 30 MB) so you can read it.",
        input_schema: || path_only("PDF file to read."),
    },
    ToolDef {
        name: "writeTextFile",
        title: "Write text file",
        description: "Create a text file or overwrite an existing one with the given UTF-8 text. \
            Missing parent directories are created. Overwrites without asking; to change part \
            of a file use editTextFile, to add to its end appendTextFile.",
        input_schema: || {
            object_schema(
                json!({
                    "path": { "type": "string", "description": "File to write, relative to the workspace or absolute." },
                    "text": { "type": "string", "description": "The complete new content." }
                }),
                &["path", "text"],
            )
        },
    },
    ToolDef {
        name: "appendTextFile",
        title: "Append to text file",
        description: "Add text to the end of an existing file. Nothing is inserted between the old \
            content and the text: start it with a newline if you need one.",
        input_schema: || {
            object_schema(
                json!({
                    "path": { "type": "string", "description": "Existing file to append to." },
                    "text": { "type": "string", "description": "Text to add at the end." }
                }),
                &["path", "text"],
            )
        },
    },
    ToolDef {
        name: "editTextFile",
        title: "Edit text file",
        description: "Replace the first occurrence of oldText in a file with newText. oldText must \
            match exactly (line endings aside: CRLF is treated as LF); include enough surrounding \
            lines to make it unique. Not for appending: use appendTextFile.",
        input_schema: || {
            object_schema(
                json!({
                    "path": { "type": "string", "description": "File to edit." },
                    "newText": { "type": "string", "description": "Text to put in its place." },
                    "oldText": { "type": "string", "description": "Exact text to replace." }
                }),
                &["path", "newText", "oldText"],
            )
        },
    },
    ToolDef {
        name: "moveFile",
        title: "Move file",
        description: "Move or rename a file or directory. The destination must not exist yet; \
            missing parent directories of it are created.",
        input_schema: || {
            object_schema(
                json!({
                    "source": { "type": "string", "description": "Current path." },
                    "destination": { "type": "string", "description": "New path." }
                }),
                &["source", "destination"],
            )
        },
    },
    ToolDef {
        name: "deleteFile",
        title: "Delete file",
        description: "Delete a file (a symbolic link is removed, not its target). Directories \
            need deleteDirectory.",
        input_schema: || path_only("File to delete."),
    },
    ToolDef {
        name: "listDirectory",
        title: "List directory",
        description: "List a directory's entries, sorted by name, with type (file or directory), \
            size and modification time. Use \".\" for the workspace root.",
        input_schema: || path_only("Directory to list, e.g. \".\"."),
    },
    ToolDef {
        name: "createDirectory",
        title: "Create directory",
        description: "Create one directory. It must not exist yet, and its parent must.",
        input_schema: || path_only("Directory to create."),
    },
    ToolDef {
        name: "deleteDirectory",
        title: "Delete directory",
        description: "Delete a directory. A non-empty one is only deleted with recursive: true, \
            which removes everything in it.",
        input_schema: || {
            object_schema(
                json!({
                    "path": { "type": "string", "description": "Directory to delete." },
                    "recursive": { "type": "boolean", "description": "Also delete its contents. Default false." }
                }),
                &["path"],
            )
        },
    },
];

#[cfg(test)]
mod tests;
