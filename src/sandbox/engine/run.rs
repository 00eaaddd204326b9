//! Applying a [`RunPlan`]: images, volumes, skill containers, then the runtime container, whose
//! stdout is relayed line by line as it arrives.
//!
//! This function never cleans up: the caller removes everything labelled with the run id
//! afterwards, whatever happened here (success, error, Ctrl-C dropping this future midway), so
//! there is exactly one cleanup path.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::docker::{DockerClient, DockerError};
use super::relay::{Line, LineSplitter, classify};
use crate::event::{BuildStage, ContainerStatus, Event, EventBody, RunPayload, RuntimePayload};
use crate::render::Output;
use crate::sandbox::egress::PROXY_ALIAS;
use crate::sandbox::images::user_recipe::UserRecipe;
use crate::sandbox::images::{ImageRole, ImageSpec};
use crate::sandbox::plan::{ContainerPlan, NetworkPlan, PrebuiltImage, ProxyPlan, RunPlan};
use crate::sandbox::preflight::MISSING_BASE_IMAGE_HINT;
use crate::sandbox::versioned::VersionedError;

/// How many lines of runtime stderr to keep for error messages.
const STDERR_TAIL: usize = 40;

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The engine failed us.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// A configured base image is not on this machine (and there is no registry to pull from).
    #[error(
        "{service}: base image `{image}` is not available locally\n  hint: {hint}, or change {setting} in perstack.toml (or override it with --workspace-image, --node-image, --python-image or --skill-image)",
        hint = MISSING_BASE_IMAGE_HINT
    )]
    BaseImageMissing {
        /// The service needing it.
        service: String,
        /// The image.
        image: String,
        /// Which setting chooses it.
        setting: String,
    },
    /// A mount point inside the workspace could not be made.
    #[error(
        "cannot create {} (base-skill's view of the run data is mounted there): {source}\n  hint: make sure the workspace is writable and `perstack` in it is a folder",
        path.display()
    )]
    MountPoint {
        /// The host folder.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A missing protected path's placeholder could not be made.
    #[error(transparent)]
    Placeholder(#[from] super::placeholders::PlaceholderError),
    /// The egress proxy's configuration could not be written.
    #[error("cannot write the egress proxy's configuration: {0}")]
    ProxyConfig(String),
    /// A versioned image is missing something or is not the one it should be.
    #[error(transparent)]
    Versioned(#[from] VersionedError),
    /// The Kubernetes backend failed (`--backend kubernetes`).
    #[cfg(feature = "kubernetes")]
    #[error(transparent)]
    Kubernetes(#[from] crate::sandbox::k8s::client::KubeError),
    /// The whole run took longer than allowed.
    #[error(
        "the run did not finish within {0:?}; it was stopped (the job keeps its last checkpoint: continue with --continue, or allow more with --timeout)"
    )]
    TimedOut(Duration),
}

/// How the coordinator's run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunEnd {
    /// `completeRun`.
    Completed,
    /// `stopRunByError`, with its message.
    StoppedByError(String),
    /// `stopRunByExceededMaxSteps`.
    StoppedByMaxSteps,
    /// `stopRunByInteractiveTool`.
    WaitingForInteractiveTool,
    /// The runtime exited without a terminal event.
    RuntimeFailed {
        /// Its exit code.
        code: i64,
        /// The end of its stderr.
        stderr: String,
        /// The kernel killed it for exceeding its memory limit.
        oom_killed: bool,
    },
}

