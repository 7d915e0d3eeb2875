//! Full sync and reconciliation against the simulator.

use chrono::{DateTime, Utc};
use hostaway_sim::{DatasetSize, Mutation};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::Value;
use sync_hostaway::actors::router::{AccountRouter, SyncAccount};
use sync_hostaway::actors::traced::TraceExt;
use sync_hostaway::hostaway::endpoints;
use sync_hostaway::sync::{SyncError, SyncMode, SyncReport, SyncRequest};

use crate::accounts::{app_with_sim, create_account, get_account, wait_synced};
use crate::both_backends;
use crate::helpers::{Backend, TestApp, mirror_diff};

const DATASET: DatasetSize = DatasetSize {
    listings: 8,
    reservations: 150,
    conversations: 60,
    messages_per_conversation: 4,
};

pub async fn run_sync(app: &TestApp, account_id: i64, mode: SyncMode) -> SyncReport {
    try_sync(app, account_id, mode)
        .await
        .expect("sync succeeds")
}

/// Runs a sync through the router and returns its outcome.
pub async fn try_sync(
    app: &TestApp,
    account_id: i64,
    mode: SyncMode,
) -> Result<SyncReport, SyncError> {
    sync_through(&app.ctx.actors.router, account_id, mode).await
}

/// Starts a sync through the router without waiting for it.
pub fn spawn_sync(
    app: &TestApp,
    account_id: i64,
    mode: SyncMode,
) -> tokio::task::JoinHandle<Result<SyncReport, SyncError>> {
    let router = app.ctx.actors.router.clone();
    actix_web::rt::spawn(async move { sync_through(&router, account_id, mode).await })
}

async fn sync_through(
    router: &actix::Addr<AccountRouter>,
    account_id: i64,
    mode: SyncMode,
) -> Result<SyncReport, SyncError> {
    router
        .send(
            SyncAccount {
                account_id,
                request: SyncRequest {
                    mode,
                    dry_run: false,
                },
            }
            .traced(),
        )
        .await
        .expect("router answers")
}

async fn all_updated_at(db: &DatabaseConnection) -> Vec<(String, i64, DateTime<Utc>)> {
    let mut out = Vec::new();
    for (table, key) in [
        ("listings", "id"),
        ("reservations", "id"),
        ("message_threads", "reservation_id"),
    ] {
        let stmt = sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT {key}, updated_at FROM {table} ORDER BY {key}"),
        );
        for row in db.query_all_raw(stmt).await.unwrap() {
            out.push((
                table.to_string(),
                row.try_get_by_index(0).unwrap(),
                row.try_get_by_index(1).unwrap(),
            ));
        }
    }
    out
}

both_backends!(
    full_sync_mirrors_the_simulator_exactly,
    a_second_sync_of_an_unchanged_account_writes_nothing_and_calls_little,
    reconciliation_picks_up_exactly_what_changed,
    a_running_sync_shows_its_phase_counts_and_eta_and_a_waited_sync_answers_its_report,
);

async fn a_running_sync_shows_its_phase_counts_and_eta_and_a_waited_sync_answers_its_report(
    backend: Backend,
) {
    let mut app = app_with_sim(
        backend,
        DATASET,
        &[
            ("sync.sync_on_create", "false"),
            ("hostaway.page_size", "10"),
            ("hostaway.concurrency", "1"),
        ],
    )
    .await;
    create_account(&app, 1001, "secret").await;
    app.sim().state().set_faults(hostaway_sim::Faults {
        latency_ms: 300,
        ..hostaway_sim::Faults::default()
    });
    let waited = app
        .admin(
            reqwest::Method::POST,
            "/api/v1/hostaway/accounts/1001/sync?mode=full&wait=true",
        )
        .send();
    let waited = actix_web::rt::spawn(async move {
        let response = waited.await.unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    });
    let mut phases = Vec::new();
    let mut saw_eta = false;
    let mut saw_reservation_total = false;
    let mut saw_thread_total = false;
    let mut metric_phases = 0.0;
    while !waited.is_finished() {
        let sync = get_account(&app, 1001).await["sync"].clone();
        if let Some(phase) = sync["phase"].as_str() {
            if phases.last().map(String::as_str) != Some(phase) {
                phases.push(phase.to_string());
            }
            assert_eq!(sync["running"], true);
            assert_eq!(sync["mode"], "full");
            assert!(sync["started_at"].is_string(), "{sync}");
            saw_eta |= sync["eta_secs"].as_f64().is_some_and(|eta| eta > 0.0);
            saw_reservation_total |= sync["reservations"]["total"] == 150;
            saw_thread_total |= sync["message_threads"]["total"] == 60;
            assert!(sync["requests"].as_u64().unwrap() > 0, "{sync}");
            assert!(sync["rate_limit_wait_secs"].as_f64().is_some(), "{sync}");
            let metrics = app.metrics().await;
            metric_phases = [
                "listings",
                "reservations",
                "conversations",
                "messages",
                "writing",
            ]
            .iter()
            .map(|p| {
                crate::helpers::metric_value(
                    &metrics,
                    &format!("sync_hostaway_sync_phase{{phase=\"{p}\"}}"),
                )
            })
            .sum::<f64>()
            .max(metric_phases);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, body) = waited.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["reservations"]["fetched"], 150, "{body}");
    for phase in ["listings", "reservations", "conversations", "messages"] {
        assert!(
            phases.iter().any(|p| p == phase),
            "phase {phase} never shown: {phases:?}"
        );
    }
    assert!(saw_reservation_total, "the announced total is shown");
    assert!(saw_thread_total, "the conversations to read are shown");
    assert!(saw_eta, "an ETA is shown once a total is known");
    assert_eq!(metric_phases, 1.0, "one running sync in the phase gauge");
    let after = get_account(&app, 1001).await;
    assert_eq!(after["sync"]["running"], false, "{after}");
    assert!(after["sync"].get("phase").is_none(), "{after}");
    assert_eq!(after["sync"]["state"], "idle");
    let metrics = app.metrics().await;
    assert_eq!(
        crate::helpers::metric_value(&metrics, "sync_hostaway_sync_phase{phase=\"writing\"}"),
        0.0
    );
    app.stop().await;
}

