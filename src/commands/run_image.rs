//! `run --image REF`: the Expert of a versioned image (`perstack-sandbox build --tag REF`), in
//! place of perstack.toml. See `sandbox/versioned.rs` for what the image records.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::LoadedConfig;
use crate::contract::paths::SPEC_PATH;
use crate::contract::spec::RuntimeSpec;
use crate::exit::Exit;
use crate::llm::mock::MockScript;
use crate::sandbox::engine::controller::ControllerId;
use crate::sandbox::engine::docker::DockerClient;
use crate::sandbox::labels;
use crate::sandbox::plan::RunPlan;
use crate::sandbox::versioned::{self, ImageRef, Manifest, VersionedError};

/// A versioned runtime image, read: what a run needs in place of perstack.toml.
pub struct ImageSource {
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
    /// Finds the image (pulling it when it is not here), reads its labels and its baked
    /// runtime spec. Errors are printed here; gives the exit code.
    pub async fn open(reference: &str, verbose: bool) -> Result<ImageSource, Exit> {
        let usage = |error: VersionedError| {
            eprintln!("error: {error}");
            Exit::Usage
        };
        let docker_error = |error: crate::sandbox::engine::docker::DockerError| {
            eprintln!("error: {error}");
            Exit::Docker
        };
        let image = ImageRef::parse(reference).map_err(usage)?;
        let name = image.to_string();
        let docker = DockerClient::connect().await.map_err(docker_error)?;
        let found = match docker.image_labels(&name).await.map_err(docker_error)? {
            Some(found) => found,
            None => {
                eprintln!("note: {name} is not here; pulling it");
                docker
                    .pull_image(&name, |line| {
                        if verbose {
                            eprintln!("  {line}");
                        }
                    })
                    .await
                    .map_err(docker_error)?;
                match docker.image_labels(&name).await.map_err(docker_error)? {
                    Some(found) => found,
                    None => {
                        eprintln!("error: {name} was pulled but the engine does not know it");
                        return Err(Exit::Docker);
                    }
                }
            }
        };
        let (runtime_id, image_labels) = found;
        let manifest = Manifest::from_labels(&name, &image_labels).map_err(usage)?;
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
            .await
            .map_err(docker_error)?;
        let spec: RuntimeSpec = serde_json::from_slice(&bytes)
            .map_err(|e| VersionedError::BadSpec {
                reference: name.clone(),
                message: e.to_string(),
            })
            .map_err(usage)?;
        let config = manifest.config(&name, &spec).map_err(usage)?;
        Ok(ImageSource {
            runtime_id,
            manifest,
            loaded: LoadedConfig::from_config(PathBuf::from(format!("image {name}")), config),
            mock_script: spec.mock_script,
            reference: image,
        })
    }

    /// The Expert to run: the image's. Naming another one is a usage error.
    pub fn expert(&self, given: &str) -> Result<String, VersionedError> {
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
    pub fn pin(&self, plan: &mut RunPlan) -> Result<(), VersionedError> {
        plan.prebuilt = Some(versioned::pin(
            plan,
            &self.manifest,
            &self.reference,
            &self.runtime_id,
        )?);
        Ok(())
    }
}
