//! The webhook load both the ingest and the cluster benchmarks drive:
//! keep-alive clients posting distinct `reservation.updated` events spread
//! over `ACCOUNTS` accounts, as fast as they are answered or at a set rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{Service, WEBHOOK_PASSWORD, WEBHOOK_USER};

/// Where the load goes: the webhook URL, and the processes whose memory
/// is sampled (summed) meanwhile.
pub struct Target {
    pub url: String,
    pub pids: Vec<u32>,
}

impl Target {
    /// One service, posted to directly.
    pub fn of(service: &Service) -> Target {
        Target {
            url: service.url("/api/v1/hostaway/webhooks"),
            pids: vec![service.pid()],
        }
    }
}

pub const ACCOUNTS: i64 = 500;
pub const FIRST_ACCOUNT: i64 = 100_001;

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fixture delivery with `{ACCOUNT}` and `{ID}` placeholders.
pub fn template() -> String {
    let path =
        super::manifest_dir().join("tests/fixtures/hostaway/webhook_reservation_updated.json");
    let mut body: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    body["accountId"] = serde_json::json!("{ACCOUNT}");
    body["data"]["id"] = serde_json::json!("{ID}");
    body["data"]["hostawayReservationId"] = serde_json::json!("{ID}");
    body.to_string()
        .replace("\"{ACCOUNT}\"", "{ACCOUNT}")
        .replace("\"{ID}\"", "{ID}")
}

pub struct Load {
    pub acked: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
    pub elapsed: Duration,
    pub peak_rss_mib: f64,
    /// CPU used per acknowledged event meanwhile, by kind of process.
    pub cpu_per_event: String,
}

/// Posts as fast as `clients` connections allow (or at `rate` per second in
/// total), from reservation id `first_id` up, until `duration` is over.
pub async fn load(
    target: &Target,
    clients: usize,
    duration: Duration,
    rate: Option<u64>,
    first_id: i64,
) -> Load {
    let template = Arc::new(template());
    let next_id = Arc::new(AtomicI64::new(first_id));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = target.url.clone();
    let started = Instant::now();
    let deadline = started + duration;
    let pids = target.pids.clone();
    let cpu_before = super::CpuSeconds::now(&pids);
    let sampler = tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while Instant::now() < deadline {
            let now: f64 = pids.iter().map(|&pid| super::rss_mib(pid)).sum();
            if let (true, Some(&pid)) = (
                now > peak && std::env::var("BENCH_RSS_DETAIL").is_ok(),
                pids.first(),
            ) {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let detail: Vec<&str> = status
                    .lines()
                    .filter(|l| l.starts_with("Rss") || l.starts_with("Threads"))
                    .collect();
                println!("rss {now:.0} MiB: {}", detail.join(" | "));
            }
            peak = peak.max(now);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        peak
    });
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (template, next_id, acked, errors, http, url) = (
                template.clone(),
                next_id.clone(),
                acked.clone(),
                errors.clone(),
                http.clone(),
                url.clone(),
            );
            tokio::spawn(async move {
                let mut histogram =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                let mut pace = rate.map(|r| {
                    let period = Duration::from_secs_f64(clients as f64 / r as f64);
                    let mut interval = tokio::time::interval(period);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    interval
                });
                while Instant::now() < deadline {
                    if let Some(interval) = pace.as_mut() {
                        interval.tick().await;
                    }
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let account = FIRST_ACCOUNT + id % ACCOUNTS;
                    let body = template
                        .replace("{ACCOUNT}", &account.to_string())
                        .replace("{ID}", &id.to_string());
                    let sent = Instant::now();
                    let result = http
                        .post(&url)
                        .basic_auth(WEBHOOK_USER, Some(WEBHOOK_PASSWORD))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match result {
                        Ok(response) if response.status() == 200 => {
                            let _ = response.bytes().await;
                            acked.fetch_add(1, Ordering::Relaxed);
                            let _ = histogram.record(sent.elapsed().as_micros() as u64);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                histogram
            })
        })
        .collect();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for task in tasks {
        latency_us
            .add(task.await.expect("client task"))
            .expect("same bounds");
    }
    let acked = acked.load(Ordering::Relaxed);
    Load {
        acked,
        cpu_per_event: super::CpuSeconds::now(&target.pids).per_event_since(&cpu_before, acked),
        errors: errors.load(Ordering::Relaxed),
        latency_us,
        elapsed: started.elapsed(),
        peak_rss_mib: sampler.await.unwrap_or(0.0),
    }
}
