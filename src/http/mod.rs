//! HTTP routes. Handlers are thin: parse, authorize, hand the work to an actor
//! or a store function, map the result. Every error is JSON.

pub mod accounts;
pub mod auth;
pub mod cluster;
pub mod dto;
pub mod error;
pub mod health;
pub mod tracing;
pub mod webhooks;

use std::ops::Deref;
use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::actors::ActorSystem;
use crate::context::Core;
use crate::paths;

pub use error::ApiError;

/// What HTTP handlers see: the shared services and the actors.
pub struct AppContext {
    pub core: Arc<Core>,
    pub actors: ActorSystem,
    /// Bounds on request bodies being read.
    pub bodies: webhooks::BodyBudget,
}

impl Deref for AppContext {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// Every route of the service. A method a path does not serve gets a JSON
/// 405 naming the ones it does in `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(dto::extractor_errors)
        .service(resource(paths::HEALTH, "GET").get(health::health))
        .service(resource(paths::READY, "GET").get(health::ready))
        .service(resource(paths::METRICS, "GET").get(health::metrics))
        .service(resource(paths::WEBHOOKS, "POST").post(webhooks::receive))
        .service(resource(paths::WEBHOOK_EVENTS, "GET").get(webhooks::list_events))
        .service(resource(paths::WEBHOOK_EVENT_REPLAY, "POST").post(webhooks::replay_event))
        .service(
            resource(paths::ACCOUNTS, "GET, POST")
                .post(accounts::create)
                .get(accounts::list),
        )
        .service(
            resource(paths::ACCOUNT, "GET, PATCH, DELETE")
                .get(accounts::get_one)
                .patch(accounts::update)
                .delete(accounts::remove),
        )
        .service(resource(paths::ACCOUNT_SYNC, "POST").post(accounts::sync))
        .service(resource(paths::ACCOUNT_REPLAY_FAILED, "POST").post(accounts::replay_failed))
        .service(
            resource(paths::ACCOUNT_ROTATE_CREDENTIALS, "POST").post(accounts::rotate_credentials),
        )
        .service(resource(paths::CLUSTER, "GET").get(cluster::status))
        .default_service(web::to(not_found));
}

/// A resource whose other methods get 405 with `Allow: allow`.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = actix_web::ResponseError::error_response(&ApiError::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this path serves {allow}"),
        ));
        response.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allow),
        );
        response
    }))
}

async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::not_found("no such route"))
}
