//! Test support shared by the unit tests in `src/` and the end-to-end tests in `tests/e2e/`: the
//! one HTTP server every test that needs one answers requests with ([`http`], with scripted
//! replies in [`replies`]), and the guard that removes the Docker resources a test made, also
//! when it panics ([`docker`]).
//!
//! It is part of the library, not of `tests/`, because a unit test module cannot import
//! `tests/e2e/support` while an integration test can import the library. It is compiled only
//! with the `test-support` feature, which the package's dev-dependency on itself turns on for
//! test, bench and example builds (see Cargo.toml): `cargo build` and the release binary never
//! contain it. Handlers that only one side uses stay with it: the mock LLM and the npm registry
//! in `tests/e2e/support/`, the MCP-over-HTTP server in `src/skill/http_fixture.rs`.
//!
//! The end-to-end tests reach the crate's own modules only through [`internals`], which
//! re-exports exactly what they use: the crate keeps everything else `pub(crate)`.
//!
//! A failure here is the calling test's failure, so these helpers panic with a message rather
//! than return errors.

pub mod docker;
pub mod fake_registry;
pub mod http;
pub mod internals;
pub mod replies;
