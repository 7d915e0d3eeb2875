//! `/health` (the process is alive), `/ready` (the database answers and the
//! actor system runs), `/metrics`.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::AppContext;

#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "The process is alive", body = super::openapi::Health))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    responses(
        (status = 200, description = "The database answers, the actors run, and in a cluster this replica holds its share", body = super::openapi::Readiness),
        (status = 503, description = "Not ready: the checks say why", body = super::openapi::Readiness)
    )
)]
pub async fn ready(ctx: web::Data<AppContext>) -> HttpResponse {
    let mut checks = ctx.readiness(Duration::from_secs(2)).await;
    let actors = ctx.actors.liveness();
    let actors_up = actors.iter().all(|(_, up)| *up);
    checks.insert(
        "actors",
        if actors_up { "ok" } else { "stopped" }.to_string(),
    );
    // A replica is ready once it holds its share of the accounts (or knows
    // it has none): before that, webhooks it takes in wait for an owner.
    if let Some(member) = &ctx.cluster {
        let joined = member.ownership.joined();
        checks.insert(
            "cluster",
            if joined { "ok" } else { "taking its share" }.to_string(),
        );
    }
    let ok = checks.values().all(|v| v == "ok");
    let each: std::collections::BTreeMap<&str, &str> = actors
        .iter()
        .map(|(name, up)| (*name, if *up { "ok" } else { "stopped" }))
        .collect();
    let body = json!({
        "status": if ok { "ready" } else { "not ready" },
        "checks": checks,
        "actors": each,
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
pub async fn metrics(ctx: web::Data<AppContext>) -> HttpResponse {
    ctx.refresh_gauges().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(ctx.metrics.render())
}
