//! Configuration of the Hostaway simulator: accounts, dataset size, rate
//! limits, token timing and webhook delivery timing. Everything has a default
//! that mirrors real Hostaway, so `SimConfig::default()` is a faithful account.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::behaviour::Behaviour;

/// One simulated Hostaway account: the account id doubles as the OAuth
/// `client_id`, the secret is the `client_secret`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimAccount {
    pub account_id: i64,
    pub client_secret: String,
}

impl SimAccount {
    pub fn new(account_id: i64, client_secret: impl Into<String>) -> Self {
        SimAccount {
            account_id,
            client_secret: client_secret.into(),
        }
    }
}

/// Never prints the secret, so configs can be logged.
impl fmt::Debug for SimAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimAccount")
            .field("account_id", &self.account_id)
            .field("client_secret", &"****")
            .finish()
    }
}

/// How many objects of each kind an account is generated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSize {
    pub listings: usize,
    pub reservations: usize,
    /// One conversation per reservation for the first `conversations`
    /// reservations; capped at the reservation count.
    pub conversations: usize,
    pub messages_per_conversation: usize,
}

impl DatasetSize {
    /// Largest sizes the id scheme (see `dataset`) can hold without ids of
    /// two accounts colliding.
    pub const MAX_LISTINGS: usize = 9_999;
    pub const MAX_RESERVATIONS: usize = 499_999;
    pub const MAX_CONVERSATIONS: usize = 99_999;
    pub const MAX_MESSAGES_PER_CONVERSATION: usize = 999;

    /// Explains the first size the id scheme cannot hold, if any.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            ("listings", self.listings, Self::MAX_LISTINGS),
            ("reservations", self.reservations, Self::MAX_RESERVATIONS),
            ("conversations", self.conversations, Self::MAX_CONVERSATIONS),
            (
                "messages_per_conversation",
                self.messages_per_conversation,
                Self::MAX_MESSAGES_PER_CONVERSATION,
            ),
        ];
        for (name, value, max) in checks {
            if value > max {
                return Err(format!("{name} = {value} exceeds the maximum of {max}"));
            }
        }
        if self.listings == 0 && self.reservations > 0 {
            return Err("reservations need at least one listing".to_string());
        }
        Ok(())
    }

    /// The size actually generated: every count within the id scheme's
    /// limits, no reservations without listings, and no more conversations
    /// than reservations.
    pub fn normalized(self) -> Self {
        let listings = self.listings.min(Self::MAX_LISTINGS);
        let reservations = if listings == 0 {
            0
        } else {
            self.reservations.min(Self::MAX_RESERVATIONS)
        };
        DatasetSize {
            listings,
            reservations,
            conversations: self
                .conversations
                .min(reservations)
                .min(Self::MAX_CONVERSATIONS),
            messages_per_conversation: self
                .messages_per_conversation
                .min(Self::MAX_MESSAGES_PER_CONVERSATION),
        }
    }
}

impl Default for DatasetSize {
    fn default() -> Self {
        DatasetSize {
            listings: 20,
            reservations: 100,
            conversations: 100,
            messages_per_conversation: 4,
        }
    }
}

/// `requests` accepted per trailing `per_seconds` window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimLimit {
    pub requests: u32,
    pub per_seconds: f64,
}

impl SimLimit {
    pub fn new(requests: u32, per_seconds: f64) -> Self {
        SimLimit {
            requests,
            per_seconds,
        }
    }

    /// The window length; zero for a window that cannot be represented
    /// (rejected earlier by `validate`).
    pub fn window(&self) -> Duration {
        Duration::try_from_secs_f64(self.per_seconds).unwrap_or(Duration::ZERO)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.per_seconds.is_finite()
            && self.per_seconds > 0.0
            && Duration::try_from_secs_f64(self.per_seconds).is_ok()
        {
            Ok(())
        } else {
            Err(format!(
                "per_seconds must be a positive number of seconds, got {}",
                self.per_seconds
            ))
        }
    }
}

/// Formats as the command line takes it: `15/10`.
impl fmt::Display for SimLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.requests, self.per_seconds)
    }
}

impl std::str::FromStr for SimLimit {
    type Err = String;

    /// Parses `REQUESTS/SECONDS`, e.g. `15/10`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (requests, seconds) = text
            .split_once('/')
            .ok_or_else(|| format!("expected REQUESTS/SECONDS such as 15/10, got {text:?}"))?;
        let requests = requests
            .trim()
            .parse::<u32>()
            .map_err(|err| format!("bad request count {requests:?}: {err}"))?;
        let per_seconds = seconds
            .trim()
            .parse::<f64>()
            .map_err(|err| format!("bad window {seconds:?}: {err}"))?;
        let limit = SimLimit::new(requests, per_seconds);
        limit.validate()?;
        Ok(limit)
    }
}

