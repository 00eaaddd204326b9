use std::os::unix::fs::symlink;

use super::*;
use crate::trust::inputs::Rule;

const CAPS: Caps = Caps {
    bytes: 1 << 20,
    entries: 1000,
};

fn git() -> Vec<ProtectedPath> {
    vec![
        ProtectedPath {
            relative: PathBuf::from(".git"),
            rule: Rule::GitDir,
        },
        ProtectedPath {
            relative: PathBuf::from("perstack.toml"),
            rule: Rule::Input(crate::trust::inputs::InputKind::Config),
        },
    ]
}

/// A tar with entries written as raw headers, so it can hold what `tar::Builder` refuses to
/// write (`..`, absolute paths).
struct Raw(tar::Builder<Vec<u8>>);

impl Raw {
    fn new() -> Raw {
        Raw(tar::Builder::new(Vec::new()))
    }

    fn entry(mut self, name: &str, kind: tar::EntryType, data: &[u8], link: &str) -> Raw {
        let mut header = tar::Header::new_gnu();
        let gnu = header.as_gnu_mut().expect("gnu");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        self.0.append(&header, data).expect("append");
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Raw {
        self.entry(name, tar::EntryType::Regular, data, "")
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

fn tree_of(dir: &Path) -> Vec<String> {
    let tree = walk(dir, &[]).expect("walk");
    tree.items
        .iter()
        .map(|item| match item {
            Item::Folder(p) => format!("{}/", p.display()),
            Item::File { path, .. } => format!(
                "{} = {}",
                path.display(),
                fs::read_to_string(dir.join(path)).expect("read")
            ),
            Item::Link { path, target } => format!("{} -> {}", path.display(), target.display()),
        })
        .collect()
}

fn archive_of(dir: &Path, protected: &[ProtectedPath]) -> Vec<u8> {
    let tree = walk(dir, protected).expect("walk");
    let mut out = Vec::new();
    write(dir, &tree, &mut out).expect("write");
    out
}

#[test]
fn a_tree_goes_round_trip_with_its_folders_files_modes_and_inner_links_less_the_run_data() {
    let from = tempfile::tempdir().expect("tempdir");
    let root = from.path();
    fs::create_dir_all(root.join("src/deep")).expect("mkdir");
    fs::create_dir(root.join("empty")).expect("mkdir");
    fs::write(root.join("src/deep/a.txt"), "alpha").expect("write");
    fs::write(root.join("run.sh"), "#!/bin/sh").expect("write");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).expect("chmod");
    let long = "n".repeat(120);
    fs::write(root.join("src").join(&long), "long name").expect("write");
    symlink("src/deep/a.txt", root.join("link")).expect("link");
    fs::create_dir_all(root.join("PerStack/jobs")).expect("mkdir");
    fs::write(root.join("PerStack/jobs/j.json"), "secret run data").expect("write");

    let bytes = archive_of(root, &[]);
    let to = tempfile::tempdir().expect("tempdir");
    let unpacked = unpack(&bytes[..], to.path(), &[], CAPS, Owner::process()).expect("unpack");

    let mut expected = tree_of(root);
    expected.retain(|line| !line.starts_with("PerStack"));
    assert_eq!(tree_of(to.path()), expected);
    assert!(!to.path().join("PerStack").exists(), "the run data stays");
    assert_eq!(unpacked.bytes, 5 + 9 + 9);
    assert!(unpacked.paths.contains(Path::new("empty")));
    let mode = |p: &str| {
        fs::metadata(to.path().join(p))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("src/deep/a.txt") & 0o111, 0);
}

#[test]
fn a_walk_leaves_out_protected_paths_and_says_what_cannot_travel() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join(".git/hooks")).expect("mkdir");
    fs::write(dir.path().join(".git/config"), "x").expect("write");
    fs::write(dir.path().join("PERSTACK.TOML"), "case").expect("write");
    fs::write(dir.path().join("kept"), "k").expect("write");
    nix::unistd::mkfifo(&dir.path().join("pipe"), nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    let tree = walk(dir.path(), &git()).expect("walk");
    let paths: Vec<&Path> = tree.items.iter().map(Item::path).collect();
    assert_eq!(paths, [Path::new("kept")]);
    assert_eq!(tree.left_out.len(), 1);
    assert_eq!(tree.left_out[0].path, Path::new("pipe"));
    assert!(tree.left_out[0].why.contains("FIFO"));
}

/// Each hostile archive is refused by `check` with the rule it breaks, and `check` writes
/// nothing; `unpack` refuses it too.
#[test]
fn hostile_archives_are_refused_naming_the_entry_and_the_rule() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            Raw::new().file("ok", b"1").file("../escaped", b"x").bytes(),
            "not a plain relative path",
        ),
        (
            "dot-dot inside",
            Raw::new().file("a/../../escaped", b"x").bytes(),
            "not a plain relative path",
        ),
        (
            "absolute",
            Raw::new().file("/tmp/escaped", b"x").bytes(),
            "not a plain relative path",
        ),
        (
            "link then file through it",
            Raw::new()
                .entry("sub", tar::EntryType::Directory, b"", "")
                .entry("l", tar::EntryType::Symlink, b"", "sub")
                .file("l/x", b"through")
                .bytes(),
            "beneath a link of the archive",
        ),
        (
            "escaping link then file through it",
            Raw::new()
                .entry("out", tar::EntryType::Symlink, b"", "/etc")
                .file("out/passwd", b"root::0:0")
                .bytes(),
            "beneath a link of the archive",
        ),
        (
            "protected",
            Raw::new().file(".git/hooks/pre-commit", b"evil").bytes(),
            "protected path",
        ),
        (
            "protected, other case",
            Raw::new().file("Perstack.Toml", b"evil").bytes(),
            "protected path",
        ),
        (
            "run data",
            Raw::new().file("perstack/jobs/x.json", b"{}").bytes(),
            "reserved run-data folder",
        ),
        (
            "hard link",
            Raw::new()
                .file("a", b"1")
                .entry("b", tar::EntryType::Link, b"", "/etc/shadow")
                .bytes(),
            "a hard link",
        ),
        (
            "device",
            Raw::new()
                .entry("dev", tar::EntryType::Char, b"", "")
                .bytes(),
            "neither a folder",
        ),
        (
            "fifo",
            Raw::new().entry("p", tar::EntryType::Fifo, b"", "").bytes(),
            "neither a folder",
        ),
    ];
    for (what, bytes, why) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let message = check(&bytes[..], dir.path(), &git(), CAPS)
            .expect_err(what)
            .to_string();
        assert!(message.contains(why), "{what}: {message}");
        assert!(message.contains("refused"), "{what}: {message}");
        assert!(
            fs::read_dir(dir.path()).expect("list").next().is_none(),
            "{what}: check wrote"
        );
        let outside = dir.path().parent().expect("parent").join("escaped");
        let message = unpack(&bytes[..], dir.path(), &git(), CAPS, Owner::process())
            .expect_err(what)
            .to_string();
        assert!(message.contains(why), "{what}: {message}");
        assert!(!outside.exists(), "{what}: wrote outside");
    }
}

