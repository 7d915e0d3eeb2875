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

use super::group_commit::{BatchError, BatchJob, GroupCommit};
use crate::metrics::{Metrics, event_label};
use crate::store::rows::{ListingRow, ReservationRow, ThreadMerge};
use crate::store::{begin_write, inbox, upserts};

/// An inbox row a write settles: marked processed in the write's transaction.
#[derive(Debug, Clone)]
pub struct Settle {
    pub inbox_id: i64,
    pub event: String,
    pub received_at: DateTime<Utc>,
}

/// One caller's request: its changes plus the inbox rows they settle.
#[derive(Debug, Clone)]
pub struct WriteItem<Op> {
    pub op: Op,
    pub settle: Vec<Settle>,
}

/// A change to listings, applied in order.
#[derive(Debug, Clone)]
pub enum ListingChange {
    Upsert(ListingRow),
    Delete {
        account_id: i64,
        id: i64,
    },
    /// Soft-delete the account's live listings not in `present` (sync).
    DeleteMissing {
        account_id: i64,
        present: Vec<i64>,
    },
}

/// How one entity table is written.
pub trait EntityWrites: 'static {
    type Op: Send + Clone + Unpin + 'static;
    const ACTOR: &'static str;
    const OPERATION: &'static str;

    /// Applies every op in one transaction; the ids each op wrote, in order.
    fn apply(
        tx: &DatabaseTransaction,
        ops: Vec<&Self::Op>,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<Vec<Vec<i64>>, DbErr>>;
}

/// All ops' rows in one list, and each op's row keys (to attribute what was written).
fn flatten<T: Clone>(ops: Vec<&Vec<T>>, key: impl Fn(&T) -> i64) -> (Vec<T>, Vec<HashSet<i64>>) {
    let keys = ops.iter().map(|op| op.iter().map(&key).collect()).collect();
    (ops.into_iter().flatten().cloned().collect(), keys)
}

/// Gives each op the written ids that belong to it.
fn attribute(keys_per_op: Vec<HashSet<i64>>, written: Vec<i64>) -> Vec<Vec<i64>> {
    let mut owner: HashMap<i64, usize> = HashMap::new();
    for (index, keys) in keys_per_op.iter().enumerate() {
        for key in keys {
            owner.insert(*key, index);
        }
    }
    let mut out = vec![Vec::new(); keys_per_op.len()];
    for id in written {
        if let Some(&index) = owner.get(&id) {
            out[index].push(id);
        }
    }
    out
}

pub struct Listings;

impl EntityWrites for Listings {
    type Op = Vec<ListingChange>;
    const ACTOR: &'static str = "listing_writer";
    const OPERATION: &'static str = "write_listings";

    async fn apply(
        tx: &DatabaseTransaction,
        ops: Vec<&Self::Op>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Vec<i64>>, DbErr> {
        let mut out = Vec::with_capacity(ops.len());
        // Consecutive upserts share one statement; deletes keep their place.
        let mut pending: Vec<ListingRow> = Vec::new();
        let mut pending_owner: Vec<usize> = Vec::new();
        async fn flush(
            tx: &DatabaseTransaction,
            rows: &mut Vec<ListingRow>,
            owners: &mut Vec<usize>,
            out: &mut [Vec<i64>],
            now: DateTime<Utc>,
        ) -> Result<(), DbErr> {
            if rows.is_empty() {
                return Ok(());
            }
            let owner_of: HashMap<i64, usize> = rows
                .iter()
                .zip(owners.iter())
                .map(|(r, o)| (r.id, *o))
                .collect();
            for id in upserts::upsert_listings(tx, rows, now).await? {
                if let Some(&o) = owner_of.get(&id) {
                    out[o].push(id);
                }
            }
            rows.clear();
            owners.clear();
            Ok(())
        }
        out.resize(ops.len(), Vec::new());
        for (index, op) in ops.into_iter().enumerate() {
            for change in op {
                match change {
                    ListingChange::Upsert(row) => {
                        pending.push(row.clone());
                        pending_owner.push(index);
                    }
                    ListingChange::Delete { account_id, id } => {
                        flush(tx, &mut pending, &mut pending_owner, &mut out, now).await?;
                        let deleted =
                            upserts::soft_delete_listings(tx, *account_id, &[*id], now).await?;
                        out[index].extend(deleted);
                    }
                    ListingChange::DeleteMissing {
                        account_id,
                        present,
                    } => {
                        flush(tx, &mut pending, &mut pending_owner, &mut out, now).await?;
                        let deleted =
                            upserts::delete_missing_listings(tx, *account_id, present, now).await?;
                        out[index].extend(deleted);
                    }
                }
            }
        }
        flush(tx, &mut pending, &mut pending_owner, &mut out, now).await?;
        Ok(out)
    }
}

pub struct Reservations;

impl EntityWrites for Reservations {
    type Op = Vec<ReservationRow>;
    const ACTOR: &'static str = "reservation_writer";
    const OPERATION: &'static str = "write_reservations";

    async fn apply(
        tx: &DatabaseTransaction,
        ops: Vec<&Self::Op>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Vec<i64>>, DbErr> {
        let (rows, keys) = flatten(ops, |r| r.id);
        Ok(attribute(
            keys,
            upserts::upsert_reservations(tx, &rows, now).await?,
        ))
    }
}

pub struct MessageThreads;

impl EntityWrites for MessageThreads {
    type Op = Vec<ThreadMerge>;
    const ACTOR: &'static str = "message_thread_writer";
    const OPERATION: &'static str = "write_message_threads";

