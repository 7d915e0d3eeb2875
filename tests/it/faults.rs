//! The fault suite: crashes, a database outage, Hostaway misbehaving during a
//! sync, poison events, and thousands of malformed requests. Each test prints
//! a one-line figure.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hostaway_sim::{DatasetSize, Faults};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use sync_hostaway::hostaway::json::Json;
use sync_hostaway::hostaway::webhook::parse_delivery;
use sync_hostaway::sync::SyncMode;
use tokio::sync::Mutex;

use crate::accounts::{app_with_sim, create_account};
use crate::both_backends;
use crate::helpers::{
    Backend, TestDb, fixture, http_client, metric_value, mirror_diff, spawn_app_with, wait_for,
};
use crate::sync::try_sync;
use crate::webhooks::{add_account, wait_settled};
use test_support::PrivatePostgres;

const ACCOUNT: i64 = 71234;

fn event(account_id: i64, reservation_id: i64) -> Value {
    let mut body = fixture("webhook_reservation_updated.json");
    body["accountId"] = json!(account_id);
    body["data"]["id"] = json!(reservation_id);
    body["data"]["hostawayReservationId"] = json!(reservation_id);
    body
}

async fn reservation_ids(db: &DatabaseConnection) -> BTreeSet<i64> {
    let stmt =
        sea_orm::Statement::from_string(db.get_database_backend(), "SELECT id FROM reservations");
    db.query_all_raw(stmt)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect()
}

