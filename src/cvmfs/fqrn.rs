//! Fully qualified repository names, by stock's rule (`is_valid_repo_name` in
//! `cvmfs_server_util.sh`): 1 to 60 bytes of ASCII letters, digits, `_`, `.` and `-`,
//! starting with a letter or a digit. Every name that comes in (mkfs, mount, the
//! provisioner's configuration and requests, CSI volume ids) is checked here: it becomes a
//! path in caches and mount trees, and the rule keeps `/`, `..` and a leading `.` out.

/// The longest name stock accepts.
pub const MAX_LEN: usize = 60;

/// Why a repository name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FqrnError {
    /// The name is empty.
    #[error("invalid repository name: it is empty")]
    Empty,
    /// Longer than [`MAX_LEN`] bytes; carries the (clipped) name.
    #[error("invalid repository name {0:?}: longer than {MAX_LEN} bytes")]
    TooLong(String),
    /// Does not start with an ASCII letter or digit.
    #[error("invalid repository name {0:?}: it must start with a letter or a digit")]
    BadStart(String),
    /// Holds a byte other than ASCII letters, digits, `_`, `.` and `-`.
    #[error(
        "invalid repository name {0:?}: only letters, digits, '_', '.' and '-' are allowed (like a host name)"
    )]
    BadCharacter(String),
}

/// Checks `fqrn` against stock's rule.
pub fn validate(fqrn: &str) -> Result<(), FqrnError> {
    // Names in messages are clipped: a hostile one may be long.
    let shown = || fqrn.chars().take(80).collect::<String>();
    let Some(first) = fqrn.bytes().next() else {
        return Err(FqrnError::Empty);
    };
    if fqrn.len() > MAX_LEN {
        return Err(FqrnError::TooLong(shown()));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(FqrnError::BadStart(shown()));
    }
    if !fqrn
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(FqrnError::BadCharacter(shown()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's own cases (`test_cvmfs_server_util.sh`), and names that must never become
    /// paths.
    #[test]
    fn stock_rule() {
        let sixty = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQERSTUVWXYZ0123456";
        for good in ["test", "test_1-dash.cern.ch", sixty, "Demo.org", "a..b"] {
            assert_eq!(validate(good), Ok(()), "{good}");
        }
        assert_eq!(validate(""), Err(FqrnError::Empty));
        assert!(matches!(
            validate(&format!("{sixty}7")),
            Err(FqrnError::TooLong(_))
        ));
        assert!(matches!(
            validate("_test.cern.ch"),
            Err(FqrnError::BadStart(_))
        ));
        assert!(matches!(validate(".a"), Err(FqrnError::BadStart(_))));
        assert!(matches!(validate(".."), Err(FqrnError::BadStart(_))));
        for bad in ["test_@1-dash.cern.ch", "a/b", "a b", "a\0b", "aä.org"] {
            assert!(
                matches!(validate(bad), Err(FqrnError::BadCharacter(_))),
                "{bad:?}"
            );
        }
    }
}
