//! AccountActor: one per active account. It runs one *write* unit at a time
//! (a batch of inbox rows, or a sync's writes), so every write of an account
//! is serialized while accounts proceed in parallel. A sync's slow,
//! rate-limited fetching runs beside the webhook applies; what it fetched is
//! then written as one unit, and the version rules decide against what the
//! webhooks wrote meanwhile. Inbox rows are applied in id order; the actor
//! learns of new rows from its doorbell (rung after each inbox commit) and
//! from scanning its pending rows at start and whenever rows were left to the
//! inbox, so a lost wake-up can delay an event but never lose it. At most
//! `actors.max_queued_rows` rows and `actors.max_queued_bytes` bytes are held
//! in memory; beyond that, rows stay in the inbox and are paged in as the
//! queue drains.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message,
    ResponseFuture, SpawnHandle, Supervised, WrapFuture,
};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tracing::Span;

use super::doorbell::{Doorbell, QueueBudget};
use super::registrar::{EnsureWebhook, WebhookRegistrar};
use super::supervision::{RestartDecision, RestartTracker, contain, contain_sync};
use super::traced::{TraceExt, Traced};
use super::writers::{ListingChange, Settle, WriteItem, Writers};
use crate::backoff::Backoff;
use crate::context::Core;
use crate::hostaway::webhook::{WebhookEvent, decode_event};
use crate::hostaway::{AccountClient, Credentials};
use crate::store::accounts;
use crate::store::inbox::{self, InboxRow};
use crate::store::rows::{self, Owner};
use crate::store::upserts::Key;
use crate::store::version::{Observed, Source};
use crate::sync::{self, MirrorWriter, SyncContext, SyncError, SyncReport, SyncRequest};

/// New inbox rows wait at the doorbell (sent after they are committed; at
/// most one in flight).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Dead letters put back to pending: reload them from the inbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Requeue {
    pub ids: Vec<i64>,
}

/// Run a sync; resolves with its report.
#[derive(Message)]
#[rtype(result = "Result<SyncReport, SyncError>")]
pub struct RunSync {
    pub request: SyncRequest,
}

/// The account's row changed (new secret, customer id...): reload it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

/// Leave the degraded state and resume work.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume;

/// Finish the unit of work in flight, then stay idle for good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

struct PendingSync {
    request: SyncRequest,
    replies: Vec<oneshot::Sender<Result<SyncReport, SyncError>>>,
    trigger: Span,
}

/// A sync whose fetch finished, waiting to be written as a unit.
struct FetchedSync {
    pending: PendingSync,
    fetched: sync::Fetched,
    span: Span,
    started: std::time::Instant,
}

/// Outcome of applying one batch of rows.
struct Applied {
    done: Vec<i64>,
    /// Rows that failed: id, attempts so far, retry time (None = dead letter).
    failed: Vec<(i64, i32, Option<DateTime<Utc>>)>,
    /// A handler panicked: restart after recording the failure.
    panicked: bool,
}

struct Loaded {
    row: Option<entities::account::Model>,
    pending: Vec<InboxRow>,
    watermark: i64,
    more: bool,
}

