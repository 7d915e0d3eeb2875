//! The writer actors: `ListingWriter`, `ReservationWriter` and
//! `MessageThreadWriter`, the only code that writes entity tables. Each is a
//! `GroupCommit` whose batch is one write transaction: the rows of every queued
//! request go out in as few statements as possible, and the inbox rows those
//! requests settle are marked processed in the same transaction. If a combined
//! transaction fails, each request is retried alone, so one bad request fails
//! only its own caller.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tracing::{Instrument, Span};

use super::group_commit::{BatchError, BatchJob, Committed, GroupCommit};
use super::traced::SpanContext;
use crate::events::EventType;
use crate::metrics::Metrics;
use crate::store::rows::{ListingRow, ReservationRow, ThreadMerge};
use crate::store::upserts::{Key, Written};
use crate::store::{WriteGate, begin_write, inbox, upserts};
use crate::sync::MirrorWriter;

use crate::store::write::check_fences;
pub use crate::store::write::{Fence, ListingChange, Settle, WriteItem};

/// How one entity table is written.
pub trait EntityWrites: 'static {
    type Op: Send + Clone + Unpin + 'static;
    const ACTOR: &'static str;
    /// The `entity` label of metrics.
    const ENTITY: &'static str;
    const OPERATION: &'static str;

    /// Applies every op in one transaction: the keys each op wrote, in
    /// order, and what the whole batch wrote.
    fn apply(
        tx: &DatabaseTransaction,
        ops: Vec<&Self::Op>,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<(Vec<Vec<Key>>, Written), DbErr>>;
}

/// All ops' rows in one list, and each op's row keys (to attribute what was written).
fn flatten<T: Clone>(ops: Vec<&Vec<T>>, key: impl Fn(&T) -> Key) -> (Vec<T>, Vec<HashSet<Key>>) {
    let keys = ops.iter().map(|op| op.iter().map(&key).collect()).collect();
    (ops.into_iter().flatten().cloned().collect(), keys)
}

/// Gives each op the written keys that belong to it.
fn attribute(keys_per_op: Vec<HashSet<Key>>, written: &Written) -> Vec<Vec<Key>> {
    let mut owner: HashMap<Key, usize> = HashMap::new();
    for (index, keys) in keys_per_op.iter().enumerate() {
        for key in keys {
            owner.insert(*key, index);
        }
    }
    let mut out = vec![Vec::new(); keys_per_op.len()];
    for key in &written.keys {
        if let Some(&index) = owner.get(key) {
            out[index].push(*key);
        }
    }
    out
}

pub struct Listings;

impl EntityWrites for Listings {
    type Op = Vec<ListingChange>;
    const ACTOR: &'static str = "listing_writer";
    const ENTITY: &'static str = "listings";
    const OPERATION: &'static str = "write_listings";

