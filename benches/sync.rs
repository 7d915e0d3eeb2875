//! Sync benchmark against the simulator with Hostaway's rate limits on
//! (15 requests / 10 s per IP, 20 / 10 s per account): a paging run of all
//! reservations and conversations, the initial full sync of an account with
//! 800 reservations and 800 conversations, and a repeat reconciliation.
//! Figures: API calls, wall time against the floor the limit allows
//! (calls ÷ 1.5 per second), and 429s.
//!
//! `cargo bench --bench sync` (about ten minutes: the limit is the point).
//! BENCH_RESERVATIONS / BENCH_CONVERSATIONS shrink it for a quick look.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hostaway_sim::{DatasetSize, SimAccount, SimConfig, SimLimit, SimRateLimits, Simulator};
use secrecy::SecretString;
use sync_hostaway::actors::router::SyncAccount;
use sync_hostaway::actors::traced::TraceExt;
use sync_hostaway::app::{Application, BuildOptions};
use sync_hostaway::config::{Environment, LoadOptions, Settings};
use sync_hostaway::hostaway::{Credentials, HostawayClient};
use sync_hostaway::metrics::Metrics;
use sync_hostaway::sync::{SyncMode, SyncRequest};

/// Requests per second the per-IP limit allows.
const ALLOWED_RATE: f64 = 1.5;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    name: &'static str,
    calls: u64,
    rate_limited: u64,
    wall: Duration,
}

impl Run {
    fn floor(&self) -> Duration {
        Duration::from_secs_f64(self.calls as f64 / ALLOWED_RATE)
    }

    fn row(&self) -> String {
        let ratio = self.wall.as_secs_f64() / self.floor().as_secs_f64().max(0.001);
        format!(
            "| {} | {} | {:.1} s | {:.1} s | {:+.1}% | {} |\n",
            self.name,
            self.calls,
            self.wall.as_secs_f64(),
            self.floor().as_secs_f64(),
            (ratio - 1.0) * 100.0,
            self.rate_limited
        )
    }
}

