//! The contract between the host controller and the roles it starts inside containers.
//!
//! Both sides of the container boundary import this module, and neither defines these facts
//! itself: the controller builds images and containers to it, and the `runtime`, `skill-host`,
//! `base-skill` and `egress-proxy` roles rely on it inside them. It holds data and names only,
//! no behaviour (as codex-rs keeps its `protocol` crate).
//!
//! - [`build_id`]: the executable our images carry beside the controller's, and the build id
//!   both carry, by which the controller knows the first is its own build's.
//! - [`paths`]: where things are inside our images and containers — our binary, the CA bundle,
//!   the runtime spec, the socket folders, the workspace. (The workspace's reserved `perstack/`
//!   folder is `config::workspace`'s: config's rules need it, and config is below this module.)
//! - [`users`]: the uids and gids the containers run as, which images/passwd and images/group
//!   name too.
//! - [`spec`]: the runtime spec the controller bakes into a runtime image.
//! - [`runtime_args`]: the runtime role's command line, built by the controller's plan and
//!   parsed by the role.
//! - [`probe`]: what `doctor`'s probe containers report about themselves.
//! - [`proxy`]: the variable that carries the egress proxy's configuration.
//! - [`supervision`]: how the skill host tells the runtime that a skill's server went away, and
//!   how its own stderr lines begin.

pub(crate) mod build_id;
pub(crate) mod paths;
pub(crate) mod probe;
pub(crate) mod proxy;
pub(crate) mod runtime_args;
pub(crate) mod spec;
pub(crate) mod supervision;
pub(crate) mod users;
