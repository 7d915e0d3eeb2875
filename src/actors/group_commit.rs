//! Group commit, written once: an actor that queues requests from many callers
//! and commits them together (one transaction, one statement where possible),
//! then answers each caller with its own result. While one commit runs, new
//! requests queue up and go out in the next one, so batches grow with load and
//! a lone request is committed at once (under concurrent load a small batch
//! lingers a moment for company: `BatchJob::LINGER`). The inbox (Ingest
//! actor) and the entity writers are all `GroupCommit<J>` with their
//! own `BatchJob`.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseFuture,
    SpawnHandle, Supervised, WrapFuture,
};
use futures::future::LocalBoxFuture;
use tokio::sync::oneshot;
use tracing::Span;

use super::supervision::contain;
use super::traced::{SpanContext, Traced, adopt};
use crate::metrics::Metrics;

pub use crate::store::write::BatchError;
use crate::store::write::all_or_each;

/// One kind of batched work.
pub trait BatchJob: 'static {
    type Item: Send + Unpin + 'static;
    type Output: Send + Unpin + 'static;
    /// Actor kind, for metrics and logs.
    const ACTOR: &'static str;
    /// Exported name of the per-request span.
    const ITEM_SPAN: &'static str;
    /// Under concurrent load (the previous batch carried more than one
    /// request) a batch of fewer than `LINGER_BELOW` requests waits up to
    /// `LINGER` for more to join it, so that a share of the load (one of
    /// several replicas) is still committed in batches; a lone caller is
    /// committed at once.
    const LINGER: Duration = Duration::from_millis(1);
    const LINGER_BELOW: usize = 8;
    /// Linger even when the previous batch was a lone request: for work off
    /// the acknowledgement's path, where a few milliseconds of delay cost
    /// nothing and a transaction per request at a low, steady rate costs
    /// CPU the acknowledgements need.
    const LINGER_ALWAYS: bool = false;

    /// Commits `items` (each with its own span) together: one output per
    /// item, in order, or the error with the items handed back untouched, so
    /// that `GroupCommit` can commit them one by one.
    fn commit(&self, items: Vec<(Self::Item, Span)>) -> LocalBoxFuture<'static, Committed<Self>>;
}

/// What one commit of a batch produced.
pub type Committed<J> =
    Result<Vec<<J as BatchJob>::Output>, (BatchError, Vec<(<J as BatchJob>::Item, Span)>)>;

/// Commits `items` together; if that fails, each alone (`all_or_each`).
async fn commit_with_split<J: BatchJob>(
    job: Rc<J>,
    items: Vec<(J::Item, Span)>,
) -> Vec<Result<J::Output, BatchError>> {
    all_or_each(J::ACTOR, items, |items| job.commit(items)).await
}

struct Pending<J: BatchJob> {
    item: J::Item,
    parents: Vec<SpanContext>,
    reply: oneshot::Sender<Result<J::Output, BatchError>>,
}

pub struct GroupCommit<J: BatchJob> {
    job: Rc<J>,
    queue: VecDeque<Pending<J>>,
    committing: bool,
    max_batch: usize,
    /// Size of the batch committed last (0 before the first).
    last_batch: usize,
    /// The pending linger timer, while a small batch waits for company.
    lingering: Option<SpawnHandle>,
    metrics: Arc<Metrics>,
}

impl<J: BatchJob> GroupCommit<J> {
    pub fn new(job: J, max_batch: usize, metrics: Arc<Metrics>) -> Self {
        GroupCommit {
            job: Rc::new(job),
            queue: VecDeque::new(),
            committing: false,
            max_batch: max_batch.max(1),
            last_batch: 0,
            lingering: None,
            metrics,
        }
    }

    /// Commits the queue's head now, or lingers a moment while the load is
    /// concurrent and the batch small.
    fn commit_next(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.queue.is_empty() {
            return;
        }
        if (J::LINGER_ALWAYS || self.last_batch > 1)
            && self.queue.len() < J::LINGER_BELOW.min(self.max_batch)
        {
            if self.lingering.is_none() {
                self.lingering = Some(ctx.run_later(J::LINGER, |act, ctx| {
                    act.lingering = None;
                    act.commit_now(ctx);
                }));
            }
            return;
        }
        if let Some(timer) = self.lingering.take() {
            ctx.cancel_future(timer);
        }
        self.commit_now(ctx);
    }

    fn commit_now(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.queue.is_empty() {
            return;
        }
        self.committing = true;
        let take = self.queue.len().min(self.max_batch);
        self.last_batch = take;
        self.metrics
            .group_commit_batch
            .with_label_values(&[J::ACTOR])
            .observe(take as f64);
        let batch: Vec<Pending<J>> = self.queue.drain(..take).collect();
        let mut replies = Vec::with_capacity(batch.len());
        let mut items = Vec::with_capacity(batch.len());
        for pending in batch {
            let span = tracing::info_span!(
                parent: None,
                "group_commit.item",
                otel.name = J::ITEM_SPAN,
                actor = J::ACTOR,
                batch.size = take,
            );
            adopt(&span, &pending.parents);
            items.push((pending.item, span));
            replies.push(pending.reply);
        }
        let work = contain(commit_with_split(self.job.clone(), items));
        ctx.spawn(work.into_actor(self).map(move |outcome, act, ctx| {
            act.committing = false;
            match outcome {
                Ok(results) => {
                    let mut results = results.into_iter();
                    for reply in replies {
                        let result = results.next().unwrap_or(Err(BatchError::Aborted));
                        let _ = reply.send(result);
                    }
                    act.commit_next(ctx);
                }
                Err(panic) => {
                    tracing::error!(actor = J::ACTOR, error = %panic, "commit panicked; restarting");
                    for reply in replies {
                        let _ = reply.send(Err(BatchError::Panicked(panic.0.clone())));
                    }
                    // The supervisor restarts us; the queue survives the restart.
                    ctx.stop();
                }
            }
        }));
    }
}

impl<J: BatchJob> Actor for GroupCommit<J> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.commit_next(ctx);
    }
}

impl<J: BatchJob> Supervised for GroupCommit<J> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.committing = false;
        self.lingering = None;
        self.metrics
            .actor_restarts
            .with_label_values(&[J::ACTOR])
            .inc();
        tracing::warn!(actor = J::ACTOR, "restarting");
    }
}

/// The request a caller awaits.
pub struct Request<J: BatchJob> {
    pub item: J::Item,
}

impl<J: BatchJob> Message for Request<J> {
    type Result = Result<J::Output, BatchError>;
}

impl<J: BatchJob> Handler<Traced<Request<J>>> for GroupCommit<J> {
    type Result = ResponseFuture<Result<J::Output, BatchError>>;

    fn handle(&mut self, msg: Traced<Request<J>>, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.queue.push_back(Pending {
            item: msg.msg.item,
            parents: msg.parents,
            reply,
        });
        self.commit_next(ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(BatchError::Aborted)) })
    }
}
