//! WebhookRegistrar: keeps each account's unified webhook at Hostaway in the
//! state the service wants: exactly one registration with our URL, enabled for
//! active accounts (disabled for inactive ones), carrying the account's own
//! Basic-auth credentials. Every operation is a reconcile (list, then create,
//! update or delete what differs), so repeating it is harmless and failures are
//! simply retried with backoff; they never fail a sync or an API call.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseFuture, Supervised,
    WrapFuture,
};
use chrono::Utc;
use sea_orm::Set;
use secrecy::SecretString;

use super::supervision::contain;
use super::traced::Traced;
use crate::backoff::Backoff;
use crate::context::Core;
use crate::crypto::random_token;
use crate::hostaway::types::{WebhookRegistration, WebhookSpec};
use crate::hostaway::{AccountClient, Credentials, HostawayError};
use crate::store::{accounts, leases};
use entities::account::WebhookStatus;

/// Bring an account's registration in line (after a sync, at start, after a
/// change of state).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EnsureWebhook {
    pub account_id: i64,
}

/// Start a credential rotation: new credentials are accepted at once, and
/// replace the old ones when Hostaway has them.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct RotateCredentials {
    pub account_id: i64,
}

/// Delete the account's registrations at Hostaway (hard delete). The client is
/// a snapshot: the account's row is about to disappear.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveWebhook {
    pub client: AccountClient,
}

/// The start-up reconcile of the inactive accounts runs once per cluster
/// in this long.
const RECONCILE_CHORE: &str = "webhook_reconcile";
const RECONCILE_EVERY_SECS: i64 = 60;

/// Ensure every active account's registration (at start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct EnsureAll;

#[derive(Debug, thiserror::Error)]
enum RegistrarError {
    #[error(transparent)]
    Hostaway(#[from] HostawayError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("stored secret unreadable: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}

pub struct WebhookRegistrar {
    core: Arc<Core>,
    in_flight: HashSet<i64>,
    /// Accounts asked for again while in flight: run once more after.
    again: HashSet<i64>,
    failures: HashMap<i64, u32>,
    removals: HashMap<i64, u32>,
}

impl WebhookRegistrar {
    pub fn new(core: Arc<Core>) -> Self {
        WebhookRegistrar {
            core,
            in_flight: HashSet::new(),
            again: HashSet::new(),
            failures: HashMap::new(),
            removals: HashMap::new(),
        }
    }

    fn target_url(&self) -> Option<String> {
        let base = self.core.settings.webhooks.public_base_url.trim();
        (!base.is_empty())
            .then(|| format!("{}{}", base.trim_end_matches('/'), crate::paths::WEBHOOKS))
    }

    fn backoff(&self, failures: u32) -> Duration {
        let settings = &self.core.settings.webhooks;
        Backoff::from_millis(
            settings.registration_retry_base_ms,
            settings.registration_retry_max_ms,
        )
        .delay(failures)
    }

    fn ensure(&mut self, account_id: i64, ctx: &mut Context<Self>) {
        if self.in_flight.contains(&account_id) {
            self.again.insert(account_id);
            return;
        }
        self.in_flight.insert(account_id);
        let core = self.core.clone();
        let url = self.target_url();
        let span = tracing::info_span!(
            "registrar.reconcile",
            otel.name = "registrar.reconcile",
            hostaway.account_id = account_id
        );
        let work =
            tracing::Instrument::instrument(contained(reconcile(core, account_id, url)), span);
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.in_flight.remove(&account_id);
            match result {
                Ok(()) => {
                    act.failures.remove(&account_id);
                }
                Err(err) => {
                    let failures = {
                        let count = act.failures.entry(account_id).or_insert(0);
                        *count += 1;
                        *count
                    };
                    let delay = act.backoff(failures);
                    tracing::warn!(account_id, error = %err, ?delay, "webhook registration failed; will retry");
                    let core = act.core.clone();
                    let message = err.to_string();
                    ctx.spawn(
                        async move { record_status(&core, account_id, WebhookStatus::Failed, Some(message)).await }
                            .into_actor(act),
                    );
                    ctx.run_later(delay, move |act, ctx| act.ensure(account_id, ctx));
                }
            }
            if act.again.remove(&account_id) {
                act.ensure(account_id, ctx);
            }
        }));
    }

    /// Deletes our registrations of a removed account; on failure, retries
    /// in the background with backoff (from memory: the account row is gone).
    fn remove(&mut self, client: AccountClient) -> actix::ResponseActFuture<Self, ()> {
        let account_id = client.account_id();
        let retry_client = client.clone();
        let work = contained(removal(self.core.clone(), self.target_url(), client));
        Box::pin(work.into_actor(self).map(move |result, act, ctx| match result {
            Ok(()) => {
                act.removals.remove(&account_id);
            }
            Err(err) => {
                let tries = {
                    let count = act.removals.entry(account_id).or_insert(0);
                    *count += 1;
                    *count
                };
                if tries > 10 {
                    tracing::error!(account_id, error = %err, "giving up removing the webhook registration; remove it in the Hostaway dashboard");
                    act.removals.remove(&account_id);
                    return;
                }
                let delay = act.backoff(tries);
                tracing::warn!(account_id, error = %err, ?delay, "webhook removal failed; will retry");
                ctx.run_later(delay, move |act, ctx| {
                    let retry = act.remove(retry_client);
                    ctx.spawn(retry);
                });
            }
        }))
    }
}

