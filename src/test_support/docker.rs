//! The one guard over the Docker resources a test makes: containers, volumes and networks found
//! by a label, images named by reference or id, every tag of a repository, and images a test can
//! only recognise once they exist (a build stage left as cache). Dropping the guard removes them
//! all, also when the test panics, so a failed test leaves nothing behind either.
//!
//! It speaks to the engine through the `docker` CLI, not through the code under test.

use std::process::Command;

use crate::sandbox::labels;

/// Finds image ids or references when the guard is dropped.
type Finder = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// Docker resources a test made; all removed when dropped (panics included).
#[derive(Default)]
pub struct DockerGuard {
    /// Label filters (`key=value` or `key`): every container, volume and network carrying one.
    labels: Vec<String>,
    /// Image references or ids, in the order named.
    images: Vec<String>,
    /// Repositories whose every tag goes, as listed when dropped.
    repositories: Vec<String>,
    /// Images found when dropped.
    finders: Vec<Finder>,
}

impl DockerGuard {
    /// A guard over nothing yet.
    pub fn new() -> DockerGuard {
        DockerGuard::default()
    }

    /// A guard over every container, volume and network labelled with this job id: all that
    /// a run started with `--job-id <job_id>` creates.
    pub fn for_job(job_id: &str) -> DockerGuard {
        DockerGuard::new().labelled(&format!("{}={job_id}", labels::JOB_ID))
    }

    /// Also every container, volume and network matching the label filter `filter`
    /// (`key=value`, or `key` for any value).
    pub fn labelled(mut self, filter: &str) -> DockerGuard {
        self.labels.push(filter.to_string());
        self
    }

    /// Also this image (a reference or an id).
    pub fn image(&mut self, image: &str) -> &mut DockerGuard {
        self.images.push(image.to_string());
        self
    }

    /// Also every tag of `repository`, as listed when the guard is dropped.
    pub fn repository(&mut self, repository: &str) -> &mut DockerGuard {
        self.repositories.push(repository.to_string());
        self
    }

    /// Also the images `find` names when the guard is dropped: for images a test can only
    /// recognise once they exist.
    pub fn images_found_by(
        &mut self,
        find: impl Fn() -> Vec<String> + Send + Sync + 'static,
    ) -> &mut DockerGuard {
        self.finders.push(Box::new(find));
        self
    }

    /// The labelled containers, volumes and networks still in Docker, as `"<kind> <id>"`.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for kind in Kind::ALL {
            left.extend(
                self.labelled_ids(kind)
                    .map(|id| format!("{} {id}", kind.name())),
            );
        }
        left
    }

    fn labelled_ids(&self, kind: Kind) -> impl Iterator<Item = String> + '_ {
        self.labels.iter().flat_map(move |filter| {
            let filter = format!("label={filter}");
            lines(&[kind.list(), &["--filter", &filter]].concat())
        })
    }
}

impl Drop for DockerGuard {
    fn drop(&mut self) {
        // Containers first: they hold the volumes, networks and images. Containers again while
        // any are left: Podman refuses to remove one whose network namespace others join until
        // they are gone, and the docker CLI removes the ones named all at once.
        for _ in 0..3 {
            let ids: Vec<String> = self.labelled_ids(Kind::Container).collect();
            if ids.is_empty() {
                break;
            }
            remove(Kind::Container.remove(), &ids);
        }
        for kind in [Kind::Volume, Kind::Network] {
            let ids: Vec<String> = self.labelled_ids(kind).collect();
            remove(kind.remove(), &ids);
        }
        // Images built on others before their bases: what is found now (builds), then the
        // images named, the last named first.
        let mut images = Vec::new();
        for repository in &self.repositories {
            images.extend(tags_of(repository));
        }
        for find in &self.finders {
            images.extend(find());
        }
        images.extend(self.images.iter().rev().cloned());
        remove(&["rmi", "-f"], &images);
    }
}

/// The kinds of resource found by label, in the order they are removed.
#[derive(Clone, Copy)]
enum Kind {
    Container,
    Volume,
    Network,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Container, Kind::Volume, Kind::Network];

    fn name(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Volume => "volume",
            Kind::Network => "network",
        }
    }

    /// The command listing ids, before its `--filter`.
    fn list(self) -> &'static [&'static str] {
        match self {
            Kind::Container => &["ps", "-aq"],
            Kind::Volume => &["volume", "ls", "-q"],
            Kind::Network => &["network", "ls", "-q"],
        }
    }

    /// The command removing ids, before them.
    fn remove(self) -> &'static [&'static str] {
        match self {
            Kind::Container => &["rm", "-f", "-v"],
            Kind::Volume => &["volume", "rm", "-f"],
            Kind::Network => &["network", "rm"],
        }
    }
}

/// Every `repository:tag` of `repository`, read from the whole list and matched here: Podman's
/// answer to `docker images REPOSITORY` is every image when none matches, and each matching
/// image with all its other tags (a version tag shares base-skill's image), so a guard that
/// removed what the engine listed removed images other tests were using, and Podman's forced
/// removal took their containers with them.
fn tags_of(repository: &str) -> Vec<String> {
    lines(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .into_iter()
        .filter(|reference| in_repository(reference, repository))
        .collect()
}

/// Whether `reference` (`repository:tag` as listed) is a tag of `repository`; Podman lists
/// local names with `localhost/` or `docker.io/` in front.
fn in_repository(reference: &str, repository: &str) -> bool {
    let Some((listed, tag)) = reference.rsplit_once(':') else {
        return false;
    };
    if tag.contains('/') || tag == "<none>" {
        return false;
    }
    ["", "localhost/", "docker.io/", "docker.io/library/"]
        .iter()
        .any(|prefix| listed.strip_prefix(prefix) == Some(repository))
}

/// `docker <command> <ids>`, when there are any; failures are ignored (the resource may be
/// gone already).
fn remove(command: &[&str], ids: &[String]) {
    if !ids.is_empty() {
        let _ = Command::new("docker").args(command).args(ids).output();
    }
}

/// The non-empty lines `docker <args>` prints (none when it fails).
pub fn lines(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(args)
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::in_repository;

    #[test]
    fn a_repository_holds_only_its_own_tags_whatever_the_engine_lists() {
        let repo = "psbx-e2e-abc";
        assert!(in_repository("psbx-e2e-abc:1.0", repo));
        assert!(in_repository("psbx-e2e-abc:1.0-base-skill", repo));
        assert!(in_repository("localhost/psbx-e2e-abc:1.0", repo));
        assert!(in_repository("docker.io/psbx-e2e-abc:1.0", repo));
        // The other tags of a shared image, and everything else Podman lists.
        assert!(!in_repository(
            "perstack-sandbox/base-skill:8734e4d19c9e49d2",
            repo
        ));
        assert!(!in_repository(
            "localhost/perstack-sandbox/bookworm:local",
            repo
        ));
        assert!(!in_repository("psbx-e2e-abcd:1.0", repo));
        assert!(!in_repository("<none>:<none>", repo));
        let registry = "127.0.0.1:5000/psbx-e2e-abc";
        assert!(in_repository(
            "127.0.0.1:5000/psbx-e2e-abc:1.0-skill-probe",
            registry
        ));
        assert!(!in_repository("127.0.0.1:5000/psbx-e2e-abc", registry));
    }
}
