//! The owners and modes the supervisor gives files at start, and what holds when it cannot
//! because the container's root is read-only (`docker run --read-only`, ECS
//! `readonlyRootFilesystem`, Kubernetes `readOnlyRootFilesystem`): what each path needs, why,
//! and what its absence costs, in one place.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, chown};
use std::path::Path;

use super::image::EXEC_ONLY_MODE;
use super::principals::FILES_UID;
use super::{STATE_DIR, StandaloneError};

/// What a path is given at start, and so what is lost when its file system is read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// One of the supervisor's private folders under [`STATE_DIR`]: nothing starts without it.
    Private {
        /// Its owner, when we switch uids.
        owner: Option<(u32, u32)>,
        /// Its permission bits.
        mode: u32,
    },
    /// Our binary, [`FILES_UID`]'s and exec-only, so that a principal running as uid 0 may
    /// neither read it (its processes stay non-dumpable) nor `chmod` it. The image has it
    /// root's, exec-only for root too ([`EXEC_ONLY_MODE`]).
    ExecOnly,
    /// A skill's own folder, [`FILES_UID`]'s with the skill's group, mode 0750: only its group
    /// may read it, a wall besides its Landlock domain.
    SkillsAlone {
        /// The skill's group.
        gid: u32,
    },
    /// A skill's `/tmp` inside its own root, its own with mode 0700.
    OwnTmp {
        /// The skill's uid and gid.
        owner: (u32, u32),
    },
}

/// What a read-only file system that lacks what a path needs leaves of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lacking {
    /// The supervisor cannot start: refuse, saying where to mount a tmpfs.
    Refuse,
    /// Nothing is lost: what the change guarded against cannot happen either.
    Nothing,
    /// A protection is missing, the run goes on: report it as a shortfall.
    Wall,
    /// The skill cannot write its `/tmp`: warn, naming the tmpfs that gives it one.
    NoTmp,
}

impl Need {
    /// The owner (uid, gid) it needs, if any.
    pub(crate) fn owner(self) -> Option<(u32, u32)> {
        match self {
            Need::Private { owner, .. } => owner,
            Need::ExecOnly => Some((FILES_UID, FILES_UID)),
            Need::SkillsAlone { gid } => Some((FILES_UID, gid)),
            Need::OwnTmp { owner } => Some(owner),
        }
    }

    /// The permission bits it needs.
    pub(crate) fn mode(self) -> u32 {
        match self {
            Need::Private { mode, .. } => mode,
            Need::ExecOnly => EXEC_ONLY_MODE,
            Need::SkillsAlone { .. } => 0o750,
            Need::OwnTmp { .. } => 0o700,
        }
    }

    /// What is lost without it on a read-only file system, for a path whose mode is `bits`.
    /// Nobody can `chmod` our binary there, and a principal running as uid 0 without
    /// capabilities cannot read it while no read bit is set, as the image has it: nothing is
    /// lost then. A readable one (an image of an older version) would let that principal's
    /// processes become dumpable again: refused.
    pub(crate) fn lacking(self, bits: u32) -> Lacking {
        match self {
            Need::Private { .. } => Lacking::Refuse,
            Need::ExecOnly if bits & 0o444 == 0 => Lacking::Nothing,
            Need::ExecOnly => Lacking::Refuse,
            Need::SkillsAlone { .. } => Lacking::Wall,
            Need::OwnTmp { .. } => Lacking::NoTmp,
        }
    }

    /// Why, for an error.
    fn purpose(self) -> &'static str {
        match self {
            Need::Private { .. } => "a private folder",
            Need::ExecOnly => {
                "exec-only and not uid 0's (a principal runs as uid 0: the workspace is root's; \
                 giving it to another user avoids this)"
            }
            Need::SkillsAlone { .. } => "its skill's alone",
            Need::OwnTmp { .. } => "its skill's own /tmp",
        }
    }
}

/// What to do with a path, given what it is now (uid, gid and mode as `stat` gives them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Already as needed.
    Keep,
    /// Change what differs.
    Change {
        /// Its owner differs.
        chown: bool,
        /// Its permission bits differ.
        chmod: bool,
    },
    /// It differs, and its file system is read-only: what that costs is [`Need::lacking`]'s.
    ReadOnly(Lacking),
}

