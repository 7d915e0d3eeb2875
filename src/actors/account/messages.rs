//! What an AccountActor is asked to do, and how it takes each request: it
//! records the request in its state and lets `drive` decide what runs next.

use actix::{ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseFuture, WrapFuture};
use tokio::sync::oneshot;

use super::{AccountActor, Health, PendingSync};
use crate::actors::traced::Traced;
use crate::store::inbox::{self, InboxRow};
use crate::sync::{SyncError, SyncReport, SyncRequest};

/// New inbox rows wait at the doorbell (sent after they are committed; at
/// most one in flight).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Rows may have been stored that no doorbell announced (another replica
/// took them in): read the inbox past what this actor has seen, or from
/// `from` on (rows another replica put back to pending).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Scan {
    pub from: Option<i64>,
}

/// Pending rows another replica stored, fetched for this account by the
/// router (cluster mode).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fetched {
    pub rows: Vec<InboxRow>,
}

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

impl Handler<Traced<Wake>> for AccountActor {
    type Result = ();

    fn handle(&mut self, _msg: Traced<Wake>, ctx: &mut Context<Self>) {
        self.queue.take_new(self.doorbell.take());
        self.drive(ctx);
    }
}

impl Handler<Scan> for AccountActor {
    type Result = ();

    fn handle(&mut self, msg: Scan, ctx: &mut Context<Self>) {
        match msg.from {
            Some(id) => self.queue.leave_to_scan(id),
            None => self.queue.scan_new(),
        }
        self.needs_load = true;
        self.drive(ctx);
    }
}

impl Handler<Fetched> for AccountActor {
    type Result = ();

    fn handle(&mut self, msg: Fetched, ctx: &mut Context<Self>) {
        self.queue.take_fetched(msg.rows);
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
                                act.queue.hold(row);
                            }
                        }
                        Err(err) => {
                            tracing::warn!(account_id = act.account_id, error = %err, "could not reload re-queued events; rescanning");
                            if let Some(first) = ids_for_scan.iter().min() {
                                act.queue.leave_to_scan(*first);
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
        if self.health == Health::Degraded {
            let _ = reply.send(Err(SyncError::Unavailable("account is degraded".into())));
        } else if let Some(pending) = self.syncs.iter_mut().find(|p| p.request == msg.msg.request) {
            // Same request already waiting: share its run.
            pending.replies.push(reply);
        } else {
            self.syncs.push_back(PendingSync {
                request: msg.msg.request,
                replies: vec![reply],
                trigger: msg.parent(),
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
        if self.health == Health::Degraded {
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
        self.health = Health::Draining;
        self.drained.push(done);
        self.drive(ctx);
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}
