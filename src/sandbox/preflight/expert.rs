//! The Expert to run is defined in the file.

use super::Problem;
use crate::config::LoadedConfig;

/// The Expert `key` exists; otherwise the problem lists the ones that do.
pub(super) fn check_expert(loaded: &LoadedConfig, key: &str) -> Result<(), Problem> {
    let config = &loaded.config;
    if config.experts.contains_key(key) {
        return Ok(());
    }
    let known: Vec<&str> = config.experts.keys().map(String::as_str).collect();
    // A valid key was resolved from the Registry before preflight; this one is not a key.
    let why = crate::config::key::parse(key)
        .err()
        .map_or(String::new(), |e| {
            format!("; nor is it a Registry key: {e}")
        });
    Err(Problem {
        location: None,
        message: if known.is_empty() {
            format!(
                "unknown expert `{key}`: {} defines no Experts{why}",
                loaded.path.display()
            )
        } else {
            format!(
                "unknown expert `{key}`; Experts in {}: {}{why}",
                loaded.path.display(),
                known.join(", ")
            )
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    #[test]
    fn unknown_experts_list_the_known_ones() {
        let path = std::path::Path::new("/p/perstack.toml");
        let loaded = load_str(
            path,
            "[experts.main]\ninstruction = \"x\"\n[experts.helper]\ninstruction = \"x\"\n",
        )
        .expect("valid");
        assert_eq!(check_expert(&loaded, "main"), Ok(()));
        let problem = check_expert(&loaded, "mian").expect_err("unknown");
        assert_eq!(
            problem.message,
            "unknown expert `mian`; Experts in /p/perstack.toml: main, helper"
        );
        let empty = load_str(path, "").expect("valid");
        assert_eq!(
            check_expert(&empty, "main").expect_err("none").message,
            "unknown expert `main`: /p/perstack.toml defines no Experts"
        );
    }
}
