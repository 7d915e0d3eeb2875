//! Tenant isolation and write integrity: no account can touch another's
//! rows, the newest version always wins, a repeated event is applied when
//! something changed in between, one bad event harms nobody else, and a
//! failing row never holds up the rows behind it.

use std::time::{Duration, Instant};

use hostaway_sim::{DatasetSize, Mutation};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use sync_hostaway::store::inbox::{self, EventStatus, NewEvent};
use sync_hostaway::sync::SyncMode;

use crate::accounts::{create_account, get_account};
use crate::both_backends;
use crate::helpers::{
    AppOptions, Backend, TestApp, TestDb, fixture, metric_value, mirror_diff, sim_config,
    spawn_app_with, spawn_with, wait_for,
};
use crate::sync::run_sync;
use crate::webhooks::{add_account, reservation_of, wait_settled};

const A: i64 = 1001;
const B: i64 = 1002;

/// A service with accounts `A` and `B`, no Hostaway, no syncs.
async fn two_tenants(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let mut all = vec![
        ("sync.sync_on_create", "false"),
        ("sync.scheduled", "false"),
    ];
    all.extend_from_slice(overrides);
    let app = spawn_app_with(TestDb::new(backend), &all).await;
    add_account(&app, A).await;
    add_account(&app, B).await;
    app
}

fn reservation_event(account: i64, id: i64, updated_on: Option<&str>, guest: &str) -> Value {
    let mut body = fixture("webhook_reservation_updated.json");
    body["accountId"] = json!(account);
    body["data"]["accountId"] = json!(account);
    body["data"]["id"] = json!(id);
    body["data"]["hostawayReservationId"] = json!(id);
    body["data"]["guestName"] = json!(guest);
    match updated_on {
        Some(at) => body["data"]["updatedOn"] = json!(at),
        None => {
            let data = body["data"].as_object_mut().unwrap();
            data.remove("updatedOn");
            data.remove("latestActivityOn");
        }
    }
    body
}

fn message_event(account: i64, reservation: i64, id: i64, updated_on: &str, text: &str) -> Value {
    let mut body = fixture("webhook_message_received.json");
    body["accountId"] = json!(account);
    body["data"]["accountId"] = json!(account);
    body["data"]["id"] = json!(id);
    body["data"]["reservationId"] = json!(reservation);
    body["data"]["body"] = json!(text);
    body["data"]["updatedOn"] = json!(updated_on);
    body
}

fn listing_event(account: i64, event: &str, data: Value) -> Value {
    json!({"object": "listing", "event": event, "accountId": account, "data": data})
}

async fn deliver_ok(app: &TestApp, body: &Value) -> Value {
    let response = app.deliver(body).await;
    assert_eq!(response.status(), 200, "{body}");
    response.json().await.unwrap()
}

async fn guest(db: &DatabaseConnection, account: i64, id: i64) -> Option<String> {
    reservation_of(db, account, id)
        .await
        .and_then(|r| r["guestName"].as_str().map(str::to_string))
}

