//! Access tokens as Hostaway issues them: opaque JWT-looking strings bound to
//! one account, usable only after a short delay, valid until they expire, are
//! revoked, or every token is expired at once through the control API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::json;

#[derive(Debug, Clone, Copy)]
struct TokenRecord {
    account_id: i64,
    usable_from: Instant,
    /// `None` when the lifetime does not fit an `Instant` (effectively never).
    expires_at: Option<Instant>,
}

/// Every token issued and not yet revoked or expired.
#[derive(Debug)]
pub struct TokenStore {
    tokens: HashMap<String, TokenRecord>,
    ready_delay: Duration,
    ttl_secs: u64,
}

impl TokenStore {
    pub fn new(ready_delay: Duration, ttl_secs: u64) -> Self {
        TokenStore {
            tokens: HashMap::new(),
            ready_delay,
            ttl_secs,
        }
    }

    /// `expires_in` of the tokens this store issues.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A new token for `account_id`. Older tokens of the account stay valid.
    pub fn issue(&mut self, account_id: i64, now: Instant, wall_clock: DateTime<Utc>) -> String {
        let token = mint(account_id, wall_clock, self.ttl_secs);
        self.tokens.insert(
            token.clone(),
            TokenRecord {
                account_id,
                usable_from: now + self.ready_delay,
                expires_at: now.checked_add(Duration::from_secs(self.ttl_secs)),
            },
        );
        token
    }

    /// The account of a usable token: known, past its ready delay, not expired.
    pub fn check(&self, token: &str, now: Instant) -> Option<i64> {
        let record = self.tokens.get(token)?;
        let ready = now >= record.usable_from;
        let alive = record.expires_at.is_none_or(|expiry| now < expiry);
        (ready && alive).then_some(record.account_id)
    }

    /// Forgets a token; `true` if it existed.
    pub fn revoke(&mut self, token: &str) -> bool {
        self.tokens.remove(token).is_some()
    }

    /// Invalidates every token issued so far; returns how many there were.
    pub fn expire_all(&mut self) -> usize {
        let count = self.tokens.len();
        self.tokens.clear();
        count
    }
}

/// `header.claims.signature` in base64url, with the claims Hostaway's tokens
/// carry (`aud` = account id, `jti`, `iat`, `nbf`, `exp`, `scopes`). The
/// signature is random bytes: the token is opaque to clients.
fn mint(account_id: i64, issued_at: DateTime<Utc>, ttl_secs: u64) -> String {
    let mut rng = rand::rng();
    let jti: String = (0..20)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    let iat = issued_at.timestamp();
    let exp = iat.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    let header = json!({ "typ": "JWT", "alg": "RS256" });
    let claims = json!({
        "aud": account_id.to_string(),
        "jti": jti,
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "sub": "",
        "scopes": ["general"],
    });
    let signature: Vec<u8> = (0..96).map(|_| rng.random::<u8>()).collect();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_become_usable_after_the_delay_and_expire() {
        let mut store = TokenStore::new(Duration::from_millis(1000), 60);
        let t0 = Instant::now();
        let token = store.issue(1001, t0, Utc::now());
        assert_eq!(store.check(&token, t0), None);
        assert_eq!(store.check(&token, t0 + Duration::from_millis(999)), None);
        assert_eq!(
            store.check(&token, t0 + Duration::from_millis(1000)),
            Some(1001)
        );
        assert_eq!(store.check(&token, t0 + Duration::from_secs(60)), None);
        assert_eq!(store.check("nonsense", t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn revoking_and_expiring() {
        let mut store = TokenStore::new(Duration::ZERO, 60);
        let t0 = Instant::now();
        let first = store.issue(1, t0, Utc::now());
        let second = store.issue(1, t0, Utc::now());
        assert_ne!(first, second);
        assert!(store.revoke(&first));
        assert!(!store.revoke(&first));
        assert_eq!(store.check(&first, t0), None);
        assert_eq!(store.check(&second, t0), Some(1));
        assert_eq!(store.expire_all(), 1);
        assert_eq!(store.check(&second, t0), None);
    }

    #[test]
    fn tokens_look_like_jwts() {
        let token = mint(71234, Utc::now(), 63_072_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "71234");
        assert_eq!(claims["scopes"], json!(["general"]));
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            63_072_000
        );
    }
}
