//! The only file that talks to the Docker engine (through bollard).
//!
//! Every call here maps engine errors to [`DockerError`] values that name what we were doing;
//! the callers decide what a failure means for the run.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountTmpfsOptions, MountType, ResourcesUlimits,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptions, BuildImageOptions, CreateContainerOptions, CreateImageOptions,
    ImportImageOptionsBuilder, KillContainerOptions, ListImagesOptions, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
    WaitContainerOptions,
};
use futures::{Stream, StreamExt};

use super::endpoint::{self, Address, Endpoint, NoEngine, RealHost};
pub(crate) use super::info::EngineInfo;
use super::info::{BUILD_ATTEMPTS, BuildRace, NetworkDns};
use super::process_limit;
use super::raw::{RawClient, RawError};
use crate::sandbox::images::user_recipe::UserRecipe;
use crate::sandbox::images::{ImageSpec, proxy_build_args};
use crate::sandbox::labels;
use crate::sandbox::plan::{
    ContainerPlan, InternalNetworkPlan, MountPlan, MountSource, VolumePlan,
};
use crate::sandbox::preflight::RegisteredRuntime;
use crate::sandbox::versioned::split_reference;

/// Engine failures, each naming what we were doing.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No engine answered at any place we looked; says each place and what to do.
    #[error(transparent)]
    Unreachable(#[from] NoEngine),
    /// A call bollard cannot make failed (`raw.rs`).
    #[error(transparent)]
    Raw(#[from] RawError),
    /// A call failed.
    #[error("Docker {action} failed: {source}")]
    Call {
        /// What we were doing, e.g. `create container psbx-…-runtime`.
        action: String,
        /// The engine's answer.
        #[source]
        source: bollard::errors::Error,
    },
    /// A run's removal ended with some of it still listed by the engine.
    #[error(
        "the engine still lists {left} of run {run_id} after {} s of removal; `perstack-sandbox gc` removes them once the engine lets go",
        REMOVAL_WITHIN.as_secs()
    )]
    Left {
        /// The run.
        run_id: String,
        /// What is left, in words ([`Managed::describe`]).
        left: String,
    },
    /// A network came without an IPv4 subnet, so the egress proxy could not tell its clients
    /// apart.
    #[error(
        "the engine created network {0} without an IPv4 subnet; the egress proxy needs one (check the daemon's default-address-pools)"
    )]
    NoSubnet(String),
    /// A registry refused or failed a push or pull.
    #[error(
        "Docker {action} failed: {message}\n  hint: check that the registry answers and the reference is right; a registry on another host than localhost must be listed in the daemon's insecure-registries or serve TLS"
    )]
    Registry {
        /// What we were doing, e.g. `push 127.0.0.1:5000/demo:1.0`.
        action: String,
        /// The engine's or registry's message.
        message: String,
    },
    /// A file copied out of an image could not be read.
    #[error("cannot read {path} from image {image}: {message}")]
    Archive {
        /// The image.
        image: String,
        /// The file in it.
        path: String,
        /// Why.
        message: String,
    },
    /// An image build reported an error.
    #[error("building image {tag} failed: {message}")]
    Build {
        /// The tag being built.
        tag: String,
        /// The builder's message.
        message: String,
    },
}

fn call(action: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let action = action.into();
    move |source| DockerError::Call { action, source }
}

/// 409 "removal … is already in progress": another sweep got there first.
fn is_being_removed(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        } if message.contains("already in progress")
    )
}

/// Reads a push or pull progress stream to its end: each status line goes to `on_line`; an
/// error in the stream (`errorDetail`) or of the stream fails `action`.
async fn drain_registry_stream<T>(
    stream: &mut (impl Stream<Item = Result<T, bollard::errors::Error>> + Unpin),
    action: &str,
    parts: impl Fn(T) -> (Option<String>, Option<String>),
    on_line: &mut impl FnMut(&str),
) -> Result<(), DockerError> {
    let failed = |message: String| DockerError::Registry {
        action: action.to_string(),
        message,
    };
    while let Some(item) = stream.next().await {
        let (error, status) = parts(item.map_err(|e| failed(e.to_string()))?);
        if let Some(error) = error {
            return Err(failed(error));
        }
        if let Some(status) = status {
            on_line(&status);
        }
    }
    Ok(())
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What removing a run's resources found and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    /// Containers removed.
    pub containers: usize,
    /// Volumes removed.
    pub volumes: usize,
    /// Networks removed.
    pub networks: usize,
}

/// A container, volume or network of ours, with its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Labelled {
    /// Id (volumes: name).
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

/// Everything of ours the engine holds, by kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct Managed {
    /// Containers, running or not.
    pub containers: Vec<Labelled>,
    /// Volumes.
    pub volumes: Vec<Labelled>,
    /// Networks.
    pub networks: Vec<Labelled>,
}