/// Runs one registration job; a panic in it becomes that job's error, and
/// the job is retried with backoff like any failure (the registrar itself
/// never stops for it).
async fn contained<E: std::fmt::Display>(
    work: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match contain(work).await {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(panic) => {
            tracing::error!(error = %panic, "webhook registration job panicked");
            Err(panic.to_string())
        }
    }
}

async fn removal(
    core: Arc<Core>,
    url: Option<String>,
    client: AccountClient,
) -> Result<(), HostawayError> {
    let Some(url) = url else {
        return Ok(());
    };
    let metrics = &core.metrics;
    let registrations = client
        .list_webhooks()
        .await
        .inspect_err(|_| count(metrics, "list", false))?;
    for registration in registrations
        .iter()
        .filter(|r| r.url.as_deref() == Some(url.as_str()))
    {
        client
            .delete_webhook(registration.id)
            .await
            .inspect_err(|_| count(metrics, "delete", false))?;
        count(metrics, "delete", true);
        tracing::info!(
            account_id = client.account_id(),
            webhook_id = registration.id,
            "webhook registration removed"
        );
    }
    Ok(())
}

fn count(metrics: &crate::metrics::Metrics, operation: &str, ok: bool) {
    metrics
        .webhook_registrations
        .with_label_values(&[operation, if ok { "ok" } else { "error" }])
        .inc();
}

async fn record_status(core: &Core, account_id: i64, status: WebhookStatus, error: Option<String>) {
    let mut changes = accounts::changes(account_id);
    changes.webhook_status = Set(status);
    changes.webhook_error = Set(error);
    match accounts::update(&core.db, changes, Utc::now()).await {
        Ok(row) => core.account_stored(&row).await,
        Err(err) => {
            tracing::debug!(account_id, error = %err, "could not record the webhook status")
        }
    }
}

