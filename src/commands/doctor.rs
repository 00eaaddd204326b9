//! `perstack-sandbox doctor`: is this machine ready to run Experts?
//!
//! Reports the Docker endpoint and why it is that one (and the places passed over on the way),
//! the engine and negotiated API versions, whether an image can be built (by building and
//! removing a tiny one), what a run makes — a socket volume, an internal network, a hardened
//! container on it reaching another's unix socket through the volume, files written into a
//! workspace as the user — made for real and removed (`sandbox/engine/probe.rs`), whether our
//! executable can go into images, which base images the
//! config asks for exist locally, and which CA bundle the containers that talk TLS trust —
//! with the certificates it has that the base images' own bundles lack (behind a
//! TLS-intercepting proxy, the proxy's CA), the OCI runtimes the engine has registered, with
//! gVisor's (and the one `[sandbox] runtime` asks for) probed by starting a container on no
//! network and one on a network. Every failed finding says how to fix it.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use super::artifacts::{self, LoadedBundle, SYSTEM_BUNDLES};
use crate::cli::{BackendName, DoctorArgs, ValidateArgs};
use crate::config::{self, Config, LoadedConfig, SettingFlags, Settings, Skill};
use crate::exit::Exit;
use crate::ids::controller::ControllerId;
use crate::sandbox::ca_bundle::{self, Certificate};
use crate::sandbox::engine::docker::{DockerClient, DockerError};
use crate::sandbox::engine::endpoint::Why;
use crate::sandbox::engine::probe;
use crate::sandbox::images::base::skill_base_image;
use crate::sandbox::images::recipes::Artifacts;
use crate::sandbox::images::{ContextFile, ImageConfig, ImageRole, ImageSpec, base_labels};
use crate::sandbox::labels;
use crate::sandbox::preflight::{GVISOR_ARGS, RegisteredRuntime, check_runtime_engine_on};

struct Report {
    failed: bool,
    /// The verdict in place of `ready.` when a run starts only with `--allow-weaker-isolation`.
    weaker: Option<String>,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl AsRef<str>) {
        println!("  ✔ {what:<16} {}", detail.as_ref());
    }

    /// A finding that holds back a plain run but not one with `--allow-weaker-isolation`.
    fn weaker(
        &mut self,
        what: &str,
        detail: impl AsRef<str>,
        fix: impl AsRef<str>,
        verdict: String,
    ) {
        self.weaker = Some(verdict);
        println!("  ! {what:<16} {}", detail.as_ref());
        println!("    fix: {}", fix.as_ref());
    }

    fn fail(&mut self, what: &str, detail: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failed = true;
        println!("  ✘ {what:<16} {}", detail.as_ref());
        println!("    fix: {}", fix.as_ref());
    }
}

/// Runs the command. Its findings are its output (on stdout), each failed one with its fix;
/// like `uv pip check` it has no error of its own, only an exit code saying whether the machine
/// is ready: [`Exit::Docker`] when no engine answered, [`Exit::RunFailed`] when a check failed.
pub async fn run(args: DoctorArgs) -> Exit {
    if args.backend.backend == BackendName::Kubernetes {
        return super::kubernetes::doctor(&args.backend).await;
    }
    let args = args.validate;
    let mut report = Report {
        failed: false,
        weaker: None,
    };
    println!("perstack-sandbox {} doctor", env!("CARGO_PKG_VERSION"));
    check_executable(&mut report);
    let Some(docker) = connect(&mut report).await else {
        return Exit::Docker;
    };
    check_engine(&mut report, &docker).await;
    check_image_build(&mut report, &docker).await;
    check_run_probe(&mut report, &docker).await;
    let loaded = load_config(&mut report, &args);
    check_runtimes(&mut report, &docker, loaded.as_ref()).await;
    check_base_images(&mut report, &docker, loaded.as_ref()).await;
    check_ca_bundle(&mut report, &docker, loaded.as_ref()).await;
    if report.failed {
        Exit::RunFailed
    } else if let Some(verdict) = report.weaker {
        // A plain `run` refuses: not ready. (exit 1), but the line says what would start.
        println!("{verdict}");
        Exit::RunFailed
    } else {
        println!("ready.");
        Exit::Success
    }
}