#[test]
fn too_big_and_too_many_say_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = Raw::new().file("a", &[1; 600]).file("b", &[2; 600]).bytes();
    let caps = Caps {
        bytes: 1000,
        entries: 10,
    };
    let message = check(&big[..], dir.path(), &[], caps)
        .expect_err("too big")
        .to_string();
    assert_eq!(
        message,
        "the workspace archive holds more than 1000 bytes of files (the cap; reached at b)"
    );
    let many = (0..4).fold(Raw::new(), |raw, i| raw.file(&format!("f{i}"), b"x"));
    let caps = Caps {
        bytes: 1000,
        entries: 3,
    };
    let message = unpack(&many.bytes()[..], dir.path(), &[], caps, Owner::process())
        .expect_err("too many")
        .to_string();
    assert_eq!(
        message,
        "the workspace archive holds more than 3 entries (the cap)"
    );
}

#[test]
fn a_link_leaving_the_workspace_is_left_out_and_one_inside_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = Raw::new()
        .entry(
            "venv/bin/python",
            tar::EntryType::Symlink,
            b"",
            "/usr/bin/python3",
        )
        .entry("up", tar::EntryType::Symlink, b"", "../../etc")
        .entry("data", tar::EntryType::Symlink, b"", "perstack/jobs")
        .entry("ok", tar::EntryType::Symlink, b"", "venv/../README")
        .bytes();
    let unpacked = unpack(&bytes[..], dir.path(), &[], CAPS, Owner::process()).expect("unpack");
    let left: Vec<&Path> = unpacked.left_out.iter().map(|l| l.path.as_path()).collect();
    assert_eq!(
        left,
        [
            Path::new("venv/bin/python"),
            Path::new("up"),
            Path::new("data")
        ]
    );
    assert!(fs::symlink_metadata(dir.path().join("up")).is_err());
    assert_eq!(
        fs::read_link(dir.path().join("ok")).expect("link"),
        Path::new("venv/../README")
    );
}

