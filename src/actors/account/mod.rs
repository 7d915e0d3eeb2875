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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, SpawnHandle, Supervised,
    WrapFuture,
};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tracing::Span;

mod apply;
mod messages;
mod queue;
mod syncing;

pub use self::messages::{Drain, Fetched, Reload, Requeue, Resume, RunSync, Scan, Wake};

use self::apply::apply_rows;
use self::queue::{InboxQueue, Limits, ScanFrom};
use super::doorbell::{Doorbell, QueueBudget};
use super::registrar::WebhookRegistrar;
use super::supervision::{RestartDecision, RestartTracker, contain};
use super::traced::SpanContext;
use super::writers::Writers;
use crate::context::Core;
use crate::hostaway::{AccountClient, Credentials};
use crate::store::accounts;
use crate::store::inbox::{self, InboxRow};
use crate::store::rows::Owner;
use crate::sync::progress::SyncProgress;
use crate::sync::{self, SyncError, SyncReport, SyncRequest};
use entities::account::SyncState;

struct PendingSync {
    request: SyncRequest,
    replies: Vec<oneshot::Sender<Result<SyncReport, SyncError>>>,
    trigger: SpanContext,
}

/// A sync whose fetch finished, waiting to be written as a unit.
struct FetchedSync {
    pending: PendingSync,
    fetched: sync::Fetched,
    span: Span,
    started: std::time::Instant,
    progress: Arc<SyncProgress>,
}

/// Where the account stands, beside the work in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Healthy,
    /// Working again after being degraded: one more failure degrades it at
    /// once, one success clears the record.
    HalfOpen,
    /// Past its restart limit: new events wait in the inbox until a
    /// half-open retry (`actors.degraded_retry_secs`) or a `Resume`.
    Degraded,
    /// Finishing the unit in flight, then idle for good.
    Draining,
}

struct Loaded {
    row: Option<entities::account::Model>,
    pending: Vec<InboxRow>,
    watermark: i64,
}

