//! Conformance with Hostaway's documentation (`API.md`), not with what the
//! client happens to do:
//! - the sync matrix: full sync, webhooks and reconciliation of a 20 / 800 /
//!   800 account under every behaviour the simulator offers for what the
//!   documentation leaves open (§7), each ending with a mirror equal to the
//!   simulator's truth;
//! - servers that lie (a page lost mid-way, a `count` larger than what is
//!   served): the sync fails loudly and changes nothing;
//! - one test per documented fact the client relies on, named by its
//!   section (`s4_2_...` is API.md §4.2).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hostaway_sim::{
    ActivityFormat, Behaviour, CountMode, CursorMode, DatasetSize, Faults, Mutation, SimConfig,
    Simulator, TokenError,
};
use secrecy::SecretString;
use serde_json::Value;
use sync_hostaway::hostaway::{Credentials, HostawayClient, HostawayError, endpoints};
use sync_hostaway::metrics::Metrics;
use sync_hostaway::sync::{SyncError, SyncMode};

use crate::accounts::{create_account, get_account, wait_synced};
use crate::both_backends;
use crate::helpers::{
    AppOptions, Backend, TestApp, client_settings, metric_value, mirror_diff, sim_config,
    spawn_with, start_sim, wait_for,
};
use crate::sync::{run_sync, try_sync};
use crate::webhooks::wait_settled;

/// The account size the issue names: 20 listings, 800 reservations, 800
/// conversations.
const FULL: DatasetSize = DatasetSize {
    listings: 20,
    reservations: 800,
    conversations: 800,
    messages_per_conversation: 4,
};

const ACCOUNT: i64 = 1001;

async fn app(backend: Backend, config: SimConfig) -> TestApp {
    spawn_with(
        backend,
        AppOptions {
            sim: Some(config),
            overrides: &[("sync.sync_on_create", "false")],
            public_url: true,
        },
    )
    .await
}

// -- The matrix over §7 ------------------------------------------------------

/// Full sync, then webhooks for a burst of changes, then a reconciliation
/// of changes no webhook announced: the mirror equals the simulator's truth
/// after each step, under `Behaviour::variants()[index]`.
async fn matrix_case(backend: Backend, index: usize) {
    let (name, behaviour) = Behaviour::variants().swap_remove(index);
    let mut config = sim_config(FULL);
    config.behaviour = behaviour;
    let mut app = app(backend, config).await;
    create_account(&app, ACCOUNT, "secret").await;

    let report = run_sync(&app, ACCOUNT, SyncMode::Full).await;
    assert_eq!(
        (
            report.listings.fetched,
            report.reservations.fetched,
            report.conversations
        ),
        (20, 800, 800),
        "{name}: every object fetched"
    );
    assert_eq!(mirror_diff(&app, ACCOUNT).await, None, "{name}: full sync");
    let state = app.sim().state();
    // Without `count` only an empty page proves the end of a list.
    let per_conversation = if behaviour.count == CountMode::Absent {
        2
    } else {
        1
    };
    assert_eq!(
        state.stats().requests.get(endpoints::MESSAGES),
        Some(&(800 * per_conversation)),
        "{name}: message calls per conversation"
    );

    // Webhooks (the registration was made after the sync).
    wait_for(
        "the webhook registration",
        Duration::from_secs(20),
        || async {
            (get_account(&app, ACCOUNT).await["webhook"]["status"] == "registered").then_some(())
        },
    )
    .await;
    let mut changes = state.mutate(ACCOUNT, Mutation::UpdateReservation, 10);
    changes.extend(state.mutate(ACCOUNT, Mutation::NewReservation, 2));
    changes.extend(state.mutate(ACCOUNT, Mutation::NewMessage, 5));
    let records = state.deliver_changes(ACCOUNT, &changes, false).await;
    assert!(
        records.iter().all(|r| r.delivered),
        "{name}: deliveries accepted"
    );
    wait_settled(&app.db).await;
    assert_eq!(mirror_diff(&app, ACCOUNT).await, None, "{name}: webhooks");

    // Changes nobody announced: the reconciliation finds them.
    state.mutate(ACCOUNT, Mutation::UpdateReservation, 7);
    state.mutate(ACCOUNT, Mutation::CancelReservation, 2);
    state.mutate(ACCOUNT, Mutation::NewReservation, 3);
    state.mutate(ACCOUNT, Mutation::NewMessage, 6);
    let report = run_sync(&app, ACCOUNT, SyncMode::Incremental).await;
    assert_eq!(report.mode, SyncMode::Incremental);
    assert_eq!(
        mirror_diff(&app, ACCOUNT).await,
        None,
        "{name}: reconciliation"
    );
    app.stop().await;
}

