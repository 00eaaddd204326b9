//! The controller's side that talks to the Docker engine or reads the live host. Everything it
//! does was decided beforehand by the pure parts of `sandbox` (the plan, the images' recipes,
//! preflight's checks).
//!
//! - [`docker`]: the only file that talks to the engine (bollard), with the hardening defaults.
//! - [`process_limit`]: the process limit as the engine takes it, under runc and under gVisor.
//! - [`endpoint`]: where the engine is (`DOCKER_HOST`, contexts, rootless Docker, Podman).
//! - [`info`]: which engine it is (Docker or Podman, rootless or not) and what differs for a
//!   run; [`raw`]: the calls bollard cannot make (Podman's `Rootless`, its network endpoint).
//! - [`base_images`]: preflight's engine check — every base image the run builds on is there.
//! - [`runtime_engine`]: preflight's other engine check — the OCI runtime the run asks for is
//!   registered.
//! - [`run`]: applying a plan — images, volumes, networks, the proxy, the containers — and
//!   relaying the runtime's events until it ends; then removing everything.
//! - [`probe`]: `doctor`'s proof that a run will start: what a run makes, made, checked and
//!   removed.
//! - [`relay`]: reassembling and classifying the runtime's stdout lines.
//! - [`placeholders`]: making and removing the empty files and folders that hold the place of
//!   missing protected paths while the run's containers mount the workspace.
//! - [`gc`]: sweeping what runs of dead controllers left, and superseded images.
//! - [`workspace_user`]: who base-skill runs as (the invoking user, or under sudo the workspace's
//!   owner).

pub(crate) mod base_images;
pub(crate) mod docker;
pub(crate) mod endpoint;
pub(crate) mod gc;
pub(crate) mod info;
pub(crate) mod placeholders;
pub(crate) mod probe;
pub(crate) mod process_limit;
pub(crate) mod raw;
pub(crate) mod relay;
pub(crate) mod run;
pub(crate) mod runtime_engine;
pub(crate) mod workspace_user;
