//! Which engine answers and what that means for a run: Docker or Podman, rootful or rootless,
//! which cgroup version. The one place engine differences are decided; `docker.rs` and the
//! run's stages ask [`EngineInfo`] instead of guessing.
//!
//! What differs, measured against Debian's Podman 4.3.1 (netavark) and Docker 20.10:
//!
//! - **Internal networks.** Podman's Docker-compatible endpoint creates every bridge network with
//!   its DNS server (aardvark-dns) on, and that server forwards any name to the host's
//!   resolvers: a skill on an "internal" network could look up (and leak through) any name.
//!   On Podman the run's networks are created through Podman's own endpoint with DNS off
//!   ([`NetworkDns`]).
//! - **Open-file and process limits.** Rootful Podman raises `RLIMIT_NOFILE` and
//!   `RLIMIT_NPROC` of every container to 1048576 unless told otherwise; an engine without
//!   `CAP_SYS_RESOURCE` (nested and confined hosts) then fails to start any container. Docker
//!   passes on its own limits. On rootful Podman the containers get [`PODMAN_ULIMITS`].
//! - **Tmpfs mounts.** Podman fills a tmpfs with what the image or a mount has below its mount
//!   point ("tmpcopyup"), so an empty tmpfs hiding a folder needs `notmpcopyup`
//!   ([`EngineInfo::empty_tmpfs_option`]).
//! - **Scratch images.** Docker loads ours from an image archive (`images.rs`). Podman's
//!   import read each of `changes` as one instruction, `LABEL a=1 b=2` as one label `a`, and
//!   kept the backslashes of a quoted value (our labels hold JSON); its load of such an
//!   archive is unverified, so on Podman `scratch` images are built, not loaded
//!   ([`EngineInfo::loads_scratch_images`]).
//! - **Rootless engines** (Podman or Docker) map the container's uid 0 to the user who runs the
//!   engine and every other uid into that user's subordinate range: base-skill must run as
//!   uid 0 inside for the files it writes to be the invoking user's outside
//!   ([`EngineInfo::workspace_user`]).
//! - **Concurrent builds.** Two builds on one Podman storage (two runs building one image at
//!   once; a build beside a removal) can take from each other what each is using: a build
//!   container the other one removed ("identifier is not a container", seen on rootless Podman
//!   with two tests building one image) or a cached layer of an image removed meanwhile ("layer
//!   not known"). Such a build is run again, at most [`BUILD_ATTEMPTS`] times in all
//!   ([`EngineInfo::build_race`]). Docker's classic builder loses the same race when an image
//!   a step's cache hit stands on is removed meanwhile (the removal of another build's tag
//!   also removes the untagged step images beneath it, which two builds of the same first
//!   steps share): "unable to find image \"sha256:…\"" or, when it commits the next step,
//!   "failed to set parent sha256:…: unknown parent image ID". The image a build has just
//!   made can also go before it is read back by its tag (seen on rootful Podman: 500 "image
//!   not known" for the id the tag names); that build is run again too, on any engine.
//! - **Rootless on cgroup v1** cannot limit memory, CPU or processes (Podman says "Resource
//!   limits are not supported and ignored" and starts the container anyway): a run refuses
//!   before it starts ([`EngineInfo::refusal`]), unless `--allow-weaker-isolation` accepts
//!   running without them ([`EngineInfo::weaker_isolation`]); then no limit is asked for
//!   ([`EngineInfo::enforces_limits`]) and the run says what is missing.

use bollard::models::SystemVersion;

use super::workspace_user::UidGid;

/// The engine's make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineKind {
    /// Docker (Moby), the reference.
    Docker,
    /// Podman's Docker-compatible service (`podman system service`).
    Podman,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Docker => "Docker",
            EngineKind::Podman => "Podman",
        })
    }
}

/// How the run's internal networks must be created on this engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetworkDns {
    /// Docker: an internal network has no DNS for outside names; the ordinary endpoint will do.
    NoneByDefault,
    /// Podman: DNS must be switched off explicitly, which only Podman's own endpoint can do.
    SwitchOff,
}