/// `name => index` for every entry of `Behaviour::variants()`, each run on
/// both backends; a test checks that the list is complete and in order.
macro_rules! sync_matrix {
    ($($name:ident => $index:expr),+ $(,)?) => {
        #[test]
        fn the_sync_matrix_covers_every_simulator_variant() {
            let listed = [$(stringify!($name)),+];
            let variants: Vec<String> = Behaviour::variants()
                .into_iter()
                .map(|(name, _)| name.replace(['=', '-'], "_"))
                .collect();
            assert_eq!(listed.to_vec(), variants);
            assert_eq!([$($index),+].to_vec(), (0..variants.len()).collect::<Vec<usize>>());
        }

        mod sync_matrix {$(
            mod $name {
                #[actix_web::test]
                async fn sqlite() {
                    super::super::matrix_case($crate::helpers::Backend::Sqlite, $index).await
                }
                $crate::pg_test! {
                    async fn postgres() {
                        super::super::matrix_case($crate::helpers::Backend::Postgres, $index).await
                    }
                }
            }
        )+}
    };
}

sync_matrix!(
    default => 0,
    cursor_id_greater => 1,
    activity_format_date => 2,
    activity_format_datetime => 3,
    activity_scope_bookings_only => 4,
    count_absent => 5,
    token_error_401 => 6,
    conversation_order_newest_first => 7,
    message_order_oldest_first => 8,
    retry_after_window => 9,
    webhook_envelope_payload_data => 10,
    password_masking_plain => 11,
    reservation_timestamps_absent => 12,
);

// -- Servers that lie ----------------------------------------------------------

const SMALL: DatasetSize = DatasetSize {
    listings: 20,
    reservations: 300,
    conversations: 40,
    messages_per_conversation: 3,
};

both_backends!(
    a_listing_page_lost_for_good_fails_the_sync_and_soft_deletes_nothing,
    a_count_larger_than_what_is_served_fails_the_sync_and_writes_nothing,
    a_page_lost_once_is_recovered_by_walking_the_listing_again,
);

async fn incomplete_total(app: &TestApp, entity: &str) -> f64 {
    metric_value(
        &app.metrics().await,
        &format!("sync_hostaway_sync_incomplete_total{{entity=\"{entity}\"}}"),
    )
}

async fn live_listings(app: &TestApp) -> usize {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    entities::listing::Entity::find()
        .filter(entities::listing::Column::AccountId.eq(ACCOUNT))
        .filter(entities::listing::Column::DeletedAt.is_null())
        .count(&app.db)
        .await
        .unwrap() as usize
}

