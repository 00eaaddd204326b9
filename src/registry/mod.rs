//! Perstack's Registry of published Experts (the key grammar, which perstack.toml's delegates
//! use too, is `config::key`): the HTTP API (`client.rs`), a definition checked against its schema and perstack.toml's rules
//! (`definition.rs`), the host cache of fetched versions (`cache.rs`), resolving the
//! Experts of a run's delegation closure that perstack.toml lacks (`resolve.rs`), and
//! perstack.lock: read and checked (`lock.rs`), built (`lock_entry.rs`) and written in
//! Perstack's TOML (`lock_toml.rs`).

pub(crate) mod cache;
pub(crate) mod client;
pub(crate) mod definition;
pub(crate) mod lock;
pub(crate) mod lock_entry;
pub(crate) mod lock_toml;
pub(crate) mod resolve;

#[cfg(test)]
mod tests;

pub(crate) use resolve::{ResolveError, Resolved, Sources, resolve, resolve_all};
