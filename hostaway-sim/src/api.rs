//! The simulated Hostaway API under `/v1`: tokens, listings, reservations,
//! conversations, messages and unified webhooks, with Hostaway's paths,
//! parameters, envelopes and status codes.

use actix_web::middleware::from_fn;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::behaviour::{ConversationOrder, MessageOrder};
use super::envelope::{self, Fail};
use super::gateway::{self, Caller};
use super::paging::{self, ActivityWindow, ReservationOrder, ReservationQuery};
use super::state::SimState;
use super::webhooks::WebhookPatch;

type Reply = Result<HttpResponse, Fail>;
type State = web::Data<SimState>;

/// Every `/v1` route, behind the gateway middleware.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .wrap(from_fn(gateway::edge))
            .service(
                web::resource("/accessTokens")
                    .route(web::post().to(issue_token))
                    .route(web::delete().to(revoke_token))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(get("/listings", list_listings))
            .service(get("/listings/{id}", get_listing))
            .service(get("/reservations", list_reservations))
            .service(get("/reservations/{id}", get_reservation))
            .service(get(
                "/reservations/{id}/conversations",
                reservation_conversations,
            ))
            .service(get("/conversations", list_conversations))
            .service(get("/conversations/{id}", get_conversation))
            .service(get("/conversations/{id}/messages", list_messages))
            .service(get("/conversations/{id}/messages/{messageId}", get_message))
            .service(
                web::resource("/webhooks/unifiedWebhooks")
                    .route(web::get().to(list_webhooks))
                    .route(web::post().to(create_webhook))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/webhooks/unifiedWebhooks/{id}")
                    .route(web::get().to(get_webhook))
                    .route(web::put().to(update_webhook))
                    .route(web::delete().to(delete_webhook))
                    .default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(unknown_path)),
    );
}

/// A GET-only resource; other methods get 405 in the fail envelope.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(method_not_allowed))
}

/// Unknown `/v1` path: 404, after rate-limit admission like any request.
async fn unknown_path(request: HttpRequest) -> Reply {
    admit_anonymous(&request)?;
    Err(Fail::not_found("Not found"))
}

async fn method_not_allowed(request: HttpRequest) -> Reply {
    admit_anonymous(&request)?;
    Err(Fail::method_not_allowed())
}

/// Admission for requests that need no token: counted against the account
/// too when a usable token is sent anyway.
fn admit_anonymous(request: &HttpRequest) -> Result<(), Fail> {
    let state = gateway::state_of(request)?;
    let account = gateway::bearer(request).and_then(|token| state.authenticate(token));
    gateway::admit(request, account)
}

/// A list page in the envelope, after any list lies (`Faults`) and with
/// `count` as the behaviour says.
fn respond_page(
    state: &SimState,
    request: &HttpRequest,
    page: paging::Page<Value>,
) -> HttpResponse {
    let page = state.distort(request.path(), page);
    envelope::page(page, state.behaviour().count)
}

fn truthy(flag: Option<&str>) -> bool {
    matches!(flag.map(str::trim), Some("1" | "true"))
}

// -- Tokens ---------------------------------------------------------------

/// `POST /v1/accessTokens`, form-encoded client-credentials grant.
async fn issue_token(request: HttpRequest, state: State, body: Bytes) -> Reply {
    let mut grant_type = None;
    let mut client_id = None;
    let mut client_secret = None;
    let mut scope = None;
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "grant_type" => grant_type = Some(value.into_owned()),
            "client_id" => client_id = Some(value.into_owned()),
            "client_secret" => client_secret = Some(value.into_owned()),
            "scope" => scope = Some(value.into_owned()),
            _ => {}
        }
    }
    let account_id = client_id
        .as_deref()
        .and_then(|id| id.trim().parse::<i64>().ok());
    let known = account_id.filter(|id| state.has_account(*id));
    gateway::admit(&request, known)?;

    let (Some(account_id), Some(secret)) = (account_id, client_secret) else {
        return Err(Fail::invalid_client());
    };
    if grant_type.as_deref() != Some("client_credentials") || scope.as_deref() != Some("general") {
        return Err(Fail::invalid_client());
    }
    let (access_token, expires_in) = state.issue_token(account_id, &secret)?;
    Ok(HttpResponse::Ok().json(TokenBody {
        token_type: "Bearer",
        expires_in,
        access_token,
    }))
}

/// The bare OAuth answer (no envelope), in Hostaway's key order.
#[derive(Serialize)]
struct TokenBody {
    token_type: &'static str,
    expires_in: u64,
    access_token: String,
}

#[derive(Deserialize)]
struct RevokeQuery {
    token: Option<String>,
}