pub struct AccountActor {
    account_id: i64,
    core: Arc<Core>,
    writers: Writers,
    registrar: Addr<WebhookRegistrar>,
    client: Option<AccountClient>,
    owner: Owner,
    last_sync_at: Option<DateTime<Utc>>,
    /// Rows known to be pending, by id (bounded: see `hold`).
    queue: BTreeMap<i64, InboxRow>,
    /// Payload bytes of the rows in `queue`.
    queued_bytes: usize,
    /// Bytes every account's queue holds together.
    budget: Arc<QueueBudget>,
    /// The last scan added nothing (the queue is full of rows waiting for a
    /// retry): no scan until something leaves the queue or a retry is due.
    scan_stalled: bool,
    /// A `Reload` arrived: the account's row must be read (again).
    reload_pending: bool,
    /// A running average of row sizes, to size scan pages.
    typical_row_bytes: usize,
    /// Where the router leaves new rows.
    doorbell: Arc<Doorbell>,
    /// Highest inbox id the last scan could see; wake-ups at or below it are
    /// already covered by the scan.
    watermark: i64,
    /// The last scan stopped at a page limit: rows above `scan_cursor` are
    /// still only in the database.
    more_in_db: bool,
    scan_cursor: i64,
    needs_load: bool,
    /// A write unit (or a scan) runs.
    busy: bool,
    /// An inbox scan runs.
    loading: bool,
    /// Rows left to the inbox while a scan ran (the lowest id).
    left_while_loading: Option<i64>,
    /// A sync's fetch runs (beside the applies).
    fetching: bool,
    /// A fetched sync waits to be written.
    to_write: Option<FetchedSync>,
    syncs: VecDeque<PendingSync>,
    retry_timer: Option<SpawnHandle>,
    restarts: RestartTracker,
    resume_at: Option<tokio::time::Instant>,
    degraded: bool,
    /// The half-open retry of a degraded account is scheduled.
    degraded_retry: Option<SpawnHandle>,
    /// Working again after being degraded: one more failure degrades it at
    /// once, one success clears the record.
    half_open: bool,
    draining: bool,
    drained: Vec<oneshot::Sender<()>>,
}

/// Most rows one inbox scan reads (fewer when the queue has less room).
const SCAN_PAGE: usize = 256;

impl AccountActor {
    pub fn new(
        account_id: i64,
        core: Arc<Core>,
        writers: Writers,
        registrar: Addr<WebhookRegistrar>,
        doorbell: Arc<Doorbell>,
        budget: Arc<QueueBudget>,
    ) -> Self {
        let restarts = RestartTracker::new(&core.settings.actors);
        AccountActor {
            account_id,
            core,
            writers,
            registrar,
            client: None,
            owner: Owner {
                account_id,
                customer_id: None,
            },
            last_sync_at: None,
            queue: BTreeMap::new(),
            queued_bytes: 0,
            budget,
            scan_stalled: false,
            reload_pending: true,
            typical_row_bytes: 4096,
            doorbell,
            watermark: 0,
            // The first scan reads from the first pending row.
            more_in_db: true,
            scan_cursor: 0,
            needs_load: true,
            busy: false,
            loading: false,
            left_while_loading: None,
            fetching: false,
            to_write: None,
            syncs: VecDeque::new(),
            retry_timer: None,
            restarts,
            resume_at: None,
            degraded: false,
            degraded_retry: None,
            half_open: false,
            draining: false,
            drained: Vec::new(),
        }
    }

    /// Holds `row` in memory if the bounds allow; otherwise leaves it, and
    /// every later row, to the inbox scan.
    fn hold(&mut self, row: InboxRow) {
        if self.queue.contains_key(&row.id) {
            return;
        }
        let limits = &self.core.settings.actors;
        let in_order = !self.more_in_db || row.id <= self.scan_cursor;
        self.typical_row_bytes = (self.typical_row_bytes * 7 + row.size) / 8;
        // One row always fits an empty queue, however big it is.
        let fits = in_order
            && (self.queue.is_empty()
                || (self.queue.len() < limits.max_queued_rows
                    && self.queued_bytes + row.size <= limits.max_queued_bytes));
        if fits && self.budget.take(row.size, self.queue.is_empty()) {
            self.queued_bytes += row.size;
            self.queue.insert(row.id, row);
        } else {
            self.leave_to_scan(row.id);
        }
    }

    /// Rows from `id` on are read from the inbox by a later scan.
    fn leave_to_scan(&mut self, id: i64) {
        if self.loading {
            // The scan in flight resets the cursor: applied after it.
            self.left_while_loading = Some(self.left_while_loading.map_or(id, |l| l.min(id)));
            return;
        }
        let before = id.saturating_sub(1);
        self.scan_cursor = if self.more_in_db {
            self.scan_cursor.min(before)
        } else {
            before
        };
        self.more_in_db = true;
        // Everything above the cursor is read again by the scan, in order:
        // what is held above it goes (it is in the inbox anyway).
        let above = self.queue.split_off(&(self.scan_cursor + 1));
        for row in above.values() {
            self.queued_bytes = self.queued_bytes.saturating_sub(row.size);
            self.budget.give(row.size);
        }
    }

