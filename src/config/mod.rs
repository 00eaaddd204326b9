//! `perstack.toml`: the model, its validation with file:line:col errors, discovery, env files.

pub mod schema;

pub use schema::*;
