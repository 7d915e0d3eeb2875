//! `GET /api/v1/hostaway/cluster` (admin): the replicas sharing the
//! database, the accounts each holds and how old their leases are, and the
//! active accounts no replica holds right now.

use std::collections::{BTreeMap, HashSet};

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::auth::Admin;
use crate::http::{ApiError, AppContext};
use crate::store::leases;

/// Replicas, their accounts and lease ages.
#[utoipa::path(
    get,
    path = "/api/v1/hostaway/cluster",
    tag = "cluster",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The cluster as this replica sees it", body = super::openapi::ClusterStatus),
        (status = 401, description = "No or a wrong admin token", body = super::openapi::Error)
    )
)]
pub async fn status(_admin: Admin, ctx: web::Data<AppContext>) -> Result<HttpResponse, ApiError> {
    let Some(member) = &ctx.cluster else {
        return Ok(HttpResponse::Ok().json(json!({
            "enabled": false,
            "replica_id": null,
            "replicas": [],
            "unowned_accounts": [],
        })));
    };
    let options = &member.options;
    let replicas = leases::replicas(&ctx.db, options.lease_secs).await?;
    let held: Vec<leases::LeaseState> = leases::all_leases(&ctx.db)
        .await?
        .into_iter()
        .filter(|l| l.expires_in_secs > 0.0)
        .collect();
    let owned: HashSet<i64> = held.iter().map(|l| l.account_id).collect();
    let mut by_owner: BTreeMap<&str, Vec<&leases::LeaseState>> = BTreeMap::new();
    for lease in &held {
        by_owner
            .entry(lease.owner.as_str())
            .or_default()
            .push(lease);
    }
    let replicas: Vec<_> = replicas
        .iter()
        .map(|r| {
            let accounts: Vec<_> = by_owner
                .get(r.replica_id.as_str())
                .map(|held| {
                    held.iter()
                        .map(|l| {
                            json!({
                                "account_id": l.account_id,
                                "epoch": l.epoch,
                                "acquired_at": l.acquired_at,
                                "held_for_secs": round(l.held_for_secs),
                                "expires_in_secs": round(l.expires_in_secs),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "replica_id": r.replica_id,
                "this_replica": *r.replica_id == *member.replica,
                "live": r.live,
                "started_at": r.started_at,
                "heartbeat_age_secs": round(r.heartbeat_age_secs),
                "accounts_owned": accounts.len(),
                "accounts": accounts,
            })
        })
        .collect();
    let unowned: Vec<i64> = ctx
        .directory
        .active_ids()
        .into_iter()
        .filter(|id| !owned.contains(id))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "enabled": true,
        "replica_id": &*member.replica,
        "lease_secs": options.lease_secs,
        "heartbeat_secs": options.heartbeat_secs,
        "settled": member.ownership.settled(),
        "replicas": replicas,
        "unowned_accounts": unowned,
    })))
}

/// Milliseconds are enough for an operator.
fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}
