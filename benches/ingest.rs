//! Webhook ingest benchmark: keep-alive clients post distinct
//! `reservation.updated` events spread over 500 accounts to the release
//! binary, on PostgreSQL (when BENCH_DATABASE_URL or TEST_DATABASE_URL is set)
//! and SQLite. Then a steady 1,000 events/s run for received→applied latency.
//!
//! `cargo bench --bench ingest` (BENCH_SECONDS, BENCH_CLIENTS to change the run;
//! BENCH_RSS_DETAIL=1 prints anonymous/file RSS at each new peak; `-- --write-docs`
//! records the figures in docs/PERFORMANCE.md). With `BENCH_BASELINE_BIN` (another
//! build of the binary) and `BENCH_BASELINE_CONFIG` (its config directory), each
//! backend runs the baseline and this build, and the ratios are printed;
//! `BENCH_ROUNDS=N` repeats that N times, alternating which goes first, and
//! `BENCH_BACKENDS=postgres` (or `sqlite`) runs one backend only.
//!
//! `BENCH_LOAD=wrk` is the external-load mode: `wrk` (a separate process)
//! drives the service at 1, 16 and 64 connections, and on PostgreSQL
//! `pgbench` measures the single-row upsert ceiling of the same database in
//! the same run (1 and 16 clients); the ratios to it are printed (section
//! `ingest-external` of docs/PERFORMANCE.md). A `BENCH_BASELINE_BIN` runs
//! there too, before this build, against the same ceiling. `BENCH_PROFILE=PREFIX`
//! records a system-wide `perf` profile of each 64-connection run and writes
//! its flame graph to `PREFIX-<backend>.svg` (see `common::external::Profile`).

mod common;

use std::time::{Duration, Instant};

use common::Database;
use common::load::{ACCOUNTS, FIRST_ACCOUNT, Load, Target, env_number, load};
use sea_orm::ConnectionTrait;

