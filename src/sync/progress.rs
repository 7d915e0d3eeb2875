//! A running sync's progress: its phase, what each entity's walk has read
//! against the total Hostaway announced, the requests made, the time spent
//! waiting for the rate limiter, and an ETA. The Hostaway client feeds it
//! through `hostaway::Observer`; the run stores a snapshot on the account row
//! every second (so any replica's account API shows it), logs a line every
//! `sync.progress_log_secs`, and keeps `sync_hostaway_sync_phase` current.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::IntGaugeVec;
use serde::{Deserialize, Serialize};

use super::SyncMode;
use crate::hostaway::Observer;

/// Where a run is. The fetch phases run in this order, then `writing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Listings,
    Reservations,
    Conversations,
    Messages,
    Writing,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Listings,
        Phase::Reservations,
        Phase::Conversations,
        Phase::Messages,
        Phase::Writing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Listings => "listings",
            Phase::Reservations => "reservations",
            Phase::Conversations => "conversations",
            Phase::Messages => "messages",
            Phase::Writing => "writing",
        }
    }
}

/// One entity's walk: items read so far, and the total when Hostaway
/// announced one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ProgressCount)]
pub struct Count {
    pub fetched: u64,
    pub total: Option<u64>,
}

/// `fetched/total`, or `fetched` while no total is known.
impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.total {
            Some(total) => write!(f, "{}/{total}", self.fetched),
            None => write!(f, "{}", self.fetched),
        }
    }
}

/// What the account API shows under `sync.progress` and the CLI draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = SyncProgress)]
pub struct Snapshot {
    pub phase: Phase,
    pub mode: SyncMode,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub elapsed_secs: f64,
    pub listings: Count,
    pub reservations: Count,
    pub conversations: Count,
    /// Conversations whose messages are read: done of those to read.
    pub message_threads: Count,
    pub messages: Count,
    /// Hostaway requests sent (retries included).
    pub requests: u64,
    /// Time spent waiting for the rate limiter and on 429 back-offs.
    pub rate_limit_wait_secs: f64,
    /// The current phase's remaining time at its rate so far; `null` until
    /// its total is known (later phases' totals are not known yet).
    pub eta_secs: Option<f64>,
}

impl Snapshot {
    /// The count the current phase walks (`None` while writing).
    pub fn current(&self) -> Option<Count> {
        match self.phase {
            Phase::Listings => Some(self.listings),
            Phase::Reservations => Some(self.reservations),
            Phase::Conversations => Some(self.conversations),
            Phase::Messages => Some(self.message_threads),
            Phase::Writing => None,
        }
    }
}

/// Unknown total.
const NO_TOTAL: u64 = u64::MAX;

#[derive(Default)]
struct Counter {
    fetched: AtomicU64,
    total: AtomicU64,
}

impl Counter {
    fn new() -> Self {
        Counter {
            fetched: AtomicU64::new(0),
            total: AtomicU64::new(NO_TOTAL),
        }
    }

    fn get(&self) -> Count {
        let total = self.total.load(Ordering::Relaxed);
        Count {
            fetched: self.fetched.load(Ordering::Relaxed),
            total: (total != NO_TOTAL).then_some(total),
        }
    }
}

/// Shared by the run and the Hostaway client it uses.
pub struct SyncProgress {
    mode: SyncMode,
    dry_run: bool,
    started_at: DateTime<Utc>,
    clock: Instant,
    /// The phase and when it began.
    phase: Mutex<(Phase, Instant)>,
    listings: Counter,
    reservations: Counter,
    conversations: Counter,
    message_threads: Counter,
    messages: Counter,
    requests: AtomicU64,
    /// Wall time during which at least one request waited: concurrent
    /// waits count once (`Waits::add`).
    waits: Mutex<Waits>,
    /// `sync_hostaway_sync_phase{phase}`: running syncs per phase.
    gauge: IntGaugeVec,
    /// Signalled on each change of phase.
    phase_changed: tokio::sync::Notify,
}

