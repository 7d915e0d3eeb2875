//! Accounts: credentials (encrypted by the caller with `crypto::Cipher`), sync
//! state, webhook registration state, and per-account entity counts.

use entities::account::{SyncState, WebhookStatus};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entities::account::{self, ActiveModel, Entity as Account, Model};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, Set, SqlErr, TransactionTrait,
};
use serde::Serialize;
use uuid::Uuid;

use super::{Sql, inbox};

#[derive(Debug, thiserror::Error)]
pub enum AccountStoreError {
    #[error("account {0} already exists")]
    AlreadyExists(i64),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A new account; `client_secret` is already encrypted.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub account_id: i64,
    pub customer_id: Option<Uuid>,
    pub encrypted_secret: String,
    pub ignored_events: Vec<String>,
}

pub async fn insert(
    db: &DatabaseConnection,
    new: NewAccount,
    now: DateTime<Utc>,
) -> Result<Model, AccountStoreError> {
    let model = ActiveModel {
        account_id: Set(new.account_id),
        customer_id: Set(new.customer_id),
        client_secret: Set(new.encrypted_secret),
        access_token: Set(None),
        token_expires_at: Set(None),
        webhook_id: Set(None),
        webhook_login: Set(None),
        webhook_password: Set(None),
        is_active: Set(true),
        last_sync_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        sync_state: Set(SyncState::Idle),
        last_error: Set(None),
        ignored_events: Set(serde_json::json!(new.ignored_events)),
        webhook_status: Set(WebhookStatus::Pending),
        webhook_error: Set(None),
        webhook_pending_login: Set(None),
        webhook_pending_password: Set(None),
        webhook_previous_login: Set(None),
        webhook_previous_password: Set(None),
        webhook_previous_until: Set(None),
        sync_progress: Set(None),
    };
    match Account::insert(model).exec(db).await {
        Ok(_) => {}
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(AccountStoreError::AlreadyExists(new.account_id));
        }
        Err(err) => return Err(err.into()),
    }
    find(db, new.account_id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("account {}", new.account_id)).into())
}

pub async fn find<C: ConnectionTrait>(db: &C, account_id: i64) -> Result<Option<Model>, DbErr> {
    Account::find_by_id(account_id).one(db).await
}

pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Model>, DbErr> {
    Account::find()
        .order_by_asc(account::Column::AccountId)
        .all(db)
        .await
}

pub async fn active<C: ConnectionTrait>(db: &C) -> Result<Vec<Model>, DbErr> {
    Account::find()
        .filter(account::Column::IsActive.eq(true))
        .order_by_asc(account::Column::AccountId)
        .all(db)
        .await
}

/// Saves the changed columns of an account and bumps `updated_at`.
pub async fn update<C: ConnectionTrait>(
    db: &C,
    mut changes: ActiveModel,
    now: DateTime<Utc>,
) -> Result<Model, DbErr> {
    changes.updated_at = Set(now);
    changes.update(db).await
}

/// A changeset for one account (only the fields you set are written).
pub fn changes(account_id: i64) -> ActiveModel {
    ActiveModel {
        account_id: sea_orm::Unchanged(account_id),
        ..Default::default()
    }
}

/// Removes an account, its mirrored data (by cascade) and its inbox rows.
pub async fn hard_delete(db: &DatabaseConnection, account_id: i64) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    inbox::delete_for_account(&txn, account_id).await?;
    let deleted = Account::delete_by_id(account_id)
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok(deleted > 0)
}

/// How much of an account is mirrored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EntityCounts {
    pub listings: i64,
    pub reservations: i64,
    pub message_threads: i64,
    /// Inbox events waiting to be applied (on a degraded account: until its
    /// half-open retry).
    pub pending_events: i64,
}

