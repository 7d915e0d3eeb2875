//! The Ingest actor (the design's "HTTP actor"): appends deliveries to the
//! webhook inbox with group commit, then wakes each account's actor with its
//! new rows. A delivery is answered only after its transaction committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::Addr;
use futures::future::LocalBoxFuture;
use sea_orm::DatabaseConnection;
use tracing::{Instrument, Span};

use super::group_commit::{BatchError, BatchJob, Committed, GroupCommit};
use super::router::{AccountRouter, Dispatch};
use super::traced::{TraceExt, context_of};
use crate::context::ClusterMember;
use crate::metrics::Metrics;
use crate::store::inbox::{self, Appended, EventStatus, InboxRow, NewEvent};
use crate::store::{InboxConnection, WriteGate};
use crate::telemetry::traceparent_of;

pub struct InboxJob {
    db: InboxConnection,
    /// Shared with the writers (SQLite's one write lock).
    gate: WriteGate,
    metrics: Arc<Metrics>,
    router: Addr<AccountRouter>,
    /// `faults.fail_inbox_event_types` (fault suite only).
    poison: Arc<Vec<String>>,
    /// In a cluster: the owners of accounts this replica does not own are
    /// woken once the append committed.
    cluster: Option<Arc<ClusterMember>>,
}

impl InboxJob {
    pub fn new(
        db: InboxConnection,
        gate: WriteGate,
        metrics: Arc<Metrics>,
        router: Addr<AccountRouter>,
        poison: Vec<String>,
        cluster: Option<Arc<ClusterMember>>,
    ) -> Self {
        InboxJob {
            db,
            gate,
            metrics,
            router,
            poison: Arc::new(poison),
            cluster,
        }
    }
}

pub type IngestActor = GroupCommit<InboxJob>;

impl BatchJob for InboxJob {
    type Item = NewEvent;
    type Output = Appended;
    const ACTOR: &'static str = "ingest";
    const ITEM_SPAN: &'static str = "inbox.append";

    fn commit(&self, items: Vec<(NewEvent, Span)>) -> LocalBoxFuture<'static, Committed<Self>> {
        let db = self.db.clone();
        let gate = self.gate.clone();
        let metrics = self.metrics.clone();
        let router = self.router.clone();
        let poison = self.poison.clone();
        let cluster = self.cluster.clone();
        let parent = items
            .first()
            .map(|(_, s)| s.clone())
            .unwrap_or_else(Span::none);
        let span = tracing::info_span!(
            parent: &parent,
            "inbox.commit",
            otel.name = "inbox.commit",
            db.operation.name = "INSERT webhook_events",
            batch.size = items.len(),
        );
        Box::pin(
            async move {
                let (mut events, spans): (Vec<NewEvent>, Vec<Span>) = items.into_iter().unzip();
                // Work done later for an event links to its own append span.
                for (event, span) in events.iter_mut().zip(&spans) {
                    event.traceparent = traceparent_of(span);
                }
                let stored = if events.iter().any(|e| poison.contains(&e.event_type)) {
                    Err(sea_orm::DbErr::Custom("injected inbox failure".into()))
                } else {
                    let _turn = gate.enter().await;
                    let _timer = metrics.db_timer("inbox_append");
                    match db.get().await {
                        Ok(db) => append(db, &events, cluster.as_deref()).await,
                        Err(err) => Err(err),
                    }
                };
                let results = match stored {
                    Ok(results) => results,
                    Err(err) => {
                        tracing::error!(error = %err, events = events.len(), "inbox append failed");
                        let error = BatchError::from_db(&err);
                        return Err((error, events.into_iter().zip(spans).collect()));
                    }
                };
                // Wake each account with its new rows, in id order.
                let mut by_account: BTreeMap<i64, (Vec<InboxRow>, Vec<Span>)> = BTreeMap::new();
                for ((event, span), result) in events.into_iter().zip(spans).zip(&results) {
                    match result {
                        Appended::Stored(id) if event.status == EventStatus::Pending => {
                            let entry = by_account.entry(event.account_id).or_default();
                            entry.0.push(InboxRow {
                                id: *id,
                                account_id: event.account_id,
                                event_type: event.event_type,
                                entity: event.entity,
                                attempts: 0,
                                next_attempt_at: None,
                                traceparent: event.traceparent,
                                received_at: event.received_at,
                                size: event.size,
                            });
                            entry.1.push(span);
                        }
                        Appended::Duplicate => metrics.webhook_duplicates.inc(),
                        Appended::Stored(_) => {}
                    }
                }
                let dispatches: Vec<_> = by_account
                    .into_iter()
                    .map(|(account_id, (mut rows, spans))| {
                        rows.sort_by_key(|r| r.id);
                        let parents = spans.iter().map(context_of).collect();
                        Dispatch { account_id, rows }.traced_by(parents)
                    })
                    .collect();
                // The accounts' actors are woken once the callers have been
                // answered: the acknowledgements (resumed on this thread
                // from the replies `GroupCommit` sends when this returns) go
                // out before the wake-ups of other threads.
                actix::spawn(async move {
                    tokio::task::yield_now().await;
                    for dispatch in dispatches {
                        router.do_send(dispatch);
                    }
                });
                Ok(results)
            }
            .instrument(span),
        )
    }
}

async fn append(
    db: &DatabaseConnection,
    events: &[NewEvent],
    cluster: Option<&ClusterMember>,
) -> Result<Vec<Appended>, sea_orm::DbErr> {
    let results = inbox::append_committed(db, events).await?;
    if let Some(member) = cluster {
        // Committed: the owners may read the rows now.
        member.announce_inbox(
            events
                .iter()
                .zip(&results)
                .filter(|(event, result)| {
                    matches!(result, Appended::Stored(_))
                        && event.status == EventStatus::Pending
                        && member.ownership.epoch(event.account_id).is_none()
                })
                .map(|(event, _)| event.account_id),
        );
    }
    Ok(results)
}
