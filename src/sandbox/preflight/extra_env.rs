//! `--env NAME`: each variable the user passes on to the runtime container is set.

use std::collections::BTreeMap;

use super::Problem;

/// Every `--env` name is set: returns them with their values, in the order given.
pub(super) fn check_extra_env(
    names: &[String],
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Vec<Problem>> {
    let mut passed = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        match env.get(name) {
            Some(value) => passed.push((name.clone(), value.clone())),
            None => problems.push(Problem {
                location: None,
                message: format!("--env {name}: {name} is not set (export it or add it to .env)"),
            }),
        }
    }
    if problems.is_empty() {
        Ok(passed)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_passed_on_must_be_set() {
        let env = BTreeMap::from([
            ("B".to_string(), "b".to_string()),
            ("A".to_string(), "a".to_string()),
        ]);
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            check_extra_env(&names(&["B", "A"]), &env),
            Ok(vec![
                ("B".to_string(), "b".to_string()),
                ("A".to_string(), "a".to_string())
            ])
        );
        let problems = check_extra_env(&names(&["A", "MISSING"]), &env).expect_err("missing");
        assert_eq!(
            problems,
            [Problem {
                location: None,
                message: "--env MISSING: MISSING is not set (export it or add it to .env)".into(),
            }]
        );
    }
}
