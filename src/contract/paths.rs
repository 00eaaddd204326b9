//! Where things are inside our images and containers, and the one folder of the workspace that
//! belongs to us.

/// Where our binary lives in every image; every role's ENTRYPOINT starts it.
pub const BINARY_PATH: &str = "/usr/local/bin/perstack-sandbox";
/// Where the runtime image holds its spec, and where the runtime reads it.
pub const SPEC_PATH: &str = "/etc/perstack-sandbox/runtime.json";
/// Where the CA bundle goes in `scratch` images, and where the runtime looks for it.
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// `PATH` for `scratch` images (which have none).
pub const SCRATCH_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where a skill container sees its socket volume.
pub const SKILL_SOCKET_DIR: &str = "/run/perstack/skill";
/// Where the runtime sees the socket volumes, one folder per skill.
pub const RUNTIME_SOCKETS_DIR: &str = "/run/perstack/skills";
/// The socket a skill host listens on, in its socket volume.
pub const SOCKET_FILE: &str = "mcp.sock";

/// Where base-skill sees the workspace, and where the model is told its files are.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// The workspace's run-data folder (jobs, checkpoints), which the controller alone writes:
/// base-skill sees an empty read-only tmpfs there, and its path rules refuse it, so neither the
/// tools nor `exec`'d programs can read or change it.
pub const RESERVED_DIR: &str = "perstack";
