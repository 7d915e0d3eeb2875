//! AccountRouter: owns `account_id → AccountActor`. It starts an account's
//! actor (supervised, on one of the account arbiters) on first use, stops it
//! when the account is deactivated or deleted, and at start reconciles the set
//! of actors with the active accounts in the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message,
    ResponseActFuture, ResponseFuture, Supervised, Supervisor, WrapFuture,
};

use super::account::{AccountActor, Drain, Fetched, Reload, Requeue, Resume, RunSync, Scan, Wake};
use super::cluster::OwnershipChanged;
use super::doorbell::{Doorbell, QueueBudget};
use super::registrar::EnsureWebhook;
use super::registrar::WebhookRegistrar;
use super::supervision::guarded;
use super::traced::{TraceExt, Traced};
use super::writers::Writers;
use crate::context::Core;
use crate::store::inbox::{self, InboxRow};
use crate::store::notify::{Notice, Topic};
use crate::sync::{SyncError, SyncReport, SyncRequest};

/// New inbox rows of an account.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispatch {
    pub account_id: i64,
    pub rows: Vec<InboxRow>,
}

/// Dead letters of an account were put back to pending.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequeueFor {
    pub account_id: i64,
    pub ids: Vec<i64>,
}

/// Run a sync of an account.
#[derive(Message)]
#[rtype(result = "Result<SyncReport, SyncError>")]
pub struct SyncAccount {
    pub account_id: i64,
    pub request: SyncRequest,
}

/// The account's stored row changed: start, reload or stop its actor to match.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AccountChanged {
    pub account_id: i64,
}

/// Stop an account's actor (deactivated or deleted); resolves once it drained.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccount {
    pub account_id: i64,
}

/// Start actors for every active account and for accounts with pending rows.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StartAll;

/// Drain every actor, bounded by `actors.shutdown_timeout_secs`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A notification from another replica (cluster mode).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notified(pub Notice);

/// How many AccountActors run.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ActorCount;

pub struct AccountRouter {
    core: Arc<Core>,
    writers: Writers,
    registrar: Addr<WebhookRegistrar>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    accounts: HashMap<i64, (Addr<AccountActor>, Arc<Doorbell>)>,
    /// What every account's queue and doorbell may hold together.
    budget: Arc<QueueBudget>,
    shutting_down: bool,
    /// Cluster mode: rows other replicas stored for owned accounts.
    fetch: RemoteFetch,
}

/// Cluster mode: owned accounts the other replicas stored rows for are
/// fetched together, one statement for many accounts (not a scan each), and
/// their rows handed to the actors. At most one fetch runs, and one
/// delivery per account is in flight, so what waits in mailboxes is
/// bounded by `FETCH_PER_ACCOUNT` rows per account.
#[derive(Default)]
struct RemoteFetch {
    /// Accounts announced and not fetched yet.
    due: std::collections::BTreeSet<i64>,
    /// Per account, the highest id fetched.
    cursor: HashMap<i64, i64>,
    /// Accounts whose last delivery the actor has not taken yet.
    delivering: std::collections::HashSet<i64>,
    running: bool,
    /// A fetch is scheduled `FETCH_GATHER` from now.
    gathering: bool,
}

/// Rows of one account per fetch; more are fetched by the next one.
const FETCH_PER_ACCOUNT: u64 = 64;
/// Accounts per fetch statement.
const FETCH_ACCOUNTS: usize = 200;
/// How long announcements gather before a fetch: under load one statement
/// then serves the notifications of several remote batches, not one each.
const FETCH_GATHER: Duration = Duration::from_millis(6);

impl AccountRouter {
    pub fn new(
        core: Arc<Core>,
        writers: Writers,
        registrar: Addr<WebhookRegistrar>,
        arbiters: Vec<ArbiterHandle>,
    ) -> Self {
        let budget = Arc::new(QueueBudget::new(
            core.settings.actors.max_queued_bytes_total,
        ));
        AccountRouter {
            core,
            writers,
            registrar,
            arbiters,
            next_arbiter: 0,
            accounts: HashMap::new(),
            budget,
            shutting_down: false,
            fetch: RemoteFetch::default(),
        }
    }

    /// The running actor of an active account, started if needed.
    fn actor(&mut self, account_id: i64) -> Option<Addr<AccountActor>> {
        self.actor_and_doorbell(account_id).map(|(addr, _)| addr)
    }