/// The executable the images get (`image_executable.rs`): which one, its size, and why.
fn check_executable(report: &mut Report) {
    match super::artifacts::executable() {
        Ok(chosen) => report.ok("executable", chosen.describe()),
        Err(error) => report.fail(
            "executable",
            error.to_string(),
            "build with `make build` (static target from .cargo/config.toml)",
        ),
    }
}

/// The files of doctor's probe containers: the executable the images get, no CA bundle.
fn probe_artifacts() -> Option<Artifacts> {
    let chosen = super::artifacts::executable().ok()?;
    Some(Artifacts {
        binary: chosen.bytes,
        executable: chosen.executable,
        ca_bundle: Bytes::new(),
    })
}

/// The engine, with the endpoint and why it is that one; `None` when none answered.
async fn connect(report: &mut Report) -> Option<DockerClient> {
    match DockerClient::connect().await {
        Ok(docker) => {
            let endpoint = docker.endpoint();
            report.ok(
                "docker endpoint",
                format!("{} ({})", endpoint.address, because(&endpoint.why)),
            );
            for looked in &endpoint.passed_over {
                println!("    passed over: {looked}");
            }
            Some(docker)
        }
        Err(DockerError::Unreachable(none)) => {
            report.fail(
                "docker endpoint",
                none.places().replace('\n', "\n    "),
                none.hint(),
            );
            None
        }
        Err(error) => {
            report.fail("docker endpoint", error.to_string(), "check the engine");
            None
        }
    }
}

async fn check_engine(report: &mut Report, docker: &DockerClient) {
    let info = docker.engine();
    let v = &info.version;
    report.ok(
        "engine",
        format!(
            "{} on {}/{}, API {} (minimum {}), cgroup v{}",
            info.describe(),
            v.os.as_deref().unwrap_or("?"),
            v.arch.as_deref().unwrap_or("?"),
            v.api_version.as_deref().unwrap_or("?"),
            v.min_api_version.as_deref().unwrap_or("?"),
            info.cgroup_version
                .map_or_else(|| "?".to_string(), |c| c.to_string())
        ),
    );
    report.ok("negotiated API", info.api_version.clone());
    if let (Some(weaker), Some(refusal)) = (info.weaker_isolation(), info.refusal(false)) {
        let fix = refusal.split_once("\n  hint: ").map_or("", |(_, fix)| fix);
        report.weaker(
            "limits",
            format!(
                "{}; `run` refuses unless given --allow-weaker-isolation",
                weaker.summary()
            ),
            fix,
            weaker.verdict(),
        );
    }
}

/// Both ways images reach the engine: a classic build (images on a real base) and an import
/// (scratch images).
async fn check_image_build(report: &mut Report, docker: &DockerClient) {
    let probe = probe_image();
    let tag = probe.tag("scratch");
    let started = Instant::now();
    let built = docker.build_image(&probe, &tag, |_| {}).await;
    let build_time = started.elapsed();
    let _ = docker.remove_image(&tag).await;
    let started = Instant::now();
    let loaded = docker.load_image(&probe, &tag).await;
    let load_time = started.elapsed();
    let _ = docker.remove_image(&tag).await;
    match (built, loaded) {
        (Ok(_), Ok(_)) => report.ok(
            "image build",
            format!(
                "built a test image in {:.2} s and loaded one in {:.2} s, then removed them (no registry needed)",
                build_time.as_secs_f64(),
                load_time.as_secs_f64()
            ),
        ),
        (Err(error), _) | (_, Err(error)) => report.fail(
            "image build",
            error.to_string(),
            "the engine must be able to build and load `FROM scratch` images; check `docker build` and `docker load` work and the disk is not full",
        ),
    }
}

