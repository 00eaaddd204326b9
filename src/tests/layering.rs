//! The layering of ARCHITECTURE.md ("Layers") holds: the import graph between the top-level
//! modules of `src/` has no cycle.
//!
//! The graph is read from the source text, not from the compiler: every module reachable from
//! `lib.rs` through `mod name;` declarations, minus what only tests compile — items under
//! `#[cfg(test)]` (or `#[cfg(all(test, …))]`, or the `test-support` feature), so the `tests.rs`,
//! `*_tests.rs` and `tests/` modules they declare, and `test_support`. An edge `a → b` is a path
//! into `b` written in `a`: `crate::b…` (also inside `use crate::{…}` groups, and `$crate::b…`
//! in macros) or `super::…::b…` climbing out of `a` to the crate root. Comments, strings and
//! character literals are blanked first, so neither a doc comment nor a message makes an edge.
//!
//! This file uses `std` alone: besides `cargo test`, `make lint` compiles it by itself with
//! `rustc --test` in seconds, without building the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One reference from a top-level module to another, with where it is written.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    at: String,
}

/// The source text with comments, string and character literals replaced by spaces, byte for
/// byte (newlines kept), so offsets and line numbers stay those of the file.
fn blank_literals(text: &str) -> Vec<u8> {
    let src = text.as_bytes();
    let mut out = src.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for byte in &mut out[from..to.min(src.len())] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    };
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(src.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < src.len() {
                if src[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if src[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) = raw_string_end(src, i) {
            blank(&mut out, i, end);
            i = end;
        } else if src[i] == b'"' || (rest.starts_with(b"b\"") && !ident_before(src, i)) {
            let mut j = i + if src[i] == b'"' { 1 } else { 2 };
            while j < src.len() && src[j] != b'"' {
                j += if src[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if src[i] == b'\'' {
            // A character literal ('x', '\n', '\u{1F600}', '"'), not a lifetime ('a).
            let end = if rest.get(1) == Some(&b'\\') {
                rest.iter()
                    .skip(2)
                    .position(|&b| b == b'\'')
                    .map(|n| i + n + 3)
            } else {
                let width = std::str::from_utf8(&rest[1..rest.len().min(5)])
                    .ok()
                    .or_else(|| std::str::from_utf8(&rest[1..rest.len().min(2)]).ok())
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                (rest.get(1 + width) == Some(&b'\'')).then_some(i + width + 2)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Where the raw string literal (`r"…"`, `r#"…"#`, `br#"…"#`) starting at `i` ends, if one does.
fn raw_string_end(src: &[u8], i: usize) -> Option<usize> {
    if ident_before(src, i) {
        return None;
    }
    let mut j = i;
    if src.get(j) == Some(&b'b') {
        j += 1;
    }
    if src.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = src[j..].iter().take_while(|&&b| b == b'#').count();
    j += hashes;
    if src.get(j) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let body = j + 1;
    src[body..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map(|n| body + n + close.len())
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn ident_before(src: &[u8], i: usize) -> bool {
    i > 0 && is_ident(src[i - 1])
}

fn ident_at(src: &[u8], i: usize) -> &str {
    let len = src[i..].iter().take_while(|&&b| is_ident(b)).count();
    std::str::from_utf8(&src[i..i + len]).unwrap_or("")
}

fn skip_space(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && src[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The offset just past the bracket matching the one at `open`.
fn matching(src: &[u8], open: usize) -> usize {
    let mut depth = 0i32;
    for (j, &byte) in src.iter().enumerate().skip(open) {
        match byte {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    src.len()
}

/// Whether a `#[cfg(…)]` attribute's text leaves its item to test builds alone.
fn test_only(attribute: &str) -> bool {
    let compact: String = attribute.chars().filter(|c| !c.is_whitespace()).collect();
    compact == "#[cfg(test)]"
        || compact.starts_with("#[cfg(all(test,")
        || compact == "#[cfg(feature=\"test-support\")]"
}

/// Blanks every item (with its attributes) that only test builds compile: from the attribute to
/// the item's `;` or the close of its first `{ … }` block, whichever comes first at its own depth.
fn blank_test_items(raw: &str, code: &mut [u8]) {
    let mut i = 0;
    while let Some(n) = find(code, b"#[", i) {
        let start = n;
        let attr_end = matching(code, start + 1);
        if !test_only(raw.get(start..attr_end).unwrap_or("")) {
            i = attr_end;
            continue;
        }
        let mut j = skip_space(code, attr_end);
        // Further attributes of the same item.
        while code[j..].starts_with(b"#[") {
            j = skip_space(code, matching(code, j + 1));
        }
        let mut end = code.len();
        let mut k = j;
        while k < code.len() {
            match code[k] {
                b';' => {
                    end = k + 1;
                    break;
                }
                b'{' => {
                    end = matching(code, k);
                    break;
                }
                b'(' | b'[' => k = matching(code, k),
                // The enclosing block closes: the item was its last expression.
                b')' | b']' | b'}' => {
                    end = k;
                    break;
                }
                _ => k += 1,
            }
        }
        for byte in &mut code[start..end] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
        i = end;
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|n| from + n)
}

/// The modules `mod name;` declares in this (cleaned) file, outside any inline module.
fn declared_modules(code: &[u8]) -> Vec<String> {
    mod_items(code)
        .into_iter()
        .filter(|&(_, after)| code.get(after) == Some(&b';'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The ranges of inline `mod name { … }` blocks, each adding one level that `super` climbs.
fn inline_modules(code: &[u8]) -> Vec<(usize, usize)> {
    mod_items(code)
        .into_iter()
        .filter(|&(_, after)| code.get(after) == Some(&b'{'))
        .map(|(_, after)| (after, matching(code, after)))
        .collect()
}

/// Each `mod name` item in this (cleaned) file: its name and where the code after the name
/// starts (`;` for a declared module, `{` for an inline one).
fn mod_items(code: &[u8]) -> Vec<(&str, usize)> {
    let mut items = Vec::new();
    let mut i = 0;
    while let Some(n) = find(code, b"mod ", i) {
        i = n + 4;
        if ident_before(code, n) {
            continue;
        }
        let name_at = skip_space(code, i);
        let name = ident_at(code, name_at);
        if !name.is_empty() {
            items.push((name, skip_space(code, name_at + name.len())));
        }
    }
    items
}

/// The first name of each path in a `{ a::b, c, d::{e, f} }` group starting at `open`.
fn group_heads(code: &[u8], open: usize) -> Vec<String> {
    let close = matching(code, open);
    let mut heads = Vec::new();
    let mut expect_head = true;
    let mut j = open + 1;
    while j < close - 1 {
        match code[j] {
            b'{' | b'(' | b'[' => {
                j = matching(code, j);
                continue;
            }
            b',' => expect_head = true,
            byte if is_ident(byte) && expect_head => {
                let name = ident_at(code, j);
                heads.push(name.to_string());
                expect_head = false;
                j += name.len();
                continue;
            }
            _ => {}
        }
        j += 1;
    }
    heads
}

/// The top-level modules a path starting at `at` (just past `crate::`) names: one, or each head
/// of a `{ … }` group.
fn heads_at(code: &[u8], at: usize) -> Vec<String> {
    let at = skip_space(code, at);
    match code.get(at) {
        Some(b'{') => group_heads(code, at),
        Some(&byte) if is_ident(byte) => vec![ident_at(code, at).to_string()],
        _ => Vec::new(),
    }
}

/// The top-level modules this file's code names, each with its line.
fn references(code: &[u8], module: &[String]) -> Vec<(String, usize)> {
    let line = |at: usize| code[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(n) = find(code, b"crate::", i) {
        i = n + 7;
        if ident_before(code, n) {
            continue;
        }
        for head in heads_at(code, i) {
            found.push((head, line(n)));
        }
    }
    let inline = inline_modules(code);
    let mut i = 0;
    while let Some(n) = find(code, b"super::", i) {
        if ident_before(code, n) || (n >= 2 && &code[n - 2..n] == b"::") {
            i = n + 7;
            continue;
        }
        let mut climbs = 0;
        let mut j = n;
        while code[j..].starts_with(b"super::") {
            climbs += 1;
            j = skip_space(code, j + 7);
        }
        i = j;
        let depth = module.len() + inline.iter().filter(|(s, e)| *s < n && n < *e).count();
        if climbs == depth {
            for head in heads_at(code, j) {
                found.push((head, line(n)));
            }
        }
    }
    found
}

/// Every non-test module file reachable from `lib.rs`, with its module path.
fn module_files(src: &Path) -> Vec<(Vec<String>, PathBuf)> {
    let mut files = Vec::new();
    let mut queue = vec![(Vec::new(), src.join("lib.rs"))];
    while let Some((module, path)) = queue.pop() {
        let raw = std::fs::read_to_string(&path).expect("readable module file");
        let mut code = blank_literals(&raw);
        blank_test_items(&raw, &mut code);
        let folder = match path.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "mod.rs") => path.parent().expect("a parent").to_path_buf(),
            _ => path.with_extension(""),
        };
        for name in declared_modules(&code) {
            let flat = folder.join(format!("{name}.rs"));
            let nested = folder.join(&name).join("mod.rs");
            let file = if flat.exists() { flat } else { nested };
            assert!(
                file.exists(),
                "module `{name}` declared in {} has no file",
                path.display()
            );
            let mut child = module.clone();
            child.push(name);
            queue.push((child, file));
        }
        files.push((module, path));
    }
    files.sort();
    files
}

/// The edges between distinct top-level modules, read from the files under `src`.
fn edges(src: &Path) -> (BTreeSet<String>, Vec<Edge>) {
    let files = module_files(src);
    let tops: BTreeSet<String> = files
        .iter()
        .filter(|(m, _)| m.len() == 1)
        .map(|(m, _)| m[0].clone())
        .collect();
    let mut edges = Vec::new();
    for (module, path) in files.iter().filter(|(m, _)| !m.is_empty()) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let raw = std::fs::read_to_string(path).expect("readable module file");
        let mut code = blank_literals(&raw);
        blank_test_items(&raw, &mut code);
        for (to, line) in references(&code, module) {
            if to != module[0] && tops.contains(&to) {
                let shown = path
                    .strip_prefix(src.parent().unwrap_or(src))
                    .unwrap_or(path);
                edges.push(Edge {
                    from: module[0].clone(),
                    to,
                    at: format!("{}:{line}", shown.display()),
                });
            }
        }
    }
    (tops, edges)
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(nodes: &BTreeSet<String>, edges: &[Edge]) -> Vec<BTreeSet<String>> {
    struct Walk<'a> {
        next: BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, node: &'a str) {
        let index = walk.index.len();
        walk.index.insert(node, index);
        walk.low.insert(node, index);
        walk.stack.push(node);
        let next: Vec<&str> = walk.next.get(node).into_iter().flatten().copied().collect();
        for to in next {
            if !walk.index.contains_key(to) {
                visit(walk, to);
                let low = walk.low[node].min(walk.low[to]);
                walk.low.insert(node, low);
            } else if walk.stack.contains(&to) {
                let low = walk.low[node].min(walk.index[to]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let mut component = BTreeSet::new();
            while let Some(top) = walk.stack.pop() {
                component.insert(top.to_string());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                walk.found.push(component);
            }
        }
    }
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for edge in edges {
        next.entry(edge.from.as_str())
            .or_default()
            .insert(edge.to.as_str());
    }
    let mut walk = Walk {
        next,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in nodes {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

/// What a failure shows: each cycle's modules and, for every edge inside it, where it is written.
fn describe(found: &[BTreeSet<String>], edges: &[Edge]) -> String {
    let mut text = String::new();
    for component in found {
        let names: Vec<&str> = component.iter().map(String::as_str).collect();
        text.push_str(&format!("cycle between {{{}}}:\n", names.join(", ")));
        let mut inside: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for edge in edges
            .iter()
            .filter(|e| component.contains(&e.from) && component.contains(&e.to))
        {
            inside
                .entry((&edge.from, &edge.to))
                .or_default()
                .push(&edge.at);
        }
        for ((from, to), at) in inside {
            text.push_str(&format!("  {from} -> {to}: {}\n", at.join(", ")));
        }
    }
    text
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let (tops, edges) = edges(&src());
    let found = cycles(&tops, &edges);
    assert!(
        found.is_empty(),
        "the top-level modules of src/ import each other in a cycle; move the shared fact to its \
         owner in the lower layer, don't re-export it or copy it (ARCHITECTURE.md, \"Layers\"):\n{}",
        describe(&found, &edges)
    );
}

/// The reader itself: each kind of path it must see, and what it must not take for one.
#[test]
fn the_reader_sees_paths_and_skips_tests_comments_and_strings() {
    let raw = r##"
use crate::a::X;
use crate::{b::Y, c, d::{e, f}};
// crate::commented::Out
/// Doc: crate::doc::Out
fn g() { let _ = "crate::quoted"; let _ = r#"crate::raw"#; let _ = '{'; crate::h::call(); }
#[cfg(test)]
use crate::test_use::Z;
#[cfg(test)]
mod tests { use crate::test_mod::W; fn f() { crate::test_mod::v(); } }
#[cfg(test)]
fn only_in_tests() -> [u8; 2] { crate::test_fn::w() }
fn after() { super::super::i::j(); super::k(); }
mod inner { fn l() { super::super::super::m::n(); } }
"##;
    let mut code = blank_literals(raw);
    blank_test_items(raw, &mut code);
    let module = vec!["top".to_string(), "file".to_string()];
    let heads: BTreeSet<String> = references(&code, &module)
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let expected: BTreeSet<String> = ["a", "b", "c", "d", "h", "i", "m"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(heads, expected);
}

/// A cycle is found and named with the files that make it; a chain is not a cycle.
#[test]
fn a_cycle_is_reported_with_its_edges() {
    let edge = |from: &str, to: &str| Edge {
        from: from.into(),
        to: to.into(),
        at: format!("src/{from}/mod.rs:1"),
    };
    let nodes: BTreeSet<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let chain = [
        edge("a", "b"),
        edge("b", "c"),
        edge("a", "c"),
        edge("d", "a"),
    ];
    assert!(cycles(&nodes, &chain).is_empty());
    let looped = [
        edge("a", "b"),
        edge("b", "c"),
        edge("c", "a"),
        edge("d", "a"),
    ];
    let found = cycles(&nodes, &looped);
    assert_eq!(
        describe(&found, &looped),
        "cycle between {a, b, c}:\n  a -> b: src/a/mod.rs:1\n  b -> c: src/b/mod.rs:1\n  c -> a: src/c/mod.rs:1\n"
    );
}