fn settings(sim: &Simulator, db_url: &str) -> Settings {
    let overrides: Vec<(String, String)> = [
        ("hostaway.base_url", sim.base_url()),
        ("database.url", db_url.to_string()),
        ("server.port", "0".into()),
        ("security.encryption_key", common::ENCRYPTION_KEY.into()),
        ("sync.sync_on_create", "false".into()),
        ("sync.scheduled", "false".into()),
        ("webhooks.username", "bench".into()),
        ("webhooks.password", "bench-webhook-password".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Settings::load_with(LoadOptions {
        config_dir: Some(common::manifest_dir().join("config")),
        environment: Some(Environment::Development),
        env_vars: Some(HashMap::new()),
        overrides,
    })
    .expect("settings")
}

async fn run() -> String {
    let reservations = env_number("BENCH_RESERVATIONS", 800);
    let conversations = env_number("BENCH_CONVERSATIONS", 800);
    let sim = Simulator::start(
        SimConfig {
            accounts: vec![SimAccount {
                account_id: 1001,
                client_secret: "secret".into(),
            }],
            dataset: DatasetSize {
                listings: 20,
                reservations,
                conversations,
                messages_per_conversation: 6,
            },
            rate_limits: SimRateLimits {
                enabled: true,
                per_ip: SimLimit {
                    requests: 15,
                    per_seconds: 10.0,
                },
                per_account: SimLimit {
                    requests: 20,
                    per_seconds: 10.0,
                },
            },
            ..SimConfig::default()
        },
        0,
    )
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let settings = settings(&sim, &db_url);
    let state = sim.state();
    let mut runs = Vec::new();
    let mut webhooks_during: Option<String> = None;

    // 1. The client alone pages every reservation and conversation.
    println!("paging {reservations} reservations and {conversations} conversations");
    let client =
        HostawayClient::new(&settings.hostaway, Arc::new(Metrics::new()), None).expect("client");
    let account = client.account(Credentials {
        account_id: 1001,
        client_secret: SecretString::from("secret".to_string()),
    });
    state.reset_stats();
    let started = Instant::now();
    let fetched = account
        .list_reservations(None)
        .await
        .expect("reservations")
        .len()
        + account
            .list_conversations()
            .await
            .expect("conversations")
            .len();
    let stats = state.stats();
    runs.push(Run {
        name: "page all reservations + conversations (client)",
        calls: stats.total,
        rate_limited: stats.rate_limited,
        wall: started.elapsed(),
    });
    assert_eq!(fetched, reservations + conversations);
    // Let both windows empty before the service starts.
    tokio::time::sleep(Duration::from_secs(11)).await;

    // 2. The service's initial full sync, then a repeat reconciliation.
    let app = Application::build_with(
        settings,
        BuildOptions {
            handle_signals: false,
            listener: None,
        },
    )
    .await
    .expect("service");
    let address = app.address();
    let ctx = app.context();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let response = http
        .post(format!("http://{address}/api/v1/hostaway/accounts"))
        .bearer_auth("dev-admin-token")
        .json(&serde_json::json!({"account_id": 1001, "client_secret": "secret"}))
        .send()
        .await
        .expect("admin API");
    assert_eq!(response.status(), 201);
    for (name, mode) in [
        ("initial full sync (service)", SyncMode::Full),
        ("repeat reconciliation (service)", SyncMode::Incremental),
    ] {
        println!("{name}");
        state.reset_stats();
        let started = Instant::now();
        // During the initial sync, a webhook every 500 ms for the same account.
        let during = (mode == SyncMode::Full).then(|| {
            let (http, db) = (http.clone(), ctx.db.clone());
            let url = format!("http://{address}/api/v1/hostaway/webhooks");
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop = done.clone();
            let task = actix_web::rt::spawn(async move {
                let mut latencies = Vec::new();
                let mut id = 9_000_000i64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    id += 1;
                    let body = serde_json::json!({"object": "reservation", "event": "reservation.updated",
                        "accountId": 1001, "data": {"id": id, "listingMapId": 1, "guestName": "During the sync",
                        "updatedOn": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()}});
                    let sent = Instant::now();
                    let ok = http
                        .post(&url)
                        .basic_auth("bench", Some("bench-webhook-password"))
                        .json(&body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    assert!(ok, "the webhook was acknowledged");
                    loop {
                        use sea_orm::EntityTrait;
                        let found = entities::reservation::Entity::find_by_id((1001, id))
                            .one(&db)
                            .await
                            .ok()
                            .flatten();
                        if found.is_some() || sent.elapsed() > Duration::from_secs(60) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    latencies.push(sent.elapsed());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                latencies
            });
            (done, task)
        });
        let report = ctx
            .actors
            .router
            .send(
                SyncAccount {
                    account_id: 1001,
                    request: SyncRequest {
                        mode,
                        dry_run: false,
                    },
                }
                .traced(),
            )
            .await
            .expect("router")
            .expect("sync");
        let stats = state.stats();
        println!("{report:?}");
        if let Some((done, task)) = during {
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            let mut latencies = task.await.expect("webhook sender");
            latencies.sort();
            let at = |q: f64| {
                latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
            };
            webhooks_during = Some(format!(
                "Webhooks during the initial full sync (one every 500 ms, same account): {} applied, \
                 received→applied p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms.\n",
                latencies.len(),
                at(0.5).as_secs_f64() * 1e3,
                at(0.99).as_secs_f64() * 1e3,
                latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            ));
        }
        runs.push(Run {
            name,
            calls: stats.total,
            rate_limited: stats.rate_limited,
            wall: started.elapsed(),
        });
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    handle.stop(true).await;
    sim.stop().await;

    let mut text = format!(
        "## Sync against the rate limits\n\n{}.\nCommand: `cargo bench --bench sync -- --write-docs`. \
         Simulator: 20 listings, {reservations} reservations, {conversations} conversations × 6 messages, \
         limits on (15 / 10 s per IP, 20 / 10 s per account), tokens usable 1 s after issue. \
         Floor = API calls ÷ 1.5 per second. The client's sliding window may send a first \
         burst of 15 at once, so a run can finish slightly under the floor.\n\n\
         | Run | API calls | wall time | floor | vs floor | 429s |\n|---|---|---|---|---|---|\n",
        common::machine()
    );
    for run in &runs {
        text.push_str(&run.row());
    }
    if let Some(line) = webhooks_during {
        text.push('\n');
        text.push_str(&line);
    }
    text
}

fn main() {
    let system = actix_web::rt::System::new();
    let text = system.block_on(run());
    println!("{text}");
    common::write_section("sync", &text);
}