/// The OCI runtimes the engine has registered; each gVisor among them, and the one
/// `[sandbox] runtime` asks for, probed with a container on no network and one on a network.
async fn check_runtimes(report: &mut Report, docker: &DockerClient, loaded: Option<&LoadedConfig>) {
    let (registered, default) = match docker.runtimes().await {
        Ok(found) => found,
        Err(error) => return report.fail("runtimes", error.to_string(), "check the engine"),
    };
    let listed: Vec<String> = registered
        .iter()
        .map(|r| {
            let mut line = r.name.clone();
            if default.as_deref() == Some(r.name.as_str()) {
                line.push_str(" (default)");
            }
            if r.is_gvisor() {
                line.push_str(&format!(" = gVisor: {} {}", r.path, r.args.join(" ")));
            }
            line
        })
        .collect();
    report.ok("runtimes", listed.join(", "));
    let asked = loaded.and_then(|l| {
        Settings::resolve(&SettingFlags::default(), l)
            .ok()
            .map(|s| s.runtime_engine)
    });
    if let Some(asked) = asked.as_ref().filter(|a| a.name.is_some())
        && let Err(problem) = check_runtime_engine_on(docker.engine().kind, asked, &registered)
    {
        report.fail("runtime", problem.to_string(), "as the line above says");
    }
    let mut probe: Vec<&RegisteredRuntime> = registered.iter().filter(|r| r.is_gvisor()).collect();
    if let Some(name) = asked.and_then(|a| a.name)
        && let Some(found) = registered.iter().find(|r| r.name == name)
        && !probe.contains(&found)
        && default.as_deref() != Some(name.as_str())
    {
        probe.push(found);
    }
    if !registered.iter().any(RegisteredRuntime::is_gvisor) {
        println!(
            "    gVisor (runsc) is not registered: optional; README \"gVisor\" says how to add it"
        );
    }
    for runtime in probe {
        probe_one(report, docker, runtime).await;
    }
}

/// One runtime: registered as a run needs it, and the run probe (`sandbox/engine/probe.rs`)
/// under it: a base-skill-like container with no network serving a socket in a volume, and a
/// runtime-like one on an internal network reaching it, each in its own sandbox.
/// A gVisor registered without `--host-uds=all` is a note, not a failure: only a run that asks
/// for it needs it, and such a run fails the `runtime` check above with the lines that fix it.
/// (Podman lists every runtime its configuration knows, installed or not, with no arguments.)
async fn probe_one(report: &mut Report, docker: &DockerClient, runtime: &RegisteredRuntime) {
    if !runtime.shares_unix_sockets() {
        println!(
            "    gVisor ({}) is registered without --host-uds=all: a run that asks for it \
             refuses (README \"gVisor\" says how to register it); runs that do not are unaffected",
            runtime.name
        );
        return;
    }
    let Some(artifacts) = probe_artifacts() else {
        return report.fail(
            &format!("  {}", runtime.name),
            "skipped: this executable cannot be read",
            "see `executable` above",
        );
    };
    println!(
        "  run probe under {} (one container on no network, one on an internal network):",
        runtime.name
    );
    for step in probe::probe(docker, &artifacts, Some(&runtime.name)).await {
        let name = format!("  {}", step.name);
        match step.outcome {
            Ok(detail) => report.ok(&name, detail),
            Err(failure) => report.fail(
                &name,
                failure.problem,
                format!(
                    "{} (under {}: check its registration in /etc/docker/daemon.json — gVisor here needs {} — and the engine's log)",
                    failure.fix,
                    runtime.name,
                    GVISOR_ARGS.join(" ")
                ),
            ),
        }
    }
}

/// What a run makes, made for real and removed (`sandbox/engine/probe.rs`): every step a line.
async fn check_run_probe(report: &mut Report, docker: &DockerClient) {
    let Some(artifacts) = probe_artifacts() else {
        report.fail(
            "run probe",
            "skipped: this executable cannot be read",
            "see `executable` above",
        );
        return;
    };
    println!("  run probe (what a run makes, made and removed):");
    for step in probe::probe(docker, &artifacts, None).await {
        let name = format!("  {}", step.name);
        match step.outcome {
            Ok(detail) => report.ok(&name, detail),
            Err(failure) => report.fail(&name, failure.problem, failure.fix),
        }
    }
}