    async fn apply(
        tx: &DatabaseTransaction,
        ops: Vec<&Self::Op>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Vec<Key>>, Written), DbErr> {
        let mut out: Vec<Vec<Key>> = vec![Vec::new(); ops.len()];
        let mut total = Written::default();
        // Consecutive upserts share one statement; deletes keep their place.
        let mut pending: Vec<(ListingRow, usize)> = Vec::new();
        async fn flush(
            tx: &DatabaseTransaction,
            pending: &mut Vec<(ListingRow, usize)>,
            out: &mut [Vec<Key>],
            total: &mut Written,
            now: DateTime<Utc>,
        ) -> Result<(), DbErr> {
            if pending.is_empty() {
                return Ok(());
            }
            let owner_of: HashMap<Key, usize> = pending
                .iter()
                .map(|(r, o)| ((r.owner.account_id, r.id), *o))
                .collect();
            let rows: Vec<ListingRow> = pending.drain(..).map(|(r, _)| r).collect();
            let written = upserts::upsert_listings(tx, &rows, now).await?;
            for key in &written.keys {
                if let Some(&o) = owner_of.get(key) {
                    out[o].push(*key);
                }
            }
            total.extend(written);
            Ok(())
        }
        for (index, op) in ops.into_iter().enumerate() {
            for change in op {
                let deleted = match change {
                    ListingChange::Upsert(row) => {
                        pending.push((row.clone(), index));
                        continue;
                    }
                    ListingChange::Delete {
                        account_id,
                        id,
                        version,
                    } => {
                        flush(tx, &mut pending, &mut out, &mut total, now).await?;
                        upserts::soft_delete_listings(tx, *account_id, &[*id], *version, now)
                            .await?
                    }
                    ListingChange::DeleteMissing {
                        account_id,
                        present,
                        version,
                    } => {
                        flush(tx, &mut pending, &mut out, &mut total, now).await?;
                        upserts::delete_missing_listings(tx, *account_id, present, *version, now)
                            .await?
                    }
                };
                out[index].extend(&deleted);
                total.keys.extend(deleted);
            }
        }
        flush(tx, &mut pending, &mut out, &mut total, now).await?;
        Ok((out, total))
    }
}

pub struct Reservations;

impl EntityWrites for Reservations {
    type Op = Vec<ReservationRow>;
    const ACTOR: &'static str = "reservation_writer";
    const ENTITY: &'static str = "reservations";
    const OPERATION: &'static str = "write_reservations";

    async fn apply(
        tx: &DatabaseTransaction,
        ops: Vec<&Self::Op>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Vec<Key>>, Written), DbErr> {
        let (rows, keys) = flatten(ops, |r| (r.owner.account_id, r.id));
        let written = upserts::upsert_reservations(tx, &rows, now).await?;
        Ok((attribute(keys, &written), written))
    }
}

pub struct MessageThreads;

impl EntityWrites for MessageThreads {
    type Op = Vec<ThreadMerge>;
    const ACTOR: &'static str = "message_thread_writer";
    const ENTITY: &'static str = "message_threads";
    const OPERATION: &'static str = "write_message_threads";

    async fn apply(
        tx: &DatabaseTransaction,
        ops: Vec<&Self::Op>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Vec<Key>>, Written), DbErr> {
        let (merges, keys) = flatten(ops, |m| (m.owner.account_id, m.reservation_id));
        let written = crate::store::threads::merge_message_threads(tx, &merges, now).await?;
        Ok((attribute(keys, &written), written))
    }
}

/// The `BatchJob` of a writer actor.
pub struct Writer<W: EntityWrites> {
    db: DatabaseConnection,
    gate: WriteGate,
    metrics: Arc<Metrics>,
    backend: &'static str,
    _kind: PhantomData<W>,
}

impl<W: EntityWrites> Writer<W> {
    pub fn new(db: DatabaseConnection, gate: WriteGate, metrics: Arc<Metrics>) -> Self {
        let backend = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => "postgresql",
            _ => "sqlite",
        };
        Writer {
            db,
            gate,
            metrics,
            backend,
            _kind: PhantomData,
        }
    }
}

