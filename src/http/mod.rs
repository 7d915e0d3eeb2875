//! HTTP routes. Handlers are thin: parse, authorize, hand the work to an actor
//! or a store function, map the result. Every error is JSON.

pub mod accounts;
pub mod auth;
pub mod error;
pub mod health;
pub mod tracing;
pub mod webhooks;

use actix_web::{HttpResponse, web};

pub use error::ApiError;

/// Every route of the service.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::bad_request("invalid_query", err.to_string()).into()),
    )
    .service(health::health)
    .service(health::ready)
    .service(health::metrics)
    .service(webhooks::receive)
    .service(webhooks::list_events)
    .service(webhooks::replay_event)
    .service(accounts::create)
    .service(accounts::list)
    .service(accounts::get_one)
    .service(accounts::update)
    .service(accounts::remove)
    .service(accounts::sync)
    .service(accounts::replay_failed)
    .service(accounts::rotate_credentials)
    .default_service(web::to(not_found));
}

async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::not_found("no such route"))
}
