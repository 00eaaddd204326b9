//! Which images, volumes and containers one run needs, as pure data.
//!
//! `plan(&request)` does no I/O, so every isolation decision — who gets which variable, which
//! mount, which user, which network — is visible in a unit test (and pinned by snapshots).
//! `engine/run.rs` then applies the plan.
//!
//! Topology (DESIGN.md, "Per-run topology"):
//! - one skill container per stdio skill of every Expert in the delegation closure, with exactly
//!   its `requiredEnv`, no network, and a socket volume shared with the runtime alone;
//! - one base-skill container per Expert that has `@perstack/base`: the workspace mounted
//!   read-write, running as the invoking user, no secrets, no network;
//! - the runtime container: the provider key(s) and `--env` extras, every socket volume, no
//!   workspace, and network only when the provider needs it.
//!
//! The parts, in the order `plan` runs them:
//! - `request`: what `plan` is given;
//! - `naming`: the names and labels of the run's resources;
//! - `skills`: a container, a socket volume and an endpoint per stdio skill, and a network for
//!   those with `allowedDomains` (`workspace`: what base-skill's container, and a skill granted
//!   the workspace, mount — the protected paths read-only, placeholders for missing ones);
//! - `runtime`: the runtime spec, the runtime's command line and its container;
//! - `proxy`: the runtime's way out, and the egress proxy when anything may reach out;
//! - `resources`: the shapes all of them produce.
//!
//! The images' recipes are in `sandbox/images/recipes.rs`.

// The plan reads as its stages: no function over clippy.toml's `too-many-lines-threshold`.
#![warn(clippy::too_many_lines)]

mod naming;
mod proxy;
mod request;
mod resources;
mod runtime;
mod skills;
#[cfg(test)]
mod tests;
mod workspace;

pub(crate) use request::{Resume, RunRequest};
pub(crate) use resources::{
    ContainerPlan, InternalNetworkPlan, MountPlan, MountSource, NetworkPlan, Placeholder,
    PrebuiltImage, ProxyPlan, VolumePlan,
};

use crate::contract::spec::RuntimeSpec;
use crate::sandbox::egress;
use crate::sandbox::images::ImageSpec;
use crate::sandbox::images::recipes::{proxy_image, runtime_image};

use naming::RunNames;

/// Everything one run creates.
#[derive(Debug, Clone)]
pub(crate) struct RunPlan {
    /// Images to find or build.
    pub images: Vec<ImageSpec>,
    /// Socket volumes.
    pub volumes: Vec<VolumePlan>,
    /// Skill containers (started first).
    pub skills: Vec<ContainerPlan>,
    /// The runtime container.
    pub runtime: ContainerPlan,
    /// The spec baked into the runtime image (also in its build context); the plan's tests read
    /// it here.
    #[cfg_attr(not(test), allow(dead_code))]
    pub spec: RuntimeSpec,
    /// Internal networks, one per principal of the egress proxy.
    pub networks: Vec<InternalNetworkPlan>,
    /// The egress proxy; `None` when nothing in the run may reach outside.
    pub proxy: Option<ProxyPlan>,
    /// `run --image`: the images exist already (or are pulled), one per entry of `images`;
    /// nothing is built.
    pub prebuilt: Option<Vec<PrebuiltImage>>,
    /// What the controller makes in the workspace before the containers (outermost first)
    /// and removes after them.
    pub placeholders: Vec<Placeholder>,
}

/// Plans one run: the skills' containers, then the runtime's spec, image and way out, then the
/// egress proxy and the runtime container. Images are listed once each, in the order first
/// needed: the skills', the proxy's, the runtime's.
pub(crate) fn plan(request: &RunRequest) -> Result<RunPlan, serde_json::Error> {
    let names = RunNames::new(request);
    let closure = request.config.delegation_closure(&request.expert_key);
    let mut images = ImageList::default();
    let skills = skills::plan_skills(request, &names, &closure, &mut images);
    let spec = runtime::runtime_spec(request, &closure, skills.endpoints);
    let way_out = proxy::runtime_egress(request, &names, &closure);
    // Only a runtime that reaches out talks TLS, and only its image carries the CA bundle.
    let runtime_image = runtime_image(
        &request.config,
        &request.expert_key,
        &spec,
        &request.artifacts,
        way_out.is_some(),
    )?;

    let mut networks = skills.networks;
    let mut principals = skills.principals;
    let mut runtime_env = request.runtime_env.clone();
    let runtime_network = match way_out {
        None => NetworkPlan::None,
        Some(way_out) => {
            let network = NetworkPlan::Internal(way_out.network.name.clone());
            networks.push(way_out.network);
            // The runtime is the proxy's first principal.
            principals.insert(0, way_out.principal);
            runtime_env.extend(egress::proxy_env(false));
            network
        }
    };
    let proxy = (!principals.is_empty()).then(|| {
        let image = images.add(proxy_image(&request.artifacts));
        proxy::proxy_plan(request, &names, image, principals)
    });
    let runtime = runtime::runtime_container(
        request,
        &names,
        images.add(runtime_image),
        skills.runtime_mounts,
        runtime_network,
        runtime_env,
    )?;
    Ok(RunPlan {
        images: images.0,
        volumes: skills.volumes,
        skills: skills.containers,
        runtime,
        spec,
        networks,
        proxy,
        prebuilt: None,
        placeholders: skills.placeholders,
    })
}

/// The run's images, each once: containers that need the same image share it.
#[derive(Default)]
struct ImageList(Vec<ImageSpec>);

impl ImageList {
    /// The index of `spec`, added when it is new.
    fn add(&mut self, spec: ImageSpec) -> usize {
        if let Some(i) = self.0.iter().position(|s| *s == spec) {
            return i;
        }
        self.0.push(spec);
        self.0.len() - 1
    }
}
