//! Value types of the settings that check their own rule when they are
//! read, so a value that breaks it cannot be represented: the error names the
//! key and the rule. Cross-field and per-environment rules stay in
//! `Settings::validate`.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, ENV_SELECTOR};

/// Which environment file is layered over the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }

    /// Reads `SYNC_HOSTAWAY_ENV`; `development` when unset.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        match std::env::var(ENV_SELECTOR) {
            Ok(value) if !value.trim().is_empty() => value.parse(),
            _ => Ok(Environment::Development),
        }
    }
}

impl FromStr for Environment {
    type Err = ConfigError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "test" => Ok(Environment::Test),
            "production" | "prod" => Ok(Environment::Production),
            other => Err(ConfigError::UnknownEnvironment(other.to_string())),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret read from config. Prints as `[REDACTED]`; empty means "not set".
#[derive(Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn is_set(&self) -> bool {
        !self.expose().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_set() {
            f.write_str("[REDACTED]")
        } else {
            f.write_str("[unset]")
        }
    }
}

/// The database URL: `sqlite:…`, `postgres://…` or `postgresql://…`. A
/// secret (it may carry a password).
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "Secret")]
pub struct DatabaseUrl(Secret);

impl TryFrom<Secret> for DatabaseUrl {
    type Error = &'static str;
    fn try_from(url: Secret) -> Result<Self, Self::Error> {
        let raw = url.expose();
        if raw.starts_with("sqlite:")
            || raw.starts_with("postgres://")
            || raw.starts_with("postgresql://")
        {
            Ok(DatabaseUrl(url))
        } else {
            Err("must start with sqlite:, postgres:// or postgresql://")
        }
    }
}

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Result<Self, &'static str> {
        Secret::new(url).try_into()
    }
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
    pub fn is_sqlite(&self) -> bool {
        self.expose().starts_with("sqlite:")
    }
}

/// A share between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Ratio(f64);

impl TryFrom<f64> for Ratio {
    type Error = &'static str;
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        if (0.0..=1.0).contains(&value) {
            Ok(Ratio(value))
        } else {
            Err("must be between 0 and 1")
        }
    }
}

impl Ratio {
    pub fn get(self) -> f64 {
        self.0
    }
}

/// A positive, finite number of seconds (fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Seconds(f64);

impl TryFrom<f64> for Seconds {
    type Error = &'static str;
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        if value > 0.0 && value.is_finite() && value < 1e9 {
            Ok(Seconds(value))
        } else {
            Err("must be a positive number of seconds")
        }
    }
}

impl Seconds {
    pub fn get(self) -> f64 {
        self.0
    }
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

/// Text that names its own rule: an absolute URL, an optional one, a
/// lower-case identifier, a tracing filter, a non-empty string.
macro_rules! checked_text {
    ($(#[$doc:meta])* $name:ident, $check:expr, $rule:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = &'static str;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                let check: fn(&str) -> bool = $check;
                if check(&value) { Ok($name(value)) } else { Err($rule) }
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

checked_text!(
    /// An absolute URL.
    AbsoluteUrl,
    |v| url::Url::parse(v).is_ok(),
    "must be an absolute URL"
);
checked_text!(
    /// An absolute URL, or empty for "off".
    OptionalUrl,
    |v| v.is_empty() || url::Url::parse(v).is_ok(),
    "must be an absolute URL or empty"
);
checked_text!(
    /// A PostgreSQL identifier that never needs quoting.
    Identifier,
    is_identifier,
    "must be a lower-case identifier (a-z, 0-9, _, not starting with a digit, at most 63 characters)"
);
checked_text!(
    /// A tracing filter (EnvFilter / RUST_LOG syntax).
    Filter,
    |v| tracing_subscriber::EnvFilter::try_new(v).is_ok(),
    "is not a valid filter"
);
checked_text!(
    /// Text that is not blank.
    NonEmpty,
    |v| !v.trim().is_empty(),
    "must not be empty"
);

fn is_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !value.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Secret::default()), "[unset]");
        let url = DatabaseUrl::new("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(DatabaseUrl::new("mysql://x").is_err());
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("hostaway"));
        assert!(is_identifier("it_abc_123"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier("a; drop"));
        assert!(
            !is_identifier("Hostaway"),
            "mixed case would need quoting everywhere"
        );
    }

    #[test]
    fn numbers_keep_their_range() {
        assert!(Ratio::try_from(1.0).is_ok());
        assert!(Ratio::try_from(1.5).is_err());
        assert!(Ratio::try_from(f64::NAN).is_err());
        assert!(Seconds::try_from(0.5).is_ok());
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            assert!(Seconds::try_from(bad).is_err(), "{bad}");
        }
        assert!(AbsoluteUrl::try_from("not a url".to_string()).is_err());
        assert!(OptionalUrl::try_from(String::new()).is_ok());
        assert!(Filter::try_from("info,h2=warn".to_string()).is_ok());
    }
}