/// `DELETE /v1/accessTokens?token=...`; needs no Authorization header.
async fn revoke_token(request: HttpRequest, state: State, query: web::Query<RevokeQuery>) -> Reply {
    let token = query.token.as_deref().map(str::trim).unwrap_or_default();
    let account = state.authenticate(token);
    gateway::admit(&request, account)?;
    if token.is_empty() {
        return Err(Fail::bad_request("token is required"));
    }
    state.revoke_token(token);
    Ok(envelope::success(json!([])))
}

// -- Listings -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListingsQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    latest_activity_start: Option<String>,
    latest_activity_end: Option<String>,
}

/// Account data of the caller; accounts are never removed, so a missing
/// account means the token outlived it and is treated as invalid.
fn read<R>(
    state: &SimState,
    caller: Caller,
    read: impl FnOnce(&super::dataset::AccountStore) -> R,
) -> Result<R, Fail> {
    state
        .read(caller.account_id, read)
        .ok_or_else(|| state.token_refused())
}

async fn list_listings(
    caller: Caller,
    request: HttpRequest,
    state: State,
    query: web::Query<ListingsQuery>,
) -> Reply {
    let behaviour = state.behaviour();
    let window = ActivityWindow::parse(
        query.latest_activity_start.as_deref(),
        query.latest_activity_end.as_deref(),
        behaviour.activity_format,
    )
    .map_err(Fail::bad_request)?;
    let (limit, offset) = paging::resolve(query.limit, query.offset, state.max_limit());
    let page = read(&state, caller, |store| {
        let matching = paging::filter_by_activity(&store.listings, &window);
        paging::slice(&matching, limit, offset).map(Value::clone)
    })?;
    Ok(respond_page(&state, &request, page))
}

async fn get_listing(caller: Caller, state: State, id: web::Path<i64>) -> Reply {
    read(&state, caller, |store| store.listing(*id).cloned())?
        .map(envelope::success)
        .ok_or_else(|| Fail::not_found("Listing not found"))
}

// -- Reservations -----------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReservationsQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    after_id: Option<i64>,
    latest_activity_start: Option<String>,
    latest_activity_end: Option<String>,
    sort_order: Option<String>,
    listing_id: Option<i64>,
}

async fn list_reservations(
    caller: Caller,
    request: HttpRequest,
    state: State,
    query: web::Query<ReservationsQuery>,
) -> Reply {
    let behaviour = state.behaviour();
    let (limit, offset) = paging::resolve(query.limit, query.offset, state.max_limit());
    let mut query = ReservationQuery {
        limit,
        offset,
        after_id: query.after_id,
        activity: ActivityWindow::parse(
            query.latest_activity_start.as_deref(),
            query.latest_activity_end.as_deref(),
            behaviour.activity_format,
        )
        .map_err(Fail::bad_request)?,
        order: ReservationOrder::parse(query.sort_order.as_deref()).map_err(Fail::bad_request)?,
        listing_id: query.listing_id,
        message_times: Default::default(),
    };
    let page = read(&state, caller, |store| {
        if query.order.needs_message_times() {
            query.message_times = store.message_times();
        }
        paging::select_reservations(&store.reservations, &query, behaviour.cursor)
            .map(|r| behaviour.render_reservation(r))
    })?;
    Ok(respond_page(&state, &request, page))
}

async fn get_reservation(caller: Caller, state: State, id: web::Path<i64>) -> Reply {
    let behaviour = state.behaviour();
    read(&state, caller, |store| {
        store
            .reservation(*id)
            .map(|r| behaviour.render_reservation(r))
    })?
    .map(envelope::success)
    .ok_or_else(|| Fail::not_found("Reservation not found"))
}

/// `GET /v1/reservations/{id}/conversations`: the reservation's conversations.
async fn reservation_conversations(caller: Caller, state: State, id: web::Path<i64>) -> Reply {
    let id = *id;
    let conversations = read(&state, caller, |store| {
        store.reservation(id)?;
        Some(
            store
                .conversations
                .iter()
                .filter(|c| c.get("reservationId").and_then(Value::as_i64) == Some(id))
                .map(|c| store.render_conversation(c, true))
                .collect::<Vec<_>>(),
        )
    })?
    .ok_or_else(|| Fail::not_found("Reservation not found"))?;
    Ok(envelope::success(Value::Array(conversations)))
}

// -- Conversations and messages --------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationsQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    include_resources: Option<String>,
    reservation_id: Option<i64>,
}

