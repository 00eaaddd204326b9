//! Where the trust record lives: the user's state folder, outside every workspace, so a run —
//! which sees only its workspace — cannot forge it.
//!
//! In order: `PERSTACK_SANDBOX_STATE_DIR` (used as is; for tests and unusual setups), else
//! `$XDG_STATE_HOME/perstack-sandbox`, else `<home>/.local/state/perstack-sandbox`. Relative
//! values are ignored, as the XDG spec says. The home is the `sudo` invoker's (from the user
//! database) when we run as root through `sudo`, so a run under `sudo` and one without share the
//! record of the same person; else `$HOME`, else the user database's entry for our uid.

use std::path::{Path, PathBuf};

use crate::files::Owner;

/// The variable that sets the state folder outright.
pub(crate) const STATE_DIR_VARIABLE: &str = "PERSTACK_SANDBOX_STATE_DIR";

/// What the choice depends on, read from the process.
#[derive(Debug, Default)]
pub(crate) struct StateEnv {
    /// `PERSTACK_SANDBOX_STATE_DIR`.
    pub explicit: Option<String>,
    /// `XDG_STATE_HOME`.
    pub xdg_state_home: Option<String>,
    /// The `sudo` invoker's home, when we are root through `sudo`.
    pub sudo_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<String>,
    /// Our uid's home in the user database.
    pub passwd_home: Option<PathBuf>,
}

impl StateEnv {
    /// Reads the process's variables and the user database.
    pub(crate) fn detect() -> StateEnv {
        let var = |name: &str| std::env::var(name).ok();
        let home_of = |uid: u32| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|user| user.dir)
        };
        StateEnv {
            explicit: var(STATE_DIR_VARIABLE),
            xdg_state_home: var("XDG_STATE_HOME"),
            sudo_home: Owner::detect().uid().and_then(home_of),
            home: var("HOME"),
            passwd_home: home_of(nix::unistd::geteuid().as_raw()),
        }
    }

    /// The state folder, or `None` when nothing names an absolute one.
    pub(crate) fn state_dir(&self) -> Option<PathBuf> {
        let absolute = |value: &Option<String>| {
            value
                .as_deref()
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        if let Some(dir) = absolute(&self.explicit) {
            return Some(dir);
        }
        if self.sudo_home.is_none()
            && let Some(dir) = absolute(&self.xdg_state_home)
        {
            return Some(dir.join("perstack-sandbox"));
        }
        let home = self
            .sudo_home
            .clone()
            .or_else(|| absolute(&self.home))
            .or_else(|| self.passwd_home.clone())
            .filter(|h| h.is_absolute() && h != Path::new("/"))?;
        Some(home.join(".local/state/perstack-sandbox"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> StateEnv {
        StateEnv {
            home: Some("/home/ann".into()),
            ..StateEnv::default()
        }
    }

    #[test]
    fn the_state_folder_is_the_explicit_one_then_xdg_then_the_home() {
        assert_eq!(
            env().state_dir(),
            Some(PathBuf::from("/home/ann/.local/state/perstack-sandbox"))
        );
        let xdg = StateEnv {
            xdg_state_home: Some("/xdg".into()),
            ..env()
        };
        assert_eq!(
            xdg.state_dir(),
            Some(PathBuf::from("/xdg/perstack-sandbox"))
        );
        let explicit = StateEnv {
            explicit: Some("/tmp/state".into()),
            ..xdg
        };
        assert_eq!(explicit.state_dir(), Some(PathBuf::from("/tmp/state")));
    }

    #[test]
    fn relative_values_are_ignored_and_without_any_home_there_is_none() {
        let relative = StateEnv {
            explicit: Some("state".into()),
            xdg_state_home: Some("xdg".into()),
            home: Some("ann".into()),
            passwd_home: Some("/home/ann".into()),
            sudo_home: None,
        };
        assert_eq!(
            relative.state_dir(),
            Some(PathBuf::from("/home/ann/.local/state/perstack-sandbox"))
        );
        assert_eq!(StateEnv::default().state_dir(), None);
        let root_home = StateEnv {
            home: Some("/".into()),
            ..StateEnv::default()
        };
        assert_eq!(root_home.state_dir(), None);
    }

    #[test]
    fn under_sudo_the_invokers_home_is_used_not_roots() {
        let sudo = StateEnv {
            xdg_state_home: Some("/root/.xdg".into()),
            sudo_home: Some("/home/ann".into()),
            home: Some("/root".into()),
            passwd_home: Some("/root".into()),
            explicit: None,
        };
        assert_eq!(
            sudo.state_dir(),
            Some(PathBuf::from("/home/ann/.local/state/perstack-sandbox"))
        );
    }
}