impl SyncProgress {
    pub fn new(mode: SyncMode, dry_run: bool, gauge: IntGaugeVec) -> Self {
        gauge.with_label_values(&[Phase::Listings.as_str()]).inc();
        SyncProgress {
            mode,
            dry_run,
            started_at: Utc::now(),
            clock: Instant::now(),
            phase: Mutex::new((Phase::Listings, Instant::now())),
            listings: Counter::new(),
            reservations: Counter::new(),
            conversations: Counter::new(),
            message_threads: Counter::new(),
            messages: Counter::new(),
            requests: AtomicU64::new(0),
            waits: Mutex::new(Waits::default()),
            gauge,
            phase_changed: tokio::sync::Notify::new(),
        }
    }

    fn counter(&self, entity: &str) -> &Counter {
        match entity {
            "listings" => &self.listings,
            "reservations" => &self.reservations,
            "conversations" => &self.conversations,
            _ => &self.messages,
        }
    }

    fn lock_phase(&self) -> std::sync::MutexGuard<'_, (Phase, Instant)> {
        // The guarded value is two plain fields: a panic elsewhere cannot
        // leave it half-written.
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn phase(&self) -> Phase {
        self.lock_phase().0
    }

    pub fn enter(&self, phase: Phase) {
        let mut current = self.lock_phase();
        if current.0 == phase {
            return;
        }
        self.gauge.with_label_values(&[current.0.as_str()]).dec();
        self.gauge.with_label_values(&[phase.as_str()]).inc();
        *current = (phase, Instant::now());
        self.phase_changed.notify_one();
    }

    /// Resolves at the next change of phase (or at once if one happened
    /// since the last call).
    pub async fn next_phase(&self) {
        self.phase_changed.notified().await;
    }

    /// An entity's walk is over: what it kept (distinct items), which
    /// replaces the page-by-page count.
    pub fn finished(&self, entity: &str, kept: usize) {
        self.counter(entity)
            .fetched
            .store(kept as u64, Ordering::Relaxed);
    }

    /// How many conversations' messages will be read.
    pub fn threads_to_read(&self, count: usize) {
        self.message_threads
            .total
            .store(count as u64, Ordering::Relaxed);
    }

    pub fn thread_read(&self) {
        self.message_threads.fetched.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let (phase, since) = *self.lock_phase();
        let mut snapshot = Snapshot {
            phase,
            mode: self.mode,
            dry_run: self.dry_run,
            started_at: self.started_at,
            elapsed_secs: round_ms(self.clock.elapsed()),
            listings: self.listings.get(),
            reservations: self.reservations.get(),
            conversations: self.conversations.get(),
            message_threads: self.message_threads.get(),
            messages: self.messages.get(),
            requests: self.requests.load(Ordering::Relaxed),
            rate_limit_wait_secs: round_ms(
                self.waits.lock().unwrap_or_else(|e| e.into_inner()).total,
            ),
            eta_secs: None,
        };
        snapshot.eta_secs = snapshot
            .current()
            .and_then(|count| eta(count, since.elapsed()));
        snapshot
    }

    /// The line logged every `sync.progress_log_secs`.
    pub fn log(&self, account_id: i64) {
        let s = self.snapshot();
        tracing::info!(
            account_id,
            phase = s.phase.as_str(),
            listings = %s.listings,
            reservations = %s.reservations,
            conversations = %s.conversations,
            message_threads = %s.message_threads,
            messages = s.messages.fetched,
            requests = s.requests,
            rate_limit_wait_secs = s.rate_limit_wait_secs,
            eta_secs = s.eta_secs,
            elapsed_secs = s.elapsed_secs,
            "sync progress"
        );
    }
}

impl Drop for SyncProgress {
    fn drop(&mut self) {
        self.gauge.with_label_values(&[self.phase().as_str()]).dec();
    }
}

impl Observer for SyncProgress {
    fn request_sent(&self, waited: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.waited(waited);
    }