    /// Scan from the first pending row (start, restart, half-open retry).
    fn rescan_all(&mut self) {
        self.needs_load = true;
        self.more_in_db = true;
        self.scan_cursor = 0;
        self.scan_stalled = false;
    }

    fn release(&mut self, id: i64) {
        if let Some(row) = self.queue.remove(&id) {
            self.queued_bytes = self.queued_bytes.saturating_sub(row.size);
            self.budget.give(row.size);
            self.scan_stalled = false;
        }
    }

    /// The row and byte room left in the queue, as a scan page size (rows
    /// of the size seen so far).
    fn scan_page(&self) -> u64 {
        let limits = &self.core.settings.actors;
        let rows = limits.max_queued_rows.saturating_sub(self.queue.len());
        let bytes = limits.max_queued_bytes.saturating_sub(self.queued_bytes);
        let by_size = bytes / self.typical_row_bytes.max(1);
        rows.min(by_size).clamp(1, SCAN_PAGE) as u64
    }

    /// Starts the next unit of work, if any and if idle.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        if self.degraded {
            self.schedule_half_open(ctx);
            return;
        }
        if self.busy {
            return;
        }
        if self.draining {
            // Idle for good. The router dropped its address, so actix stops
            // this actor once nothing else refers to it; stopping it here
            // could make the supervisor restart it while an address lingers.
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
            return;
        }
        if let Some(at) = self.resume_at {
            let now = tokio::time::Instant::now();
            if at > now {
                ctx.run_later(at - now, |act, ctx| act.drive(ctx));
                return;
            }
            self.resume_at = None;
        }
        if self.needs_load {
            self.start_load(ctx);
            return;
        }
        if self.to_write.is_some() {
            self.start_sync_write(ctx);
            return;
        }
        if !self.fetching && !self.syncs.is_empty() {
            self.start_fetch(ctx);
        }
        self.start_apply(ctx);
    }

    /// A degraded account gets a half-open retry after
    /// `actors.degraded_retry_secs`.
    fn schedule_half_open(&mut self, ctx: &mut Context<Self>) {
        if self.degraded_retry.is_some() {
            return;
        }
        let after = Duration::from_secs(self.core.settings.actors.degraded_retry_secs);
        self.degraded_retry = Some(ctx.run_later(after, |act, ctx| {
            act.degraded_retry = None;
            if !act.degraded {
                return;
            }
            tracing::info!(
                account_id = act.account_id,
                "retrying a degraded account (half-open)"
            );
            act.set_degraded(false);
            act.half_open = true;
            act.rescan_all();
            act.drive(ctx);
        }));
    }

    fn set_degraded(&mut self, degraded: bool) {
        self.degraded = degraded;
        self.core.directory.set_degraded(self.account_id, degraded);
        self.core
            .metrics
            .accounts_degraded
            .set(self.core.directory.degraded_count() as i64);
    }

    /// A unit of work succeeded: a half-open account is healthy again.
    fn succeeded(&mut self) {
        if self.half_open {
            tracing::info!(account_id = self.account_id, "degraded account recovered");
            self.half_open = false;
            self.restarts.reset();
        }
    }

    fn start_load(&mut self, ctx: &mut Context<Self>) {
        self.busy = true;
        self.loading = true;
        let core = self.core.clone();
        let account_id = self.account_id;
        let after = if self.more_in_db { self.scan_cursor } else { 0 };
        let page = self.scan_page();
        let load_row = self.client.is_none() || self.reload_pending;
        self.reload_pending = false;
        let work = async move {
            let row = if load_row {
                accounts::find(&core.db, account_id).await?
            } else {
                None
            };
            let watermark = inbox::max_id_for_account(&core.db, account_id).await?;
            let pending = inbox::pending_for_account(&core.db, account_id, after, page).await?;
            let more = pending.len() as u64 >= page;
            Ok::<_, sea_orm::DbErr>(Loaded {
                row,
                pending,
                watermark,
                more,
            })
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            act.loading = false;
            let left = act.left_while_loading.take();
            match result {
                Ok(loaded) => {
                    if load_row {
                        match loaded.row {
                            Some(row) if row.is_active => {
                                if let Err(err) = act.adopt(&row) {
                                    tracing::error!(account_id = act.account_id, error = %err, "cannot read the account's secret");
                                }
                            }
                            _ => {
                                tracing::info!(account_id = act.account_id, "account gone or inactive; stopping its actor");
                                act.draining = true;
                                act.drive(ctx);
                                return;
                            }
                        }
                    }
                    let last_id = loaded.pending.last().map(|r| r.id);
                    act.watermark = act.watermark.max(loaded.watermark).max(last_id.unwrap_or(0));
                    act.more_in_db = loaded.more;
                    if let Some(last) = last_id {
                        act.scan_cursor = last;
                    }
                    let before = act.queue.len();
                    for row in loaded.pending {
                        act.hold(row);
                    }
                    act.scan_stalled = act.more_in_db && act.queue.len() == before;
                    if let Some(id) = left {
                        act.leave_to_scan(id);
                    }
                    // A `Reload` during the scan asks for another.
                    act.needs_load = act.reload_pending;
                    act.drive(ctx);
                }
                Err(err) => {
                    if let Some(id) = left {
                        act.leave_to_scan(id);
                    }
                    tracing::warn!(account_id = act.account_id, error = %err, "inbox scan failed; retrying");
                    ctx.run_later(Duration::from_secs(1), |act, ctx| act.drive(ctx));
                }
            }
        }));
    }

    /// Takes the account's credentials and settings from its stored row.
    fn adopt(&mut self, row: &entities::account::Model) -> Result<(), crate::crypto::CryptoError> {
        self.owner = Owner {
            account_id: row.account_id,
            customer_id: row.customer_id,
        };
        self.last_sync_at = row.last_sync_at;
        let secret = self.core.cipher.decrypt(&row.client_secret)?;
        self.client = Some(self.core.hostaway.account(Credentials {
            account_id: row.account_id,
            client_secret: SecretString::from(secret),
        }));
        Ok(())
    }

    /// Starts the fetch of the next sync beside the applies (no write).
    fn start_fetch(&mut self, ctx: &mut Context<Self>) {
        let Some(pending) = self.syncs.pop_front() else {
            return;
        };
        let Some(client) = self.client.clone() else {
            let error = SyncError::Unavailable("the account's secret cannot be read".into());
            for reply in pending.replies {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        };
        self.fetching = true;
        let core = self.core.clone();
        let writers = self.writers.clone();
        let owner = self.owner;
        let last_sync_at = self.last_sync_at;
        let request = pending.request;
        let account_id = self.account_id;
        let span = tracing::info_span!(
            parent: None,
            "sync.run",
            otel.name = "sync.run",
            hostaway.account_id = account_id,
            sync.mode = request.mode.as_str(),
            sync.dry_run = request.dry_run,
        );
        {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            span.add_link(pending.trigger.context().span().span_context().clone());
        }
        let started = std::time::Instant::now();
        let work = async move {
            if !request.dry_run {
                accounts::record_sync_state(&core.db, account_id, "syncing", None, None).await?;
            }
            if core
                .settings
                .faults
                .panic_on_sync_accounts
                .contains(&account_id)
            {
                panic!("injected sync panic for account {account_id}");
            }
            let context = sync_context(&core, &client, &writers, owner, last_sync_at);
            let limit = core.settings.sync.max_duration_secs;
            tokio::time::timeout(Duration::from_secs(limit), sync::fetch(&context, request))
                .await
                .unwrap_or(Err(SyncError::TimedOut(limit)))
        };
        let traced = tracing::Instrument::instrument(contain(work), span.clone());
        ctx.spawn(traced.into_actor(self).map(move |outcome, act, ctx| {
            act.fetching = false;
            match outcome {
                Ok(Ok(fetched)) => {
                    act.to_write = Some(FetchedSync {
                        pending,
                        fetched,
                        span,
                        started,
                    });
                }
                Ok(Err(error)) => act.end_sync(ctx, pending, started, Err(error)),
                Err(panic) => {
                    act.end_sync(ctx, pending, started, Err(SyncError::Panicked(panic.0)));
                    tracing::error!(
                        account_id = act.account_id,
                        "sync panicked; restarting the account actor"
                    );
                    ctx.stop();
                    return;
                }
            }
            act.drive(ctx);
        }));
    }

    /// Writes a fetched sync as one unit, serialized with the applies.
    fn start_sync_write(&mut self, ctx: &mut Context<Self>) {
        let Some(FetchedSync {
            pending,
            fetched,
            span,
            started,
        }) = self.to_write.take()
        else {
            return;
        };
        let Some(client) = self.client.clone() else {
            let error = SyncError::Unavailable("the account's secret cannot be read".into());
            self.end_sync(ctx, pending, started, Err(error));
            self.drive(ctx);
            return;
        };
        self.busy = true;
        let core = self.core.clone();
        let writers = self.writers.clone();
        let (owner, last_sync_at) = (self.owner, self.last_sync_at);
        let work = async move {
            let context = sync_context(&core, &client, &writers, owner, last_sync_at);
            sync::write(&context, fetched).await
        };
        let traced = tracing::Instrument::instrument(contain(work), span);
        ctx.spawn(traced.into_actor(self).map(move |outcome, act, ctx| {
            act.busy = false;
            match outcome {
                Ok(result) => act.end_sync(ctx, pending, started, result),
                Err(panic) => {
                    act.end_sync(ctx, pending, started, Err(SyncError::Panicked(panic.0)));
                    ctx.stop();
                    return;
                }
            }
            act.drive(ctx);
        }));
    }

    /// Records a finished (or failed) sync and answers whoever waits for it.
    fn end_sync(
        &mut self,
        ctx: &mut Context<Self>,
        pending: PendingSync,
        started: std::time::Instant,
        result: Result<SyncReport, SyncError>,
    ) {
        let mode_label = pending.request.mode.as_str();
        self.core
            .metrics
            .sync_duration
            .with_label_values(&[mode_label])
            .observe(started.elapsed().as_secs_f64());
        self.metrics_for_sync(mode_label, &result);
        if result.is_ok() {
            self.succeeded();
        }
        self.finish_sync(ctx, pending.request, &result);
        for reply in pending.replies {
            let _ = reply.send(result.clone());
        }
    }

    fn metrics_for_sync(&self, mode: &str, result: &Result<SyncReport, SyncError>) {
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.core
            .metrics
            .sync_runs
            .with_label_values(&[mode, outcome])
            .inc();
    }

    /// Records the outcome on the account (not for dry runs).
    fn finish_sync(
        &mut self,
        ctx: &mut Context<Self>,
        request: SyncRequest,
        result: &Result<SyncReport, SyncError>,
    ) {
        if request.dry_run {
            return;
        }
        let (state, error, synced_at) = match result {
            Ok(report) => {
                self.last_sync_at = Some(report.started_at);
                ("idle", None, Some(report.started_at))
            }
            Err(err) => {
                tracing::warn!(account_id = self.account_id, error = %err, "sync failed");
                ("failed", Some(err.to_string()), None)
            }
        };
        let core = self.core.clone();
        let registrar = self.registrar.clone();
        let account_id = self.account_id;
        let record = async move {
            if let Err(err) = accounts::record_sync_state(
                &core.db,
                account_id,
                state,
                error.as_deref(),
                synced_at,
            )
            .await
            {
                tracing::warn!(account_id, error = %err, "could not record the sync outcome");
            }
            if let Some(at) = synced_at {
                core.directory.set_last_sync(account_id, at);
                // Every successful sync also checks the subscription at
                // Hostaway (deleted or disabled there: repaired).
                registrar.do_send(EnsureWebhook { account_id }.traced());
            }
        };
        ctx.spawn(record.into_actor(self));
    }

    fn start_apply(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let limit = if self.more_in_db {
            self.scan_cursor
        } else {
            i64::MAX
        };
        let max = self.core.settings.webhooks.apply_batch_max;
        // A batch also stays under a quarter of the queue's byte bound: big
        // events go out a few at a time.
        let max_bytes = (self.core.settings.actors.max_queued_bytes / 4).max(1);
        let mut bytes = 0;
        let batch: Vec<InboxRow> = self
            .queue
            .range(..=limit)
            .map(|(_, row)| row)
            .filter(|row| row.next_attempt_at.is_none_or(|t| t <= now))
            .take(max)
            .take_while(|row| {
                let first = bytes == 0;
                bytes += row.size.max(1);
                first || bytes <= max_bytes
            })
            .cloned()
            .collect();
        if batch.is_empty() {
            let limits = &self.core.settings.actors;
            let room = self.queue.len() < limits.max_queued_rows
                && self.queued_bytes < limits.max_queued_bytes;
            // A queue full of rows waiting for their retry waits with them
            // (memory stays bounded); otherwise the scan reads on.
            if self.more_in_db && room && !self.scan_stalled {
                // What is known here is done or waiting for a retry: the
                // scan moves past it, so later rows never wait behind a
                // failing one (the retry timer still fires for it).
                self.schedule_retry(ctx);
                self.needs_load = true;
                self.drive(ctx);
                return;
            }
            self.schedule_retry(ctx);
            return;
        }
        self.busy = true;
        let work = apply_rows(self.core.clone(), self.writers.clone(), self.owner, batch);
        ctx.spawn(contain(work).into_actor(self).map(move |outcome, act, ctx| {
            act.busy = false;
            match outcome {
                Ok(applied) => {
                    if !applied.done.is_empty() {
                        act.succeeded();
                    }
                    for id in applied.done {
                        act.release(id);
                    }
                    for (id, attempts, retry_at) in applied.failed {
                        match retry_at {
                            Some(at) => {
                                if let Some(row) = act.queue.get_mut(&id) {
                                    row.attempts = attempts;
                                    row.next_attempt_at = Some(at);
                                }
                            }
                            None => {
                                act.release(id);
                            }
                        }
                    }
                    if applied.panicked {
                        tracing::error!(account_id = act.account_id, "an event handler panicked; restarting the account actor");
                        ctx.stop();
                        return;
                    }
                }
                Err(panic) => {
                    tracing::error!(account_id = act.account_id, error = %panic, "applying events panicked; restarting the account actor");
                    ctx.stop();
                    return;
                }
            }
            act.drive(ctx);
        }));
    }

    /// Wakes up when the earliest delayed row becomes due.
    fn schedule_retry(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.retry_timer.take() {
            ctx.cancel_future(handle);
        }
        let next = self.queue.values().filter_map(|r| r.next_attempt_at).min();
        if let Some(at) = next {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            self.retry_timer = Some(ctx.run_later(wait + Duration::from_millis(1), |act, ctx| {
                act.retry_timer = None;
                act.scan_stalled = false;
                act.drive(ctx);
            }));
        }
    }
}