async fn commit_items<W: EntityWrites>(
    db: &DatabaseConnection,
    gate: &WriteGate,
    metrics: &Metrics,
    items: &[&WriteItem<W::Op>],
) -> Result<Vec<Vec<Key>>, DbErr> {
    let _turn = gate.enter().await;
    let _timer = metrics.db_timer(W::OPERATION);
    // On PostgreSQL this writer's own session commits without waiting for
    // the WAL flush (`store::Committers`): the mirror is derived from the
    // inbox, which is durable; a server crash can lose only whole
    // transactions, the inbox rows they settle included, so those rows are
    // still pending and applied again (idempotently).
    let tx = begin_write(db).await?;
    check_fences(&tx, items.iter().filter_map(|i| i.fence.as_ref())).await?;
    let now = Utc::now();
    let (written, total) = W::apply(&tx, items.iter().map(|i| &i.op).collect(), now).await?;
    let settled: Vec<i64> = items
        .iter()
        .flat_map(|i| i.settle.iter().map(|s| s.inbox_id))
        .collect();
    if !settled.is_empty() {
        inbox::mark_processed(&tx, &settled, now).await?;
    }
    tx.commit().await?;
    report_written(metrics, W::ENTITY, &total);
    let applied = Utc::now();
    for settle in items.iter().flat_map(|i| i.settle.iter()) {
        let label = EventType::label(&settle.event);
        metrics
            .webhook_events_applied
            .with_label_values(&[label])
            .inc();
        let latency = (applied - settle.received_at)
            .num_microseconds()
            .unwrap_or(0)
            .max(0);
        metrics
            .webhook_apply_latency
            .with_label_values(&[label])
            .observe(latency as f64 / 1e6);
    }
    Ok(written)
}

/// Counts (and logs, once per key) ids shared with another account, and
/// clamped timestamps.
fn report_written(metrics: &Metrics, entity: &'static str, written: &Written) {
    if written.clamped > 0 {
        metrics
            .future_timestamps_clamped
            .with_label_values(&[entity])
            .inc_by(written.clamped as u64);
    }
    for (account_id, id) in &written.cross_account {
        metrics.cross_account_ids.with_label_values(&[entity]).inc();
        if first_report(entity, *account_id, *id) {
            tracing::warn!(
                entity,
                account_id,
                id,
                "this id is also held by another account; written to this account only"
            );
        }
    }
}

/// True the first time a shared id is reported (up to a bound; past it,
/// every report is logged again rather than remembered).
fn first_report(entity: &'static str, account_id: i64, id: i64) -> bool {
    use std::sync::{Mutex, OnceLock};
    const REMEMBERED: usize = 10_000;
    type Reported = HashSet<(&'static str, i64, i64)>;
    static SEEN: OnceLock<Mutex<Reported>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if seen.len() >= REMEMBERED {
        return !seen.contains(&(entity, account_id, id));
    }
    seen.insert((entity, account_id, id))
}

impl<W: EntityWrites> BatchJob for Writer<W> {
    type Item = WriteItem<W::Op>;
    type Output = Vec<Key>;
    const ACTOR: &'static str = W::ACTOR;
    const ITEM_SPAN: &'static str = "writer.upsert";
    // Off the acknowledgement's path: under concurrent load a writer waits
    // longer for company than the inbox does, so that an account actor's
    // rows share a transaction (five round trips) with other accounts'
    // even when each replica of several applies a share of the load.
    const LINGER: std::time::Duration = std::time::Duration::from_millis(4);
    const LINGER_BELOW: usize = 32;
    const LINGER_ALWAYS: bool = true;

    fn commit(&self, items: Vec<(Self::Item, Span)>) -> LocalBoxFuture<'static, Committed<Self>> {
        let db = self.db.clone();
        let gate = self.gate.clone();
        let metrics = self.metrics.clone();
        let parent = items
            .first()
            .map(|(_, s)| s.clone())
            .unwrap_or_else(Span::none);
        let span = tracing::info_span!(
            parent: &parent,
            "writer.commit",
            otel.name = W::OPERATION,
            db.system = self.backend,
            db.system.name = self.backend,
            db.operation.name = W::OPERATION,
            batch.size = items.len(),
        );
        Box::pin(
            async move {
                let requests: Vec<&WriteItem<W::Op>> = items.iter().map(|(item, _)| item).collect();
                match commit_items::<W>(&db, &gate, &metrics, &requests).await {
                    Ok(written) => Ok(written),
                    Err(err) => Err((BatchError::from_db(&err), items)),
                }
            }
            .instrument(span),
        )
    }
}

pub type ListingWriter = GroupCommit<Writer<Listings>>;
pub type ReservationWriter = GroupCommit<Writer<Reservations>>;
pub type MessageThreadWriter = GroupCommit<Writer<MessageThreads>>;

