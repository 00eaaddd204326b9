//! Integration tests, compiled into one binary so the build stays fast on two cores.
//!
//! Docker-dependent tests run against the real engine; see `support::require_docker`.

// A panic is how a test fails: the whole test crate may unwrap and expect (Cargo.toml denies
// both in the library and the binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The test crate is its own root: `pub` in its support modules only shares helpers between them.
#![allow(unreachable_pub)]

mod cli;
mod config_rules;
mod confine;
mod delegation;
mod docker_run;
mod endpoints;
mod export_k8s;
mod fetch_skill;
mod gc;
mod hardening;
mod human_view;
mod init;
mod install;
mod interactive;
mod jobs;
mod local_skills;
mod npx_skill;
mod protected;
mod providers;
mod proxy_tokens;
mod pypi_skill;
mod registry;
mod roles_executable;
mod runtime_engine;
mod security;
mod session;
mod standalone;
mod standalone_read_only;
mod standalone_workspace;
mod streaming;
mod supervision;
mod support;
mod tls_dns;
mod trust;
mod versioned;
mod workspace_copy;
mod workspace_image;
mod workspace_skills;
