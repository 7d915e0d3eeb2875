//! Applying a batch of inbox rows: decode each, group the changes by entity
//! table, write each group through its writer (one request; if it fails,
//! each row alone, so only bad rows fail), and decide the fate of each
//! failed row (retry with backoff, or dead letter). Plain async functions:
//! the actor runs them one batch at a time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Span;

use crate::actors::supervision::contain_sync;
use crate::actors::traced::{SpanContext, context_of};
use crate::actors::writers::{ListingChange, Settle, WriteItem, Writers};
use crate::backoff::Backoff;
use crate::context::Core;
use crate::events::EventType;
use crate::hostaway::webhook::{WebhookEvent, decode_event};
use crate::store::inbox::{self, InboxRow};
use crate::store::rows::{self, Owner};
use crate::store::upserts::Key;
use crate::store::version::{Observed, Source};
use crate::store::write::{BatchError, FENCED, Fence, all_or_each, check_fences};
use crate::sync::MirrorWriter;

/// Outcome of applying one batch of rows.
pub(super) struct Applied {
    pub done: Vec<i64>,
    /// Rows that failed: id, attempts so far, retry time (None = dead letter).
    pub failed: Vec<(i64, i32, Option<DateTime<Utc>>)>,
    /// A handler panicked: restart after recording the failure.
    pub panicked: bool,
    /// Cluster mode: this replica lost the account's lease. The rows it
    /// could not write stay pending, untouched, for the new owner.
    pub fenced: Vec<i64>,
    /// Why (the fence's refusal), when `fenced` is not empty.
    pub fenced_by: Option<String>,
}

/// Decodes and applies a batch of rows through the writers; records failures.
pub(super) async fn apply_rows(
    core: Arc<Core>,
    writers: Writers,
    owner: Owner,
    rows: Vec<InboxRow>,
) -> Applied {
    if core.settings.faults.slow_apply_ms > 0 {
        tokio::time::sleep(Duration::from_millis(core.settings.faults.slow_apply_ms)).await;
    }
    let mut applied = Applied {
        done: Vec::new(),
        failed: Vec::new(),
        panicked: false,
        fenced: Vec::new(),
        fenced_by: None,
    };
    let fence = core.fence(owner.account_id);
    let faults = &core.settings.faults;
    let mut reservations: Vec<(InboxRow, rows::ReservationRow, Span)> = Vec::new();
    let mut threads: Vec<(InboxRow, Vec<rows::ThreadMerge>, Span)> = Vec::new();
    let mut listings: Vec<(InboxRow, ListingChange, Span)> = Vec::new();
    let mut failures: Vec<(InboxRow, String)> = Vec::new();
    let max_future_skew = core.settings.webhooks.max_future_skew();

    for row in rows {
        let observed = Observed {
            seen: row.received_at,
            source: Source::Webhook,
            max_future_skew,
        };
        let span = tracing::info_span!(
            parent: None,
            "account.apply",
            otel.name = "account.apply",
            hostaway.account_id = row.account_id,
            hostaway.event = %row.event_type,
            inbox.event_id = row.id,
            inbox.attempt = row.attempts + 1,
        );
        crate::telemetry::set_remote_parent(&span, row.traceparent.as_deref());
        let decoded = span.in_scope(|| {
            contain_sync(|| -> Result<WebhookEvent, String> {
                let event = decode_event(&row.event_type, row.entity.as_deref())?;
                if let WebhookEvent::Reservation(data) | WebhookEvent::Message(data) = &event {
                    let key = if matches!(event, WebhookEvent::Reservation(_)) {
                        "id"
                    } else {
                        "reservationId"
                    };
                    if let Some(id) = crate::hostaway::decode::id_field(&data.fields, key) {
                        if faults.panic_on_reservation_ids.contains(&id) {
                            panic!("injected panic applying reservation {id}");
                        }
                        if faults.fail_on_reservation_ids.contains(&id) {
                            return Err(format!("injected failure applying reservation {id}"));
                        }
                    }
                }
                Ok(event)
            })
        });
        match decoded {
            Err(panic) => {
                applied.panicked = true;
                failures.push((row, panic.to_string()));
            }
            Ok(Err(reason)) => failures.push((row, reason)),
            Ok(Ok(WebhookEvent::Reservation(data))) => {
                match rows::reservation_row_with(owner, data, &observed) {
                    Some(r) => reservations.push((row, r, span)),
                    None => failures.push((row, "reservation without id or listingMapId".into())),
                }
            }
            Ok(Ok(WebhookEvent::Message(data))) => {
                let merges = rows::thread_merges(owner, vec![data.fields.clone()], &observed);
                if merges.is_empty() {
                    failures.push((row, "message without id or reservationId".into()));
                } else {
                    threads.push((row, merges, span));
                }
            }
            Ok(Ok(WebhookEvent::Listing(data))) => {
                match rows::listing_row_with(owner, data, &observed) {
                    Some(l) => listings.push((row, ListingChange::Upsert(l), span)),
                    None => failures.push((row, "listing without an id".into())),
                }
            }
            Ok(Ok(WebhookEvent::ListingDeleted(id))) => {
                let stamp = row
                    .entity
                    .as_ref()
                    .and_then(|e| rows::entity_stamp(&e.fields));
                let version = Observed {
                    source: Source::Delete,
                    ..observed
                }
                .version(stamp);
                listings.push((
                    row,
                    ListingChange::Delete {
                        account_id: owner.account_id,
                        id,
                        version,
                    },
                    span,
                ))
            }
        }
    }

    let (r, t, l) = futures::join!(
        write_group(&reservations, &fence, |items, parents| {
            let writers = writers.clone();
            async move { writers.write_reservations(items, parents).await }
        }),
        write_group(
            &threads,
            &fence,
            |items: WriteItem<Vec<Vec<rows::ThreadMerge>>>, parents| {
                let writers = writers.clone();
                async move {
                    let item = WriteItem {
                        op: items.op.into_iter().flatten().collect(),
                        settle: items.settle,
                        fence: items.fence,
                    };
                    writers.write_threads(item, parents).await
                }
            }
        ),
        write_group(&listings, &fence, |items, parents| {
            let writers = writers.clone();
            async move { writers.write_listings(items, parents).await }
        }),
    );
    let mut unreachable = Vec::new();
    for (done, failed) in [r, t, l] {
        applied.done.extend(done);
        for (row, error) in failed {
            match error {
                // Not the event's fault: no attempt is counted (an outage
                // must not dead-letter what it interrupted); again shortly.
                BatchError::Unavailable(_) => unreachable.push((row, error)),
                error => failures.push((row, error.to_string())),
            }
        }
    }
    if let Some((_, error)) = unreachable.first() {
        tracing::warn!(account_id = owner.account_id, rows = unreachable.len(), error = %error, "database unavailable; the events will be retried");
        let again = Utc::now() + chrono::Duration::seconds(1);
        for (row, _) in &unreachable {
            applied.failed.push((row.id, row.attempts, Some(again)));
        }
    }

    for (row, error) in failures {
        if error.starts_with(FENCED) {
            applied.fenced.push(row.id);
            applied.fenced_by.get_or_insert(error);
            continue;
        }
        let attempts = row.attempts + 1;
        let max = core.settings.webhooks.max_attempts.get() as i32;
        let retry_at = (attempts < max).then(|| Utc::now() + backoff(&core, attempts));
        core.metrics
            .webhook_apply_failures
            .with_label_values(&[EventType::label(&row.event_type)])
            .inc();
        if retry_at.is_none() {
            core.metrics.webhook_dead_letters.inc();
            tracing::error!(account_id = row.account_id, inbox_id = row.id, event = %row.event_type, attempts, error = %error, "event dead-lettered");
        } else {
            tracing::warn!(account_id = row.account_id, inbox_id = row.id, event = %row.event_type, attempts, error = %error, "event failed; will retry");
        }
        match record_failure(&core, fence.as_ref(), &row, attempts, &error, retry_at).await {
            Ok(()) => applied.failed.push((row.id, attempts, retry_at)),
            Err(err) if BatchError::from_db(&err).is_fenced() => {
                applied.fenced.push(row.id);
                applied.fenced_by.get_or_insert(err.to_string());
            }
            // Not recorded: leave it pending and try again shortly.
            Err(err) => {
                tracing::warn!(inbox_id = row.id, error = %err, "could not record the failure");
                applied.failed.push((
                    row.id,
                    row.attempts,
                    Some(Utc::now() + chrono::Duration::seconds(1)),
                ));
            }
        }
    }
    applied
}

