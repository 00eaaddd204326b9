//! The file tools: read, write, append, edit, move, delete, list and create.
//!
//! Each function is synchronous (the server runs it on the blocking pool), applies the path rules
//! of [`super::paths`] first, and returns the result object of PERSTACK-COMPAT.md §6 or a
//! [`ToolError`]. Messages follow `@perstack/base` so a model sees what it would see there.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Number, Value, json};

use super::error::ToolError;
use super::info::iso_time;
use super::paths::{PathArgs, Resolved, Workspace, lossy};

/// Largest image `readImageFile` accepts.
pub(crate) const MAX_IMAGE_SIZE: u64 = 15 * 1024 * 1024;
/// Largest PDF `readPdfFile` accepts.
pub(crate) const MAX_PDF_SIZE: u64 = 30 * 1024 * 1024;

/// Arguments of `readTextFile`.
#[derive(Debug, Deserialize)]
pub(crate) struct ReadTextArgs {
    /// File to read.
    pub path: String,
    /// First line (0-based, inclusive); negative counts from the end, like `Array.slice`.
    #[serde(default)]
    pub from: Option<Number>,
    /// Line to stop before (exclusive); negative counts from the end.
    #[serde(default)]
    pub to: Option<Number>,
}

/// Arguments of `writeTextFile` and `appendTextFile`.
#[derive(Debug, Deserialize)]
pub(crate) struct WriteTextArgs {
    /// File to write.
    pub path: String,
    /// UTF-8 text.
    pub text: String,
}

/// Arguments of `editTextFile`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EditTextArgs {
    /// File to edit.
    pub path: String,
    /// Replacement text.
    pub new_text: String,
    /// Text to find; its first occurrence is replaced.
    pub old_text: String,
}

/// Arguments of `moveFile`.
#[derive(Debug, Deserialize)]
pub(crate) struct MoveArgs {
    /// What to move.
    pub source: String,
    /// Where to; must not exist.
    pub destination: String,
}

/// Arguments of `deleteDirectory`.
#[derive(Debug, Deserialize)]
pub(crate) struct DeleteDirArgs {
    /// Directory to delete.
    pub path: String,
    /// Delete contents too; needed for a non-empty directory.
    #[serde(default)]
    pub recursive: Option<bool>,
}

/// `readTextFile`: lines `[from, to)` of a UTF-8 file, split on `\n`.
pub(crate) fn read_text_file(ws: &Workspace, args: ReadTextArgs) -> Result<Value, ToolError> {
    let r = ws.resolve(&args.path)?;
    if !r.exists {
        return Err(ToolError::new(format!(
            "File {} does not exist.",
            args.path
        )));
    }
    let content = read_to_string(&r)?;
    let lines: Vec<&str> = content.split('\n').collect();
    let from = args.from.unwrap_or_else(|| Number::from(0));
    let to = args.to.unwrap_or_else(|| Number::from(lines.len()));
    let (start, end) = (
        slice_index(&from, lines.len()),
        slice_index(&to, lines.len()),
    );
    let selected = if start < end {
        lines[start..end].join("\n")
    } else {
        String::new()
    };
    // `path` is echoed as given (unlike the other tools, which return the resolved path).
    Ok(json!({ "path": args.path, "content": selected, "from": from, "to": to }))
}

/// A file whose bytes go back to the model inline: `readImageFile` and `readPdfFile`.
///
/// The runtime container has no workspace mount, so it cannot read the file the way Perstack's
/// runtime does from `{path, mimeType, size}`; the base skill sends the bytes along instead (an MCP
/// `image` item, or an embedded `resource` with a `blob`), and the runtime maps those to
/// `imageInlinePart` / `fileInlinePart` (PERSTACK-COMPAT.md §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InlineFile {
    /// The resolved path.
    pub path: std::path::PathBuf,
    /// The type found from the file's first bytes.
    pub mime_type: &'static str,
    /// The whole file.
    pub bytes: Vec<u8>,
}

impl InlineFile {
    /// `{path, mimeType, size}`, the JSON text Perstack's tool returns.
    pub(crate) fn info(&self) -> Value {
        json!({ "path": lossy(&self.path), "mimeType": self.mime_type, "size": self.bytes.len() })
    }

    /// Whether the model takes it as an image (else as a document).
    pub(crate) fn is_image(&self) -> bool {
        self.mime_type.starts_with("image/")
    }
}

