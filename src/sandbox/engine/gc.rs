//! Finding and removing what runs left behind: containers, volumes and networks whose
//! controller is gone (killed, crashed, or the machine rebooted), and — on request — image
//! versions that newer builds of the same image superseded.
//!
//! `run` sweeps stale resources when it starts; `perstack-sandbox gc` does it on demand.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::docker::{DockerClient, DockerError, Managed, ManagedImage, Removed};
use crate::ids::controller::{ControllerId, Liveness};
use crate::sandbox::images::INSTALL_STAGE_ROLE;
use crate::sandbox::labels;
use crate::sandbox::plan::Placeholder;

/// What `gc` is asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GcOptions {
    /// Also remove superseded image versions.
    pub images: bool,
    /// Report, remove nothing.
    pub dry_run: bool,
}

/// A run whose resources are orphans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaleRun {
    /// The run.
    pub run_id: String,
    /// Its job, when labelled.
    pub job_id: Option<String>,
    /// How many containers, volumes and networks it left.
    pub resources: usize,
    /// The placeholders it made in its workspace (from its resources' labels).
    pub placeholders: Vec<Placeholder>,
}

/// What a sweep found and did.
#[derive(Debug, Clone, Default)]
pub(crate) struct GcReport {
    /// Runs whose controller is gone.
    pub stale: Vec<StaleRun>,
    /// Resources of controllers on other machines sharing this engine, left alone.
    pub elsewhere: usize,
    /// What was removed (nothing on a dry run).
    pub removed: Removed,
    /// Superseded images (removed unless a dry run).
    pub images: Vec<ManagedImage>,
    /// Runs or images that could not be removed this time (another sweep at work, an image
    /// just put to use…), with why; the next sweep tries again.
    pub failures: Vec<String>,
}

/// Runs whose resources no live controller owns, and how many resources belong to
/// controllers elsewhere. `liveness` judges a controller label (injected for tests).
pub(crate) fn stale_runs(
    managed: &Managed,
    liveness: impl Fn(&str) -> Liveness,
) -> (Vec<StaleRun>, usize) {
    let mut runs: BTreeMap<&str, (Option<&str>, Option<&str>, usize)> = BTreeMap::new();
    let mut placeholders: BTreeMap<&str, Vec<Placeholder>> = BTreeMap::new();
    for resource in managed
        .containers
        .iter()
        .chain(&managed.volumes)
        .chain(&managed.networks)
    {
        let Some(run_id) = resource.labels.get(labels::RUN_ID) else {
            continue;
        };
        let entry = runs.entry(run_id).or_default();
        entry.2 += 1;
        if let Some(job) = resource.labels.get(labels::JOB_ID) {
            entry.0 = Some(job);
        }
        if let Some(controller) = resource.labels.get(labels::CONTROLLER) {
            entry.1 = Some(controller);
        }
        if let Some(made) = resource.labels.get(labels::PLACEHOLDERS) {
            let known = placeholders.entry(run_id).or_default();
            for placeholder in Placeholder::from_label(made) {
                if !known.contains(&placeholder) {
                    known.push(placeholder);
                }
            }
        }
    }
    let mut stale = Vec::new();
    let mut elsewhere = 0;
    for (run_id, (job_id, controller, resources)) in runs {
        // A resource without an owner was made by a version that did not record one, or its
        // labels were lost: nobody will ever clean it up but us.
        let state = controller.map_or(Liveness::Gone, &liveness);
        match state {
            Liveness::Alive => {}
            Liveness::Elsewhere => elsewhere += resources,
            Liveness::Gone => stale.push(StaleRun {
                run_id: run_id.to_string(),
                job_id: job_id.map(str::to_string),
                resources,
                placeholders: placeholders.remove(run_id).unwrap_or_default(),
            }),
        }
    }
    (stale, elsewhere)
}

