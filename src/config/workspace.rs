//! What perstack.toml's model knows of a workspace: the one folder in it that belongs to the
//! controller. `[sandbox] writable` may not name it (`validate.rs`); the job store lives in it
//! (`jobs::store`); base-skill hides and refuses it (`sandbox::plan`, `skill::base::paths`); the
//! protections list it (`trust::inputs`). It is defined here, the lowest layer that needs it
//! (ARCHITECTURE.md, "Layers"), and nowhere else.

/// The workspace's run-data folder (jobs, checkpoints), which the controller alone writes:
/// base-skill sees an empty read-only tmpfs there, and its path rules refuse it, so neither the
/// tools nor `exec`'d programs can read or change it.
pub(crate) const RESERVED_DIR: &str = "perstack";
