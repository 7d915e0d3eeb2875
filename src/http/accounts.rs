//! The account API (admin bearer token): create, read, update, delete
//! accounts, trigger syncs, replay dead letters, rotate webhook credentials.
//! Secrets are accepted, encrypted, and never returned.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::ApiError;
use super::auth::Admin;
use super::dto::{
    AccountPath, CreateAccount, DeleteQuery, SyncQuery, UpdateAccount, VerifyQuery, parse_body,
    required,
};
use super::webhooks::read_body;
use crate::hostaway::{Credentials, HostawayError};
use crate::http::AppContext;
use crate::lifecycle::{Accounts, Change, Create, Waited};
use crate::store::accounts::{self, EntityCounts};
use crate::sync::progress::Snapshot;
use crate::sync::{SyncMode, SyncRequest};
use entities::account::{SyncState, WebhookStatus};

/// Largest admin request body.
const ADMIN_BODY_LIMIT: usize = 64 * 1024;

#[derive(Serialize)]
struct WebhookView {
    status: WebhookStatus,
    webhook_id: Option<i64>,
    last_error: Option<String>,
    rotating: bool,
}

/// The account's syncs: the latest outcome and, while one runs, its
/// progress (phase, `started_at`, counts of totals, requests, rate-limit
/// wait, ETA), as of at most a second ago.
#[derive(Serialize)]
struct SyncView {
    state: SyncState,
    last_sync_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    running: bool,
    #[serde(flatten)]
    progress: Option<Snapshot>,
}

#[derive(Serialize)]
struct AccountView {
    account_id: i64,
    customer_id: Option<Uuid>,
    is_active: bool,
    status: &'static str,
    sync_state: SyncState,
    last_sync_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    ignored_events: Value,
    sync: SyncView,
    webhook: WebhookView,
    counts: EntityCounts,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(ctx: &AppContext, row: entities::account::Model, counts: EntityCounts) -> AccountView {
    let degraded = ctx
        .directory
        .get(row.account_id)
        .is_some_and(|e| e.degraded);
    let status = match (row.is_active, degraded) {
        (false, _) => "inactive",
        (true, true) => "degraded",
        (true, false) => "active",
    };
    let progress = row
        .sync_progress
        .and_then(|p| serde_json::from_value::<Snapshot>(p).ok());
    AccountView {
        sync: SyncView {
            state: row.sync_state,
            last_sync_at: row.last_sync_at,
            last_error: row.last_error.clone(),
            running: row.sync_state == SyncState::Syncing || progress.is_some(),
            progress,
        },
        account_id: row.account_id,
        customer_id: row.customer_id,
        is_active: row.is_active,
        status,
        sync_state: row.sync_state,
        last_sync_at: row.last_sync_at,
        last_error: row.last_error,
        ignored_events: row.ignored_events,
        webhook: WebhookView {
            // No public URL: the service registers nothing.
            status: if ctx.settings.webhooks.public_base_url.trim().is_empty() {
                WebhookStatus::Disabled
            } else {
                row.webhook_status
            },
            webhook_id: row.webhook_id,
            last_error: row.webhook_error,
            rotating: row.webhook_pending_login.is_some(),
        },
        counts,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

async fn view_of(ctx: &AppContext, row: entities::account::Model) -> Result<AccountView, ApiError> {
    let counts = accounts::entity_counts(&ctx.db, Some(row.account_id))
        .await?
        .remove(&row.account_id)
        .unwrap_or_default();
    Ok(view(ctx, row, counts))
}

/// The lifecycle operations, over this service's state and actors.
fn lifecycle(ctx: &AppContext) -> Accounts<'_> {
    Accounts::new(&ctx.core, &ctx.actors)
}

/// Reads and parses an admin request body.
async fn body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    ctx: &AppContext,
) -> Result<T, ApiError> {
    parse_body(&read_body(req, payload, ADMIN_BODY_LIMIT, &ctx.bodies).await?)
}

pub async fn create(
    _admin: Admin,
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<AppContext>,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    let new: CreateAccount = body(&req, payload, &ctx).await?;
    let account_id = required(new.account_id, "account_id")?.0;
    let client_secret = required(new.client_secret, "client_secret")?.0;
    if query.verify() {
        if lifecycle(&ctx).find(account_id).await.is_ok() {
            return Err(crate::lifecycle::LifecycleError::AlreadyExists(account_id).into());
        }
        check_credentials(&ctx, account_id, &client_secret, Check::Cached).await?;
    }
    let row = lifecycle(&ctx)
        .create(Create {
            account_id,
            client_secret,
            customer_id: new.customer_id.and_then(|c| c.0),
            ignored_events: new.ignored_events.unwrap_or_default().0,
        })
        .await?;
    if query.verify() {
        // The check's token serves the first sync, and a restart.
        ctx.hostaway.persist_token(account_id).await;
    }
    // The first sync is queued: say so rather than the row's `idle`.
    let mut view = view(&ctx, row, EntityCounts::default());
    if ctx.settings.sync.sync_on_create && view.last_sync_at.is_none() {
        view.sync_state = SyncState::Syncing;
        view.sync.state = SyncState::Syncing;
        view.sync.running = true;
    }
    Ok(HttpResponse::Created().json(view))
}

/// How a secret is checked.
#[derive(Clone, Copy)]
enum Check {
    /// A new account: the token fetched is kept for its first sync.
    Cached,
    /// A new secret of an existing account: a token is fetched and
    /// dropped (the cached one belongs to the old secret).
    Fresh,
}

/// Asks Hostaway for a token with the secret before anything is stored:
/// refused → 422, Hostaway unreachable → 503 (`?verify=false` skips this).
async fn check_credentials(
    ctx: &AppContext,
    account_id: i64,
    secret: &str,
    check: Check,
) -> Result<(), ApiError> {
    let credentials = Credentials {
        account_id,
        client_secret: secrecy::SecretString::from(secret.to_string()),
    };
    let checked = match check {
        Check::Cached => ctx.hostaway.account(credentials).ensure_token().await,
        Check::Fresh => ctx.hostaway.verify_credentials(credentials).await,
    };
    match checked {
        Ok(()) => Ok(()),
        Err(HostawayError::AuthFailed { .. }) => Err(ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "credentials_refused",
            format!(
                "Hostaway refused the client secret of account {account_id}; nothing was stored"
            ),
        )),
        Err(err) => {
            let mut error = ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "hostaway_unavailable",
                format!(
                    "could not check the credentials with Hostaway ({err}); nothing was stored: \
                     retry, or pass ?verify=false to store them unchecked"
                ),
            );
            error.retry_after = Some(5);
            Err(error)
        }
    }
}

