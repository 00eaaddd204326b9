//! Tests of the crate as a whole: its layering (`layering.rs`).

mod layering;