/// One reconcile of one account against Hostaway.
async fn reconcile(
    core: Arc<Core>,
    account_id: i64,
    url: Option<String>,
) -> Result<(), RegistrarError> {
    let Some(row) = accounts::find(&core.db, account_id).await? else {
        return Ok(());
    };
    let Some(url) = url else {
        if row.webhook_pending_login.is_some() {
            // Nothing registered to update: the new credentials apply at once.
            let mut changes = accounts::changes(account_id);
            changes.webhook_login = Set(row.webhook_pending_login.clone());
            changes.webhook_password = Set(row.webhook_pending_password.clone());
            changes.webhook_pending_login = Set(None);
            changes.webhook_pending_password = Set(None);
            changes.webhook_status = Set(WebhookStatus::Disabled);
            let row = accounts::update(&core.db, changes, Utc::now()).await?;
            core.account_stored(&row).await;
        } else if row.webhook_status != WebhookStatus::Disabled {
            record_status(&core, account_id, WebhookStatus::Disabled, None).await;
        }
        return Ok(());
    };
    let client = core.hostaway.account(Credentials {
        account_id,
        client_secret: SecretString::from(core.cipher.decrypt(&row.client_secret)?),
    });
    let metrics = &core.metrics;
    let registrations = client
        .list_webhooks()
        .await
        .inspect_err(|_| count(metrics, "list", false))?;
    count(metrics, "list", true);
    let ours: Vec<&WebhookRegistration> = registrations
        .iter()
        .filter(|r| r.url.as_deref() == Some(url.as_str()))
        .collect();

    if !row.is_active {
        for registration in ours.iter().filter(|r| r.enabled()) {
            let spec = WebhookSpec {
                is_enabled: 0,
                url: url.clone(),
                login: registration.login.clone(),
                password: None,
                alerting_email_address: None,
            };
            client
                .update_webhook(registration.id, &spec)
                .await
                .inspect_err(|_| count(metrics, "disable", false))?;
            count(metrics, "disable", true);
        }
        record_status(&core, account_id, WebhookStatus::Disabled, None).await;
        return Ok(());
    }

    // The credentials Hostaway should send: a rotation in progress, else the
    // current ones, else new ones stored before they are registered.
    let rotating = row.webhook_pending_login.is_some() && row.webhook_pending_password.is_some();
    let (login, password, row) = match (
        &row.webhook_pending_login,
        &row.webhook_pending_password,
        &row.webhook_login,
        &row.webhook_password,
    ) {
        (Some(login), Some(password), _, _) | (None, _, Some(login), Some(password)) => {
            (login.clone(), core.cipher.decrypt(password)?, row.clone())
        }
        _ => {
            let login = format!("sync-hostaway-{account_id}-{}", random_token(4));
            let password = random_token(24);
            let mut changes = accounts::changes(account_id);
            changes.webhook_login = Set(Some(login.clone()));
            changes.webhook_password = Set(Some(core.cipher.encrypt(&password)));
            let row = accounts::update(&core.db, changes, Utc::now()).await?;
            core.account_stored(&row).await;
            (login, password, row)
        }
    };

    let spec = WebhookSpec {
        is_enabled: 1,
        url: url.clone(),
        login: Some(login.clone()),
        password: Some(password.clone()),
        alerting_email_address: None,
    };
    let keep = ours
        .iter()
        .find(|r| Some(r.id) == row.webhook_id)
        .or_else(|| ours.first())
        .copied();
    let webhook_id = match keep {
        None => {
            let created = client
                .create_webhook(&spec)
                .await
                .inspect_err(|_| count(metrics, "create", false))?;
            count(metrics, "create", true);
            tracing::info!(account_id, webhook_id = created.id, "webhook registered");
            created.id
        }
        Some(existing) => {
            // Hostaway masks passwords in lists; compare it when it is shown.
            let password_differs = existing
                .password
                .as_deref()
                .is_some_and(|p| !p.chars().all(|c| c == '*') && p != password);
            let stale = !existing.enabled()
                || existing.login.as_deref() != Some(login.as_str())
                || password_differs
                || rotating
                || row.webhook_id != Some(existing.id);
            if stale {
                client
                    .update_webhook(existing.id, &spec)
                    .await
                    .inspect_err(|_| count(metrics, "update", false))?;
                count(metrics, "update", true);
                tracing::info!(
                    account_id,
                    webhook_id = existing.id,
                    enabled_again = !existing.enabled(),
                    "webhook registration updated"
                );
            }
            existing.id
        }
    };
    for extra in ours.iter().filter(|r| r.id != webhook_id) {
        client
            .delete_webhook(extra.id)
            .await
            .inspect_err(|_| count(metrics, "delete", false))?;
        count(metrics, "delete", true);
        tracing::info!(
            account_id,
            webhook_id = extra.id,
            "removed a duplicate webhook registration"
        );
    }

    let mut changes = accounts::changes(account_id);
    changes.webhook_id = Set(Some(webhook_id));
    changes.webhook_status = Set(WebhookStatus::Registered);
    changes.webhook_error = Set(None);
    if rotating {
        // Hostaway has the new credentials: they become current, and the old
        // ones stay valid for the grace period (deliveries already in flight).
        let grace = chrono::Duration::seconds(core.settings.webhooks.credential_grace_secs as i64);
        changes.webhook_previous_login = Set(row.webhook_login.clone());
        changes.webhook_previous_password = Set(row.webhook_password.clone());
        changes.webhook_previous_until = Set(Some(Utc::now() + grace));
        changes.webhook_login = Set(row.webhook_pending_login.clone());
        changes.webhook_password = Set(row.webhook_pending_password.clone());
        changes.webhook_pending_login = Set(None);
        changes.webhook_pending_password = Set(None);
        count(metrics, "rotate", true);
        tracing::info!(account_id, "webhook credentials rotated");
    }
    let row = accounts::update(&core.db, changes, Utc::now()).await?;
    core.account_stored(&row).await;
    Ok(())
}

