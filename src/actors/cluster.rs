//! LeaseKeeper: keeps this replica's account leases (issue 5/7). Every
//! `heartbeat_secs` it records its heartbeat, reads the live replicas,
//! renews the leases it holds (one not renewed is lost: its account is
//! dropped at once), gives up the ones that are another replica's share now
//! and takes the free ones of its own share (`cluster::Plan`). What it holds
//! is published in `Ownership`, which the parts that act for an account read
//! (and, for a write, `store::leases::fence` re-checks in the transaction).
//! On `Leave` it releases everything at once, so the next owners need not
//! wait for the leases to lapse. Unable to renew for longer than a lease
//! (the database unreachable), it drops every account itself.

use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, Recipient, WrapFuture,
};
use sea_orm::{DatabaseConnection, DbErr};

use super::router::{AccountRouter, Notified};
use crate::cluster::Plan;
use crate::metrics::Metrics;
use crate::store::leases::{self, Lease};
use crate::store::notify::Listener;

pub use crate::context::{ClusterOptions, Ownership};

/// Accounts gained and lost in one round (sent only when something moved).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct OwnershipChanged {
    pub gained: Vec<Lease>,
    pub lost: Vec<i64>,
}

/// What one round saw and changed.
struct Round {
    live: usize,
    change: OwnershipChanged,
    /// Every account of this replica's share is held now.
    settled: bool,
}

/// Leave the cluster: release every lease and the heartbeat, then stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

/// The accounts that exist and are active (the directory's view).
pub type ActiveAccounts = Box<dyn Fn() -> Vec<i64>>;

pub struct LeaseKeeper {
    db: DatabaseConnection,
    options: ClusterOptions,
    ownership: Arc<Ownership>,
    metrics: Arc<Metrics>,
    active: ActiveAccounts,
    changes: Option<Recipient<OwnershipChanged>>,
    /// A round is running: the next tick waits for it.
    busy: bool,
    /// When the leases were last renewed (a round that reached the
    /// database).
    renewed_at: std::time::Instant,
    /// Asked to leave: answered once the leases are released.
    leaving: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl LeaseKeeper {
    pub fn new(
        db: DatabaseConnection,
        options: ClusterOptions,
        ownership: Arc<Ownership>,
        metrics: Arc<Metrics>,
        active: ActiveAccounts,
        changes: Option<Recipient<OwnershipChanged>>,
    ) -> Self {
        LeaseKeeper {
            db,
            options,
            ownership,
            metrics,
            active,
            changes,
            busy: false,
            renewed_at: std::time::Instant::now(),
            leaving: Vec::new(),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy || !self.leaving.is_empty() {
            return;
        }
        self.busy = true;
        let db = self.db.clone();
        let options = self.options.clone();
        let held = self.ownership.leases();
        let active = (self.active)();
        ctx.spawn(
            async move { round(&db, &options, &held, &active).await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.busy = false;
                    match result {
                        Ok(Round {
                            live,
                            change,
                            settled,
                        }) => {
                            act.renewed_at = std::time::Instant::now();
                            act.metrics.cluster_replicas_live.set(live as i64);
                            act.record(change);
                            act.ownership.set_settled(settled);
                        }
                        // Leases not renewed in time lapse on their own; the
                        // fence keeps writes safe meanwhile.
                        Err(err) => {
                            act.metrics.cluster_lease_renew_failures.inc();
                            tracing::warn!(
                                replica = %act.options.replica_id,
                                error = %err,
                                "could not renew the cluster leases"
                            );
                            act.give_up_if_lapsed();
                        }
                    }
                    if !act.leaving.is_empty() {
                        act.leave(ctx);
                    }
                }),
        );
    }

    /// Past `lease_secs` without a renewal every lease has lapsed (others
    /// may hold them now): drop them all at once rather than wait for the
    /// database to say so.
    fn give_up_if_lapsed(&mut self) {
        let lease = Duration::from_secs(self.options.lease_secs);
        let held = self.ownership.leases();
        if held.is_empty() || self.renewed_at.elapsed() < lease {
            return;
        }
        tracing::warn!(
            replica = %self.options.replica_id,
            accounts = held.len(),
            "no lease renewal for longer than the lease: dropping every account"
        );
        self.drop_all();
    }

    /// Publishes what a round (or a drop) changed: the ownership, the
    /// metrics, and the listener when something moved.
    fn record(&mut self, change: OwnershipChanged) {
        self.ownership.apply(&change.lost, &change.gained);
        let moved = change.lost.len() + change.gained.len();
        self.metrics.cluster_ownership_changes.inc_by(moved as u64);
        self.metrics
            .cluster_accounts_owned
            .set(self.ownership.leases().len() as i64);
        if moved > 0
            && let Some(to) = &self.changes
        {
            to.do_send(change);
        }
    }

    /// Gives up every account held (the leases are released or lapsed).
    fn drop_all(&mut self) {
        self.ownership.set_settled(false);
        let lost = self
            .ownership
            .leases()
            .iter()
            .map(|l| l.account_id)
            .collect();
        self.record(OwnershipChanged {
            gained: Vec::new(),
            lost,
        });
    }

    /// Releases every lease and the heartbeat, then stops.
    fn leave(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let me = self.options.replica_id.clone();
        ctx.wait(
            async move { leases::leave(&db, &me).await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    if let Err(err) = result {
                        tracing::warn!(error = %err, "could not release the cluster leases; they lapse");
                    }
                    act.drop_all();
                    for done in act.leaving.drain(..) {
                        let _ = done.send(());
                    }
                    actix::ActorContext::stop(ctx);
                }),
        );
    }
}

