//! The one preflight check that asks the engine: every base image the run builds on is there.
//! Which images those are, and what to say about a missing one, is preflight's
//! (`preflight/base_images.rs`).

use std::collections::HashSet;

use super::docker::{DockerClient, DockerError};
use crate::config::Config;
use crate::sandbox::preflight::{Problems, base_images, missing_base_images};

/// Every base image `expert_key`'s run builds on is on this engine. Runs right after connecting,
/// before anything is created or recorded. The outer error is the engine's; the inner one, the
/// missing images.
pub(crate) async fn check_base_images(
    docker: &DockerClient,
    config: &Config,
    expert_key: &str,
) -> Result<Result<(), Problems>, DockerError> {
    let uses = base_images(config, expert_key);
    let mut present = HashSet::new();
    for u in &uses {
        if docker.image_id(&u.image).await?.is_some() {
            present.insert(u.image.clone());
        }
    }
    let problems = missing_base_images(&uses, |image| present.contains(image));
    Ok(if problems.is_empty() {
        Ok(())
    } else {
        Err(Problems(problems))
    })
}