/// A failed run keeps the previous `last_sync_at` and says why.
async fn assert_failed_run_kept(app: &TestApp, last_sync_at: &Value, expected_error: &str) {
    let account = wait_for("the failure recorded", Duration::from_secs(10), || async {
        let account = get_account(app, ACCOUNT).await;
        (account["sync_state"] == "failed").then_some(account)
    })
    .await;
    assert_eq!(
        &account["last_sync_at"], last_sync_at,
        "last_sync_at unchanged"
    );
    let error = account["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(expected_error), "{error}");
}

async fn a_listing_page_lost_for_good_fails_the_sync_and_soft_deletes_nothing(backend: Backend) {
    let mut app = app(backend, sim_config(SMALL)).await;
    create_account(&app, ACCOUNT, "secret").await;
    run_sync(&app, ACCOUNT, SyncMode::Full).await;
    let synced = wait_synced(&app, ACCOUNT).await["last_sync_at"].clone();

    // The server stops after 10 of 20 listings while announcing 20: a sync
    // trusting it would soft-delete the other 10.
    app.sim().state().set_faults(Faults {
        serve_at_most: Some(10),
        path_contains: Some("/listings".into()),
        ..Faults::default()
    });
    app.sim().state().set_max_limit(5);
    let result = try_sync(&app, ACCOUNT, SyncMode::Full).await;
    match result {
        Err(SyncError::Hostaway(HostawayError::Incomplete {
            endpoint,
            expected,
            received,
        })) => {
            assert_eq!(endpoint, endpoints::LISTINGS);
            assert_eq!((expected, received), (20, 10));
        }
        other => panic!("expected an incomplete listing, got {other:?}"),
    }
    assert_eq!(live_listings(&app).await, 20, "nothing soft-deleted");
    assert_failed_run_kept(
        &app,
        &synced,
        "incomplete listing from GET /v1/listings: Hostaway announced 20 items but 10",
    )
    .await;
    assert_eq!(
        incomplete_total(&app, "listings").await,
        2.0,
        "the first walk and the second"
    );
    assert_eq!(mirror_diff(&app, ACCOUNT).await, None);
    app.stop().await;
}

async fn a_count_larger_than_what_is_served_fails_the_sync_and_writes_nothing(backend: Backend) {
    let mut app = app(backend, sim_config(SMALL)).await;
    create_account(&app, ACCOUNT, "secret").await;
    run_sync(&app, ACCOUNT, SyncMode::Full).await;
    let synced = wait_synced(&app, ACCOUNT).await["last_sync_at"].clone();
    let state = app.sim().state();
    let changed = state.mutate(ACCOUNT, Mutation::UpdateReservation, 3);
    let before = crate::webhooks::reservation_of(&app.db, ACCOUNT, changed[0].object_id).await;
    state.set_faults(Faults {
        count_bonus: 1,
        path_contains: Some("/reservations".into()),
        ..Faults::default()
    });
    for mode in [SyncMode::Full, SyncMode::Incremental] {
        let result = try_sync(&app, ACCOUNT, mode).await;
        assert!(
            matches!(
                &result,
                Err(SyncError::Hostaway(HostawayError::Incomplete { endpoint, .. }))
                    if endpoint == endpoints::RESERVATIONS
            ),
            "{mode:?}: {result:?}"
        );
        assert_failed_run_kept(
            &app,
            &synced,
            "incomplete listing from GET /v1/reservations",
        )
        .await;
    }
    assert_eq!(
        crate::webhooks::reservation_of(&app.db, ACCOUNT, changed[0].object_id).await,
        before,
        "a failed run writes nothing, not even what it did fetch"
    );
    assert_eq!(live_listings(&app).await, 20);
    // Once the server stops lying, the next run completes the mirror.
    state.set_faults(Faults::default());
    run_sync(&app, ACCOUNT, SyncMode::Incremental).await;
    assert_eq!(mirror_diff(&app, ACCOUNT).await, None);
    app.stop().await;
}

async fn a_page_lost_once_is_recovered_by_walking_the_listing_again(backend: Backend) {
    let mut app = app(backend, sim_config(SMALL)).await;
    create_account(&app, ACCOUNT, "secret").await;
    app.sim().state().set_faults(Faults {
        empty_pages: 1,
        path_contains: Some("/reservations".into()),
        ..Faults::default()
    });
    let report = run_sync(&app, ACCOUNT, SyncMode::Full).await;
    assert_eq!(report.reservations.fetched, 300);
    assert_eq!(mirror_diff(&app, ACCOUNT).await, None);
    assert_eq!(incomplete_total(&app, "reservations").await, 1.0);
    app.stop().await;
}

// -- Documented facts (§1–§5) ------------------------------------------------------

fn client(sim: &Simulator, overrides: &[(&str, &str)]) -> (HostawayClient, Arc<Metrics>) {
    let settings = client_settings(sim, overrides);
    let metrics = Arc::new(Metrics::new());
    let client = HostawayClient::new(&settings.hostaway, metrics.clone(), None).expect("client");
    (client, metrics)
}

fn account(client: &HostawayClient) -> sync_hostaway::hostaway::AccountClient {
    client.account(Credentials {
        account_id: ACCOUNT,
        client_secret: SecretString::from("secret".to_string()),
    })
}

async fn sim_with(dataset: DatasetSize, behaviour: Behaviour, max_limit: u32) -> Simulator {
    let mut config = sim_config(dataset);
    config.behaviour = behaviour;
    config.max_limit = max_limit;
    start_sim(config).await
}

fn ids(items: &[Value]) -> HashSet<i64> {
    items.iter().filter_map(|i| i["id"].as_i64()).collect()
}

fn truth_ids(
    sim: &Simulator,
    pick: impl Fn(&hostaway_sim::AccountData) -> &Vec<Value>,
) -> HashSet<i64> {
    ids(pick(&sim.state().dataset(ACCOUNT).unwrap()))
}

fn calls(sim: &Simulator, endpoint: &str) -> u64 {
    sim.state()
        .stats()
        .requests
        .get(endpoint)
        .copied()
        .unwrap_or(0)
}

const PAGED: DatasetSize = DatasetSize {
    listings: 23,
    reservations: 801,
    conversations: 31,
    messages_per_conversation: 9,
};

#[actix_web::test]
async fn s1_3_a_refused_token_is_refreshed_once_whether_hostaway_answers_403_or_401() {
    for token_error in TokenError::ALL.iter().copied() {
        let behaviour = Behaviour {
            token_error,
            ..Behaviour::default()
        };
        let sim = sim_with(PAGED, behaviour, 100).await;
        let (client, _) = client(&sim, &[]);
        let account = account(&client);
        assert_eq!(account.list_listings().await.unwrap().len(), 23);
        assert_eq!(sim.state().expire_tokens(), 1);
        assert_eq!(
            account.list_listings().await.unwrap().len(),
            23,
            "{token_error}: refreshed and retried"
        );
        let stats = sim.state().stats();
        assert_eq!(stats.tokens_issued, 2, "{token_error}");
        sim.stop().await;
    }
}

#[actix_web::test]
async fn s2_3_errors_carry_hostaways_message_from_result() {
    let sim = sim_with(PAGED, Behaviour::default(), 100).await;
    let (client, _) = client(&sim, &[]);
    match account(&client).get_reservation(1).await {
        Err(HostawayError::Api {
            status, message, ..
        }) => assert_eq!((status, message.as_str()), (404, "Reservation not found")),
        other => panic!("expected a 404, got {other:?}"),
    }
    sim.stop().await;
}

#[actix_web::test]
async fn s2_5_offset_paging_steps_by_what_a_clamping_server_returns() {
    let sim = sim_with(PAGED, Behaviour::default(), 7).await;
    let (client, _) = client(&sim, &[("hostaway.page_size", "100")]);
    let account = account(&client);
    let listings = account.list_listings().await.unwrap();
    assert_eq!(listings.len(), 23);
    assert_eq!(ids(&listings), truth_ids(&sim, |d| &d.listings));
    let conversations = account.list_conversations().await.unwrap();
    assert_eq!(ids(&conversations), truth_ids(&sim, |d| &d.conversations));
    let conversation = conversations[0]["id"].as_i64().unwrap();
    assert_eq!(account.list_messages(conversation).await.unwrap().len(), 9);
    // 23 listings in pages of 7: 4 calls, and none past `count`.
    assert_eq!(calls(&sim, endpoints::LISTINGS), 4);
    sim.stop().await;
}

#[actix_web::test]
async fn s2_5_without_count_offset_paging_ends_on_an_empty_page() {
    let behaviour = Behaviour {
        count: CountMode::Absent,
        ..Behaviour::default()
    };
    let sim = sim_with(PAGED, behaviour, 7).await;
    let (client, _) = client(&sim, &[("hostaway.page_size", "100")]);
    let listings = account(&client).list_listings().await.unwrap();
    assert_eq!(ids(&listings), truth_ids(&sim, |d| &d.listings));
    // 7 + 7 + 7 + 2, then the empty page that proves the end.
    assert_eq!(calls(&sim, endpoints::LISTINGS), 5);
    sim.stop().await;
}

#[actix_web::test]
async fn s4_2_reservations_page_from_no_after_id_by_the_last_item_returned() {
    // Position-anchored cursor (the documented reading): a first page sent
    // with `afterId=0`, or a cursor taken as the largest id, loses pages.
    let sim = sim_with(PAGED, Behaviour::default(), 50).await;
    let (client, metrics) = client(&sim, &[("hostaway.page_size", "100")]);
    let reservations = account(&client).list_reservations(None).await.unwrap();
    assert_eq!(reservations.len(), 801);
    assert_eq!(ids(&reservations), truth_ids(&sim, |d| &d.reservations));
    // 16 pages of 50 and one of 1; then `count` is reached.
    assert_eq!(calls(&sim, endpoints::RESERVATIONS), 17);
    let incomplete = metrics
        .sync_incomplete
        .with_label_values(&["reservations"])
        .get();
    assert_eq!(incomplete, 0, "the cursor walk alone was complete");
    sim.stop().await;
}

#[actix_web::test]
async fn s4_2_without_count_the_cursor_walk_ends_on_an_empty_page() {
    let behaviour = Behaviour {
        count: CountMode::Absent,
        ..Behaviour::default()
    };
    let sim = sim_with(PAGED, behaviour, 100).await;
    let (client, _) = client(&sim, &[("hostaway.page_size", "100")]);
    let reservations = account(&client).list_reservations(None).await.unwrap();
    assert_eq!(ids(&reservations), truth_ids(&sim, |d| &d.reservations));
    assert_eq!(
        calls(&sim, endpoints::RESERVATIONS),
        10,
        "9 pages, then the empty one"
    );
    sim.stop().await;
}

#[actix_web::test]
async fn s4_2_an_id_greater_cursor_is_caught_short_and_offset_paging_completes_it() {
    let behaviour = Behaviour {
        cursor: CursorMode::IdGreater,
        ..Behaviour::default()
    };
    let sim = sim_with(PAGED, behaviour, 100).await;
    let (client, metrics) = client(&sim, &[("hostaway.page_size", "100")]);
    let reservations = account(&client).list_reservations(None).await.unwrap();
    assert_eq!(ids(&reservations), truth_ids(&sim, |d| &d.reservations));
    let incomplete = metrics
        .sync_incomplete
        .with_label_values(&["reservations"])
        .get();
    assert_eq!(
        incomplete, 1,
        "the cursor walk was short, the offset walk not"
    );
    sim.stop().await;
}

#[actix_web::test]
async fn s4_2_activity_filters_work_whichever_format_the_server_takes() {
    for format in ActivityFormat::ALL.iter().copied() {
        let behaviour = Behaviour {
            activity_format: format,
            ..Behaviour::default()
        };
        let sim = sim_with(PAGED, behaviour, 100).await;
        let (client, _) = client(&sim, &[]);
        let account = account(&client);
        let truth = sim.state().dataset(ACCOUNT).unwrap().reservations;
        let activity = |r: &Value| {
            let text = r["latestActivityOn"].as_str().unwrap_or_default();
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
        };
        // The median activity time splits the account in two.
        let mut times: Vec<DateTime<Utc>> = truth.iter().map(activity).collect();
        times.sort();
        let since = times[times.len() / 2];
        let day_start = since.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
        for round in 0..2 {
            let got = account.list_reservations(Some(since)).await.unwrap();
            let wanted: HashSet<i64> = truth
                .iter()
                .filter(|r| activity(r) >= since)
                .filter_map(|r| r["id"].as_i64())
                .collect();
            assert!(
                ids(&got).is_superset(&wanted),
                "{format} round {round}: every reservation active since {since}"
            );
            assert!(
                got.iter().all(|r| activity(r) >= day_start),
                "{format} round {round}: nothing older than the day of {since}"
            );
            assert!(got.len() < truth.len(), "{format}: the filter was applied");
        }
        sim.stop().await;
    }
}

#[test]
fn every_switch_the_matrix_runs_is_a_documented_unknown() {
    // The simulator's defaults are the documented behaviour (§2.2 count,
    // §1.3 403, §4.2 position cursor, §5.2 top-level data).
    let default = Behaviour::default();
    assert_eq!(default.count, CountMode::Present);
    assert_eq!(default.token_error, TokenError::Forbidden);
    assert_eq!(default.cursor, CursorMode::Position);
}