/// Counts per account (all accounts, or one).
pub async fn entity_counts<C: ConnectionTrait>(
    db: &C,
    account_id: Option<i64>,
) -> Result<HashMap<i64, EntityCounts>, DbErr> {
    let mut out: HashMap<i64, EntityCounts> = HashMap::new();
    for (table, extra) in [
        ("listings", " AND deleted_at IS NULL"),
        ("reservations", ""),
        ("message_threads", ""),
        ("webhook_events", " AND status = 'pending'"),
    ] {
        let mut sql = Sql::new(db.get_database_backend());
        sql.push(&format!(
            "SELECT account_id, COUNT(*) FROM {table} WHERE 1 = 1{extra}"
        ));
        if let Some(id) = account_id {
            sql.push(" AND account_id = ").bind(id);
        }
        sql.push(" GROUP BY account_id");
        for row in db.query_all_raw(sql.build()).await? {
            let id: i64 = row.try_get_by_index(0)?;
            let count: i64 = row.try_get_by_index(1)?;
            let entry = out.entry(id).or_default();
            match table {
                "listings" => entry.listings = count,
                "reservations" => entry.reservations = count,
                "message_threads" => entry.message_threads = count,
                _ => entry.pending_events = count,
            }
        }
    }
    Ok(out)
}

/// Records a sync's state; `synced_at` (the run's start) is set on success.
pub async fn record_sync_state<C: ConnectionTrait>(
    db: &C,
    account_id: i64,
    state: SyncState,
    error: Option<&str>,
    synced_at: Option<DateTime<Utc>>,
) -> Result<(), DbErr> {
    use sea_orm::ActiveEnum;
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("UPDATE accounts SET sync_state = ")
        .bind(state.to_value())
        .push(", last_error = ")
        .bind(error.map(str::to_string));
    if let Some(at) = synced_at {
        sql.push(", last_sync_at = ").bind(at);
    }
    if state != SyncState::Syncing {
        sql.push(", sync_progress = NULL");
    }
    sql.push(" WHERE account_id = ").bind(account_id);
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// Stores a running sync's progress (its JSON snapshot) on its account row
/// (`None` clears it).
pub async fn save_progress<C: ConnectionTrait>(
    db: &C,
    account_id: i64,
    progress: Option<serde_json::Value>,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::Expr;
    Account::update_many()
        .col_expr(account::Column::SyncProgress, Expr::value(progress))
        .filter(account::Column::AccountId.eq(account_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Sync states left at `syncing` by a process that stopped mid-run.
pub async fn reset_interrupted_syncs<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    use sea_orm::ActiveEnum;
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("UPDATE accounts SET sync_state = ")
        .bind(SyncState::Failed.to_value())
        .push(", last_error = 'interrupted by a restart', sync_progress = NULL WHERE sync_state = ")
        .bind(SyncState::Syncing.to_value());
    Ok(db.execute_raw(sql.build()).await?.rows_affected())
}

/// Access tokens kept in the accounts table, encrypted: a restart reuses the
/// token instead of minting a new one.
pub struct TokenVault {
    pub db: DatabaseConnection,
    pub cipher: crate::crypto::Cipher,
}

impl crate::hostaway::tokens::TokenStore for TokenVault {
    fn load(
        &self,
        account_id: i64,
    ) -> futures::future::BoxFuture<'_, Option<crate::hostaway::tokens::StoredToken>> {
        Box::pin(async move {
            let row = find(&self.db, account_id).await.ok()??;
            let sealed = row.access_token?;
            let expires_at = row.token_expires_at?;
            let value = self.cipher.decrypt(&sealed).ok()?;
            Some(crate::hostaway::tokens::StoredToken {
                value: secrecy::SecretString::from(value),
                expires_at,
            })
        })
    }

    fn save(
        &self,
        account_id: i64,
        token: crate::hostaway::tokens::StoredToken,
    ) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            use secrecy::ExposeSecret;
            let mut changes = changes(account_id);
            changes.access_token = Set(Some(self.cipher.encrypt(token.value.expose_secret())));
            changes.token_expires_at = Set(Some(token.expires_at));
            if let Err(err) = update(&self.db, changes, Utc::now()).await {
                // The account may be gone; the token still works from memory.
                tracing::debug!(account_id, error = %err, "could not store the access token");
            }
        })
    }
}