/// Waits until no inbox row is pending, then returns received→applied
/// latencies (ms) of rows for reservation ids in `ids`.
async fn applied_latencies(
    db: &sea_orm::DatabaseConnection,
    ids: std::ops::Range<i64>,
) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stmt = sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM webhook_events WHERE status = 'pending'",
        );
        let pending: i64 = db
            .query_one_raw(stmt)
            .await
            .ok()
            .flatten()
            .and_then(|r| r.try_get_by_index(0).ok())
            .unwrap_or(1);
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stmt = sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT received_at, processed_at, payload FROM webhook_events WHERE status = 'processed'",
    );
    let mut out = Vec::new();
    for row in db.query_all_raw(stmt).await.expect("inbox rows") {
        let received: chrono::DateTime<chrono::Utc> = row.try_get_by_index(0).expect("received_at");
        let processed: chrono::DateTime<chrono::Utc> =
            row.try_get_by_index(1).expect("processed_at");
        let payload: serde_json::Value = row.try_get_by_index(2).expect("payload");
        let id = payload["data"]["id"].as_i64().unwrap_or(-1);
        if ids.contains(&id) {
            out.push((processed - received).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn count_reservations(db: &sea_orm::DatabaseConnection, ids: std::ops::Range<i64>) -> i64 {
    let stmt = sea_orm::Statement::from_string(
        db.get_database_backend(),
        format!(
            "SELECT COUNT(*) FROM reservations WHERE id >= {} AND id < {}",
            ids.start, ids.end
        ),
    );
    db.query_one_raw(stmt)
        .await
        .expect("count")
        .and_then(|r| r.try_get_by_index(0).ok())
        .unwrap_or(0)
}

struct Figures {
    backend: String,
    burst: Load,
    burst_applied: Vec<f64>,
    burst_rows: i64,
    steady: Load,
    steady_applied: Vec<f64>,
}

/// The suffix of a baseline build's rows.
const BASELINE_LABEL: &str = " (baseline)";

/// The mean of `metric` over `runs`.
fn mean(runs: &[&Figures], metric: &dyn Fn(&Figures) -> f64) -> f64 {
    runs.iter().map(|f| metric(f)).sum::<f64>() / runs.len() as f64
}

/// The binary under test: this build, or a baseline build to compare with
/// (`BENCH_BASELINE_BIN`, with its own config directory
/// `BENCH_BASELINE_CONFIG`, and `BENCH_BASELINE_SQLITE_ENV=KEY=VALUE,...`
/// for settings it needs on SQLite only).
struct Build {
    label: &'static str,
    bin: std::path::PathBuf,
    config: std::path::PathBuf,
    sqlite_env: Vec<(String, String)>,
}

impl Build {
    fn this() -> Build {
        Build {
            label: "",
            bin: env!("CARGO_BIN_EXE_sync-hostaway").into(),
            config: common::manifest_dir().join("config"),
            sqlite_env: Vec::new(),
        }
    }

    /// The settings this build runs with on `db`.
    fn env(&self, db: &Database) -> Vec<(&str, &str)> {
        match db {
            Database::Sqlite { .. } => self
                .sqlite_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            Database::Postgres { .. } => Vec::new(),
        }
    }

    fn baseline() -> Option<Build> {
        let bin = std::env::var("BENCH_BASELINE_BIN").ok()?;
        let config = std::env::var("BENCH_BASELINE_CONFIG")
            .expect("BENCH_BASELINE_CONFIG: the baseline's own config directory");
        let sqlite_env = std::env::var("BENCH_BASELINE_SQLITE_ENV")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Build {
            label: BASELINE_LABEL,
            bin: bin.into(),
            config: config.into(),
            sqlite_env,
        })
    }
}

async fn run_backend(db: &Database, build: &Build, clients: usize, seconds: u64) -> Figures {
    println!("== {}{}: starting the service", db.name(), build.label);
    let env = build.env(db);
    let mut service = common::start_service_with(&build.bin, &build.config, db, &env);
    let http = reqwest::Client::new();
    common::create_accounts(&http, &service, FIRST_ACCOUNT..FIRST_ACCOUNT + ACCOUNTS).await;
    let conn = db.connect().await;

    println!("warm-up");
    load(
        &Target::of(&service),
        clients,
        Duration::from_secs(2),
        None,
        1,
    )
    .await;
    applied_latencies(&conn, 0..0).await;

    println!("{clients} clients for {seconds} s");
    let burst_ids = 10_000_000..20_000_000;
    let burst = load(
        &Target::of(&service),
        clients,
        Duration::from_secs(seconds),
        None,
        burst_ids.start,
    )
    .await;
    let burst_applied = applied_latencies(&conn, burst_ids.clone()).await;
    let burst_rows = count_reservations(&conn, burst_ids).await;

    println!("steady 1,000 events/s for 10 s");
    let steady_ids = 30_000_000..40_000_000;
    let steady = load(
        &Target::of(&service),
        16,
        Duration::from_secs(10),
        Some(1_000),
        steady_ids.start,
    )
    .await;
    let steady_applied = applied_latencies(&conn, steady_ids).await;
    let metrics = http
        .get(service.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    for line in metrics.lines().filter(|l| {
        (l.contains("db_operation_duration_seconds_sum")
            || l.contains("db_operation_duration_seconds_count")
            || l.contains("group_commit_batch_size_sum")
            || l.contains("group_commit_batch_size_count"))
            && !l.starts_with('#')
    }) {
        println!("  {line}");
    }
    service.terminate();
    Figures {
        backend: format!("{}{}", db.name(), build.label),
        burst,
        burst_applied,
        burst_rows,
        steady,
        steady_applied,
    }
}

fn main() {
    let clients = env_number("BENCH_CLIENTS", 64) as usize;
    let seconds = env_number("BENCH_SECONDS", 20);
    if std::env::var("BENCH_LOAD").is_ok_and(|v| v == "wrk") {
        return external_main(seconds);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let figures: Vec<Figures> = runtime.block_on(async {
        sync_hostaway::install_tls_provider();
        let mut all = Vec::new();
        let baseline = Build::baseline();
        let this = Build::this();
        let backends = std::env::var("BENCH_BACKENDS").unwrap_or("postgres,sqlite".into());
        let rounds = env_number("BENCH_ROUNDS", 1).max(1);
        for name in backends.split(',').map(str::trim) {
            let backend: fn() -> Option<Database> = match name {
                "postgres" => Database::postgres,
                "sqlite" => || Some(Database::sqlite()),
                other => panic!("BENCH_BACKENDS: unknown backend `{other}`"),
            };
            // Each build on a fresh database; with a baseline, the order
            // alternates by round (baseline first, then this build first) so
            // that neither always runs on a warmer machine.
            for round in 0..rounds {
                let mut builds: Vec<&Build> = baseline.iter().chain([&this]).collect();
                if round % 2 == 1 {
                    builds.reverse();
                }
                for build in builds {
                    let Some(db) = backend() else { continue };
                    all.push(run_backend(&db, build, clients, seconds).await);
                    db.cleanup().await;
                }
            }
        }
        all
    });

    let mut text = format!(
        "## Webhook ingest\n\n{}.\nCommand: `cargo bench --bench ingest -- --write-docs` (PostgreSQL half with \
         `BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test`). The release binary runs as a \
         child process with production settings; the load generator shares the machine.\n\n\
         {clients} keep-alive clients, distinct `reservation.updated` events over {ACCOUNTS} accounts, {seconds} s:\n\n\
         | Backend | acked/s | ack p50 ms | ack p99 ms | ack p99.9 ms | errors | received→applied p50 ms | p99 ms | rows = acked | peak RSS MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        common::machine()
    );
    for f in &figures {
        let b = &f.burst;
        text.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} | {} ({} rows, {} acked) | {:.1} |\n",
            f.backend,
            b.acked as f64 / b.elapsed.as_secs_f64(),
            common::ms(b.latency_us.value_at_quantile(0.5)),
            common::ms(b.latency_us.value_at_quantile(0.99)),
            common::ms(b.latency_us.value_at_quantile(0.999)),
            b.errors,
            percentile(&f.burst_applied, 0.5),
            percentile(&f.burst_applied, 0.99),
            if f.burst_rows as u64 == b.acked {
                "yes"
            } else {
                "NO"
            },
            f.burst_rows,
            b.acked,
            b.peak_rss_mib,
        ));
    }
    text.push_str(
        "\nSteady 1,000 events/s (16 clients, paced), 10 s:\n\n\
         | Backend | achieved/s | ack p99 ms | received→applied p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|\n",
    );
    for f in &figures {
        let s = &f.steady;
        text.push_str(&format!(
            "| {} | {:.0} | {} | {:.1} | {:.1} | {} |\n",
            f.backend,
            s.acked as f64 / s.elapsed.as_secs_f64(),
            common::ms(s.latency_us.value_at_quantile(0.99)),
            percentile(&f.steady_applied, 0.5),
            percentile(&f.steady_applied, 0.99),
            s.errors,
        ));
    }
    let compared = figures.iter().any(|f| f.backend.ends_with(BASELINE_LABEL));
    if compared {
        text.push_str(
            "\nThis build against the baseline, same run (ratio this / baseline, \
             each the mean over its runs):\n\n\
             | Backend | runs each | acked/s | ack p99 | received→applied p99 |\n|---|---|---|---|---|\n",
        );
        let rate = |f: &Figures| f.burst.acked as f64 / f.burst.elapsed.as_secs_f64();
        let p99 = |f: &Figures| f.burst.latency_us.value_at_quantile(0.99) as f64;
        let applied = |f: &Figures| percentile(&f.burst_applied, 0.99);
        let mut names: Vec<&str> = Vec::new();
        for f in &figures {
            if !names.contains(&f.backend.as_str()) {
                names.push(&f.backend);
            }
        }
        for name in names.iter().filter(|n| !n.ends_with(BASELINE_LABEL)) {
            let base_name = format!("{name}{BASELINE_LABEL}");
            let runs = |label: &str| -> Vec<&Figures> {
                figures.iter().filter(|f| f.backend == label).collect()
            };
            let (this, base) = (runs(name), runs(&base_name));
            if base.is_empty() {
                continue;
            }
            let ratio =
                |metric: &dyn Fn(&Figures) -> f64| mean(&this, metric) / mean(&base, metric);
            text.push_str(&format!(
                "| {name} | {} | {:.3} | {:.3} | {:.3} |\n",
                this.len().min(base.len()),
                ratio(&rate),
                ratio(&p99),
                ratio(&applied),
            ));
        }
    }
    println!("{text}");
    common::write_section(
        if compared {
            "ingest-baseline"
        } else {
            "ingest"
        },
        &text,
    );
}

/// One backend under `wrk`, and PostgreSQL's own ceiling beside it.
struct External {
    backend: String,
    /// With `BENCH_PROFILE`: CPU samples by program during the 64-connection run.
    shares: Vec<(String, f64)>,
    runs: Vec<common::external::Wrk>,
    /// received→applied p99 (ms) of the 64-connection run.
    applied_p99_ms: f64,
    /// pgbench single-row upserts/s at 1 and 16 clients (PostgreSQL).
    ceiling: Option<(f64, f64)>,
}

fn external_main(seconds: u64) {
    for tool in ["wrk", "pgbench", "psql"] {
        assert!(
            common::external::have(tool),
            "BENCH_LOAD=wrk needs {tool} (apt-get install -y wrk postgresql-client)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results: Vec<External> = runtime.block_on(async {
        sync_hostaway::install_tls_provider();
        let mut all = Vec::new();
        let baseline = Build::baseline();
        let this = Build::this();
        let backends = std::env::var("BENCH_BACKENDS").unwrap_or("postgres,sqlite".into());
        for name in backends.split(',').map(str::trim) {
            let backend: fn() -> Option<Database> = match name {
                "postgres" => Database::postgres,
                "sqlite" => || Some(Database::sqlite()),
                other => panic!("BENCH_BACKENDS: unknown backend `{other}`"),
            };
            // The ceiling once per backend, then each build on a fresh
            // database (a baseline first), all in the same run.
            let mut ceiling = None;
            for build in baseline.iter().chain([&this]) {
                let Some(db) = backend() else { continue };
                if let (None, Database::Postgres { url, .. }) = (ceiling, &db) {
                    println!("== {}: pgbench ceiling", db.name());
                    ceiling = Some((
                        common::external::pgbench_upserts(url, 1, seconds),
                        common::external::pgbench_upserts(url, 16, seconds),
                    ));
                }
                all.push(external_backend(&db, build, seconds, ceiling).await);
                db.cleanup().await;
            }
        }
        all
    });
    let mut text = format!(
        "## Webhook ingest under external load\n\n{}.\nCommand: `BENCH_LOAD=wrk \
         BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench ingest -- \
         --write-docs`. `wrk` (2 threads, keep-alive) posts distinct `reservation.updated` events \
         of ~1.9 KB over {ACCOUNTS} accounts to the release binary (production settings); \
         `pgbench` commits the single-row upsert of a document of the same size, one row per \
         transaction, on the same PostgreSQL in the same run; {seconds} s each.\n\n\
         | Backend | connections | acked/s | ack p50 ms | p99 ms | p99.9 ms | errors | vs pgbench 16 clients |\n\
         |---|---|---|---|---|---|---|---|\n",
        common::machine()
    );
    for r in &results {
        for w in &r.runs {
            let ratio = r
                .ceiling
                .map(|(_, c16)| format!("{:.2}×", w.rate / c16))
                .unwrap_or_else(|| "-".into());
            text.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} of {} | {ratio} |\n",
                r.backend,
                w.connections,
                w.rate,
                w.p50_ms,
                w.p99_ms,
                w.p999_ms,
                w.errors,
                w.requests
            ));
        }
    }
    text.push_str("\n| Backend | received→applied p99 at 64 connections ms | pgbench upserts/s, 1 client | 16 clients |\n|---|---|---|---|\n");
    for r in &results {
        let (c1, c16) = r
            .ceiling
            .map(|(a, b)| (format!("{a:.0}"), format!("{b:.0}")))
            .unwrap_or(("-".into(), "-".into()));
        text.push_str(&format!(
            "| {} | {:.1} | {c1} | {c16} |\n",
            r.backend, r.applied_p99_ms
        ));
    }
    for r in results.iter().filter(|r| !r.shares.is_empty()) {
        text.push_str(&format!(
            "\nCPU samples during the 64-connection run, {}: {}.\n",
            r.backend,
            format_shares(&r.shares)
        ));
    }
    println!("{text}");
    common::write_section("ingest-external", &text);
}

