//! The account lifecycle, written once for the HTTP API, the CLI and the
//! tests: create, change, deactivate, delete, sync, replay dead letters,
//! rotate webhook credentials. Each operation updates the database, the
//! in-memory directory and the actors that care, in that order. Callers
//! validate their input; this module decides what happens.

use chrono::Utc;
use sea_orm::Set;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::actors::ActorSystem;
use crate::actors::registrar::{EnsureWebhook, RemoveWebhook, RotateCredentials};
use crate::actors::router::{AccountChanged, RequeueFor, StopAccount, SyncAccount};
use crate::actors::traced::TraceExt;
use crate::context::Core;
use crate::hostaway::Credentials;
use crate::store::accounts::{self, AccountStoreError, NewAccount};
use crate::store::inbox;
use crate::store::notify::Topic;
use crate::sync::{SyncError, SyncMode, SyncReport, SyncRequest};
use entities::account::{Model as Account, SyncState};

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("account {0} does not exist")]
    NotFound(i64),
    #[error("account {0} already exists")]
    AlreadyExists(i64),
    #[error("account {0} is inactive; reactivate it first")]
    Inactive(i64),
    /// Try again (an actor is restarting).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
}

/// How a waited-for sync ended.
pub enum Waited {
    /// Run here: its report or its error.
    Here(Result<SyncReport, SyncError>),
    /// Run by the replica that owns the account: the account row after it.
    Elsewhere(Box<Account>),
}

/// A new account, validated by the caller.
#[derive(Debug, Clone)]
pub struct Create {
    pub account_id: i64,
    pub client_secret: String,
    pub customer_id: Option<Uuid>,
    pub ignored_events: Vec<String>,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub client_secret: Option<String>,
    /// `Some(None)` clears the customer id.
    pub customer_id: Option<Option<Uuid>>,
    pub ignored_events: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

/// The lifecycle operations over the service's shared state and actors.
pub struct Accounts<'a> {
    core: &'a Core,
    actors: &'a ActorSystem,
}

impl<'a> Accounts<'a> {
    pub fn new(core: &'a Core, actors: &'a ActorSystem) -> Self {
        Accounts { core, actors }
    }

    pub async fn find(&self, account_id: i64) -> Result<Account, LifecycleError> {
        accounts::find(&self.core.db, account_id)
            .await?
            .ok_or(LifecycleError::NotFound(account_id))
    }

    /// Stores the account (secret encrypted), makes it known to the hot
    /// path, and queues its first full sync when `sync.sync_on_create`.
    pub async fn create(&self, new: Create) -> Result<Account, LifecycleError> {
        let account_id = new.account_id;
        let row = accounts::insert(
            &self.core.db,
            NewAccount {
                account_id,
                customer_id: new.customer_id,
                encrypted_secret: self.core.cipher.encrypt(&new.client_secret),
                ignored_events: new.ignored_events,
            },
            Utc::now(),
        )
        .await
        .map_err(|err| match err {
            AccountStoreError::AlreadyExists(id) => LifecycleError::AlreadyExists(id),
            AccountStoreError::Db(err) => LifecycleError::Database(err),
        })?;
        self.core.account_stored(&row).await;
        tracing::info!(account_id, "account created");
        if self.core.settings.sync.sync_on_create {
            self.queue_sync(account_id, full_sync()).await;
        }
        Ok(row)
    }

    /// Applies `change`: a new secret drops the cached token, an activation
    /// change reconciles the subscription, and an active account that never
    /// synced gets its first full sync.
    pub async fn change(&self, account_id: i64, change: Change) -> Result<Account, LifecycleError> {
        let before = self.find(account_id).await?;
        let mut changes = accounts::changes(account_id);
        if let Some(secret) = &change.client_secret {
            changes.client_secret = Set(self.core.cipher.encrypt(secret));
            changes.access_token = Set(None);
            changes.token_expires_at = Set(None);
        }
        if let Some(customer) = change.customer_id {
            changes.customer_id = Set(customer);
        }
        if let Some(ignored) = &change.ignored_events {
            changes.ignored_events = Set(json!(ignored));
        }
        if let Some(active) = change.is_active {
            changes.is_active = Set(active);
        }
        let row = accounts::update(&self.core.db, changes, Utc::now()).await?;
        if change.client_secret.is_some() {
            // The cached token belongs to the old secret.
            self.core.hostaway.forget_account(account_id);
        }
        self.core.account_stored(&row).await;
        self.changed(account_id).await;
        // In a cluster an account's owner registers it when it takes the
        // account on; any replica may disable it.
        if change.is_active.is_some_and(|a| a != before.is_active)
            && (!row.is_active || self.core.cluster.is_none())
        {
            self.actors
                .registrar
                .do_send(EnsureWebhook { account_id }.traced());
        }
        if row.is_active && row.last_sync_at.is_none() && row.sync_state != SyncState::Syncing {
            self.queue_sync(account_id, full_sync()).await;
        }
        Ok(row)
    }

    /// Soft delete: the account stops, its data stays, its subscription is
    /// disabled at Hostaway.
    pub async fn deactivate(&self, account_id: i64) -> Result<Account, LifecycleError> {
        self.find(account_id).await?;
        let mut changes = accounts::changes(account_id);
        changes.is_active = Set(false);
        let row = accounts::update(&self.core.db, changes, Utc::now()).await?;
        self.core.account_stored(&row).await;
        self.actors
            .router
            .send(StopAccount { account_id })
            .await
            .ok();
        self.actors
            .registrar
            .do_send(EnsureWebhook { account_id }.traced());
        tracing::info!(account_id, "account deactivated");
        Ok(row)
    }