/// Records a failed attempt at `row`; in cluster mode under the account's
/// fence, so a replica that lost the account cannot dead-letter a row its
/// new owner is applying.
async fn record_failure(
    core: &Core,
    fence: Option<&Fence>,
    row: &InboxRow,
    attempts: i32,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), sea_orm::DbErr> {
    let Some(fence) = fence else {
        return inbox::record_failure(&core.db, row.id, attempts, error, retry_at).await;
    };
    let tx = crate::store::begin_write(&core.db).await?;
    check_fences(&tx, std::iter::once(fence)).await?;
    inbox::record_failure(&tx, row.id, attempts, error, retry_at).await?;
    tx.commit().await
}

/// Writes one kind of change for a batch of rows as one request; if it is
/// refused, each row alone (`all_or_each`), so only the bad rows fail.
async fn write_group<Op, F, Fut>(
    group: &[(InboxRow, Op, Span)],
    fence: &Option<Fence>,
    write: F,
) -> (Vec<i64>, Vec<(InboxRow, BatchError)>)
where
    Op: Clone,
    F: Fn(WriteItem<Vec<Op>>, Vec<SpanContext>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Key>, BatchError>>,
{
    if group.is_empty() {
        return (Vec::new(), Vec::new());
    }
    // Batches are built over indices into `group`: nothing is cloned but
    // what each request carries.
    let item = |picked: &[usize]| WriteItem {
        fence: fence.clone(),
        op: picked.iter().map(|&i| group[i].1.clone()).collect(),
        settle: picked
            .iter()
            .map(|&i| Settle {
                inbox_id: group[i].0.id,
                event: group[i].0.event_type.clone(),
                received_at: group[i].0.received_at,
            })
            .collect(),
    };
    let spans = |picked: &[usize]| picked.iter().map(|&i| context_of(&group[i].2)).collect();
    let results = all_or_each(
        "account_rows",
        (0..group.len()).collect(),
        |picked: Vec<usize>| {
            let written = write(item(&picked), spans(&picked));
            async move {
                match written.await {
                    Ok(_) => Ok(vec![(); picked.len()]),
                    Err(err) => Err((err, picked)),
                }
            }
        },
    )
    .await;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for ((row, _, _), result) in group.iter().zip(results) {
        match result {
            Ok(()) => done.push(row.id),
            Err(err) => failed.push((row.clone(), err)),
        }
    }
    (done, failed)
}

fn backoff(core: &Core, attempts: i32) -> chrono::Duration {
    let settings = &core.settings.webhooks;
    let delay = Backoff::from_millis(settings.retry_base_ms, settings.retry_max_ms)
        .delay(attempts.max(0) as u32);
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}