/// Images that a newer image of the same repository superseded and no container uses. The
/// newest of each repository is always kept, and so is every image with a tag outside our
/// content-addressed `perstack-sandbox/…` repositories: a version someone named (`build --tag`,
/// or pulled by `run --image`) is theirs to remove.
///
/// Untagged images of ours were superseded too: they lost their tag to a newer build. The one
/// exception is the newest install-stage cache of each skill (labelled `cache-of`), which saves
/// the next build of that skill its downloads.
pub(crate) fn superseded_images(
    images: &[ManagedImage],
    in_use: &HashSet<String>,
) -> Vec<ManagedImage> {
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    for image in images {
        for repository in repositories(image) {
            let created = newest.entry(repository).or_insert(image.created);
            *created = (*created).max(image.created);
        }
    }
    let mut newest_cache: BTreeMap<&str, &ManagedImage> = BTreeMap::new();
    for image in images.iter().filter(|i| i.tags.is_empty()) {
        if let Some(skill) = cache_of(image) {
            let kept = newest_cache.entry(skill).or_insert(image);
            if (image.created, &image.id) > (kept.created, &kept.id) {
                *kept = image;
            }
        }
    }
    images
        .iter()
        .filter(|image| !in_use.contains(&image.id))
        .filter(|image| {
            if image.tags.is_empty() {
                return cache_of(image)
                    .and_then(|skill| newest_cache.get(skill))
                    .is_none_or(|kept| kept.id != image.id);
            }
            let repositories = repositories(image);
            !repositories.is_empty()
                && repositories.iter().all(|r| r.starts_with(OUR_REPOSITORIES))
                && repositories
                    .iter()
                    .all(|r| newest.get(r).is_some_and(|n| *n > image.created))
        })
        .cloned()
        .collect()
}

/// The skill image repository an install-stage cache was built for.
fn cache_of(image: &ManagedImage) -> Option<&str> {
    (image.labels.get(labels::ROLE).map(String::as_str) == Some(INSTALL_STAGE_ROLE))
        .then(|| image.labels.get(labels::CACHE_OF).map(String::as_str))
        .flatten()
}

/// The prefix of the repositories our content-addressed tags live in.
const OUR_REPOSITORIES: &str = "perstack-sandbox/";

fn repositories(image: &ManagedImage) -> BTreeSet<String> {
    image
        .tags
        .iter()
        .filter_map(|t| t.rsplit_once(':').map(|(repo, _)| repo.to_string()))
        .collect()
}

/// The liveness of a controller label as seen from this machine.
pub(crate) fn label_liveness(label: &str) -> Liveness {
    ControllerId::parse(label).map_or(Liveness::Gone, |id| id.liveness())
}

