//! The account directory: an in-memory view of every account that the hot
//! path reads without touching the database: is the account known and active,
//! which events it ignores, and which webhook credentials it accepts. It is
//! loaded at start and refreshed from the stored row after every change (the
//! account API and the webhook registrar are the only writers of accounts).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use entities::account::Model as AccountRow;
use sea_orm::{ConnectionTrait, DbErr};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::crypto::Cipher;
use crate::store::accounts;

/// What the hot path needs to know about an account.
#[derive(Debug, Clone)]
pub struct Entry {
    pub account_id: i64,
    pub active: bool,
    pub customer_id: Option<Uuid>,
    pub ignored_events: Arc<HashSet<String>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The account's actor exceeded its restart limit.
    pub degraded: bool,
}

struct Credential {
    account_id: i64,
    password_digest: [u8; 32],
    until: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Inner {
    accounts: HashMap<i64, Entry>,
    by_login: HashMap<String, Vec<Credential>>,
}

#[derive(Default)]
pub struct AccountDirectory {
    inner: RwLock<Inner>,
}

/// A fixed-length digest, so comparisons take the same time for any input.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality of two secrets.
pub fn secrets_match(expected: &[u8; 32], given: &str) -> bool {
    expected.ct_eq(&digest(given)).into()
}

impl AccountDirectory {
    /// Loads every account.
    pub async fn load<C: ConnectionTrait>(db: &C, cipher: &Cipher) -> Result<Self, DbErr> {
        let directory = AccountDirectory::default();
        for row in accounts::all(db).await? {
            directory.refresh(&row, cipher);
        }
        Ok(directory)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds an account's entry and credentials from its stored row.
    pub fn refresh(&self, row: &AccountRow, cipher: &Cipher) {
        let ignored: HashSet<String> = row
            .ignored_events
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut credentials: Vec<(String, Credential)> = Vec::new();
        let mut add = |login: &Option<String>, password: &Option<String>, until| {
            if let (Some(login), Some(sealed)) = (login, password) {
                match cipher.decrypt(sealed) {
                    Ok(password) => credentials.push((
                        login.clone(),
                        Credential {
                            account_id: row.account_id,
                            password_digest: digest(&password),
                            until,
                        },
                    )),
                    Err(err) => tracing::error!(
                        account_id = row.account_id,
                        error = %err,
                        "stored webhook password cannot be decrypted; its deliveries will be refused"
                    ),
                }
            }
        };
        add(&row.webhook_login, &row.webhook_password, None);
        add(
            &row.webhook_pending_login,
            &row.webhook_pending_password,
            None,
        );
        if let Some(until) = row.webhook_previous_until {
            add(
                &row.webhook_previous_login,
                &row.webhook_previous_password,
                Some(until),
            );
        }

        let mut inner = self.write();
        let degraded = inner
            .accounts
            .get(&row.account_id)
            .map(|e| e.degraded)
            .unwrap_or(false);
        inner.accounts.insert(
            row.account_id,
            Entry {
                account_id: row.account_id,
                active: row.is_active,
                customer_id: row.customer_id,
                ignored_events: Arc::new(ignored),
                last_sync_at: row.last_sync_at,
                degraded,
            },
        );
        remove_credentials(&mut inner, row.account_id);
        for (login, credential) in credentials {
            inner.by_login.entry(login).or_default().push(credential);
        }
    }

    /// Makes the directory match `rows`, every stored account: each is
    /// refreshed, an account no longer stored is dropped (cluster mode's
    /// periodic catch-up on changes made through other replicas).
    pub fn replace_all(&self, rows: &[AccountRow], cipher: &Cipher) {
        let stored: HashSet<i64> = rows.iter().map(|r| r.account_id).collect();
        let gone: Vec<i64> = self
            .read()
            .accounts
            .keys()
            .copied()
            .filter(|id| !stored.contains(id))
            .collect();
        for id in gone {
            self.remove(id);
        }
        for row in rows {
            self.refresh(row, cipher);
        }
    }

    pub fn remove(&self, account_id: i64) {
        let mut inner = self.write();
        inner.accounts.remove(&account_id);
        remove_credentials(&mut inner, account_id);
    }

    pub fn get(&self, account_id: i64) -> Option<Entry> {
        self.read().accounts.get(&account_id).cloned()
    }

    pub fn active_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .read()
            .accounts
            .values()
            .filter(|e| e.active)
            .map(|e| e.account_id)
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn active(&self) -> Vec<Entry> {
        self.read()
            .accounts
            .values()
            .filter(|e| e.active)
            .cloned()
            .collect()
    }

    /// The account whose webhook credentials these are, if any (constant-time
    /// password comparison; expired rotated-out credentials are refused).
    pub fn authenticate(&self, login: &str, password: &str) -> Option<i64> {
        let inner = self.read();
        let now = Utc::now();
        let candidates = inner.by_login.get(login)?;
        let mut found = None;
        for credential in candidates {
            let valid_time = credential.until.is_none_or(|until| now < until);
            if secrets_match(&credential.password_digest, password) && valid_time {
                found = Some(credential.account_id);
            }
        }
        found
    }

    pub fn set_degraded(&self, account_id: i64, degraded: bool) {
        if let Some(entry) = self.write().accounts.get_mut(&account_id) {
            entry.degraded = degraded;
        }
    }

    pub fn degraded_count(&self) -> usize {
        self.read().accounts.values().filter(|e| e.degraded).count()
    }

    pub fn degraded_ids(&self) -> Vec<i64> {
        self.read()
            .accounts
            .iter()
            .filter(|(_, e)| e.degraded)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn set_last_sync(&self, account_id: i64, at: DateTime<Utc>) {
        if let Some(entry) = self.write().accounts.get_mut(&account_id) {
            entry.last_sync_at = Some(at);
        }
    }
}

fn remove_credentials(inner: &mut Inner, account_id: i64) {
    inner.by_login.retain(|_, list| {
        list.retain(|c| c.account_id != account_id);
        !list.is_empty()
    });
}