/// `program 41 %, ...` (the five largest).
fn format_shares(shares: &[(String, f64)]) -> String {
    shares
        .iter()
        .take(5)
        .map(|(program, share)| format!("{program} {:.0} %", share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn external_backend(
    db: &Database,
    build: &Build,
    seconds: u64,
    ceiling: Option<(f64, f64)>,
) -> External {
    println!("== {}{}: the service under wrk", db.name(), build.label);
    let env = build.env(db);
    let mut service = common::start_service_with(&build.bin, &build.config, db, &env);
    let http = reqwest::Client::new();
    common::create_accounts(&http, &service, FIRST_ACCOUNT..FIRST_ACCOUNT + ACCOUNTS).await;
    let conn = db.connect().await;
    let url = service.url("/api/v1/hostaway/webhooks");
    common::external::wrk(&url, 16, 2, 1);
    applied_latencies(&conn, 0..0).await;
    let mut runs = Vec::new();
    let mut applied_p99_ms = f64::NAN;
    let mut shares = Vec::new();
    for (i, connections) in [1usize, 16, 64].into_iter().enumerate() {
        let first = 100_000_000 * (i as i64 + 1);
        println!("wrk: {connections} connections for {seconds} s");
        let profile = (connections == 64)
            .then(|| {
                let name = format!("{}{}", db.name(), build.label.replace([' ', '(', ')'], ""));
                common::external::Profile::start(seconds.saturating_sub(1).max(1), &name)
            })
            .flatten();
        runs.push(common::external::wrk(&url, connections, seconds, first));
        if let Some(profile) = profile {
            let title = format!("ingest, {}{}, 64 connections", db.name(), build.label);
            shares = profile.finish(&title);
            println!("  samples by program: {}", format_shares(&shares));
        }
        let applied = applied_latencies(&conn, first..first + 100_000_000).await;
        if connections == 64 {
            applied_p99_ms = percentile(&applied, 0.99);
        }
    }
    service.terminate();
    External {
        backend: format!("{}{}", db.name(), build.label),
        runs,
        shares,
        applied_p99_ms,
        ceiling,
    }
}