/// Finds, and unless `dry_run` removes, what dead controllers left behind.
pub(crate) async fn sweep(
    client: &DockerClient,
    options: GcOptions,
) -> Result<GcReport, DockerError> {
    let managed = client.managed().await?;
    let (stale, elsewhere) = stale_runs(&managed, label_liveness);
    let mut report = GcReport {
        stale,
        elsewhere,
        ..GcReport::default()
    };
    if !options.dry_run {
        for run in &report.stale {
            match client.remove_run(&run.run_id).await {
                Ok(removed) => {
                    // No container mounts them any more.
                    for (path, error) in super::placeholders::remove(&run.placeholders) {
                        let path = path.display();
                        report.failures.push(format!("placeholder {path}: {error}"));
                    }
                    report.removed.containers += removed.containers;
                    report.removed.volumes += removed.volumes;
                    report.removed.networks += removed.networks;
                }
                Err(error) => report.failures.push(format!("run {}: {error}", run.run_id)),
            }
        }
    }
    if options.images {
        let images = client.managed_images().await?;
        let in_use = client.images_in_use().await?;
        report.images = superseded_images(&images, &in_use);
        if !options.dry_run {
            for image in &report.images {
                if let Err(error) = client.remove_image(&image.id).await {
                    report.failures.push(format!("image {}: {error}", image.id));
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::engine::docker::Labelled;
    use std::collections::HashMap;

    fn resource(run: &str, controller: Option<&str>) -> Labelled {
        let mut labels = HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::RUN_ID.to_string(), run.to_string()),
            (labels::JOB_ID.to_string(), format!("job-of-{run}")),
        ]);
        if let Some(c) = controller {
            labels.insert(labels::CONTROLLER.to_string(), c.to_string());
        }
        Labelled {
            id: format!("{run}-{}", labels.len()),
            labels,
        }
    }

    #[test]
    fn runs_of_dead_controllers_are_stale_live_and_remote_ones_are_not() {
        let made = vec![Placeholder {
            path: "/ws/.env".into(),
            dir: false,
        }];
        let mut dead_base_skill = resource("dead", Some("gone"));
        dead_base_skill
            .labels
            .insert(labels::PLACEHOLDERS.to_string(), Placeholder::label(&made));
        let managed = Managed {
            containers: vec![
                resource("live", Some("alive")),
                dead_base_skill,
                resource("remote", Some("elsewhere")),
            ],
            volumes: vec![
                resource("dead", Some("gone")),
                resource("live", Some("alive")),
                // Only a volume is left of this one, and it has no owner label.
                resource("ownerless", None),
            ],
            networks: vec![resource("remote", Some("elsewhere"))],
        };
        let (stale, elsewhere) = stale_runs(&managed, |label| match label {
            "alive" => Liveness::Alive,
            "elsewhere" => Liveness::Elsewhere,
            _ => Liveness::Gone,
        });
        assert_eq!(
            stale,
            [
                StaleRun {
                    run_id: "dead".into(),
                    job_id: Some("job-of-dead".into()),
                    resources: 2,
                    placeholders: made,
                },
                StaleRun {
                    run_id: "ownerless".into(),
                    job_id: Some("job-of-ownerless".into()),
                    resources: 1,
                    placeholders: vec![],
                },
            ]
        );
        assert_eq!(elsewhere, 2);
    }

    fn image(id: &str, tags: &[&str], created: i64) -> ManagedImage {
        ManagedImage {
            id: id.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            labels: HashMap::new(),
            size: 1,
            created,
        }
    }

    #[test]
    fn only_older_unused_versions_of_a_repository_are_superseded() {
        let images = [
            image("new-runtime", &["perstack-sandbox/runtime-demo:bbb"], 30),
            image("old-runtime", &["perstack-sandbox/runtime-demo:aaa"], 10),
            image("older-in-use", &["perstack-sandbox/runtime-demo:000"], 5),
            image("only-skill", &["perstack-sandbox/skill-web:ccc"], 1),
            // Lost its tag to a newer build.
            image("untagged", &[], 0),
            image("untagged-in-use", &[], 0),
        ];
        let in_use = HashSet::from(["older-in-use".to_string(), "untagged-in-use".to_string()]);
        let ids: Vec<String> = superseded_images(&images, &in_use)
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["old-runtime", "untagged"]);
    }

    #[test]
    fn the_newest_install_cache_of_each_skill_is_kept() {
        let cache = |id: &str, skill: Option<&str>, created: i64| {
            let mut image = image(id, &[], created);
            image
                .labels
                .insert(labels::ROLE.into(), INSTALL_STAGE_ROLE.into());
            if let Some(skill) = skill {
                image.labels.insert(labels::CACHE_OF.into(), skill.into());
            }
            image
        };
        let images = [
            cache("time-new", Some("perstack-sandbox/skill-time"), 20),
            cache("time-old", Some("perstack-sandbox/skill-time"), 10),
            cache("web", Some("perstack-sandbox/skill-web"), 5),
            // From before caches said whose they are.
            cache("anonymous", None, 30),
        ];
        let ids: Vec<String> = superseded_images(&images, &HashSet::new())
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["time-old", "anonymous"]);
    }

    #[test]
    fn versions_someone_tagged_are_never_superseded() {
        let images = [
            image(
                "v2",
                &[
                    "perstack-sandbox/runtime-demo:bbb",
                    "127.0.0.1:5000/demo:2.0",
                ],
                30,
            ),
            // Also tagged as a version: kept, although its content tag is superseded.
            image(
                "v1",
                &[
                    "perstack-sandbox/runtime-demo:aaa",
                    "127.0.0.1:5000/demo:1.0",
                ],
                20,
            ),
            // Pulled: only the version's tag, older than the newest of its repository.
            image("v1-skill", &["127.0.0.1:5000/demo:1.0-skill-web"], 10),
            image("plain-old", &["perstack-sandbox/runtime-demo:000"], 5),
        ];
        let ids: Vec<String> = superseded_images(&images, &HashSet::new())
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["plain-old"]);
    }
}