/// What to do with a path that is `now` (uid, gid, mode) on a file system that is `read_only`
/// or not: change only what differs, so that one already right starts on a read-only root.
pub(crate) fn decide(need: Need, now: (u32, u32, u32), read_only: bool) -> Step {
    let (uid, gid, bits) = now;
    let chown = need.owner().is_some_and(|owner| owner != (uid, gid));
    let chmod = bits & 0o7777 != need.mode();
    match (chown || chmod, read_only) {
        (false, _) => Step::Keep,
        (true, false) => Step::Change { chown, chmod },
        (true, true) => Step::ReadOnly(need.lacking(bits)),
    }
}

/// Whether the file system holding `file` is mounted read-only.
fn read_only(file: &std::fs::File) -> bool {
    nix::sys::statvfs::fstatvfs(file)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Gives `path` what `need` asks, changing only what differs; gives what was done. The path
/// is opened without following a link (a recipe's `/tmp` could be one, to `/workspace`, say,
/// that a `chown` by path would follow as root) and changed through that descriptor.
pub(crate) fn settle(path: &Path, need: Need) -> Result<Step, StandaloneError> {
    let fail = |e: std::io::Error| settle_error(path, need, &e);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_PATH)
        .open(path)
        .map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if meta.file_type().is_symlink() {
        return Err(fail(std::io::Error::from_raw_os_error(libc::ELOOP)));
    }
    let step = decide(
        need,
        (meta.uid(), meta.gid(), meta.mode()),
        read_only(&file),
    );
    if let Step::Change { chown: true, .. } = step {
        let (uid, gid) = need.owner().unwrap_or((meta.uid(), meta.gid()));
        chown(proc_path(&file), Some(uid), Some(gid)).map_err(fail)?;
    }
    if let Step::Change { chmod: true, .. } = step {
        let mode = std::fs::Permissions::from_mode(need.mode());
        std::fs::set_permissions(proc_path(&file), mode).map_err(fail)?;
    }
    match step {
        Step::ReadOnly(Lacking::Refuse) => {
            Err(fail(std::io::Error::from_raw_os_error(libc::EROFS)))
        }
        step => Ok(step),
    }
}

/// The path of an `O_PATH` descriptor through `/proc/self/fd`, which `chown` and `chmod`
/// follow to the file opened, not to whatever its path names now.
fn proc_path(file: &std::fs::File) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    Path::new("/proc/self/fd").join(file.as_raw_fd().to_string())
}

/// Why `path` could not be settled, and what to do.
fn settle_error(path: &Path, need: Need, e: &std::io::Error) -> StandaloneError {
    let wanted = match need.owner() {
        Some((uid, gid)) => format!("owner {uid}:{gid}, mode {:o}", need.mode()),
        None => format!("mode {:o}", need.mode()),
    };
    let fix = match (need, e.raw_os_error()) {
        (Need::Private { .. }, _) => state_dir_hint(),
        (Need::ExecOnly, Some(libc::EROFS)) => "the container's root is read-only and the image \
                                                 has it readable: rebuild the image with this \
                                                 version, or give the workspace to another user"
            .to_string(),
        (_, Some(libc::EROFS)) => "the container's root is read-only: run without --read-only \
                                   (readOnlyRootFilesystem)"
            .to_string(),
        _ => "the container's root must be writable".to_string(),
    };
    StandaloneError::Start(format!(
        "cannot make {} {} ({wanted}: {e}); {fix}",
        path.display(),
        need.purpose()
    ))
}

/// Makes [`STATE_DIR`] if needed and checks that it is writable: on a read-only root, the
/// error says which tmpfs to mount there, before anything is started or written.
pub(crate) fn check_state_dir() -> Result<(), StandaloneError> {
    let dir = Path::new(STATE_DIR);
    let unwritable = |e: std::io::Error| {
        StandaloneError::ReadOnlyRoot(format!(
            "cannot make {STATE_DIR} ({e}), where the supervisor keeps each process's private \
             folder and each skill's socket; {}",
            state_dir_hint()
        ))
    };
    std::fs::create_dir_all(dir).map_err(unwritable)?;
    let held = std::fs::File::open(dir).map_err(unwritable)?;
    match read_only(&held) {
        true => Err(unwritable(std::io::Error::from_raw_os_error(libc::EROFS))),
        false => Ok(()),
    }
}

