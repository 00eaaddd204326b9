//! A project built into versioned images, for the tests of `build --tag`, `run --image` and
//! `export kubernetes` (`versioned.rs`, `export_k8s.rs`): its variable and repository named after
//! the test run, so the runtime and skill images built of it are the test's own.

use std::path::Path;
use std::process::{Command, Stdio};

use perstack_sandbox::test_support::docker::DockerGuard;

use super::{binary, require_docker};

/// The registry of `make test-registry`.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// Docker must answer, and the registry of `make test-registry`: a missing one is a failure that
/// says how to start it.
pub fn require_registry() -> bool {
    if !require_docker() {
        return false;
    }
    let answers = std::net::TcpStream::connect_timeout(
        &REGISTRY.parse().expect("address"),
        std::time::Duration::from_secs(2),
    )
    .is_ok();
    assert!(
        answers,
        "no registry answers on {REGISTRY}; start one with `make test-registry` (Debian's \
         docker-registry package, no auth, storage in /tmp), then run the tests again"
    );
    true
}

/// The id of the image `reference` names; `None` when there is none.
pub fn image_id(reference: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .expect("docker");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A project of one Expert in a folder of its own, and the version it is built as.
pub struct VersionedProject {
    /// The test run's id.
    pub id: String,
    /// The variable its skill needs: `<PREFIX>_<ID>`.
    pub var: String,
    /// `psbx-e2e-<id>`, on the registry when one is given.
    pub repository: String,
    /// `<repository>:1.0`.
    pub reference: String,
    /// The project's folder, where `write` put perstack.toml.
    pub dir: tempfile::TempDir,
    /// Every image of the repository, and the ones named since, go when the test ends, panics
    /// included.
    pub images: DockerGuard,
}

impl VersionedProject {
    /// A new project whose files `write` puts in its folder, given the variable's name.
    pub fn new(prefix: &str, registry: Option<&str>, write: fn(&Path, &str)) -> VersionedProject {
        let id = perstack_sandbox::test_support::internals::new_id();
        let var = format!("{prefix}_{}", id.to_uppercase());
        let repository = match registry {
            Some(registry) => format!("{registry}/psbx-e2e-{id}"),
            None => format!("psbx-e2e-{id}"),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), &var);
        let mut images = DockerGuard::new();
        images.repository(&repository);
        VersionedProject {
            reference: format!("{repository}:1.0"),
            id,
            var,
            repository,
            dir,
            images,
        }
    }

    /// `build <expert> --tag <reference>` with `extra` in the project's folder; fails the test
    /// with the build's stderr when it fails. Its stdout and stderr.
    pub fn build(&self, expert: &str, extra: &[&str]) -> (String, String) {
        let built = Command::new(binary())
            .args(["build", expert, "--tag", &self.reference])
            .args(extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("build");
        let stdout = String::from_utf8_lossy(&built.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&built.stderr).into_owned();
        assert!(built.status.success(), "build failed:\n{stderr}");
        (stdout, stderr)
    }

    /// The ids of the version's own images, the runtime's and its `probe` skill's (the
    /// base-skill and proxy images are shared with every test: only their tags go), each also
    /// removed when the test ends. Fails the test when one is not there.
    pub fn own_images(&mut self) -> (String, String) {
        let runtime = image_id(&self.reference).expect("the runtime image is tagged");
        let skill =
            image_id(&format!("{}-skill-probe", self.reference)).expect("the skill is tagged");
        self.images.image(&runtime).image(&skill);
        (runtime, skill)
    }
}