/// Hostaway's two documented limits: per source IP and per account.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimRateLimits {
    pub enabled: bool,
    pub per_ip: SimLimit,
    pub per_account: SimLimit,
}

impl SimRateLimits {
    pub fn validate(&self) -> Result<(), String> {
        self.per_ip
            .validate()
            .map_err(|err| format!("per_ip: {err}"))?;
        self.per_account
            .validate()
            .map_err(|err| format!("per_account: {err}"))
    }

    /// Limits switched off (same windows, not enforced).
    pub fn disabled() -> Self {
        SimRateLimits {
            enabled: false,
            ..SimRateLimits::default()
        }
    }
}

impl Default for SimRateLimits {
    fn default() -> Self {
        SimRateLimits {
            enabled: true,
            per_ip: SimLimit::new(15, 10.0),
            per_account: SimLimit::new(20, 10.0),
        }
    }
}

/// Everything the simulator is started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub accounts: Vec<SimAccount>,
    /// Seeds the dataset, the mutation target choice and random faults.
    pub seed: u64,
    /// Size of every configured account (and the default for added ones).
    pub dataset: DatasetSize,
    pub rate_limits: SimRateLimits,
    /// A token answers 403 until this long after it was issued (Hostaway: ~1 s).
    pub token_ready_delay_ms: u64,
    /// `expires_in` of issued tokens; tokens stop working after it.
    pub token_ttl_secs: u64,
    /// Largest `limit` honoured on list endpoints; larger requests are clamped.
    pub max_limit: u32,
    /// Webhook retry backoff: base, 2×base, 4×base (Hostaway: about a minute).
    pub delivery_retry_base_ms: u64,
    /// Per delivery attempt (Hostaway: 20 s).
    pub delivery_timeout_ms: u64,
    /// What the documentation leaves open (API.md §7); changeable at run
    /// time with `PUT /_sim/behaviour`.
    #[serde(default)]
    pub behaviour: Behaviour,
}

impl SimConfig {
    /// Largest account id whose message ids (`account_id * 100_000_000 + ...`)
    /// still fit an `i64` with room to spare.
    pub const MAX_ACCOUNT_ID: i64 = 1_000_000_000;

    /// Explains the first setting the simulator cannot serve, if any.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for account in &self.accounts {
            validate_account_id(account.account_id)?;
            if !seen.insert(account.account_id) {
                return Err(format!("account {} is listed twice", account.account_id));
            }
        }
        self.dataset.validate()?;
        self.rate_limits.validate()?;
        if self.max_limit == 0 {
            return Err("max_limit must be at least 1".to_string());
        }
        Ok(())
    }
}

/// Account ids must be positive and small enough for the id scheme.
pub fn validate_account_id(account_id: i64) -> Result<(), String> {
    if (1..=SimConfig::MAX_ACCOUNT_ID).contains(&account_id) {
        Ok(())
    } else {
        Err(format!(
            "account id {account_id} is outside 1..={}",
            SimConfig::MAX_ACCOUNT_ID
        ))
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            accounts: vec![SimAccount::new(1001, "secret")],
            seed: 42,
            dataset: DatasetSize::default(),
            rate_limits: SimRateLimits::default(),
            token_ready_delay_ms: 1000,
            token_ttl_secs: 63_072_000,
            max_limit: 100,
            delivery_retry_base_ms: 60_000,
            delivery_timeout_ms: 20_000,
            behaviour: Behaviour::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_print() {
        let limit: SimLimit = "15/10".parse().unwrap();
        assert_eq!(limit, SimLimit::new(15, 10.0));
        assert_eq!(limit.to_string(), "15/10");
        assert_eq!(
            "3/0.5".parse::<SimLimit>().unwrap().window().as_millis(),
            500
        );
        assert!("15".parse::<SimLimit>().is_err());
        assert!("15/0".parse::<SimLimit>().is_err());
        assert!("x/10".parse::<SimLimit>().is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let text = format!("{:?}", SimConfig::default());
        assert!(!text.contains("\"secret\""), "{text}");
        assert!(text.contains("1001"));
    }

    #[test]
    fn sizes_are_normalized() {
        let size = DatasetSize {
            listings: 0,
            reservations: 10,
            conversations: 10,
            messages_per_conversation: 5000,
        };
        assert!(size.validate().is_err());
        let normalized = size.normalized();
        assert_eq!(normalized.reservations, 0);
        assert_eq!(normalized.conversations, 0);
        assert_eq!(normalized.messages_per_conversation, 999);
        assert!(SimConfig::default().validate().is_ok());
    }
}