/// Open-file and process limits (soft = hard) given to every container on rootful Podman.
/// Below what any host allows root, and far above what a skill needs (process counts are held
/// by the pids limit).
pub(crate) const PODMAN_ULIMITS: [(&str, i64); 2] = [("nofile", 8192), ("nproc", 32768)];

/// How many times in all a build that lost a race ([`BuildRace`]) is run.
pub(crate) const BUILD_ATTEMPTS: u32 = 3;

/// What another client of the engine took from a build that was using it, failing the build not
/// because of its recipe: running it again is the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BuildRace {
    /// Podman: one of the build's containers was removed meanwhile, by another build of the
    /// same steps or a removal ("identifier is not a container").
    Container,
    /// An image the build's cache used was removed meanwhile (`gc --images`, another build's
    /// clean-up): Podman's "layer not known", Docker's `unable to find image "sha256:…"` or
    /// `unknown parent image ID sha256:…` (an image by its id, so never a base the recipe
    /// names).
    CachedImage,
    /// The image the build had just made was gone before it could be read back by its tag,
    /// removed meanwhile by another client (any engine: the engine had reported it made).
    BuiltImage,
}

impl BuildRace {
    /// What happened, in words.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            BuildRace::Container => {
                "another build or a removal on the same engine removed one of its build containers"
            }
            BuildRace::CachedImage => {
                "an image whose layer its cache used was removed meanwhile by another client"
            }
            BuildRace::BuiltImage => {
                "the image it had just made was removed by another client before it was read back"
            }
        }
    }
}

/// What a rootless engine on cgroup v1 cannot give a container, as the `isolationReport`
/// event's `missing` says it.
pub(crate) const MISSING_ON_ROOTLESS_CGROUP_V1: [&str; 3] =
    ["memory limit", "process limit", "CPU limit"];

/// Part of a run's isolation this engine cannot hold: the run goes on only with
/// `--allow-weaker-isolation`, and says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WeakerIsolation {
    /// What is missing, one name each (the event's `missing`), e.g. `memory limit`.
    pub missing: Vec<&'static str>,
    /// The same in words: `memory, process or CPU limits`.
    pub what: &'static str,
    /// What about the engine takes it away: `rootless on cgroup v1`.
    pub cause: &'static str,
    /// The engine (`Podman 4.3.1 (rootless)`).
    pub engine: String,
}

impl WeakerIsolation {
    /// The warning a run gives: `no memory, process or CPU limits: Podman … runs rootless on
    /// cgroup v1, where it ignores container limits`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "no {}: {} runs {}, where it ignores container limits",
            self.what, self.engine, self.cause
        )
    }

    /// `doctor`'s verdict on such an engine, in place of `ready.`.
    pub(crate) fn verdict(&self) -> String {
        format!(
            "ready with --allow-weaker-isolation: no {} ({})",
            self.what, self.cause
        )
    }
}

/// What the engine is, as `/version` and `/info` tell.
#[derive(Debug, Clone)]
pub(crate) struct EngineInfo {
    /// The engine's `/version`.
    pub version: SystemVersion,
    /// The API version negotiated with it.
    pub api_version: String,
    /// Docker or Podman.
    pub kind: EngineKind,
    /// The engine runs as an ordinary user, in a user namespace.
    pub rootless: bool,
    /// `1` or `2`; `None` when the engine does not say.
    pub cgroup_version: Option<u32>,
}

