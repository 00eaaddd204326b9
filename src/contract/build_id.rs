//! Which build an executable comes from. Both executables of one build — the controller,
//! `perstack-sandbox`, and what our images carry, [`ROLES_EXECUTABLE`] — hold [`BUILD_MARK`]
//! (build.rs hashes their sources into it), so the controller can tell from the roles
//! executable's bytes alone that it was built with it, without running it.

/// The file name of the executable our images carry, beside the controller's: the in-container
/// roles alone (`src/bin/perstack-sandbox-roles.rs`). In an image it is at
/// [`BINARY_PATH`](super::paths::BINARY_PATH).
pub(crate) const ROLES_EXECUTABLE: &str = "perstack-sandbox-roles";

/// This build's id: a SHA-256 of its sources, manifest, lock file and features (build.rs).
pub(crate) const BUILD_ID: &str = env!("PERSTACK_SANDBOX_BUILD_ID");

/// The bytes that mark an executable as this build's; part of [`ROLES_VERSION`], so the roles
/// executable keeps them (it prints them on `--version`).
pub(crate) const BUILD_MARK: &str =
    concat!("perstack-sandbox build ", env!("PERSTACK_SANDBOX_BUILD_ID"));

/// `perstack-sandbox-roles --version`: the package version and [`BUILD_MARK`].
pub(crate) const ROLES_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    ", the in-container roles of perstack-sandbox build ",
    env!("PERSTACK_SANDBOX_BUILD_ID")
);