    /// The running actor of an active account and its doorbell.
    fn actor_and_doorbell(
        &mut self,
        account_id: i64,
    ) -> Option<(Addr<AccountActor>, Arc<Doorbell>)> {
        if self.shutting_down {
            return None;
        }
        let active = self
            .core
            .directory
            .get(account_id)
            .is_some_and(|entry| entry.active);
        // In a cluster, only the account's owner runs its actor.
        if !active || !self.core.owns(account_id) {
            return None;
        }
        if let Some((addr, doorbell)) = self.accounts.get(&account_id)
            && addr.connected()
        {
            return Some((addr.clone(), doorbell.clone()));
        }
        let core = self.core.clone();
        let writers = self.writers.clone();
        let registrar = self.registrar.clone();
        let limits = &core.settings.actors;
        let doorbell = Arc::new(Doorbell::new(
            limits.max_queued_rows.get(),
            limits.max_queued_bytes,
            self.budget.clone(),
        ));
        let (bell, budget) = (doorbell.clone(), self.budget.clone());
        let make = move |_: &mut Context<AccountActor>| {
            AccountActor::new(account_id, core, writers, registrar, bell, budget)
        };
        let addr = if self.arbiters.is_empty() {
            Supervisor::start(make)
        } else {
            let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
            self.next_arbiter += 1;
            Supervisor::start_in_arbiter(arbiter, make)
        };
        tracing::debug!(account_id, "started account actor");
        self.accounts
            .insert(account_id, (addr.clone(), doorbell.clone()));
        self.core
            .metrics
            .accounts_active
            .set(self.accounts.len() as i64);
        Some((addr, doorbell))
    }

    /// Stops an actor for good: the router drops the only address, so the
    /// supervisor does not restart it once it has drained.
    fn stop(&mut self, account_id: i64) -> Option<ResponseFuture<()>> {
        let (addr, _) = self.accounts.remove(&account_id)?;
        self.core
            .metrics
            .accounts_active
            .set(self.accounts.len() as i64);
        let request = addr.send(Drain);
        drop(addr);
        Some(Box::pin(async move {
            let _ = request.await;
        }))
    }
}