/// perstack.toml, when there is one; `None` (and a finding) when it is missing or invalid.
fn load_config(report: &mut Report, args: &ValidateArgs) -> Option<LoadedConfig> {
    let cwd = std::env::current_dir().unwrap_or_default();
    match config::discover(args.config.as_deref(), &cwd).and_then(|p| config::load(&p)) {
        Ok(loaded) => Some(loaded),
        Err(config::ConfigError::NotFound { .. }) => None,
        Err(error) => {
            report.fail(
                "perstack.toml",
                error.to_string(),
                "fix the file (`perstack-sandbox validate` lists every problem)",
            );
            None
        }
    }
}

async fn check_base_images(
    report: &mut Report,
    docker: &DockerClient,
    loaded: Option<&LoadedConfig>,
) {
    println!("  base images:");
    let Some(loaded) = loaded else {
        println!(
            "    (no usable perstack.toml here; only scratch-based images are needed by default)"
        );
        return;
    };
    for (image, users) in base_images(&loaded.config) {
        if image == "scratch" {
            report.ok("  scratch", format!("built in · {users}"));
            continue;
        }
        match docker.image_id(&image).await {
            Ok(Some(id)) => report.ok(
                &format!("  {image}"),
                format!("{} · {users}", &id[..id.len().min(19)]),
            ),
            Ok(None) => report.fail(
                &format!("  {image}"),
                format!("not found locally · {users}"),
                "there is no registry to pull from: build or load it (`make test-images` builds perstack-sandbox/bookworm:local; or `docker import` a debootstrapped rootfs, or `docker load -i image.tar`), or change the setting in [sandbox]",
            ),
            Err(error) => report.fail(&format!("  {image}"), error.to_string(), "check the engine"),
        }
    }
}

/// Which CA bundle the containers that talk TLS would trust (`[sandbox] caCertificates`, else
/// the host's), and what it has that each base image's own bundle lacks.
async fn check_ca_bundle(
    report: &mut Report,
    docker: &DockerClient,
    loaded: Option<&LoadedConfig>,
) {
    // Without a usable perstack.toml: what an empty one would choose.
    let Some(config) = loaded
        .cloned()
        .or_else(|| config::load_str(std::path::Path::new("perstack.toml"), "").ok())
    else {
        return;
    };
    let setting = match Settings::resolve(&SettingFlags::default(), &config) {
        Ok(settings) => settings.ca_certificates,
        Err(error) => return report.fail("CA bundle", error.to_string(), "fix perstack.toml"),
    };
    let bundle = match artifacts::ca_bundle(&setting) {
        Ok(bundle) => bundle,
        Err(error) => {
            return report.fail(
                "CA bundle",
                error.to_string(),
                "set [sandbox] caCertificates (or --ca-certificates) to a PEM bundle",
            );
        }
    };
    let Some(path) = &bundle.path else {
        return report.fail(
            "CA bundle",
            format!(
                "the host has no system bundle (SSL_CERT_FILE is unset and none of {} exists): skills with allowedDomains and a runtime with a networked provider would trust nothing",
                SYSTEM_BUNDLES.join(", ")
            ),
            "install your distribution's ca-certificates, or set [sandbox] caCertificates to a PEM bundle",
        );
    };
    report.ok(
        "CA bundle",
        format!(
            "{} ({}), {} certificates: trusted by skills with allowedDomains, by the runtime when it reaches a provider or an mcpSseSkill, and by package installs",
            path.display(),
            artifacts::chosen_by(&setting),
            bundle.certificates.len()
        ),
    );
    for (image, users) in base_images(&config.config) {
        if image == "scratch" {
            println!(
                "    scratch ({users}): no bundle of its own; those of its containers that talk TLS trust this one alone"
            );
            continue;
        }
        match image_bundle(docker, &image).await {
            Some(own) => println!("    {image} ({users}): {}", compare(&bundle, &own)),
            None => println!(
                "    {image} ({users}): no CA bundle found in it (or it is not here); those of its containers that talk TLS trust this one alone"
            ),
        }
    }
}

