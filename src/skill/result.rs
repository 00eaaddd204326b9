//! Turning an MCP `CallToolResult` into the parts the model sees (PERSTACK-COMPAT.md §5,
//! "MCP results").
//!
//! Works on the result's JSON wire form, which the MCP spec fixes, rather than on a library's
//! types, which change between versions.

use serde_json::Value;

use crate::event::Part;

/// What a tool call produced, ready for a `toolResultPart`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolOutput {
    /// Text, inline images and inline files.
    pub parts: Vec<Part>,
    /// True when the call failed.
    pub is_error: bool,
}

impl ToolOutput {
    /// A failure explained in one text part.
    pub(crate) fn error(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            parts: vec![Part::text(text)],
            is_error: true,
        }
    }
}

/// Maps a `CallToolResult` (as JSON) for `tool` called with `args`:
/// - no content → `Tool <n> returned nothing with arguments: <json>`;
/// - empty text → `Error: No content`;
/// - image → `imageInlinePart`; embedded resource text → text, blob → `fileInlinePart`;
/// - audio and resource links are dropped (no provider takes them back);
/// - `isError: true` is kept as the error flag.
pub(crate) fn map_call_result(tool: &str, args: &Value, result: &Value) -> ToolOutput {
    let is_error = result["isError"].as_bool().unwrap_or(false);
    let content = result["content"].as_array().cloned().unwrap_or_default();
    if content.is_empty() {
        return ToolOutput {
            parts: vec![Part::text(format!(
                "Tool {tool} returned nothing with arguments: {args}"
            ))],
            is_error,
        };
    }
    let mut parts = Vec::new();
    for item in &content {
        match item["type"].as_str() {
            Some("text") => {
                let text = item["text"].as_str().unwrap_or_default();
                parts.push(Part::text(if text.is_empty() {
                    "Error: No content"
                } else {
                    text
                }));
            }
            Some("image") => parts.push(Part::ImageInlinePart {
                id: crate::ids::new_id(),
                encoded_data: item["data"].as_str().unwrap_or_default().to_string(),
                mime_type: item["mimeType"].as_str().unwrap_or("image/png").to_string(),
            }),
            Some("resource") => {
                let resource = &item["resource"];
                if let Some(text) = resource["text"].as_str() {
                    parts.push(Part::text(text));
                } else if let Some(blob) = resource["blob"].as_str() {
                    parts.push(Part::FileInlinePart {
                        id: crate::ids::new_id(),
                        encoded_data: blob.to_string(),
                        mime_type: resource["mimeType"]
                            .as_str()
                            .unwrap_or("application/octet-stream")
                            .to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        parts.push(Part::text(format!(
            "Tool {tool} returned nothing with arguments: {args}"
        )));
    }
    ToolOutput { parts, is_error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(out: &ToolOutput) -> Vec<String> {
        out.parts
            .iter()
            .map(|p| match p {
                Part::TextPart { text, .. } => text.clone(),
                Part::ImageInlinePart { mime_type, .. } => format!("image:{mime_type}"),
                Part::FileInlinePart { mime_type, .. } => format!("file:{mime_type}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn maps_each_content_kind() {
        let out = map_call_result(
            "t",
            &json!({}),
            &json!({"content": [
                {"type": "text", "text": "hi"},
                {"type": "text", "text": ""},
                {"type": "image", "data": "AAA", "mimeType": "image/jpeg"},
                {"type": "audio", "data": "AAA", "mimeType": "audio/wav"},
                {"type": "resource", "resource": {"uri": "x", "text": "doc"}},
                {"type": "resource", "resource": {"uri": "y", "blob": "QkxPQg==", "mimeType": "application/pdf"}},
                {"type": "resource_link", "uri": "z", "name": "z"}
            ]}),
        );
        assert_eq!(
            texts(&out),
            [
                "hi",
                "Error: No content",
                "image:image/jpeg",
                "doc",
                "file:application/pdf"
            ]
        );
        assert!(!out.is_error);
    }

    #[test]
    fn empty_results_say_so_with_the_arguments() {
        let out = map_call_result("echo", &json!({"a": 1}), &json!({"content": []}));
        assert_eq!(
            texts(&out),
            [r#"Tool echo returned nothing with arguments: {"a":1}"#]
        );
    }

    #[test]
    fn is_error_is_kept() {
        let out = map_call_result(
            "x",
            &json!({}),
            &json!({"content": [{"type": "text", "text": "boom"}], "isError": true}),
        );
        assert!(out.is_error);
    }
}
