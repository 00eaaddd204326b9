use std::os::unix::fs::symlink;

use super::*;

fn setup() -> (tempfile::TempDir, tempfile::TempDir, Beneath) {
    let workspace = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let beneath = Beneath::open(workspace.path()).expect("open");
    (workspace, outside, beneath)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_atomic_write_creates_its_folders_replaces_the_file_and_leaves_no_temporary_file() {
    let (workspace, _outside, beneath) = setup();
    let rel = Path::new("perstack/jobs/j1/job.json");
    beneath
        .write_atomic(rel, b"first", Owner::process())
        .expect("write");
    beneath
        .write_atomic(rel, b"second", Owner::process())
        .expect("rewrite");
    let read = beneath.read(rel).expect("read").expect("exists");
    assert_eq!(read.bytes, b"second");
    assert_eq!(
        names_in(&workspace.path().join("perstack/jobs/j1")),
        ["job.json"]
    );
    assert!(
        beneath
            .read(Path::new("perstack/none.json"))
            .expect("read")
            .is_none()
    );
    assert!(
        beneath
            .dir(Path::new("perstack/missing/deeper"))
            .expect("dir")
            .is_none()
    );
}

#[test]
fn a_failed_atomic_write_leaves_the_old_file_and_no_temporary_file() {
    let (workspace, _outside, beneath) = setup();
    beneath
        .write_atomic(Path::new("a/job.json"), b"old", Owner::process())
        .expect("write");
    // Renaming a file over a non-empty folder fails after the temporary file was written.
    std::fs::create_dir_all(workspace.path().join("a/blocked/inside")).expect("mkdir");
    let refused = beneath
        .write_atomic(Path::new("a/blocked"), b"new", Owner::process())
        .expect_err("a folder is in the way");
    assert!(matches!(refused, FileError::NotAFile { .. }), "{refused}");
    assert_eq!(
        std::fs::read(workspace.path().join("a/job.json")).expect("read"),
        b"old"
    );
    assert_eq!(
        names_in(&workspace.path().join("a")),
        ["blocked", "job.json"]
    );
}

#[test]
fn a_planted_link_on_any_component_is_refused_naming_where_it_points() {
    for planted in ["perstack", "perstack/jobs", "perstack/jobs/j1"] {
        let (workspace, outside, beneath) = setup();
        let link = workspace.path().join(planted);
        std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
        symlink(outside.path(), &link).expect("symlink");
        let rel = Path::new("perstack/jobs/j1/checkpoints/c.json");
        let refused = beneath
            .write_atomic(rel, b"{}", Owner::process())
            .expect_err("link");
        match &refused {
            FileError::Link { path, target } => {
                assert_eq!(path, &link);
                assert_eq!(target, outside.path());
            }
            other => panic!("{planted}: {other}"),
        }
        let message = refused.to_string();
        assert!(
            message.contains(&format!(
                "{} is a symbolic link to {}",
                link.display(),
                outside.path().display()
            )),
            "{message}"
        );
        // Nothing was written where the link points, and reads refuse it the same way.
        assert!(names_in(outside.path()).is_empty(), "{planted}");
        assert!(matches!(
            beneath.read(rel).expect_err("read"),
            FileError::Link { .. }
        ));
        assert!(matches!(
            beneath
                .entries(Path::new("perstack/jobs/j1"))
                .expect_err("list"),
            FileError::Link { .. }
        ));
    }
}

#[test]
fn a_relative_link_and_a_dangling_link_are_refused_too() {
    let (workspace, _outside, beneath) = setup();
    symlink("../../etc", workspace.path().join("perstack")).expect("symlink");
    let refused = beneath
        .create_dir_all(Path::new("perstack/jobs"), Owner::process())
        .expect_err("relative link");
    assert!(
        refused
            .to_string()
            .contains("is a symbolic link to ../../etc"),
        "{refused}"
    );
    std::fs::remove_file(workspace.path().join("perstack")).expect("rm");
    symlink("/nonexistent/place", workspace.path().join("perstack")).expect("symlink");
    assert!(matches!(
        beneath.create_dir_all(Path::new("perstack/jobs"), Owner::process()),
        Err(FileError::Link { .. })
    ));
    assert!(!Path::new("/nonexistent/place").exists());
}

#[test]
fn a_link_in_place_of_a_file_is_never_written_through_nor_read() {
    let (workspace, outside, beneath) = setup();
    let secret = outside.path().join("bashrc");
    std::fs::write(&secret, "original").expect("write");
    std::fs::create_dir_all(workspace.path().join("perstack/jobs/j1")).expect("mkdir");
    let file = workspace.path().join("perstack/jobs/j1/job.json");
    symlink(&secret, &file).expect("symlink");
    let rel = Path::new("perstack/jobs/j1/job.json");
    assert!(matches!(
        beneath.read(rel).expect_err("read through a link"),
        FileError::Link { .. }
    ));
    assert_eq!(
        beneath.kind(rel).expect("kind"),
        Some(Kind::Link(secret.clone()))
    );
    // The rename replaces the link itself; the file it pointed to keeps its contents.
    beneath
        .write_atomic(rel, b"{}", Owner::process())
        .expect("write");
    assert_eq!(std::fs::read_to_string(&secret).expect("read"), "original");
    assert_eq!(beneath.kind(rel).expect("kind"), Some(Kind::File));
}

#[test]
fn a_fifo_or_a_file_where_a_folder_should_be_is_refused_without_hanging() {
    let (workspace, _outside, beneath) = setup();
    std::fs::create_dir_all(workspace.path().join("perstack")).expect("mkdir");
    nix::unistd::mkfifo(
        &workspace.path().join("perstack/fifo.json"),
        Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    assert!(matches!(
        beneath.read(Path::new("perstack/fifo.json")),
        Err(FileError::NotAFile { .. })
    ));
    std::fs::write(workspace.path().join("perstack/jobs"), "").expect("file");
    let refused = beneath
        .write_atomic(
            Path::new("perstack/jobs/j/job.json"),
            b"{}",
            Owner::process(),
        )
        .expect_err("file in the way");
    assert!(matches!(refused, FileError::NotAFolder { .. }), "{refused}");
}

#[test]
fn only_plain_names_are_accepted() {
    let (_workspace, _outside, beneath) = setup();
    for bad in ["../escape.json", "/etc/passwd", "a/../b.json", ""] {
        assert!(
            beneath
                .write_atomic(Path::new(bad), b"x", Owner::process())
                .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn entries_tell_folders_files_and_links_apart() {
    let (workspace, outside, beneath) = setup();
    let jobs = workspace.path().join("perstack/jobs");
    std::fs::create_dir_all(jobs.join("a")).expect("mkdir");
    std::fs::write(jobs.join("b.json"), "{}").expect("write");
    symlink(outside.path(), jobs.join("c")).expect("symlink");
    assert_eq!(
        beneath.entries(Path::new("perstack/jobs")).expect("list"),
        [
            ("a".to_string(), Kind::Folder),
            ("b.json".to_string(), Kind::File),
            ("c".to_string(), Kind::Link(outside.path().to_path_buf())),
        ]
    );
    assert!(
        beneath
            .entries(Path::new("perstack/none"))
            .expect("list")
            .is_empty()
    );
}

#[test]
fn an_owner_gets_the_files_and_the_folders_created_for_them() {
    use std::os::unix::fs::MetadataExt;
    let (workspace, _outside, beneath) = setup();
    let other = nix::unistd::getuid().as_raw() + 4242;
    let owner = Owner::user(other, other);
    let result = beneath.write_atomic(Path::new("perstack/jobs/job.json"), b"{}", owner);
    if nix::unistd::geteuid().is_root() {
        result.expect("root may give files away");
        for rel in ["perstack", "perstack/jobs", "perstack/jobs/job.json"] {
            let meta = std::fs::metadata(workspace.path().join(rel)).expect("metadata");
            assert_eq!((meta.uid(), meta.gid()), (other, other), "{rel}");
        }
        // The folder that existed before keeps its owner.
        assert_ne!(
            std::fs::metadata(workspace.path()).expect("meta").uid(),
            other
        );
    } else {
        // Anyone else cannot, and is told so rather than left with a stray file.
        assert!(result.is_err());
        assert!(!workspace.path().join("perstack/jobs/job.json").exists());
    }
}
