//! `getFileInfo` and `healthCheck`, and the small formatting helpers they share with the file
//! tools (MIME types by extension, ISO timestamps, human-readable sizes).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::error::ToolError;
use super::paths::{PathArgs, Workspace, lossy};

/// `getFileInfo`: metadata of a file or directory.
pub(crate) fn get_file_info(ws: &Workspace, args: PathArgs) -> Result<Value, ToolError> {
    let r = ws.resolve(&args.path)?;
    if !r.exists {
        return Err(ToolError::new(format!(
            "File or directory {} does not exist",
            args.path
        )));
    }
    let path = &r.target;
    let meta = fs::metadata(path).map_err(|e| ToolError::io(&e, "stat", path))?;
    let is_dir = meta.is_dir();
    let mode = meta.permissions().mode();
    // Not every file system records a birth time; Node then reports the change time.
    let created = meta
        .created()
        .unwrap_or_else(|_| epoch_plus(meta.ctime(), meta.ctime_nsec()));
    Ok(json!({
        "exists": true,
        "path": lossy(path),
        "absolutePath": lossy(path),
        "name": path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        "directory": lossy(path.parent().unwrap_or(path)),
        "extension": if is_dir { Value::Null } else { Value::from(extension(path)) },
        "type": if is_dir { "directory" } else { "file" },
        "mimeType": if is_dir { None } else { Some(mime_type(path).unwrap_or("application/octet-stream")) },
        "size": meta.len(),
        "sizeFormatted": format_size(meta.len()),
        "created": iso_time(created),
        "modified": iso_time(meta.modified().unwrap_or(UNIX_EPOCH)),
        "accessed": iso_time(meta.accessed().unwrap_or(UNIX_EPOCH)),
        "permissions": {
            // As in Perstack: it could be stat'ed, so it counts as readable.
            "readable": true,
            "writable": mode & 0o200 != 0,
            "executable": mode & 0o100 != 0,
        },
    }))
}

/// `healthCheck`: `{status, workspace, uptime, memory{heapUsed, heapTotal}, pid}`.
///
/// There is no JavaScript heap here; the memory figures come from `/proc/self/statm`:
/// `heapUsed` = resident anonymous memory (resident − shared), the closest thing to a heap,
/// and `heapTotal` = the whole resident set. Both are formatted like Perstack's, e.g. `"3MB"`.
pub(crate) fn health_check(ws: &Workspace, started: Instant) -> Value {
    let (anonymous, resident) = resident_memory().unwrap_or((0, 0));
    json!({
        "status": "ok",
        "workspace": lossy(ws.root()),
        "uptime": format!("{}s", started.elapsed().as_secs()),
        "memory": {
            "heapUsed": format!("{}MB", mebibytes(anonymous)),
            "heapTotal": format!("{}MB", mebibytes(resident)),
        },
        "pid": std::process::id(),
    })
}

/// (resident − shared, resident) of this process in bytes.
fn resident_memory() -> Option<(u64, u64)> {
    let statm = fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().ok());
    let (resident, shared) = (fields.next()??, fields.next()??);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    let page = u64::try_from(page).ok()?;
    Some((resident.saturating_sub(shared) * page, resident * page))
}

fn mebibytes(bytes: u64) -> u64 {
    (bytes + 512 * 1024) / (1024 * 1024)
}

/// The MIME type for a file name's extension (case-insensitive), for the common types a
/// workspace holds; `None` when unknown.
pub(crate) fn mime_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "bmp" => "image/bmp",
        "ico" => "image/x-icon",
        "tif" | "tiff" => "image/tiff",
        "avif" => "image/avif",
        "pdf" => "application/pdf",
        "txt" | "text" | "log" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "js" | "mjs" | "cjs" => "text/javascript",
        "json" | "map" => "application/json",
        "xml" => "application/xml",
        "yaml" | "yml" => "text/yaml",
        "toml" => "application/toml",
        "sh" => "application/x-sh",
        "py" => "text/x-python",
        "wasm" => "application/wasm",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        _ => return None,
    })
}

/// Node's `path.extname`: from the last `.` of the name, unless that dot starts the name.
fn extension(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 => name[i..].to_owned(),
        _ => String::new(),
    }
}

/// Perstack's size format: `0 B`, `5.00 B`, `1.50 KB`, … up to TB.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    if bytes == 0 {
        return "0 B".to_owned();
    }
    let mut unit = 0;
    let mut value = bytes as f64;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// `Date.toISOString()`: `2024-05-01T12:00:00.000Z`. Times before 1970 show as the epoch.
