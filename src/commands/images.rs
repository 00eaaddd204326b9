//! `perstack-sandbox images`: our images with their Expert, version, size and age.

use crate::exit::Exit;
use crate::sandbox::engine::docker::{DockerClient, DockerError, ManagedImage};
use crate::sandbox::labels;

/// Why the images could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The engine did not answer or failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
}

impl From<&ImagesError> for Exit {
    fn from(error: &ImagesError) -> Exit {
        match error {
            ImagesError::Docker(_) => Exit::Docker,
        }
    }
}

/// Runs the command: one line per image, newest first.
pub async fn run() -> Result<Exit, ImagesError> {
    let docker = DockerClient::connect().await?;
    let images = docker.managed_images().await?;
    let now = crate::ids::now_ms() as i64 / 1000;
    print!("{}", table(&images, now));
    Ok(Exit::Success)
}

/// The listing, aligned in columns.
pub fn table(images: &[ManagedImage], now: i64) -> String {
    let mut rows = vec![[
        "IMAGE".to_string(),
        "ROLE".to_string(),
        "EXPERT".to_string(),
        "VERSION".to_string(),
        "SIZE".to_string(),
        "AGE".to_string(),
    ]];
    for image in images {
        let label = |key: &str| image.labels.get(key).cloned().unwrap_or_else(|| "-".into());
        rows.push([
            image
                .tags
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.chars().take(19).collect()),
            label(labels::ROLE),
            label(labels::EXPERT),
            label(labels::EXPERT_VERSION),
            human_size(image.size),
            human_age(now.saturating_sub(image.created)),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `57.3 MB` (decimal, like `docker images`).
pub fn human_size(bytes: i64) -> String {
    let bytes = bytes.max(0) as f64;
    match bytes {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} B"),
    }
}

/// `3 days`, `5 hours`, `12 minutes`, `40 seconds`.
pub fn human_age(seconds: i64) -> String {
    let (n, unit) = match seconds.max(0) {
        s if s >= 86_400 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        s if s >= 60 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_table_shows_expert_version_size_and_age() {
        let images = [
            ManagedImage {
                id: "sha256:aaaa".into(),
                tags: vec!["perstack-sandbox/runtime-demo:0123456789abcdef".into()],
                labels: HashMap::from([
                    (labels::ROLE.to_string(), "runtime".to_string()),
                    (labels::EXPERT.to_string(), "demo".to_string()),
                    (labels::EXPERT_VERSION.to_string(), "1.2.0".to_string()),
                ]),
                size: 57_300_000,
                created: 1_000,
            },
            ManagedImage {
                id: "sha256:bbbbbbbbbbbbbbbbbbbbbbbbb".into(),
                tags: vec![],
                labels: HashMap::from([(labels::ROLE.to_string(), "skill".to_string())]),
                size: 900,
                created: 1_000 - 3 * 86_400,
            },
        ];
        insta::assert_snapshot!(table(&images, 1_000 + 7_200), @r"
        IMAGE                                           ROLE     EXPERT  VERSION  SIZE     AGE
        perstack-sandbox/runtime-demo:0123456789abcdef  runtime  demo    1.2.0    57.3 MB  2 hours
        sha256:bbbbbbbbbbbb                             skill    -       -        900 B    3 days
        ");
    }
}