    /// Hard delete: stop the actor, remove the subscription at Hostaway,
    /// then the account and all its data.
    pub async fn delete(&self, account_id: i64) -> Result<(), LifecycleError> {
        let row = self.find(account_id).await?;
        self.core.directory.remove(account_id);
        self.actors
            .router
            .send(StopAccount { account_id })
            .await
            .ok();
        if let Ok(secret) = self.core.cipher.decrypt(&row.client_secret) {
            let client = self.core.hostaway.account(Credentials {
                account_id,
                client_secret: SecretString::from(secret),
            });
            self.actors
                .registrar
                .send(RemoveWebhook { client }.traced())
                .await
                .ok();
        }
        accounts::hard_delete(&self.core.db, account_id).await?;
        self.core.announce(Topic::Accounts, &[account_id]).await;
        self.core.hostaway.forget_account(account_id);
        tracing::info!(account_id, "account and its data deleted");
        Ok(())
    }

    /// Queues a sync of an active account (a degraded one resumes); the
    /// account actor runs it in its turn.
    pub async fn sync(&self, account_id: i64, request: SyncRequest) -> Result<(), LifecycleError> {
        self.require_active(account_id).await?;
        self.changed(account_id).await;
        self.queue_sync(account_id, request).await;
        Ok(())
    }

    /// Runs a sync of an active account through its actor and waits for
    /// the report.
    pub async fn run_sync(
        &self,
        account_id: i64,
        request: SyncRequest,
    ) -> Result<Result<SyncReport, SyncError>, LifecycleError> {
        self.require_active(account_id).await?;
        self.actors
            .router
            .send(
                SyncAccount {
                    account_id,
                    request,
                }
                .traced(),
            )
            .await
            .map_err(|_| LifecycleError::Unavailable("the actor system stopped".into()))
    }

    /// A sync, waited for: run by this replica's actor when it owns the
    /// account (the report), or asked of the owner and followed on the
    /// account row until it ends (`Waited::Elsewhere`).
    pub async fn sync_and_wait(
        &self,
        account_id: i64,
        request: SyncRequest,
    ) -> Result<Waited, LifecycleError> {
        let before = self.require_active(account_id).await?;
        // A manual sync also lifts a degraded state.
        self.changed(account_id).await;
        if self.core.cluster.is_none() || self.core.owns(account_id) {
            return Ok(Waited::Here(self.run_sync(account_id, request).await?));
        }
        self.queue_sync(account_id, request).await;
        let poll = std::time::Duration::from_millis(250);
        let limit = std::time::Duration::from_secs(self.core.settings.sync.max_duration_secs + 60);
        let started = tokio::time::Instant::now();
        let mut seen_running = false;
        while started.elapsed() < limit {
            tokio::time::sleep(poll).await;
            let row = self.find(account_id).await?;
            let running = row.sync_state == SyncState::Syncing || row.sync_progress.is_some();
            seen_running |= running;
            let recorded = row.last_sync_at != before.last_sync_at
                || (row.sync_state == SyncState::Failed && row.last_error != before.last_error);
            // A dry run records nothing: its end shows as its progress going.
            if !running && (recorded || (request.dry_run && seen_running)) {
                return Ok(Waited::Elsewhere(Box::new(row)));
            }
        }
        Err(LifecycleError::Unavailable(format!(
            "the sync of account {account_id} did not end within {} s",
            limit.as_secs()
        )))
    }

    /// Puts the account's dead letters back to pending; how many.
    pub async fn replay_failed(&self, account_id: i64) -> Result<usize, LifecycleError> {
        self.find(account_id).await?;
        let requeued = inbox::requeue_failed(&self.core.db, Some(account_id), None).await?;
        let ids: Vec<i64> = requeued.into_iter().map(|(_, id)| id).collect();
        let count = ids.len();
        if count > 0 {
            self.actors
                .router
                .do_send(RequeueFor { account_id, ids }.traced());
        }
        Ok(count)
    }

    /// Starts rotating the account's webhook credentials.
    pub async fn rotate_credentials(&self, account_id: i64) -> Result<(), LifecycleError> {
        self.require_active(account_id).await?;
        self.actors
            .registrar
            .send(RotateCredentials { account_id }.traced())
            .await
            .map_err(|_| LifecycleError::Unavailable("the registrar is restarting; retry".into()))?
            .map_err(LifecycleError::Failed)
    }

    async fn require_active(&self, account_id: i64) -> Result<Account, LifecycleError> {
        let row = self.find(account_id).await?;
        if !row.is_active {
            return Err(LifecycleError::Inactive(account_id));
        }
        Ok(row)
    }

    /// Tells the router the account changed (reload; a degraded one resumes).
    async fn changed(&self, account_id: i64) {
        let _ = self
            .actors
            .router
            .send(AccountChanged { account_id }.traced())
            .await;
    }

    /// In a cluster, an account another replica owns is synced there: its
    /// owner hears of the request through `Topic::Sync`.
    async fn queue_sync(&self, account_id: i64, request: SyncRequest) {
        if let Some(member) = &self.core.cluster
            && !self.core.owns(account_id)
        {
            let channel = member.channel(Topic::Sync);
            let detail = request.to_notice();
            if let Err(err) =
                crate::store::notify::notify_detail(&self.core.db, channel, account_id, &detail)
                    .await
            {
                tracing::warn!(account_id, error = %err, "could not ask the account's owner to sync");
            }
            return;
        }
        self.actors.router.do_send(
            SyncAccount {
                account_id,
                request,
            }
            .traced(),
        );
    }
}

fn full_sync() -> SyncRequest {
    SyncRequest {
        mode: SyncMode::Full,
        dry_run: false,
    }
}
