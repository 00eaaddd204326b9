//! What a run must not be able to change for the next run or for the host: the workspace is
//! written by a model that may be prompt-injected, and the controller, git and the user's tools
//! read it afterwards (SECURITY.md, "The workspace is untrusted input").
//!
//! `inputs.rs` is the one list of the files the controller reads and trusts, and of the
//! workspace paths that are protected from the containers that mount the workspace.

pub(crate) mod inputs;