    fn waited(&self, waited: Duration) {
        if !waited.is_zero() {
            // The guarded value is plain numbers (see `lock_phase`).
            let mut waits = self.waits.lock().unwrap_or_else(|e| e.into_inner());
            waits.add(Instant::now(), waited);
        }
    }

    fn page(&self, entity: &'static str, announced: Option<u64>, new_items: usize) {
        let counter = self.counter(entity);
        counter
            .fetched
            .fetch_add(new_items as u64, Ordering::Relaxed);
        // A conversation's message count is not the run's total.
        if entity != "messages"
            && let Some(total) = announced
        {
            counter.total.store(total, Ordering::Relaxed);
        }
    }
}

/// The union of wait intervals, each reported when it ends: the part of a
/// new interval before `covered_until` was counted already.
#[derive(Default)]
struct Waits {
    covered_until: Option<Instant>,
    total: Duration,
}

impl Waits {
    fn add(&mut self, end: Instant, waited: Duration) {
        let start = end.checked_sub(waited).unwrap_or(end);
        let from = self.covered_until.map_or(start, |c| c.max(start));
        self.total += end.saturating_duration_since(from);
        self.covered_until = Some(self.covered_until.map_or(end, |c| c.max(end)));
    }
}

/// Remaining time at the rate so far: `None` without a total or before
/// anything was read.
fn eta(count: Count, elapsed: Duration) -> Option<f64> {
    let total = count.total?;
    if count.fetched >= total {
        return Some(0.0);
    }
    if count.fetched == 0 {
        return None;
    }
    let per_item = elapsed.as_secs_f64() / count.fetched as f64;
    Some(round_ms(Duration::from_secs_f64(
        per_item * (total - count.fetched) as f64,
    )))
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGaugeVec {
        IntGaugeVec::new(prometheus::Opts::new("phase", "test"), &["phase"]).unwrap()
    }

    #[test]
    fn the_eta_follows_the_rate_so_far() {
        let count = Count {
            fetched: 25,
            total: Some(100),
        };
        assert_eq!(eta(count, Duration::from_secs(5)), Some(15.0));
        let unknown = Count {
            fetched: 25,
            total: None,
        };
        assert_eq!(eta(unknown, Duration::from_secs(5)), None);
        assert_eq!(eta(Count::default(), Duration::from_secs(5)), None);
    }

    #[test]
    fn the_metric_knows_every_phase() {
        let names: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, crate::metrics::SYNC_PHASES);
    }

    #[test]
    fn concurrent_waits_count_once() {
        let mut waits = Waits::default();
        let t0 = Instant::now();
        // Four requests wait for the same 2 s, then one more waits 1 s.
        for _ in 0..4 {
            waits.add(t0 + Duration::from_secs(2), Duration::from_secs(2));
        }
        waits.add(t0 + Duration::from_secs(4), Duration::from_secs(1));
        assert_eq!(waits.total, Duration::from_secs(3));
    }

    #[test]
    fn pages_count_items_and_totals_and_the_gauge_follows_the_phase() {
        let gauge = gauge();
        let progress = SyncProgress::new(SyncMode::Full, false, gauge.clone());
        progress.page("listings", Some(120), 100);
        progress.page("messages", Some(7), 7);
        progress.request_sent(Duration::from_millis(250));
        let s = progress.snapshot();
        assert_eq!(
            s.listings,
            Count {
                fetched: 100,
                total: Some(120)
            }
        );
        assert_eq!(s.messages.total, None, "a thread's count is not a total");
        assert_eq!(s.requests, 1);
        assert_eq!(s.rate_limit_wait_secs, 0.25);
        assert_eq!(gauge.with_label_values(&["listings"]).get(), 1);
        progress.enter(Phase::Writing);
        assert_eq!(gauge.with_label_values(&["listings"]).get(), 0);
        assert_eq!(gauge.with_label_values(&["writing"]).get(), 1);
        drop(progress);
        assert_eq!(gauge.with_label_values(&["writing"]).get(), 0);
    }
}
