//! Memory and scale: resident memory of the release binary idle with no
//! accounts and with 1,000 active accounts (every AccountActor started), and
//! the time from process start to `/ready` with those 1,000 accounts.
//! (Memory under load is measured by the ingest benchmark.)
//!
//! `cargo bench --bench scale` (PostgreSQL when BENCH_DATABASE_URL or
//! TEST_DATABASE_URL is set, else SQLite)

mod common;

use std::time::{Duration, Instant};

use common::{Database, Service};

const ACCOUNTS: i64 = 1_000;

async fn ready_after(service: &Service, http: &reqwest::Client, since: Instant) -> Duration {
    loop {
        if let Ok(response) = http.get(service.url("/ready")).send().await
            && response.status() == 200
        {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn actors(service: &Service, http: &reqwest::Client) -> i64 {
    let text = http
        .get(service.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("sync_hostaway_accounts_active "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let text = runtime.block_on(async {
        sync_hostaway::install_tls_provider();
        let db = Database::postgres().unwrap_or_else(Database::sqlite);
        let http = reqwest::Client::new();

        let mut empty = common::start_service(&db, &[]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_empty = empty.rss_mib();
        println!("creating {ACCOUNTS} accounts");
        common::create_accounts(&http, &empty, 1..=ACCOUNTS).await;
        empty.terminate();

        let clock = Instant::now();
        let mut service = common::start_service(&db, &[]);
        let ready = ready_after(&service, &http, clock).await;
        let running = actors(&service, &http).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_full = service.rss_mib();
        service.terminate();
        db.cleanup().await;

        format!(
            "## Memory and start-up\n\n{}.\nCommand: `cargo bench --bench scale -- --write-docs` ({}). \
             Release binary, production settings, no load.\n\n\
             | Figure | Value |\n|---|---|\n\
             | RSS idle, no accounts | {idle_empty:.1} MiB |\n\
             | RSS idle, {ACCOUNTS} active accounts ({running} AccountActors running) | {idle_full:.1} MiB |\n\
             | start to `/ready` with {ACCOUNTS} accounts | {} ms |\n",
            common::machine(),
            db.name(),
            ready.as_millis()
        )
    });
    println!("{text}");
    common::write_section("scale", &text);
}
