//! The host controller: plans a run, builds images, starts containers, relays events, cleans up.
//!
//! - [`plan`]: which images, volumes and containers a run needs (pure data).
//! - [`images`]: what goes into an image, its content digest and build context.
//! - [`docker`]: the only file that talks to the engine.
//! - [`endpoint`]: where the engine is (`DOCKER_HOST`, contexts, rootless Docker, Podman).
//! - [`run`]: applying a plan and relaying the runtime's events.
//! - [`relay`]: reassembling and classifying the runtime's stdout lines.
//! - [`preflight`]: the checks made before anything starts.
//! - [`labels`]: the labels that let a run find everything it made.

pub mod controller;
pub mod docker;
pub mod egress;
pub mod endpoint;
pub mod gc;
pub mod images;
pub mod labels;
pub mod plan;
pub mod preflight;
pub mod relay;
pub mod run;