async fn list_conversations(
    caller: Caller,
    request: HttpRequest,
    state: State,
    query: web::Query<ConversationsQuery>,
) -> Reply {
    let behaviour = state.behaviour();
    let (limit, offset) = paging::resolve(query.limit, query.offset, state.max_limit());
    let include = truthy(query.include_resources.as_deref());
    let page = read(&state, caller, |store| {
        let mut matching: Vec<&Value> = store
            .conversations
            .iter()
            .filter(|c| {
                query
                    .reservation_id
                    .is_none_or(|id| c.get("reservationId").and_then(Value::as_i64) == Some(id))
            })
            .collect();
        if behaviour.conversation_order == ConversationOrder::NewestFirst {
            // By the latest message either way, then by id, both descending.
            let latest = |c: &Value| -> (String, i64) {
                let at = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or("").to_string();
                let (sent, received) = (at("messageSentOn"), at("messageReceivedOn"));
                (
                    sent.max(received),
                    c.get("id").and_then(Value::as_i64).unwrap_or(0),
                )
            };
            matching.sort_by_key(|c| std::cmp::Reverse(latest(c)));
        }
        paging::slice(&matching, limit, offset).map(|c| store.render_conversation(c, include))
    })?;
    Ok(respond_page(&state, &request, page))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceQuery {
    include_resources: Option<String>,
}

async fn get_conversation(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    query: web::Query<ResourceQuery>,
) -> Reply {
    let include = truthy(query.include_resources.as_deref());
    read(&state, caller, |store| {
        store
            .conversation(*id)
            .map(|c| store.render_conversation(c, include))
    })?
    .map(envelope::success)
    .ok_or_else(|| Fail::not_found("Conversation not found"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessagesQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    include_scheduled_messages: Option<String>,
}

/// Newest or oldest first (`message_order`); only `sent` messages unless
/// `includeScheduledMessages=1`.
async fn list_messages(
    caller: Caller,
    request: HttpRequest,
    state: State,
    id: web::Path<i64>,
    query: web::Query<MessagesQuery>,
) -> Reply {
    let id = *id;
    let (limit, offset) = paging::resolve(query.limit, query.offset, state.max_limit());
    let scheduled = truthy(query.include_scheduled_messages.as_deref());
    let behaviour = state.behaviour();
    let page = read(&state, caller, |store| {
        store.conversation(id)?;
        let mut ordered: Vec<&Value> = store
            .messages_of(id)
            .iter()
            .filter(|m| scheduled || m.get("status").and_then(Value::as_str) == Some("sent"))
            .collect();
        if behaviour.message_order == MessageOrder::NewestFirst {
            ordered.reverse();
        }
        Some(paging::slice(&ordered, limit, offset).map(Value::clone))
    })?
    .ok_or_else(|| Fail::not_found("Conversation not found"))?;
    Ok(respond_page(&state, &request, page))
}

async fn get_message(caller: Caller, state: State, ids: web::Path<(i64, i64)>) -> Reply {
    let (conversation_id, message_id) = *ids;
    let message = read(&state, caller, |store| {
        store.conversation(conversation_id)?;
        store
            .messages_of(conversation_id)
            .iter()
            .find(|m| m.get("id").and_then(Value::as_i64) == Some(message_id))
            .cloned()
    })?;
    message
        .map(envelope::success)
        .ok_or_else(|| Fail::not_found("Conversation message not found"))
}

// -- Unified webhooks -------------------------------------------------------

fn webhook_body(body: &Bytes, creating: bool) -> Result<WebhookPatch, Fail> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Fail::bad_request(format!("Invalid JSON body: {err}")))?;
    WebhookPatch::parse(&value, creating).map_err(Fail::bad_request)
}

/// Like the fixture, the list has no paging numbers.
async fn list_webhooks(caller: Caller, state: State) -> Reply {
    Ok(envelope::success(Value::Array(
        state.list_webhooks(caller.account_id),
    )))
}

async fn create_webhook(caller: Caller, state: State, body: Bytes) -> Reply {
    let patch = webhook_body(&body, true)?;
    Ok(envelope::success(
        state.create_webhook(caller.account_id, patch),
    ))
}

async fn get_webhook(caller: Caller, state: State, id: web::Path<i64>) -> Reply {
    state
        .webhook(caller.account_id, *id)
        .map(envelope::success)
        .ok_or_else(|| Fail::not_found("Unified webhook not found"))
}

async fn update_webhook(caller: Caller, state: State, id: web::Path<i64>, body: Bytes) -> Reply {
    let patch = webhook_body(&body, false)?;
    state
        .update_webhook(caller.account_id, *id, patch)
        .map(envelope::success)
        .ok_or_else(|| Fail::not_found("Unified webhook not found"))
}

async fn delete_webhook(caller: Caller, state: State, id: web::Path<i64>) -> Reply {
    if state.delete_webhook(caller.account_id, *id) {
        Ok(envelope::success(json!([])))
    } else {
        Err(Fail::not_found("Unified webhook not found"))
    }
}
