//! `POST /api/v1/hostaway/webhooks`: authenticate, validate, append to the
//! inbox through the Ingest actor, and answer only once the event is durable.
//! Also the admin routes over the inbox: list events, replay dead letters.

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_LENGTH;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;
use tracing_actix_web::RootSpan;

use super::ApiError;
use super::auth::{Admin, Deliverer, authenticate_delivery};
use super::dto::{DEFAULT_EVENTS_LIMIT, EventsQuery};
use crate::actors::group_commit::Request;
use crate::actors::router::RequeueFor;
use crate::actors::traced::TraceExt;
use crate::config::ServerSettings;
use crate::events::EventType;
use crate::hostaway::decode;
use crate::hostaway::json::Json;
use crate::hostaway::webhook::parse_delivery;
use crate::http::AppContext;
use crate::store::inbox::{self, Appended, EventFilter, EventStatus, NewEvent};

/// What no more than `server.max_inflight_bodies` request bodies, holding no
/// more than `server.max_inflight_body_bytes` in all, may take while they are
/// being read; and how long one may take (`server.body_timeout_secs`).
pub struct BodyBudget {
    bodies: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    timeout: Duration,
}

impl BodyBudget {
    pub fn new(settings: &ServerSettings) -> Self {
        BodyBudget {
            bodies: Arc::new(Semaphore::new(settings.max_inflight_bodies.get())),
            bytes: Arc::new(Semaphore::new(
                settings
                    .max_inflight_body_bytes
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
            timeout: settings.body_timeout_secs.duration(),
        }
    }
}

/// A body that announces at most this many bytes gets its buffer at once;
/// a larger one starts at `GROWING_BODY_CAPACITY` and grows as bytes arrive,
/// whatever `Content-Length` says.
const EXACT_BODY_CAPACITY: usize = 64 * 1024;
const GROWING_BODY_CAPACITY: usize = 4 * 1024;

fn saturated() -> ApiError {
    ApiError::unavailable("too many request bodies are being read; retry shortly")
        .retry_after(1)
        .closing()
}

/// Reads the body within the budget: more than `limit` bytes is a 413, a
/// body not complete within the deadline a 408 (and the connection is
/// closed), a body beyond the budget's bounds a 503 with `Retry-After`.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    budget: &BodyBudget,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let _reading = budget
        .bodies
        .clone()
        .try_acquire_owned()
        .map_err(|_| saturated())?;
    let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let deadline = tokio::time::Instant::now() + budget.timeout;
    let capacity = match declared {
        Some(n) if n <= EXACT_BODY_CAPACITY => n,
        Some(_) => GROWING_BODY_CAPACITY,
        None => 1024,
    };
    let mut body = BytesMut::with_capacity(capacity);
    loop {
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("the body was not received within {:?}", budget.timeout),
                )
                .closing());
            }
            Ok(None) => break,
            Ok(Some(chunk)) => {
                chunk.map_err(|e| ApiError::bad_request("unreadable_body", e.to_string()))?
            }
        };
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        let bytes = u32::try_from(chunk.len()).map_err(|_| too_large())?;
        let more = budget
            .bytes
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| saturated())?;
        match &mut held {
            Some(held) => held.merge(more),
            None => held = Some(more),
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A webhook delivery: stored durably before the 200.
#[utoipa::path(
    post,
    path = "/api/v1/hostaway/webhooks",
    tag = "webhooks",
    security(("webhook" = [])),
    request_body(content = Object, description = "The event as Hostaway sends it (API.md §5): `event`, `accountId`, `data`…", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (or a redelivery recognised); applied in the background", body = super::openapi::WebhookAck),
        (status = 400, description = "Not JSON, or no account id or event name", body = super::openapi::Error),
        (status = 401, description = "Wrong or missing Basic credentials for the account", body = super::openapi::Error),
        (status = 408, description = "The body did not arrive within server.body_timeout_secs", body = super::openapi::Error),
        (status = 413, description = "Larger than server.body_limit_bytes", body = super::openapi::Error),
        (status = 503, description = "Saturated or the inbox could not store it: retry (Retry-After)", body = super::openapi::Error)
    )
)]
pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    ctx: web::Data<AppContext>,
    root: RootSpan,
) -> HttpResponse {
    let mut event = "invalid".to_string();
    let response = match accept(&req, payload, &ctx, &root, &mut event).await {
        Ok(response) => response,
        Err(err) => actix_web::ResponseError::error_response(&err),
    };
    let label = if event == "invalid" {
        "invalid"
    } else {
        EventType::label(&event)
    };
    ctx.metrics
        .webhooks_received
        .with_label_values(&[label, response.status().as_str()])
        .inc();
    response
}