async fn count_where(db: &DatabaseConnection, sql: &str) -> i64 {
    let stmt = sea_orm::Statement::from_string(db.get_database_backend(), sql.to_string());
    db.query_one_raw(stmt)
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

/// Posts distinct events from `clients` concurrent connections until `stop`;
/// returns the reservation ids whose delivery got a 200, and the count of 503s.
async fn storm(
    url: String,
    clients: usize,
    stop: Arc<AtomicBool>,
    unavailable: Arc<std::sync::atomic::AtomicUsize>,
) -> (BTreeSet<i64>, usize) {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (url, stop, acked, unavailable) = (
                url.clone(),
                stop.clone(),
                acked.clone(),
                unavailable.clone(),
            );
            actix_web::rt::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut n = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = 10_000_000 + client as i64 * 1_000_000 + n;
                    let result = http
                        .post(&url)
                        .basic_auth("hostaway", Some("test-webhook-password"))
                        .json(&event(ACCOUNT, id))
                        .send()
                        .await;
                    match result {
                        Ok(response) if response.status() == 200 => {
                            acked.lock().await.insert(id);
                        }
                        Ok(response) if response.status() == 503 => {
                            unavailable.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        // The service is gone (killed): keep trying until told to stop.
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    (acked, unavailable.load(Ordering::SeqCst))
}

both_backends!(
    crash_during_a_storm_loses_nothing_acknowledged,
    hostaway_faults_during_a_sync_end_in_an_exact_mirror,
    poison_and_panicking_events_are_dead_lettered_while_everything_else_flows,
);

async fn crash_during_a_storm_loses_nothing_acknowledged(backend: Backend) {
    let db = TestDb::new(backend);
    let env = [("SYNC_HOSTAWAY__SYNC__SYNC_ON_CREATE", "false")];
    let mut service = crate::process::start(&db, &env);
    let http = http_client();
    let response = http
        .post(service.url("/api/v1/hostaway/accounts?verify=false"))
        .bearer_auth("test-admin-token")
        .json(&json!({"account_id": ACCOUNT, "client_secret": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let stop = Arc::new(AtomicBool::new(false));
    let storming = actix_web::rt::spawn(storm(
        service.url("/api/v1/hostaway/webhooks"),
        16,
        stop.clone(),
        Default::default(),
    ));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    service.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let (acked, _) = storming.await.unwrap();
    assert!(
        acked.len() > 100,
        "the storm reached the service: {}",
        acked.len()
    );

    // Restart on the same database and address-independent: pending rows are applied.
    let service = crate::process::start(&db, &env);
    let conn = db.connect().await;
    wait_settled(&conn).await;
    let applied = reservation_ids(&conn).await;
    let lost: Vec<&i64> = acked.iter().filter(|id| !applied.contains(id)).collect();
    let inbox_rows = count_where(&conn, "SELECT COUNT(*) FROM webhook_events").await;
    let distinct = count_where(
        &conn,
        "SELECT COUNT(DISTINCT dedupe_key) FROM webhook_events",
    )
    .await;
    let duplicated = inbox_rows - distinct;
    println!(
        "crash ({backend:?}): {} acked, {} applied, {} lost, {duplicated} duplicated",
        acked.len(),
        acked.iter().filter(|id| applied.contains(id)).count(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
    assert_eq!(duplicated, 0);
    drop(service);
}

crate::pg_test! {
    async fn database_outage_answers_503_and_recovers_without_a_restart() {
        let postgres = PrivatePostgres::start().expect(
            "the database outage test starts its own PostgreSQL server: install the server \
             binaries (Debian: postgresql), or build the suite without TEST_DATABASE_URL",
        );
        let mut app = spawn_app_with(
            TestDb::on_postgres(&postgres.url()),
            &[
                ("sync.sync_on_create", "false"),
                ("database.connect_timeout_secs", "1"),
                // An event that met the outage is retried, never dead-lettered
                // for it: with two attempts, counting outage failures as
                // attempts would lose some.
                ("webhooks.max_attempts", "2"),
            ],
        )
        .await;
        add_account(&app, ACCOUNT).await;
        let stop = Arc::new(AtomicBool::new(false));
        let storm_refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let storming = actix_web::rt::spawn(storm(
            app.url("/api/v1/hostaway/webhooks"),
            8,
            stop.clone(),
            storm_refused.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(700)).await;
        let down = Instant::now();
        postgres.stop_server();
        // Deliveries during the outage are refused with 503 (Hostaway retries them).
        wait_for(
            "deliveries to be refused",
            Duration::from_secs(10),
            || async {
                let response = app.deliver(&event(ACCOUNT, 1)).await;
                (response.status() == 503).then_some(())
            },
        )
        .await;
        // The storm's own deliveries meet it too: a batch waiting for a
        // connection is refused once the pool's connect timeout passes.
        wait_for(
            "the storm's deliveries to be refused",
            Duration::from_secs(10),
            || async { (storm_refused.load(Ordering::SeqCst) > 0).then_some(()) },
        )
        .await;
        let ready = app.http.get(app.url("/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "not ready while the database is down");
        tokio::time::sleep(Duration::from_millis(500)).await;
        postgres.start_server();
        let outage = down.elapsed();
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::SeqCst);
        let (acked, refused) = storming.await.unwrap();
        wait_for(
            "the service to be ready again",
            Duration::from_secs(20),
            || async {
                let ready = app.http.get(app.url("/ready")).send().await.ok()?;
                (ready.status() == 200).then_some(())
            },
        )
        .await;
        let db = app.db.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let applied = reservation_ids(&db).await;
            let missing = acked.iter().filter(|id| !applied.contains(id)).count();
            if missing == 0 {
                break;
            }
            if Instant::now() > deadline {
                // What became of them, for whoever reads the failure.
                let stmt = sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    "SELECT COUNT(*) || ' ' || status || ' after ' || attempts || ' attempts: ' \
                     || COALESCE(last_error, '-') FROM webhook_events \
                     GROUP BY status, attempts, last_error",
                );
                let inbox: Vec<String> = db
                    .query_all_raw(stmt)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.try_get_by_index(0).unwrap())
                    .collect();
                let metrics = app.metrics().await;
                let restarts = metric_value(
                    &metrics,
                    "sync_hostaway_actor_restarts_total{actor=\"account\"}",
                );
                let degraded = metric_value(&metrics, "sync_hostaway_accounts_degraded");
                panic!(
                    "after 60 s {missing} of {} acknowledged events are not applied; \
                     inbox: {inbox:?}; account actor \
                     restarts {restarts}, accounts degraded {degraded}",
                    acked.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_settled(&db).await;
        println!(
            "database outage: {} acked, {} refused with 503 during a {:?} outage, 0 lost",
            acked.len(),
            refused,
            outage
        );
        assert!(refused > 0, "the storm saw the outage");
        assert!(acked.len() > 50);
        app.stop().await;
    }
}

async fn hostaway_faults_during_a_sync_end_in_an_exact_mirror(backend: Backend) {
    let dataset = DatasetSize {
        listings: 6,
        reservations: 120,
        conversations: 40,
        messages_per_conversation: 3,
    };
    let mut app = app_with_sim(
        backend,
        dataset,
        &[
            ("sync.sync_on_create", "false"),
            ("hostaway.max_attempts", "6"),
            ("hostaway.request_timeout_secs", "0.5"),
            ("hostaway.rate_limit.enabled", "true"),
            ("hostaway.rate_limit.per_ip.requests", "1000"),
            ("hostaway.rate_limit.per_ip.per_seconds", "0.2"),
            ("hostaway.rate_limit.per_account.requests", "1000"),
            ("hostaway.rate_limit.per_account.per_seconds", "0.2"),
            ("hostaway.rate_limit.safety_margin_ms", "0"),
        ],
    )
    .await;
    create_account(&app, 1001, "secret").await;
    let state = app.sim().state();
    let scenarios: Vec<(&str, Faults)> = vec![
        (
            "5xx burst",
            Faults {
                error_burst: 4,
                ..Faults::default()
            },
        ),
        (
            "random 5xx",
            Faults {
                error_rate: 0.2,
                ..Faults::default()
            },
        ),
        (
            "timeouts",
            Faults {
                timeout_rate: 0.1,
                hang_ms: 2_000,
                ..Faults::default()
            },
        ),
        (
            "429 storm",
            Faults {
                burst_429: 6,
                ..Faults::default()
            },
        ),
    ];
    let mut outcomes = Vec::new();
    for (name, faults) in scenarios {
        state.set_faults(faults);
        let first = try_sync(&app, 1001, SyncMode::Full).await;
        state.set_faults(Faults::default());
        let outcome = match first {
            Ok(_) => "completed".to_string(),
            Err(err) => {
                // Failed cleanly: the next run completes.
                try_sync(&app, 1001, SyncMode::Full)
                    .await
                    .expect("the next sync completes");
                format!("failed cleanly ({err}), next run completed")
            }
        };
        assert_eq!(
            mirror_diff(&app, 1001).await,
            None,
            "{name}: the mirror equals the simulator"
        );
        outcomes.push(format!("{name}: {outcome}"));
    }
    // Token expiry in the middle of a sync: one refresh, the sync completes.
    state.mutate(1001, hostaway_sim::Mutation::UpdateReservation, 10);
    let tokens_before = state.stats().tokens_issued;
    state.set_faults(Faults {
        latency_ms: 30,
        ..Faults::default()
    });
    let expire = {
        let state = state.clone();
        actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            state.expire_tokens();
        })
    };
    try_sync(&app, 1001, SyncMode::Full)
        .await
        .expect("the sync survives token expiry");
    expire.await.unwrap();
    state.set_faults(Faults::default());
    assert_eq!(mirror_diff(&app, 1001).await, None);
    assert_eq!(
        state.stats().tokens_issued,
        tokens_before + 1,
        "exactly one new token"
    );
    println!(
        "hostaway faults ({backend:?}): {}; token expiry mid-sync: completed",
        outcomes.join("; ")
    );
    app.stop().await;
}

async fn poison_and_panicking_events_are_dead_lettered_while_everything_else_flows(
    backend: Backend,
) {
    let mut app = spawn_app_with(
        TestDb::new(backend),
        &[
            ("sync.sync_on_create", "false"),
            ("faults.fail_on_reservation_ids", "13,14"),
            ("faults.panic_on_reservation_ids", "66,67"),
            ("webhooks.max_attempts", "3"),
        ],
    )
    .await;
    add_account(&app, ACCOUNT).await;
    add_account(&app, 555).await;
    let mut good = Vec::new();
    for i in 0..60i64 {
        let id = match i {
            5 => 13,
            15 => 66,
            25 => 14,
            35 => 67,
            _ => 1_000 + i,
        };
        assert_eq!(app.deliver(&event(ACCOUNT, id)).await.status(), 200);
        assert_eq!(app.deliver(&event(555, 2_000 + i)).await.status(), 200);
        if id >= 1_000 {
            good.push(id);
        }
        good.push(2_000 + i);
    }
    let db = app.db.clone();
    wait_for(
        "poison events to be dead-lettered",
        Duration::from_secs(30),
        || async {
            let dead = count_where(
                &db,
                "SELECT COUNT(*) FROM webhook_events WHERE status = 'failed'",
            )
            .await;
            let pending = count_where(
                &db,
                "SELECT COUNT(*) FROM webhook_events WHERE status = 'pending'",
            )
            .await;
            (dead == 4 && pending == 0).then_some(())
        },
    )
    .await;
    let applied = reservation_ids(&db).await;
    assert!(
        good.iter().all(|id| applied.contains(id)),
        "every other event applied"
    );
    for poison in [13, 14, 66, 67] {
        assert!(!applied.contains(&poison));
    }
    let attempts = count_where(
        &db,
        "SELECT CAST(MIN(attempts) AS BIGINT) FROM webhook_events WHERE status = 'failed'",
    )
    .await;
    assert_eq!(attempts, 3, "dead-lettered after the configured attempts");
    let metrics = app.metrics().await;
    let restarts = metric_value(
        &metrics,
        "sync_hostaway_actor_restarts_total{actor=\"account\"}",
    );
    // A batch holding both panicking events restarts the actor once.
    assert!(
        restarts >= 3.0,
        "each batch with a panic restarted the actor ({restarts})"
    );
    let account: Value = app
        .admin(Method::GET, &format!("/api/v1/hostaway/accounts/{ACCOUNT}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["status"], "active", "the account keeps flowing");
    println!(
        "poison and panic ({backend:?}): 4 dead-lettered after 3 attempts, {} applied, {restarts} actor restarts",
        good.len()
    );
    app.stop().await;
}

/// One generated request: body bytes, content type, authorization header.
struct Bad {
    body: Vec<u8>,
    content_type: Option<&'static str>,
    auth: Option<String>,
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{password}")
        )
    )
}

fn generate(rng: &mut StdRng, seeds: &[Value]) -> Bad {
    let good_auth = basic("hostaway", "test-webhook-password");
    let seed = seeds[rng.random_range(0..seeds.len())].clone();
    let text = seed.to_string();
    let body: Vec<u8> = match rng.random_range(0..12) {
        0 => text.as_bytes()[..rng.random_range(0..text.len())].to_vec(),
        1 => {
            let mut v = seed.clone();
            let keys = ["event", "accountId", "data", "object", "payload"];
            let key = keys[rng.random_range(0..keys.len())];
            let replacement = [
                json!(null),
                json!(true),
                json!([1, 2]),
                json!({"x": 1}),
                json!(-1),
                json!(""),
            ];
            v[key] = replacement[rng.random_range(0..replacement.len())].clone();
            v.to_string().into_bytes()
        }
        2 => {
            let mut v = seed.clone();
            v["accountId"] = json!(format!("{}", "9".repeat(rng.random_range(19..60))));
            v.to_string().into_bytes()
        }
        3 => {
            let depth = rng.random_range(100..5_000);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        4 => {
            let mut bytes = text.into_bytes();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = [0xff, 0xfe, 0xc3, 0x80][rng.random_range(0..4)];
            }
            bytes
        }
        5 => {
            let mut v = seed.clone();
            v["data"]["guestName"] = json!("x".repeat(rng.random_range(10_000..2_000_000)));
            v.to_string().into_bytes()
        }
        6 => {
            let mut v = seed.clone();
            v["data"]["id"] = json!(rng.random::<f64>() * 1e300);
            v.to_string().into_bytes()
        }
        7 => {
            let mut v = seed.clone();
            v["data"]["listingMapId"] = json!("not-a-number");
            v.to_string().into_bytes()
        }
        8 => (0..rng.random_range(0..400))
            .map(|_| rng.random::<u8>())
            .collect(),
        9 => {
            let mut v = seed.clone();
            v["event"] = json!(format!("{}.{}", rng.random::<u32>(), rng.random::<u16>()));
            v.to_string().into_bytes()
        }
        10 => json!([seed]).to_string().into_bytes(),
        _ => text.into_bytes(),
    };
    let auth = match rng.random_range(0..10) {
        0 => None,
        1 => Some("Basic !!!not-base64!!!".to_string()),
        2 => Some(basic("hostaway", "wrong")),
        3 => Some("Bearer test-admin-token".to_string()),
        4 => Some(format!("Basic {}", "A".repeat(rng.random_range(1..5000)))),
        _ => Some(good_auth),
    };
    let content_type = [
        Some("application/json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ][rng.random_range(0..5)];
    Bad {
        body,
        content_type,
        auth,
    }
}

#[actix_web::test]
async fn ten_thousand_malformed_requests_never_500_and_store_nothing_malformed() {
    let db = TestDb::new(Backend::Sqlite);
    let service = crate::process::start(
        &db,
        &[
            ("SYNC_HOSTAWAY__SYNC__SYNC_ON_CREATE", "false"),
            ("SYNC_HOSTAWAY__SERVER__BODY_LIMIT_BYTES", "262144"),
        ],
    );
    let http = http_client();
    let response = http
        .post(service.url("/api/v1/hostaway/accounts?verify=false"))
        .bearer_auth("test-admin-token")
        .json(&json!({"account_id": ACCOUNT, "client_secret": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let seeds: Vec<Value> = [
        "webhook_reservation_created.json",
        "webhook_reservation_updated.json",
        "webhook_reservation_cancelled.json",
        "webhook_message_received.json",
        "webhook_reservation_updated_nested_payload.json",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let admin_targets = [
        (Method::POST, "/api/v1/hostaway/accounts"),
        (Method::PATCH, "/api/v1/hostaway/accounts/71234"),
        (
            Method::POST,
            "/api/v1/hostaway/accounts/71234/sync?mode=%ff&dry_run=maybe",
        ),
        (
            Method::GET,
            "/api/v1/hostaway/webhooks/events?limit=-1&status=%00",
        ),
        (Method::POST, "/api/v1/hostaway/webhooks/events/abc/replay"),
    ];
    let mut rng = StdRng::seed_from_u64(7);
    let mut statuses = std::collections::BTreeMap::new();
    let total = 10_000;
    let requests: Vec<(Method, String, Bad)> = (0..total)
        .map(|i| {
            let bad = generate(&mut rng, &seeds);
            if i % 5 == 4 {
                let (method, path) = &admin_targets[rng.random_range(0..admin_targets.len())];
                let auth = if rng.random_bool(0.5) {
                    Some("Bearer test-admin-token".to_string())
                } else {
                    bad.auth.clone()
                };
                (method.clone(), path.to_string(), Bad { auth, ..bad })
            } else {
                (Method::POST, "/api/v1/hostaway/webhooks".to_string(), bad)
            }
        })
        .collect();
    let started = Instant::now();
    let good_webhook_auth = basic("hostaway", "test-webhook-password");
    let results = futures::stream::iter(requests.into_iter().map(|(method, path, bad)| {
        let http = http.clone();
        let url = service.url(&path);
        let authorized = bad.auth.as_deref()
            == Some(
                if path.contains("/webhooks") && method == Method::POST && !path.contains("events")
                {
                    good_webhook_auth.as_str()
                } else {
                    "Bearer test-admin-token"
                },
            );
        async move {
            // Refused before the body is read (oversized, or not authorized):
            // the service answers at once and closes the connection, so the
            // client may see its upload cut short instead of the status.
            let refused_early = bad.body.len() > 262_144 || !authorized;
            let mut request = http.request(method, url).body(bad.body);
            if let Some(ct) = bad.content_type {
                request = request.header("content-type", ct);
            }
            if let Some(auth) = bad.auth {
                request = request.header("authorization", auth);
            }
            match request.send().await {
                Ok(response) => Ok(response.status().as_u16()),
                Err(_) if refused_early => Ok(0),
                Err(err) => Err(err),
            }
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    for result in results {
        let status = result.expect("the service answered every request");
        *statuses.entry(status).or_insert(0usize) += 1;
    }
    let server_errors: usize = statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(server_errors, 0, "statuses: {statuses:?}");
    assert_eq!(
        http.get(service.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the process is up"
    );
    let conn = db.connect().await;
    let stmt = sea_orm::Statement::from_string(
        conn.get_database_backend(),
        "SELECT payload FROM webhook_events",
    );
    let stored: Vec<Value> = conn
        .query_all_raw(stmt)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect();
    for payload in &stored {
        assert!(
            parse_delivery(&Json::parse(payload.to_string().as_bytes()).unwrap()).is_ok(),
            "a malformed event was stored: {payload}"
        );
    }
    println!(
        "bad input: {total} requests in {:?}, 0 server errors, {} well-formed events stored, statuses {statuses:?}",
        started.elapsed(),
        stored.len()
    );
}

#[actix_web::test]
async fn sigterm_stops_the_service_gracefully() {
    let db = TestDb::new(Backend::Sqlite);
    let mut service = crate::process::start(&db, &[]);
    let http = http_client();
    assert_eq!(
        http.get(service.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let status = service.terminate();
    assert!(status.success(), "exit status {status}");
    let logs = service.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("HTTP server stopped; draining actors"),
        "{logs}"
    );
    assert!(logs.contains("\"message\":\"stopped\""), "{logs}");
}
