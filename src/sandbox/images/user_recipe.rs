//! A skill's own recipe: `[sandbox.skills."<name>"] dockerfile`, built with its folder as the
//! context into an image of its own, which is then the base of the skill's image — our binary
//! as the skill host, our user, our ENTRYPOINT — so the skill's container is made and hardened
//! exactly like every other skill's. The recipe's image is tagged by a digest of its context
//! (every file, the Dockerfile among them), so it is built once per content; nothing is pulled,
//! so its `FROM` must name an image the engine has.

use sha2::{Digest, Sha256};

use super::{ContextFile, slug};
use crate::sandbox::labels;

/// The label role of a recipe's image.
pub(crate) const RECIPE_ROLE: &str = "skill-recipe";

/// A user's Dockerfile and its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserRecipe {
    /// The skill it is for (names the image's repository).
    pub skill: String,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// The context's files, paths relative to it (the Dockerfile among them).
    pub files: Vec<ContextFile>,
}

impl UserRecipe {
    /// `perstack-sandbox/recipe-<skill>`.
    pub(crate) fn repository(&self) -> String {
        format!("perstack-sandbox/recipe-{}", slug(&self.skill))
    }

    /// sha256 over the Dockerfile's name and every file (path, mode, contents), each
    /// length-prefixed.
    fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        let mut feed = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        feed(b"perstack-sandbox recipe v1");
        feed(self.dockerfile.as_bytes());
        for file in &self.files {
            feed(file.path.as_bytes());
            feed(&file.mode.to_le_bytes());
            feed(&file.contents);
        }
        hex::encode(hasher.finalize())
    }

    /// The content-addressed tag of the recipe's image.
    pub(crate) fn tag(&self) -> String {
        format!("{}:{}", self.repository(), &self.digest()[..16])
    }

    /// The names of the variables the Dockerfile sets with `ENV` (`ENV K=V K2="v w"` and
    /// `ENV K V`): the skill host passes them to the server, whose environment it otherwise
    /// clears, so a recipe's own settings (`PYTHONPATH`, a tool's home) hold. They are the
    /// image's, never a secret of the run.
    pub(crate) fn env_names(&self) -> Vec<String> {
        let Some(file) = self.files.iter().find(|f| f.path == self.dockerfile) else {
            return vec![];
        };
        let text = String::from_utf8_lossy(&file.contents).replace("\\\n", " ");
        let mut names: Vec<String> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line
                .get(..4)
                .filter(|k| k.eq_ignore_ascii_case("ENV "))
                .map(|_| line[4..].trim())
            else {
                continue;
            };
            let first = rest.split_whitespace().next().unwrap_or_default();
            let found: Vec<&str> = if first.contains('=') {
                // `K=V` pairs: a name starts the text or follows whitespace.
                rest.split_whitespace()
                    .filter_map(|word| word.split_once('=').map(|(k, _)| k))
                    .collect()
            } else {
                vec![first]
            };
            for name in found {
                let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if valid && !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        names
    }

    /// The build context: the files as they are, but the Dockerfile ends with our labels (one
    /// `LABEL` line: the builder's `labels` option commits a layer per label), so the image is
    /// known as ours to `gc`.
    pub(crate) fn context_tar(&self) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dirs: Vec<String> = Vec::new();
        for file in &self.files {
            let mut contents = file.contents.to_vec();
            if file.path == self.dockerfile {
                contents.extend_from_slice(
                    format!(
                        "\nLABEL {}=true {}={RECIPE_ROLE}\n",
                        labels::MANAGED,
                        labels::ROLE
                    )
                    .as_bytes(),
                );
            }
            let mut parent = String::new();
            let parts: Vec<&str> = file.path.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                parent.push_str(part);
                parent.push('/');
                if !dirs.contains(&parent) {
                    dirs.push(parent.clone());
                    let mut header = super::tar_header(tar::EntryType::Directory, 0o755, 0);
                    builder.append_data(&mut header, &parent, std::io::empty())?;
                }
            }
            let mut header =
                super::tar_header(tar::EntryType::Regular, file.mode, contents.len() as u64);
            builder.append_data(&mut header, &file.path, &contents[..])?;
        }
        builder.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn recipe(server: &'static str) -> UserRecipe {
        UserRecipe {
            skill: "My Tool".into(),
            dockerfile: "Dockerfile".into(),
            files: vec![
                ContextFile {
                    path: "Dockerfile".into(),
                    mode: 0o644,
                    contents: Bytes::from_static(b"FROM base:local\nCOPY . /srv\n"),
                },
                ContextFile {
                    path: "src/server.py".into(),
                    mode: 0o644,
                    contents: Bytes::from_static(server.as_bytes()),
                },
            ],
        }
    }

    #[test]
    fn the_variables_the_dockerfile_sets_are_named() {
        let mut r = recipe("x");
        r.files[0].contents = Bytes::from_static(
            b"FROM base:local\nENV GREETING=hi TOOL_HOME=\"/srv/a b\"\nenv PYTHONPATH /srv\n\
              ENV A=1 \\\n    B=2\nRUN echo ENV X=1\n",
        );
        assert_eq!(
            r.env_names(),
            ["GREETING", "TOOL_HOME", "PYTHONPATH", "A", "B"]
        );
    }

    #[test]
    fn the_recipe_is_tagged_by_its_context_and_labelled_as_ours() {
        let a = recipe("one");
        assert!(a.tag().starts_with("perstack-sandbox/recipe-my-tool:"));
        assert_eq!(a.tag(), recipe("one").tag());
        assert_ne!(a.tag(), recipe("two").tag());
        let tar = a.context_tar().expect("tar");
        let mut archive = tar::Archive::new(&tar[..]);
        let mut names = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            if name == "Dockerfile" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).expect("read");
                assert!(text.starts_with("FROM base:local\nCOPY . /srv\n"), "{text}");
                assert!(
                    text.ends_with(
                        "\nLABEL io.perstack.sandbox.managed=true io.perstack.sandbox.role=skill-recipe\n"
                    ),
                    "{text}"
                );
            }
            names.push(name);
        }
        assert_eq!(names, ["Dockerfile", "src/", "src/server.py"]);
    }
}
