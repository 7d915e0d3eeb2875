//! Authentication: a bearer token for the admin API, HTTP Basic for webhook
//! deliveries. Every comparison is constant-time over fixed-length digests.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;

use super::ApiError;
use crate::directory::{digest, secrets_match};
use crate::http::AppContext;

/// Proof that the request carried `Authorization: Bearer <admin.api_token>`.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let Some(ctx) = req.app_data::<web::Data<AppContext>>() else {
            return ready(Err(ApiError::internal(&"application state missing")));
        };
        let expected = ctx.settings.admin.api_token.expose();
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let ok = match given {
            // An empty configured token refuses everyone.
            Some(token) if !expected.is_empty() => secrets_match(&digest(expected), token),
            _ => false,
        };
        ready(if ok {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized(
                "missing or invalid bearer token (Authorization: Bearer <admin.api_token>)",
            ))
        })
    }
}

/// Who a webhook delivery authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deliverer {
    /// The global `webhooks.username` / `webhooks.password`.
    Global,
    /// An account's own registered credentials.
    Account(i64),
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let header = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (login, password) = text.split_once(':')?;
    Some((login.to_string(), password.to_string()))
}

/// Checks a delivery's Basic credentials before anything about accounts is
/// revealed: missing or wrong credentials are a 401 with `WWW-Authenticate`.
pub fn authenticate_delivery(req: &HttpRequest, ctx: &AppContext) -> Result<Deliverer, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized_basic",
            "missing or invalid webhook credentials (HTTP Basic)",
        )
    };
    let (login, password) = basic_credentials(req).ok_or_else(refused)?;
    let settings = &ctx.settings.webhooks;
    if !settings.username.is_empty() {
        let user_ok = secrets_match(&digest(&settings.username), &login);
        let password_ok = secrets_match(&digest(settings.password.expose()), &password);
        if user_ok & password_ok {
            return Ok(Deliverer::Global);
        }
    }
    ctx.directory
        .authenticate(&login, &password)
        .map(Deliverer::Account)
        .ok_or_else(refused)
}
