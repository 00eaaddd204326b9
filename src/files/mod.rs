//! Files the controller keeps for the user: reached beneath a folder without following links
//! ([`beneath`]), and owned by the invoking user, also through `sudo` ([`owner`]). (The
//! workspace as a tar stream is `skill::base::archive`: it keeps base-skill's path rules and the
//! protected paths of `trust`, two layers above this one.)

pub(crate) mod beneath;
pub(crate) mod owner;

pub(crate) use beneath::FileError;
pub(crate) use beneath::{Beneath, Kind};
pub(crate) use owner::Owner;
