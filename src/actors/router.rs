//! AccountRouter: owns `account_id → AccountActor`. It starts an account's
//! actor (supervised, on one of the account arbiters) on first use, stops it
//! when the account is deactivated or deleted, and at start reconciles the set
//! of actors with the active accounts in the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, ArbiterHandle, Context, Handler, Message, ResponseActFuture,
    ResponseFuture, Supervised, Supervisor, WrapFuture,
};

use super::account::{AccountActor, Drain, Reload, Requeue, Resume, RunSync, Wake};
use super::doorbell::{Doorbell, QueueBudget};
use super::registrar::WebhookRegistrar;
use super::supervision::guarded;
use super::traced::{TraceExt, Traced};
use super::writers::Writers;
use crate::context::Core;
use crate::store::inbox::{self, InboxRow};
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
}

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
        if !active {
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

impl Actor for AccountRouter {
    type Context = Context<Self>;
}

impl Supervised for AccountRouter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
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