    async fn apply(
        tx: &DatabaseTransaction,
        ops: Vec<&Self::Op>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Vec<i64>>, DbErr> {
        let (merges, keys) = flatten(ops, |m| m.reservation_id);
        Ok(attribute(
            keys,
            upserts::merge_message_threads(tx, &merges, now).await?,
        ))
    }
}

/// The `BatchJob` of a writer actor.
pub struct Writer<W: EntityWrites> {
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
    backend: &'static str,
    _kind: PhantomData<W>,
}

impl<W: EntityWrites> Writer<W> {
    pub fn new(db: DatabaseConnection, metrics: Arc<Metrics>) -> Self {
        let backend = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => "postgresql",
            _ => "sqlite",
        };
        Writer {
            db,
            metrics,
            backend,
            _kind: PhantomData,
        }
    }
}

async fn commit_items<W: EntityWrites>(
    db: &DatabaseConnection,
    metrics: &Metrics,
    items: &[WriteItem<W::Op>],
) -> Result<Vec<Vec<i64>>, DbErr> {
    let _timer = metrics.db_timer(W::OPERATION);
    let tx = begin_write(db).await?;
    let now = Utc::now();
    let written = W::apply(&tx, items.iter().map(|i| &i.op).collect(), now).await?;
    let settled: Vec<i64> = items
        .iter()
        .flat_map(|i| i.settle.iter().map(|s| s.inbox_id))
        .collect();
    if !settled.is_empty() {
        inbox::mark_processed(&tx, &settled, now).await?;
    }
    tx.commit().await?;
    let applied = Utc::now();
    for settle in items.iter().flat_map(|i| i.settle.iter()) {
        let label = event_label(&settle.event);
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

impl<W: EntityWrites> BatchJob for Writer<W> {
    type Item = WriteItem<W::Op>;
    type Output = Vec<i64>;
    const ACTOR: &'static str = W::ACTOR;
    const ITEM_SPAN: &'static str = "writer.upsert";

    fn commit(
        &self,
        items: Vec<(Self::Item, Span)>,
    ) -> LocalBoxFuture<'static, Vec<Result<Self::Output, BatchError>>> {
        let db = self.db.clone();
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
                let (items, _spans): (Vec<_>, Vec<_>) = items.into_iter().unzip();
                match commit_items::<W>(&db, &metrics, &items).await {
                    Ok(written) => written.into_iter().map(Ok).collect(),
                    Err(err) if items.len() > 1 => {
                        tracing::warn!(actor = W::ACTOR, error = %err, "batch failed; committing requests one by one");
                        let mut results = Vec::with_capacity(items.len());
                        for item in &items {
                            let one = commit_items::<W>(&db, &metrics, std::slice::from_ref(item))
                                .await
                                .map(|mut w| w.pop().unwrap_or_default())
                                .map_err(|e| BatchError::Database(e.to_string()));
                            results.push(one);
                        }
                        results
                    }
                    Err(err) => vec![Err(BatchError::Database(err.to_string()))],
                }
            }
            .instrument(span),
        )
    }
}

pub type ListingWriter = GroupCommit<Writer<Listings>>;
pub type ReservationWriter = GroupCommit<Writer<Reservations>>;
pub type MessageThreadWriter = GroupCommit<Writer<MessageThreads>>;

/// The three writers, as the actors that use them see them.
#[derive(Clone)]
pub struct Writers {
    pub listings: actix::Addr<ListingWriter>,
    pub reservations: actix::Addr<ReservationWriter>,
    pub threads: actix::Addr<MessageThreadWriter>,
}

impl Writers {
    /// Starts the three writers, supervised, on `arbiter` (their own thread,
    /// so serializing rows never delays the inbox appends).
    pub fn start(
        arbiter: &actix::ArbiterHandle,
        db: &DatabaseConnection,
        metrics: &Arc<Metrics>,
        max_batch: usize,
    ) -> Self {
        use actix::Supervisor;
        let (d1, m1) = (db.clone(), metrics.clone());
        let (d2, m2) = (db.clone(), metrics.clone());
        let (d3, m3) = (db.clone(), metrics.clone());
        Writers {
            listings: Supervisor::start_in_arbiter(arbiter, move |_| {
                GroupCommit::new(Writer::<Listings>::new(d1, m1.clone()), max_batch, m1)
            }),
            reservations: Supervisor::start_in_arbiter(arbiter, move |_| {
                GroupCommit::new(Writer::<Reservations>::new(d2, m2.clone()), max_batch, m2)
            }),
            threads: Supervisor::start_in_arbiter(arbiter, move |_| {
                GroupCommit::new(Writer::<MessageThreads>::new(d3, m3.clone()), max_batch, m3)
            }),
        }
    }

    pub async fn write_listings(
        &self,
        item: WriteItem<Vec<ListingChange>>,
        parents: Vec<Span>,
    ) -> Result<Vec<i64>, BatchError> {
        submit(&self.listings, item, parents).await
    }

    pub async fn write_reservations(
        &self,
        item: WriteItem<Vec<ReservationRow>>,
        parents: Vec<Span>,
    ) -> Result<Vec<i64>, BatchError> {
        submit(&self.reservations, item, parents).await
    }

    pub async fn write_threads(
        &self,
        item: WriteItem<Vec<ThreadMerge>>,
        parents: Vec<Span>,
    ) -> Result<Vec<i64>, BatchError> {
        submit(&self.threads, item, parents).await
    }
}

/// Sends one request to a writer and waits for its commit.
async fn submit<W: EntityWrites>(
    writer: &actix::Addr<GroupCommit<Writer<W>>>,
    item: WriteItem<W::Op>,
    parents: Vec<Span>,
) -> Result<Vec<i64>, BatchError> {
    use super::traced::TraceExt;
    writer
        .send(super::group_commit::Request { item }.traced_by(parents))
        .await
        .map_err(|_| BatchError::Aborted)?
}
