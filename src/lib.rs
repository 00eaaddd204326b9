//! perstack-sandbox: run Perstack Experts in Docker.
//!
//! See ARCHITECTURE.md for the parts and the path of one run.
//!
//! The library's public surface is what the two executables need — the command line ([`cli`]),
//! the commands and roles they dispatch to ([`commands`]), how a process starts and exits
//! ([`startup`]) and the exit codes ([`exit`]) — and, with the
//! `test-support` feature, the helpers and internals the end-to-end tests use
//! ([`test_support`]). Everything else is `pub(crate)`: Cargo.toml's `unreachable_pub` lint keeps
//! it so.

// Without `test-support` the items only `test_support::internals` re-exports look unreachable;
// the lint holds in every build that has the feature (tests, `make lint`), and only there.
#![cfg_attr(not(feature = "test-support"), allow(unreachable_pub))]
// No function of the product over clippy.toml's `too-many-lines-threshold`: a longer one is a
// pipeline of named steps waiting to be written. Tests are exempt (a scenario may read long),
// except in `commands/` and `sandbox/plan/`, which hold their tests to it as well.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub(crate) mod agent;
pub mod cli;
pub mod commands;
pub(crate) mod config;
// Parts of `confine` (breakout attempts, some reports) only the tests use.
#[cfg_attr(not(feature = "test-support"), allow(dead_code))]
pub(crate) mod confine;
pub(crate) mod contract;
pub(crate) mod event;
pub mod exit;
pub(crate) mod files;
pub(crate) mod ids;
pub(crate) mod jobs;
pub(crate) mod llm;
#[cfg_attr(not(feature = "test-support"), allow(dead_code))]
pub(crate) mod proxy;
pub(crate) mod registry;
pub(crate) mod render;
pub(crate) mod runtime;
pub(crate) mod sandbox;
// The run's protections and the detection of changed inputs are being built on this list.
pub(crate) mod skill;
pub mod standalone;
pub mod startup;
#[cfg(feature = "test-support")]
pub mod test_support;
#[cfg(test)]
mod tests;
#[allow(dead_code)]
pub(crate) mod trust;
