//! The build id both executables of one build carry (`src/contract/build_id.rs`): a SHA-256 of
//! what they are compiled from — every `.rs` file under `src/`, the files under `images/` that
//! are compiled in, `Cargo.toml`, `Cargo.lock`, this script — and the enabled features. The
//! controller puts its sibling `perstack-sandbox-roles` into images only when that one carries
//! the same id, so a roles executable left by another build (`cargo build --bin
//! perstack-sandbox` after a change, an older install) never goes into an image.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut files = vec![
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
        root.join("build.rs"),
    ];
    collect(
        &root.join("src"),
        &mut |p| p.extension() == Some("rs".as_ref()),
        &mut files,
    );
    collect(&root.join("images"), &mut |_| true, &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        // Cargo runs this script again when one of them changes; a new file changes the `mod`
        // line (or the manifest) that brings it in.
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(&root).unwrap_or(file);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        // A missing Cargo.lock (a fresh checkout before its first build) hashes as empty.
        hasher.update(std::fs::read(file).unwrap_or_default());
        hasher.update([0]);
    }
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(name, _)| name.strip_prefix("CARGO_FEATURE_").map(str::to_string))
        .collect();
    features.sort();
    hasher.update(features.join(",").as_bytes());
    let id: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=PERSTACK_SANDBOX_BUILD_ID={id}");
}

/// Every file under `dir` that `keep` accepts, depth first; unreadable folders are skipped.
fn collect(dir: &Path, keep: &mut dyn FnMut(&Path) -> bool, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => collect(&path, keep, files),
            Ok(kind) if kind.is_file() && keep(&path) => files.push(path),
            _ => {}
        }
    }
}
