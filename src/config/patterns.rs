//! The shapes Perstack requires of names, tags, env var names and domains (§1).
//!
//! Each matcher is written out by hand instead of compiling a regex at run time, so nothing here
//! can fail; the doc comment of each gives the regex it implements, which error messages quote.

/// The regex of an Expert name, as quoted in messages.
pub(crate) const EXPERT_NAME_PATTERN: &str = "^(@[a-z0-9][a-z0-9_-]*/)?[a-z0-9][a-z0-9_-]*$";
/// The regex of a tag, as quoted in messages.
pub(crate) const TAG_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";
/// The regex of an environment variable name, as quoted in messages.
pub(crate) const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// Longest Expert name Perstack accepts.
pub(crate) const MAX_EXPERT_NAME_LEN: usize = 255;

/// `[a-z0-9]` followed by `[a-z0-9]` or any of `extra`.
fn is_slug(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
}

/// Splits an optional leading `@scope/`; `None` when `@` has no `/` after it.
fn split_scope(s: &str) -> Option<(Option<&str>, &str)> {
    match s.strip_prefix('@') {
        Some(rest) => rest
            .split_once('/')
            .map(|(scope, name)| (Some(scope), name)),
        None => Some((None, s)),
    }
}

/// `^(@[a-z0-9][a-z0-9_-]*/)?[a-z0-9][a-z0-9_-]*$`
pub(crate) fn is_expert_name(s: &str) -> bool {
    const EXTRA: &[char] = &['_', '-'];
    split_scope(s).is_some_and(|(scope, name)| {
        scope.is_none_or(|scope| is_slug(scope, EXTRA)) && is_slug(name, EXTRA)
    })
}

/// `^((?:@[a-z0-9][a-z0-9_.-]*/)?[a-z0-9][a-z0-9_.-]*)(?:@semver|@[a-z0-9][a-z0-9_.-]*)?$`,
/// where `@semver` is `@` and a semver version.
pub(crate) fn is_expert_key(s: &str) -> bool {
    const EXTRA: &[char] = &['_', '.', '-'];
    let Some((scope, rest)) = split_scope(s) else {
        return false;
    };
    // The name part cannot hold `@`, so the first `@` after the scope starts the version or tag.
    let (name, suffix) = match rest.split_once('@') {
        Some((name, suffix)) => (name, Some(suffix)),
        None => (rest, None),
    };
    scope.is_none_or(|scope| is_slug(scope, EXTRA))
        && is_slug(name, EXTRA)
        && suffix.is_none_or(|v| is_slug(v, EXTRA) || semver::Version::parse(v).is_ok())
}

/// `^[a-z0-9][a-z0-9_-]*$`
pub(crate) fn is_tag(s: &str) -> bool {
    is_slug(s, &['_', '-'])
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why an `allowedDomains` entry is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DomainProblem {
    /// Does not match `^(\*\.)?L(\.L)*$`.
    Shape,
    /// A label starts with `xn--`.
    Punycode,
}

/// `^(\*\.)?L(\.L)*$` with `L = [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`, and no `xn--` label:
/// the proxy allowlist matches names as written, so a punycode label could spoof a lookalike.
pub(crate) fn check_allowed_domain(s: &str) -> Result<(), DomainProblem> {
    let name = s.strip_prefix("*.").unwrap_or(s);
    let labels_ok = name.split('.').all(|label| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
            _ => false,
        }
    });
    if !labels_ok {
        return Err(DomainProblem::Shape);
    }
    if name.split('.').any(|label| {
        label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    }) {
        return Err(DomainProblem::Punycode);
    }
    Ok(())
}

/// Parses a container memory size the way Docker does (`512m`, `2g`, `1.5g`, `1024`, `2GiB`,
/// `512mb`): a number, an optional `k|m|g|t` (powers of 1024) and an optional `b`/`ib`.
pub(crate) fn parse_memory_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let unit_start = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_start);
    let unit = unit.trim_start();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let digits_ok = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    match number.split_once('.') {
        None if digits_ok(number) => number.parse::<u64>().ok()?.checked_mul(multiplier),
        Some((whole, frac)) if digits_ok(whole) && digits_ok(frac) => {
            let value = number.parse::<f64>().ok()? * multiplier as f64;
            // Whole bytes only; f64 is exact far beyond any real memory size.
            (value.is_finite() && value < u64::MAX as f64).then_some(value as u64)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expert_names() {
        for ok in ["reviewer", "my-expert_2", "@org/x", "@my-org/a-b", "0"] {
            assert!(is_expert_name(ok), "{ok}");
        }
        for bad in [
            "Reviewer",
            "my.expert",
            "x@1.0.0",
            "@org",
            "@org/",
            "@/x",
            "-x",
            "_x",
            "",
            "@Org/x",
            "a/b",
            "@org/x/y",
        ] {
            assert!(!is_expert_name(bad), "{bad}");
        }
    }

    #[test]
    fn expert_keys() {
        for ok in [
            "reviewer",
            "my.expert",
            "x@1.0.0",
            "x@1.0.0-beta.1+build.5",
            "x@latest",
            "@org/x@2.1.0",
            "@org.io/x.y@next",
        ] {
            assert!(is_expert_key(ok), "{ok}");
        }
        // `x@1.0` passes: "1.0" is not semver but is a valid tag.
        assert!(is_expert_key("x@1.0"));
        for bad in ["Reviewer", "x@", "x@Latest", "@org", "x@1@2", "a/b", ""] {
            assert!(!is_expert_key(bad), "{bad}");
        }
    }

    #[test]
    fn tags_and_env_names() {
        assert!(is_tag("code-review") && is_tag("v2_x") && !is_tag("Code") && !is_tag("-x"));
        assert!(is_env_name("EXA_API_KEY") && is_env_name("_x1") && is_env_name("a"));
        assert!(
            !is_env_name("1X") && !is_env_name("A-B") && !is_env_name("") && !is_env_name("A B")
        );
    }

    #[test]
    fn allowed_domains() {
        for ok in [
            "api.github.com",
            "*.github.com",
            "localhost",
            "a-b.c0",
            "X.COM",
        ] {
            assert_eq!(check_allowed_domain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "-a.com",
            "a-.com",
            "api.*.com",
            "**.a.com",
            "a.com.",
            "a_b.com",
            "https://a.com",
            "a.com:443",
        ] {
            assert_eq!(
                check_allowed_domain(bad),
                Err(DomainProblem::Shape),
                "{bad}"
            );
        }
        for puny in ["xn--80ak6aa92e.com", "*.XN--p1ai", "a.xn--b.c"] {
            assert_eq!(
                check_allowed_domain(puny),
                Err(DomainProblem::Punycode),
                "{puny}"
            );
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("512m"), Some(512 << 20));
        assert_eq!(parse_memory_size("2g"), Some(2 << 30));
        assert_eq!(parse_memory_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_memory_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_memory_size("1048576"), Some(1 << 20));
        assert_eq!(parse_memory_size("64 mb"), Some(64 << 20));
        for bad in ["", "m", "2x", "1.g", ".5g", "1.2.3g", "-1g", "2 g b", "1e3"] {
            assert_eq!(parse_memory_size(bad), None, "{bad}");
        }
    }
}