pub async fn list(_admin: Admin, ctx: web::Data<AppContext>) -> Result<HttpResponse, ApiError> {
    let rows = accounts::all(&ctx.db).await?;
    let mut counts: HashMap<i64, EntityCounts> = accounts::entity_counts(&ctx.db, None).await?;
    let views: Vec<AccountView> = rows
        .into_iter()
        .map(|row| {
            let c = counts.remove(&row.account_id).unwrap_or_default();
            view(&ctx, row, c)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "accounts": views })))
}

pub async fn get_one(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
) -> Result<HttpResponse, ApiError> {
    let row = lifecycle(&ctx).find(path.0.0).await?;
    Ok(HttpResponse::Ok().json(view_of(&ctx, row).await?))
}

pub async fn update(
    _admin: Admin,
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
    query: web::Query<VerifyQuery>,
) -> Result<HttpResponse, ApiError> {
    let patch: UpdateAccount = body(&req, payload, &ctx).await?;
    if let Some(secret) = &patch.client_secret
        && query.verify()
    {
        lifecycle(&ctx).find(path.0.0).await?;
        check_credentials(&ctx, path.0.0, &secret.0, Check::Fresh).await?;
    }
    let change = Change {
        client_secret: patch.client_secret.map(|s| s.0),
        customer_id: patch.customer_id.map(|c| c.0),
        ignored_events: patch.ignored_events.map(|e| e.0),
        is_active: patch.is_active.map(|a| a.0),
    };
    let row = lifecycle(&ctx).change(path.0.0, change).await?;
    Ok(HttpResponse::Ok().json(view_of(&ctx, row).await?))
}

pub async fn remove(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let account_id = path.0.0;
    if !query.hard.0 {
        let row = lifecycle(&ctx).deactivate(account_id).await?;
        return Ok(HttpResponse::Ok().json(view_of(&ctx, row).await?));
    }
    lifecycle(&ctx).delete(account_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn sync(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
    query: web::Query<SyncQuery>,
) -> Result<HttpResponse, ApiError> {
    let account_id = path.0.0;
    let mode = query.mode.unwrap_or(SyncMode::Incremental);
    let dry_run = query.dry_run.0;
    let request = SyncRequest { mode, dry_run };
    if query.wait.0 {
        return match lifecycle(&ctx).sync_and_wait(account_id, request).await? {
            Waited::Here(Ok(report)) => Ok(HttpResponse::Ok().json(json!({
                "status": "finished",
                "account_id": account_id,
                "report": report,
            }))),
            Waited::Here(Err(err)) => Err(ApiError::new(
                actix_web::http::StatusCode::BAD_GATEWAY,
                "sync_failed",
                format!("the sync of account {account_id} failed: {err}"),
            )),
            Waited::Elsewhere(row) if row.sync_state == SyncState::Failed => Err(ApiError::new(
                actix_web::http::StatusCode::BAD_GATEWAY,
                "sync_failed",
                format!(
                    "the sync of account {account_id} failed: {}",
                    row.last_error.unwrap_or_default()
                ),
            )),
            Waited::Elsewhere(row) => Ok(HttpResponse::Ok().json(json!({
                "status": "finished",
                "account_id": account_id,
                "report": null,
                "account": view_of(&ctx, *row).await?,
            }))),
        };
    }
    // A manual sync also lifts a degraded state.
    lifecycle(&ctx).sync(account_id, request).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "status": "accepted",
        "account_id": account_id,
        "mode": mode.as_str(),
        "dry_run": dry_run,
    })))
}

pub async fn replay_failed(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
) -> Result<HttpResponse, ApiError> {
    let count = lifecycle(&ctx).replay_failed(path.0.0).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "requeued", "requeued": count})))
}

pub async fn rotate_credentials(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
) -> Result<HttpResponse, ApiError> {
    let account_id = path.0.0;
    lifecycle(&ctx).rotate_credentials(account_id).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "rotating", "account_id": account_id})))
}