/// How the run ends when `event` is a terminal event of the coordinator `expert_key` (a
/// delegate's end is not the run's).
pub(crate) fn run_end(event: &Event, expert_key: &str) -> Option<RunEnd> {
    let EventBody::Run {
        expert_key: key,
        payload,
        ..
    } = &event.body
    else {
        return None;
    };
    if key != expert_key {
        return None;
    }
    match payload {
        RunPayload::CompleteRun { .. } => Some(RunEnd::Completed),
        RunPayload::StopRunByError { error, .. } => {
            Some(RunEnd::StoppedByError(error.message.clone()))
        }
        RunPayload::StopRunByExceededMaxSteps { .. } => Some(RunEnd::StoppedByMaxSteps),
        RunPayload::StopRunByInteractiveTool { .. } => Some(RunEnd::WaitingForInteractiveTool),
        _ => None,
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub(crate) struct RunReport {
    /// How it ended.
    pub end: RunEnd,
}

/// Ids and names of the run, for the events the controller emits itself.
#[derive(Debug, Clone)]
pub(crate) struct RunIds {
    /// The job.
    pub job_id: String,
    /// The run.
    pub run_id: String,
    /// The coordinator Expert.
    pub expert_key: String,
}

impl RunIds {
    fn event(&self, payload: RuntimePayload) -> Event {
        Event::runtime(&self.job_id, &self.run_id, payload)
    }
}

/// Sees each event line the runtime writes, as it is relayed (the job store records them).
pub(crate) type EventTap<'a> = &'a (dyn Fn(&str, &Event) + Sync);

/// The whole run's time limit (`--timeout`), counted from when the run was invoked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeLimit {
    /// When `run` was invoked.
    pub started: std::time::Instant,
    /// How long it may take from then.
    pub limit: Duration,
}

impl TimeLimit {
    /// Runs `work` until the limit strikes; then [`RunError::TimedOut`] with the limit set.
    pub(crate) async fn bound<T>(
        self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, RunError> {
        let deadline = tokio::time::Instant::from_std(self.started + self.limit);
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| RunError::TimedOut(self.limit))
    }
}

/// Carries out `plan`. `limit` bounds the whole of it: finding or building the images,
/// starting the containers and the run itself, to the runtime's exit. Every event line
/// relayed from the runtime also goes to `tap`.
pub(crate) async fn execute(
    docker: &DockerClient,
    plan: &RunPlan,
    ids: &RunIds,
    output: &Output,
    verbose: bool,
    limit: TimeLimit,
    tap: EventTap<'_>,
) -> Result<RunReport, RunError> {
    limit
        .bound(apply(docker, plan, ids, output, verbose, tap))
        .await?
}

async fn apply(
    docker: &DockerClient,
    plan: &RunPlan,
    ids: &RunIds,
    output: &Output,
    verbose: bool,
    tap: EventTap<'_>,
) -> Result<RunReport, RunError> {
    report_weaker_isolation(docker, ids, output);
    let tags = match &plan.prebuilt {
        Some(prebuilt) => {
            use_prebuilt(docker, &plan.images, prebuilt, ids, output, verbose).await?
        }
        None => ensure_images(docker, &plan.images, ids, output, verbose).await?,
    };
    futures::future::try_join_all(plan.volumes.iter().map(|v| docker.create_volume(v))).await?;
    // After the volumes, whose labels name them for `gc` should the controller die from here.
    super::placeholders::create(&plan.placeholders)?;
    let egress = start_egress(docker, plan, &tags, ids, output).await?;
    let Started {
        skill_tasks,
        runtime: (id, stream, stdin),
    } = start_containers(docker, plan, &tags, &egress, ids, output).await?;
    // The checkpoint goes in while the output is relayed, so neither side waits on the other.
    let feeding = match (stdin, &plan.runtime.stdin) {
        (Some(input), Some(bytes)) => Some(tokio::spawn(feed_stdin(input, bytes.clone()))),
        _ => None,
    };

    let relay = relay_runtime(stream, ids, output, verbose, tap);
    let (end_event, stderr_tail) = relay.await;
    let code = docker.wait(&id).await?;
    output.event(ids.event(runtime_exited(&plan.runtime, code)));
    // A run that failed may have failed for a skill: its last stderr lines, which say why, may
    // still be on their way.
    let failed = end_event.is_none() || code != 0;
    wind_down(skill_tasks, egress.task, feeding, failed).await;
    let end = match end_event {
        Some(end) => end,
        None => RunEnd::RuntimeFailed {
            code,
            stderr: stderr_tail.into_iter().collect::<Vec<_>>().join("\n"),
            oom_killed: docker.oom_killed(&id).await.unwrap_or(false),
        },
    };
    Ok(RunReport { end })
}

/// Only a run given --allow-weaker-isolation gets this far on such an engine
/// (`commands/run/engine.rs`); its first event says what it runs without.
fn report_weaker_isolation(docker: &DockerClient, ids: &RunIds, output: &Output) {
    if let Some(weaker) = docker.engine().weaker_isolation() {
        output.event(ids.event(RuntimePayload::IsolationReport {
            engine: weaker.engine.clone(),
            missing: weaker.missing.iter().map(ToString::to_string).collect(),
            reason: weaker.summary(),
        }));
    }
}

/// The run's containers, started.
struct Started {
    /// The tasks relaying each skill's stderr.
    skill_tasks: Vec<JoinHandle<()>>,
    /// The runtime's container id, output and input.
    runtime: (String, RuntimeOutput, Option<RuntimeInput>),
}

/// Every skill container and the runtime, started at once: the runtime connects to the skill
/// sockets as they appear (it waits for them), so nothing here waits for another container.
/// Each skill's stderr becomes skillStderr events.
async fn start_containers(
    docker: &DockerClient,
    plan: &RunPlan,
    tags: &[String],
    egress: &Egress,
    ids: &RunIds,
    output: &Output,
) -> Result<Started, RunError> {
    let skills = futures::future::try_join_all(plan.skills.iter().map(|skill| {
        let hosts = egress.hosts(skill);
        async move { start_skill(docker, skill, &tags[skill.image], &hosts, ids, output).await }
    }));
    let runtime = &plan.runtime;
    let (skill_tasks, runtime) = futures::future::try_join(
        skills,
        start_runtime(
            docker,
            runtime,
            &tags[runtime.image],
            &egress.hosts(runtime),
            ids,
            output,
        ),
    )
    .await?;
    Ok(Started {
        skill_tasks,
        runtime,
    })
}

/// The runtime container's status once it exited with `code`.
fn runtime_exited(runtime: &ContainerPlan, code: i64) -> RuntimePayload {
    RuntimePayload::DockerContainerStatus {
        status: if code == 0 {
            ContainerStatus::Stopped
        } else {
            ContainerStatus::Error
        },
        service: runtime.service.clone(),
        message: Some(format!("Runtime container exited with code {code}")),
    }
}

/// The egress proxy of a run, once it listens.
#[derive(Default)]
struct Egress {
    /// The task relaying its access records.
    task: Option<JoinHandle<()>>,
    /// Its address on each internal network, by network name.
    addresses: std::collections::HashMap<String, String>,
}

impl Egress {
    /// `/etc/hosts` entries for a container: the proxy's name and its address on the
    /// container's internal network. The containers of a run resolve names from `/etc/hosts`
    /// alone (`images/nsswitch.conf`), so this is how they find the proxy.
    fn hosts(&self, container: &ContainerPlan) -> Vec<(String, String)> {
        match &container.network {
            NetworkPlan::Internal(network) => self
                .addresses
                .get(network)
                .map(|address| vec![(PROXY_ALIAS.to_string(), address.clone())])
                .unwrap_or_default(),
            NetworkPlan::None | NetworkPlan::Bridge => vec![],
        }
    }
}

/// The run's internal networks, then the egress proxy on them: it must be listening before
/// anything that talks through it starts.
async fn start_egress(
    docker: &DockerClient,
    plan: &RunPlan,
    tags: &[String],
    ids: &RunIds,
    output: &Output,
) -> Result<Egress, RunError> {
    let subnets: std::collections::HashMap<String, String> =
        futures::future::try_join_all(plan.networks.iter().map(|network| async move {
            let subnet = docker.create_internal_network(network).await?;
            Ok::<_, DockerError>((network.name.clone(), subnet))
        }))
        .await?
        .into_iter()
        .collect();
    let Some(proxy) = &plan.proxy else {
        return Ok(Egress::default());
    };
    start_proxy(
        docker,
        proxy,
        &subnets,
        &tags[proxy.container.image],
        ids,
        output,
    )
    .await
}

/// How long the skills' stderr is still relayed after a failed run's runtime exited: the lines
/// saying why a skill failed were written before, but may still be on their way through the
/// engine's attach stream.
const SKILL_STDERR_GRACE: Duration = Duration::from_millis(300);

/// After the runtime's exit: stops relaying the skills' stderr (after [`SKILL_STDERR_GRACE`]
/// when the run failed), gives the proxy's last access
/// records a moment to arrive, and reports a checkpoint that could not be handed over.
async fn wind_down(
    skill_tasks: Vec<JoinHandle<()>>,
    proxy_task: Option<JoinHandle<()>>,
    feeding: Option<JoinHandle<std::io::Result<()>>>,
    failed: bool,
) {
    if failed {
        tokio::time::sleep(SKILL_STDERR_GRACE).await;
    }
    for task in skill_tasks {
        task.abort();
    }
    if let Some(mut task) = proxy_task {
        // Records of the last requests may still be on their way from the proxy container.
        if tokio::time::timeout(Duration::from_millis(200), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
    if let Some(Ok(Err(error))) = match feeding {
        Some(task) => Some(task.await),
        None => None,
    } {
        eprintln!("warning: could not hand the checkpoint to the runtime: {error}");
    }
}

/// Finds or builds every image, all at once; returns their tags in plan order. Whether each was
/// cached or built is reported in `dockerBuildProgress` events.
async fn ensure_images(
    docker: &DockerClient,
    images: &[ImageSpec],
    ids: &RunIds,
    output: &Output,
    verbose: bool,
) -> Result<Vec<String>, RunError> {
    futures::future::try_join_all(
        images
            .iter()
            .map(|spec| ensure_image(docker, spec, ids, output, verbose)),
    )
    .await
}

/// Finds or builds one image; returns its tag. A skill's own Dockerfile is built first, as the
/// base of its image.
async fn ensure_image(
    docker: &DockerClient,
    spec: &ImageSpec,
    ids: &RunIds,
    output: &Output,
    verbose: bool,
) -> Result<String, RunError> {
    let report = BuildReport {
        service: &spec.service,
        ids,
        output,
        verbose,
    };
    if let Some(recipe) = &spec.recipe {
        ensure_recipe(docker, recipe, &report).await?;
    }
    let tag = content_tag(docker, spec).await?;
    if docker.image_id(&tag).await?.is_some() {
        report.stage(BuildStage::Complete, format!("Using cached image {tag}"));
    } else {
        build_image(docker, spec, &tag, &report).await?;
    }
    Ok(tag)
}

/// Builds the skill's own Dockerfile unless its image is there already.
async fn ensure_recipe(
    docker: &DockerClient,
    recipe: &UserRecipe,
    report: &BuildReport<'_>,
) -> Result<(), RunError> {
    let tag = recipe.tag();
    if docker.image_id(&tag).await?.is_some() {
        return Ok(());
    }
    report.stage(
        BuildStage::Building,
        format!("Building the skill's Dockerfile as {tag}"),
    );
    let mut tail = BuildTail::default();
    let built = docker
        .build_recipe(recipe, |line| {
            report.builder_line(line);
            tail.keep(line);
        })
        .await;
    if let Err(error) = built {
        let error = explain_recipe_failure(error, &tail.0);
        report.stage(BuildStage::Error, error.to_string());
        return Err(error.into());
    }
    Ok(())
}

/// Builds `spec` as `tag`, saying how long it took.
async fn build_image(
    docker: &DockerClient,
    spec: &ImageSpec,
    tag: &str,
    report: &BuildReport<'_>,
) -> Result<(), RunError> {
    report.stage(BuildStage::Building, format!("Building image {tag}"));
    let started = Instant::now();
    let mut tail = BuildTail::default();
    let result = docker
        .create_image(spec, tag, |line| {
            report.builder_line(line);
            tail.keep(line);
        })
        .await;
    if let Err(mut error) = result {
        if !spec.install.is_empty() {
            explain_install_failure(&mut error, &tail.0);
        }
        report.stage(BuildStage::Error, error.to_string());
        return Err(error.into());
    }
    report.stage(
        BuildStage::Complete,
        format!(
            "Built image {tag} in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Where one image's `dockerBuildProgress` events go.
struct BuildReport<'a> {
    service: &'a str,
    ids: &'a RunIds,
    output: &'a Output,
    verbose: bool,
}

impl BuildReport<'_> {
    fn event(&self, stage: BuildStage, message: String, progress: Option<f64>) {
        self.output
            .event(self.ids.event(RuntimePayload::DockerBuildProgress {
                stage,
                service: self.service.to_string(),
                message,
                progress,
            }));
    }

    /// A stage of the build, in the controller's words.
    fn stage(&self, stage: BuildStage, message: String) {
        self.event(stage, message, None);
    }

    /// A line of the builder's output: its steps always (the human view's live line shows
    /// them), its other output with --verbose.
    fn builder_line(&self, line: &str) {
        let phase = crate::render::build_phase(line).map(|(_, done)| done);
        if self.verbose || phase.is_some() {
            self.event(BuildStage::Building, line.to_string(), phase);
        }
    }
}

/// The builder's last [`BUILD_TAIL`] lines, for the error when a build fails.
#[derive(Default)]
struct BuildTail(VecDeque<String>);

impl BuildTail {
    fn keep(&mut self, line: &str) {
        if self.0.len() == BUILD_TAIL {
            self.0.pop_front();
        }
        self.0.push_back(line.to_string());
    }
}

/// The content-addressed tag of `spec` on this engine (it covers the base image's id).
pub(crate) async fn content_tag(
    docker: &DockerClient,
    spec: &ImageSpec,
) -> Result<String, RunError> {
    let base_id = if spec.base == "scratch" {
        "scratch".to_string()
    } else {
        docker
            .image_id(&spec.base)
            .await?
            .ok_or_else(|| RunError::BaseImageMissing {
                service: spec.service.clone(),
                image: spec.base.clone(),
                setting: base_image_setting(spec),
            })?
    };
    Ok(spec.tag(&base_id))
}

/// The images of a versioned run: each is used when it is here with the id the runtime image
/// recorded, pulled when it is missing, and refused when it is another image.
async fn use_prebuilt(
    docker: &DockerClient,
    specs: &[ImageSpec],
    prebuilt: &[PrebuiltImage],
    ids: &RunIds,
    output: &Output,
    verbose: bool,
) -> Result<Vec<String>, RunError> {
    let mut tags = Vec::new();
    for (spec, image) in specs.iter().zip(prebuilt) {
        let progress = |stage, message: String| {
            output.event(ids.event(RuntimePayload::DockerBuildProgress {
                stage,
                service: spec.service.clone(),
                message,
                progress: None,
            }))
        };
        let id = match docker.image_id(&image.reference).await? {
            Some(id) => id,
            None => {
                progress(
                    BuildStage::Pulling,
                    format!("Pulling image {}", image.reference),
                );
                docker
                    .pull_image(&image.reference, |line| {
                        if verbose {
                            progress(BuildStage::Pulling, line.to_string());
                        }
                    })
                    .await?;
                docker.image_id(&image.reference).await?.unwrap_or_default()
            }
        };
        if id != image.id {
            return Err(VersionedError::WrongImage {
                reference: image.reference.clone(),
                found: id,
                expected: image.id.clone(),
            }
            .into());
        }
        progress(
            BuildStage::Complete,
            format!("Using image {}", image.reference),
        );
        tags.push(image.reference.clone());
    }
    Ok(tags)
}

/// How many lines of builder output a failed package install shows.
const BUILD_TAIL: usize = 15;

/// What installers (pip, uv, npm) print when they could not reach or use the package index,
/// lowercased: a package the index lacks reads the same as an index out of reach.
const INDEX_TROUBLE: [&str; 16] = [
    "could not find a version",
    "no matching distribution",
    "connection",
    "ssl",
    "certificate",
    "timed out",
    "timeout",
    "name resolution",
    "name or service not known",
    "enotfound",
    "eai_again",
    "econnre",
    "etimedout",
    "proxy",
    "failed to fetch",
    "error sending request",
];

/// A failed package install says what the installer said and, when that was about the package
/// index, what the build needed; else that the installer's own lines say why.
fn explain_install_failure(error: &mut DockerError, tail: &VecDeque<String>) {
    if let DockerError::Build { message, .. } = error {
        // The builder quotes the whole install script; its exit code is what matters.
        if let Some(at) = message.rfind("' returned a non-zero code") {
            *message = format!("the package install{}", &message[at + 1..]);
        }
        let lines = last_lines(tail);
        // The installer's own lines: after the step that runs it, whose line quotes the whole
        // script (proxy and CA variables included).
        let said = tail
            .iter()
            .rev()
            .take_while(|l| !starts_the_install(l))
            .map(|l| l.to_lowercase())
            .collect::<Vec<_>>();
        let hint = if said
            .iter()
            .any(|l| INDEX_TROUBLE.iter().any(|m| l.contains(m)))
        {
            "the build needs the package index (PyPI or npm) from the engine's default bridge network; behind a proxy, export HTTP_PROXY/HTTPS_PROXY for the controller (they are passed as build args), and a TLS-intercepting proxy's CA must be in the bundle at SSL_CERT_FILE (or /etc/ssl/certs/ca-certificates.crt), which the build trusts"
        } else {
            "the installer stopped for a reason of its own, in its lines above: often a Python or Node version, a system library or a compiler that the package or project asks for and the base image lacks (choose another base: [sandbox] pythonImage, nodeImage or [sandbox.skills.\"<name>\"] image), or a requirement that cannot be met"
        };
        message.push_str(&format!(
            "\n  the skill's packages are installed while its image is built; the builder's last lines:\n    {lines}\n  hint: {hint}"
        ));
    }
}

/// Whether a builder line starts the install step's own output: Docker's classic builder
/// prints `---> Running in <id>` after its `Step n/m : RUN …` line; Podman's (buildah) has no
/// such line, and its `[1/2] STEP n/m: RUN …` is followed by the installer's output at once.
fn starts_the_install(line: &str) -> bool {
    line.contains("---> Running in") || (line.contains("STEP ") && line.contains(": RUN "))
}

/// The builder's last non-blank lines, without styling, one per indented line.
fn last_lines(tail: &VecDeque<String>) -> String {
    tail.iter()
        .map(|l| strip_ansi(l))
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// A failed build of a skill's own Dockerfile says what the builder said last, and what the
/// usual causes are.
fn explain_recipe_failure(mut error: DockerError, tail: &VecDeque<String>) -> DockerError {
    if let DockerError::Build { message, .. } = &mut error {
        message.push_str(&format!(
            "\n  the skill's image starts from its own Dockerfile ([sandbox.skills] dockerfile), built with its folder as the context; the builder's last lines:\n    {}\n  hint: its FROM must name an image this engine has (nothing is pulled: `docker images`), and what it COPYs must be in the Dockerfile's folder",
            last_lines(tail)
        ));
    }
    error
}

/// The builder colours what a RUN writes to stderr; error messages want plain text.
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn base_image_setting(spec: &ImageSpec) -> String {
    match spec.role {
        ImageRole::BaseSkill => "[sandbox] workspaceImage".to_string(),
        _ => format!(
            "[sandbox] nodeImage/pythonImage/skillImage or [sandbox.skills.\"{}\"] image",
            spec.service.trim_start_matches("skill:")
        ),
    }
}

/// Creates, attaches to and starts the runtime container; returns its id, its output and, when
/// it is fed a checkpoint, its stdin.
async fn start_runtime(
    docker: &DockerClient,
    runtime: &ContainerPlan,
    image: &str,
    hosts: &[(String, String)],
    ids: &RunIds,
    output: &Output,
) -> Result<(String, RuntimeOutput, Option<RuntimeInput>), RunError> {
    output.event(ids.event(RuntimePayload::DockerContainerStatus {
        status: ContainerStatus::Starting,
        service: runtime.service.clone(),
        message: Some(format!("Creating {}", runtime.name)),
    }));
    let id = docker.create_container(runtime, image, hosts).await?;
    let (stream, stdin) = match &runtime.stdin {
        Some(_) => {
            let (stream, input) = docker.attach_with_stdin(&id).await?;
            (stream.boxed(), Some(input))
        }
        None => (docker.attach(&id).await?.boxed(), None),
    };
    docker.start(&id, &runtime.name).await?;
    output.event(ids.event(RuntimePayload::DockerContainerStatus {
        status: ContainerStatus::Running,
        service: runtime.service.clone(),
        message: Some("Runtime container started".to_string()),
    }));
    Ok((id, stream, stdin))
}

/// The runtime container's demultiplexed output.
type RuntimeOutput = futures::stream::BoxStream<'static, Result<LogOutput, bollard::errors::Error>>;
/// The runtime container's stdin.
type RuntimeInput = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// Creates, attaches to and starts one skill container; the returned task turns its output into
/// `skillStderr` events until the container ends.
async fn start_skill(
    docker: &DockerClient,
    plan: &ContainerPlan,
    image: &str,
    hosts: &[(String, String)],
    ids: &RunIds,
    output: &Output,
) -> Result<JoinHandle<()>, RunError> {
    output.event(ids.event(RuntimePayload::DockerContainerStatus {
        status: ContainerStatus::Starting,
        service: plan.service.clone(),
        message: Some(format!("Creating {}", plan.name)),
    }));
    for path in plan.host_mount_points() {
        std::fs::create_dir_all(&path).map_err(|source| RunError::MountPoint { path, source })?;
    }
    let id = docker.create_container(plan, image, hosts).await?;
    let mut stream = docker.attach(&id).await?;
    docker.start(&id, &plan.name).await?;
    output.event(ids.event(RuntimePayload::DockerContainerStatus {
        status: ContainerStatus::Running,
        service: plan.service.clone(),
        message: Some(format!("Skill container {} started", plan.name)),
    }));
    let skill_name = plan.skill.clone().unwrap_or_else(|| plan.service.clone());
    let ids = ids.clone();
    let output = output.clone();
    Ok(tokio::spawn(async move {
        let mut splitter = LineSplitter::default();
        while let Some(Ok(chunk)) = stream.next().await {
            let bytes = match &chunk {
                LogOutput::StdErr { message } | LogOutput::StdOut { message } => message,
                _ => continue,
            };
            for line in splitter.push(bytes) {
                if !line.trim().is_empty() {
                    output.event(ids.event(RuntimePayload::SkillStderr {
                        skill_name: skill_name.clone(),
                        message: line,
                    }));
                }
            }
        }
        if let Some(line) = splitter.finish() {
            output.event(ids.event(RuntimePayload::SkillStderr {
                skill_name: skill_name.clone(),
                message: line,
            }));
        }
    }))
}

/// Creates the egress proxy with its principals' subnets, connects it to each of their
/// networks (as `egress-proxy`), starts it, reads its address on each, and turns its access
/// records into `proxyAccess` events.
async fn start_proxy(
    docker: &DockerClient,
    proxy: &ProxyPlan,
    subnets: &std::collections::HashMap<String, String>,
    image: &str,
    ids: &RunIds,
    output: &Output,
) -> Result<Egress, RunError> {
    let mut principals = Vec::new();
    for principal in &proxy.principals {
        let subnet = subnets
            .get(&principal.network)
            .cloned()
            .and_then(|s| crate::proxy::Subnet::try_from(s).ok())
            .ok_or_else(|| DockerError::NoSubnet(principal.network.clone()))?;
        principals.push(crate::proxy::Principal {
            name: principal.name.clone(),
            identity: crate::proxy::Identity::Network(subnet),
            allow: crate::proxy::rules::Allowlist {
                rules: principal.allow.clone(),
            },
            trusted: principal.trusted.clone(),
        });
    }
    let config = serde_json::to_string(&crate::proxy::ProxyConfig { principals })
        .map_err(|e| RunError::ProxyConfig(e.to_string()))?;
    let mut plan = proxy.container.clone();
    plan.env
        .push((crate::contract::proxy::PROXY_CONFIG_VAR.to_string(), config));
    output.event(ids.event(RuntimePayload::DockerContainerStatus {
        status: ContainerStatus::Starting,
        service: plan.service.clone(),
        message: Some(format!("Creating {}", plan.name)),
    }));
    let id = docker.create_container(&plan, image, &[]).await?;
    for principal in &proxy.principals {
        docker
            .connect_network(&id, &principal.network, PROXY_ALIAS)
            .await?;
    }
    let stream = docker.attach(&id).await?;
    docker.start(&id, &plan.name).await?;
    // Addresses are given out when it starts.
    let addresses = docker.network_addresses(&id).await?;
    output.event(ids.event(RuntimePayload::DockerContainerStatus {
        status: ContainerStatus::Running,
        service: plan.service.clone(),
        message: Some(format!("Egress proxy {} started", plan.name)),
    }));
    Ok(Egress {
        task: Some(relay_access_records(stream, ids, output)),
        addresses,
    })
}

/// Turns the proxy's access records into `proxyAccess` events, and copies what else it says to
/// our stderr, until it ends.
fn relay_access_records(
    mut stream: impl futures::Stream<Item = Result<LogOutput, bollard::errors::Error>>
    + Unpin
    + Send
    + 'static,
    ids: &RunIds,
    output: &Output,
) -> JoinHandle<()> {
    let ids = ids.clone();
    let output = output.clone();
    tokio::spawn(async move {
        let mut out = LineSplitter::default();
        let mut err = LineSplitter::default();
        while let Some(Ok(chunk)) = stream.next().await {
            match &chunk {
                LogOutput::StdOut { message } => {
                    for line in out.push(message) {
                        match serde_json::from_str::<crate::proxy::Access>(&line) {
                            Ok(access) => output.event(ids.event(RuntimePayload::ProxyAccess {
                                action: access.action,
                                domain: access.domain,
                                port: access.port,
                                reason: access.reason,
                                client: Some(access.client),
                            })),
                            Err(_) => tracing::warn!(%line, "egress proxy wrote a non-record line"),
                        }
                    }
                }
                LogOutput::StdErr { message } => {
                    for line in err.push(message) {
                        eprintln!("egress-proxy: {line}");
                    }
                }
                _ => {}
            }
        }
    })
}

/// Writes `bytes` to a container's stdin, then closes it: the runtime reads to EOF.
async fn feed_stdin(
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    bytes: String,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    input.write_all(bytes.as_bytes()).await?;
    input.flush().await?;
    input.shutdown().await
}

/// Relays one line of the runtime's stdout (whatever carries it: a Docker attach, a pod's
/// log): an event goes to `tap` and `output` (and sets `end` when it ends the coordinator's
/// run), other JSON to `output`, anything else is reported and skipped.
pub(crate) fn relay_line(
    line: String,
    ids: &RunIds,
    output: &Output,
    tap: EventTap<'_>,
    end: &mut Option<RunEnd>,
) {
    match classify(line) {
        Line::Event(raw, event) => {
            if let Some(this_end) = run_end(&event, &ids.expert_key) {
                *end = Some(this_end);
            }
            tap(&raw, &event);
            output.relayed(raw, Some(*event));
        }
        Line::OtherJson(raw) => output.relayed(raw, None),
        Line::NotJson(raw, error) => {
            eprintln!(
                "warning: the runtime wrote a line that is not JSON ({error}); skipped: {}",
                raw.chars().take(200).collect::<String>()
            );
        }
        Line::Blank => {}
    }
}

/// Relays the runtime's stdout until it closes. Returns how the coordinator's run ended (if it
/// did) and the tail of the runtime's stderr. Stderr never enters the event stream: with
/// `--verbose` it is copied to our stderr.
async fn relay_runtime(
    mut stream: impl futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
    ids: &RunIds,
    output: &Output,
    verbose: bool,
    tap: EventTap<'_>,
) -> (Option<RunEnd>, VecDeque<String>) {
    let mut stdout = LineSplitter::default();
    let mut stderr = LineSplitter::default();
    let mut tail = VecDeque::new();
    let mut end = None;
    let handle = |line: String, end: &mut Option<RunEnd>| relay_line(line, ids, output, tap, end);
    let mut keep_stderr = |line: String| {
        if verbose {
            eprintln!("[runtime] {line}");
        }
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) => {
                for line in stdout.push(&message) {
                    handle(line, &mut end);
                }
            }
            Ok(LogOutput::StdErr { message }) => {
                for line in stderr.push(&message) {
                    keep_stderr(line);
                }
            }
            Ok(_) => {}
            Err(error) => {
                eprintln!("warning: lost the runtime's output stream: {error}");
                break;
            }
        }
    }
    if let Some(line) = stdout.finish() {
        handle(line, &mut end);
    }
    if let Some(line) = stderr.finish() {
        keep_stderr(line);
    }
    (end, tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Mode;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    fn ids() -> RunIds {
        RunIds {
            job_id: "j".into(),
            run_id: "r".into(),
            expert_key: "main".into(),
        }
    }

    fn out(text: &str) -> Result<LogOutput, bollard::errors::Error> {
        Ok(LogOutput::StdOut {
            message: Bytes::from(text.to_string()),
        })
    }

    fn err(text: &str) -> Result<LogOutput, bollard::errors::Error> {
        Ok(LogOutput::StdErr {
            message: Bytes::from(text.to_string()),
        })
    }

    #[tokio::test]
    async fn relay_splits_lines_skips_garbage_keeps_stderr_apart_and_finds_the_end() {
        let start = r#"{"type":"startGeneration","id":"e1","expertKey":"main","timestamp":1,"jobId":"j","runId":"r","stepNumber":1,"messages":[]}"#;
        let foreign = r#"{"note":"not an event, still JSON"}"#;
        let error = r#"{"type":"stopRunByError","id":"e2","expertKey":"main","timestamp":2,"jobId":"j","runId":"r","stepNumber":1,"checkpoint":{"id":"c","jobId":"j","runId":"r","status":"stoppedByError","stepNumber":1,"messages":[],"expert":{"key":"main","name":"main","version":"1.0.0"},"usage":{"inputTokens":0,"outputTokens":0,"reasoningTokens":0,"totalTokens":0,"cachedInputTokens":0}},"step":{"stepNumber":1,"newMessages":[],"usage":{"inputTokens":0,"outputTokens":0,"reasoningTokens":0,"totalTokens":0,"cachedInputTokens":0},"startedAt":1},"error":{"name":"AI_APICallError","message":"boom","isRetryable":false}}"#;
        let (half_a, half_b) = start.split_at(40);
        let stream = futures::stream::iter(vec![
            out(half_a),
            err("a panic message on stderr\n"),
            out(&format!("{half_b}\nthis is not json\n{foreign}\n")),
            out(&format!("{error}\n")),
            err("last words"),
        ]);
        let (writer, mut reader) = tokio::io::duplex(1 << 20);
        let (output, task) = Output::spawn(Mode::Json, writer);
        let (end, tail) = relay_runtime(stream, &ids(), &output, false, &|_, _| {}).await;
        drop(output);
        task.await.expect("writer");
        let mut written = String::new();
        reader.read_to_string(&mut written).await.expect("read");

        // Our events and other JSON pass through byte for byte, in order; the garbage line and
        // stderr do not enter the stream.
        assert_eq!(written, format!("{start}\n{foreign}\n{error}\n"));
        assert_eq!(end, Some(RunEnd::StoppedByError("boom".into())));
        assert_eq!(
            tail.into_iter().collect::<Vec<_>>(),
            ["a panic message on stderr", "last words"]
        );
    }

    #[test]
    fn a_failed_package_install_shows_the_installer_and_what_the_build_needs() {
        let mut error = DockerError::Build {
            tag: "perstack-sandbox/skill-time:0123".into(),
            message: "Docker stream error: The command '/bin/sh -c set -eu\nca=…\n perstack-install mcp-server-time' returned a non-zero code: 1".into(),
        };
        let tail = VecDeque::from([
            "Collecting mcp-server-time".to_string(),
            "\u{1b}[91mERROR: Could not find a version that satisfies the requirement".to_string(),
            "\u{1b}[0m".to_string(),
        ]);
        explain_install_failure(&mut error, &tail);
        let text = error.to_string();
        assert!(
            text.starts_with(
                "building image perstack-sandbox/skill-time:0123 failed: the package install returned a non-zero code: 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "\n    Collecting mcp-server-time\n    ERROR: Could not find a version that satisfies the requirement\n  hint:"
            ),
            "{text}"
        );
        assert!(text.contains("HTTPS_PROXY"), "{text}");
        assert!(text.contains("SSL_CERT_FILE"), "{text}");

        // A failure that has nothing to do with the index is not blamed on it.
        let mut error = DockerError::Build {
            tag: "perstack-sandbox/skill-uv:0123".into(),
            message: "x' returned a non-zero code: 2".into(),
        };
        let tail = VecDeque::from([
            "Step 6/15 : RUN [\"/bin/sh\",\"-c\",\"… SSL_CERT_FILE=\\\"$ca\\\" …\"]".to_string(),
            " ---> Running in 9cca528eeb77".to_string(),
            "error: No interpreter found for Python >=3.99 in managed installations or search path"
                .to_string(),
        ]);
        explain_install_failure(&mut error, &tail);
        let text = error.to_string();
        assert!(text.contains("No interpreter found"), "{text}");
        assert!(!text.contains("HTTPS_PROXY"), "{text}");
        assert!(
            text.contains("hint: the installer stopped for a reason of its own"),
            "{text}"
        );

        // Podman's builder (buildah) quotes the script on its step line and prints no
        // `Running in`: the script's proxy and CA words are not the installer's.
        let mut error = DockerError::Build {
            tag: "perstack-sandbox/skill-uv:0123".into(),
            message: "building at STEP \"RUN …\": while running runtime: exit status 2".into(),
        };
        let tail = VecDeque::from([
            "[1/2] STEP 5/6: COPY rootfs/opt/skill/tools/new/server.py /opt/skill/tools/new/server.py".to_string(),
            "[1/2] STEP 6/6: RUN [\"/bin/sh\",\"-c\",\"… export PIP_CERT=\\\"$ca\\\" SSL_CERT_FILE=\\\"$ca\\\" …\"]".to_string(),
            "Successfully installed uv-0.13.9".to_string(),
            "error: The requested interpreter resolved to Python 3.11.2, which is incompatible with the project's Python requirement: `>=3.99`".to_string(),
        ]);
        explain_install_failure(&mut error, &tail);
        let text = error.to_string();
        assert!(text.contains("incompatible"), "{text}");
        assert!(!text.contains("HTTPS_PROXY"), "{text}");
        assert!(
            text.contains("hint: the installer stopped for a reason of its own"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn only_the_coordinators_terminal_event_ends_the_run() {
        let child_done = r#"{"type":"completeRun","id":"e1","expertKey":"helper","timestamp":1,"jobId":"j","runId":"r2","stepNumber":1,"checkpoint":{"id":"c","jobId":"j","runId":"r2","status":"completed","stepNumber":1,"messages":[],"expert":{"key":"helper","name":"helper","version":"1.0.0"},"usage":{"inputTokens":0,"outputTokens":0,"reasoningTokens":0,"totalTokens":0,"cachedInputTokens":0}},"step":{"stepNumber":1,"newMessages":[],"usage":{"inputTokens":0,"outputTokens":0,"reasoningTokens":0,"totalTokens":0,"cachedInputTokens":0},"startedAt":1},"text":"","usage":{"inputTokens":0,"outputTokens":0,"reasoningTokens":0,"totalTokens":0,"cachedInputTokens":0}}"#;
        let stream = futures::stream::iter(vec![out(&format!("{child_done}\n"))]);
        let (output, _task) = Output::spawn(Mode::Json, tokio::io::sink());
        let (end, _) = relay_runtime(stream, &ids(), &output, false, &|_, _| {}).await;
        assert_eq!(end, None);
    }
}
