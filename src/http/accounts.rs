//! The account API (admin bearer token): create, read, update, delete
//! accounts, trigger syncs, replay dead letters, rotate webhook credentials.
//! Secrets are accepted, encrypted, and never returned.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::ApiError;
use super::auth::Admin;
use super::webhooks::read_body;
use crate::events::EventType;
use crate::http::AppContext;
use crate::lifecycle::{Accounts, Change, Create};
use crate::store::accounts::{self, EntityCounts};
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
    AccountView {
        account_id: row.account_id,
        customer_id: row.customer_id,
        is_active: row.is_active,
        status,
        sync_state: row.sync_state,
        last_sync_at: row.last_sync_at,
        last_error: row.last_error,
        ignored_events: row.ignored_events,
        webhook: WebhookView {
            status: row.webhook_status,
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

fn parse_account_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request("invalid_path", "the account id must be a positive integer")
    })
}

/// The lifecycle operations, over this service's state and actors.
fn lifecycle(ctx: &AppContext) -> Accounts<'_> {
    Accounts::new(&ctx.core, &ctx.actors)
}

/// A `true`/`false` (or `1`/`0`) query flag; absent is false.
fn query_flag(raw: Option<&str>, name: &str) -> Result<bool, ApiError> {
    match raw {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be true or false"),
        )),
    }
}

/// Parses a JSON object body, refusing unknown fields.
async fn object_body(
    req: &HttpRequest,
    payload: web::Payload,
    allowed: &[&str],
) -> Result<Map<String, Value>, ApiError> {
    let ctx = req
        .app_data::<web::Data<AppContext>>()
        .ok_or_else(|| ApiError::internal(&"the application context is not registered"))?;
    let body = read_body(req, payload, ADMIN_BODY_LIMIT, &ctx.bodies).await?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!(
                "unknown field `{unknown}` (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(map)
}

fn field_secret(map: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match map.get("client_secret") {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 512 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ApiError::bad_request(
            "invalid_body",
            "client_secret must be a non-empty string of at most 512 characters",
        )),
        Some(_) => Err(ApiError::bad_request(
            "invalid_body",
            "client_secret must be a string",
        )),
    }
}

/// `Some(None)` clears the customer id.
fn field_customer(map: &Map<String, Value>) -> Result<Option<Option<Uuid>>, ApiError> {
    match map.get("customer_id") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Uuid::parse_str(s)
            .map(|u| Some(Some(u)))
            .map_err(|_| ApiError::bad_request("invalid_body", "customer_id must be a UUID")),
        Some(_) => Err(ApiError::bad_request(
            "invalid_body",
            "customer_id must be a UUID string",
        )),
    }
}

fn field_ignored(map: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_body",
            format!(
                "ignored_events must be a list of event names ({})",
                EventType::names().collect::<Vec<_>>().join(", ")
            ),
        )
    };
    match map.get("ignored_events") {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) if EventType::parse(s).is_some() => Ok(s.clone()),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad()),
    }
}

pub async fn create(
    _admin: Admin,
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<AppContext>,
) -> Result<HttpResponse, ApiError> {
    let map = object_body(
        &req,
        payload,
        &[
            "account_id",
            "client_secret",
            "customer_id",
            "ignored_events",
        ],
    )
    .await?;
    let account_id = match map.get("account_id") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "account_id is required",
            ));
        }
        Some(Value::Number(n)) => n.as_i64().filter(|id| *id > 0).ok_or_else(|| {
            ApiError::bad_request("invalid_body", "account_id must be a positive integer")
        })?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "account_id must be a positive integer",
            ));
        }
    };
    let client_secret = field_secret(&map)?
        .ok_or_else(|| ApiError::bad_request("invalid_body", "client_secret is required"))?;
    let row = lifecycle(&ctx)
        .create(Create {
            account_id,
            client_secret,
            customer_id: field_customer(&map)?.flatten(),
            ignored_events: field_ignored(&map)?.unwrap_or_default(),
        })
        .await?;
    let view = view(&ctx, row, EntityCounts::default());
    Ok(HttpResponse::Created().json(view))
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
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = lifecycle(&ctx).find(parse_account_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(view_of(&ctx, row).await?))
}

pub async fn update(
    _admin: Admin,
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<AppContext>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = parse_account_id(&path)?;
    let map = object_body(
        &req,
        payload,
        &[
            "client_secret",
            "customer_id",
            "is_active",
            "ignored_events",
        ],
    )
    .await?;
    let is_active = match map.get("is_active") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "is_active must be true or false",
            ));
        }
    };
    let change = Change {
        client_secret: field_secret(&map)?,
        customer_id: field_customer(&map)?,
        ignored_events: field_ignored(&map)?,
        is_active,
    };
    let row = lifecycle(&ctx).change(account_id, change).await?;
    Ok(HttpResponse::Ok().json(view_of(&ctx, row).await?))
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    hard: Option<String>,
}

pub async fn remove(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let account_id = parse_account_id(&path)?;
    let hard = query_flag(query.hard.as_deref(), "hard")?;
    if !hard {
        let row = lifecycle(&ctx).deactivate(account_id).await?;
        return Ok(HttpResponse::Ok().json(view_of(&ctx, row).await?));
    }
    lifecycle(&ctx).delete(account_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct SyncQuery {
    mode: Option<String>,
    dry_run: Option<String>,
}

pub async fn sync(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<String>,
    query: web::Query<SyncQuery>,
) -> Result<HttpResponse, ApiError> {
    let account_id = parse_account_id(&path)?;
    let mode = match query.mode.as_deref() {
        None | Some("incremental") => SyncMode::Incremental,
        Some("full") => SyncMode::Full,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "mode must be full or incremental",
            ));
        }
    };
    let dry_run = query_flag(query.dry_run.as_deref(), "dry_run")?;
    // A manual sync also lifts a degraded state.
    lifecycle(&ctx)
        .sync(account_id, SyncRequest { mode, dry_run })
        .await?;
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
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = parse_account_id(&path)?;
    let count = lifecycle(&ctx).replay_failed(account_id).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "requeued", "requeued": count})))
}

pub async fn rotate_credentials(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = parse_account_id(&path)?;
    lifecycle(&ctx).rotate_credentials(account_id).await?;
    Ok(HttpResponse::Accepted().json(json!({"status": "rotating", "account_id": account_id})))
}
