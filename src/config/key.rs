//! Perstack's Expert key grammar (`parseExpertKey`): `name`, `@scope/name`, each with an optional
//! `@1.2.3` (an exact semver version) or `@tag`. The version branch wins, so `a@1.2.3-rc.1` is a
//! version and `a@1.2` a tag, as upstream reads them. Ranges (`@^1`, `@~1.2`) are not in the
//! grammar: the Registry resolves only versions and tags, so they are refused with that reason.

use super::patterns::is_expert_key;

/// Longest key Perstack accepts.
const MAX_KEY_LEN: usize = 511;

/// A key, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExpertKey {
    /// The name, with its `@scope/` if any.
    pub name: String,
    /// What follows the name.
    pub reference: Reference,
}

/// Which release of `name` a key asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    /// Nothing: the Registry answers with its `latest`.
    Latest,
    /// `@1.2.3`: exactly that version, which never changes once published.
    Version(String),
    /// `@latest`, `@beta`, `@1.2`: whatever the tag points at now.
    Tag(String),
}

impl ExpertKey {
    /// The exact version, when the key pins one.
    pub(crate) fn pinned_version(&self) -> Option<&str> {
        match &self.reference {
            Reference::Version(version) => Some(version),
            Reference::Latest | Reference::Tag(_) => None,
        }
    }
}

/// Why a string is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// It does not match the grammar.
    #[error(
        "invalid expert key format: \"{0}\"; expected name, @scope/name, name@1.2.3 or name@tag \
         (lowercase letters, digits, '-', '_' and '.')"
    )]
    Grammar(String),
    /// It asks for a version range.
    #[error(
        "\"{0}\" asks for a version range; Perstack's Registry resolves only exact versions \
         (name@1.2.3) and tags (name@latest): pin a version, or run `install` and keep \
         perstack.lock to pin what a tag gave"
    )]
    Range(String),
    /// It is longer than Perstack allows.
    #[error("expert key \"{0}…\" is longer than {MAX_KEY_LEN} characters")]
    TooLong(String),
}

/// Splits `key`, or says what is wrong with it.
pub(crate) fn parse(key: &str) -> Result<ExpertKey, KeyError> {
    if key.chars().count() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.chars().take(40).collect()));
    }
    // The name cannot hold `@` except a leading scope's, so the next `@` starts the reference.
    let scope_len = if key.starts_with('@') {
        key.find('/').map_or(0, |slash| slash + 1)
    } else {
        0
    };
    let (name, suffix) = match key[scope_len..].split_once('@') {
        Some((name, suffix)) => (&key[..scope_len + name.len()], Some(suffix)),
        None => (key, None),
    };
    if !is_expert_key(key) {
        let range = suffix.is_some_and(|s| {
            s.starts_with(['^', '~', '<', '>', '=', '*']) || s.contains(['*', ' ', '|'])
        });
        if range && is_expert_key(name) {
            return Err(KeyError::Range(key.to_string()));
        }
        return Err(KeyError::Grammar(key.to_string()));
    }
    let reference = match suffix {
        None => Reference::Latest,
        Some(s) if semver::Version::parse(s).is_ok() => Reference::Version(s.to_string()),
        Some(s) => Reference::Tag(s.to_string()),
    };
    Ok(ExpertKey {
        name: name.to_string(),
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(key: &str) -> Reference {
        parse(key).expect(key).reference
    }

    #[test]
    fn keys_split_as_perstack_reads_them() {
        let key = parse("@acme/reviewer@1.2.0").expect("key");
        assert_eq!(key.name, "@acme/reviewer");
        assert_eq!(key.pinned_version(), Some("1.2.0"));
        assert_eq!(reference("tic-tac-toe"), Reference::Latest);
        assert_eq!(reference("a@latest"), Reference::Tag("latest".into()));
        // The version branch wins; what is not a whole version is a tag.
        assert_eq!(
            reference("a@1.2.3-rc.1+b"),
            Reference::Version("1.2.3-rc.1+b".into())
        );
        assert_eq!(reference("a@1.2"), Reference::Tag("1.2".into()));
        assert_eq!(parse("@s/n.x").expect("key").name, "@s/n.x");
    }

    #[test]
    fn what_is_not_a_key_says_why() {
        for bad in ["", "A", "@invalid", "a@", "a@B", "a b", "@/x", "a@1@2"] {
            assert_eq!(
                parse(bad),
                Err(KeyError::Grammar(bad.to_string())),
                "{bad:?}"
            );
        }
        for range in [
            "@acme/reviewer@^1",
            "a@~1.2",
            "a@>=1.0.0",
            "a@1.x || 2",
            "a@*",
        ] {
            assert_eq!(
                parse(range),
                Err(KeyError::Range(range.to_string())),
                "{range}"
            );
        }
        assert!(matches!(parse(&"a".repeat(512)), Err(KeyError::TooLong(_))));
        assert!(parse(&"a".repeat(511)).is_ok());
        let message = parse("@acme/reviewer@^1").expect_err("range").to_string();
        assert!(message.contains("only exact versions"), "{message}");
    }
}