/// How the chosen bundle compares with an image's own, in words.
fn compare(chosen: &LoadedBundle, own: &[Certificate]) -> String {
    let extra = ca_bundle::missing_from(&chosen.certificates, own);
    if extra.is_empty() {
        return format!(
            "its own bundle ({} certificates) already holds all of these",
            own.len()
        );
    }
    const SHOWN: usize = 3;
    let mut names: Vec<String> = extra.iter().take(SHOWN).map(|c| c.label()).collect();
    if extra.len() > SHOWN {
        names.push(format!("and {} more", extra.len() - SHOWN));
    }
    format!(
        "differs: its own bundle ({} certificates) lacks {} of these: {}",
        own.len(),
        extra.len(),
        names.join(", ")
    )
}

/// The certificates of an image's own system bundle, from the first of the usual places it has;
/// `None` when it has none or is not here.
async fn image_bundle(docker: &DockerClient, image: &str) -> Option<Vec<Certificate>> {
    // The containers that read it never start; they are labelled like a run's, so `gc` removes
    // them if we die before we do.
    let reader_labels = BTreeMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::RUN_ID.to_string(), crate::ids::new_id()),
        (labels::ROLE.to_string(), "doctor".to_string()),
        (
            labels::CONTROLLER.to_string(),
            ControllerId::current().to_string(),
        ),
    ]);
    for path in SYSTEM_BUNDLES {
        if let Ok(pem) = docker.read_image_file(image, path, &reader_labels).await {
            return ca_bundle::certificates(&pem).ok();
        }
    }
    None
}

/// Why this endpoint, in the words of the doctor's report.
fn because(why: &Why) -> String {
    match why {
        Why::DockerHost | Why::Context { .. } => why.to_string(),
        Why::RootlessDocker | Why::RootlessPodman | Why::SystemPodman => {
            format!("{why} found; set DOCKER_HOST to use another engine")
        }
        Why::DefaultDocker => format!(
            "{why}; no DOCKER_HOST, Docker context or rootless socket — set DOCKER_HOST to use another engine"
        ),
    }
}

/// Base images the config needs, with who needs them.
fn base_images(config: &Config) -> Vec<(String, String)> {
    let mut images: Vec<(String, Vec<String>)> =
        vec![("scratch".to_string(), vec!["runtime".to_string()])];
    let mut add = |image: String, user: String| match images.iter_mut().find(|(i, _)| *i == image) {
        Some((_, users)) => {
            if !users.contains(&user) {
                users.push(user)
            }
        }
        None => images.push((image, vec![user])),
    };
    for expert in config.experts.values() {
        for skill in expert.skills.values() {
            let Skill::McpStdio(stdio) = skill else {
                continue;
            };
            if stdio.is_base() {
                add(
                    config
                        .sandbox
                        .workspace_image
                        .clone()
                        .unwrap_or_else(|| "scratch".to_string()),
                    "base-skill".to_string(),
                );
            } else {
                match skill_base_image(config, stdio) {
                    Some(image) => add(image, format!("skill {}", stdio.name)),
                    None => add(
                        format!("(none configured for `{}`)", stdio.command),
                        format!("skill {}", stdio.name),
                    ),
                }
            }
        }
    }
    images
        .into_iter()
        .map(|(i, users)| (i, users.join(", ")))
        .collect()
}

fn probe_image() -> ImageSpec {
    ImageSpec {
        role: ImageRole::Runtime,
        service: "doctor".to_string(),
        repository: "perstack-sandbox/doctor-probe".to_string(),
        base: "scratch".to_string(),
        files: vec![ContextFile {
            path: "/probe".to_string(),
            mode: 0o644,
            // Unique per check: two doctors at once (CI runs them in parallel) must not build
            // and remove the same tag under each other.
            contents: Bytes::from(format!(
                "perstack-sandbox doctor {}\n",
                crate::ids::new_id()
            )),
        }],
        config: ImageConfig::default(),
        labels: base_labels(ImageRole::Runtime),
        install: vec![],
        recipe: None,
        roots: vec![],
    }
}