impl EngineInfo {
    /// Reads the make from `/version` (Podman lists a component named `Podman Engine`) and the
    /// rest from the raw `/info` (Podman's `Rootless`, Docker's `name=rootless` security
    /// option, `CgroupVersion`).
    pub(crate) fn new(
        version: SystemVersion,
        api_version: String,
        info: &serde_json::Value,
    ) -> Self {
        let kind = kind_of(&version);
        let security_rootless = info["SecurityOptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.as_str())
            .any(|o| o.split(',').any(|part| part == "name=rootless"));
        let rootless = info["Rootless"].as_bool().unwrap_or(false) || security_rootless;
        let cgroup_version = info["CgroupVersion"].as_str().and_then(|v| v.parse().ok());
        EngineInfo {
            version,
            api_version,
            kind,
            rootless,
            cgroup_version,
        }
    }

    /// `Podman 4.3.1 (rootless)`, `Docker 20.10.24`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} {}{}",
            self.kind,
            self.version.version.as_deref().unwrap_or("?"),
            if self.rootless { " (rootless)" } else { "" }
        )
    }

    /// What this engine cannot hold of a run's isolation; `None` when it holds all of it.
    /// Rootless on cgroup v1 cannot limit memory, CPU or processes: Podman accepts the limits
    /// and ignores them, so a run on it has none unless it is refused.
    pub(crate) fn weaker_isolation(&self) -> Option<WeakerIsolation> {
        (self.rootless && self.cgroup_version == Some(1)).then(|| WeakerIsolation {
            missing: MISSING_ON_ROOTLESS_CGROUP_V1.to_vec(),
            what: "memory, process or CPU limits",
            cause: "rootless on cgroup v1",
            engine: self.describe(),
        })
    }

    /// Whether the containers get memory, CPU and process limits: `false` on an engine that
    /// would ignore them ([`EngineInfo::weaker_isolation`]), where a run goes on only with
    /// `--allow-weaker-isolation` and none are asked for, so that nothing claims a limit that
    /// does not hold.
    pub(crate) fn enforces_limits(&self) -> bool {
        self.weaker_isolation().is_none()
    }

    /// Why a run cannot start on this engine, with what to do; `None` when it can:
    /// `allow_weaker` (`--allow-weaker-isolation`) accepts [`EngineInfo::weaker_isolation`].
    pub(crate) fn refusal(&self, allow_weaker: bool) -> Option<String> {
        let weaker = self.weaker_isolation().filter(|_| !allow_weaker)?;
        Some(format!(
            "{} cannot limit memory, CPU or processes on this host: it runs {}, where {} ignores container limits, and perstack-sandbox starts no container without them.\n  hint: use a rootful engine (e.g. `sudo podman system service` and DOCKER_HOST=unix:///run/podman/podman.sock, or Docker), or boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and delegate the memory, cpu and pids controllers to your user; or pass --allow-weaker-isolation to run without {} (the run says so on stderr and in its isolationReport event)",
            weaker.engine, weaker.cause, self.kind, weaker.what
        ))
    }

    /// Who base-skill runs as inside its container for its files to belong to `host_user` on
    /// the host: on a rootless engine uid 0 inside is the engine's user outside (and every other
    /// uid is one of that user's subordinate ids), so `0:0`; elsewhere `host_user` itself.
    pub(crate) fn workspace_user(&self, host_user: UidGid) -> UidGid {
        if self.rootless { (0, 0) } else { host_user }
    }

    /// The `Tmpfs` options of an empty read-only tmpfs, when the engine needs them instead of a
    /// tmpfs mount: Podman copies what lies under a tmpfs mount point into it unless told
    /// `notmpcopyup`, which only its `Tmpfs` options can say (base-skill's tmpfs over the
    /// workspace's `perstack/` would otherwise hold the very jobs it hides). `None`: a mount
    /// (Docker mounts it empty).
    pub(crate) fn empty_tmpfs_option(&self) -> Option<&'static str> {
        match self.kind {
            EngineKind::Docker => None,
            EngineKind::Podman => Some("ro,nosuid,nodev,noexec,size=4k,mode=0555,notmpcopyup"),
        }
    }

    /// Whether `scratch` images are loaded from an archive (one call, Docker) or built from a
    /// context (Podman, whose import mangled labels: see above; its load is not checked).
    pub(crate) fn loads_scratch_images(&self) -> bool {
        self.kind == EngineKind::Docker
    }

    /// An image reference as the docker CLI and our own tags spell it. Podman lists an image
    /// with its registry in full: one tagged through its Docker endpoint with none
    /// (`perstack-sandbox/x:1`) as `docker.io/perstack-sandbox/x:1`, one it loaded as
    /// `localhost/…`; both resolve by the short name. Docker leaves `docker.io/` (and
    /// `library/`) out already, and `localhost/` is a registry of its own there.
    pub(crate) fn local_reference(&self, reference: String) -> String {
        if self.kind != EngineKind::Podman {
            return reference;
        }
        let short = reference
            .strip_prefix("docker.io/library/")
            .or_else(|| reference.strip_prefix("docker.io/"))
            .or_else(|| reference.strip_prefix("localhost/"));
        match short {
            Some(short) => short.to_string(),
            None => reference,
        }
    }

    /// Whether attempt `attempt` (from 1) of a build that failed with `message` is followed by
    /// another: it lost a race ([`Self::build_race`]) and fewer than [`BUILD_ATTEMPTS`] were made.
    pub(crate) fn retry_build(&self, attempt: u32, message: &str) -> Option<BuildRace> {
        self.build_race(message)
            .filter(|_| attempt < BUILD_ATTEMPTS)
    }

    /// Whether a build that failed with `message` lost a race with another client of the
    /// engine (module docs), and so may be run again; `None`: it failed for a reason of its own.
    pub(crate) fn build_race(&self, message: &str) -> Option<BuildRace> {
        match self.kind {
            EngineKind::Podman if message.contains("identifier is not a container") => {
                Some(BuildRace::Container)
            }
            EngineKind::Podman if message.contains("layer not known") => {
                Some(BuildRace::CachedImage)
            }
            EngineKind::Docker
                if message.contains("unable to find image \"sha256:")
                    || message.contains("unknown parent image ID sha256:") =>
            {
                Some(BuildRace::CachedImage)
            }
            _ => None,
        }
    }

    /// How the run's internal networks are created.
    pub(crate) fn network_dns(&self) -> NetworkDns {
        match self.kind {
            EngineKind::Docker => NetworkDns::NoneByDefault,
            EngineKind::Podman => NetworkDns::SwitchOff,
        }
    }

    /// The `ulimits` every container gets (empty: the engine's own).
    pub(crate) fn ulimits(&self) -> &'static [(&'static str, i64)] {
        match (self.kind, self.rootless) {
            (EngineKind::Podman, false) => &PODMAN_ULIMITS,
            _ => &[],
        }
    }
}

