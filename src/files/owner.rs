//! Who owns what the controller creates for the user: the invoking user, also through `sudo`.

use std::os::fd::AsFd;

/// Who should own the files and folders the controller creates for the user (the job store in
/// the workspace, the trust record in the state folder).
///
/// The controller normally runs as the invoking user, so what it creates is theirs already. Run as
/// root through `sudo`, it hands them back to `SUDO_UID`/`SUDO_GID`, so the workspace does not
/// fill up with root-owned files the user cannot change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Owner(Option<(u32, u32)>);

impl Owner {
    /// Keep whatever the process creates as it is.
    pub(crate) fn process() -> Owner {
        Owner(None)
    }

    /// This user and group.
    pub(crate) fn user(uid: u32, gid: u32) -> Owner {
        Owner(Some((uid, gid)))
    }

    /// The sudo invoker when we are root through `sudo`, else the process itself.
    pub(crate) fn detect() -> Owner {
        Owner::from_sudo(
            nix::unistd::geteuid().is_root(),
            std::env::var("SUDO_UID").ok().as_deref(),
            std::env::var("SUDO_GID").ok().as_deref(),
        )
    }

    fn from_sudo(root: bool, sudo_uid: Option<&str>, sudo_gid: Option<&str>) -> Owner {
        let id = |value: Option<&str>| value?.parse::<u32>().ok();
        match (root, id(sudo_uid), id(sudo_gid)) {
            (true, Some(uid), Some(gid)) if uid != 0 => Owner::user(uid, gid),
            _ => Owner(None),
        }
    }

    /// The uid things are handed to, when not the process's own (the `sudo` invoker's).
    pub(crate) fn uid(self) -> Option<u32> {
        self.0.map(|(uid, _)| uid)
    }

    /// Gives the open file or folder `fd` to the owner.
    pub(crate) fn apply(self, fd: impl AsFd) -> std::io::Result<()> {
        let Some((uid, gid)) = self.0 else {
            return Ok(());
        };
        nix::unistd::fchown(
            fd,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(std::io::Error::from)
    }

    /// Gives the link `name` in the folder `dir` to the owner (the link, not what it names).
    pub(crate) fn apply_link(self, dir: impl AsFd, name: &str) -> std::io::Result<()> {
        let Some((uid, gid)) = self.0 else {
            return Ok(());
        };
        nix::unistd::fchownat(
            dir.as_fd(),
            name,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(std::io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_to_the_sudo_invoker_only_when_we_are_root_through_sudo() {
        assert_eq!(
            Owner::from_sudo(true, Some("1000"), Some("1001")),
            Owner::user(1000, 1001)
        );
        assert_eq!(
            Owner::from_sudo(false, Some("1000"), Some("1001")),
            Owner::process()
        );
        assert_eq!(Owner::from_sudo(true, None, None), Owner::process());
        assert_eq!(
            Owner::from_sudo(true, Some("0"), Some("0")),
            Owner::process()
        );
        assert_eq!(
            Owner::from_sudo(true, Some("x"), Some("1")),
            Owner::process()
        );
    }
}
