//! How a run's resources are named and labelled: `psbx-<first 12 characters of the run id>-…`,
//! and the labels that let `gc` and the run's cleanup find each of them.

use std::collections::BTreeMap;

use super::RunRequest;
use crate::sandbox::labels;

/// The names and labels of one run's resources.
pub(super) struct RunNames<'a> {
    request: &'a RunRequest,
    short_run: String,
}

impl<'a> RunNames<'a> {
    pub(super) fn new(request: &'a RunRequest) -> RunNames<'a> {
        RunNames {
            request,
            short_run: request.run_id.chars().take(12).collect(),
        }
    }

    /// `psbx-<short run id>-<suffix>`: a container, volume or network of this run.
    pub(super) fn name(&self, suffix: &str) -> String {
        format!("psbx-{}-{suffix}", self.short_run)
    }

    /// The labels of a resource of this run with `role` (`runtime`, `socket-volume`, …) that
    /// serves `service`.
    pub(super) fn labels(&self, role: &str, service: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::RUN_ID.to_string(), self.request.run_id.clone()),
            (labels::JOB_ID.to_string(), self.request.job_id.clone()),
            (labels::ROLE.to_string(), role.to_string()),
            (labels::SERVICE.to_string(), service.to_string()),
            (
                labels::CONTROLLER.to_string(),
                self.request.controller.clone(),
            ),
        ])
    }
}
