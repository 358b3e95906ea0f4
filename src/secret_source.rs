//! The one rule every credential flag follows: what a secret file or environment variable held
//! in, a secret or "none" out. Pure; callers read the file or variable, and say once why there
//! is no secret.
//!
//! A Kubernetes Secret key marked `optional` is either missing (the variable is unset, the
//! mounted file absent) or present and empty (`git-token: ""` in deploy/secret.yaml). Both mean
//! "no credential", never an error: a public repository needs no token, and an empty API token
//! turns the write endpoints off. A file path that does not exist stays an error, because a
//! path is something the user typed.

/// What one optional secret source held.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A non-blank value, trimmed.
    Value(String),
    /// Present but empty or only whitespace.
    Empty,
    /// The environment variable is not set.
    Unset,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("Value(***)"),
            SecretSource::Empty => f.write_str("Empty"),
            SecretSource::Unset => f.write_str("Unset"),
        }
    }
}

impl SecretSource {
    /// Classifies a raw value: `None` is an unset variable; blank is empty; anything else is
    /// the value without surrounding whitespace (a trailing newline in a file or Secret).
    pub fn of(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            None => SecretSource::Unset,
            Some("") => SecretSource::Empty,
            Some(value) => SecretSource::Value(value.to_string()),
        }
    }

    /// The environment variable `name`, classified. A value that is not UTF-8 counts as set
    /// and is kept lossily, so that it fails where it is used rather than vanishing.
    pub fn from_env(name: &str) -> Self {
        match std::env::var_os(name) {
            None => SecretSource::Unset,
            Some(raw) => SecretSource::of(Some(&raw.to_string_lossy())),
        }
    }

    /// The secret, when there is one.
    pub fn into_value(self) -> Option<String> {
        match self {
            SecretSource::Value(v) => Some(v),
            SecretSource::Empty | SecretSource::Unset => None,
        }
    }

    /// "is empty" or "is not set", for the one line that says why there is no secret.
    pub fn absence(&self) -> Option<&'static str> {
        match self {
            SecretSource::Value(_) => None,
            SecretSource::Empty => Some("is empty"),
            SecretSource::Unset => Some("is not set"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_but_empty_is_no_secret() {
        for (raw, want, value) in [
            (None, SecretSource::Unset, None),
            (Some(""), SecretSource::Empty, None),
            (Some(" \n"), SecretSource::Empty, None),
            (Some("tok"), SecretSource::Value("tok".into()), Some("tok")),
            (
                Some(" tok\n"),
                SecretSource::Value("tok".into()),
                Some("tok"),
            ),
        ] {
            let got = SecretSource::of(raw);
            assert_eq!(got, want, "{raw:?}");
            assert_eq!(got.absence().is_none(), value.is_some(), "{raw:?}");
            assert_eq!(got.into_value().as_deref(), value, "{raw:?}");
        }
    }

    #[test]
    fn a_value_never_prints() {
        assert_eq!(
            format!("{:?}", SecretSource::Value("hunter2".into())),
            "Value(***)"
        );
    }
}
