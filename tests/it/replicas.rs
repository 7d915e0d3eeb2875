//! Cluster mode as processes (issue 5/7): several replicas of the release
//! binary share one PostgreSQL schema, HAProxy in front where the test needs
//! a load balancer. Each test prints a one-line figure.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};
use test_support::{Haproxy, ServiceProcess, free_port};

use crate::helpers::{
    Backend, TestDb, fixture, http_client, mirror_diff_on, sim_config, start_sim, wait_for,
};
use crate::process::start_binary;

const LEASE_SECS: u64 = 5;
const HEARTBEAT_SECS: u64 = 1;
const ADMIN_TOKEN: &str = "test-admin-token";

/// The release build of the service (`.ci/test` builds it first).
fn release_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SYNC_HOSTAWAY_RELEASE_BIN") {
        return path.into();
    }
    let debug = PathBuf::from(env!("CARGO_BIN_EXE_sync-hostaway"));
    let path = debug
        .parent()
        .and_then(|dir| dir.parent())
        .map(|target| target.join("release").join("sync-hostaway"))
        .expect("target directory");
    assert!(
        path.exists(),
        "the cluster tests run the release binary: build it first \
         (cargo build --release --bin sync-hostaway, as .ci/test does) or set \
         SYNC_HOSTAWAY_RELEASE_BIN; looked for {}",
        path.display()
    );
    path
}

/// One fleet at a time: several at once on two cores would measure the
/// machine, not the service.
static ONE_FLEET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Replicas of the service on one database and one simulator.
struct Fleet {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    db: TestDb,
    conn: DatabaseConnection,
    sim: hostaway_sim::Simulator,
    ports: Vec<u16>,
    replicas: Vec<Option<ServiceProcess>>,
    haproxy: Option<Haproxy>,
    extra: Vec<(String, String)>,
    http: reqwest::Client,
}

struct FleetOptions<'a> {
    accounts: &'a [i64],
    replicas: usize,
    dataset: hostaway_sim::DatasetSize,
    haproxy: bool,
    env: &'a [(&'a str, &'a str)],
}

fn small_dataset() -> hostaway_sim::DatasetSize {
    hostaway_sim::DatasetSize {
        listings: 2,
        reservations: 4,
        conversations: 1,
        messages_per_conversation: 2,
    }
}

impl Fleet {
    async fn start(options: FleetOptions<'_>) -> Fleet {
        let turn = ONE_FLEET.lock().await;
        let mut config = sim_config(options.dataset);
        config.accounts = options
            .accounts
            .iter()
            .map(|&account_id| hostaway_sim::SimAccount {
                account_id,
                client_secret: "secret".into(),
            })
            .collect();
        let sim = start_sim(config).await;
        let db = TestDb::new(Backend::Postgres);
        let conn = db.connect().await;
        let ports: Vec<u16> = (0..options.replicas).map(|_| free_port()).collect();
        let haproxy = options.haproxy.then(|| Haproxy::start(&ports));
        let public = haproxy
            .as_ref()
            .map_or("http://127.0.0.1:9".to_string(), |h| h.url(""));
        let mut extra: Vec<(String, String)> = vec![
            ("SYNC_HOSTAWAY__CLUSTER__ENABLED".into(), "true".into()),
            (
                "SYNC_HOSTAWAY__CLUSTER__LEASE_SECS".into(),
                LEASE_SECS.to_string(),
            ),
            (
                "SYNC_HOSTAWAY__CLUSTER__HEARTBEAT_SECS".into(),
                HEARTBEAT_SECS.to_string(),
            ),
            ("SYNC_HOSTAWAY__HOSTAWAY__BASE_URL".into(), sim.base_url()),
            ("SYNC_HOSTAWAY__WEBHOOKS__PUBLIC_BASE_URL".into(), public),
            ("SYNC_HOSTAWAY__SYNC__SCHEDULED".into(), "false".into()),
            (
                "SYNC_HOSTAWAY__DATABASE__MAX_CONNECTIONS".into(),
                "8".into(),
            ),
            (
                "SYNC_HOSTAWAY__ACTORS__SHUTDOWN_TIMEOUT_SECS".into(),
                "5".into(),
            ),
        ];
        extra.extend(
            options
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut fleet = Fleet {
            _turn: turn,
            db,
            conn,
            sim,
            ports,
            replicas: (0..options.replicas).map(|_| None).collect(),
            haproxy,
            extra,
            http: http_client(),
        };
        for i in 0..options.replicas {
            fleet.launch(i);
        }
        fleet
    }

    fn name(i: usize) -> String {
        format!("r{}", i + 1)
    }

    /// Starts replica `i` (again) on its port.
    fn launch(&mut self, i: usize) {
        self.launch_with(i, &[]);
    }

    fn launch_with(&mut self, i: usize, env: &[(&str, &str)]) {
        let port = self.ports[i].to_string();
        let name = Fleet::name(i);
        let mut all: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.push(("SYNC_HOSTAWAY__SERVER__PORT", &port));
        all.push(("SYNC_HOSTAWAY__CLUSTER__REPLICA_ID", &name));
        all.extend_from_slice(env);
        self.replicas[i] = Some(start_binary(&release_binary(), &self.db, &all));
    }

    fn replica(&self, i: usize) -> &ServiceProcess {
        self.replicas[i].as_ref().expect("replica running")
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[i])
    }

