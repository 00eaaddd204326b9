//! perstack-sandbox: run Perstack Experts in Docker.
//!
//! See ARCHITECTURE.md for the parts and the path of one run.

pub mod agent;
pub mod config;
pub mod event;
pub mod ids;
pub mod llm;
pub mod runtime;
pub mod sandbox;
pub mod skill;
