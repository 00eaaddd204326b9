//! The `perstack-sandbox-roles` executable, which our images carry (as
//! `/usr/local/bin/perstack-sandbox`): the in-container roles alone — the runtime, the skill
//! host, base-skill, the egress proxy, the standalone supervisor and its confinement, doctor's
//! probes, a Kubernetes pod's workspace copy. Nothing here reaches the host's commands, so the
//! linker leaves them out, and the Kubernetes client with them (BENCHMARKS.md, "The two
//! executables").

// As in the library (lib.rs): no function over clippy.toml's `too-many-lines-threshold`.
#![warn(clippy::too_many_lines)]

use perstack_sandbox::cli::{self, RolesCli};
use perstack_sandbox::commands::roles;

fn main() {
    roles::run_and_exit(cli::parse::<RolesCli>().command)
}
