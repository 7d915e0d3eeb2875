//! HTTP routes. Handlers are thin: parse, authorize, hand the work to an actor
//! or a store function, map the result.

pub mod error;
pub mod health;

use actix_web::web;

pub use error::ApiError;

/// Every route of the service.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(health::health)
        .service(health::ready)
        .service(health::metrics);
}