pub struct AccountActor {
    account_id: i64,
    core: Arc<Core>,
    writers: Writers,
    registrar: Addr<WebhookRegistrar>,
    client: Option<AccountClient>,
    owner: Owner,
    last_sync_at: Option<DateTime<Utc>>,
    /// The inbox rows held in memory and where the next scan reads.
    queue: InboxQueue,
    /// A `Reload` arrived: the account's row must be read (again).
    reload_pending: bool,
    /// Where the router leaves new rows.
    doorbell: Arc<Doorbell>,
    needs_load: bool,
    /// A write unit (or a scan) runs.
    busy: bool,
    /// A sync's fetch runs (beside the applies).
    fetching: bool,
    /// A fetched sync waits to be written.
    to_write: Option<FetchedSync>,
    syncs: VecDeque<PendingSync>,
    retry_timer: Option<SpawnHandle>,
    restarts: RestartTracker,
    resume_at: Option<tokio::time::Instant>,
    health: Health,
    /// The half-open retry of a degraded account is scheduled.
    degraded_retry: Option<SpawnHandle>,
    drained: Vec<oneshot::Sender<()>>,
    /// The account's first load looked for a sync its previous owner left
    /// unfinished (cluster mode).
    took_over: bool,
}

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
        let limits = Limits {
            max_rows: core.settings.actors.max_queued_rows.get(),
            max_bytes: core.settings.actors.max_queued_bytes,
            batch_rows: core.settings.webhooks.apply_batch_max.get(),
        };
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
            queue: InboxQueue::new(limits, budget),
            reload_pending: true,
            doorbell,
            needs_load: true,
            busy: false,
            fetching: false,
            to_write: None,
            syncs: VecDeque::new(),
            retry_timer: None,
            restarts,
            resume_at: None,
            health: Health::Healthy,
            degraded_retry: None,
            drained: Vec::new(),
            took_over: false,
        }
    }

    /// Scan from the first pending row (start, restart, half-open retry).
    fn rescan_all(&mut self) {
        self.needs_load = true;
        self.queue.rescan_all();
    }

    /// Starts the next unit of work, if any and if idle.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        if self.health == Health::Degraded {
            self.schedule_half_open(ctx);
            return;
        }
        if self.busy {
            return;
        }
        if self.health == Health::Draining {
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
            if act.health != Health::Degraded {
                return;
            }
            tracing::info!(
                account_id = act.account_id,
                "retrying a degraded account (half-open)"
            );
            act.set_degraded(false);
            act.health = Health::HalfOpen;
            act.rescan_all();
            act.drive(ctx);
        }));
    }

    fn set_degraded(&mut self, degraded: bool) {
        self.health = if degraded {
            Health::Degraded
        } else {
            Health::Healthy
        };
        self.core.directory.set_degraded(self.account_id, degraded);
        self.core
            .metrics
            .accounts_degraded
            .set(self.core.directory.degraded_count() as i64);
    }

    /// A unit of work succeeded: a half-open account is healthy again.
    fn succeeded(&mut self) {
        if self.health == Health::HalfOpen {
            tracing::info!(account_id = self.account_id, "degraded account recovered");
            self.health = Health::Healthy;
            self.restarts.reset();
        }
    }

    fn start_load(&mut self, ctx: &mut Context<Self>) {
        self.busy = true;
        let core = self.core.clone();
        let account_id = self.account_id;
        let ScanFrom { after, page } = self.queue.begin_scan();
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
            Ok::<_, sea_orm::DbErr>(Loaded {
                row,
                pending,
                watermark,
            })
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            match result {
                Ok(loaded) => {
                    if load_row {
                        match loaded.row {
                            Some(row) if row.is_active => {
                                if let Err(err) = act.adopt(&row) {
                                    tracing::error!(account_id = act.account_id, error = %err, "cannot read the account's secret");
                                }
                                act.take_over_sync(&row, ctx);
                            }
                            _ => {
                                tracing::info!(account_id = act.account_id, "account gone or inactive; stopping its actor");
                                act.queue.scan_failed();
                                act.health = Health::Draining;
                                act.drive(ctx);
                                return;
                            }
                        }
                    }
                    act.queue.end_scan(loaded.pending, loaded.watermark, page);
                    // A `Reload` during the scan asks for another.
                    act.needs_load = act.reload_pending;
                    act.drive(ctx);
                }
                Err(err) => {
                    act.queue.scan_failed();
                    tracing::warn!(account_id = act.account_id, error = %err, "inbox scan failed; retrying");
                    ctx.run_later(Duration::from_secs(1), |act, ctx| act.drive(ctx));
                }
            }
        }));
    }

    /// Cluster mode, when this replica starts acting for the account: a
    /// sync left `syncing` was interrupted by its previous owner (it died
    /// or lost the lease), and a first sync may never have started (the
    /// account was created on another replica): run it here.
    fn take_over_sync(&mut self, row: &entities::account::Model, ctx: &mut Context<Self>) {
        if self.took_over || self.core.cluster.is_none() {
            return;
        }
        self.took_over = true;
        let never_synced = row.last_sync_at.is_none();
        let first_sync_due = never_synced
            && row.sync_state == SyncState::Idle
            && self.core.settings.sync.sync_on_create;
        if row.sync_state != SyncState::Syncing && !first_sync_due {
            return;
        }
        tracing::info!(
            account_id = self.account_id,
            interrupted = row.sync_state == SyncState::Syncing,
            "running a sync this account's previous owner did not finish"
        );
        let mode = if never_synced {
            sync::SyncMode::Full
        } else {
            sync::SyncMode::Incremental
        };
        let request = SyncRequest {
            mode,
            dry_run: false,
        };
        ctx.notify(super::traced::TraceExt::traced(RunSync { request }));
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

    fn start_apply(&mut self, ctx: &mut Context<Self>) {
        let batch = self.queue.next_batch(Utc::now());
        if batch.is_empty() {
            self.schedule_retry(ctx);
            if self.queue.wants_scan() {
                self.needs_load = true;
                self.drive(ctx);
            }
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
                        act.queue.release(id);
                    }
                    for (id, attempts, retry_at) in applied.failed {
                        match retry_at {
                            Some(at) => act.queue.defer(id, attempts, at),
                            None => act.queue.release(id),
                        }
                    }
                    if !applied.fenced.is_empty() {
                        // The lease moved on: the rows are the new owner's.
                        // Forget what is held and wait; the keeper stops
                        // this actor, or it resumes under a new lease.
                        tracing::warn!(account_id = act.account_id, rows = applied.fenced.len(), error = applied.fenced_by.as_deref().unwrap_or_default(), "this replica no longer owns the account; its writes were refused");
                        act.queue.reset();
                        act.rescan_all();
                        act.resume_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
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
        let next = self.queue.next_retry_at();
        if let Some(at) = next {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            self.retry_timer = Some(ctx.run_later(wait + Duration::from_millis(1), |act, ctx| {
                act.retry_timer = None;
                act.queue.unstall();
                act.drive(ctx);
            }));
        }
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
        self.queue.reset();
        self.busy = false;
        self.fetching = false;
        self.to_write = None;
        self.rescan_all();
        self.retry_timer = None;
        self.degraded_retry = None;
        let decision = if self.health == Health::HalfOpen {
            self.health = Health::Healthy;
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
                // A draining actor stays draining: its drain still completes.
                if self.health != Health::Draining {
                    self.set_degraded(true);
                }
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
