//! Prometheus metrics. One `Metrics` per running service (tests start several in
//! one process), exposed at `/metrics`. Labels are bounded: event names fold
//! unknown ones into `other`, endpoints are route templates, never ids.

use crate::events::{EventType, OTHER_LABEL};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const SYNC_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
];

/// The phases of a sync run (`sync::progress::Phase`, which a test holds
/// equal to this list).
pub const SYNC_PHASES: [&str; 5] = [
    "listings",
    "reservations",
    "conversations",
    "messages",
    "writing",
];

pub struct Metrics {
    registry: Registry,
    pub webhooks_received: IntCounterVec,
    pub webhook_apply_latency: HistogramVec,
    pub webhook_events_applied: IntCounterVec,
    pub webhook_apply_failures: IntCounterVec,
    pub webhook_dead_letters: IntCounter,
    pub webhook_duplicates: IntCounter,
    pub webhook_ignored: IntCounterVec,
    pub inbox_events: IntGaugeVec,
    pub actor_restarts: IntCounterVec,
    pub accounts_degraded: IntGauge,
    pub accounts_active: IntGauge,
    pub sync_runs: IntCounterVec,
    pub sync_duration: HistogramVec,
    pub sync_records: IntCounterVec,
    pub sync_incomplete: IntCounterVec,
    pub sync_phase: IntGaugeVec,
    pub cross_account_ids: IntCounterVec,
    pub webhook_nul_replaced: IntCounter,
    pub degraded_pending_events: IntGauge,
    pub future_timestamps_clamped: IntCounterVec,
    pub hostaway_requests: IntCounterVec,
    pub hostaway_latency: HistogramVec,
    pub hostaway_rate_limited: IntCounter,
    pub hostaway_retries: IntCounterVec,
    pub hostaway_token_refreshes: IntCounter,
    pub db_operation_duration: HistogramVec,
    pub group_commit_batch: HistogramVec,
    pub webhook_registrations: IntCounterVec,
    pub inbox_pruned: IntCounter,
    pub cluster_replicas_live: IntGauge,
    pub cluster_accounts_owned: IntGauge,
    pub cluster_ownership_changes: IntCounter,
    pub cluster_lease_renew_failures: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! register {
            ($metric:expr) => {{
                let metric = $metric;
                registry
                    .register(Box::new(metric.clone()))
                    .expect("metric names are unique and valid (fixed at compile time)");
                metric
            }};
        }
        fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition is valid")
        }
        fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("static metric definition is valid")
        }
        fn counter(name: &str, help: &str) -> IntCounter {
            IntCounter::new(name, help).expect("static metric definition is valid")
        }
        fn gauge(name: &str, help: &str) -> IntGauge {
            IntGauge::new(name, help).expect("static metric definition is valid")
        }

        let metrics = Metrics {
            webhooks_received: register!(counter_vec(
                "sync_hostaway_webhooks_received_total",
                "Webhook deliveries by event and HTTP response status",
                &["event", "status"]
            )),
            webhook_apply_latency: register!(histogram_vec(
                "sync_hostaway_webhook_received_to_applied_seconds",
                "Time from inbox append to the event's write being committed",
                &["event"],
                LATENCY_BUCKETS
            )),
            webhook_events_applied: register!(counter_vec(
                "sync_hostaway_webhook_events_applied_total",
                "Inbox events applied to the mirror",
                &["event"]
            )),
            webhook_apply_failures: register!(counter_vec(
                "sync_hostaway_webhook_apply_failures_total",
                "Failed attempts to apply an inbox event (each attempt counts)",
                &["event"]
            )),
            webhook_dead_letters: register!(counter(
                "sync_hostaway_webhook_dead_letters_total",
                "Inbox events that exhausted their attempts and were dead-lettered"
            )),
            webhook_duplicates: register!(counter(
                "sync_hostaway_webhook_duplicates_total",
                "Redelivered webhooks recognised by their dedupe key"
            )),
            webhook_ignored: register!(counter_vec(
                "sync_hostaway_webhook_ignored_total",
                "Webhooks stored as ignored (unknown event type or ignored by the account)",
                &["reason"]
            )),
            inbox_events: register!(
                IntGaugeVec::new(
                    Opts::new(
                        "sync_hostaway_inbox_events",
                        "Inbox rows by status (pending, failed), read at scrape time"
                    ),
                    &["status"]
                )
                .expect("static metric definition is valid")
            ),
            actor_restarts: register!(counter_vec(
                "sync_hostaway_actor_restarts_total",
                "Supervisor restarts by actor kind",
                &["actor"]
            )),
            accounts_degraded: register!(gauge(
                "sync_hostaway_accounts_degraded",
                "Accounts whose actor exceeded its restart limit"
            )),
            accounts_active: register!(gauge(
                "sync_hostaway_accounts_active",
                "Active accounts with a running AccountActor"
            )),
            sync_runs: register!(counter_vec(
                "sync_hostaway_sync_runs_total",
                "Sync runs by mode and outcome",
                &["mode", "outcome"]
            )),
            sync_duration: register!(histogram_vec(
                "sync_hostaway_sync_duration_seconds",
                "Wall time of a sync run",
                &["mode"],
                SYNC_BUCKETS
            )),
            sync_records: register!(counter_vec(
                "sync_hostaway_sync_records_total",
                "Records fetched by sync runs, by entity",
                &["entity"]
            )),
            degraded_pending_events: register!(gauge(
                "sync_hostaway_degraded_pending_events",
                "Inbox events waiting on degraded accounts (applied after their half-open retry)"
            )),
            webhook_nul_replaced: register!(counter(
                "sync_hostaway_webhook_nul_replaced_total",
                "NUL characters in webhook bodies replaced with U+FFFD before storing"
            )),
            cross_account_ids: register!(counter_vec(
                "sync_hostaway_cross_account_ids_total",
                "Rows written whose Hostaway id another account also holds, by entity",
                &["entity"]
            )),
            future_timestamps_clamped: register!(counter_vec(
                "sync_hostaway_future_timestamps_clamped_total",
                "Hostaway timestamps too far ahead of their observation, clamped for version comparison, by entity",
                &["entity"]
            )),
            sync_phase: register!(
                IntGaugeVec::new(
                    Opts::new(
                        "sync_hostaway_sync_phase",
                        "Sync runs in progress, by phase"
                    ),
                    &["phase"]
                )
                .expect("static metric definition is valid")
            ),
            sync_incomplete: register!(counter_vec(
                "sync_hostaway_sync_incomplete_total",
                "Listings that ended with fewer distinct items than Hostaway's count, by entity",
                &["entity"]
            )),
            hostaway_requests: register!(counter_vec(
                "sync_hostaway_hostaway_requests_total",
                "Hostaway API requests by endpoint and status (`error` for no response)",
                &["endpoint", "status"]
            )),
            hostaway_latency: register!(histogram_vec(
                "sync_hostaway_hostaway_request_duration_seconds",
                "Hostaway API request latency by endpoint",
                &["endpoint"],
                LATENCY_BUCKETS
            )),
            hostaway_rate_limited: register!(counter(
                "sync_hostaway_hostaway_rate_limited_total",
                "HTTP 429 answers from Hostaway"
            )),
            hostaway_retries: register!(counter_vec(
                "sync_hostaway_hostaway_retries_total",
                "Hostaway requests retried, by reason",
                &["reason"]
            )),
            hostaway_token_refreshes: register!(counter(
                "sync_hostaway_hostaway_token_refreshes_total",
                "Access tokens fetched from Hostaway"
            )),
            db_operation_duration: register!(histogram_vec(
                "sync_hostaway_db_operation_duration_seconds",
                "Database operation latency by operation",
                &["operation"],
                LATENCY_BUCKETS
            )),
            group_commit_batch: register!(histogram_vec(
                "sync_hostaway_group_commit_batch_size",
                "Requests committed together by a group-commit actor",
                &["actor"],
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]
            )),
            webhook_registrations: register!(counter_vec(
                "sync_hostaway_webhook_registrations_total",
                "Webhook subscription operations at Hostaway by operation and outcome",
                &["operation", "outcome"]
            )),
            inbox_pruned: register!(counter(
                "sync_hostaway_inbox_pruned_total",
                "Processed inbox rows removed after the retention period"
            )),
            cluster_replicas_live: register!(gauge(
                "sync_hostaway_cluster_replicas_live",
                "Replicas with a fresh heartbeat, as this replica last saw them (cluster mode)"
            )),
            cluster_accounts_owned: register!(gauge(
                "sync_hostaway_cluster_accounts_owned",
                "Accounts whose lease this replica holds (cluster mode)"
            )),
            cluster_ownership_changes: register!(counter(
                "sync_hostaway_cluster_ownership_changes_total",
                "Account leases this replica took or gave up (cluster mode)"
            )),
            cluster_lease_renew_failures: register!(counter(
                "sync_hostaway_cluster_lease_renew_failures_total",
                "Lease rounds that could not reach the database (cluster mode)"
            )),
            registry,
        };
        metrics.initialize_known_series();
        metrics
    }

    /// Creates every series whose labels are known up front, at zero, so
    /// dashboards and alerts see them before the first event.
    fn initialize_known_series(&self) {
        for event in EventType::names().chain([OTHER_LABEL]) {
            self.webhook_apply_failures.with_label_values(&[event]);
            self.webhook_events_applied.with_label_values(&[event]);
        }
        for actor in ACTOR_KINDS {
            self.actor_restarts.with_label_values(&[actor]);
        }
        for phase in SYNC_PHASES {
            self.sync_phase.with_label_values(&[phase]);
        }
        for mode in ["full", "incremental"] {
            for outcome in ["ok", "failed"] {
                self.sync_runs.with_label_values(&[mode, outcome]);
            }
        }
        for entity in ["listings", "reservations", "conversations", "messages"] {
            self.sync_records.with_label_values(&[entity]);
            self.sync_incomplete.with_label_values(&[entity]);
        }
        for entity in ["listings", "reservations", "message_threads"] {
            self.cross_account_ids.with_label_values(&[entity]);
            self.future_timestamps_clamped.with_label_values(&[entity]);
        }
        for reason in [
            "rate_limited",
            "server_error",
            "timeout",
            "connect",
            "token",
        ] {
            self.hostaway_retries.with_label_values(&[reason]);
        }
        for reason in ["unknown_event", "account_filter"] {
            self.webhook_ignored.with_label_values(&[reason]);
        }
        for operation in ["list", "create", "update", "disable", "delete", "rotate"] {
            for outcome in ["ok", "error"] {
                self.webhook_registrations
                    .with_label_values(&[operation, outcome]);
            }
        }
        for status in ["pending", "failed"] {
            self.inbox_events.with_label_values(&[status]);
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(err) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %err, "failed to encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Times a database operation into `db_operation_duration`.
    pub fn db_timer(&self, operation: &str) -> prometheus::HistogramTimer {
        self.db_operation_duration
            .with_label_values(&[operation])
            .start_timer()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Actor kinds in `actor_restarts`.
pub const ACTOR_KINDS: &[&str] = &[
    "account",
    "ingest",
    "listing_writer",
    "reservation_writer",
    "message_thread_writer",
    "router",
    "registrar",
    "scheduler",
];
