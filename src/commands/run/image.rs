//! `run --image REF`: the Expert of a versioned image (`perstack-sandbox build --tag REF`), in
//! place of perstack.toml. See `sandbox/versioned.rs` for what the image records.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::LoadedConfig;
use crate::contract::paths::SPEC_PATH;
use crate::contract::spec::RuntimeSpec;
use crate::ids::controller::ControllerId;
use crate::llm::mock::MockScript;
use crate::sandbox::engine::docker::DockerClient;
use crate::sandbox::labels;
use crate::sandbox::plan::RunPlan;
use crate::sandbox::versioned::{self, ImageRef, Manifest, VersionedError};

use super::notice::Notice;
use super::{Notify, RunError};

/// A versioned runtime image, read: what a run needs in place of perstack.toml.
pub(crate) struct ImageSource {
    /// The runtime image.
    pub reference: ImageRef,
    /// Its image id.
    pub runtime_id: String,
    /// What its labels record.
    pub manifest: Manifest,
    /// The config rebuilt from the labels and the baked spec.
    pub loaded: LoadedConfig,
    /// The mock script baked into it, if any.
    pub mock_script: Option<MockScript>,
}

impl ImageSource {
    /// Finds the image (pulling it when it is not here, which `notify` hears of), reads its
    /// labels and its baked runtime spec.
    pub(crate) async fn open(
        reference: &str,
        verbose: bool,
        notify: Notify<'_>,
    ) -> Result<ImageSource, RunError> {
        let image = ImageRef::parse(reference)?;
        let name = image.to_string();
        let docker = DockerClient::connect().await?;
        let (runtime_id, image_labels) = match docker.image_labels(&name).await? {
            Some(found) => found,
            None => {
                notify(Notice::Pulling {
                    image: name.clone(),
                });
                docker
                    .pull_image(&name, |line| {
                        if verbose {
                            notify(Notice::PullProgress(line.to_string()));
                        }
                    })
                    .await?;
                docker
                    .image_labels(&name)
                    .await?
                    .ok_or_else(|| RunError::PulledButUnknown(name.clone()))?
            }
        };
        let manifest = Manifest::from_labels(&name, &image_labels)?;
        // The container that reads the spec never starts; it is labelled like a run's so that
        // `gc` removes it if we die before we do.
        let reader_labels = BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::RUN_ID.to_string(), crate::ids::new_id()),
            (labels::ROLE.to_string(), "spec-reader".to_string()),
            (
                labels::CONTROLLER.to_string(),
                ControllerId::current().to_string(),
            ),
        ]);
        let bytes = docker
            .read_image_file(&name, SPEC_PATH, &reader_labels)
            .await?;
        let spec: RuntimeSpec =
            serde_json::from_slice(&bytes).map_err(|e| VersionedError::BadSpec {
                reference: name.clone(),
                message: e.to_string(),
            })?;
        let config = manifest.config(&name, &spec)?;
        Ok(ImageSource {
            runtime_id,
            manifest,
            loaded: LoadedConfig::from_config(PathBuf::from(format!("image {name}")), config),
            mock_script: spec.mock_script,
            reference: image,
        })
    }

    /// The Expert to run: the image's. Naming another one is a usage error.
    pub(crate) fn expert(&self, given: &str) -> Result<String, VersionedError> {
        if given.is_empty() || given == self.manifest.expert {
            Ok(self.manifest.expert.clone())
        } else {
            Err(VersionedError::OtherExpert {
                reference: self.reference.to_string(),
                fixed: self.manifest.expert.clone(),
                given: given.to_string(),
            })
        }
    }

    /// Points the plan at the versioned images instead of building any.
    pub(crate) fn pin(&self, plan: &mut RunPlan) -> Result<(), VersionedError> {
        plan.prebuilt = Some(versioned::pin(
            plan,
            &self.manifest,
            &self.reference,
            &self.runtime_id,
        )?);
        Ok(())
    }
}