impl AccountRouter {
    /// Cluster mode's fallback for lost notifications, every heartbeat: the
    /// owned accounts whose pending rows have waited longer than two
    /// heartbeats scan their inbox from the first of them, and every
    /// `DIRECTORY_EVERY` rounds the directory is read again.
    fn catch_up(&mut self, ctx: &mut Context<Self>, round: u64) {
        let core = self.core.clone();
        let reload = round.is_multiple_of(DIRECTORY_EVERY);
        let heartbeat = core
            .cluster
            .as_ref()
            .map_or(1, |m| m.options.heartbeat_secs);
        let before = chrono::Utc::now() - chrono::Duration::seconds(2 * heartbeat as i64);
        ctx.spawn(
            async move {
                if reload {
                    match crate::store::accounts::all(&core.db).await {
                        Ok(rows) => core.directory.replace_all(&rows, &core.cipher),
                        Err(err) => {
                            tracing::warn!(error = %err, "could not reload the account directory")
                        }
                    }
                }
                inbox::waiting_since(&core.db, before).await
            }
            .into_actor(self)
            .map(move |waiting, act, _ctx| {
                if reload {
                    let gone: Vec<i64> = act
                        .accounts
                        .keys()
                        .copied()
                        .filter(|id| !act.core.directory.get(*id).is_some_and(|e| e.active))
                        .collect();
                    for id in gone {
                        if let Some(drain) = act.stop(id) {
                            actix::spawn(drain);
                        }
                    }
                }
                match waiting {
                    Ok(waiting) => {
                        for (id, first) in waiting {
                            if let Some(addr) = act.actor(id) {
                                addr.do_send(Scan { from: Some(first) });
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "could not list accounts with waiting events")
                    }
                }
            }),
        );
    }

    /// Another replica stored rows for `account_id`: fetch them soon.
    fn announced(&mut self, ctx: &mut Context<Self>, account_id: i64) {
        self.fetch.due.insert(account_id);
        self.fetch_soon(ctx);
    }

    /// Fetches the due accounts `FETCH_GATHER` from now, unless a fetch is
    /// running (it calls this again when done) or already scheduled.
    fn fetch_soon(&mut self, ctx: &mut Context<Self>) {
        if self.fetch.running || self.fetch.gathering || self.fetch.due.is_empty() {
            return;
        }
        self.fetch.gathering = true;
        ctx.run_later(FETCH_GATHER, |act, ctx| {
            act.fetch.gathering = false;
            act.fetch_due(ctx);
        });
    }

    /// Fetches the rows of the announced accounts (one statement) and hands
    /// them to their actors; runs again while accounts are due.
    fn fetch_due(&mut self, ctx: &mut Context<Self>) {
        if self.fetch.running || self.shutting_down {
            return;
        }
        let picked: Vec<i64> = self
            .fetch
            .due
            .iter()
            .copied()
            .filter(|id| !self.fetch.delivering.contains(id))
            .take(FETCH_ACCOUNTS)
            .collect();
        if picked.is_empty() {
            return;
        }
        let mut cursors = Vec::with_capacity(picked.len());
        for id in picked {
            self.fetch.due.remove(&id);
            if self.core.owns(id) {
                cursors.push((id, self.fetch.cursor.get(&id).copied().unwrap_or(0)));
            } else {
                self.fetch.cursor.remove(&id);
            }
        }
        if cursors.is_empty() {
            return;
        }
        self.fetch.running = true;
        let db = self.core.db.clone();
        let metrics = self.core.metrics.clone();
        let asked = cursors.clone();
        ctx.spawn(
            async move {
                let _timer = metrics.db_timer("inbox_fetch");
                inbox::pending_after(&db, &cursors, FETCH_PER_ACCOUNT).await
            }
                .into_actor(self)
                .map(move |fetched, act, ctx| {
                    act.fetch.running = false;
                    match fetched {
                        Ok(rows) => act.deliver_fetched(ctx, rows),
                        Err(err) => {
                            tracing::warn!(error = %err, "could not fetch rows other replicas stored; retrying");
                            act.fetch.due.extend(asked.iter().map(|(id, _)| *id));
                            ctx.run_later(Duration::from_millis(200), |act, ctx| act.fetch_due(ctx));
                            return;
                        }
                    }
                    act.fetch_soon(ctx);
                }),
        );
    }

    fn deliver_fetched(&mut self, ctx: &mut Context<Self>, rows: Vec<InboxRow>) {
        let mut by_account: HashMap<i64, Vec<InboxRow>> = HashMap::new();
        for row in rows {
            by_account.entry(row.account_id).or_default().push(row);
        }
        for (account_id, rows) in by_account {
            if rows.len() as u64 >= FETCH_PER_ACCOUNT {
                self.fetch.due.insert(account_id);
            }
            let last = rows.last().map_or(0, |r| r.id);
            let cursor = self.fetch.cursor.entry(account_id).or_default();
            *cursor = (*cursor).max(last);
            let Some(addr) = self.actor(account_id) else {
                continue;
            };
            self.fetch.delivering.insert(account_id);
            let taken = addr.send(Fetched { rows });
            ctx.spawn(taken.into_actor(self).map(move |_, act, ctx| {
                act.fetch.delivering.remove(&account_id);
                if act.fetch.due.contains(&account_id) {
                    act.fetch_soon(ctx);
                }
            }));
        }
    }

    /// Another replica changed the account's row: read it, then start,
    /// reload or stop its actor as `AccountChanged` does.
    fn reload_account(&mut self, ctx: &mut Context<Self>, account_id: i64) {
        let core = self.core.clone();
        ctx.spawn(
            async move { crate::store::accounts::find(&core.db, account_id).await }
                .into_actor(self)
                .map(move |row, act, _ctx| {
                    match row {
                        Ok(Some(row)) => act.core.directory.refresh(&row, &act.core.cipher),
                        Ok(None) => act.core.directory.remove(account_id),
                        Err(err) => {
                            tracing::warn!(account_id, error = %err, "could not reload a changed account");
                            return;
                        }
                    }
                    let active = act
                        .core
                        .directory
                        .get(account_id)
                        .is_some_and(|e| e.active);
                    if !active {
                        if let Some(drain) = act.stop(account_id) {
                            actix::spawn(drain);
                        }
                    } else if let Some(addr) = act.actor(account_id) {
                        addr.do_send(Reload.traced());
                        addr.do_send(Resume.traced());
                    }
                }),
        );
    }
}

/// An inbox notice's detail when dead letters were put back to pending on
/// another replica: the owner scans from that id (below what it has seen).
const REQUEUED_FROM: &str = "from:";

/// How many heartbeats apart cluster mode re-reads the whole directory.
const DIRECTORY_EVERY: u64 = 15;

impl Actor for AccountRouter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(member) = &self.core.cluster else {
            return;
        };
        let every = Duration::from_secs(member.options.heartbeat_secs.max(1));
        let mut round = 0u64;
        ctx.run_interval(every, move |act, ctx| {
            round += 1;
            act.catch_up(ctx, round);
        });
    }
}

