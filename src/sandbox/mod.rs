//! The host controller: plans a run, builds images, starts containers, relays events, cleans up.

pub mod docker;
pub mod images;
pub mod labels;
pub mod plan;