/// `readImageFile`: a PNG, JPEG, GIF or WebP image of at most 15 MiB, recognized by its first
/// bytes (the extension is not trusted: a provider rejects data that is not what it claims).
pub(crate) fn read_image_file(ws: &Workspace, args: PathArgs) -> Result<InlineFile, ToolError> {
    let r = existing_file(ws, &args.path)?;
    let bytes = read_capped(&r, MAX_IMAGE_SIZE, "Image", "image")?;
    let Some(mime_type) = sniff_image(&bytes) else {
        return Err(ToolError::new(format!(
            "File {} is not supported. Only PNG, JPEG, GIF and WebP images can be read.",
            args.path
        )));
    };
    Ok(InlineFile {
        path: r.target,
        mime_type,
        bytes,
    })
}

/// `readPdfFile`: a PDF of at most 30 MiB, recognized by its `%PDF-` header.
pub(crate) fn read_pdf_file(ws: &Workspace, args: PathArgs) -> Result<InlineFile, ToolError> {
    let r = existing_file(ws, &args.path)?;
    let bytes = read_capped(&r, MAX_PDF_SIZE, "PDF", "PDF")?;
    if !bytes.starts_with(b"%PDF-") {
        return Err(ToolError::new(format!(
            "File {} is not a PDF file.",
            args.path
        )));
    }
    Ok(InlineFile {
        path: r.target,
        mime_type: "application/pdf",
        bytes,
    })
}

