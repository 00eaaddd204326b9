//! Files the controller keeps for the user: reached beneath a folder without following links
//! ([`beneath`]), and owned by the invoking user, also through `sudo` ([`owner`]); and a
//! workspace as a tar stream, both ways, under base-skill's path rules ([`archive`]).

pub(crate) mod archive;
pub(crate) mod beneath;
pub(crate) mod owner;

pub(crate) use beneath::FileError;
pub(crate) use beneath::{Beneath, Kind};
pub(crate) use owner::Owner;