#[test]
fn a_link_of_the_destination_in_the_way_is_refused_by_check_and_never_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    symlink(outside.path(), dir.path().join("src")).expect("link");
    let bytes = Raw::new().file("src/x", b"through").bytes();
    let message = check(&bytes[..], dir.path(), &[], CAPS)
        .expect_err("refused")
        .to_string();
    assert!(message.contains("is a symbolic link"), "{message}");
    unpack(&bytes[..], dir.path(), &[], CAPS, Owner::process()).expect_err("refused");
    assert!(!outside.path().join("x").exists());
}

#[test]
fn what_went_in_and_did_not_come_back_is_removed_but_never_a_protected_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("gone/deep")).expect("mkdir");
    fs::write(dir.path().join("gone/deep/f"), "x").expect("write");
    fs::write(dir.path().join("kept"), "x").expect("write");
    fs::create_dir(dir.path().join(".git")).expect("mkdir");
    fs::write(dir.path().join(".git/HEAD"), "ref").expect("write");
    let sent = walk(dir.path(), &[]).expect("walk");
    let back = check(
        &Raw::new().file("kept", b"y").bytes()[..],
        dir.path(),
        &git(),
        CAPS,
    )
    .expect("check");
    let gone = removed(&sent, &back, &git());
    let paths: Vec<&Path> = gone.iter().map(Item::path).collect();
    assert_eq!(
        paths,
        [
            Path::new("gone/deep/f"),
            Path::new("gone/deep"),
            Path::new("gone")
        ]
    );
    assert_eq!(remove(dir.path(), &gone).expect("remove"), 3);
    assert!(!dir.path().join("gone").exists());
    assert!(dir.path().join(".git/HEAD").exists());
    assert!(dir.path().join("kept").exists());
}

#[test]
fn an_archive_cut_between_two_entries_does_not_end_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("a"), "alpha").expect("write");
    fs::write(dir.path().join("b"), "beta").expect("write");
    let bytes = archive_of(dir.path(), &[]);
    let spool = |bytes: &[u8]| {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(bytes).expect("write");
        file
    };
    assert!(ends_whole(&mut spool(&bytes)).expect("read"));
    // Header and one block of `a`: a valid, shorter archive to `check`, but not a whole one.
    let cut = &bytes[..1024];
    check(cut, dir.path(), &[], CAPS).expect("reads as an archive of one file");
    assert!(!ends_whole(&mut spool(cut)).expect("read"));
    assert!(!ends_whole(&mut spool(b"")).expect("read"));
}