async fn full_sync_mirrors_the_simulator_exactly(backend: Backend) {
    let mut app = app_with_sim(backend, DATASET, &[("sync.sync_on_create", "false")]).await;
    create_account(&app, 1001, "secret").await;
    let report = run_sync(&app, 1001, SyncMode::Full).await;
    assert_eq!(report.listings.fetched, 8);
    assert_eq!(report.reservations.fetched, 150);
    assert_eq!(report.reservations.written, 150);
    assert_eq!(report.conversations_refetched, 60);
    assert_eq!(report.message_threads.written, 60);
    assert_eq!(mirror_diff(&app, 1001).await, None);
    let account = wait_synced(&app, 1001).await;
    assert_eq!(
        account["last_sync_at"]
            .as_str()
            .map(|s| s.parse::<DateTime<Utc>>().unwrap()),
        Some(report.started_at),
        "last_sync_at is the start of the run"
    );
    app.stop().await;
}

async fn a_second_sync_of_an_unchanged_account_writes_nothing_and_calls_little(backend: Backend) {
    let mut app = app_with_sim(backend, DATASET, &[("sync.sync_on_create", "false")]).await;
    create_account(&app, 1001, "secret").await;
    run_sync(&app, 1001, SyncMode::Full).await;
    let before = all_updated_at(&app.db).await;
    app.sim().state().reset_stats();
    let report = run_sync(&app, 1001, SyncMode::Incremental).await;
    assert_eq!(report.mode, SyncMode::Incremental);
    assert_eq!(
        report.reservations.written + report.listings.written + report.message_threads.written,
        0
    );
    assert_eq!(report.conversations_refetched, 0);
    assert_eq!(
        all_updated_at(&app.db).await,
        before,
        "every updated_at is unchanged"
    );
    let stats = app.sim().state().stats();
    assert!(
        stats.total <= 25,
        "reconciliation made {} calls: {:?}",
        stats.total,
        stats.requests
    );
    assert_eq!(
        stats.requests.get(endpoints::MESSAGES),
        None,
        "no message calls"
    );
    assert_eq!(stats.tokens_issued, 0, "the cached token is reused");
    app.stop().await;
}

async fn reconciliation_picks_up_exactly_what_changed(backend: Backend) {
    let mut app = app_with_sim(backend, DATASET, &[("sync.sync_on_create", "false")]).await;
    create_account(&app, 1001, "secret").await;
    run_sync(&app, 1001, SyncMode::Full).await;
    let state = app.sim().state();
    let updated = state.mutate(1001, Mutation::UpdateReservation, 5);
    let messaged = state.mutate(1001, Mutation::NewMessage, 3);
    assert_eq!(updated.len(), 5);
    assert_eq!(messaged.len(), 3);
    state.reset_stats();
    let report = run_sync(&app, 1001, SyncMode::Incremental).await;
    assert_eq!(
        report.reservations.written, 5,
        "exactly the five changed reservations"
    );
    assert_eq!(
        report.conversations_refetched, 3,
        "only conversations with a new message"
    );
    assert_eq!(report.message_threads.written, 3);
    assert_eq!(mirror_diff(&app, 1001).await, None);
    assert_eq!(state.stats().requests.get(endpoints::MESSAGES), Some(&3));
    app.stop().await;
}