/// The writers, as the actors that use them see them.
#[derive(Clone)]
pub struct Writers {
    pub listings: actix::Addr<ListingWriter>,
    /// Each account's rows always go to the same one
    /// (`store::reservation_writers` on PostgreSQL).
    pub reservations: Vec<actix::Addr<ReservationWriter>>,
    pub threads: actix::Addr<MessageThreadWriter>,
}

impl Writers {
    /// Starts the writers, supervised, on `arbiter` (their own thread,
    /// so serializing rows never delays the inbox appends).
    pub fn start(
        arbiter: &actix::ArbiterHandle,
        committers: &crate::store::Committers,
        gate: &WriteGate,
        metrics: &Arc<Metrics>,
        max_batch: usize,
    ) -> Self {
        Writers {
            listings: start_writer::<Listings>(
                arbiter,
                &committers.listings,
                gate,
                metrics,
                max_batch,
            ),
            reservations: committers
                .reservations
                .iter()
                .map(|db| start_writer::<Reservations>(arbiter, db, gate, metrics, max_batch))
                .collect(),
            threads: start_writer::<MessageThreads>(
                arbiter,
                &committers.threads,
                gate,
                metrics,
                max_batch,
            ),
        }
    }

    /// The reservation writer of an account.
    fn reservations_of(&self, account_id: i64) -> &actix::Addr<ReservationWriter> {
        let shard = account_id.rem_euclid(self.reservations.len().max(1) as i64) as usize;
        &self.reservations[shard]
    }
}

/// Starts one writer, supervised, on `arbiter`.
fn start_writer<W: EntityWrites>(
    arbiter: &actix::ArbiterHandle,
    db: &DatabaseConnection,
    gate: &WriteGate,
    metrics: &Arc<Metrics>,
    max_batch: usize,
) -> actix::Addr<GroupCommit<Writer<W>>> {
    let (db, gate, metrics) = (db.clone(), gate.clone(), metrics.clone());
    actix::Supervisor::start_in_arbiter(arbiter, move |_| {
        GroupCommit::new(
            Writer::<W>::new(db, gate, metrics.clone()),
            max_batch,
            metrics,
        )
    })
}

impl MirrorWriter for Writers {
    fn write_listings(
        &self,
        item: WriteItem<Vec<ListingChange>>,
        parents: Vec<SpanContext>,
    ) -> LocalBoxFuture<'_, Result<Vec<Key>, BatchError>> {
        Box::pin(submit(&self.listings, item, parents))
    }

    fn write_reservations(
        &self,
        item: WriteItem<Vec<ReservationRow>>,
        parents: Vec<SpanContext>,
    ) -> LocalBoxFuture<'_, Result<Vec<Key>, BatchError>> {
        // One request holds one account's rows.
        let account_id = item
            .op
            .first()
            .map(|r| r.owner.account_id)
            .or_else(|| item.fence.as_ref().map(|f| f.lease.account_id))
            .unwrap_or(0);
        Box::pin(submit(self.reservations_of(account_id), item, parents))
    }

    fn write_threads(
        &self,
        item: WriteItem<Vec<ThreadMerge>>,
        parents: Vec<SpanContext>,
    ) -> LocalBoxFuture<'_, Result<Vec<Key>, BatchError>> {
        Box::pin(submit(&self.threads, item, parents))
    }
}

/// Sends one request to a writer and waits for its commit.
async fn submit<W: EntityWrites>(
    writer: &actix::Addr<GroupCommit<Writer<W>>>,
    item: WriteItem<W::Op>,
    parents: Vec<SpanContext>,
) -> Result<Vec<Key>, BatchError> {
    use super::traced::TraceExt;
    writer
        .send(super::group_commit::Request { item }.traced_by(parents))
        .await
        .map_err(|_| BatchError::Aborted)?
}