/// The image type by magic bytes, for the types a model can take inline.
fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Reads a whole file of at most `max` bytes, never through a symlink. The size is checked
/// before reading, and the read stops after `max + 1` bytes in case the file grows meanwhile.
fn read_capped(r: &Resolved, max: u64, kind: &str, noun: &str) -> Result<Vec<u8>, ToolError> {
    refuse_symlink(r)?;
    let (file, size) = open_regular_file(&r.target)?;
    let too_large = |size: u64| {
        const MIB: f64 = 1024.0 * 1024.0;
        ToolError::new(format!(
            "{kind} file too large ({:.1}MB). Maximum supported size is {}MB. Please use a smaller {noun} file.",
            size as f64 / MIB,
            max / (1024 * 1024),
        ))
    };
    if size > max {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ToolError::io(&e, "read", &r.target))?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// `writeTextFile`: creates (mode 0644, missing parents too) or overwrites a file.
pub(crate) fn write_text_file(ws: &Workspace, args: WriteTextArgs) -> Result<Value, ToolError> {
    ws.refuse_protected(&args.path, false)?;
    ws.create_parents(&args.path)?;
    let r = ws.resolve_for_change(&args.path, false)?;
    refuse_symlink(&r)?;
    if r.exists && !owner_writable(&r.target)? {
        return Err(not_writable("File", &args.path));
    }
    write_file(&r.target, args.text.as_bytes(), WriteMode::Truncate)?;
    Ok(json!({ "path": lossy(&r.target), "text": args.text }))
}

/// The checks of every tool that changes an existing file: it exists, is not a symlink, and is
/// owner-writable.
fn existing_writable_file(ws: &Workspace, path: &str) -> Result<Resolved, ToolError> {
    let r = ws.resolve_for_change(path, false)?;
    if !r.exists {
        return Err(ToolError::new(format!("File {path} does not exist.")));
    }
    refuse_symlink(&r)?;
    if !owner_writable(&r.target)? {
        return Err(not_writable("File", path));
    }
    Ok(r)
}

/// `appendTextFile`: appends to an existing file.
pub(crate) fn append_text_file(ws: &Workspace, args: WriteTextArgs) -> Result<Value, ToolError> {
    let r = existing_writable_file(ws, &args.path)?;
    write_file(&r.target, args.text.as_bytes(), WriteMode::Append)?;
    Ok(json!({ "path": lossy(&r.target), "text": args.text }))
}

/// `editTextFile`: replaces the first occurrence of `oldText`, after CRLF → LF on file and texts.
pub(crate) fn edit_text_file(ws: &Workspace, args: EditTextArgs) -> Result<Value, ToolError> {
    let r = existing_writable_file(ws, &args.path)?;
    let content = read_to_string(&r)?.replace("\r\n", "\n");
    let (old, new) = (
        args.old_text.replace("\r\n", "\n"),
        args.new_text.replace("\r\n", "\n"),
    );
    if !content.contains(&old) {
        return Err(ToolError::new(format!(
            "Could not find exact match for oldText in file {}",
            r.target.display()
        )));
    }
    // Literal replacement: unlike JavaScript's `String.replace`, `$&` in newText stays as is.
    let edited = content.replacen(&old, &new, 1);
    write_file(&r.target, edited.as_bytes(), WriteMode::Truncate)?;
    Ok(json!({ "path": lossy(&r.target), "newText": args.new_text, "oldText": args.old_text }))
}

/// `moveFile`: renames a file or directory; the destination must not exist. Missing parents of
/// the destination are created once the source has been checked.
///
/// A symlink is moved as the link itself (Perstack would move its target).
pub(crate) fn move_file(ws: &Workspace, args: MoveArgs) -> Result<Value, ToolError> {
    let source = ws.resolve_for_change(&args.source, true)?;
    if !source.exists {
        return Err(ToolError::new(format!(
            "Source file {} does not exist.",
            args.source
        )));
    }
    ws.refuse_protected(&args.destination, false)?;
    ws.create_parents(&args.destination)?;
    let destination = ws.resolve_for_change(&args.destination, false)?;
    if !owner_writable(&source.target)? {
        return Err(not_writable("Source file", &args.source));
    }
    if destination.exists {
        return Err(ToolError::new(format!(
            "Destination {} already exists.",
            args.destination
        )));
    }
    if source.entry == ws.root() {
        return Err(ToolError::new(
            "Access denied - the workspace root cannot be moved",
        ));
    }
    fs::rename(&source.entry, &destination.entry)
        .map_err(|e| ToolError::io(&e, "rename", &source.entry))?;
    Ok(json!({ "source": lossy(&source.entry), "destination": lossy(&destination.entry) }))
}

/// `deleteFile`: removes a file (a symlink is removed as the link itself).
pub(crate) fn delete_file(ws: &Workspace, args: PathArgs) -> Result<Value, ToolError> {
    let r = ws.resolve_for_change(&args.path, false)?;
    if !r.exists {
        return Err(ToolError::new(format!(
            "File {} does not exist.",
            args.path
        )));
    }
    let meta = fs::symlink_metadata(&r.entry).map_err(|e| ToolError::io(&e, "lstat", &r.entry))?;
    if meta.is_dir() {
        return Err(ToolError::new(format!(
            "Path {} is a directory. Use delete directory tool instead.",
            args.path
        )));
    }
    if meta.permissions().mode() & 0o200 == 0 {
        return Err(not_writable("File", &args.path));
    }
    fs::remove_file(&r.entry).map_err(|e| ToolError::io(&e, "unlink", &r.entry))?;
    Ok(json!({ "path": lossy(&r.entry) }))
}

/// `listDirectory`: the entries of a directory, sorted by name, without the reserved `perstack`.
///
/// Entries the path rules deny (the reserved directory, symlinks leading outside) are left out;
/// Perstack fails the whole listing on a symlink to outside, which leaves the model stuck.
pub(crate) fn list_directory(ws: &Workspace, args: PathArgs) -> Result<Value, ToolError> {
    let r = ws.resolve(&args.path)?;
    if !r.exists {
        return Err(ToolError::new(format!(
            "Directory {} does not exist.",
            args.path
        )));
    }
    if !r.target.is_dir() {
        return Err(ToolError::new(format!(
            "Path {} is not a directory.",
            args.path
        )));
    }
    let read_dir = fs::read_dir(&r.target).map_err(|e| ToolError::io(&e, "scandir", &r.target))?;
    let mut names = Vec::new();
    for entry in read_dir {
        let entry = entry.map_err(|e| ToolError::io(&e, "scandir", &r.target))?;
        names.push(entry.file_name());
    }
    names.sort();
    let mut items = Vec::with_capacity(names.len());
    for name in names {
        let Ok(child) = ws.resolve_path(&r.target.join(&name)) else {
            continue;
        };
        // Gone since the listing (or unreadable): nothing useful to report about it.
        let Ok(meta) = fs::metadata(&child.target) else {
            continue;
        };
        items.push(json!({
            "name": name.to_string_lossy(),
            "path": name.to_string_lossy(),
            "type": if meta.is_dir() { "directory" } else { "file" },
            "size": meta.len(),
            "modified": meta.modified().map(iso_time).unwrap_or_default(),
        }));
    }
    Ok(json!({ "path": lossy(&r.target), "items": items }))
}

/// `createDirectory`: makes one directory; it must not exist yet.
pub(crate) fn create_directory(ws: &Workspace, args: PathArgs) -> Result<Value, ToolError> {
    let r = ws.resolve_for_change(&args.path, false)?;
    if r.exists {
        return Err(ToolError::new(format!(
            "Directory {} already exists",
            args.path
        )));
    }
    // The path rules guarantee an existing parent.
    if let Some(parent) = r.target.parent()
        && !owner_writable(parent)?
    {
        return Err(ToolError::new(format!(
            "Parent directory {} is not writable",
            parent.display()
        )));
    }
    fs::create_dir(&r.target).map_err(|e| ToolError::io(&e, "mkdir", &r.target))?;
    Ok(json!({ "path": lossy(&r.target) }))
}

/// `deleteDirectory`: removes a directory, with its contents when `recursive`.
pub(crate) fn delete_directory(ws: &Workspace, args: DeleteDirArgs) -> Result<Value, ToolError> {
    let r = ws.resolve_for_change(&args.path, true)?;
    if !r.exists {
        return Err(ToolError::new(format!(
            "Directory {} does not exist.",
            args.path
        )));
    }
    if r.is_symlink || !r.target.is_dir() {
        // A symlink to a directory is not deleted through it; deleteFile removes the link.
        return Err(ToolError::new(format!(
            "Path {} is not a directory. Use deleteFile tool instead.",
            args.path
        )));
    }
    // Deleting the root would take the reserved run data with it.
    if r.target == ws.root() {
        return Err(ToolError::new(
            "Access denied - the workspace root cannot be deleted",
        ));
    }
    if !owner_writable(&r.target)? {
        return Err(not_writable("Directory", &args.path));
    }
    let removed = if args.recursive.unwrap_or(false) {
        // std's remove_dir_all does not follow symlinks below the directory.
        fs::remove_dir_all(&r.target)
    } else {
        fs::remove_dir(&r.target)
    };
    removed.map_err(|e| ToolError::io(&e, "rmdir", &r.target))?;
    Ok(json!({ "path": lossy(&r.target) }))
}

fn existing_file(ws: &Workspace, path: &str) -> Result<Resolved, ToolError> {
    let r = ws.resolve(path)?;
    if !r.exists {
        return Err(ToolError::new(format!("File {path} does not exist.")));
    }
    Ok(r)
}

fn refuse_symlink(r: &Resolved) -> Result<(), ToolError> {
    if r.is_symlink {
        Err(symlink_denied())
    } else {
        Ok(())
    }
}

fn symlink_denied() -> ToolError {
    ToolError::new("Operation denied: target is a symbolic link")
}

fn not_writable(what: &str, path: &str) -> ToolError {
    ToolError::new(format!("{what} {path} is not writable"))
}

/// Perstack's notion of writable: the owner-write bit, whoever we run as.
fn owner_writable(path: &Path) -> Result<bool, ToolError> {
    let meta = fs::metadata(path).map_err(|e| ToolError::io(&e, "stat", path))?;
    Ok(meta.permissions().mode() & 0o200 != 0)
}

/// Reads a file as UTF-8 (invalid sequences become U+FFFD, as Node does), never through a symlink.
fn read_to_string(r: &Resolved) -> Result<String, ToolError> {
    refuse_symlink(r)?;
    let (mut file, _) = open_regular_file(&r.target)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| ToolError::io(&e, "read", &r.target))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Opens a regular file for reading, with `O_NOFOLLOW`, and returns it with its size. Opened
/// non-blocking so a FIFO (which `exec` can make) fails here instead of blocking the tool for
/// ever; a regular file reads the same either way.
fn open_regular_file(path: &Path) -> Result<(File, u64), ToolError> {
    let file = open_with_flags(
        path,
        OpenOptions::new().read(true),
        nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK,
    )?;
    let meta = file
        .metadata()
        .map_err(|e| ToolError::io(&e, "fstat", path))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    Ok((file, meta.len()))
}

enum WriteMode {
    Truncate,
    Append,
}

fn write_file(path: &Path, bytes: &[u8], mode: WriteMode) -> Result<(), ToolError> {
    let mut options = OpenOptions::new();
    match mode {
        WriteMode::Truncate => options.write(true).create(true).truncate(true).mode(0o644),
        WriteMode::Append => options.append(true),
    };
    // Non-blocking, so a FIFO fails (ENXIO without a reader) instead of blocking for ever.
    let mut file = open_with_flags(
        path,
        &mut options,
        nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK,
    )?;
    let meta = file
        .metadata()
        .map_err(|e| ToolError::io(&e, "fstat", path))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    file.write_all(bytes)
        .map_err(|e| ToolError::io(&e, "write", path))
}

fn not_regular(path: &Path) -> ToolError {
    ToolError::new(format!("{} is not a regular file", path.display()))
}

/// Opens with these `open(2)` flags (replacing any set before), mapping ELOOP to the symlink
/// refusal: callers pass `O_NOFOLLOW`, so a symlink swapped in after the checks is refused.
fn open_with_flags(path: &Path, options: &mut OpenOptions, flags: i32) -> Result<File, ToolError> {
    options.custom_flags(flags).open(path).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::ELOOP) {
            symlink_denied()
        } else {
            ToolError::io(&e, "open", path)
        }
    })
}

