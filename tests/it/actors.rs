//! The actor system: per-account serialization, panic containment, restart
//! limits and the degraded state.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hostaway_sim::{DatasetSize, Faults};
use reqwest::Method;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sync_hostaway::actors::router::ActorCount;
use sync_hostaway::sync::{SyncError, SyncMode};

use crate::accounts::{app_with_sim, create_account, get_account, wait_synced};
use crate::both_backends;
use crate::helpers::{Backend, fixture, metric_value, wait_for};
use crate::sync::{spawn_sync, try_sync};
use crate::webhooks::{reservation_of, wait_settled};

const DATASET: DatasetSize = DatasetSize {
    listings: 4,
    reservations: 40,
    conversations: 20,
    messages_per_conversation: 2,
};

fn update_for(account_id: i64, reservation_id: i64) -> Value {
    let mut body = fixture("webhook_reservation_updated.json");
    body["accountId"] = json!(account_id);
    body["data"]["id"] = json!(reservation_id);
    body["data"]["hostawayReservationId"] = json!(reservation_id);
    body
}

async fn times(app: &crate::helpers::TestApp, sql: &str) -> Vec<DateTime<Utc>> {
    let stmt = sea_orm::Statement::from_string(app.db.get_database_backend(), sql.to_string());
    app.db
        .query_all_raw(stmt)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
}

both_backends!(
    webhooks_flow_during_a_sync_and_never_interleave_with_its_writes,
    a_panicking_handler_is_contained_and_the_actor_restarts,
    past_the_restart_limit_the_account_is_degraded_and_others_keep_going,
);

async fn webhooks_flow_during_a_sync_and_never_interleave_with_its_writes(backend: Backend) {
    let mut app = app_with_sim(backend, DATASET, &[("sync.sync_on_create", "false")]).await;
    create_account(&app, 1001, "secret").await;
    // Slow Hostaway down so the sync is still fetching while webhooks arrive.
    app.sim().state().set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let sync = spawn_sync(&app, 1001, SyncMode::Full);
    wait_for("the sync to start", Duration::from_secs(10), || async {
        (get_account(&app, 1001).await["sync_state"] == "syncing").then_some(())
    })
    .await;
    // A reservation the sync is fetching gets a newer version by webhook.
    let truth = app.sim().state().dataset(1001).unwrap();
    let fetched = truth.reservations[0].clone();
    let id = fetched["id"].as_i64().unwrap();
    let mut newer = update_for(1001, id);
    newer["data"] = fetched.clone();
    newer["data"]["updatedOn"] = json!(Utc::now().format("%Y-%m-%d %H:%M:%S").to_string());
    newer["data"]["guestName"] = json!("Changed by webhook");
    let mut sent = vec![newer];
    sent.extend((0..20).map(|i| update_for(1001, 50_000 + i)));
    for body in &sent {
        let response = app.deliver(body).await;
        assert_eq!(
            response.status(),
            200,
            "deliveries are acknowledged during a sync"
        );
    }
    // Applied while the sync is still fetching (within a second each).
    wait_for(
        "the events to be applied during the sync",
        Duration::from_secs(5),
        || async {
            let applied = times(
                &app,
                "SELECT processed_at FROM webhook_events WHERE processed_at IS NOT NULL",
            )
            .await;
            (applied.len() == sent.len()).then_some(())
        },
    )
    .await;
    assert_eq!(
        get_account(&app, 1001).await["sync_state"],
        "syncing",
        "the sync still runs"
    );
    let report = sync.await.unwrap().unwrap();
    wait_settled(&app.db).await;
    // The sync's writes form one unit, after every event here was applied.
    let sync_writes = times(
        &app,
        &format!(
            "SELECT updated_at FROM reservations WHERE id NOT BETWEEN 50000 AND 50019 AND id <> {id}"
        ),
    )
    .await;
    let applied = times(&app, "SELECT processed_at FROM webhook_events").await;
    let last_event = applied.iter().max().unwrap();
    let first_sync_write = sync_writes.iter().min().unwrap();
    assert!(
        first_sync_write >= last_event,
        "the sync wrote at {first_sync_write} before the last event was applied ({last_event})"
    );
    assert!(*last_event >= report.started_at);
    // The webhook's newer version survived the sync's older fetch.
    let stored = reservation_of(&app.db, 1001, id).await.unwrap();
    assert_eq!(stored["guestName"], "Changed by webhook");
    app.stop().await;
}

async fn a_panicking_handler_is_contained_and_the_actor_restarts(backend: Backend) {
    let mut app = app_with_sim(
        backend,
        DATASET,
        &[
            ("sync.sync_on_create", "false"),
            ("faults.panic_on_sync_accounts", "1001"),
            ("faults.panic_on_reservation_ids", "4444"),
            ("webhooks.max_attempts", "2"),
        ],
    )
    .await;
    create_account(&app, 1001, "secret").await;
    let result = try_sync(&app, 1001, SyncMode::Full).await;
    assert!(matches!(result, Err(SyncError::Panicked(_))), "{result:?}");
    // The restarted actor works: webhooks for the same account still apply,
    // and a panicking event is itself contained and dead-lettered.
    assert_eq!(app.deliver(&update_for(1001, 4444)).await.status(), 200);
    assert_eq!(app.deliver(&update_for(1001, 4445)).await.status(), 200);
    wait_settled(&app.db).await;
    wait_for(
        "the event after the panics to apply",
        Duration::from_secs(10),
        || async { reservation_of(&app.db, 1001, 4445).await },
    )
    .await;
    assert!(reservation_of(&app.db, 1001, 4444).await.is_none());
    let metrics = app.metrics().await;
    let restarts = metric_value(
        &metrics,
        "sync_hostaway_actor_restarts_total{actor=\"account\"}",
    );
    assert!(
        restarts >= 2.0,
        "each panic restarted the actor: {restarts}"
    );
    assert_eq!(get_account(&app, 1001).await["status"], "active");
    app.stop().await;
}

async fn past_the_restart_limit_the_account_is_degraded_and_others_keep_going(backend: Backend) {
    let mut app = app_with_sim(
        backend,
        DATASET,
        &[
            ("sync.sync_on_create", "false"),
            ("faults.panic_on_sync_accounts", "1002"),
            ("actors.max_restarts", "2"),
        ],
    )
    .await;
    let state = app.sim().state();
    state.add_account(
        hostaway_sim::SimAccount {
            account_id: 1002,
            client_secret: "other".into(),
        },
        DATASET,
    );
    create_account(&app, 1001, "secret").await;
    create_account(&app, 1002, "other").await;
    for _ in 0..3 {
        let result = try_sync(&app, 1002, SyncMode::Full).await;
        assert!(matches!(result, Err(SyncError::Panicked(_))), "{result:?}");
    }
    let degraded = wait_for(
        "the account to be degraded",
        Duration::from_secs(10),
        || async {
            let account = get_account(&app, 1002).await;
            (account["status"] == "degraded").then_some(account)
        },
    )
    .await;
    assert_eq!(degraded["is_active"], true);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("sync_hostaway_accounts_degraded 1"),
        "{metrics}"
    );
    // The other account is untouched.
    let response = app
        .admin(
            Method::POST,
            "/api/v1/hostaway/accounts/1001/sync?mode=full",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let healthy = wait_synced(&app, 1001).await;
    assert_eq!(healthy["counts"]["reservations"], 40);
    assert_eq!(healthy["status"], "active");
    let actors = app.ctx.actors.router.send(ActorCount).await.unwrap();
    assert_eq!(actors, 2, "the degraded actor stays put instead of looping");
    app.stop().await;
}