async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    ctx: &AppContext,
    root: &RootSpan,
    event_name: &mut String,
) -> Result<HttpResponse, ApiError> {
    let deliverer = authenticate_delivery(req, ctx)?;
    let body = read_body(
        req,
        payload,
        ctx.settings.server.body_limit_bytes,
        &ctx.bodies,
    )
    .await?;
    let invalid = |e: &dyn std::fmt::Display| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    };
    // The text stored: the bytes received, unless NULs had to be replaced
    // (JSONB cannot store NUL; normalised the same on both backends).
    let text = if decode::may_hold_nul(&body) {
        let mut value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| invalid(&e))?;
        let replaced = decode::replace_nul(&mut value);
        ctx.metrics.webhook_nul_replaced.inc_by(replaced as u64);
        value.to_string()
    } else {
        String::from_utf8(body.to_vec()).map_err(|e| invalid(&e))?
    };
    // Read once, borrowing from the text: the entity's canonical text and
    // its row fields are all that is kept of the parse.
    let json = Json::parse(text.as_bytes()).map_err(|e| invalid(&e))?;
    let delivery = parse_delivery(&json)
        .map_err(|e| ApiError::bad_request("invalid_webhook", e.to_string()))?;
    drop(json);
    *event_name = delivery.event.clone();
    root.record("hostaway.account_id", delivery.account_id);
    root.record("hostaway.event", delivery.event.as_str());
    if let Deliverer::Account(owner) = deliverer
        && owner != delivery.account_id
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized_basic",
            "these webhook credentials are not valid for this account",
        ));
    }
    let entry = ctx
        .directory
        .get(delivery.account_id)
        .filter(|e| e.active)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "account {} is unknown or inactive",
                delivery.account_id
            ))
        })?;

    let ignored_reason = match delivery.kind {
        None => Some("unknown_event"),
        Some(_) if entry.ignored_events.contains(&delivery.event) => Some("account_filter"),
        Some(_) => None,
    };
    let status = if ignored_reason.is_some() {
        EventStatus::Ignored
    } else {
        EventStatus::Pending
    };
    let entity = delivery.entity.map(Arc::new);
    // What the row holds in memory until applied: the text, and the
    // entity's text beside it.
    let size = text.len() + entity.as_ref().map_or(0, |e| e.text.len());
    let event = NewEvent {
        account_id: delivery.account_id,
        event_type: delivery.event.clone(),
        object_type: delivery.object.clone(),
        dedupe_key: delivery.dedupe_key.clone(),
        entity_key: delivery.entity_key.clone(),
        text,
        entity,
        status,
        // The ingest actor records its append span's context here.
        traceparent: None,
        received_at: Utc::now(),
        size,
    };
    let ingest = &req
        .app_data::<super::WorkerIngest>()
        .ok_or_else(|| ApiError::unavailable("the inbox is not running; retry"))?
        .0;
    let appended = ingest
        .send(Request { item: event }.traced())
        .await
        .map_err(|_| ApiError::unavailable("the inbox is restarting; retry"))?
        .map_err(|err| {
            tracing::error!(error = %err, "inbox append failed; asking Hostaway to retry");
            ApiError::unavailable("the event could not be stored; retry later")
        })?;
    let body = match appended {
        Appended::Duplicate => json!({"status": "duplicate"}),
        Appended::Stored(id) => {
            root.record("inbox.event_id", id);
            match ignored_reason {
                Some(reason) => {
                    ctx.metrics
                        .webhook_ignored
                        .with_label_values(&[reason])
                        .inc();
                    tracing::info!(
                        account_id = delivery.account_id,
                        event = %delivery.event,
                        reason,
                        "webhook stored as ignored"
                    );
                    json!({"status": "ignored", "event_id": id})
                }
                None => json!({"status": "accepted", "event_id": id}),
            }
        }
    };
    Ok(HttpResponse::Ok().json(body))
}

/// Inbox events, newest first, without payloads unless asked for.
#[utoipa::path(
    get,
    path = "/api/v1/hostaway/webhooks/events",
    tag = "webhooks",
    security(("admin" = [])),
    params(
        ("account_id" = Option<i64>, Query, description = "Only this account's events"),
        ("status" = Option<crate::store::inbox::EventStatus>, Query, description = "Only events in this state"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "Events per page (default 50)"),
        ("before_id" = Option<i64>, Query, description = "Events older than this id (`next_before_id` of the previous page)"),
        ("after_id" = Option<i64>, Query, description = "Events newer than this id"),
        ("include_payload" = Option<bool>, Query, description = "Include each event's payload (it holds guest data)")
    ),
    responses(
        (status = 200, description = "One page", body = super::openapi::EventsPage),
        (status = 400, description = "A query parameter is invalid", body = super::openapi::Error),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error)
    )
)]
pub async fn list_events(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let EventsQuery {
        account_id,
        status,
        limit,
        before_id,
        after_id,
        include_payload,
    } = query.into_inner();
    let limit = limit.map_or(DEFAULT_EVENTS_LIMIT, |l| l.0);
    let events = inbox::list(
        &ctx.db,
        &EventFilter {
            account_id,
            status,
            limit,
            before_id,
            after_id,
            include_payload: include_payload.is_some_and(|f| f.0),
        },
    )
    .await?;
    // Newest first; a full page names where the next one starts.
    let next_before_id = (events.len() as u64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next_before_id": next_before_id })))
}

/// Puts one dead letter back in the inbox.
#[utoipa::path(
    post,
    path = "/api/v1/hostaway/webhooks/events/{id}/replay",
    tag = "webhooks",
    security(("admin" = [])),
    params(("id" = i64, Path, description = "The inbox event id")),
    responses(
        (status = 202, description = "Requeued", body = super::openapi::EventRequeued),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error),
        (status = 404, description = "No such event", body = super::openapi::Error),
        (status = 409, description = "The event is not a dead letter", body = super::openapi::Error)
    )
)]
pub async fn replay_event(
    _admin: Admin,
    ctx: web::Data<AppContext>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let requeued = inbox::requeue_failed(&ctx.db, None, Some(id)).await?;
    match requeued.first() {
        Some((account_id, _)) => {
            ctx.actors.router.do_send(
                RequeueFor {
                    account_id: *account_id,
                    ids: vec![id],
                }
                .traced(),
            );
            Ok(HttpResponse::Accepted().json(json!({"status": "requeued", "event_id": id})))
        }
        None => match inbox::status_of(&ctx.db, id).await? {
            None => Err(ApiError::not_found(format!("event {id} does not exist"))),
            Some(status) => Err(ApiError::conflict(format!(
                "event {id} is {status}; only failed events (dead letters) can be replayed"
            ))),
        },
    }
}