impl Supervised for AccountRouter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // A restart cancels the context's futures: the fetch in flight and
        // the scheduled one with them (what they would have fetched is
        // still due, or found by the catch-up scan).
        self.fetch.running = false;
        self.fetch.gathering = false;
        self.core
            .metrics
            .actor_restarts
            .with_label_values(&["router"])
            .inc();
    }
}

impl Handler<Traced<Dispatch>> for AccountRouter {
    type Result = ();

    fn handle(&mut self, msg: Traced<Dispatch>, ctx: &mut Context<Self>) {
        guarded(
            "router",
            ctx,
            || (),
            || {
                let Traced { msg, parents } = msg;
                match self.actor_and_doorbell(msg.account_id) {
                    // One wake-up in flight is enough: later rows wait at the doorbell.
                    Some((addr, doorbell)) => {
                        if doorbell.leave(msg.rows) {
                            addr.do_send(Wake.traced_by(parents));
                        }
                    }
                    // Inactive or deleted since the append: the rows stay pending and
                    // are applied if the account is reactivated.
                    None => {
                        tracing::debug!(account_id = msg.account_id, "no active actor for new rows")
                    }
                }
            },
        )
    }
}

impl Handler<Traced<RequeueFor>> for AccountRouter {
    type Result = ();

    fn handle(&mut self, msg: Traced<RequeueFor>, ctx: &mut Context<Self>) {
        guarded(
            "router",
            ctx,
            || (),
            || {
                let Traced { msg, parents } = msg;
                if let Some(addr) = self.actor(msg.account_id) {
                    addr.do_send(Requeue { ids: msg.ids }.traced_by(parents));
                } else if let Some(member) = self.core.cluster.clone()
                    && let Some(first) = msg.ids.iter().min().copied()
                {
                    // Another replica's account: its owner scans from there.
                    let db = self.core.db.clone();
                    actix::spawn(async move {
                        let channel = member.channel(Topic::Inbox);
                        let detail = format!("{REQUEUED_FROM}{first}");
                        let sent = crate::store::notify::notify_detail(
                            &db,
                            channel,
                            msg.account_id,
                            &detail,
                        )
                        .await;
                        if let Err(err) = sent {
                            tracing::warn!(account_id = msg.account_id, error = %err, "could not tell the owner about re-queued events");
                        }
                    });
                }
            },
        )
    }
}

impl Handler<Traced<SyncAccount>> for AccountRouter {
    type Result = ResponseFuture<Result<SyncReport, SyncError>>;

    fn handle(&mut self, msg: Traced<SyncAccount>, ctx: &mut Context<Self>) -> Self::Result {
        guarded(
            "router",
            ctx,
            || -> Self::Result {
                Box::pin(async { Err(SyncError::Unavailable("the account router failed".into())) })
            },
            || {
                let Traced { msg, parents } = msg;
                let Some(addr) = self.actor(msg.account_id) else {
                    return Box::pin(async {
                        Err(SyncError::Unavailable(
                            "the account is unknown or inactive".into(),
                        ))
                    });
                };
                Box::pin(async move {
                    addr.send(
                        RunSync {
                            request: msg.request,
                        }
                        .traced_by(parents),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(SyncError::Unavailable("the account actor stopped".into()))
                    })
                })
            },
        )
    }
}

impl Handler<Traced<AccountChanged>> for AccountRouter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Traced<AccountChanged>, ctx: &mut Context<Self>) -> Self::Result {
        guarded(
            "router",
            ctx,
            || -> Self::Result { Box::pin(async {}) },
            || {
                let account_id = msg.msg.account_id;
                let active = self
                    .core
                    .directory
                    .get(account_id)
                    .is_some_and(|entry| entry.active);
                if !active {
                    return self.stop(account_id).unwrap_or_else(|| Box::pin(async {}));
                }
                if let Some(addr) = self.actor(account_id) {
                    addr.do_send(Reload.traced_by(msg.parents.clone()));
                    addr.do_send(Resume.traced_by(msg.parents));
                }
                Box::pin(async {})
            },
        )
    }
}