async fn thread_bodies(db: &DatabaseConnection, account: i64, reservation: i64) -> Vec<String> {
    entities::message_thread::Entity::find_by_id((account, reservation))
        .one(db)
        .await
        .unwrap()
        .map(|t| {
            t.raw_messages
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["body"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn listing_live(db: &DatabaseConnection, account: i64, id: i64) -> Option<bool> {
    entities::listing::Entity::find_by_id((account, id))
        .one(db)
        .await
        .unwrap()
        .map(|l| l.deleted_at.is_none())
}

both_backends!(
    a_delivery_for_another_accounts_ids_changes_only_its_own_rows,
    colliding_ids_keep_separate_mirrors_through_syncs_and_webhooks,
    a_nul_inside_a_delivery_is_stored_normalised_and_never_503s,
    a_failing_item_fails_alone_in_a_batch_of_a_hundred,
    a_far_future_timestamp_never_pins_a_row,
    an_unversioned_state_never_replaces_a_versioned_one_unless_fetched,
    an_older_message_edit_never_replaces_a_newer_one,
    a_repeated_event_after_an_intervening_change_is_applied,
    a_failing_first_row_never_holds_up_a_large_backlog,
);

async fn a_delivery_for_another_accounts_ids_changes_only_its_own_rows(backend: Backend) {
    let mut app = two_tenants(backend, &[]).await;
    let at = "2025-06-15 12:00:00";
    deliver_ok(&app, &reservation_event(A, 51240088, Some(at), "Ann of A")).await;
    deliver_ok(&app, &message_event(A, 51240088, 9001, at, "A's message")).await;
    deliver_ok(
        &app,
        &listing_event(A, "listing.updated", json!({"id": 310501, "name": "A's"})),
    )
    .await;
    wait_settled(&app.db).await;

    // Account B sends the same ids, with newer versions.
    let later = "2025-06-15 13:00:00";
    deliver_ok(
        &app,
        &reservation_event(B, 51240088, Some(later), "Bob of B"),
    )
    .await;
    deliver_ok(
        &app,
        &message_event(B, 51240088, 9002, later, "B's message"),
    )
    .await;
    deliver_ok(
        &app,
        &listing_event(B, "listing.updated", json!({"id": 310501, "name": "B's"})),
    )
    .await;
    deliver_ok(
        &app,
        &listing_event(B, "listing.deleted", json!({"id": 310501})),
    )
    .await;
    wait_settled(&app.db).await;

    assert_eq!(
        guest(&app.db, A, 51240088).await.as_deref(),
        Some("Ann of A")
    );
    assert_eq!(
        guest(&app.db, B, 51240088).await.as_deref(),
        Some("Bob of B")
    );
    assert_eq!(
        thread_bodies(&app.db, A, 51240088).await,
        vec!["A's message"]
    );
    assert_eq!(
        thread_bodies(&app.db, B, 51240088).await,
        vec!["B's message"]
    );
    assert_eq!(
        listing_live(&app.db, A, 310501).await,
        Some(true),
        "A's listing stays"
    );
    assert_eq!(listing_live(&app.db, B, 310501).await, Some(false));
    let a_rows = entities::reservation::Entity::find()
        .filter(entities::reservation::Column::AccountId.eq(A))
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(a_rows.len(), 1);
    assert_eq!(a_rows[0].raw_payload["accountId"], A);

    let metrics = app.metrics().await;
    for entity in ["reservations", "message_threads", "listings"] {
        assert_eq!(
            metric_value(
                &metrics,
                &format!("sync_hostaway_cross_account_ids_total{{entity=\"{entity}\"}}")
            ),
            1.0,
            "{entity}: the shared id was counted once"
        );
    }
    // Counts per account stay exact.
    for account in [A, B] {
        let body = get_account(&app, account).await;
        assert_eq!(body["counts"]["reservations"], 1, "{account}: {body}");
        assert_eq!(body["counts"]["message_threads"], 1, "{account}");
    }
    app.stop().await;
}

async fn colliding_ids_keep_separate_mirrors_through_syncs_and_webhooks(backend: Backend) {
    let dataset = DatasetSize {
        listings: 6,
        reservations: 80,
        conversations: 30,
        messages_per_conversation: 3,
    };
    let mut app = spawn_with(
        backend,
        AppOptions {
            sim: Some(sim_config(dataset)),
            overrides: &[("sync.sync_on_create", "false")],
            public_url: true,
        },
    )
    .await;
    let state = app.sim().state();
    state.add_account_with_ids(
        hostaway_sim::SimAccount::new(B, "secret-b"),
        dataset,
        Some(A),
    );
    let a = state.dataset(A).unwrap();
    let b = state.dataset(B).unwrap();
    assert_eq!(
        a.reservations[0]["id"], b.reservations[0]["id"],
        "the ids collide"
    );
    assert_ne!(a.reservations[0], b.reservations[0], "the content does not");
    create_account(&app, A, "secret").await;
    create_account(&app, B, "secret-b").await;
    for account in [A, B] {
        run_sync(&app, account, SyncMode::Full).await;
    }
    assert_eq!(mirror_diff(&app, A).await, None, "A after both full syncs");
    assert_eq!(mirror_diff(&app, B).await, None, "B after both full syncs");

    // Changes on both sides, by webhook and by reconciliation.
    for account in [A, B] {
        wait_for(
            "the webhook registration",
            Duration::from_secs(20),
            || async {
                (get_account(&app, account).await["webhook"]["status"] == "registered")
                    .then_some(())
            },
        )
        .await;
        let mut changes = state.mutate(account, Mutation::UpdateReservation, 5);
        changes.extend(state.mutate(account, Mutation::NewMessage, 5));
        let records = state.deliver_changes(account, &changes, false).await;
        assert!(
            records.iter().all(|r| r.delivered),
            "{account}: deliveries accepted"
        );
    }
    wait_settled(&app.db).await;
    assert_eq!(mirror_diff(&app, A).await, None, "A after the webhooks");
    assert_eq!(mirror_diff(&app, B).await, None, "B after the webhooks");
    state.mutate(A, Mutation::UpdateReservation, 10);
    state.mutate(B, Mutation::NewMessage, 10);
    for account in [A, B] {
        run_sync(&app, account, SyncMode::Incremental).await;
    }
    assert_eq!(
        mirror_diff(&app, A).await,
        None,
        "A after the reconciliations"
    );
    assert_eq!(
        mirror_diff(&app, B).await,
        None,
        "B after the reconciliations"
    );
    let shared = metric_value(
        &app.metrics().await,
        "sync_hostaway_cross_account_ids_total{entity=\"reservations\"}",
    );
    assert!(
        shared >= 80.0,
        "every shared reservation id was counted: {shared}"
    );
    app.stop().await;
}

async fn a_nul_inside_a_delivery_is_stored_normalised_and_never_503s(backend: Backend) {
    let mut app = two_tenants(backend, &[]).await;
    let poisoned = r#"{"object":"reservation","event":"reservation.updated","accountId":1001,
        "data":{"id":777,"listingMapId":1,"guestName":"Nul\u0000Person","updatedOn":"2025-06-15 12:00:00"}}"#;
    let http = app.http.clone();
    let send_raw = |body: String| {
        let http = http.clone();
        let url = app.url("/api/v1/hostaway/webhooks");
        async move {
            http.post(url)
                .basic_auth("hostaway", Some("test-webhook-password"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // The poison among 100 concurrent good deliveries, so they share batches.
    let mut sends = Vec::new();
    for i in 0..100 {
        let body = reservation_event(B, 1000 + i, Some("2025-06-15 12:00:00"), "Good");
        sends.push(send_raw(body.to_string()));
        if i == 50 {
            sends.push(send_raw(poisoned.to_string()));
        }
    }
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    wait_settled(&app.db).await;
    assert_eq!(
        guest(&app.db, A, 777).await.as_deref(),
        Some("Nul\u{FFFD}Person")
    );
    for i in 0..100 {
        assert!(guest(&app.db, B, 1000 + i).await.is_some());
    }
    app.stop().await;
}

async fn a_failing_item_fails_alone_in_a_batch_of_a_hundred(backend: Backend) {
    let mut app = two_tenants(
        backend,
        &[("faults.fail_inbox_event_types", "poison.event")],
    )
    .await;
    let poison = json!({"object": "x", "event": "poison.event", "accountId": A, "data": {"id": 1}});
    let mut sends = Vec::new();
    for i in 0..100 {
        let body = reservation_event(B, 2000 + i, Some("2025-06-15 12:00:00"), "Good");
        sends.push((false, body));
        if i % 25 == 0 {
            sends.push((true, poison.clone()));
        }
    }
    let statuses = futures::future::join_all(sends.iter().map(|(bad, body)| {
        let app = &app;
        async move { (*bad, app.deliver(body).await.status().as_u16()) }
    }))
    .await;
    for (bad, status) in &statuses {
        assert_eq!(*status, if *bad { 503 } else { 200 }, "{statuses:?}");
    }
    wait_settled(&app.db).await;
    app.stop().await;
}

async fn a_far_future_timestamp_never_pins_a_row(backend: Backend) {
    let mut app = two_tenants(backend, &[]).await;
    deliver_ok(
        &app,
        &reservation_event(A, 42, Some("2099-01-01 00:00:00"), "Future"),
    )
    .await;
    wait_settled(&app.db).await;
    assert_eq!(guest(&app.db, A, 42).await.as_deref(), Some("Future"));
    // A real update a moment later wins over the clamped 2099.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    deliver_ok(&app, &reservation_event(A, 42, Some(&now), "Present")).await;
    wait_settled(&app.db).await;
    assert_eq!(guest(&app.db, A, 42).await.as_deref(), Some("Present"));
    assert_eq!(
        metric_value(
            &app.metrics().await,
            "sync_hostaway_future_timestamps_clamped_total{entity=\"reservations\"}"
        ),
        1.0
    );
    app.stop().await;
}

async fn an_unversioned_state_never_replaces_a_versioned_one_unless_fetched(backend: Backend) {
    let mut app = two_tenants(backend, &[]).await;
    deliver_ok(
        &app,
        &reservation_event(A, 43, Some("2025-06-15 12:00:00"), "Versioned"),
    )
    .await;
    wait_settled(&app.db).await;
    deliver_ok(&app, &reservation_event(A, 43, None, "No version")).await;
    wait_settled(&app.db).await;
    assert_eq!(guest(&app.db, A, 43).await.as_deref(), Some("Versioned"));
    // A reservation that never had a version takes an unversioned update.
    deliver_ok(&app, &reservation_event(A, 44, None, "First")).await;
    deliver_ok(&app, &reservation_event(A, 44, None, "Second")).await;
    wait_settled(&app.db).await;
    assert_eq!(guest(&app.db, A, 44).await.as_deref(), Some("Second"));
    app.stop().await;
}

async fn an_older_message_edit_never_replaces_a_newer_one(backend: Backend) {
    let mut app = two_tenants(backend, &[]).await;
    deliver_ok(
        &app,
        &message_event(A, 50, 700, "2025-06-15 12:05:00", "newer edit"),
    )
    .await;
    wait_settled(&app.db).await;
    deliver_ok(
        &app,
        &message_event(A, 50, 700, "2025-06-15 12:01:00", "older edit"),
    )
    .await;
    wait_settled(&app.db).await;
    assert_eq!(thread_bodies(&app.db, A, 50).await, vec!["newer edit"]);
    deliver_ok(
        &app,
        &message_event(A, 50, 700, "2025-06-15 12:09:00", "newest edit"),
    )
    .await;
    wait_settled(&app.db).await;
    assert_eq!(thread_bodies(&app.db, A, 50).await, vec!["newest edit"]);
    app.stop().await;
}

async fn a_repeated_event_after_an_intervening_change_is_applied(backend: Backend) {
    let mut app = two_tenants(backend, &[]).await;
    let listing = |name: &str| listing_event(A, "listing.updated", json!({"id": 55, "name": name}));
    let deleted = listing_event(A, "listing.deleted", json!({"id": 55}));
    deliver_ok(&app, &listing("first")).await;
    deliver_ok(&app, &deleted).await;
    wait_settled(&app.db).await;
    assert_eq!(listing_live(&app.db, A, 55).await, Some(false));
    deliver_ok(&app, &listing("first")).await;
    wait_settled(&app.db).await;
    assert_eq!(
        listing_live(&app.db, A, 55).await,
        Some(true),
        "back after the delete"
    );
    let again = deliver_ok(&app, &deleted).await;
    assert_eq!(
        again["status"], "accepted",
        "the second delete is a new event"
    );
    wait_settled(&app.db).await;
    assert_eq!(
        listing_live(&app.db, A, 55).await,
        Some(false),
        "deleted again"
    );
    // A plain redelivery is still a duplicate.
    assert_eq!(deliver_ok(&app, &deleted).await["status"], "duplicate");

    // Content A → B → A.
    for name in ["A", "B", "A"] {
        deliver_ok(&app, &listing(name)).await;
        wait_settled(&app.db).await;
    }
    let stored = entities::listing::Entity::find_by_id((A, 55))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.raw_payload["name"], "A");
    app.stop().await;
}

async fn a_failing_first_row_never_holds_up_a_large_backlog(backend: Backend) {
    let faults = [
        ("faults.fail_on_reservation_ids", "90000"),
        ("webhooks.retry_base_ms", "30000"),
    ];
    let mut first = two_tenants(backend, &faults).await;
    first.stop().await;
    // 3,001 rows pending from before a restart; the first one fails.
    let events: Vec<NewEvent> = (0..3_001)
        .map(|i| {
            let id = 90_000 + i;
            NewEvent {
                account_id: A,
                event_type: "reservation.updated".into(),
                object_type: Some("reservation".into()),
                dedupe_key: format!("backlog-{i}"),
                entity_key: format!("reservation:{id}"),
                text: reservation_event(A, id, Some("2025-06-15 12:00:00"), "Backlog").to_string(),
                status: EventStatus::Pending,
                traceparent: None,
                received_at: chrono::Utc::now(),
                size: 0,
                entity: None,
            }
        })
        .collect();
    for chunk in events.chunks(500) {
        inbox::append(&first.db, chunk).await.unwrap();
    }
    let mut second = first
        .restart(&[
            ("sync.sync_on_create", "false"),
            ("sync.scheduled", "false"),
            faults[0],
            faults[1],
        ])
        .await;
    let started = Instant::now();
    let db = second.db.clone();
    wait_for("the healthy backlog", Duration::from_secs(30), || async {
        let pending = inbox::counts(&db).await.unwrap();
        (pending.get("pending").copied().unwrap_or(0) <= 1).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    println!(
        "backlog: 3,000 healthy rows behind a failing one applied {elapsed:?} after the restart"
    );
    // Before, they waited for the failing row to be dead-lettered (minutes
    // with this backoff); now they never wait for its first retry (30 s).
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(guest(&second.db, A, 93_000).await.is_some());
    assert!(
        guest(&second.db, A, 90_000).await.is_none(),
        "the failing row waits for its retry"
    );
    second.stop().await;
}

both_backends!(a_nul_storm_beside_normal_traffic_costs_no_503);

/// 70 NUL deliveries per second beside 1,000 normal ones, for three
/// seconds: every delivery of either kind is acknowledged.
async fn a_nul_storm_beside_normal_traffic_costs_no_503(backend: Backend) {
    let mut app = two_tenants(backend, &[]).await;
    let seconds = 3u64;
    let send_paced = |rate: u64, nul: bool, lane: u64| {
        let http = app.http.clone();
        let url = app.url("/api/v1/hostaway/webhooks");
        async move {
            let mut statuses = Vec::new();
            let started = Instant::now();
            for i in 0..rate * seconds {
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let id = lane * 1_000_000 + i;
                let guest = if nul { "Storm\\u0000Guest" } else { "Calm" };
                let body = format!(
                    r#"{{"object":"reservation","event":"reservation.updated","accountId":{B},
                    "data":{{"id":{id},"listingMapId":1,"guestName":"{guest}","updatedOn":"2025-06-15 12:00:00"}}}}"#
                );
                let status = http
                    .post(&url)
                    .basic_auth("hostaway", Some("test-webhook-password"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                statuses.push(status);
            }
            (nul, statuses)
        }
    };
    // 1,000/s as 20 lanes of 50/s; the storm as one lane of 70/s.
    let mut lanes: Vec<_> = (1..=20).map(|lane| send_paced(50, false, lane)).collect();
    lanes.push(send_paced(70, true, 99));
    let started = Instant::now();
    let results = futures::future::join_all(lanes).await;
    let elapsed = started.elapsed();
    let (mut normal, mut storm, mut not_ok) = (0, 0, 0);
    for (nul, statuses) in &results {
        if *nul {
            storm += statuses.len();
        } else {
            normal += statuses.len();
        }
        not_ok += statuses.iter().filter(|s| **s != 200).count();
    }
    println!(
        "nul storm ({backend:?}): {normal} normal + {storm} NUL deliveries in {elapsed:.1?}, {not_ok} not 200"
    );
    assert_eq!(not_ok, 0);
    wait_settled(&app.db).await;
    assert_eq!(
        guest(&app.db, B, 99_000_000).await.as_deref(),
        Some("Storm\u{FFFD}Guest")
    );
    app.stop().await;
}
