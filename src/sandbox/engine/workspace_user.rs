//! Who base-skill runs as: the user the workspace's files should belong to.
//!
//! Normally that is the invoking user. A controller running as root is rarely what the files
//! should belong to, and root is not a user base-skill should be, so root hands over to
//! `SUDO_UID`/`SUDO_GID` (run through `sudo`), else to the workspace folder's owner. Only a
//! root-owned workspace of a root invoker — a CI job in a root container — leaves base-skill
//! as uid 0, still without capabilities and without `no-new-privileges` escapes; the controller
//! says so.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A uid and gid.
pub(crate) type UidGid = (u32, u32);

/// The decision and, when base-skill stays root, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkspaceUser {
    /// `uid:gid` for base-skill.
    pub user: UidGid,
    /// Set when base-skill runs as root: what to do about it.
    pub warning: Option<String>,
}

/// Decides for the process's real user, `SUDO_UID`/`SUDO_GID` and the workspace's owner.
pub(crate) fn workspace_user(workspace: &Path) -> WorkspaceUser {
    let owner = std::fs::metadata(workspace)
        .ok()
        .map(|m| (m.uid(), m.gid()));
    let id = |name: &str| std::env::var(name).ok()?.parse::<u32>().ok();
    let sudo = id("SUDO_UID").zip(id("SUDO_GID"));
    decide(
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ),
        sudo,
        owner,
    )
}

fn decide(invoker: UidGid, sudo: Option<UidGid>, owner: Option<UidGid>) -> WorkspaceUser {
    let user = |user| WorkspaceUser {
        user,
        warning: None,
    };
    if invoker.0 != 0 {
        return user(invoker);
    }
    if let Some(sudo) = sudo.filter(|s| s.0 != 0) {
        return user(sudo);
    }
    if let Some(owner) = owner.filter(|o| o.0 != 0) {
        return user(owner);
    }
    WorkspaceUser {
        user: invoker,
        warning: Some(
            "base-skill runs as root (without capabilities): you run as root and root owns the workspace; run through sudo, or give the workspace to a user (chown), to run it as that user"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_runs_base_skill_as_themselves() {
        assert_eq!(
            decide((1000, 1000), Some((1001, 1001)), Some((0, 0))).user,
            (1000, 1000)
        );
    }

    #[test]
    fn root_hands_over_to_the_sudo_user_then_to_the_workspace_owner() {
        assert_eq!(
            decide((0, 0), Some((1000, 100)), Some((1001, 1001))).user,
            (1000, 100)
        );
        assert_eq!(decide((0, 0), None, Some((1001, 50))).user, (1001, 50));
        assert_eq!(
            decide((0, 0), Some((0, 0)), Some((1001, 50))).user,
            (1001, 50)
        );
    }

    #[test]
    fn root_on_a_root_owned_workspace_stays_root_and_says_so() {
        let decided = decide((0, 0), None, Some((0, 0)));
        assert_eq!(decided.user, (0, 0));
        assert!(
            decided
                .warning
                .is_some_and(|w| w.starts_with("base-skill runs as root"))
        );
    }
}