impl Handler<StopAccount> for AccountRouter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: StopAccount, ctx: &mut Context<Self>) -> Self::Result {
        guarded(
            "router",
            ctx,
            || -> Self::Result { Box::pin(async {}) },
            || {
                self.stop(msg.account_id)
                    .unwrap_or_else(|| Box::pin(async {}))
            },
        )
    }
}

impl Handler<StartAll> for AccountRouter {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _msg: StartAll, _ctx: &mut Context<Self>) -> Self::Result {
        let db = self.core.db.clone();
        Box::pin(
            async move { inbox::accounts_with_pending(&db).await }
                .into_actor(self)
                .map(|pending, act, _ctx| {
                    let mut ids = act.core.directory.active_ids();
                    match pending {
                        Ok(with_rows) => ids.extend(with_rows),
                        Err(err) => tracing::warn!(error = %err, "could not list accounts with pending events"),
                    }
                    ids.sort_unstable();
                    ids.dedup();
                    // Inactive accounts are skipped by `actor`.
                    ids.into_iter().filter(|id| act.actor(*id).is_some()).count()
                }),
        )
    }
}

impl Handler<Shutdown> for AccountRouter {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let ids: Vec<i64> = self.accounts.keys().copied().collect();
        let drains: Vec<_> = ids.into_iter().filter_map(|id| self.stop(id)).collect();
        let timeout = Duration::from_secs(self.core.settings.actors.shutdown_timeout_secs);
        Box::pin(
            async move {
                if tokio::time::timeout(timeout, futures::future::join_all(drains))
                    .await
                    .is_err()
                {
                    tracing::warn!(?timeout, "account actors did not drain in time");
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<OwnershipChanged> for AccountRouter {
    type Result = ();

    /// Lost accounts drain (a write still in flight is refused by its
    /// fence); gained ones start, scan their inbox from the first pending
    /// row and check their webhook registration.
    fn handle(&mut self, msg: OwnershipChanged, ctx: &mut Context<Self>) {
        guarded(
            "router",
            ctx,
            || (),
            || {
                for account_id in msg.lost {
                    self.fetch.cursor.remove(&account_id);
                    if let Some(drain) = self.stop(account_id) {
                        actix::spawn(drain);
                    }
                }
                for lease in msg.gained {
                    if self.actor(lease.account_id).is_some() {
                        self.registrar.do_send(
                            EnsureWebhook {
                                account_id: lease.account_id,
                            }
                            .traced(),
                        );
                    }
                }
            },
        )
    }
}

impl Handler<Notified> for AccountRouter {
    type Result = ();

    fn handle(&mut self, msg: Notified, ctx: &mut Context<Self>) {
        let Some(member) = self.core.cluster.clone() else {
            return;
        };
        let notice = msg.0;
        let account_id = notice.account_id;
        if notice.channel == member.channel(Topic::Accounts) {
            self.reload_account(ctx, account_id);
        } else if !self.core.owns(account_id) {
            // Another replica's account: nothing to do here.
        } else if notice.channel == member.channel(Topic::Inbox) {
            let requeued_from = notice
                .detail
                .as_deref()
                .and_then(|d| d.strip_prefix(REQUEUED_FROM))
                .and_then(|id| id.parse().ok());
            match requeued_from {
                Some(from) => {
                    if let Some(addr) = self.actor(account_id) {
                        addr.do_send(Scan { from: Some(from) });
                    }
                }
                None => self.announced(ctx, account_id),
            }
        } else if notice.channel == member.channel(Topic::Sync) {
            let Some(request) = notice.detail.as_deref().and_then(SyncRequest::from_notice) else {
                return;
            };
            if let Some(addr) = self.actor(account_id) {
                addr.do_send(RunSync { request }.traced());
            }
        }
    }
}

impl Handler<ActorCount> for AccountRouter {
    type Result = usize;

    fn handle(&mut self, _msg: ActorCount, ctx: &mut Context<Self>) -> usize {
        guarded(
            "router",
            ctx,
            || 0,
            || {
                self.accounts
                    .values()
                    .filter(|(a, _)| a.connected())
                    .count()
            },
        )
    }
}
