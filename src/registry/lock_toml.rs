//! TOML text exactly as Perstack writes perstack.lock (its `install` uses smol-toml's
//! `stringify`), so a lock written here reads the same in either tool and diffs cleanly:
//!
//! - in each table, the scalars and inline arrays first (`key = value`), then every sub-table
//!   as `[a.b]` — written even when it holds only sub-tables — and every non-empty array of
//!   tables as `[[a.b]]`; each such block ends with a blank line, and the whole text is trimmed
//!   (so it ends without a newline);
//! - keys matching `[A-Za-z0-9_-]+` bare, others quoted; strings as JSON strings (`\u007f`
//!   escaped too); arrays as `[ a, b ]`, the empty one as `[]`; a table inside an array inline,
//!   as `{ k = v }`; `null` left out.

use serde_json::{Map, Value};

/// The document for `root`.
pub(crate) fn stringify(root: &Map<String, Value>) -> String {
    table(root, "")
}

fn table(map: &Map<String, Value>, prefix: &str) -> String {
    let mut preamble = String::new();
    let mut tables = String::new();
    for (k, v) in map {
        let key = key(k);
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match v {
            Value::Null => {}
            Value::Array(items) if is_array_of_tables(items) => {
                for item in items.iter().filter_map(Value::as_object) {
                    tables.push_str(&format!("[[{path}]]\n{}\n\n", table(item, &path)));
                }
            }
            Value::Object(sub) => tables.push_str(&format!("[{path}]\n{}\n\n", table(sub, &path))),
            scalar => preamble.push_str(&format!("{key} = {}\n", value(scalar))),
        }
    }
    format!("{preamble}\n{tables}").trim().to_string()
}

fn is_array_of_tables(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare { k.to_string() } else { string(k) }
}

fn string(s: &str) -> String {
    // serde_json escapes as JSON.stringify does: `"`, `\`, and control characters.
    Value::String(s.to_string())
        .to_string()
        .replace('\u{7f}', "\\u007f")
}

fn value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(items) if items.is_empty() => "[]".to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(value).collect();
            format!("[ {} ]", items.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_string(),
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect();
            format!("{{ {} }}", pairs.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_lock_is_written_as_perstacks_install_writes_it() {
        let lock = json!({
            "version": "1",
            "generatedAt": 1735300000000_i64,
            "configPath": "lockfile.toml",
            "experts": {
                "e2e-lockfile": {
                    "key": "e2e-lockfile",
                    "name": "e2e-lockfile",
                    "version": "1.0.0",
                    "description": null,
                    "instruction": "Say \"hi\"\n\u{7f}",
                    "skills": {
                        "@perstack/base": {
                            "type": "mcpStdioSkill",
                            "name": "@perstack/base",
                            "pick": ["attemptCompletion", "healthCheck"],
                            "omit": [],
                            "lazyInit": false,
                        }
                    },
                    "delegates": [],
                    "tags": [],
                    "toolDefinitions": [{
                        "skillName": "@perstack/base",
                        "name": "attemptCompletion",
                        "inputSchema": {
                            "type": "object",
                            "properties": {"result": {"type": "string"}},
                            "required": ["result"],
                        }
                    }],
                }
            }
        });
        let expected = r#"version = "1"
generatedAt = 1735300000000
configPath = "lockfile.toml"

[experts]
[experts.e2e-lockfile]
key = "e2e-lockfile"
name = "e2e-lockfile"
version = "1.0.0"
instruction = "Say \"hi\"\n\u007f"
delegates = []
tags = []

[experts.e2e-lockfile.skills]
[experts.e2e-lockfile.skills."@perstack/base"]
type = "mcpStdioSkill"
name = "@perstack/base"
pick = [ "attemptCompletion", "healthCheck" ]
omit = []
lazyInit = false

[[experts.e2e-lockfile.toolDefinitions]]
skillName = "@perstack/base"
name = "attemptCompletion"

[experts.e2e-lockfile.toolDefinitions.inputSchema]
type = "object"
required = [ "result" ]

[experts.e2e-lockfile.toolDefinitions.inputSchema.properties]
[experts.e2e-lockfile.toolDefinitions.inputSchema.properties.result]
type = "string""#;
        let written = stringify(lock.as_object().expect("object"));
        assert_eq!(written, expected);
        let parsed: toml::Table = toml::from_str(&written).expect("valid TOML");
        assert_eq!(
            parsed["experts"]["e2e-lockfile"]["instruction"].as_str(),
            Some("Say \"hi\"\n\u{7f}")
        );
    }
}
