//! perstack-sandbox: run Perstack Experts in Docker.
//!
//! See ARCHITECTURE.md for the parts and the path of one run.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod config;
pub mod confine;
pub mod contract;
pub mod event;
pub mod exit;
pub mod ids;
pub mod jobs;
pub mod llm;
pub mod proxy;
pub mod render;
pub mod runtime;
pub mod sandbox;
pub mod skill;
#[cfg(feature = "test-support")]
pub mod test_support;
