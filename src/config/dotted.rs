//! Dotted field paths such as `experts."@org/my-expert".skills."@perstack/base".command`.
//!
//! One syntax serves diagnostics and [`LoadedConfig::location`](super::LoadedConfig::location):
//! keys joined by `.`, a key quoted TOML-style when it is not a bare TOML key
//! (`[A-Za-z0-9_-]+`), array items as `[index]` (`experts.a.tags[2]`).

/// Builds the dotted path of a field from its keys, quoting the keys that need it.
///
/// `dotted_path(&["experts", "@org/x", "skills", "web", "command"])` is
/// `experts."@org/x".skills.web.command`.
pub fn dotted_path(keys: &[&str]) -> String {
    keys.iter()
        .fold(String::new(), |path, key| child(&path, key))
}

/// The path of `key` inside the table at `parent` (`""` is the document root).
pub(crate) fn child(parent: &str, key: &str) -> String {
    let mut path = String::with_capacity(parent.len() + key.len() + 3);
    path.push_str(parent);
    if !parent.is_empty() {
        path.push('.');
    }
    push_key(&mut path, key);
    path
}

/// The path of item `index` of the array at `parent`.
pub(crate) fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

fn push_key(path: &mut String, key: &str) {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
        return;
    }
    path.push('"');
    for c in key.chars() {
        match c {
            '"' => path.push_str("\\\""),
            '\\' => path.push_str("\\\\"),
            '\n' => path.push_str("\\n"),
            '\t' => path.push_str("\\t"),
            c if c.is_control() => path.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => path.push(c),
        }
    }
    path.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_keys_are_joined_with_dots() {
        assert_eq!(
            dotted_path(&["provider", "setting", "baseUrl"]),
            "provider.setting.baseUrl"
        );
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted() {
        assert_eq!(
            dotted_path(&[
                "experts",
                "@org/my-expert",
                "skills",
                "@perstack/base",
                "command"
            ]),
            r#"experts."@org/my-expert".skills."@perstack/base".command"#
        );
        assert_eq!(dotted_path(&["experts", "a.b"]), r#"experts."a.b""#);
        assert_eq!(dotted_path(&["experts", ""]), r#"experts."""#);
        assert_eq!(dotted_path(&["x", "say \"hi\""]), r#"x."say \"hi\"""#);
    }

    #[test]
    fn array_items_use_brackets() {
        assert_eq!(item(&child("", "envPath"), 1), "envPath[1]");
    }
}
