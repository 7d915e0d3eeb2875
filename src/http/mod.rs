//! HTTP routes. Handlers are thin: parse, authorize, hand the work to an actor
//! or a store function, map the result. Every error is JSON.

pub mod accounts;
pub mod auth;
pub mod cluster;
pub mod dto;
pub mod error;
pub mod health;
pub mod openapi;
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

/// The inbox committer as the HTTP worker a request runs on got it
/// (`ActorSystem::worker_ingest`), in each worker's app data.
pub struct WorkerIngest(pub actix::Addr<crate::actors::ingest::IngestActor>);

impl Deref for AppContext {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// Every path the service serves and its methods: `routes` registers
/// exactly these (a resource not listed here fails at start-up), `Allow`
/// names them, and the OpenAPI test checks the description against them.
pub const ROUTES: &[(&str, &str)] = &[
    (paths::HEALTH, "GET"),
    (paths::READY, "GET"),
    (paths::METRICS, "GET"),
    (paths::OPENAPI, "GET"),
    (paths::WEBHOOKS, "POST"),
    (paths::WEBHOOK_EVENTS, "GET"),
    (paths::WEBHOOK_EVENT_REPLAY, "POST"),
    (paths::ACCOUNTS, "GET, POST"),
    (paths::ACCOUNT, "GET, PATCH, DELETE"),
    (paths::ACCOUNT_SYNC, "POST"),
    (paths::ACCOUNT_REPLAY_FAILED, "POST"),
    (paths::ACCOUNT_ROTATE_CREDENTIALS, "POST"),
    (paths::CLUSTER, "GET"),
];

/// Every route of the service. A method a path does not serve gets a JSON
/// 405 naming the ones it does in `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(dto::extractor_errors)
        .service(resource(paths::HEALTH).get(health::health))
        .service(resource(paths::READY).get(health::ready))
        .service(resource(paths::METRICS).get(health::metrics))
        .service(resource(paths::OPENAPI).get(openapi::serve))
        .service(resource(paths::WEBHOOKS).post(webhooks::receive))
        .service(resource(paths::WEBHOOK_EVENTS).get(webhooks::list_events))
        .service(resource(paths::WEBHOOK_EVENT_REPLAY).post(webhooks::replay_event))
        .service(
            resource(paths::ACCOUNTS)
                .post(accounts::create)
                .get(accounts::list),
        )
        .service(
            resource(paths::ACCOUNT)
                .get(accounts::get_one)
                .patch(accounts::update)
                .delete(accounts::remove),
        )
        .service(resource(paths::ACCOUNT_SYNC).post(accounts::sync))
        .service(resource(paths::ACCOUNT_REPLAY_FAILED).post(accounts::replay_failed))
        .service(resource(paths::ACCOUNT_ROTATE_CREDENTIALS).post(accounts::rotate_credentials))
        .service(resource(paths::CLUSTER).get(cluster::status))
        .default_service(web::to(not_found));
}

/// A resource of `ROUTES`, whose other methods get 405 with `Allow`.
fn resource(path: &'static str) -> actix_web::Resource {
    let allow = ROUTES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, allow)| *allow)
        .unwrap_or_else(|| panic!("{path} is served but missing from http::ROUTES"));
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