impl Managed {
    /// Nothing of ours is listed.
    pub(crate) fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty() && self.networks.is_empty()
    }

    /// What is listed, in words: `container 0123456789ab, volume psbx-…-fixture`.
    pub(crate) fn describe(&self) -> String {
        let kinds = [
            ("container", &self.containers),
            ("volume", &self.volumes),
            ("network", &self.networks),
        ];
        kinds
            .iter()
            .flat_map(|(kind, list)| {
                // Container and network ids are 64 hex digits: the 12 `docker ps` shows.
                let width = if *kind == "volume" { usize::MAX } else { 12 };
                list.iter().map(move |l| {
                    format!("{kind} {}", l.id.chars().take(width).collect::<String>())
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One of our images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedImage {
    /// Image id.
    pub id: String,
    /// Its `repo:tag` references.
    pub tags: Vec<String>,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Size in bytes.
    pub size: i64,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

/// A connected, version-negotiated engine client.
#[derive(Debug, Clone)]
pub(crate) struct DockerClient {
    docker: Docker,
    endpoint: Endpoint,
    raw: RawClient,
    engine: EngineInfo,
}

/// How long one place may take to answer `/version` before we look further. A refused or
/// missing socket fails at once; this is for an engine that accepts and is slow to answer, as a
/// busy Podman service is (measured: over 10 s while it builds and removes images for others),
/// which should be waited for rather than passed over.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
/// The per-request timeout bollard applies (its default).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Connects to one address and negotiates the API version; the error says what happened there.
async fn connect_to(address: Address) -> Result<Docker, String> {
    let docker = match &address {
        Address::Unix(path) => Docker::connect_with_unix(
            &path.to_string_lossy(),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
        Address::Tcp(host) => Docker::connect_with_http(
            &format!("tcp://{host}"),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        ),
    }
    .map_err(|e| e.to_string())?;
    match tokio::time::timeout(ANSWER_WITHIN, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(error)) => Err(describe_connect_error(&error)),
        Err(_) => Err(format!("no answer within {} s", ANSWER_WITHIN.as_secs())),
    }
}

/// How long [`DockerClient::remove_run`] repeats its removal passes, [`REMOVAL_RETRY`] apart,
/// until nothing of the run is listed: Podman answers "being removed" for a container its own
/// cleanup is removing and lists it (and the volumes it holds) for a while after, so one pass
/// can end before the run's resources are gone; a busy machine stretches that to seconds.
/// Docker needs one pass.
const REMOVAL_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// The pause between two removal passes.
const REMOVAL_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// The cause of a failed connection, in words (bollard's own are `error trying to connect`).
fn describe_connect_error(error: &bollard::errors::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut deepest = error.to_string();
    while let Some(e) = source {
        deepest = e.to_string();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied (your user may not use this socket)".to_string()
                }
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (nothing listens there)".to_string()
                }
                _ => io.to_string(),
            };
        }
        source = e.source();
    }
    deepest
}

/// A local image's variables and working directory, as its config has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageEnv {
    /// `Env`, in order.
    pub env: Vec<(String, String)>,
    /// `WorkingDir`, when set.
    pub workdir: Option<String>,
}

impl DockerClient {
    /// Finds the engine (`DOCKER_HOST`, a Docker context, rootless Docker or Podman, the
    /// default socket: [`super::endpoint`] has the order), connects and negotiates the API
    /// version (the engines we meet speak older APIs than bollard's default, e.g. 1.41).
    pub(crate) async fn connect() -> Result<DockerClient, DockerError> {
        let host = RealHost;
        let (docker, endpoint) =
            endpoint::first_answering(&host, endpoint::candidates(&host), connect_to).await?;
        DockerClient::answering(docker, endpoint).await
    }

    /// The engine at `address`, as if `DOCKER_HOST` named it: for tests against a fake engine.
    #[cfg(test)]
    pub(crate) async fn connect_at(address: Address) -> Result<DockerClient, DockerError> {
        let docker = connect_to(address.clone())
            .await
            .map_err(|message| DockerError::Call {
                action: format!("connect to {address}"),
                source: bollard::errors::Error::IOError {
                    err: std::io::Error::other(message),
                },
            })?;
        let endpoint = Endpoint {
            address,
            why: endpoint::Why::DockerHost,
            passed_over: Vec::new(),
        };
        DockerClient::answering(docker, endpoint).await
    }

    /// A client of the engine `docker` answers at `endpoint`: what it is, read once.
    async fn answering(docker: Docker, endpoint: Endpoint) -> Result<DockerClient, DockerError> {
        let raw = RawClient::new(&endpoint.address)?;
        let version = docker.version().await.map_err(call("version"))?;
        let engine = EngineInfo::new(
            version,
            docker.client_version().to_string(),
            &raw.info().await?,
        );
        Ok(DockerClient {
            docker,
            endpoint,
            raw,
            engine,
        })
    }

    /// Where we connected, and why there.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// What the engine is (read once, when connecting): versions, make, rootless or not.
    pub(crate) fn engine(&self) -> &EngineInfo {
        &self.engine
    }

    /// The OCI runtimes the engine has registered, sorted by name, and the name of its default.
    pub(crate) async fn runtimes(
        &self,
    ) -> Result<(Vec<RegisteredRuntime>, Option<String>), DockerError> {
        let info = self.docker.info().await.map_err(call("info"))?;
        let mut runtimes: Vec<RegisteredRuntime> = info
            .runtimes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, runtime)| RegisteredRuntime {
                path: runtime.path.unwrap_or_else(|| name.clone()),
                args: runtime.runtime_args.unwrap_or_default(),
                name,
            })
            .collect();
        runtimes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((runtimes, info.default_runtime))
    }

    /// The id of a local image, or `None` if there is none by that reference.
    pub(crate) async fn image_id(&self, reference: &str) -> Result<Option<String>, DockerError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(call(format!("inspect image {reference}"))(e)),
        }
    }

    /// Makes the image for `spec` as `tag`: loaded when it is based on `scratch` and the
    /// engine loads faithfully (`info.rs`), built otherwise (see `images.rs`). Builder output
    /// lines go to `on_line`. Gives the id of the image the tag names once it is made.
    pub(crate) async fn create_image(
        &self,
        spec: &ImageSpec,
        tag: &str,
        on_line: impl FnMut(&str),
    ) -> Result<String, DockerError> {
        if spec.is_scratch() && self.engine.loads_scratch_images() {
            self.load_image(spec, tag).await
        } else {
            self.build_image(spec, tag, on_line).await
        }
    }

    /// Loads `spec` as `tag` from an image archive of its layers and config (`images.rs`):
    /// one call, and a layer the engine has already (the executable's) is not stored again.
    /// Gives the id of the image the tag names once it is loaded.
    pub(crate) async fn load_image(
        &self,
        spec: &ImageSpec,
        tag: &str,
    ) -> Result<String, DockerError> {
        let build_error = |message: String| DockerError::Build {
            tag: tag.to_string(),
            message,
        };
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let archive = spec
            .image_archive(tag, &created)
            .map_err(|e| build_error(format!("cannot assemble the image archive: {e}")))?;
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut stream = self.docker.import_image(
            options,
            bollard::body_full(bytes::Bytes::from(archive)),
            None,
        );
        while let Some(item) = stream.next().await {
            item.map_err(|e| build_error(e.to_string()))?;
        }
        self.read_back(tag).await
    }

    /// Builds `spec` as `tag` from its in-memory context with the classic builder (no registry,
    /// no BuildKit session, never pulls). Each line of builder output goes to `on_line`. Gives
    /// the id of the image the tag names once it is built.
    pub(crate) async fn build_image(
        &self,
        spec: &ImageSpec,
        tag: &str,
        on_line: impl FnMut(&str),
    ) -> Result<String, DockerError> {
        let context = spec.context_tar().map_err(|e| DockerError::Build {
            tag: tag.to_string(),
            message: format!("cannot assemble build context: {e}"),
        })?;
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".to_string(),
            t: Some(tag.to_string()),
            rm: true,
            forcerm: true,
            // On a real base the labels are one LABEL line of the Dockerfile (this option commits
            // a layer per label); only a `scratch` build (doctor's probe) needs the option.
            labels: spec
                .is_scratch()
                .then(|| spec.labels.clone().into_iter().collect()),
            // Installing a skill's packages needs the network (the default bridge) and, behind
            // a proxy, the controller's proxy settings.
            buildargs: (!spec.install.is_empty()).then(|| {
                proxy_build_args(|name| std::env::var(name).ok())
                    .into_iter()
                    .collect()
            }),
            ..Default::default()
        };
        self.build_context(options, context, on_line).await
    }

    /// Builds a skill's own recipe (`images/user_recipe.rs`) as its tag: the user's Dockerfile
    /// with its folder as the context, the controller's proxy settings as build args (its
    /// steps may install things), never pulling.
    pub(crate) async fn build_recipe(
        &self,
        recipe: &UserRecipe,
        on_line: impl FnMut(&str),
    ) -> Result<(), DockerError> {
        let tag = recipe.tag();
        let context = recipe.context_tar().map_err(|e| DockerError::Build {
            tag: tag.clone(),
            message: format!("cannot assemble build context: {e}"),
        })?;
        let options = BuildImageOptions {
            dockerfile: recipe.dockerfile.clone(),
            t: Some(tag),
            rm: true,
            forcerm: true,
            buildargs: Some(
                proxy_build_args(|name| std::env::var(name).ok())
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        };
        self.build_context(options, context, on_line)
            .await
            .map(drop)
    }

    /// Runs one classic build of `context` with `options`, each line of builder output to
    /// `on_line`, and reads its image back by its tag. A build that lost a race with another
    /// client of the engine (a build container or a cached image removed meanwhile, or the image
    /// itself gone before it could be read back: `info::BuildRace`) is run again, at most
    /// `BUILD_ATTEMPTS` times in all, saying so on stderr.
    async fn build_context(
        &self,
        options: BuildImageOptions,
        context: Vec<u8>,
        mut on_line: impl FnMut(&str),
    ) -> Result<String, DockerError> {
        // Shared, not copied, by a second attempt: a context holds our executable.
        let context = bytes::Bytes::from(context);
        let tag = options.t.clone().unwrap_or_default();
        let mut attempt = 1;
        loop {
            let built = self
                .build_context_once(options.clone(), context.clone(), &mut on_line)
                .await;
            let (made, race) = match built {
                Ok(()) => {
                    let read = self.read_back(&tag).await;
                    let race = (read.is_err() && attempt < BUILD_ATTEMPTS)
                        .then_some(BuildRace::BuiltImage);
                    (read, race)
                }
                Err(error) => {
                    let race = match &error {
                        DockerError::Build { message, .. } => {
                            self.engine.retry_build(attempt, message)
                        }
                        _ => None,
                    };
                    (Err(error), race)
                }
            };
            let (Some(race), Err(error)) = (race, &made) else {
                return made;
            };
            attempt += 1;
            let line = format!(
                "warning: {error} — {}; building it again (attempt {attempt} of {BUILD_ATTEMPTS})",
                race.describe()
            );
            eprintln!("{line}");
            on_line(&line);
            // Let the other build finish what it holds; its steps are then in the cache.
            tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
        }
    }

    /// The id of the image `tag` names, read back right after the engine reported it made.
    /// The engine said it made it, so an image that cannot be read was removed in between by
    /// another client (seen on rootful Podman: 500 "image not known" for the id the new tag
    /// named, beside tests removing their own images): a race, not the recipe's failure.
    async fn read_back(&self, tag: &str) -> Result<String, DockerError> {
        self.docker
            .inspect_image(tag)
            .await
            .map(|image| image.id.unwrap_or_default())
            .map_err(|e| DockerError::Build {
                tag: tag.to_string(),
                message: format!("the build was done but its image cannot be read: {e}"),
            })
    }

    /// One build of `context` with `options`.
    async fn build_context_once(
        &self,
        options: BuildImageOptions,
        context: bytes::Bytes,
        on_line: &mut impl FnMut(&str),
    ) -> Result<(), DockerError> {
        let tag = options.t.clone().unwrap_or_default();
        let mut stream = self
            .docker
            .build_image(options, None, Some(bollard::body_full(context)));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| DockerError::Build {
                tag: tag.to_string(),
                message: e.to_string(),
            })?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Build {
                    tag: tag.to_string(),
                    message: error,
                });
            }
            if let Some(line) = info.stream {
                for l in line.lines().filter(|l| !l.trim().is_empty()) {
                    on_line(l.trim_end());
                }
            }
        }
        Ok(())
    }

    /// Removes an image (tests and `gc`).
    pub(crate) async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        match self
            .docker
            .remove_image(
                reference,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(call(format!("remove image {reference}"))(e)),
        }
    }

    /// Creates one of the run's internal networks (no route out) and returns its subnet, which
    /// tells the egress proxy who a connection comes from.
    pub(crate) async fn create_internal_network(
        &self,
        plan: &InternalNetworkPlan,
    ) -> Result<String, DockerError> {
        if self.engine.network_dns() == NetworkDns::SwitchOff {
            return self
                .raw
                .create_podman_internal_network(&plan.name, &plan.labels)
                .await?
                .ok_or_else(|| DockerError::NoSubnet(plan.name.clone()));
        }
        let action = || format!("create network {}", plan.name);
        let created = self
            .docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: plan.name.clone(),
                driver: Some("bridge".into()),
                internal: Some(true),
                labels: Some(plan.labels.clone().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(call(action()))?;
        let inspected = self
            .docker
            .inspect_network(&created.id, None)
            .await
            .map_err(call(format!("inspect network {}", plan.name)))?;
        inspected
            .ipam
            .and_then(|ipam| ipam.config)
            .into_iter()
            .flatten()
            .find_map(|c| c.subnet.filter(|s| s.contains('.')))
            .ok_or_else(|| DockerError::NoSubnet(plan.name.clone()))
    }

    /// Connects a created container to a network, reachable there as `alias`.
    pub(crate) async fn connect_network(
        &self,
        container: &str,
        network: &str,
        alias: &str,
    ) -> Result<(), DockerError> {
        self.docker
            .connect_network(
                network,
                bollard::models::NetworkConnectRequest {
                    container: container.to_string(),
                    endpoint_config: Some(bollard::models::EndpointSettings {
                        aliases: Some(vec![alias.to_string()]),
                        ..Default::default()
                    }),
                },
            )
            .await
            .map_err(call(format!("connect {container} to network {network}")))
    }

    /// Creates a per-run volume.
    pub(crate) async fn create_volume(&self, plan: &VolumePlan) -> Result<(), DockerError> {
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(plan.name.clone()),
                driver: Some("local".to_string()),
                driver_opts: Some(plan.driver_opts.clone().into_iter().collect()),
                labels: Some(plan.labels.clone().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(call(format!("create volume {}", plan.name)))?;
        Ok(())
    }

    /// Creates a container from its plan, hardened (DESIGN.md, "Hardening defaults"). `hosts`
    /// are `/etc/hosts` entries (name, address): the egress proxy's address on the container's
    /// network, which exists only once the proxy is connected.
    pub(crate) async fn create_container(
        &self,
        plan: &ContainerPlan,
        image: &str,
        hosts: &[(String, String)],
    ) -> Result<String, DockerError> {
        let body = container_body(plan, image, self.host_config(plan, hosts));
        let response = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(plan.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(call(format!("create container {}", plan.name)))?;
        Ok(response.id)
    }

    /// The hardened host side of a container: its filesystems, network, capabilities and limits.
    fn host_config(&self, plan: &ContainerPlan, hosts: &[(String, String)]) -> HostConfig {
        let (mounts, tmpfs) = self.filesystems(plan);
        let process_limit =
            process_limit::process_limit(plan.limits.pids, plan.oci_runtime.as_deref());
        let limited = self.engine.enforces_limits();
        HostConfig {
            mounts: Some(mounts),
            network_mode: Some(plan.network.mode().to_string()),
            extra_hosts: (!hosts.is_empty()).then(|| {
                hosts
                    .iter()
                    .map(|(name, address)| format!("{name}:{address}"))
                    .collect()
            }),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges:true".to_string()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(tmpfs),
            // None on an engine that would ignore them (`--allow-weaker-isolation` on rootless
            // cgroup v1): the container then claims no limit that does not hold.
            memory: limited.then_some(plan.limits.memory),
            // Swap equal to the limit means no swap at all: a process over the limit is
            // OOM-killed at once instead of thrashing the host's swap (Docker's default allows
            // as much swap again).
            memory_swap: limited.then_some(plan.limits.memory),
            nano_cpus: limited.then_some((plan.limits.cpus * 1e9) as i64),
            pids_limit: limited.then_some(process_limit.host_pids),
            // Our binary is PID 1 and reaps; Docker's init would only add a process.
            init: Some(false),
            runtime: plan.oci_runtime.clone(),
            ulimits: ulimits(&process_limit::ulimits(
                self.engine.ulimits(),
                process_limit,
            )),
            ..Default::default()
        }
    }

    /// The plan's mounts, and the tmpfs filesystems: a writable `/tmp`, and each empty tmpfs
    /// mount where the engine takes options for one.
    fn filesystems(&self, plan: &ContainerPlan) -> (Vec<Mount>, HashMap<String, String>) {
        let mut tmpfs = HashMap::from([(
            "/tmp".to_string(),
            "rw,nosuid,nodev,size=256m,mode=1777".to_string(),
        )]);
        let mut mounts = Vec::new();
        for m in &plan.mounts {
            match (&m.source, self.engine.empty_tmpfs_option()) {
                (MountSource::EmptyTmpfs, Some(options)) => {
                    tmpfs.insert(m.target.clone(), options.to_string());
                }
                _ => mounts.push(mount(m)),
            }
        }
        (mounts, tmpfs)
    }

    /// Attaches to a container's stdout and stderr (before it starts, so nothing is missed).
    pub(crate) async fn attach(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + use<>, DockerError>
    {
        let AttachContainerResults { output, .. } = self
            .docker
            .attach_container(
                id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    logs: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(call(format!("attach to container {id}")))?;
        Ok(output)
    }

    /// Attaches to a container's stdin, stdout and stderr (before it starts); gives the output
    /// stream and the stdin writer. Shutting the writer down closes the container's stdin.
    pub(crate) async fn attach_with_stdin(
        &self,
        id: &str,
    ) -> Result<
        (
            impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + use<>,
            std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
        ),
        DockerError,
    > {
        let AttachContainerResults { output, input } = self
            .docker
            .attach_container(
                id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    logs: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(call(format!("attach to container {id}")))?;
        Ok((output, input))
    }

    /// Starts a container.
    pub(crate) async fn start(&self, id: &str, name: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(call(format!("start container {name}")))
    }

    /// Waits for a container to exit; returns its exit code.
    pub(crate) async fn wait(&self, id: &str) -> Result<i64, DockerError> {
        let mut stream = self.docker.wait_container(id, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit as an error value carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(call(format!("wait for container {id}"))(e)),
            None => Ok(0),
        }
    }

    /// A running container's IPv4 address on each of its networks, by network name.
    pub(crate) async fn network_addresses(
        &self,
        id: &str,
    ) -> Result<HashMap<String, String>, DockerError> {
        let inspected = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(call(format!("inspect container {id}")))?;
        Ok(inspected
            .network_settings
            .and_then(|settings| settings.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, endpoint)| {
                endpoint
                    .ip_address
                    .filter(|ip| !ip.is_empty())
                    .map(|ip| (name, ip))
            })
            .collect())
    }

    /// Whether the kernel killed a container for exceeding its memory limit.
    pub(crate) async fn oom_killed(&self, id: &str) -> Result<bool, DockerError> {
        // Not through bollard: see `RawClient::list_containers`.
        Ok(self.raw.oom_killed(id).await?)
    }

    /// Sends `signal` (e.g. `SIGINT`) to a container's PID 1. `Ok(false)`: there is no such
    /// container, or it is not running, so nobody got it.
    pub(crate) async fn signal(&self, container: &str, signal: &str) -> Result<bool, DockerError> {
        match self
            .docker
            .kill_container(
                container,
                Some(KillContainerOptions {
                    signal: signal.to_string(),
                }),
            )
            .await
        {
            Ok(()) => Ok(true),
            // 404: no such container. 409: created but not running (or already gone).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(false),
            Err(e) => Err(call(format!("send {signal} to container {container}"))(e)),
        }
    }

    /// Every container, volume and network carrying our `managed` label.
    pub(crate) async fn managed(&self) -> Result<Managed, DockerError> {
        self.labelled(&format!("{}=true", labels::MANAGED)).await
    }

    /// The containers, volumes and networks that match a label filter, with their labels. Every
    /// run sweeps first, so the three lists are asked for at once.
    pub(crate) async fn labelled(&self, filter: &str) -> Result<Managed, DockerError> {
        let filters = HashMap::from([("label".to_string(), vec![filter.to_string()])]);
        // Not through bollard: see `RawClient::list_containers`.
        let containers = async { Ok::<_, DockerError>(self.raw.containers(filter).await?) };
        let volumes = async {
            let listed = self
                .docker
                .list_volumes(Some(ListVolumesOptions {
                    filters: Some(filters.clone()),
                }))
                .await
                .map_err(call("list volumes"))?;
            Ok(listed
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| Labelled {
                    id: v.name,
                    labels: v.labels,
                })
                .collect::<Vec<_>>())
        };
        let networks = async {
            let listed = self
                .docker
                .list_networks(Some(ListNetworksOptions {
                    filters: Some(filters.clone()),
                }))
                .await
                .map_err(call("list networks"))?;
            Ok(listed
                .into_iter()
                .filter_map(|n| {
                    Some(Labelled {
                        id: n.id?,
                        labels: n.labels.unwrap_or_default(),
                    })
                })
                .collect::<Vec<_>>())
        };
        let (containers, volumes, networks) = futures::try_join!(containers, volumes, networks)?;
        Ok(Managed {
            containers,
            volumes,
            networks,
        })
    }

    /// Our images (label `managed`), newest first.
    pub(crate) async fn managed_images(&self) -> Result<Vec<ManagedImage>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}=true", labels::MANAGED)],
        )]);
        let mut images: Vec<ManagedImage> = self
            .docker
            .list_images(Some(ListImagesOptions {
                all: false,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(call("list images"))?
            .into_iter()
            .map(|i| ManagedImage {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .map(|t| self.engine.local_reference(t))
                    .collect(),
                labels: i.labels,
                size: i.size,
                created: i.created,
            })
            .collect();
        images.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(images)
    }

    /// Ids of the images any container (running or not) was created from.
    pub(crate) async fn images_in_use(
        &self,
    ) -> Result<std::collections::HashSet<String>, DockerError> {
        // Not through bollard: see `RawClient::list_containers`.
        Ok(self.raw.container_images().await?)
    }

    /// Removes every container, volume and network labelled with `run_id`: containers first
    /// (force, so running ones are killed), then what they used. Passes repeat until nothing
    /// of the run is listed, for at most [`REMOVAL_WITHIN`]: Podman keeps listing a container
    /// it is removing, and the volumes it holds, after answering "being removed". Returns only
    /// once nothing is listed; else the error says what is left (or the last engine error).
    pub(crate) async fn remove_run(&self, run_id: &str) -> Result<Removed, DockerError> {
        let deadline = tokio::time::Instant::now() + REMOVAL_WITHIN;
        let mut removed = Removed::default();
        loop {
            let pass = self.remove_run_once(run_id).await;
            if let Ok(pass) = &pass {
                removed.containers += pass.containers;
                removed.volumes += pass.volumes;
                removed.networks += pass.networks;
            }
            let left = self.labelled(&labels::run_filter(run_id)).await;
            if let Ok(left) = &left
                && left.is_empty()
            {
                return Ok(removed);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match (pass, left) {
                    (Err(e), _) | (_, Err(e)) => e,
                    (Ok(_), Ok(left)) => DockerError::Left {
                        run_id: run_id.to_string(),
                        left: left.describe(),
                    },
                });
            }
            tokio::time::sleep(REMOVAL_RETRY).await;
        }
    }

    /// One pass of [`DockerClient::remove_run`] over what is labelled with `run_id` now.
    async fn remove_run_once(&self, run_id: &str) -> Result<Removed, DockerError> {
        let found = self.labelled(&labels::run_filter(run_id)).await?;
        let ids = |list: Vec<Labelled>| list.into_iter().map(|l| l.id).collect::<Vec<_>>();
        let (containers, volumes, networks) = (
            ids(found.containers),
            ids(found.volumes),
            ids(found.networks),
        );
        let mut removed = Removed::default();
        // Killed first: a forced removal is a kill on Docker, but Podman stops the container
        // (SIGTERM, then the stop timeout) before it removes it. Not running: nothing to do.
        futures::future::join_all(containers.iter().map(|id| self.signal(id, "SIGKILL"))).await;
        let results = futures::future::join_all(containers.iter().map(|id| {
            self.docker.remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
        }))
        .await;
        for (id, result) in containers.iter().zip(results) {
            match result {
                Ok(()) => removed.containers += 1,
                Err(e) if is_not_found(&e) || is_being_removed(&e) => {}
                Err(e) => return Err(call(format!("remove container {id}"))(e)),
            }
        }
        // Volumes and networks are free once the containers are gone: all of them at once.
        let volume_results = futures::future::join_all(volumes.iter().map(|name| {
            self.docker
                .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
        }));
        let network_results =
            futures::future::join_all(networks.iter().map(|id| self.docker.remove_network(id)));
        let (volume_results, network_results) =
            futures::future::join(volume_results, network_results).await;
        for (name, result) in volumes.iter().zip(volume_results) {
            match result {
                Ok(()) => removed.volumes += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(call(format!("remove volume {name}"))(e)),
            }
        }
        for (id, result) in networks.iter().zip(network_results) {
            match result {
                Ok(()) => removed.networks += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(call(format!("remove network {id}"))(e)),
            }
        }
        Ok(removed)
    }

    /// The id and labels of a local image, or `None` if there is none by that reference.
    pub(crate) async fn image_labels(
        &self,
        reference: &str,
    ) -> Result<Option<(String, HashMap<String, String>)>, DockerError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(Some((
                image.id.unwrap_or_default(),
                image.config.and_then(|c| c.labels).unwrap_or_default(),
            ))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(call(format!("inspect image {reference}"))(e)),
        }
    }

    /// A local image's variables (its config's `Env`, each split at its first `=`) and working
    /// directory (`None` when unset), or `None` if there is no image by that reference.
    pub(crate) async fn image_env_and_workdir(
        &self,
        reference: &str,
    ) -> Result<Option<ImageEnv>, DockerError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => {
                let config = image.config.unwrap_or_default();
                let env = config
                    .env
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect();
                let workdir = config.working_dir.filter(|w| !w.is_empty());
                Ok(Some(ImageEnv { env, workdir }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(call(format!("inspect image {reference}"))(e)),
        }
    }

    /// Gives the local image `source` the reference `target` (`repo:tag`).
    pub(crate) async fn tag_image(&self, source: &str, target: &str) -> Result<(), DockerError> {
        let (repo, tag) = split_reference(target);
        self.docker
            .tag_image(
                source,
                Some(bollard::query_parameters::TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: Some(tag.to_string()),
                }),
            )
            .await
            .map_err(call(format!("tag image {source} as {target}")))
    }

    /// Pushes `reference` (`registry/repo:tag`) to its registry, anonymously. Progress lines go
    /// to `on_line`.
    pub(crate) async fn push_image(
        &self,
        reference: &str,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), DockerError> {
        let (repo, tag) = split_reference(reference);
        let mut stream = self.docker.push_image(
            repo,
            Some(bollard::query_parameters::PushImageOptions {
                tag: Some(tag.to_string()),
                ..Default::default()
            }),
            None,
        );
        drain_registry_stream(
            &mut stream,
            &format!("push {reference}"),
            |info| (info.error_detail.and_then(|d| d.message), info.status),
            &mut on_line,
        )
        .await
    }

    /// Pulls `reference` from its registry, anonymously. Progress lines go to `on_line`.
    pub(crate) async fn pull_image(
        &self,
        reference: &str,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), DockerError> {
        let (repo, tag) = split_reference(reference);
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(repo.to_string()),
                tag: Some(tag.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        drain_registry_stream(
            &mut stream,
            &format!("pull {reference}"),
            |info| (info.error_detail.and_then(|d| d.message), info.status),
            &mut on_line,
        )
        .await
    }

    /// Reads one file out of an image without running it: creates a container that never
    /// starts (labelled like a run's, so the run's cleanup and `gc` find it), copies the file
    /// out through the archive endpoint, and removes the container.
    pub(crate) async fn read_image_file(
        &self,
        image: &str,
        path: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, DockerError> {
        let created = self
            .docker
            .create_container(
                None::<CreateContainerOptions>,
                ContainerCreateBody {
                    image: Some(image.to_string()),
                    labels: Some(labels.clone().into_iter().collect()),
                    network_disabled: Some(true),
                    host_config: Some(HostConfig {
                        network_mode: Some("none".to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(call(format!(
                "create a container of {image} to read {path}"
            )))?;
        let mut archive = Vec::new();
        let mut stream = self.docker.download_from_container(
            &created.id,
            Some(bollard::query_parameters::DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => archive.extend_from_slice(&bytes),
                Err(e) => {
                    failure = Some(call(format!("read {path} from image {image}"))(e));
                    break;
                }
            }
        }
        drop(stream);
        let removed = self
            .docker
            .remove_container(
                &created.id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
        if let Some(error) = failure {
            return Err(error);
        }
        removed.map_err(call(format!("remove container {}", created.id)))?;
        first_file(&archive, image, path)
    }
}

/// The `ulimits` of a container (soft = hard); `None` leaves the engine's own.
fn ulimits(limits: &[(String, i64)]) -> Option<Vec<ResourcesUlimits>> {
    (!limits.is_empty()).then(|| {
        limits
            .iter()
            .map(|(name, value)| ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(*value),
                hard: Some(*value),
            })
            .collect()
    })
}

/// A planned mount as the engine takes it; the empty tmpfs is 4 KiB and read-only to all.
/// The container's own side: its image, user, environment, command, labels and stdio.
fn container_body(
    plan: &ContainerPlan,
    image: &str,
    host_config: HostConfig,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        user: Some(plan.user.clone()),
        env: Some(plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        cmd: (!plan.cmd.is_empty()).then(|| plan.cmd.clone()),
        labels: Some(plan.labels.clone().into_iter().collect()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        // A container fed on stdin (a continued runtime gets its checkpoint there) sees EOF
        // when we close our end: StdinOnce.
        attach_stdin: Some(plan.stdin.is_some()),
        open_stdin: Some(plan.stdin.is_some()),
        stdin_once: Some(plan.stdin.is_some()),
        stop_timeout: Some(5),
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn mount(m: &MountPlan) -> Mount {
    let (typ, source, tmpfs_options) = match &m.source {
        MountSource::Volume { name } => (MountType::VOLUME, Some(name.clone()), None),
        MountSource::Bind { host } => (MountType::BIND, Some(host.clone()), None),
        MountSource::EmptyTmpfs => (
            MountType::TMPFS,
            None,
            Some(MountTmpfsOptions {
                size_bytes: Some(4096),
                mode: Some(0o555),
                ..Default::default()
            }),
        ),
    };
    Mount {
        target: Some(m.target.clone()),
        source,
        typ: Some(typ),
        read_only: Some(m.read_only),
        tmpfs_options,
        ..Default::default()
    }
}

/// The contents of the first regular file of the tar `archive`: what the archive endpoint
/// returned for `path` of `image`.
fn first_file(archive: &[u8], image: &str, path: &str) -> Result<Vec<u8>, DockerError> {
    let unreadable = |message: String| DockerError::Archive {
        image: image.to_string(),
        path: path.to_string(),
        message,
    };
    let mut tar = tar::Archive::new(archive);
    let entries = tar.entries().map_err(|e| unreadable(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unreadable(e.to_string()))?;
        if entry.header().entry_type().is_file() {
            let mut contents = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut contents)
                .map_err(|e| unreadable(e.to_string()))?;
            return Ok(contents);
        }
    }
    Err(unreadable("the archive holds no file".to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::test_support::http::{Recorded, Response, TestServer};

    #[test]
    fn what_a_run_left_is_named_by_kind_with_short_container_ids_and_whole_volume_names() {
        let labelled = |id: &str| Labelled {
            id: id.to_string(),
            labels: HashMap::new(),
        };
        let left = Managed {
            containers: vec![labelled(&"a".repeat(64))],
            volumes: vec![labelled("psbx-r1-0-perstack-base")],
            networks: vec![],
        };
        assert!(!left.is_empty());
        assert!(Managed::default().is_empty());
        assert_eq!(
            left.describe(),
            "container aaaaaaaaaaaa, volume psbx-r1-0-perstack-base"
        );
        let error = DockerError::Left {
            run_id: "r1".into(),
            left: left.describe(),
        };
        assert!(
            error
                .to_string()
                .contains("volume psbx-r1-0-perstack-base of run r1 after 30 s"),
            "{error}"
        );
    }

    #[test]
    fn a_file_read_out_of_an_image_is_the_archives_first_regular_file() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_cksum();
        builder
            .append_data(&mut dir, "etc/", std::io::empty())
            .expect("dir");
        let mut file = tar::Header::new_gnu();
        file.set_size(4);
        file.set_cksum();
        builder
            .append_data(&mut file, "etc/spec.json", &b"{}\n\n"[..])
            .expect("file");
        let archive = builder.into_inner().expect("tar");
        assert_eq!(
            first_file(&archive, "img", "/etc/spec.json").expect("read"),
            b"{}\n\n"
        );

        let empty = tar::Builder::new(Vec::new()).into_inner().expect("tar");
        let error = first_file(&empty, "img", "/etc/spec.json").expect_err("no file");
        assert_eq!(
            error.to_string(),
            DockerError::Archive {
                image: "img".into(),
                path: "/etc/spec.json".into(),
                message: "the archive holds no file".into(),
            }
            .to_string()
        );
    }

    /// A fake engine whose builds all succeed and whose first `lost` reads of an image fail as
    /// rootful Podman's read did after another client had removed the image a build had just
    /// made; it counts the builds asked for.
    fn engine_losing_images(lost: usize) -> (TestServer, Arc<AtomicUsize>) {
        let (reads, builds) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counted = builds.clone();
        let server = TestServer::start(move |request: Recorded| {
            let (reads, builds) = (reads.clone(), counted.clone());
            async move {
                let path = request.path.as_str();
                if path.ends_with("/version") {
                    Response::json(
                        200,
                        &serde_json::json!({"ApiVersion": "1.41", "Version": "4.3.1",
                            "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]}),
                    )
                } else if path.ends_with("/info") {
                    Response::json(200, &serde_json::json!({}))
                } else if path.ends_with("/build") {
                    builds.fetch_add(1, Ordering::SeqCst);
                    Response::text(200, "{\"stream\":\"Successfully tagged x\\n\"}\n")
                } else if path.contains("/images/") && reads.fetch_add(1, Ordering::SeqCst) < lost {
                    Response::json(
                        500,
                        &serde_json::json!({"message": "failed to convert ImageData to \
                            ImageInspect 'perstack-sandbox/x:1': reading image \"d08a\": \
                            locating image with ID \"d08a\": image not known"}),
                    )
                } else if path.contains("/images/") {
                    Response::json(200, &serde_json::json!({"Id": "sha256:d08a"}))
                } else {
                    Response::text(404, "not faked")
                }
            }
        });
        (server, builds)
    }

    fn build_options() -> BuildImageOptions {
        BuildImageOptions {
            t: Some("perstack-sandbox/x:1".to_string()),
            ..Default::default()
        }
    }

    /// Seen on rootful Podman in CI: the build said it was done, and the read of its image
    /// failed, another client having removed it in between. The build is run again.
    #[tokio::test]
    async fn an_image_gone_before_it_is_read_back_is_built_again() {
        let (server, builds) = engine_losing_images(1);
        let address = Address::Tcp(server.url().trim_start_matches("http://").to_string());
        let client = DockerClient::connect_at(address).await.expect("connect");
        let mut lines = Vec::new();
        client
            .build_context(build_options(), Vec::new(), |l| lines.push(l.to_string()))
            .await
            .expect("built the second time");
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        assert!(
            lines.iter().any(|l| l.contains("image not known")
                && l.contains("removed by another client before it was read back")
                && l.contains("attempt 2 of 3")),
            "{lines:?}"
        );
    }

    /// An image that is never there to read back ends the build after `BUILD_ATTEMPTS`, with
    /// the engine's words.
    #[tokio::test]
    async fn an_image_never_read_back_fails_the_build_after_every_attempt() {
        let (server, builds) = engine_losing_images(usize::MAX);
        let address = Address::Tcp(server.url().trim_start_matches("http://").to_string());
        let client = DockerClient::connect_at(address).await.expect("connect");
        let error = client
            .build_context(build_options(), Vec::new(), |_| {})
            .await
            .expect_err("never read back");
        assert_eq!(builds.load(Ordering::SeqCst), BUILD_ATTEMPTS as usize);
        let said = error.to_string();
        assert!(
            said.contains(
                "building image perstack-sandbox/x:1 failed: the build was done but its \
                           image cannot be read"
            ) && said.contains("image not known"),
            "{said}"
        );
    }
}
