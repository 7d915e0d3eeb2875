//! The control API under `/_sim` (no auth, plain JSON): statistics, faults,
//! rate limits, token expiry, accounts and their data, webhook inspection,
//! dataset mutations and webhook deliveries. Not part of Hostaway; not
//! counted in the statistics and never subject to faults or rate limits.

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::behaviour::Behaviour;
use super::config::{DatasetSize, SimAccount, SimRateLimits, validate_account_id};
use super::delivery::DeliverRequest;
use super::envelope::Fail;
use super::faults::Faults;
use super::mutation::Mutation;
use super::state::SimState;

type Reply = Result<HttpResponse, Fail>;
type State = web::Data<SimState>;

/// Most changes one mutate call may make.
const MAX_MUTATIONS_PER_CALL: usize = 10_000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sim")
            .route("/stats", web::get().to(stats))
            .route("/stats/reset", web::post().to(reset_stats))
            .service(
                web::resource("/faults")
                    .route(web::get().to(get_faults))
                    .route(web::put().to(put_faults))
                    .route(web::delete().to(clear_faults)),
            )
            .service(
                web::resource("/rate-limits")
                    .route(web::get().to(get_rate_limits))
                    .route(web::put().to(put_rate_limits)),
            )
            .service(
                web::resource("/behaviour")
                    .route(web::get().to(get_behaviour))
                    .route(web::put().to(put_behaviour)),
            )
            .route("/tokens/expire", web::post().to(expire_tokens))
            .service(
                web::resource("/accounts")
                    .route(web::get().to(list_accounts))
                    .route(web::post().to(add_account)),
            )
            .route("/accounts/{id}/data", web::get().to(account_data))
            .route("/accounts/{id}/mutate", web::post().to(mutate))
            .route("/webhooks", web::get().to(webhooks))
            .route("/deliver", web::post().to(deliver))
            .route("/deliveries", web::get().to(deliveries))
            .default_service(web::to(not_found)),
    );
}

async fn not_found(request: HttpRequest) -> Reply {
    Err(Fail::not_found(format!(
        "No control route {} {}",
        request.method(),
        request.path()
    )))
}

/// A JSON body; an empty body reads as `{}`.
fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Fail> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text)
        .map_err(|err| Fail::bad_request(format!("Invalid JSON body: {err}")))
}

fn known_account(state: &SimState, account_id: i64) -> Result<(), Fail> {
    if state.has_account(account_id) {
        Ok(())
    } else {
        Err(Fail::not_found(format!("Unknown account {account_id}")))
    }
}

async fn stats(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}

async fn reset_stats(state: State) -> HttpResponse {
    state.reset_stats();
    HttpResponse::Ok().json(state.stats())
}

async fn get_faults(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.faults())
}

async fn put_faults(state: State, body: Bytes) -> Reply {
    let faults: Faults = json_body(&body)?;
    state.set_faults(faults);
    Ok(HttpResponse::Ok().json(state.faults()))
}

async fn clear_faults(state: State) -> HttpResponse {
    state.set_faults(Faults::default());
    HttpResponse::Ok().json(state.faults())
}

async fn get_rate_limits(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.rate_limits())
}

async fn put_rate_limits(state: State, body: Bytes) -> Reply {
    let limits: SimRateLimits = json_body(&body)?;
    limits.validate().map_err(Fail::bad_request)?;
    state.set_rate_limits(limits);
    Ok(HttpResponse::Ok().json(state.rate_limits()))
}

async fn get_behaviour(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.behaviour())
}

/// Sets every switch; the ones left out go back to their defaults.
async fn put_behaviour(state: State, body: Bytes) -> Reply {
    let behaviour: Behaviour = json_body(&body)?;
    state.set_behaviour(behaviour);
    Ok(HttpResponse::Ok().json(state.behaviour()))
}

async fn expire_tokens(state: State) -> HttpResponse {
    let expired = state.expire_tokens();
    HttpResponse::Ok().json(json!({ "expired": expired }))
}

async fn list_accounts(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.account_summaries())
}

#[derive(Deserialize)]
struct NewAccount {
    account_id: i64,
    client_secret: String,
    listings: Option<usize>,
    reservations: Option<usize>,
    conversations: Option<usize>,
    messages_per_conversation: Option<usize>,
    /// Reuse this account's ids (tenants whose ids collide).
    ids_like: Option<i64>,
}

/// Adds (or regenerates) an account; sizes default to the configured ones.
async fn add_account(state: State, body: Bytes) -> Reply {
    let request: NewAccount = json_body(&body)?;
    validate_account_id(request.account_id).map_err(Fail::bad_request)?;
    let defaults = state.config().dataset;
    let size = DatasetSize {
        listings: request.listings.unwrap_or(defaults.listings),
        reservations: request.reservations.unwrap_or(defaults.reservations),
        conversations: request.conversations.unwrap_or(defaults.conversations),
        messages_per_conversation: request
            .messages_per_conversation
            .unwrap_or(defaults.messages_per_conversation),
    };
    size.validate().map_err(Fail::bad_request)?;
    let account_id = request.account_id;
    state.add_account_with_ids(
        SimAccount::new(account_id, request.client_secret),
        size,
        request.ids_like,
    );
    let summary = state
        .account_summaries()
        .into_iter()
        .find(|s| s["account_id"] == account_id)
        .unwrap_or_else(|| json!({ "account_id": account_id }));
    Ok(HttpResponse::Created().json(summary))
}

async fn account_data(state: State, id: web::Path<i64>) -> Reply {
    state
        .dataset(*id)
        .map(|data| HttpResponse::Ok().json(data))
        .ok_or_else(|| Fail::not_found(format!("Unknown account {id}")))
}

#[derive(Deserialize)]
struct WebhooksQuery {
    account_id: Option<i64>,
}

/// Registrations with their real passwords, for test inspection.
async fn webhooks(state: State, query: web::Query<WebhooksQuery>) -> Reply {
    let account_id = query
        .account_id
        .ok_or_else(|| Fail::bad_request("account_id is required"))?;
    Ok(HttpResponse::Ok().json(state.webhooks(account_id)))
}

#[derive(Deserialize)]
struct MutateRequest {
    kind: Mutation,
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    deliver: bool,
    #[serde(default, rename = "async")]
    asynchronous: bool,
}

fn one() -> usize {
    1
}

/// Applies changes and, with `deliver`, sends their webhooks in order.
async fn mutate(state: State, id: web::Path<i64>, body: Bytes) -> Reply {
    let account_id = *id;
    known_account(&state, account_id)?;
    let request: MutateRequest = json_body(&body)?;
    if request.count > MAX_MUTATIONS_PER_CALL {
        return Err(Fail::bad_request(format!(
            "count must be at most {MAX_MUTATIONS_PER_CALL}"
        )));
    }
    let changes = state.mutate(account_id, request.kind, request.count);
    let deliveries = if request.deliver {
        state
            .deliver_changes(account_id, &changes, request.asynchronous)
            .await
    } else {
        Vec::new()
    };
    Ok(HttpResponse::Ok().json(json!({ "changes": changes, "deliveries": deliveries })))
}

async fn deliver(state: State, body: Bytes) -> Reply {
    let request: DeliverRequest = json_body(&body)?;
    if request.event.trim().is_empty() {
        return Err(Fail::bad_request("event is required"));
    }
    if let Some(url) = &request.url {
        url::Url::parse(url).map_err(|err| Fail::bad_request(format!("Invalid url: {err}")))?;
    }
    let deliveries = state.deliver(request).await;
    Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries })))
}

async fn deliveries(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.deliveries())
}