/// What a sync run needs, from the account's shared services.
fn sync_context<'a>(
    core: &'a Core,
    client: &'a AccountClient,
    writers: &'a Writers,
    owner: Owner,
    last_sync_at: Option<DateTime<Utc>>,
) -> SyncContext<'a> {
    SyncContext {
        client,
        owner,
        db: &core.db,
        writers,
        settings: &core.settings.sync,
        concurrency: core.settings.hostaway.concurrency,
        metrics: &core.metrics,
        last_sync_at,
        max_future_skew: core.settings.webhooks.max_future_skew(),
    }
}

/// Decodes and applies a batch of rows through the writers; records failures.
async fn apply_rows(
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
    };
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
                let event = decode_event(&row.event_type, &row.payload)?;
                if let WebhookEvent::Reservation(data) | WebhookEvent::Message(data) = &event {
                    let key = if matches!(event, WebhookEvent::Reservation(_)) {
                        "id"
                    } else {
                        "reservationId"
                    };
                    if let Some(id) = crate::hostaway::decode::id_field(data, key) {
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
                match rows::reservation_row(owner, data, &observed) {
                    Some(r) => reservations.push((row, r, span)),
                    None => failures.push((row, "reservation without id or listingMapId".into())),
                }
            }
            Ok(Ok(WebhookEvent::Message(data))) => {
                let merges = rows::thread_merges(owner, vec![data], &observed);
                if merges.is_empty() {
                    failures.push((row, "message without id or reservationId".into()));
                } else {
                    threads.push((row, merges, span));
                }
            }
            Ok(Ok(WebhookEvent::Listing(data))) => {
                match rows::listing_row(owner, data, &observed) {
                    Some(l) => listings.push((row, ListingChange::Upsert(l), span)),
                    None => failures.push((row, "listing without an id".into())),
                }
            }
            Ok(Ok(WebhookEvent::ListingDeleted(id))) => {
                let stamp =
                    crate::hostaway::webhook::entity_of(&row.payload).and_then(rows::entity_stamp);
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
        write_group(&reservations, |items, parents| {
            let writers = writers.clone();
            async move { writers.write_reservations(items, parents).await }
        }),
        write_group(
            &threads,
            |items: WriteItem<Vec<Vec<rows::ThreadMerge>>>, parents| {
                let writers = writers.clone();
                async move {
                    let item = WriteItem {
                        op: items.op.into_iter().flatten().collect(),
                        settle: items.settle,
                    };
                    writers.write_threads(item, parents).await
                }
            }
        ),
        write_group(&listings, |items, parents| {
            let writers = writers.clone();
            async move { writers.write_listings(items, parents).await }
        }),
    );
    for (done, failed) in [r, t, l] {
        applied.done.extend(done);
        failures.extend(failed);
    }

    for (row, error) in failures {
        let attempts = row.attempts + 1;
        let max = core.settings.webhooks.max_attempts as i32;
        let retry_at = (attempts < max).then(|| Utc::now() + backoff(&core, attempts));
        core.metrics
            .webhook_apply_failures
            .with_label_values(&[crate::metrics::event_label(&row.event_type)])
            .inc();
        if retry_at.is_none() {
            core.metrics.webhook_dead_letters.inc();
            tracing::error!(account_id = row.account_id, inbox_id = row.id, event = %row.event_type, attempts, error = %error, "event dead-lettered");
        } else {
            tracing::warn!(account_id = row.account_id, inbox_id = row.id, event = %row.event_type, attempts, error = %error, "event failed; will retry");
        }
        match inbox::record_failure(&core.db, row.id, attempts, &error, retry_at).await {
            Ok(()) => applied.failed.push((row.id, attempts, retry_at)),
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

/// Writes one kind of change for a batch of rows as one request; if that
/// fails, each row alone, so only the bad rows fail.
async fn write_group<Op, F, Fut>(
    group: &[(InboxRow, Op, Span)],
    write: F,
) -> (Vec<i64>, Vec<(InboxRow, String)>)
where
    Op: Clone,
    F: Fn(WriteItem<Vec<Op>>, Vec<Span>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Key>, super::group_commit::BatchError>>,
{
    if group.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let item = |rows: &[(InboxRow, Op, Span)]| WriteItem {
        op: rows.iter().map(|(_, op, _)| op.clone()).collect(),
        settle: rows
            .iter()
            .map(|(row, _, _)| Settle {
                inbox_id: row.id,
                event: row.event_type.clone(),
                received_at: row.received_at,
            })
            .collect(),
    };
    let spans = |rows: &[(InboxRow, Op, Span)]| rows.iter().map(|(_, _, s)| s.clone()).collect();
    match write(item(group), spans(group)).await {
        Ok(_) => (group.iter().map(|(row, _, _)| row.id).collect(), Vec::new()),
        Err(err) if group.len() == 1 => (Vec::new(), vec![(group[0].0.clone(), err.to_string())]),
        Err(_) => {
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for one in group.chunks(1) {
                match write(item(one), spans(one)).await {
                    Ok(_) => done.push(one[0].0.id),
                    Err(err) => failed.push((one[0].0.clone(), err.to_string())),
                }
            }
            (done, failed)
        }
    }
}

fn backoff(core: &Core, attempts: i32) -> chrono::Duration {
    let settings = &core.settings.webhooks;
    let delay = Backoff::from_millis(settings.retry_base_ms, settings.retry_max_ms)
        .delay(attempts.max(0) as u32);
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}

impl Drop for AccountActor {
    fn drop(&mut self) {
        self.budget.give(self.queued_bytes);
    }
}

impl Actor for AccountActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        self.drive(ctx);
    }
}

impl Supervised for AccountActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.core
            .metrics
            .actor_restarts
            .with_label_values(&["account"])
            .inc();
        // Start over from the database: what was applied is marked there.
        // The context's futures are gone: a fetch in flight is abandoned.
        self.queue.clear();
        self.budget.give(self.queued_bytes);
        self.queued_bytes = 0;
        self.busy = false;
        self.loading = false;
        self.left_while_loading = None;
        self.fetching = false;
        self.to_write = None;
        self.rescan_all();
        self.retry_timer = None;
        self.degraded_retry = None;
        let decision = if std::mem::take(&mut self.half_open) {
            RestartDecision::GiveUp
        } else {
            self.restarts.record()
        };
        match decision {
            RestartDecision::Resume(delay) => {
                tracing::warn!(
                    account_id = self.account_id,
                    ?delay,
                    "account actor restarting"
                );
                self.resume_at = Some(tokio::time::Instant::now() + delay);
            }
            RestartDecision::GiveUp => {
                tracing::error!(
                    account_id = self.account_id,
                    restarts = self.restarts.recent(),
                    "account actor exceeded its restart limit; marking the account degraded"
                );
                self.set_degraded(true);
                let error = SyncError::Unavailable("account is degraded".into());
                for pending in self.syncs.drain(..) {
                    for reply in pending.replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}

impl Handler<Traced<Wake>> for AccountActor {
    type Result = ();

    fn handle(&mut self, _msg: Traced<Wake>, ctx: &mut Context<Self>) {
        let delivery = self.doorbell.take();
        for row in delivery.rows {
            if row.id > self.watermark {
                self.hold(row);
            }
        }
        if let Some(id) = delivery.overflow_from {
            self.leave_to_scan(id);
        }
        self.drive(ctx);
    }
}

impl Handler<Traced<Requeue>> for AccountActor {
    type Result = ();

    fn handle(&mut self, msg: Traced<Requeue>, ctx: &mut Context<Self>) {
        let db = self.core.db.clone();
        let ids = msg.msg.ids;
        let ids_for_scan = ids.clone();
        ctx.spawn(
            async move { inbox::rows_by_id(&db, &ids).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    match result {
                        Ok(rows) => {
                            for row in rows {
                                act.hold(row);
                            }
                        }
                        Err(err) => {
                            tracing::warn!(account_id = act.account_id, error = %err, "could not reload re-queued events; rescanning");
                            if let Some(first) = ids_for_scan.iter().min() {
                                act.leave_to_scan(*first);
                            }
                            act.needs_load = true;
                        }
                    }
                    act.drive(ctx);
                }),
        );
    }
}

impl Handler<Traced<RunSync>> for AccountActor {
    type Result = ResponseFuture<Result<SyncReport, SyncError>>;

    fn handle(&mut self, msg: Traced<RunSync>, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        if self.degraded {
            let _ = reply.send(Err(SyncError::Unavailable("account is degraded".into())));
        } else if let Some(pending) = self.syncs.iter_mut().find(|p| p.request == msg.msg.request) {
            // Same request already waiting: share its run.
            pending.replies.push(reply);
        } else {
            self.syncs.push_back(PendingSync {
                request: msg.msg.request,
                replies: vec![reply],
                trigger: msg.parent().clone(),
            });
        }
        self.drive(ctx);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(SyncError::Unavailable("the sync was interrupted".into())))
        })
    }
}

impl Handler<Traced<Reload>> for AccountActor {
    type Result = ();

    fn handle(&mut self, _msg: Traced<Reload>, ctx: &mut Context<Self>) {
        self.client = None;
        self.reload_pending = true;
        self.needs_load = true;
        self.drive(ctx);
    }
}

impl Handler<Traced<Resume>> for AccountActor {
    type Result = ();

    fn handle(&mut self, _msg: Traced<Resume>, ctx: &mut Context<Self>) {
        if self.degraded {
            tracing::info!(account_id = self.account_id, "resuming a degraded account");
            self.set_degraded(false);
            self.restarts.reset();
            self.rescan_all();
        }
        self.drive(ctx);
    }
}

impl Handler<Drain> for AccountActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (done, wait) = oneshot::channel();
        self.draining = true;
        self.drained.push(done);
        if self.degraded {
            self.degraded = false;
        }
        self.drive(ctx);
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}
