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

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct WebhookView {
    status: WebhookStatus,
    webhook_id: Option<i64>,
    last_error: Option<String>,
    rotating: bool,
}

/// The account's syncs: the latest outcome and, while one runs, its
/// progress (phase, `started_at`, counts of totals, requests, rate-limit
/// wait, ETA), as of at most a second ago.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SyncView {
    state: SyncState,
    last_sync_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    running: bool,
    #[serde(flatten)]
    #[schema(value_type = super::openapi::ProgressFields)]
    progress: Option<Snapshot>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Account)]
pub(crate) struct AccountView {
    account_id: i64,
    customer_id: Option<Uuid>,
    is_active: bool,
    /// `active`, `degraded` or `inactive`.
    #[schema(value_type = String)]
    status: &'static str,
    sync_state: SyncState,
    last_sync_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    #[schema(value_type = Vec<super::openapi::EventName>)]
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

/// Adds an account: its secret is checked with Hostaway first.
#[utoipa::path(
    post,
    path = "/api/v1/hostaway/accounts",
    tag = "accounts",
    security(("admin" = [])),
    params(("verify" = Option<bool>, Query, description = "false: store the secret without checking it")),
    request_body = super::dto::CreateAccount,
    responses(
        (status = 201, description = "Stored; the first full sync starts", body = super::accounts::AccountView),
        (status = 400, description = "The path, query or body is invalid: the message names the field", body = super::openapi::Error),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error),
        (status = 409, description = "The account exists", body = super::openapi::Error),
        (status = 413, description = "The body is too large", body = super::openapi::Error),
        (status = 422, description = "Hostaway refused the secret; nothing stored", body = super::openapi::Error),
        (status = 503, description = "Hostaway could not be asked; nothing stored (Retry-After)", body = super::openapi::Error)
    )
)]
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

/// Every account.
#[utoipa::path(
    get,
    path = "/api/v1/hostaway/accounts",
    tag = "accounts",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Every account", body = super::openapi::AccountList),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error)
    )
)]
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

/// One account, with a running sync's progress.
#[utoipa::path(
    get,
    path = "/api/v1/hostaway/accounts/{id}",
    tag = "accounts",
    security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The Hostaway account id")),
    responses(
        (status = 200, description = "The account", body = super::accounts::AccountView),
        (status = 400, description = "The path, query or body is invalid: the message names the field", body = super::openapi::Error),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error),
        (status = 404, description = "No such account", body = super::openapi::Error)
    )
)]
pub async fn get_one(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
) -> Result<HttpResponse, ApiError> {
    let row = lifecycle(&ctx).find(path.0.0).await?;
    Ok(HttpResponse::Ok().json(view_of(&ctx, row).await?))
}

/// Changes the fields given; a new secret is checked with Hostaway first.
#[utoipa::path(
    patch,
    path = "/api/v1/hostaway/accounts/{id}",
    tag = "accounts",
    security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The Hostaway account id"), ("verify" = Option<bool>, Query, description = "false: store a new secret without checking it")),
    request_body = super::dto::UpdateAccount,
    responses(
        (status = 200, description = "The account after the change", body = super::accounts::AccountView),
        (status = 400, description = "The path, query or body is invalid: the message names the field", body = super::openapi::Error),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error),
        (status = 404, description = "No such account", body = super::openapi::Error),
        (status = 422, description = "Hostaway refused the new secret; nothing changed", body = super::openapi::Error),
        (status = 503, description = "Hostaway could not be asked; nothing changed (Retry-After)", body = super::openapi::Error)
    )
)]
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

/// Deactivates the account (its data stays), or with `hard=true` erases it.
#[utoipa::path(
    delete,
    path = "/api/v1/hostaway/accounts/{id}",
    tag = "accounts",
    security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The Hostaway account id"), ("hard" = Option<bool>, Query, description = "true: erase the account and its mirrored data")),
    responses(
        (status = 200, description = "Deactivated", body = super::accounts::AccountView),
        (status = 204, description = "Erased"),
        (status = 400, description = "The path, query or body is invalid: the message names the field", body = super::openapi::Error),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error),
        (status = 404, description = "No such account", body = super::openapi::Error)
    )
)]
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

/// Queues a sync, or with `wait=true` answers when it ends.
#[utoipa::path(
    post,
    path = "/api/v1/hostaway/accounts/{id}/sync",
    tag = "accounts",
    security(("admin" = [])),
    params(
        ("id" = i64, Path, minimum = 1, description = "The Hostaway account id"),
        ("mode" = Option<crate::sync::SyncMode>, Query, description = "full, or incremental (the default)"),
        ("dry_run" = Option<bool>, Query, description = "Fetch and count, write nothing"),
        ("wait" = Option<bool>, Query, description = "Answer when the sync ends, with its report")
    ),
    responses(
        (status = 200, description = "`wait=true`: the sync finished", body = super::openapi::SyncFinished),
        (status = 202, description = "Queued", body = super::openapi::SyncAccepted),
        (status = 400, description = "The path, query or body is invalid: the message names the field", body = super::openapi::Error),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error),
        (status = 404, description = "No such account", body = super::openapi::Error),
        (status = 409, description = "The account is inactive", body = super::openapi::Error),
        (status = 502, description = "`wait=true`: the sync failed; the message says why", body = super::openapi::Error),
        (status = 503, description = "The account's actor is restarting: retry", body = super::openapi::Error)
    )
)]
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

/// Puts the account's dead letters back in the inbox.
#[utoipa::path(
    post,
    path = "/api/v1/hostaway/accounts/{id}/replay-failed",
    tag = "accounts",
    security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The Hostaway account id")),
    responses(
        (status = 202, description = "Requeued", body = super::openapi::Requeued),
        (status = 400, description = "The path, query or body is invalid: the message names the field", body = super::openapi::Error),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error),
        (status = 404, description = "No such account", body = super::openapi::Error)
    )
)]
pub async fn replay_failed(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
) -> Result<HttpResponse, ApiError> {
    let count = lifecycle(&ctx).replay_failed(path.0.0).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "requeued", "requeued": count})))
}

/// Rotates the account's webhook credentials (the old ones stay accepted
/// for a grace period).
#[utoipa::path(
    post,
    path = "/api/v1/hostaway/accounts/{id}/rotate-webhook-credentials",
    tag = "accounts",
    security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The Hostaway account id")),
    responses(
        (status = 202, description = "Rotation started", body = super::openapi::Rotating),
        (status = 400, description = "The path, query or body is invalid: the message names the field", body = super::openapi::Error),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error),
        (status = 404, description = "No such account", body = super::openapi::Error),
        (status = 409, description = "The account is inactive", body = super::openapi::Error)
    )
)]
pub async fn rotate_credentials(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<AccountPath>,
) -> Result<HttpResponse, ApiError> {
    let account_id = path.0.0;
    lifecycle(&ctx).rotate_credentials(account_id).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "rotating", "account_id": account_id})))
}
