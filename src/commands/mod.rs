//! The work behind each subcommand. Each returns an [`crate::exit::Exit`] and prints its own
//! errors, so `main` stays a dispatcher.

mod artifacts;
pub mod doctor;
pub mod run;
pub mod validate;