impl Actor for WebhookRegistrar {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        match self.target_url() {
            None => {
                tracing::info!("webhooks.public_base_url is empty: webhook registration is off")
            }
            Some(url) => tracing::info!(%url, "webhook registration is on"),
        }
    }
}

impl Supervised for WebhookRegistrar {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.in_flight.clear();
        self.core
            .metrics
            .actor_restarts
            .with_label_values(&["registrar"])
            .inc();
    }
}

impl Handler<Traced<EnsureWebhook>> for WebhookRegistrar {
    type Result = ();

    fn handle(&mut self, msg: Traced<EnsureWebhook>, ctx: &mut Context<Self>) {
        self.ensure(msg.msg.account_id, ctx);
    }
}

impl Handler<EnsureAll> for WebhookRegistrar {
    type Result = ();

    fn handle(&mut self, _msg: EnsureAll, ctx: &mut Context<Self>) {
        let core = self.core.clone();
        let clustered = core.cluster.is_some();
        ctx.spawn(
            async move {
                // In a cluster each active account is registered by its
                // owner when it takes the account on; the inactive ones
                // are looked at once per cluster start-up round.
                if clustered {
                    let every = chrono::Duration::seconds(RECONCILE_EVERY_SECS);
                    if !leases::claim_chore(&core.db, RECONCILE_CHORE, every, Utc::now()).await? {
                        return Ok(Vec::new());
                    }
                }
                accounts::all(&core.db).await
            }
            .into_actor(self)
            .map(move |rows, act, ctx| match rows {
                Ok(rows) => {
                    for row in rows {
                        if clustered && row.is_active {
                            continue;
                        }
                        // Inactive accounts only need a look when they
                        // may still be enabled at Hostaway.
                        if row.is_active || row.webhook_status != WebhookStatus::Disabled {
                            act.ensure(row.account_id, ctx);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not list accounts for webhook registration")
                }
            }),
        );
    }
}

impl Handler<Traced<RotateCredentials>> for WebhookRegistrar {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: Traced<RotateCredentials>, ctx: &mut Context<Self>) -> Self::Result {
        let account_id = msg.msg.account_id;
        let core = self.core.clone();
        let addr = ctx.address();
        Box::pin(async move {
            let login = format!("sync-hostaway-{account_id}-{}", random_token(4));
            let password = random_token(24);
            let mut changes = accounts::changes(account_id);
            changes.webhook_pending_login = Set(Some(login));
            changes.webhook_pending_password = Set(Some(core.cipher.encrypt(&password)));
            changes.webhook_status = Set(WebhookStatus::Pending);
            let row = accounts::update(&core.db, changes, Utc::now())
                .await
                .map_err(|e| e.to_string())?;
            // Accepted from now on, alongside the current credentials.
            core.account_stored(&row).await;
            use super::traced::TraceExt;
            addr.do_send(EnsureWebhook { account_id }.traced());
            Ok(())
        })
    }
}

impl Handler<Traced<RemoveWebhook>> for WebhookRegistrar {
    type Result = actix::ResponseActFuture<Self, ()>;

    /// Resolves after the first attempt; failures go on in the background.
    fn handle(&mut self, msg: Traced<RemoveWebhook>, _ctx: &mut Context<Self>) -> Self::Result {
        self.remove(msg.msg.client)
    }
}
