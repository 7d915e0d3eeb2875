//! Sync runs: fetch from Hostaway, then write through the writer actors.
//! A full sync reads everything; a reconciliation reads reservations changed
//! since the last run (with an overlap), listings and the conversations list in
//! full, and messages only for conversations whose latest message the mirror
//! does not hold yet. Everything is fetched before anything is written, so a
//! failed fetch writes nothing.

pub mod plan;
pub mod progress;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use futures::future::LocalBoxFuture;
use futures::{StreamExt, TryStreamExt};
use opentelemetry::trace::SpanContext;
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::config::SyncSettings;
use crate::hostaway::{AccountClient, HostawayError, decode};
use crate::metrics::Metrics;
use crate::store::mirror;
use crate::store::rows::{self, Owner};
use crate::store::upserts::Key;
use crate::store::version::{Observed, Source};
use crate::store::write::{BatchError, ListingChange, WriteItem};
use progress::{Phase, SyncProgress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Full,
    Incremental,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRequest {
    pub mode: SyncMode,
    pub dry_run: bool,
}

impl SyncRequest {
    /// How the request travels to the account's owner in a cluster
    /// (`Topic::Sync`): `full` or `incremental`, `:dry` appended.
    pub fn to_notice(&self) -> String {
        let mode = match self.mode {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
        };
        if self.dry_run {
            format!("{mode}:dry")
        } else {
            mode.to_string()
        }
    }

    pub fn from_notice(detail: &str) -> Option<SyncRequest> {
        let (mode, dry_run) = match detail.strip_suffix(":dry") {
            Some(mode) => (mode, true),
            None => (detail, false),
        };
        let mode = match mode {
            "full" => SyncMode::Full,
            "incremental" => SyncMode::Incremental,
            _ => return None,
        };
        Some(SyncRequest { mode, dry_run })
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = SyncEntityCounts)]
pub struct EntityCounts {
    /// Objects read from Hostaway.
    pub fetched: usize,
    /// Rows inserted or changed in the mirror (0 on a dry run).
    pub written: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SyncReport {
    pub account_id: i64,
    pub mode: SyncMode,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub listings: EntityCounts,
    pub listings_deleted: usize,
    pub reservations: EntityCounts,
    pub conversations: usize,
    /// Conversations whose messages were fetched.
    pub conversations_refetched: usize,
    pub message_threads: EntityCounts,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("Hostaway: {0}")]
    Hostaway(#[from] HostawayError),
    #[error("write failed: {0}")]
    Write(#[from] BatchError),
    #[error("database: {0}")]
    Database(String),
    #[error("sync panicked: {0}")]
    Panicked(String),
    #[error("account unavailable: {0}")]
    Unavailable(String),
    #[error("the run took longer than sync.max_duration_secs ({0} s) and was stopped")]
    TimedOut(u64),
}

impl From<sea_orm::DbErr> for SyncError {
    fn from(err: sea_orm::DbErr) -> Self {
        SyncError::Database(err.to_string())
    }
}

/// Where a run's rows go: each call commits one batch of one entity table
/// and answers with the keys it wrote. The writer actors implement it; a
/// sync never writes entity tables itself.
pub trait MirrorWriter {
    fn write_listings(
        &self,
        item: WriteItem<Vec<ListingChange>>,
        parents: Vec<SpanContext>,
    ) -> LocalBoxFuture<'_, Result<Vec<Key>, BatchError>>;
    fn write_reservations(
        &self,
        item: WriteItem<Vec<rows::ReservationRow>>,
        parents: Vec<SpanContext>,
    ) -> LocalBoxFuture<'_, Result<Vec<Key>, BatchError>>;
    fn write_threads(
        &self,
        item: WriteItem<Vec<rows::ThreadMerge>>,
        parents: Vec<SpanContext>,
    ) -> LocalBoxFuture<'_, Result<Vec<Key>, BatchError>>;
}

/// What a run needs.
pub struct SyncContext<'a> {
    pub client: &'a AccountClient,
    pub owner: Owner,
    pub db: &'a DatabaseConnection,
    pub writers: &'a dyn MirrorWriter,
    pub settings: &'a SyncSettings,
    pub concurrency: usize,
    pub metrics: &'a Metrics,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// `webhooks.max_future_skew_secs`, for the version rules.
    pub max_future_skew: chrono::Duration,
    /// Cluster mode: the lease the run's writes are made under.
    pub fence: Option<crate::store::write::Fence>,
    /// Where the run is; `client` reports its requests and pages to it.
    pub progress: &'a SyncProgress,
}

/// What a run fetched, ready to be written.
pub struct Fetched {
    report: SyncReport,
    clock: Instant,
    listing_rows: Vec<rows::ListingRow>,
    listings_seen: Observed,
    reservation_rows: Vec<rows::ReservationRow>,
    merges: Vec<rows::ThreadMerge>,
}

/// Runs one sync: `fetch`, then `write`. The caller records `last_sync_at`
/// (= `report.started_at`) when it succeeds.
pub async fn run(ctx: SyncContext<'_>, request: SyncRequest) -> Result<SyncReport, SyncError> {
    let fetched = fetch(&ctx, request).await?;
    write(&ctx, fetched).await
}

/// The slow, rate-limited half of a run: reads everything from Hostaway
/// (proven complete) and turns it into rows, each versioned as of the
/// moment its fetch began. Writes nothing.
pub async fn fetch(ctx: &SyncContext<'_>, request: SyncRequest) -> Result<Fetched, SyncError> {
    // Microseconds: what PostgreSQL keeps, so the stored value compares equal.
    let started_at = Utc::now().trunc_subsecs(6);
    let clock = Instant::now();
    let account_id = ctx.owner.account_id;
    // A reconciliation without a previous run is a full sync.
    let mode = match (request.mode, ctx.last_sync_at) {
        (SyncMode::Incremental, Some(_)) => SyncMode::Incremental,
        _ => SyncMode::Full,
    };
    let since = match mode {
        SyncMode::Incremental => ctx
            .last_sync_at
            .map(|t| t - chrono::Duration::seconds(ctx.settings.overlap_secs as i64)),
        SyncMode::Full => None,
    };

    // Each entity's states are as of the moment its fetch began: a webhook
    // received after that may well be newer (`store::version`).
    let observed = |seen: DateTime<Utc>| Observed {
        seen,
        source: Source::Sync,
        max_future_skew: ctx.max_future_skew,
    };
    let progress = ctx.progress;
    let listings_seen = observed(Utc::now());
    let listings = ctx
        .client
        .list_listings()
        .instrument(tracing::info_span!(
            "sync.fetch",
            otel.name = "sync.fetch listings",
            entity = "listings"
        ))
        .await?;
    progress.finished("listings", listings.len());
    progress.enter(Phase::Reservations);
    let reservations_seen = observed(Utc::now());
    let reservations = async {
        let mut reservations = ctx.client.list_reservations(since).await?;
        if let Some(since) = since {
            // What Hostaway counts as activity is not documented: the
            // recently modified ones are read as well.
            let modified = ctx.client.list_reservations_modified_since(since).await?;
            reservations = plan::union_by_id(reservations, modified);
        }
        Ok::<_, HostawayError>(reservations)
    }
    .instrument(tracing::info_span!(
        "sync.fetch",
        otel.name = "sync.fetch reservations",
        entity = "reservations"
    ))
    .await?;
    progress.finished("reservations", reservations.len());
    progress.enter(Phase::Conversations);
    let conversations = ctx
        .client
        .list_conversations()
        .instrument(tracing::info_span!(
            "sync.fetch",
            otel.name = "sync.fetch conversations",
            entity = "conversations"
        ))
        .await?;
    progress.finished("conversations", conversations.len());
    progress.enter(Phase::Messages);

    let known = match mode {
        SyncMode::Full => HashMap::new(),
        SyncMode::Incremental => mirror::message_versions(ctx.db, account_id).await?,
    };
    let to_fetch = plan::conversations_to_refetch(&conversations, &known, mode);
    progress.threads_to_read(to_fetch.len());
    let messages_seen = observed(Utc::now());
    let messages: Vec<Value> = futures::stream::iter(to_fetch.iter().cloned())
        .map(|(conversation_id, reservation_id)| async move {
            let mut batch = ctx.client.list_messages(conversation_id).await?;
            for message in &mut batch {
                plan::fill_message_keys(message, conversation_id, reservation_id);
            }
            progress.thread_read();
            Ok::<_, HostawayError>(batch)
        })
        .buffer_unordered(ctx.concurrency.max(1))
        .try_collect::<Vec<Vec<Value>>>()
        .instrument(tracing::info_span!(
            "sync.fetch",
            otel.name = "sync.fetch messages",
            entity = "messages",
            conversations = to_fetch.len()
        ))
        .await?
        .into_iter()
        .flatten()
        .collect();
    progress.finished("messages", messages.len());

    for (entity, count) in [
        ("listings", listings.len()),
        ("reservations", reservations.len()),
        ("conversations", conversations.len()),
        ("messages", messages.len()),
    ] {
        ctx.metrics
            .sync_records
            .with_label_values(&[entity])
            .inc_by(count as u64);
    }

    let listing_rows: Vec<_> = listings
        .into_iter()
        .filter_map(|l| rows::listing_row(ctx.owner, l, &listings_seen))
        .collect();
    let reservation_rows: Vec<_> = reservations
        .into_iter()
        .filter_map(|r| rows::reservation_row(ctx.owner, r, &reservations_seen))
        .collect();
    let merges = rows::thread_merges(ctx.owner, messages, &messages_seen);
    let report = SyncReport {
        account_id,
        mode,
        dry_run: request.dry_run,
        started_at,
        duration_ms: 0,
        listings: EntityCounts {
            fetched: listing_rows.len(),
            written: 0,
        },
        listings_deleted: 0,
        reservations: EntityCounts {
            fetched: reservation_rows.len(),
            written: 0,
        },
        conversations: conversations.len(),
        conversations_refetched: to_fetch.len(),
        message_threads: EntityCounts {
            fetched: merges.len(),
            written: 0,
        },
    };

    Ok(Fetched {
        report,
        clock,
        listing_rows,
        listings_seen,
        reservation_rows,
        merges,
    })
}

/// The quick half of a run: writes what `fetch` read through the writers
/// (nothing on a dry run), the version rules deciding against what webhooks
/// wrote meanwhile, and reports.
pub async fn write(ctx: &SyncContext<'_>, fetched: Fetched) -> Result<SyncReport, SyncError> {
    let Fetched {
        mut report,
        clock,
        listing_rows,
        listings_seen,
        reservation_rows,
        merges,
    } = fetched;
    let account_id = report.account_id;
    ctx.progress.enter(Phase::Writing);
    if !report.dry_run {
        let present: Vec<i64> = listing_rows.iter().map(|r| r.id).collect();
        let mut changes: Vec<ListingChange> = listing_rows
            .into_iter()
            .map(ListingChange::Upsert)
            .collect();
        changes.push(ListingChange::DeleteMissing {
            account_id,
            present: present.clone(),
            version: Observed {
                source: Source::Delete,
                ..listings_seen
            }
            .version(None),
        });
        let parents = vec![crate::telemetry::current_span_context()];
        let present: HashSet<i64> = present.into_iter().collect();
        let (listings_written, reservations_written, threads_written) = futures::try_join!(
            ctx.writers.write_listings(
                WriteItem {
                    op: changes,
                    settle: Vec::new(),
                    fence: ctx.fence.clone(),
                },
                parents.clone()
            ),
            ctx.writers.write_reservations(
                WriteItem {
                    op: reservation_rows,
                    settle: Vec::new(),
                    fence: ctx.fence.clone(),
                },
                parents.clone()
            ),
            ctx.writers.write_threads(
                WriteItem {
                    op: merges,
                    settle: Vec::new(),
                    fence: ctx.fence.clone(),
                },
                parents
            ),
        )?;
        report.listings_deleted = listings_written
            .iter()
            .filter(|(_, id)| !present.contains(id))
            .count();
        report.listings.written = listings_written.len() - report.listings_deleted;
        report.reservations.written = reservations_written.len();
        report.message_threads.written = threads_written.len();
    }
    report.duration_ms = clock.elapsed().as_millis() as u64;
    tracing::info!(
        account_id,
        mode = report.mode.as_str(),
        dry_run = report.dry_run,
        listings = report.listings.fetched,
        reservations = report.reservations.fetched,
        conversations = report.conversations,
        refetched = report.conversations_refetched,
        written =
            report.listings.written + report.reservations.written + report.message_threads.written,
        duration_ms = report.duration_ms,
        "sync finished"
    );
    Ok(report)
}

/// The reservation a conversation belongs to (`reservationId`, else its
/// embedded `Reservation`).
pub(crate) fn reservation_of(conversation: &Value) -> Option<i64> {
    decode::id_field(conversation, "reservationId").or_else(|| {
        conversation
            .get("Reservation")
            .and_then(|r| decode::id_field(r, "id"))
    })
}