    async fn wait_ready(&self, i: usize) {
        let url = self.url(i, "/ready");
        let http = self.http.clone();
        wait_for(
            &format!("replica {} ready", Fleet::name(i)),
            Duration::from_secs(30),
            || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let ok = http.get(&url).send().await.is_ok_and(|r| r.status() == 200);
                    ok.then_some(())
                }
            },
        )
        .await;
    }

    /// Adds accounts through replica `via` (any replica's admin API).
    async fn add_accounts(&self, via: usize, ids: &[i64]) {
        for id in ids {
            let response = self
                .http
                .post(self.url(via, "/api/v1/hostaway/accounts"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"account_id": id, "client_secret": "secret"}))
                .send()
                .await
                .expect("admin API answers");
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        }
    }

    /// Unexpired leases: account → (owner, epoch).
    async fn leases(&self) -> BTreeMap<i64, (String, i64)> {
        let rows = self
            .conn
            .query_all_raw(Statement::from_string(
                self.conn.get_database_backend(),
                "SELECT account_id, owner, epoch FROM account_leases WHERE expires_at > now()",
            ))
            .await
            .expect("leases");
        rows.iter()
            .map(|r| {
                (
                    r.try_get_by_index::<i64>(0).unwrap(),
                    (
                        r.try_get_by_index::<String>(1).unwrap(),
                        r.try_get_by_index::<i64>(2).unwrap(),
                    ),
                )
            })
            .collect()
    }

    /// Accounts per owner.
    async fn shares(&self) -> BTreeMap<String, usize> {
        let mut shares = BTreeMap::new();
        for (owner, _) in self.leases().await.values() {
            *shares.entry(owner.clone()).or_default() += 1;
        }
        shares
    }

    /// Waits until every account in `ids` is held by one of `owners`, each
    /// of which holds at least `min_each`; returns how long it took.
    async fn wait_owned(&self, ids: &[i64], owners: &[String], min_each: usize) -> Duration {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        loop {
            let leases = self.leases().await;
            let all_held = ids.iter().all(|id| {
                leases
                    .get(id)
                    .is_some_and(|(owner, _)| owners.contains(owner))
            });
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for (owner, _) in leases.values() {
                *counts.entry(owner.as_str()).or_default() += 1;
            }
            let even = owners
                .iter()
                .all(|o| counts.get(o.as_str()).copied().unwrap_or(0) >= min_each);
            if all_held && even {
                return start.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "accounts not owned by {owners:?} (at least {min_each} each) in time: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Inbox counts: (stored, pending, failed, attempted at least once).
    async fn inbox(&self) -> (i64, i64, i64, i64) {
        let row = self
            .conn
            .query_one_raw(Statement::from_string(
                self.conn.get_database_backend(),
                "SELECT count(*), count(*) FILTER (WHERE status = 'pending'), \
                 count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE attempts > 0) \
                 FROM webhook_events",
            ))
            .await
            .expect("inbox counts")
            .expect("one row");
        (
            row.try_get_by_index(0).unwrap(),
            row.try_get_by_index(1).unwrap(),
            row.try_get_by_index(2).unwrap(),
            row.try_get_by_index(3).unwrap(),
        )
    }

    /// Waits until no inbox row is pending; returns how long it took.
    async fn wait_applied(&self, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let (_, pending, _, _) = self.inbox().await;
            if pending == 0 {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "{pending} inbox rows still pending after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The guest name (`v<sequence>`) each mirrored reservation holds.
    async fn reservation_versions(&self) -> HashMap<(i64, i64), u64> {
        let rows = self
            .conn
            .query_all_raw(Statement::from_string(
                self.conn.get_database_backend(),
                "SELECT account_id, id, raw_payload->>'guestName' FROM reservations",
            ))
            .await
            .expect("reservations");
        rows.iter()
            .filter_map(|r| {
                let name: Option<String> = r.try_get_by_index(2).ok()?;
                let version = name?.strip_prefix('v')?.parse().ok()?;
                Some((
                    (r.try_get_by_index(0).ok()?, r.try_get_by_index(1).ok()?),
                    version,
                ))
            })
            .collect()
    }

    /// Webhook registrations at the simulator per account.
    fn registrations(&self, ids: &[i64]) -> BTreeMap<usize, usize> {
        let mut histogram = BTreeMap::new();
        for id in ids {
            *histogram
                .entry(self.sim.state().webhooks(*id).len())
                .or_default() += 1;
        }
        histogram
    }
}

/// Prints a test's one-line figure where the test run shows it (written
/// to stderr directly: the harness captures `println!` of passing tests).
fn figure(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The last lines a replica logged (for a failure message).
fn tail(replica: &ServiceProcess) -> String {
    let text = replica.log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The reservation event of sequence number `n`: `guestName` and
/// `updatedOn` both carry it, so a later number is a newer version.
fn event(account_id: i64, reservation_id: i64, n: u64) -> Value {
    let mut body = fixture("webhook_reservation_updated.json");
    body["accountId"] = json!(account_id);
    body["data"]["accountId"] = json!(account_id);
    body["data"]["id"] = json!(reservation_id);
    body["data"]["hostawayReservationId"] = json!(reservation_id);
    body["data"]["guestName"] = json!(format!("v{n}"));
    let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("date")
        + chrono::Duration::seconds(n as i64);
    body["data"]["updatedOn"] = json!(at.format("%Y-%m-%d %H:%M:%S").to_string());
    body
}

/// Reservations each storm account gets events for.
const ENTITIES_PER_ACCOUNT: u64 = 5;

/// What a storm sent and what came back.
#[derive(Debug, Default)]
struct StormReport {
    sent: u64,
    acked: u64,
    /// Non-200 answers and transport errors, by status or error text.
    errors: BTreeMap<String, u64>,
    /// The newest acknowledged sequence number per (account, reservation).
    newest: HashMap<(i64, i64), u64>,
}

/// A steady stream of distinct webhooks at `rate` per second to `url`,
/// spread over `accounts`, until `stop` is set.
async fn storm(url: String, rate: u64, accounts: Vec<i64>, stop: Arc<AtomicBool>) -> StormReport {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let in_flight = Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Catch up to the schedule: `rate` per second since the start.
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while n < due {
            n += 1;
            let account = accounts[(n % accounts.len() as u64) as usize];
            let entity = (n / accounts.len() as u64) % ENTITIES_PER_ACCOUNT;
            let reservation = account * 1000 + entity as i64;
            let body = event(account, reservation, n);
            let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
            let (http, url) = (http.clone(), url.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let answer = http
                    .post(&url)
                    .basic_auth("hostaway", Some("test-webhook-password"))
                    .json(&body)
                    .send()
                    .await;
                let outcome = match answer {
                    Ok(r) if r.status() == 200 => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                    Err(e) => Err(format!("transport: {e}")),
                };
                (account, reservation, n, outcome)
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut report = StormReport {
        sent: n,
        ..StormReport::default()
    };
    while let Some(done) = tasks.join_next().await {
        let (account, reservation, n, outcome) = done.expect("sender task");
        match outcome {
            Ok(()) => {
                report.acked += 1;
                let newest = report.newest.entry((account, reservation)).or_default();
                *newest = (*newest).max(n);
            }
            Err(error) => *report.errors.entry(error).or_default() += 1,
        }
    }
    report
}

struct Running {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<StormReport>,
}

impl Running {
    fn start(url: String, rate: u64, accounts: Vec<i64>) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(storm(url, rate, accounts, stop.clone()));
        Running { stop, task }
    }

    async fn finish(self) -> StormReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("storm")
    }
}

/// Every acknowledged event is stored once, applied, none dead-lettered,
/// and each entity holds its newest acknowledged version. Returns (lost,
/// duplicated, retried): an attempt that failed (rolled back, e.g. a write
/// cut off by a replica's shutdown) and was applied later is still applied
/// once, and is counted in the figure.
async fn check_storm(fleet: &Fleet, report: &StormReport) -> (i64, i64, i64) {
    fleet.wait_applied(Duration::from_secs(120)).await;
    let (stored, pending, failed, attempted) = fleet.inbox().await;
    assert_eq!((pending, failed), (0, 0), "inbox after the storm");
    let acked = report.acked as i64;
    // A stored event the sender never heard back about would be an error.
    let lost = (acked - stored).max(0);
    let duplicated = (stored - acked).max(0);
    let versions = fleet.reservation_versions().await;
    let stale: Vec<_> = report
        .newest
        .iter()
        .filter(|(key, n)| versions.get(key) != Some(n))
        .take(5)
        .collect();
    assert!(
        stale.is_empty(),
        "entities not at their newest acknowledged version (key, newest): {stale:?}"
    );
    (lost, duplicated, attempted)
}

crate::pg_test! {
    /// 3 replicas, 200 accounts: each account owned exactly once and the
    /// shares even; a fourth joins and gets its share; it leaves (SIGTERM)
    /// and the others take its accounts at once.
    async fn ownership_is_exclusive_even_and_rebalances() {
        let ids: Vec<i64> = (3001..=3200).collect();
        let mut fleet = Fleet::start(FleetOptions {
            accounts: &ids,
            replicas: 4,
            dataset: small_dataset(),
            haproxy: false,
            env: &[("SYNC_HOSTAWAY__SYNC__SYNC_ON_CREATE", "false")],
        })
        .await;
        // Three replicas first: stop the fourth before accounts exist.
        fleet.replicas[3].as_mut().expect("r4").terminate();
        fleet.replicas[3] = None;
        fleet.add_accounts(0, &ids).await;
        let three: Vec<String> = (0..3).map(Fleet::name).collect();
        let settled = fleet.wait_owned(&ids, &three, 40).await;
        let shares = fleet.shares().await;
        assert_eq!(shares.values().sum::<usize>(), ids.len(), "{shares:?}");
        for i in 0..3 {
            fleet.wait_ready(i).await;
        }
        // Each replica runs exactly the actors of the accounts it owns.
        for i in 0..3 {
            let metrics = fleet
                .http
                .get(fleet.url(i, "/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let owned = crate::helpers::metric_value(&metrics, "sync_hostaway_cluster_accounts_owned");
            assert_eq!(owned as usize, shares[&Fleet::name(i)], "r{} metric", i + 1);
        }
        let view: Value = fleet
            .http
            .get(fleet.url(1, "/api/v1/hostaway/cluster"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["replicas"].as_array().map(Vec::len), Some(3), "{view}");
        assert_eq!(view["unowned_accounts"], json!([]), "{view}");

        fleet.launch(3);
        let four: Vec<String> = (0..4).map(Fleet::name).collect();
        let joined = fleet.wait_owned(&ids, &four, 25).await;
        fleet.wait_ready(3).await;
        let r4_share = fleet.shares().await.get("r4").copied().unwrap_or(0);

        let leaving = Instant::now();
        let status = fleet.replicas[3].as_mut().expect("r4").terminate();
        assert!(status.success(), "r4 exits cleanly: {status}\n{}", tail(fleet.replica(3)));
        fleet.replicas[3] = None;
        let left = fleet.wait_owned(&ids, &three, 40).await.max(leaving.elapsed());
        figure(format!(
            "cluster ownership: 3 replicas, {} accounts owned exactly once ({:?}) in {:.1} s; \
             a 4th joined and took {r4_share} in {:.1} s; it left and they were taken over in {:.1} s",
            ids.len(),
            shares,
            settled.as_secs_f64(),
            joined.as_secs_f64(),
            left.as_secs_f64()
        ));
        assert!(left < Duration::from_secs(LEASE_SECS), "a graceful leave does not wait for leases to lapse");
    }
}

/// Three replicas behind HAProxy holding `ids` between them, ready, and a
/// steady 500 webhooks/s through HAProxy running for 3 s already.
async fn storm_on_three(ids: &[i64]) -> (Fleet, Running) {
    let fleet = Fleet::start(FleetOptions {
        accounts: ids,
        replicas: 3,
        dataset: small_dataset(),
        haproxy: true,
        env: &[],
    })
    .await;
    fleet.add_accounts(0, ids).await;
    let all: Vec<String> = (0..3).map(Fleet::name).collect();
    fleet.wait_owned(ids, &all, 40).await;
    for i in 0..3 {
        fleet.wait_ready(i).await;
    }
    let url = fleet
        .haproxy
        .as_ref()
        .expect("haproxy")
        .url("/api/v1/hostaway/webhooks");
    let running = Running::start(url, 500, ids.to_vec());
    tokio::time::sleep(Duration::from_secs(3)).await;
    (fleet, running)
}

crate::pg_test! {
    /// A steady 500 webhooks/s through HAProxy over 200 accounts while each
    /// of 3 replicas in turn is stopped (SIGTERM) and started again.
    async fn rolling_restart_drops_no_webhook() {
        let ids: Vec<i64> = (4001..=4200).collect();
        let (mut fleet, running) = storm_on_three(&ids).await;
        let all: Vec<String> = (0..3).map(Fleet::name).collect();
        for i in 0..3 {
            let status = fleet.replicas[i].as_mut().expect("replica").terminate();
            assert!(status.success(), "{} exits cleanly: {status}\n{}", Fleet::name(i), tail(fleet.replica(i)));
            fleet.launch(i);
            fleet.wait_ready(i).await;
            // Let HAProxy see it up again before the next one goes.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let report = running.finish().await;
        let (lost, duplicated, retried) = check_storm(&fleet, &report).await;
        let errors: u64 = report.errors.values().sum();
        // Every account is registered once, whoever owned it when.
        fleet.wait_owned(&ids, &all, 1).await;
        let registrations = fleet.registrations(&ids);
        figure(format!(
            "rolling restart: 3 replicas, {} sent, {} acked, {errors} errors, {lost} lost, \
             {duplicated} duplicated ({retried} applied after a failed attempt); \
             registrations per account {registrations:?}",
            report.sent, report.acked
        ));
        assert_eq!(report.errors, BTreeMap::new(), "non-200 answers");
        assert_eq!((lost, duplicated), (0, 0));
        assert_eq!(registrations, BTreeMap::from([(1, ids.len())]), "one registration each");
    }
}

crate::pg_test! {
    /// kill -9 of one of 3 replicas mid-storm: the others take its accounts
    /// within lease_secs + 5 s and apply everything acknowledged, once.
    async fn a_killed_replica_is_replaced_within_the_lease() {
        let ids: Vec<i64> = (5001..=5200).collect();
        let (mut fleet, running) = storm_on_three(&ids).await;
        let victims: Vec<i64> = fleet
            .leases()
            .await
            .into_iter()
            .filter(|(_, (owner, _))| owner == "r2")
            .map(|(id, _)| id)
            .collect();
        let killed = Instant::now();
        fleet.replicas[1].as_mut().expect("r2").kill();
        fleet.replicas[1] = None;
        let survivors = vec![Fleet::name(0), Fleet::name(2)];
        fleet.wait_owned(&victims, &survivors, 1).await;
        let failover = killed.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let report = running.finish().await;
        let (lost, duplicated, retried) = check_storm(&fleet, &report).await;
        let errors: u64 = report.errors.values().sum();
        figure(format!(
            "kill -9 failover: 1 of 3 replicas killed mid-storm, its {} accounts taken over in {:.1} s \
             (lease {LEASE_SECS} s); {} sent, {} acked, {errors} errors, {lost} lost, {duplicated} duplicated \
             ({retried} applied after a failed attempt)",
            victims.len(),
            failover.as_secs_f64(),
            report.sent,
            report.acked
        ));
        assert!(
            failover <= Duration::from_secs(LEASE_SECS + 5),
            "taken over in {failover:?}"
        );
        assert_eq!((lost, duplicated), (0, 0));
        assert_eq!(report.errors, BTreeMap::new(), "non-200 answers (HAProxy retries the dead replica's)");
        let registrations = fleet.registrations(&ids);
        assert_eq!(registrations, BTreeMap::from([(1, ids.len())]), "one registration each");
    }
}

crate::pg_test! {
    /// A replica frozen (SIGSTOP) past its lease while it applies an event:
    /// another takes the account over and applies newer events; resumed, the
    /// frozen one's write is refused by the fence, the mirror keeps the newer
    /// state, and the frozen replica drops the account.
    async fn a_frozen_replica_is_fenced_out() {
        let ids: Vec<i64> = (6001..=6006).collect();
        let mut fleet = Fleet::start(FleetOptions {
            accounts: &ids,
            replicas: 1,
            dataset: small_dataset(),
            haproxy: false,
            env: &[("SYNC_HOSTAWAY__SYNC__SYNC_ON_CREATE", "false")],
        })
        .await;
        fleet.add_accounts(0, &ids).await;
        fleet.wait_owned(&ids, &[Fleet::name(0)], 1).await;
        // The replica to freeze: every apply takes 3 s, long enough to stop it
        // in the middle of one.
        fleet.ports.push(free_port());
        fleet.replicas.push(None);
        fleet.replicas[0].as_mut().expect("r1").terminate();
        fleet.launch_with(0, &[("SYNC_HOSTAWAY__FAULTS__SLOW_APPLY_MS", "3000")]);
        fleet.launch(1);
        let both = vec![Fleet::name(0), Fleet::name(1)];
        fleet.wait_owned(&ids, &both, 1).await;
        let leases = fleet.leases().await;
        let (&account, (_, epoch)) = leases
            .iter()
            .find(|(_, (owner, _))| owner == "r1")
            .expect("r1 owns an account");
        let epoch = *epoch;
        let reservation = account * 1000;
        let deliver = |to: usize, n: u64| {
            let url = fleet.url(to, "/api/v1/hostaway/webhooks");
            let http = fleet.http.clone();
            async move {
                let response = http
                    .post(url)
                    .basic_auth("hostaway", Some("test-webhook-password"))
                    .json(&event(account, reservation, n))
                    .send()
                    .await
                    .expect("delivered");
                assert_eq!(response.status(), 200);
            }
        };
        deliver(0, 10).await;
        // r1 is now inside its 3 s apply of v10.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let frozen = Instant::now();
        fleet.replica(0).signal("STOP");
        let taken = fleet.wait_owned(&[account], &[Fleet::name(1)], 1).await;
        // The new owner applied v10 from the inbox; then a newer event.
        deliver(1, 20).await;
        let f = &fleet;
        wait_for("v20 applied by r2", Duration::from_secs(20), || async move {
            (f.reservation_versions().await.get(&(account, reservation)) == Some(&20)).then_some(())
        })
        .await;
        let new_epoch = fleet.leases().await[&account].1;
        fleet.replica(0).signal("CONT");
        let r1_log = wait_for("r1 notices it lost the account", Duration::from_secs(20), || async move {
            let log = f.replica(0).log_text();
            log.contains("no longer owns the account").then_some(log)
        })
        .await;
        // Give r1 time to do whatever it would do next.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let versions = fleet.reservation_versions().await;
        let (_, pending, failed, attempted) = fleet.inbox().await;
        let owner = fleet.leases().await[&account].clone();
        figure(format!(
            "SIGSTOP fencing: r1 frozen {:.1} s, r2 took account {account} over after {:.1} s \
             (epoch {epoch} -> {new_epoch}) and applied v20; r1 resumed, its write of v10 was \
             refused; mirror holds v{}",
            frozen.elapsed().as_secs_f64(),
            taken.as_secs_f64(),
            versions[&(account, reservation)]
        ));
        assert!(new_epoch > epoch);
        assert_eq!(versions.get(&(account, reservation)), Some(&20), "the newer state stays");
        // Live again, r1 may get the account back as its share, but only
        // under a new lease.
        if owner.0 == "r1" {
            assert!(owner.1 > new_epoch, "r1 took the account back under epoch {}", owner.1);
        }
        assert_eq!((pending, failed, attempted), (0, 0, 0), "no row was failed by the fenced replica");
        assert!(r1_log.contains("fenced"), "the refusal names the fence");
        let r1_log = wait_for("r1 drops its lost leases", Duration::from_secs(10), || async move {
            let log = f.replica(0).log_text();
            log.contains("cluster leases lost").then_some(log)
        })
        .await;
        assert!(r1_log.contains(&account.to_string()));
    }
}

crate::pg_test! {
    /// A first sync running on a replica that is killed is run again by the
    /// account's new owner; the mirror then equals the simulator.
    async fn a_sync_killed_with_its_replica_is_retried_by_the_new_owner() {
        let ids: Vec<i64> = vec![7001];
        let dataset = hostaway_sim::DatasetSize {
            listings: 5,
            reservations: 60,
            conversations: 10,
            messages_per_conversation: 3,
        };
        let mut fleet = Fleet::start(FleetOptions {
            accounts: &ids,
            replicas: 2,
            dataset,
            haproxy: false,
            env: &[("SYNC_HOSTAWAY__HOSTAWAY__PAGE_SIZE", "10")],
        })
        .await;
        for i in 0..2 {
            fleet.wait_ready(i).await;
        }
        // Slow Hostaway: the sync takes a few seconds.
        fleet.sim.state().set_faults(hostaway_sim::Faults {
            latency_ms: 300,
            ..hostaway_sim::Faults::default()
        });
        fleet.add_accounts(0, &ids).await;
        let both = vec![Fleet::name(0), Fleet::name(1)];
        fleet.wait_owned(&ids, &both, 0).await;
        let owner = fleet.leases().await[&7001].0.clone();
        let victim = if owner == "r1" { 0 } else { 1 };
        let survivor = 1 - victim;
        let conn = fleet.conn.clone();
        let conn = &conn;
        let state = move || sync_state(conn);
        wait_for("the first sync runs", Duration::from_secs(20), || async move {
            (state().await.0 == "syncing").then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(state().await, ("syncing".to_string(), false), "killed mid-sync");
        let killed = Instant::now();
        fleet.replicas[victim].as_mut().expect("owner").kill();
        fleet.replicas[victim] = None;
        fleet.sim.state().set_faults(hostaway_sim::Faults::default());
        wait_for("the new owner finishes the sync", Duration::from_secs(60), || async move {
            (state().await == ("idle".to_string(), true)).then_some(())
        })
        .await;
        let finished = killed.elapsed();
        let diff = mirror_diff_on(&fleet.conn, &fleet.sim, 7001).await;
        figure(format!(
            "sync failover: the owner was killed mid-sync; {} finished it {:.1} s later; mirror equals the simulator: {}",
            Fleet::name(survivor),
            finished.as_secs_f64(),
            diff.is_none()
        ));
        assert_eq!(diff, None);
        assert_eq!(fleet.leases().await[&7001].0, Fleet::name(survivor));
        assert_eq!(fleet.registrations(&ids), BTreeMap::from([(1, 1)]), "one registration");
    }
}

/// `sync_state` of account 7001 and whether it ever finished a sync.
async fn sync_state(conn: &DatabaseConnection) -> (String, bool) {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT sync_state, last_sync_at IS NOT NULL FROM accounts WHERE account_id = 7001",
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get_by_index::<String>(0).unwrap(),
        row.try_get_by_index::<bool>(1).unwrap(),
    )
}
