//! The mock provider's script: configured, readable, and naming only Experts the file defines
//! — or, for `run --image`, baked into the image.

use super::{Problem, location};
use crate::config::{LoadedConfig, ProviderName};
use crate::llm::mock::MockScript;

/// The script a run with `provider` needs: none unless it is `mock`; then `baked` when the
/// Expert comes from a versioned image (`Some(None)`: built without one), else the file's
/// `[provider] setting.script`, read and checked.
pub(super) fn check_mock_script(
    loaded: &LoadedConfig,
    provider: ProviderName,
    baked: Option<Option<MockScript>>,
) -> Result<Option<MockScript>, Vec<Problem>> {
    match (provider == ProviderName::Mock, baked) {
        (false, _) => Ok(None),
        (true, None) => load_mock_script(loaded).map(Some),
        (true, Some(Some(script))) => Ok(Some(script)),
        (true, Some(None)) => Err(vec![Problem {
            location: None,
            message: format!(
                "provider `mock` needs a script, and {} was built without one (its perstack.toml's provider is not `mock`)",
                loaded.path.display()
            ),
        }]),
    }
}

/// Reads the file's mock script, relative to the file's folder.
fn load_mock_script(loaded: &LoadedConfig) -> Result<MockScript, Vec<Problem>> {
    let Some(path) = loaded.mock_script_path() else {
        return Err(vec![Problem {
            location: location(loaded, "provider"),
            message: "provider `mock` needs a script: add `[provider] providerName = \"mock\"` with `setting = { script = \"<file>\" }` to perstack.toml".to_string(),
        }]);
    };
    let script = MockScript::load(&path).map_err(|error| {
        vec![Problem {
            location: location(loaded, "provider.setting.script"),
            message: error.to_string(),
        }]
    })?;
    let problems: Vec<Problem> = script
        .named_experts()
        .filter(|expert| !loaded.config.experts.contains_key(*expert))
        .map(|expert| Problem {
            location: Some(path.display().to_string()),
            message: format!(
                "mock script names expert `{expert}`, which perstack.toml does not define"
            ),
        })
        .collect();
    if problems.is_empty() {
        Ok(script)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = "[provider]\nproviderName = \"mock\"\nsetting = { script = \"script.toml\" }\n\
                          [experts.main]\ninstruction = \"x\"\n";

    fn checked(script: Option<&str>) -> Result<Option<MockScript>, Vec<String>> {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(script) = script {
            std::fs::write(dir.path().join("script.toml"), script).expect("script");
        }
        let loaded = load_str(&dir.path().join("perstack.toml"), CONFIG).expect("valid");
        check_mock_script(&loaded, ProviderName::Mock, None)
            .map_err(|problems| problems.into_iter().map(|p| p.message).collect())
    }

    #[test]
    fn a_bad_or_missing_mock_script_is_a_problem() {
        let problems = checked(None).expect_err("no script");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("cannot read mock script ")),
            "{problems:?}"
        );
        let problems =
            checked(Some("[[turn]]\nexpert = \"ghost\"\ntext = \"x\"\n")).expect_err("ghost");
        assert!(
            problems
                .iter()
                .any(|p| p
                    == "mock script names expert `ghost`, which perstack.toml does not define"),
            "{problems:?}"
        );
        let script = checked(Some("[[turn]]\ntext = \"hi\"\n")).expect("a script");
        assert_eq!(script.map(|s| s.turns.len()), Some(1));
    }

    #[test]
    fn only_the_mock_provider_needs_one_and_a_baked_one_is_used_as_is() {
        let loaded = load_str(
            std::path::Path::new("/nowhere/perstack.toml"),
            "[experts.main]\ninstruction = \"x\"\n",
        )
        .expect("valid");
        assert_eq!(
            check_mock_script(&loaded, ProviderName::Anthropic, None),
            Ok(None)
        );
        let problems = check_mock_script(&loaded, ProviderName::Mock, None).expect_err("none");
        assert!(
            problems[0]
                .message
                .starts_with("provider `mock` needs a script: add")
        );
        let baked = MockScript::parse(std::path::Path::new("baked"), "[[turn]]\ntext = \"hi\"\n")
            .expect("script");
        assert_eq!(
            check_mock_script(&loaded, ProviderName::Mock, Some(Some(baked.clone()))),
            Ok(Some(baked))
        );
        let problems =
            check_mock_script(&loaded, ProviderName::Mock, Some(None)).expect_err("not baked");
        assert_eq!(
            problems[0].message,
            "provider `mock` needs a script, and /nowhere/perstack.toml was built without one (its perstack.toml's provider is not `mock`)"
        );
    }
}
