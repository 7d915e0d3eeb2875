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

/// Every route of the service.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(dto::extractor_errors)
        .route(paths::HEALTH, web::get().to(health::health))
        .route(paths::READY, web::get().to(health::ready))
        .route(paths::METRICS, web::get().to(health::metrics))
        .service(web::resource(paths::WEBHOOKS).post(webhooks::receive))
        .service(web::resource(paths::WEBHOOK_EVENTS).get(webhooks::list_events))
        .service(web::resource(paths::WEBHOOK_EVENT_REPLAY).post(webhooks::replay_event))
        .service(
            web::resource(paths::ACCOUNTS)
                .post(accounts::create)
                .get(accounts::list),
        )
        .service(
            web::resource(paths::ACCOUNT)
                .get(accounts::get_one)
                .patch(accounts::update)
                .delete(accounts::remove),
        )
        .service(web::resource(paths::ACCOUNT_SYNC).post(accounts::sync))
        .service(web::resource(paths::ACCOUNT_REPLAY_FAILED).post(accounts::replay_failed))
        .service(
            web::resource(paths::ACCOUNT_ROTATE_CREDENTIALS).post(accounts::rotate_credentials),
        )
        .service(web::resource(paths::CLUSTER).get(cluster::status))
        .default_service(web::to(not_found));
}

async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::not_found("no such route"))
}
