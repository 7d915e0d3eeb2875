//! Access tokens: one per account, cached in memory and persisted through a
//! `TokenStore` (the accounts table, encrypted). A refresh is single flight:
//! when many requests find the same stale token, exactly one new token is
//! fetched and every caller retries with it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::HostawayError;

/// A token as issued by Hostaway.
pub struct Token {
    value: SecretString,
    pub expires_at: DateTime<Utc>,
    /// Hostaway accepts a new token only about a second after issuing it.
    usable_at: Instant,
}

impl Token {
    pub fn new(value: String, expires_at: DateTime<Utc>, usable_at: Instant) -> Self {
        Token {
            value: SecretString::from(value),
            expires_at,
            usable_at,
        }
    }

    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// Waits until Hostaway will accept this token.
    pub async fn ready(&self) {
        tokio::time::sleep_until(self.usable_at).await;
    }

    fn fresh(&self, margin: Duration) -> bool {
        let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::zero());
        Utc::now() + margin < self.expires_at
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token read from or written to durable storage.
pub struct StoredToken {
    pub value: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// Where tokens survive restarts (the service stores them encrypted).
pub trait TokenStore: Send + Sync {
    fn load(&self, account_id: i64) -> BoxFuture<'_, Option<StoredToken>>;
    fn save(&self, account_id: i64, token: StoredToken) -> BoxFuture<'_, ()>;
}

#[derive(Default)]
struct Slot {
    /// Held while a token is fetched, so concurrent callers wait for it.
    current: tokio::sync::Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    token: Option<Arc<Token>>,
    loaded: bool,
}

/// The per-account token cache.
pub struct TokenCache {
    slots: Mutex<HashMap<i64, Arc<Slot>>>,
    store: Option<Arc<dyn TokenStore>>,
    refresh_margin: Duration,
}

impl TokenCache {
    pub fn new(store: Option<Arc<dyn TokenStore>>, refresh_margin: Duration) -> Self {
        TokenCache {
            slots: Mutex::new(HashMap::new()),
            store,
            refresh_margin,
        }
    }

    fn slot(&self, account_id: i64) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(account_id).or_default().clone()
    }

    /// The account's token: cached, else stored, else fetched with `fetch`.
    /// A token near its expiry is replaced ahead of time.
    pub async fn get<F>(&self, account_id: i64, fetch: F) -> Result<Arc<Token>, HostawayError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, HostawayError>>,
    {
        let slot = self.slot(account_id);
        let mut state = slot.current.lock().await;
        if let Some(token) = &state.token
            && token.fresh(self.refresh_margin)
        {
            return Ok(token.clone());
        }
        if !state.loaded {
            state.loaded = true;
            if let Some(stored) = self.load(account_id).await {
                let token = Arc::new(Token {
                    value: stored.value,
                    expires_at: stored.expires_at,
                    usable_at: Instant::now(),
                });
                if token.fresh(self.refresh_margin) {
                    state.token = Some(token.clone());
                    return Ok(token);
                }
            }
        }
        self.replace(account_id, &mut state, fetch).await
    }

    /// Replaces `stale` (a token Hostaway refused). If another caller already
    /// replaced it, that newer token is returned and nothing is fetched.
    pub async fn refresh<F>(
        &self,
        account_id: i64,
        stale: &Arc<Token>,
        fetch: F,
    ) -> Result<Arc<Token>, HostawayError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, HostawayError>>,
    {
        let slot = self.slot(account_id);
        let mut state = slot.current.lock().await;
        if let Some(current) = &state.token
            && !Arc::ptr_eq(current, stale)
        {
            return Ok(current.clone());
        }
        self.replace(account_id, &mut state, fetch).await
    }

    async fn replace<F>(
        &self,
        account_id: i64,
        state: &mut SlotState,
        fetch: F,
    ) -> Result<Arc<Token>, HostawayError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, HostawayError>>,
    {
        let token = Arc::new(fetch().await?);
        self.save(account_id, &token).await;
        state.token = Some(token.clone());
        state.loaded = true;
        Ok(token)
    }

    async fn load(&self, account_id: i64) -> Option<StoredToken> {
        match &self.store {
            Some(store) => store.load(account_id).await,
            None => None,
        }
    }

    /// Saves the cached token again (it was fetched before its account was
    /// stored: a new account's credentials are checked first).
    pub async fn persist(&self, account_id: i64) {
        let slot = self.slot(account_id);
        let state = slot.current.lock().await;
        if let Some(token) = &state.token {
            self.save(account_id, token).await;
        }
    }

    /// Writes `token` to the store, if there is one.
    async fn save(&self, account_id: i64, token: &Token) {
        if let Some(store) = &self.store {
            store
                .save(
                    account_id,
                    StoredToken {
                        value: SecretString::from(token.expose().to_string()),
                        expires_at: token.expires_at,
                    },
                )
                .await;
        }
    }

    /// Drops the cached token (the account's secret changed or it was deleted).
    pub fn forget(&self, account_id: i64) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.remove(&account_id);
    }
}
