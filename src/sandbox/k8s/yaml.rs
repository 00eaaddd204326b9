//! Kubernetes objects (JSON values) as one YAML stream, for `export kubernetes`.
//!
//! Block style for maps and sequences, every string double-quoted with JSON's escapes (a YAML
//! double-quoted scalar is a superset of a JSON string), so no value is ever read back as a
//! number, a boolean or a null by accident (`"true"`, `"0750"`, `"1e3"`, `"no"` stay strings).

use serde_json::Value;

/// `objects` as YAML documents, each after a `---` line, `header` (comment lines) first.
pub(crate) fn stream(header: &[String], objects: &[Value]) -> String {
    let mut out = String::new();
    for line in header {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    for object in objects {
        out.push_str("---\n");
        block(object, 0, &mut out);
    }
    out
}

/// `value` at `indent`, each entry on lines of its own.
fn block(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                pad(indent, out);
                out.push_str(&self::key(key));
                out.push(':');
                nested(item, indent + 2, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                pad(indent, out);
                out.push('-');
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first entry on the dash's line, the others aligned with it.
                        let mut text = String::new();
                        block(item, indent + 2, &mut text);
                        out.push(' ');
                        out.push_str(&text[indent + 2..]);
                    }
                    _ => nested(item, indent + 2, out),
                }
            }
        }
        scalar => {
            pad(indent, out);
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a scalar on the same line, a collection on the next ones.
fn nested(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            block(value, indent, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            block(value, indent, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

/// A scalar or an empty collection on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
        // JSON's text of a string, number, boolean or null is YAML's too.
        other => other.to_string(),
    }
}

/// A key: plain when it is made of characters no YAML reader takes for anything else.
fn key(key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if plain {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn pad(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lists_and_every_kind_of_scalar_come_out_as_block_yaml() {
        let value = serde_json::json!({
            "apiVersion": "v1",
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}, "annotations": {}},
            "spec": {
                "replicas": 1,
                "ports": [{"port": 3128, "protocol": "TCP"}],
                "args": ["--", "true", "0750", "a \"quoted\"\nline"],
                "empty": [],
                "nested": [[1, 2], {}],
                "flag": false,
                "none": null,
                "weird key": "v"
            }
        });
        let text = stream(&["made by a test".to_string()], &[value.clone(), value]);
        let one = "---
apiVersion: \"v1\"
metadata:
  labels:
    app.kubernetes.io/name: \"x\"
  annotations: {}
spec:
  replicas: 1
  ports:
    - port: 3128
      protocol: \"TCP\"
  args:
    - \"--\"
    - \"true\"
    - \"0750\"
    - \"a \\\"quoted\\\"\\nline\"
  empty: []
  nested:
    -
      - 1
      - 2
    - {}
  flag: false
  none: null
  \"weird key\": \"v\"
";
        assert_eq!(text, format!("# made by a test\n{one}{one}"));
    }
}
