//! The labels on everything we create, so a run (or `gc`) can find and remove its resources.

/// Present (`true`) on every image, container and volume perstack-sandbox makes.
pub(crate) const MANAGED: &str = "io.perstack.sandbox.managed";
/// The run that created a container or volume.
pub(crate) const RUN_ID: &str = "io.perstack.sandbox.run-id";
/// The job of that run.
pub(crate) const JOB_ID: &str = "io.perstack.sandbox.job-id";
/// `runtime`, `skill` or `base-skill`.
pub(crate) const ROLE: &str = "io.perstack.sandbox.role";
/// The service name used in events (`runtime`, `skill:<name>`, `base-skill`).
pub(crate) const SERVICE: &str = "io.perstack.sandbox.service";
/// The controller that owns a container or volume (`host/boot-id/pid/start`, see
/// [`crate::ids::controller::ControllerId`]), so `gc` can tell live runs from orphans.
pub(crate) const CONTROLLER: &str = "io.perstack.sandbox.controller";
/// On a versioned runtime image: `sha256:<hex>` of the perstack.toml it was built from.
pub(crate) const CONFIG_DIGEST: &str = "io.perstack.sandbox.config-digest";
/// On a versioned runtime image: the images its run needs, as JSON (see
/// [`super::versioned::Manifest`]).
pub(crate) const NEEDED_IMAGES: &str = "io.perstack.sandbox.images";
/// On a versioned runtime image: the file's settings outside its Experts, as JSON.
pub(crate) const SETTINGS: &str = "io.perstack.sandbox.settings";
/// On the untagged image a skill's install stage leaves (the engine's build cache): the
/// repository of the skill image it was built for, so `gc --images` keeps only the newest
/// cache of each skill.
pub(crate) const CACHE_OF: &str = "io.perstack.sandbox.cache-of";
/// On the containers and socket volumes that mount the workspace: the placeholders the run
/// made there (JSON, see [`super::plan::Placeholder`]), so `gc` removes them after a controller
/// that died.
pub(crate) const PLACEHOLDERS: &str = "io.perstack.sandbox.placeholders";
/// On a standalone image (`build --standalone`): `true`; its ENTRYPOINT runs the Expert.
pub(crate) const STANDALONE: &str = "io.perstack.sandbox.standalone";
/// A standalone image's base: the image its skills' runtimes (Python, Node) come from, or
/// `scratch`.
pub(crate) const STANDALONE_BASE: &str = "io.perstack.sandbox.standalone-base";
/// On an image that carries our binary: which executable it is, `perstack-sandbox-roles` (the
/// in-container roles alone) or `perstack-sandbox` (the controller, when no roles executable
/// of its build was beside it).
pub(crate) const EXECUTABLE: &str = "io.perstack.sandbox.executable";
/// On an image that carries our binary: the id of the build it comes from
/// (`contract::build_id`).
pub(crate) const BUILD: &str = "io.perstack.sandbox.build";
/// A standalone image's skills built from their own Dockerfile: JSON, for each (`skill:<name>`)
/// its root and how the supervisor starts it there (`standalone::image::RecipeRoot`).
pub(crate) const STANDALONE_ROOTS: &str = "io.perstack.sandbox.standalone-roots";
/// The Expert an image belongs to.
pub(crate) const EXPERT: &str = "io.perstack.expert";
/// That Expert's version.
pub(crate) const EXPERT_VERSION: &str = "io.perstack.expert.version";

/// The label filter matching every resource of `run_id`.
pub(crate) fn run_filter(run_id: &str) -> String {
    format!("{RUN_ID}={run_id}")
}