/// How to give the supervisor its folder [`STATE_DIR`] on a read-only root: a tmpfs there, in
/// Docker's and in Kubernetes' words. A supervisor that is not root must own it to set its
/// folders' modes (a tmpfs's `mode=` alone does not let it: only the owner may `chmod`), which
/// a Kubernetes `emptyDir` (root's) does not give.
pub(crate) fn state_dir_hint() -> String {
    let uid = nix::unistd::geteuid();
    match uid.is_root() {
        true => format!(
            "on a read-only root (docker run --read-only, readOnlyRootFilesystem) mount a tmpfs \
             there: docker run --read-only --tmpfs {STATE_DIR} …; in Kubernetes, an emptyDir \
             volume (medium: Memory) mounted at {STATE_DIR}"
        ),
        false => format!(
            "on a read-only root (docker run --read-only, readOnlyRootFilesystem) mount a tmpfs \
             there that uid {uid} owns: docker run --read-only --tmpfs {STATE_DIR}:uid={uid} …; \
             in Kubernetes, an emptyDir volume mounted at {STATE_DIR} is root's, so start the \
             container as root (the image's default)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKILL: Need = Need::SkillsAlone { gid: 20001 };

    #[test]
    fn only_what_differs_is_changed() {
        // Already right (a directory's type bits aside): nothing, so a read-only root starts.
        assert_eq!(
            decide(SKILL, (FILES_UID, 20001, 0o40750), false),
            Step::Keep
        );
        assert_eq!(decide(SKILL, (FILES_UID, 20001, 0o40750), true), Step::Keep);
        // As the image leaves it: both.
        assert_eq!(
            decide(SKILL, (0, 0, 0o40755), false),
            Step::Change {
                chown: true,
                chmod: true
            }
        );
        // Another group (a skill granted the workspace runs in its owner's): the owner alone.
        assert_eq!(
            decide(
                Need::SkillsAlone { gid: 1000 },
                (FILES_UID, 20001, 0o40750),
                false
            ),
            Step::Change {
                chown: true,
                chmod: false
            }
        );
        // No owner asked for (no uid switch): the mode alone, sticky bit counted.
        let private = Need::Private {
            owner: None,
            mode: 0o711,
        };
        assert_eq!(
            decide(private, (1000, 1000, 0o41777), false),
            Step::Change {
                chown: false,
                chmod: true
            }
        );
        assert_eq!(decide(private, (0, 0, 0o40711), false), Step::Keep);
    }

    #[test]
    fn on_a_read_only_root_each_need_says_what_is_lost() {
        let image = (0, 0, 0o40755);
        // Our private folders: nothing starts.
        let private = Need::Private {
            owner: Some((FILES_UID, FILES_UID)),
            mode: 0o711,
        };
        assert_eq!(
            decide(private, image, true),
            Step::ReadOnly(Lacking::Refuse)
        );
        // A skill's folder: the DAC wall is missing, Landlock alone holds.
        assert_eq!(decide(SKILL, image, true), Step::ReadOnly(Lacking::Wall));
        // A recipe's /tmp: the skill has none it can write.
        let tmp = Need::OwnTmp {
            owner: (20001, 20001),
        };
        assert_eq!(
            decide(tmp, (0, 0, 0o41777), true),
            Step::ReadOnly(Lacking::NoTmp)
        );
        // Our binary as the image has it, root's but unreadable to root's own bits: nobody can
        // read or chmod it there, nothing is lost. Readable (an older image's 0711): refused, a
        // uid-0 principal's processes would be dumpable.
        assert_eq!(
            decide(Need::ExecOnly, (0, 0, 0o100111), true),
            Step::ReadOnly(Lacking::Nothing)
        );
        assert_eq!(
            decide(Need::ExecOnly, (0, 0, 0o100711), true),
            Step::ReadOnly(Lacking::Refuse)
        );
        // Writable: given to FILES_UID, its mode already right.
        assert_eq!(
            decide(Need::ExecOnly, (0, 0, 0o100111), false),
            Step::Change {
                chown: true,
                chmod: false
            }
        );
        // A tmpfs there is writable: made the skill's own.
        assert_eq!(
            decide(tmp, (0, 0, 0o41777), false),
            Step::Change {
                chown: true,
                chmod: true
            }
        );
    }
}