pub(crate) fn iso_time(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time.max(UNIX_EPOCH)).to_string()
}

fn epoch_plus(secs: i64, nanos: i64) -> SystemTime {
    let secs = u64::try_from(secs).unwrap_or(0);
    let nanos = u32::try_from(nanos).unwrap_or(0);
    UNIX_EPOCH + Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_info_of_a_file_and_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("notes.MD"), "hello").unwrap();
        fs::set_permissions(
            dir.path().join("notes.MD"),
            fs::Permissions::from_mode(0o744),
        )
        .unwrap();
        let ws = Workspace::new(dir.path()).unwrap();
        let info = get_file_info(
            &ws,
            PathArgs {
                path: "notes.MD".into(),
            },
        )
        .unwrap();
        let file = ws.root().join("notes.MD");
        assert_eq!(info["path"], json!(file));
        assert_eq!(info["absolutePath"], json!(file));
        assert_eq!(info["name"], "notes.MD");
        assert_eq!(info["directory"], json!(ws.root()));
        assert_eq!(info["extension"], ".MD");
        assert_eq!(info["type"], "file");
        assert_eq!(info["mimeType"], "text/markdown");
        assert_eq!(info["size"], 5);
        assert_eq!(info["sizeFormatted"], "5.00 B");
        assert_eq!(
            info["permissions"],
            json!({"readable": true, "writable": true, "executable": true})
        );
        for key in ["created", "modified", "accessed"] {
            assert!(
                info[key].as_str().unwrap().ends_with('Z'),
                "{key}: {}",
                info[key]
            );
        }
        let keys: Vec<&String> = info.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "exists",
                "path",
                "absolutePath",
                "name",
                "directory",
                "extension",
                "type",
                "mimeType",
                "size",
                "sizeFormatted",
                "created",
                "modified",
                "accessed",
                "permissions"
            ]
        );
        let d = get_file_info(&ws, PathArgs { path: "d".into() }).unwrap();
        assert_eq!(
            (d["type"].as_str(), &d["extension"], &d["mimeType"]),
            (Some("directory"), &Value::Null, &Value::Null)
        );
        let err = get_file_info(
            &ws,
            PathArgs {
                path: "nope".into(),
            },
        )
        .unwrap_err();
        assert_eq!(err.message, "File or directory nope does not exist");
    }

    #[test]
    fn unknown_extensions_are_octet_streams() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("main.rs"), "").unwrap();
        let ws = Workspace::new(dir.path()).unwrap();
        let info = get_file_info(
            &ws,
            PathArgs {
                path: "main.rs".into(),
            },
        )
        .unwrap();
        assert_eq!(info["mimeType"], "application/octet-stream");
        assert_eq!(info["sizeFormatted"], "0 B");
    }

    #[test]
    fn extension_follows_node() {
        assert_eq!(extension(Path::new("/a/b.tar.gz")), ".gz");
        assert_eq!(extension(Path::new("/a/.bashrc")), "");
        assert_eq!(extension(Path::new("/a/Makefile")), "");
        assert_eq!(extension(Path::new("/a/x.")), ".");
    }

    #[test]
    fn sizes_format_like_perstack() {
        assert_eq!(format_size(1536), "1.50 KB");
        assert_eq!(format_size(1024 * 1024), "1.00 MB");
        assert_eq!(format_size(u64::MAX), "16777216.00 TB");
    }

    #[test]
    fn iso_time_has_millis_and_clamps_before_the_epoch() {
        assert_eq!(
            iso_time(UNIX_EPOCH + Duration::from_millis(1_500)),
            "1970-01-01T00:00:01.500Z"
        );
        assert_eq!(
            iso_time(UNIX_EPOCH - Duration::from_secs(10)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn health_check_reports_memory_from_statm() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path()).unwrap();
        let health = health_check(&ws, Instant::now());
        assert_eq!(health["status"], "ok");
        assert_eq!(health["uptime"], "0s");
        assert_eq!(health["pid"], std::process::id());
        let total = health["memory"]["heapTotal"].as_str().unwrap();
        assert!(total.ends_with("MB") && total != "0MB", "{total}");
        assert!(
            health["memory"]["heapUsed"]
                .as_str()
                .unwrap()
                .ends_with("MB")
        );
    }
}
