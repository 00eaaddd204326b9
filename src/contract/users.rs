//! The users our containers run as. The images' `/etc/passwd` and `/etc/group`
//! (images/passwd, images/group) name the same ids; base-skill runs as the invoking user instead.

/// The runtime's user inside its container.
pub(crate) const RUNTIME_UID: u32 = 10001;
/// The group of the runtime's user; owns every socket volume so the runtime can connect.
pub(crate) const RUNTIME_GID: u32 = 10001;
/// The user MCP skills run as.
pub(crate) const SKILL_UID: u32 = 10002;
/// The egress proxy's uid and gid (`nobody`): it owns nothing and needs nothing.
pub(crate) const PROXY_UID: u32 = 65534;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_images_passwd_and_group_name_the_same_ids() {
        let passwd = include_str!("../../images/passwd");
        let group = include_str!("../../images/group");
        for line in [
            format!("perstack:x:{RUNTIME_UID}:{RUNTIME_GID}:"),
            format!("skill:x:{SKILL_UID}:{SKILL_UID}:"),
            format!("nobody:x:{PROXY_UID}:{PROXY_UID}:"),
        ] {
            assert!(passwd.lines().any(|l| l.starts_with(&line)), "{line}");
        }
        for line in [
            format!("perstack:x:{RUNTIME_GID}:"),
            format!("skill:x:{SKILL_UID}:"),
            format!("nogroup:x:{PROXY_UID}:"),
        ] {
            assert!(group.lines().any(|l| l == line), "{line}");
        }
    }
}
