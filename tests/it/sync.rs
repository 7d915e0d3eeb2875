//! Full sync and reconciliation against the simulator.

use chrono::{DateTime, Utc};
use hostaway_sim::{DatasetSize, Mutation};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sync_hostaway::actors::router::{AccountRouter, SyncAccount};
use sync_hostaway::actors::traced::TraceExt;
use sync_hostaway::hostaway::endpoints;
use sync_hostaway::sync::{SyncError, SyncMode, SyncReport, SyncRequest};

use crate::accounts::{app_with_sim, create_account, wait_synced};
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
);

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