/// Docker or Podman, from `/version`'s components (Podman: `Podman Engine`) or platform name.
pub(crate) fn kind_of(version: &SystemVersion) -> EngineKind {
    let podman_component = version
        .components
        .iter()
        .flatten()
        .any(|c| c.name.to_ascii_lowercase().contains("podman"));
    let podman_platform = version
        .platform
        .as_ref()
        .is_some_and(|p| p.name.to_ascii_lowercase().contains("podman"));
    if podman_component || podman_platform {
        EngineKind::Podman
    } else {
        EngineKind::Docker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{SystemVersionComponents, SystemVersionPlatform};

    fn version(component: &str, platform: &str) -> SystemVersion {
        SystemVersion {
            platform: Some(SystemVersionPlatform {
                name: platform.to_string(),
            }),
            components: Some(vec![SystemVersionComponents {
                name: component.to_string(),
                version: "4.3.1".to_string(),
                details: None,
            }]),
            version: Some("4.3.1".to_string()),
            ..Default::default()
        }
    }

    fn info(kind: (&str, &str), raw: serde_json::Value) -> EngineInfo {
        EngineInfo::new(version(kind.0, kind.1), "1.41".into(), &raw)
    }

    const PODMAN: (&str, &str) = ("Podman Engine", "linux/amd64/debian-12");
    const DOCKER: (&str, &str) = ("Engine", "Docker Engine - Community");

    #[test]
    fn podmans_registry_prefixes_are_left_out_of_its_references_and_dockers_kept() {
        let podman = info(PODMAN, serde_json::json!({}));
        let docker = info(DOCKER, serde_json::json!({}));
        for listed in [
            "docker.io/perstack-sandbox/skill-x:1",
            "localhost/perstack-sandbox/skill-x:1",
        ] {
            assert_eq!(
                podman.local_reference(listed.to_string()),
                "perstack-sandbox/skill-x:1"
            );
            assert_eq!(docker.local_reference(listed.to_string()), listed);
        }
        assert_eq!(
            podman.local_reference("docker.io/library/busybox:1".to_string()),
            "busybox:1"
        );
        let pushed = "127.0.0.1:5000/demo:1.0".to_string();
        assert_eq!(podman.local_reference(pushed.clone()), pushed);
    }

    #[test]
    fn podman_is_told_by_its_component_and_docker_is_the_rest() {
        assert_eq!(kind_of(&version(PODMAN.0, PODMAN.1)), EngineKind::Podman);
        assert_eq!(kind_of(&version("Engine", "")), EngineKind::Docker);
        assert_eq!(kind_of(&version(DOCKER.0, DOCKER.1)), EngineKind::Docker);
        assert_eq!(kind_of(&SystemVersion::default()), EngineKind::Docker);
    }

    #[test]
    fn rootless_is_podmans_field_or_dockers_security_option() {
        let podman = info(
            PODMAN,
            serde_json::json!({"Rootless": true, "CgroupVersion": "2"}),
        );
        assert!(podman.rootless);
        assert_eq!(podman.cgroup_version, Some(2));
        let docker = info(
            DOCKER,
            serde_json::json!({"SecurityOptions": ["name=seccomp,profile=default", "name=rootless"]}),
        );
        assert!(docker.rootless);
        let rootful = info(
            DOCKER,
            serde_json::json!({"SecurityOptions": ["name=seccomp,profile=default"], "CgroupVersion": "1"}),
        );
        assert!(!rootful.rootless);
        assert_eq!(rootful.describe(), "Docker 4.3.1");
        assert_eq!(podman.describe(), "Podman 4.3.1 (rootless)");
    }

    #[test]
    fn rootless_on_cgroup_v1_is_refused_unless_weaker_isolation_is_allowed() {
        let v1 = info(
            PODMAN,
            serde_json::json!({"Rootless": true, "CgroupVersion": "1"}),
        );
        let refusal = v1.refusal(false).expect("refused");
        assert!(refusal.contains("rootless on cgroup v1"), "{refusal}");
        assert!(refusal.contains("hint: use a rootful engine"), "{refusal}");
        assert!(refusal.contains("--allow-weaker-isolation"), "{refusal}");
        assert!(v1.refusal(true).is_none());
        assert!(!v1.enforces_limits());
        let weaker = v1.weaker_isolation().expect("weaker");
        assert_eq!(
            weaker.missing,
            ["memory limit", "process limit", "CPU limit"]
        );
        assert_eq!(
            weaker.summary(),
            "no memory, process or CPU limits: Podman 4.3.1 (rootless) runs rootless on cgroup v1, where it ignores container limits"
        );
        assert_eq!(
            weaker.verdict(),
            "ready with --allow-weaker-isolation: no memory, process or CPU limits (rootless on cgroup v1)"
        );
        for holds in [
            serde_json::json!({"Rootless": true, "CgroupVersion": "2"}),
            serde_json::json!({"Rootless": false, "CgroupVersion": "1"}),
        ] {
            let engine = info(PODMAN, holds);
            assert!(engine.refusal(false).is_none());
            assert!(engine.weaker_isolation().is_none());
            assert!(engine.enforces_limits());
        }
    }

    #[test]
    fn rootless_engines_run_base_skill_as_uid_0_inside_which_is_the_user_outside() {
        let rootless = info(PODMAN, serde_json::json!({"Rootless": true}));
        assert_eq!(rootless.workspace_user((1000, 1000)), (0, 0));
        let rootful = info(PODMAN, serde_json::json!({"Rootless": false}));
        assert_eq!(rootful.workspace_user((1000, 1000)), (1000, 1000));
    }

    #[test]
    fn only_podman_needs_dns_switched_off_and_only_rootful_podman_needs_ulimits() {
        let podman = info(PODMAN, serde_json::json!({}));
        assert_eq!(podman.network_dns(), NetworkDns::SwitchOff);
        assert!(!podman.loads_scratch_images());
        assert_eq!(podman.ulimits(), &PODMAN_ULIMITS);
        let rootless = info(PODMAN, serde_json::json!({"Rootless": true}));
        assert!(rootless.ulimits().is_empty());
        let docker = info(DOCKER, serde_json::json!({}));
        assert_eq!(docker.network_dns(), NetworkDns::NoneByDefault);
        assert!(docker.loads_scratch_images());
        assert!(docker.ulimits().is_empty());
    }

    /// Podman's and Docker's words for a build that lost a race are run again, at most three
    /// times in all; any other failure, and each engine's words on the other, are final.
    #[test]
    fn a_podman_build_that_lost_a_race_is_run_again_up_to_the_bound_and_nothing_else_is() {
        let podman = info(PODMAN, serde_json::json!({"Rootless": true}));
        let lost_container = "error deleting build container \"7786c68f6359\": identifier is not a \
                              container: error preparing container for next step";
        let lost_layer = "creating build container: layer not known";
        assert_eq!(
            podman.retry_build(1, lost_container),
            Some(BuildRace::Container)
        );
        assert_eq!(
            podman.retry_build(2, lost_container),
            Some(BuildRace::Container)
        );
        assert_eq!(podman.retry_build(BUILD_ATTEMPTS, lost_container), None);
        assert_eq!(
            podman.retry_build(1, lost_layer),
            Some(BuildRace::CachedImage)
        );
        assert_eq!(podman.retry_build(3, lost_layer), None);
        for final_failure in [
            "The command '/bin/sh -c pip install x' returned a non-zero code: 1",
            "ERROR: No matching distribution found for mcp-server-nope",
            "no such image: perstack-sandbox/bookworm:local",
        ] {
            assert_eq!(podman.build_race(final_failure), None, "{final_failure}");
        }
        let docker = info(DOCKER, serde_json::json!({}));
        assert_eq!(docker.retry_build(1, lost_container), None);
        assert_eq!(docker.retry_build(1, lost_layer), None);
        // Seen in CI: a cached stage image removed by a concurrent clean-up mid-build.
        let lost_image = "Docker stream error: unable to find image \"sha256:ab37b14bbcea0b07\"";
        assert_eq!(
            docker.retry_build(1, lost_image),
            Some(BuildRace::CachedImage)
        );
        assert_eq!(docker.retry_build(BUILD_ATTEMPTS, lost_image), None);
        assert_eq!(podman.build_race(lost_image), None);
        // Seen in CI: the step image a build had just made (a cache hit) removed before the
        // build committed the next step on top of it.
        let lost_parent = "Docker stream error: failed to export image: failed to set parent \
                           sha256:0a7cf41c7a44: unknown parent image ID sha256:0a7cf41c7a44";
        assert_eq!(
            docker.retry_build(1, lost_parent),
            Some(BuildRace::CachedImage)
        );
        assert_eq!(docker.retry_build(BUILD_ATTEMPTS, lost_parent), None);
        assert_eq!(podman.build_race(lost_parent), None);
        for final_failure in [
            "pull access denied for perstack-sandbox/nope, repository does not exist",
            "No such image: perstack-sandbox/bookworm:local",
            "The command '/bin/sh -c npm install' returned a non-zero code: 1",
        ] {
            assert_eq!(docker.build_race(final_failure), None, "{final_failure}");
        }
        assert!(BuildRace::Container.describe().contains("removed"));
    }
}
