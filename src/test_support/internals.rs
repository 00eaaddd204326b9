//! The crate's internals that end-to-end tests use, and nothing more: the config loader the
//! rule fixtures go through, the proxy pieces the token topology is built from, the confinement
//! policy and probes, and the id helpers that give each test run its own job.

/// perstack.toml's model and loader (`tests/e2e/config_rules.rs`).
pub mod config {
    pub use crate::config::schema::{
        McpStdioSkill, ReasoningBudget, ReasoningLevel, SandboxConfig, Skill,
    };
    pub use crate::config::{ConfigError, dotted_path, load};
    pub use crate::llm::providers::ProviderName;
}

/// The egress proxy's configuration and per-principal tokens (`tests/e2e/proxy_tokens.rs`).
pub mod proxy {
    pub use crate::contract::proxy::PROXY_CONFIG_VAR;
    pub use crate::proxy::rules::{Allowlist, DomainRule};
    pub use crate::proxy::token::{self, Issued};
    pub use crate::proxy::{Identity, PROXY_PORT, Principal, ProxyConfig, TrustedEndpoint};
}

/// Confinement policies, the kernel probe and the role (`tests/e2e/confine.rs`).
pub mod confine {
    pub use crate::confine::launch::Launch;
    pub use crate::confine::policy::STANDARD_DEVICES;
    pub use crate::confine::policy::{FsRules, Identity, NetRules, Policy};
    pub use crate::confine::probe::Protections;
    pub use crate::confine::probe::{LandlockFeature, LandlockSupport, SeccompSupport};
    pub use crate::confine::program::AfterExec;
    pub use crate::confine::role;
}

pub use crate::ids::new_id;
pub use crate::jobs::store::is_safe_id;

/// Who base-skill runs as inside its container on the engine the tests talk to, for files
/// that must be `host_user`'s on the host (`sandbox/engine/info.rs`): `(0, 0)` on a rootless
/// engine, whose uid 0 is the engine's user outside, else `host_user` itself. `None` when no
/// engine answers.
pub fn base_skill_user(host_user: (u32, u32)) -> Option<(u32, u32)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let docker = runtime
        .block_on(crate::sandbox::engine::docker::DockerClient::connect())
        .ok()?;
    Some(docker.engine().workspace_user(host_user))
}
