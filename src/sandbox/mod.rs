//! The host controller: checks a run, plans it, builds images, starts containers, relays
//! events, cleans up.
//!
//! Decided without the engine — pure data and checks, unit-tested:
//! - [`preflight`]: the checks made before anything starts, one function per check (they read
//!   the config, the env map, the workspace's path and the mock script).
//! - [`plan`]: which images, volumes, networks and containers a run needs.
//! - [`egress`]: who in a run may reach what outside it (the egress proxy's principals).
//! - [`images`]: what goes into each image (`recipes`), on which base (`base`), its content
//!   digest and build context.
//! - [`packages`]: what a skill's `uvx`/`npx`/`python3` command installs at build time, and
//!   what then runs.
//! - [`skill_files`]: the files a skill's command names beside perstack.toml (and its
//!   `files`), read safely and bounded, and the command rewritten to their place in its image.
//! - [`versioned`]: image references, the manifest of a versioned image, pinning a plan's
//!   images to a version.
//! - [`labels`]: the labels that let a run find everything it made.
//! - [`ca_bundle`]: what a CA bundle holds (certificates, fingerprints, names) and what one
//!   bundle has that another lacks.
//!
//! [`backend`]: the seam between the controller and what carries out a plan (Docker today).
//!
//! Done with the engine and the live host — [`engine`]: the Docker client, finding the engine,
//! applying a plan and relaying, the base-image check, who owns a run, sweeping what dead runs
//! left, who base-skill runs as.
//!
//! What the containers' roles must agree on with the controller — paths, users, the runtime
//! spec and command line — is [`crate::contract`].

pub(crate) mod backend;
pub(crate) mod ca_bundle;
pub(crate) mod egress;
pub(crate) mod engine;
pub(crate) mod images;
pub(crate) mod k8s;
pub(crate) mod labels;
pub(crate) mod packages;
pub(crate) mod plan;
pub(crate) mod preflight;
pub(crate) mod skill_files;
pub(crate) mod versioned;
