//! Cluster benchmark (PostgreSQL only): acknowledged webhooks/s of one
//! replica posted to directly, of the same replica behind HAProxy, and of
//! three cluster replicas behind HAProxy, all in one run on one PostgreSQL
//! server; then the failover time after `kill -9` of one of the three.
//!
//! The two deployments run side by side and their loads take turns
//! (BENCH_ROUNDS rounds, default 2).
//!
//! `cargo bench --bench cluster` (BENCH_SECONDS, BENCH_CLIENTS; needs
//! `haproxy` and BENCH_DATABASE_URL or TEST_DATABASE_URL; `-- --write-docs`
//! records the figures in docs/PERFORMANCE.md).

mod common;

use std::time::{Duration, Instant};

use common::load::{ACCOUNTS, FIRST_ACCOUNT, Load, Target, env_number, load};
use common::{Database, Service};
use sea_orm::ConnectionTrait;
use test_support::{Haproxy, free_port};

const LEASE_SECS: u64 = 10;

fn cluster_env(port: &str, name: &str) -> Vec<(String, String)> {
    [
        ("SYNC_HOSTAWAY__SERVER__PORT", port),
        ("SYNC_HOSTAWAY__CLUSTER__ENABLED", "true"),
        ("SYNC_HOSTAWAY__CLUSTER__REPLICA_ID", name),
        ("SYNC_HOSTAWAY__CLUSTER__LEASE_SECS", "10"),
        ("SYNC_HOSTAWAY__CLUSTER__HEARTBEAT_SECS", "2"),
        // Three replicas share two cores: one HTTP worker and one account
        // thread each (docs/operations.md, sizing).
        ("SYNC_HOSTAWAY__SERVER__WORKERS", "1"),
        ("SYNC_HOSTAWAY__ACTORS__ACCOUNT_ARBITERS", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn start(db: &Database, env: &[(String, String)]) -> Service {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::start_service(db, &env)
}

/// Unexpired leases per owner.
async fn owners(conn: &sea_orm::DatabaseConnection) -> Vec<(String, i64)> {
    let stmt = sea_orm::Statement::from_string(
        conn.get_database_backend(),
        "SELECT owner, count(*) FROM account_leases WHERE expires_at > now() GROUP BY owner ORDER BY owner",
    );
    conn.query_all_raw(stmt)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Some((r.try_get_by_index(0).ok()?, r.try_get_by_index(1).ok()?)))
        .collect()
}

async fn pending(conn: &sea_orm::DatabaseConnection) -> i64 {
    scalar(
        conn,
        "SELECT count(*) FROM webhook_events WHERE status = 'pending'",
    )
    .await
}

/// Transactions committed in the database so far (every schema).
async fn commits(conn: &sea_orm::DatabaseConnection) -> i64 {
    scalar(
        conn,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .await
}

/// The one number `sql` returns (-1 if it fails).
async fn scalar(conn: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    let stmt = sea_orm::Statement::from_string(conn.get_database_backend(), sql);
    conn.query_one_raw(stmt)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get_by_index(0).ok())
        .unwrap_or(-1)
}

async fn wait_ready(http: &reqwest::Client, services: &[&Service]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for service in services {
        loop {
            if let Ok(r) = http.get(service.url("/ready")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "a replica never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Database operations per acknowledged event, by operation, summed over
/// `services` (their `/metrics`), e.g. `inbox_append 0.12`.
async fn db_operations(http: &reqwest::Client, services: &[&Service], acked: u64) -> String {
    // Per operation: (count, seconds) summed over the replicas.
    let mut totals: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for service in services {
        let text = match http.get(service.url("/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        for line in text.lines() {
            let Some((rest, is_count)) = line
                .strip_prefix("sync_hostaway_db_operation_duration_seconds_count{")
                .map(|r| (r, true))
                .or_else(|| {
                    line.strip_prefix("sync_hostaway_db_operation_duration_seconds_sum{")
                        .map(|r| (r, false))
                })
            else {
                continue;
            };
            let operation = rest
                .split("operation=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?");
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let entry = totals.entry(operation.to_string()).or_default();
            if is_count {
                entry.0 += value;
            } else {
                entry.1 += value;
            }
        }
    }
    totals
        .iter()
        .filter(|(_, (n, _))| *n > 0.0)
        .map(|(op, (n, secs))| {
            format!(
                "{op} {:.2} ({:.2} ms each)",
                n / acked.max(1) as f64,
                secs * 1000.0 / n
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn rate(load: &Load) -> f64 {
    load.acked as f64 / load.elapsed.as_secs_f64()
}

fn row(what: &str, (load, transactions): &(Load, f64)) -> String {
    format!(
        "| {what} | {:.0} | {} / {} ms | {} | {transactions:.3} | {} |\n",
        rate(load),
        common::ms(load.latency_us.value_at_quantile(0.5)),
        common::ms(load.latency_us.value_at_quantile(0.99)),
        load.errors,
        load.cpu_per_event
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let text = runtime.block_on(async {
        sync_hostaway::install_tls_provider();
        let seconds = env_number("BENCH_SECONDS", 15);
        let clients = env_number("BENCH_CLIENTS", 64) as usize;
        let http = reqwest::Client::new();
        let accounts = FIRST_ACCOUNT..FIRST_ACCOUNT + ACCOUNTS;
        let duration = Duration::from_secs(seconds);

        // Both deployments stay up side by side, each on its own schema, and
        // their loads take turns (BENCH_ROUNDS rounds, the order reversed
        // every other round): the machine's speed drifts by more than the
        // difference being measured, so only figures taken in turns compare.
        let rounds = env_number("BENCH_ROUNDS", 2).max(1);
        // One replica, as the service runs without cluster mode.
        let single_db = Database::postgres().expect("BENCH_DATABASE_URL or TEST_DATABASE_URL");
        let single = common::start_service(&single_db, &[]);
        common::create_accounts(&http, &single, accounts.clone()).await;
        let proxied = Haproxy::start(&[single
            .address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")]);
        wait_ready(&http, &[&single]).await;

        // Three cluster replicas on a fresh schema.
        let db = Database::postgres().expect("database");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut replicas: Vec<Option<Service>> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                Some(start(
                    &db,
                    &cluster_env(&port.to_string(), &format!("r{}", i + 1)),
                ))
            })
            .collect();
        let proxy = Haproxy::start(&ports);
        common::create_accounts(&http, replicas[0].as_ref().expect("r1"), accounts.clone()).await;
        let conn = db.connect().await;
        let single_conn = single_db.connect().await;
        let settled = Instant::now();
        loop {
            let held: i64 = owners(&conn).await.iter().map(|(_, n)| n).sum();
            if held == ACCOUNTS && owners(&conn).await.len() == 3 {
                break;
            }
            assert!(
                settled.elapsed() < Duration::from_secs(60),
                "leases never settled"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refs: Vec<&Service> = replicas.iter().flatten().collect();
        wait_ready(&http, &refs).await;
        let shares = owners(&conn).await;
        let direct_target = Target::of(&single);
        let behind_target = Target {
            url: proxied.url("/api/v1/hostaway/webhooks"),
            pids: vec![single.pid()],
        };
        let target = Target {
            url: proxy.url("/api/v1/hostaway/webhooks"),
            pids: refs.iter().map(|s| s.pid()).collect(),
        };
        println!("warm-up");
        load(&direct_target, clients, Duration::from_secs(2), None, 1).await;
        load(&target, clients, Duration::from_secs(2), None, 2_000_000).await;

        let setups = [&direct_target, &behind_target, &target];
        let labels = [
            "1 replica, direct",
            "1 replica behind HAProxy",
            "3 replicas (cluster mode) behind HAProxy",
        ];
        let mut runs: [Vec<(Load, f64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut first_id = 10_000_000;
        for round in 0..rounds {
            let mut order = [0, 1, 2];
            if round % 2 == 1 {
                order.reverse();
            }
            for setup in order {
                println!("round {}: {} for {seconds} s", round + 1, labels[setup]);
                let commits_before = commits(&conn).await;
                let run = load(setups[setup], clients, duration, None, first_id).await;
                first_id += 10_000_000;
                // The next load starts with nothing left to apply.
                let drained = Instant::now();
                while pending(&conn).await > 0 || pending(&single_conn).await > 0 {
                    assert!(
                        drained.elapsed() < Duration::from_secs(120),
                        "the backlog was not applied within 120 s"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // The server's statistics reach the view within a second.
                tokio::time::sleep(Duration::from_millis(1100)).await;
                let transactions =
                    (commits(&conn).await - commits_before) as f64 / run.acked.max(1) as f64;
                println!(
                    "  {:.0}/s; PostgreSQL transactions per event {transactions:.3}; CPU per event: {}",
                    rate(&run),
                    run.cpu_per_event
                );
                runs[setup].push((run, transactions));
            }
        }
        let acked = |setup: usize| runs[setup].iter().map(|(l, _)| l.acked).sum::<u64>();
        let single_ops = db_operations(&http, &[&single], acked(0) + acked(1)).await;
        let three_ops = db_operations(&http, &refs, acked(2)).await;
        println!("database operations per event: one replica {single_ops}; three {three_ops}");
        drop(proxied);
        drop(single);
        single_db.cleanup().await;

        // Failover: kill -9 one replica under a steady 300/s.
        println!("failover: kill -9 of r2 under 300 events/s");
        let steady = tokio::spawn({
            let target = Target {
                url: target.url.clone(),
                pids: Vec::new(),
            };
            async move { load(&target, 16, Duration::from_secs(LEASE_SECS + 12), Some(300), 40_000_000).await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let killed = Instant::now();
        if let Some(mut r2) = replicas[1].take() {
            r2.kill();
        }
        let taken_over = loop {
            let owners = owners(&conn).await;
            if owners.iter().all(|(o, _)| o != "r2")
                && owners.iter().map(|(_, n)| n).sum::<i64>() == ACCOUNTS
            {
                break killed.elapsed();
            }
            assert!(killed.elapsed() < Duration::from_secs(60), "no takeover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Everything stored until the takeover (the dead replica's backlog
        // included) applied, while the load goes on.
        let taken_at = chrono::Utc::now();
        loop {
            let stmt = sea_orm::Statement::from_sql_and_values(
                conn.get_database_backend(),
                "SELECT count(*) FROM webhook_events WHERE status = 'pending' AND received_at < $1",
                [taken_at.into()],
            );
            let left: i64 = conn
                .query_one_raw(stmt)
                .await
                .ok()
                .flatten()
                .and_then(|r| r.try_get_by_index(0).ok())
                .unwrap_or(-1);
            if left == 0 || killed.elapsed() > Duration::from_secs(120) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caught_up = killed.elapsed();
        let steady = steady.await.expect("steady load");
        while pending(&conn).await > 0 && killed.elapsed() < Duration::from_secs(180) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(proxy);
        drop(replicas);
        db.cleanup().await;

        let mean = |setup: usize| {
            runs[setup].iter().map(|(l, _)| rate(l)).sum::<f64>() / runs[setup].len() as f64
        };
        let ratio = mean(2) / mean(0);
        let ratio_proxied = mean(2) / mean(1);
        let mut table = String::new();
        for (setup, label) in labels.iter().enumerate() {
            for (round, run) in runs[setup].iter().enumerate() {
                table.push_str(&row(&format!("{label}, round {}", round + 1), run));
            }
        }
        format!(
            "## Several replicas\n\n{}.\nCommand: `cargo bench --bench cluster -- --write-docs` (PostgreSQL, \
             HAProxy {}). {clients} keep-alive clients, distinct `reservation.updated` events over \
             {ACCOUNTS} accounts, {seconds} s each; the one-replica deployment and the three-replica \
             cluster run side by side on one PostgreSQL server (each on its own schema) and their \
             loads take turns, {rounds} rounds, the order reversed every other round; the \
             load generator, HAProxy, every replica and PostgreSQL share the machine's cores (the \
             three replicas run with `server.workers = 1` and `actors.account_arbiters = 1` each).\n\n\
             | Setup | acked/s | ack p50 / p99 | errors | PostgreSQL transactions per event | CPU per event |\n\
             |---|---|---|---|---|---|\n{table}\n\
             PostgreSQL transactions per event: the server's commits (`pg_stat_database`) from the \
             start of a load until its backlog was applied, over the events acknowledged. CPU per \
             event: user and system time of each kind of process over the load (`/proc`), over \
             the events acknowledged (each core gives 1,000,000 µs per second).\n\n\
             Three replicas deliver **{ratio:.2} ×** the single replica's acknowledged rate posted to \
             directly, **{ratio_proxied:.2} ×** the single replica behind the same HAProxy \
             (means over the rounds: {:.0}, {:.0} and {:.0}/s; leases per replica after settling: \
             {shares:?}).\n\n\
             Database operations per acknowledged event (from `/metrics`, over all rounds): one replica \
             {single_ops}; three replicas {three_ops}.\n\n\
             Failover (`lease_secs` = {LEASE_SECS}, `heartbeat_secs` = 2), one of three replicas \
             killed with SIGKILL under a steady 300 events/s: its accounts were held by the others \
             {:.1} s later, and everything stored until then (its backlog included) was applied \
             {:.1} s after the kill; \
             the sender saw {} errors of {} (HAProxy retried on the live replicas).\n",
            common::machine(),
            haproxy_version(),
            mean(0),
            mean(1),
            mean(2),
            taken_over.as_secs_f64(),
            caught_up.as_secs_f64(),
            steady.errors,
            steady.acked + steady.errors,
        )
    });
    println!("{text}");
    common::write_section("cluster", &text);
}

fn haproxy_version() -> String {
    std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}
