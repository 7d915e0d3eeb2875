//! The edge in front of every `/v1` route: request statistics, injected
//! latency and faults (middleware), then rate-limit admission and bearer
//! authentication (the `Caller` extractor, or `admit` for the token routes).

use std::future::{Ready, ready};
use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, web};

use super::envelope::Fail;
use super::faults::Verdict;
use super::state::SimState;

/// Stats key of a request: method and route template, e.g.
/// `"GET /v1/listings/{id}"`, or `"GET (unmatched)"`.
pub fn route_key(request: &HttpRequest) -> String {
    let template = request
        .match_pattern()
        .filter(|pattern| pattern.starts_with("/v1/"))
        .unwrap_or_else(|| "(unmatched)".to_string());
    format!("{} {template}", request.method())
}

/// The simulator state registered as app data.
pub fn state_of(request: &HttpRequest) -> Result<&web::Data<SimState>, Fail> {
    request.app_data::<web::Data<SimState>>().ok_or_else(|| {
        tracing::error!("simulator state is not registered with the app");
        Fail::server(500)
    })
}

/// The peer's IP (forwarding headers are not trusted).
pub fn client_ip(request: &HttpRequest) -> IpAddr {
    request
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Rate-limit admission for the request, counted against the client IP and,
/// when known, the account.
pub fn admit(request: &HttpRequest, account: Option<i64>) -> Result<(), Fail> {
    state_of(request)?.admit(client_ip(request), account)
}

/// Middleware for the `/v1` scope: counts the request on arrival, applies
/// latency and the fault verdict, counts the response status.
pub async fn edge(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = match state_of(request.request()) {
        Ok(state) => state.clone(),
        Err(fail) => return Ok(request.error_response(fail)),
    };
    let route = route_key(request.request());
    state.record_request(&route);
    let decision = state.decide_faults(request.path());
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let response = match decision.verdict {
        Verdict::Pass => match next.call(request).await {
            Ok(response) => response.map_into_boxed_body(),
            Err(err) => {
                let status = err.as_response_error().status_code().as_u16();
                state.record_response(&route, status);
                return Err(err);
            }
        },
        Verdict::TooManyRequests => {
            request.error_response(Fail::too_many_requests(state.retry_after_secs()))
        }
        Verdict::Error(status) => request.error_response(Fail::server(status)),
        Verdict::Hang(duration) => {
            tokio::time::sleep(duration).await;
            request.error_response(Fail::server(504))
        }
    };
    state.record_response(&route, response.status().as_u16());
    Ok(response)
}

/// The authenticated account of a `/v1` request. Extracting it first admits
/// the request through the rate limits (429), then requires a usable bearer
/// token (403), so it must be a handler's first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub account_id: i64,
}

impl FromRequest for Caller {
    type Error = Fail;
    type Future = Ready<Result<Self, Fail>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authorize(request))
    }
}

fn authorize(request: &HttpRequest) -> Result<Caller, Fail> {
    let state = state_of(request)?;
    let account = bearer(request).and_then(|token| state.authenticate(token));
    state.admit(client_ip(request), account)?;
    account
        .map(|account_id| Caller { account_id })
        .ok_or_else(|| state.token_refused())
}
