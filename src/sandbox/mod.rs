//! The host controller: plans a run, builds images, starts containers, relays events, cleans up.
//!
//! - [`plan`]: which images, volumes and containers a run needs (pure data).
//! - [`images`]: what goes into an image, its content digest and build context.
//! - [`packages`]: what a skill's `uvx`/`npx`/`python3` command installs at build time, and what then runs.
//! - [`docker`]: the only file that talks to the engine.
//! - [`endpoint`]: where the engine is (`DOCKER_HOST`, contexts, rootless Docker, Podman).
//! - [`run`]: applying a plan and relaying the runtime's events.
//! - [`relay`]: reassembling and classifying the runtime's stdout lines.
//! - [`preflight`]: the checks made before anything starts.
//! - [`labels`]: the labels that let a run find everything it made.
//! - [`workspace_user`]: who base-skill runs as.
//! - [`versioned`]: images built once under a version tag, and runs from them alone.

pub mod controller;
pub mod docker;
pub mod egress;
pub mod endpoint;
pub mod gc;
pub mod images;
pub mod labels;
pub mod packages;
pub mod plan;
pub mod preflight;
pub mod relay;
pub mod run;
pub mod versioned;
pub mod workspace_user;