/// One heartbeat round; returns what moved.
async fn round(
    db: &DatabaseConnection,
    options: &ClusterOptions,
    held: &[Lease],
    active: &[i64],
) -> Result<Round, DbErr> {
    let me = options.replica_id.as_str();
    leases::heartbeat(db, me).await?;
    let live = leases::live_replicas(db, options.lease_secs).await?;
    let renewed = leases::renew(db, me, held, options.lease_secs).await?;
    let mut lost: Vec<i64> = held
        .iter()
        .filter(|l| !renewed.contains(l))
        .map(|l| l.account_id)
        .collect();
    if !lost.is_empty() {
        tracing::warn!(replica = me, accounts = ?lost, "cluster leases lost");
    }
    let renewed_ids: Vec<i64> = renewed.iter().map(|l| l.account_id).collect();
    let plan = Plan::new(me, &live, active, &renewed_ids);
    let release: Vec<Lease> = renewed
        .iter()
        .copied()
        .filter(|l| plan.release.contains(&l.account_id))
        .collect();
    leases::release(db, me, &release).await?;
    lost.extend(release.iter().map(|l| l.account_id));
    let gained = leases::acquire(db, me, &plan.acquire, options.lease_secs).await?;
    Ok(Round {
        live: live.len().max(1),
        settled: gained.len() == plan.acquire.len(),
        change: OwnershipChanged { gained, lost },
    })
}

impl Actor for LeaseKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
        let every = Duration::from_secs(self.options.heartbeat_secs.max(1));
        ctx.run_interval(every, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Leave> for LeaseKeeper {
    type Result = actix::ResponseFuture<()>;

    /// Answers once the leases are released (after a round in flight).
    fn handle(&mut self, _msg: Leave, ctx: &mut Context<Self>) -> Self::Result {
        let (done, wait) = tokio::sync::oneshot::channel();
        let first = self.leaving.is_empty();
        self.leaving.push(done);
        if first && !self.busy {
            self.leave(ctx);
        }
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}

/// Listens for the other replicas' notifications (`store::notify`) and
/// hands each to the router, reconnecting after a failure. Lost ones are
/// made up by the router's periodic catch-up.
pub fn listen(
    core: Arc<crate::context::Core>,
    router: actix::Addr<AccountRouter>,
) -> tokio::task::JoinHandle<()> {
    actix::spawn(async move {
        let Some(member) = core.cluster.clone() else {
            return;
        };
        loop {
            match Listener::start(&member.db, member.channels()).await {
                Ok(mut listener) => loop {
                    match listener.next().await {
                        Ok(notice) => {
                            if !router.connected() {
                                return;
                            }
                            router.do_send(Notified(notice));
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "lost the notification connection; reconnecting");
                            break;
                        }
                    }
                },
                Err(err) => {
                    tracing::warn!(error = %err, "could not listen for notifications; retrying")
                }
            }
            // After a gap the catch-up scans find what was missed.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