/// `Array.prototype.slice` index: truncated toward zero, negative from the end, clamped.
fn slice_index(n: &Number, len: usize) -> usize {
    let value = n
        .as_i64()
        .map(|i| i as f64)
        .or_else(|| n.as_f64())
        .unwrap_or(0.0)
        .trunc();
    let len_f = len as f64;
    let index = if value < 0.0 {
        (len_f + value).max(0.0)
    } else {
        value.min(len_f)
    };
    // In [0, len] after clamping, so the cast is exact.
    index as usize
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        ws: Workspace,
        outside: PathBuf,
    }

    impl Fixture {
        fn path(&self, rel: &str) -> PathBuf {
            self.ws.root().join(rel)
        }
        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.path(rel)).unwrap()
        }
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a.txt"), "l0\nl1\nl2\nl3").unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret.txt"), "secret").unwrap();
        Fixture {
            ws: Workspace::new(&root).unwrap(),
            outside: fs::canonicalize(outside).unwrap(),
            _dir: dir,
        }
    }

    fn path(p: &str) -> PathArgs {
        PathArgs { path: p.into() }
    }

    fn read(p: &str, from: Option<i64>, to: Option<i64>) -> ReadTextArgs {
        ReadTextArgs {
            path: p.into(),
            from: from.map(Number::from),
            to: to.map(Number::from),
        }
    }

    fn write(p: &str, text: &str) -> WriteTextArgs {
        WriteTextArgs {
            path: p.into(),
            text: text.into(),
        }
    }

    fn message<T: std::fmt::Debug>(result: Result<T, ToolError>) -> String {
        result.expect_err("tool should fail").message
    }

    #[test]
    fn read_text_file_slices_lines() {
        let f = fixture();
        assert_eq!(
            read_text_file(&f.ws, read("a.txt", None, None)).unwrap(),
            json!({"path": "a.txt", "content": "l0\nl1\nl2\nl3", "from": 0, "to": 4})
        );
        assert_eq!(
            read_text_file(&f.ws, read("a.txt", Some(1), Some(3))).unwrap()["content"],
            "l1\nl2"
        );
        assert_eq!(
            read_text_file(&f.ws, read("a.txt", Some(-2), None)).unwrap()["content"],
            "l2\nl3"
        );
        assert_eq!(
            read_text_file(&f.ws, read("a.txt", Some(3), Some(1))).unwrap()["content"],
            ""
        );
        assert_eq!(
            read_text_file(&f.ws, read("a.txt", Some(2), Some(99))).unwrap()["to"],
            99
        );
    }

    #[test]
    fn read_text_file_of_a_missing_file() {
        let f = fixture();
        assert_eq!(
            message(read_text_file(&f.ws, read("nope.txt", None, None))),
            "File nope.txt does not exist."
        );
    }

    #[test]
    fn symlinked_files_are_refused_for_read_write_append_and_edit() {
        let f = fixture();
        symlink(f.path("a.txt"), f.path("link")).unwrap();
        let denied = "Operation denied: target is a symbolic link";
        assert_eq!(
            message(read_text_file(&f.ws, read("link", None, None))),
            denied
        );
        assert_eq!(message(write_text_file(&f.ws, write("link", "x"))), denied);
        assert_eq!(message(append_text_file(&f.ws, write("link", "x"))), denied);
        let edit = EditTextArgs {
            path: "link".into(),
            new_text: "x".into(),
            old_text: "l0".into(),
        };
        assert_eq!(message(edit_text_file(&f.ws, edit)), denied);
        assert_eq!(f.read("a.txt"), "l0\nl1\nl2\nl3");
    }

    #[test]
    fn symlink_to_outside_cannot_be_written() {
        let f = fixture();
        symlink(f.outside.join("secret.txt"), f.path("leak")).unwrap();
        let msg = message(write_text_file(&f.ws, write("leak", "pwned")));
        assert!(msg.starts_with("Access denied"), "{msg}");
        assert_eq!(
            fs::read_to_string(f.outside.join("secret.txt")).unwrap(),
            "secret"
        );
    }

    #[test]
    fn reads_and_writes_refuse_a_fifo_instead_of_blocking() {
        let f = fixture();
        for name in ["pipe.txt", "pipe.png", "pipe.pdf"] {
            nix::unistd::mkfifo(&f.path(name), nix::sys::stat::Mode::S_IRWXU).unwrap();
        }
        let expected = |name: &str| format!("{} is not a regular file", f.path(name).display());
        assert_eq!(
            message(read_text_file(&f.ws, read("pipe.txt", None, None))),
            expected("pipe.txt")
        );
        assert_eq!(
            message(read_image_file(&f.ws, path("pipe.png"))),
            expected("pipe.png")
        );
        assert_eq!(
            message(read_pdf_file(&f.ws, path("pipe.pdf"))),
            expected("pipe.pdf")
        );
        // Writing: no reader, so the open fails at once.
        for result in [
            write_text_file(&f.ws, write("pipe.txt", "x")),
            append_text_file(&f.ws, write("pipe.txt", "x")),
        ] {
            assert!(message(result).starts_with("ENXIO"));
        }
    }

    #[test]
    fn open_nofollow_refuses_a_symlink_swapped_in_late() {
        let f = fixture();
        symlink(f.outside.join("secret.txt"), f.path("late")).unwrap();
        let err = write_file(&f.path("late"), b"x", WriteMode::Truncate).unwrap_err();
        assert_eq!(err.message, "Operation denied: target is a symbolic link");
    }

    #[test]
    fn write_creates_with_0644_and_overwrites() {
        let f = fixture();
        let out = write_text_file(&f.ws, write("sub/new.txt", "hello")).unwrap();
        assert_eq!(out, json!({"path": f.path("sub/new.txt"), "text": "hello"}));
        assert_eq!(f.read("sub/new.txt"), "hello");
        let mode = fs::metadata(f.path("sub/new.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        // The umask can only clear bits.
        assert_eq!(mode & !0o644, 0, "{mode:o}");
        write_text_file(&f.ws, write("sub/new.txt", "bye")).unwrap();
        assert_eq!(f.read("sub/new.txt"), "bye");
    }

    #[test]
    fn write_creates_missing_parent_directories() {
        let f = fixture();
        let out = write_text_file(&f.ws, write("no/such/dir.txt", "x")).unwrap();
        assert_eq!(out["path"], json!(f.path("no/such/dir.txt")));
        assert_eq!(f.read("no/such/dir.txt"), "x");
        assert!(f.path("no/such").is_dir());
    }

    #[test]
    fn move_creates_missing_parent_directories_of_the_destination() {
        let f = fixture();
        let args = MoveArgs {
            source: "a.txt".into(),
            destination: "x/y/b.txt".into(),
        };
        move_file(&f.ws, args).unwrap();
        assert_eq!(f.read("x/y/b.txt"), "l0\nl1\nl2\nl3");
        // A missing source creates nothing.
        let args = MoveArgs {
            source: "nope".into(),
            destination: "z/b.txt".into(),
        };
        assert_eq!(
            message(move_file(&f.ws, args)),
            "Source file nope does not exist."
        );
        assert!(!f.path("z").exists());
    }

    #[test]
    fn write_respects_the_owner_write_bit() {
        let f = fixture();
        fs::set_permissions(f.path("a.txt"), fs::Permissions::from_mode(0o444)).unwrap();
        assert_eq!(
            message(write_text_file(&f.ws, write("a.txt", "x"))),
            "File a.txt is not writable"
        );
        assert_eq!(
            message(append_text_file(&f.ws, write("a.txt", "x"))),
            "File a.txt is not writable"
        );
    }

    #[test]
    fn append_needs_an_existing_file() {
        let f = fixture();
        append_text_file(&f.ws, write("a.txt", "\nl4")).unwrap();
        assert_eq!(f.read("a.txt"), "l0\nl1\nl2\nl3\nl4");
        assert_eq!(
            message(append_text_file(&f.ws, write("b.txt", "x"))),
            "File b.txt does not exist."
        );
    }

    #[test]
    fn edit_replaces_the_first_match_after_normalizing_crlf() {
        let f = fixture();
        fs::write(f.path("c.txt"), "x\r\ny $& x\r\ny").unwrap();
        let args = EditTextArgs {
            path: "c.txt".into(),
            new_text: "z$&".into(),
            old_text: "x\r\ny".into(),
        };
        let out = edit_text_file(&f.ws, args).unwrap();
        assert_eq!(
            out,
            json!({"path": f.path("c.txt"), "newText": "z$&", "oldText": "x\r\ny"})
        );
        assert_eq!(f.read("c.txt"), "z$& $& x\ny");
        let missing = EditTextArgs {
            path: "c.txt".into(),
            new_text: "".into(),
            old_text: "nope".into(),
        };
        let msg = message(edit_text_file(&f.ws, missing));
        assert!(
            msg.starts_with("Could not find exact match for oldText in file "),
            "{msg}"
        );
    }

    #[test]
    fn move_file_renames_and_refuses_existing_destination() {
        let f = fixture();
        let args = MoveArgs {
            source: "a.txt".into(),
            destination: "sub/b.txt".into(),
        };
        assert_eq!(
            move_file(&f.ws, args).unwrap(),
            json!({"source": f.path("a.txt"), "destination": f.path("sub/b.txt")})
        );
        assert!(!f.path("a.txt").exists());
        fs::write(f.path("c.txt"), "c").unwrap();
        let args = MoveArgs {
            source: "c.txt".into(),
            destination: "sub/b.txt".into(),
        };
        assert_eq!(
            message(move_file(&f.ws, args)),
            "Destination sub/b.txt already exists."
        );
        let args = MoveArgs {
            source: "c.txt".into(),
            destination: "../outside/c.txt".into(),
        };
        assert!(message(move_file(&f.ws, args)).starts_with("Access denied"));
        let args = MoveArgs {
            source: "nope".into(),
            destination: "x".into(),
        };
        assert_eq!(
            message(move_file(&f.ws, args)),
            "Source file nope does not exist."
        );
    }

    #[test]
    fn delete_file_removes_files_and_links_but_not_directories() {
        let f = fixture();
        symlink(f.path("a.txt"), f.path("link")).unwrap();
        assert_eq!(
            delete_file(&f.ws, path("link")).unwrap(),
            json!({"path": f.path("link")})
        );
        assert!(f.path("a.txt").exists(), "the link's target stays");
        assert_eq!(
            delete_file(&f.ws, path("a.txt")).unwrap(),
            json!({"path": f.path("a.txt")})
        );
        assert!(!f.path("a.txt").exists());
        assert_eq!(
            message(delete_file(&f.ws, path("sub"))),
            "Path sub is a directory. Use delete directory tool instead."
        );
        assert_eq!(
            message(delete_file(&f.ws, path("a.txt"))),
            "File a.txt does not exist."
        );
    }

    #[test]
    fn list_directory_sorts_and_hides_perstack() {
        let f = fixture();
        fs::create_dir(f.path("perstack")).unwrap();
        fs::write(f.path("B.txt"), "bb").unwrap();
        symlink(&f.outside, f.path("out")).unwrap();
        let out = list_directory(&f.ws, path(".")).unwrap();
        assert_eq!(out["path"], json!(f.ws.root()));
        let names: Vec<&str> = out["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["B.txt", "a.txt", "sub"]);
        let b = &out["items"][0];
        assert_eq!(
            (b["path"].as_str(), b["type"].as_str(), b["size"].as_u64()),
            (Some("B.txt"), Some("file"), Some(2))
        );
        assert_eq!(out["items"][2]["type"], "directory");
        assert!(b["modified"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            message(list_directory(&f.ws, path("a.txt"))),
            "Path a.txt is not a directory."
        );
        assert_eq!(
            message(list_directory(&f.ws, path("nope"))),
            "Directory nope does not exist."
        );
    }

    #[test]
    fn create_and_delete_directories() {
        let f = fixture();
        assert_eq!(
            create_directory(&f.ws, path("sub/d")).unwrap(),
            json!({"path": f.path("sub/d")})
        );
        assert_eq!(
            message(create_directory(&f.ws, path("sub/d"))),
            "Directory sub/d already exists"
        );
        fs::write(f.path("sub/d/x"), "x").unwrap();
        let plain = DeleteDirArgs {
            path: "sub/d".into(),
            recursive: None,
        };
        assert!(message(delete_directory(&f.ws, plain)).starts_with("ENOTEMPTY"));
        let recursive = DeleteDirArgs {
            path: "sub/d".into(),
            recursive: Some(true),
        };
        assert_eq!(
            delete_directory(&f.ws, recursive).unwrap(),
            json!({"path": f.path("sub/d")})
        );
        assert!(!f.path("sub/d").exists());
        let root = DeleteDirArgs {
            path: ".".into(),
            recursive: Some(true),
        };
        assert!(message(delete_directory(&f.ws, root)).starts_with("Access denied"));
        let file = DeleteDirArgs {
            path: "a.txt".into(),
            recursive: None,
        };
        assert_eq!(
            message(delete_directory(&f.ws, file)),
            "Path a.txt is not a directory. Use deleteFile tool instead."
        );
    }

    #[test]
    fn delete_directory_does_not_follow_a_symlinked_directory() {
        let f = fixture();
        symlink(f.path("sub"), f.path("sublink")).unwrap();
        let args = DeleteDirArgs {
            path: "sublink".into(),
            recursive: Some(true),
        };
        assert!(message(delete_directory(&f.ws, args)).contains("Use deleteFile"));
        assert!(f.path("sub").is_dir());
    }

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn images_are_recognized_by_their_bytes_and_returned_whole() {
        let f = fixture();
        // The extension says PNG; the bytes decide.
        fs::write(f.path("p.PNG"), PNG).unwrap();
        let png = read_image_file(&f.ws, path("p.PNG")).unwrap();
        assert_eq!(
            png.info(),
            json!({"path": f.path("p.PNG"), "mimeType": "image/png", "size": PNG.len()})
        );
        assert_eq!(png.bytes, PNG);
        assert!(png.is_image());
        fs::write(f.path("photo.png"), [0xFF, 0xD8, 0xFF, 0xE0, 1, 2]).unwrap();
        assert_eq!(
            read_image_file(&f.ws, path("photo.png")).unwrap().mime_type,
            "image/jpeg"
        );
        fs::write(f.path("anim"), b"GIF89a....").unwrap();
        assert_eq!(
            read_image_file(&f.ws, path("anim")).unwrap().mime_type,
            "image/gif"
        );
        fs::write(f.path("w.webp"), b"RIFF\x10\0\0\0WEBPVP8 ").unwrap();
        assert_eq!(
            read_image_file(&f.ws, path("w.webp")).unwrap().mime_type,
            "image/webp"
        );
        fs::write(f.path("fake.png"), "not an image").unwrap();
        assert_eq!(
            message(read_image_file(&f.ws, path("fake.png"))),
            "File fake.png is not supported. Only PNG, JPEG, GIF and WebP images can be read."
        );
        assert_eq!(
            message(read_image_file(&f.ws, path("x.png"))),
            "File x.png does not exist."
        );
    }

    #[test]
    fn images_over_15_mib_are_refused() {
        let f = fixture();
        let mut big = File::create(f.path("big.png")).unwrap();
        big.write_all(PNG).unwrap();
        big.set_len(MAX_IMAGE_SIZE + 1).unwrap();
        assert_eq!(
            message(read_image_file(&f.ws, path("big.png"))),
            "Image file too large (15.0MB). Maximum supported size is 15MB. Please use a smaller image file."
        );
        big.set_len(MAX_IMAGE_SIZE).unwrap();
        assert_eq!(
            read_image_file(&f.ws, path("big.png")).unwrap().bytes.len() as u64,
            MAX_IMAGE_SIZE
        );
    }

    #[test]
    fn pdfs_are_recognized_by_their_header_and_limited_to_30_mib() {
        let f = fixture();
        fs::write(f.path("d.bin"), "%PDF-1.7\n%%EOF").unwrap();
        let pdf = read_pdf_file(&f.ws, path("d.bin")).unwrap();
        assert_eq!(
            pdf.info(),
            json!({"path": f.path("d.bin"), "mimeType": "application/pdf", "size": 14})
        );
        assert!(!pdf.is_image());
        fs::write(f.path("fake.pdf"), "hello").unwrap();
        assert_eq!(
            message(read_pdf_file(&f.ws, path("fake.pdf"))),
            "File fake.pdf is not a PDF file."
        );
        let mut big = File::create(f.path("big.pdf")).unwrap();
        big.write_all(b"%PDF-1.7").unwrap();
        big.set_len(MAX_PDF_SIZE + 1).unwrap();
        assert_eq!(
            message(read_pdf_file(&f.ws, path("big.pdf"))),
            "PDF file too large (30.0MB). Maximum supported size is 30MB. Please use a smaller PDF file."
        );
    }

    #[test]
    fn slice_index_matches_array_slice() {
        assert_eq!(slice_index(&Number::from(2), 5), 2);
        assert_eq!(slice_index(&Number::from(-1), 5), 4);
        assert_eq!(slice_index(&Number::from(-9), 5), 0);
        assert_eq!(slice_index(&Number::from(9), 5), 5);
        assert_eq!(slice_index(&Number::from_f64(1.7).unwrap(), 5), 1);
    }
}
