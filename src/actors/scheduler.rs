//! Scheduler: asks each active account for a reconciliation sync every
//! `sync.reconcile_interval_secs`, each account at its own jittered time so
//! they never all start together (Hostaway's per-IP limit is shared).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Supervised, WrapFuture};
use chrono::Utc;
use rand::Rng;
use tokio::time::Instant;

use super::router::{AccountRouter, SyncAccount};
use super::supervision::contain_sync;
use super::traced::TraceExt;
use crate::context::Core;
use crate::store::{CHECKPOINT_EVERY, WalCheckpointer, inbox, leases};
use crate::sync::{SyncMode, SyncRequest};

/// How often processed inbox rows past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// The chore's name in `cluster_chores`.
const PRUNE_CHORE: &str = "inbox_prune";
/// A claim accepts a last run this much younger than `PRUNE_EVERY`, so a
/// replica's own ticks (which drift a little) are never refused.
const CLAIM_SLACK: Duration = Duration::from_secs(10);

pub struct Scheduler {
    core: Arc<Core>,
    router: Addr<AccountRouter>,
    /// Reconciliation syncs on (pruning runs either way).
    enabled: bool,
    due: HashMap<i64, Instant>,
    next_prune: Instant,
    /// SQLite's WAL checkpointer (`None` on PostgreSQL); locked while it
    /// runs.
    checkpointer: Option<Arc<tokio::sync::Mutex<WalCheckpointer>>>,
}

impl Scheduler {
    pub fn new(core: Arc<Core>, router: Addr<AccountRouter>, enabled: bool) -> Self {
        Scheduler {
            checkpointer: WalCheckpointer::for_settings(&core.settings.database)
                .map(|c| Arc::new(tokio::sync::Mutex::new(c))),
            core,
            router,
            enabled,
            due: HashMap::new(),
            next_prune: Instant::now(),
        }
    }

    /// Removes processed and ignored inbox rows older than the retention.
    fn prune(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if now < self.next_prune {
            return;
        }
        self.next_prune = now + PRUNE_EVERY;
        let core = self.core.clone();
        let days = i64::from(core.settings.webhooks.retention_days);
        ctx.spawn(
            async move {
                let now = Utc::now();
                let before = now - chrono::Duration::days(days);
                // Once per cluster: the replica that claims the chore prunes.
                let every =
                    chrono::Duration::from_std(PRUNE_EVERY - CLAIM_SLACK).unwrap_or_default();
                let claimed = leases::claim_chore(&core.db, PRUNE_CHORE, every, now).await;
                let pruned = match claimed {
                    Ok(true) => inbox::prune(&core.db, before).await,
                    Ok(false) => Ok(0),
                    Err(err) => Err(err),
                };
                match pruned {
                    Ok(0) => {}
                    Ok(pruned) => {
                        core.metrics.inbox_pruned.inc_by(pruned);
                        tracing::info!(
                            pruned,
                            retention_days = days,
                            "pruned processed inbox rows"
                        );
                    }
                    Err(err) => tracing::warn!(error = %err, "inbox pruning failed"),
                }
            }
            .into_actor(self),
        );
    }

    /// SQLite: copies the WAL back into the database file beside the
    /// writers (`store::WalCheckpointer`); one at a time.
    fn checkpoint(&mut self, ctx: &mut Context<Self>) {
        let Some(Ok(mut checkpointer)) = self.checkpointer.clone().map(|c| c.try_lock_owned())
        else {
            return; // not SQLite, or the previous one still runs
        };
        ctx.spawn(
            async move {
                if let Err(err) = checkpointer.run().await {
                    tracing::warn!(error = %err, "WAL checkpoint failed");
                }
            }
            .into_actor(self),
        );
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.core.settings.sync.reconcile_interval_secs.get())
    }

    /// The interval with +/- `sync.jitter_ratio` of random spread.
    fn jittered(&self) -> Duration {
        let ratio = self.core.settings.sync.jitter_ratio.get();
        let factor = if ratio > 0.0 {
            rand::rng().random_range(1.0 - ratio..=1.0 + ratio)
        } else {
            1.0
        };
        self.interval().mul_f64(factor)
    }

    /// When an account first seen now should be reconciled: one interval after
    /// its last sync, or soon (spread over up to a minute) if that has passed.
    /// An account that never synced gets its full sync when it is created; if
    /// that failed, the next try is one interval away like any failed run.
    fn first_due(&self, last_sync: Option<chrono::DateTime<Utc>>, now: Instant) -> Instant {
        let spread = self.interval().min(Duration::from_secs(60));
        let soon = now + spread.mul_f64(rand::rng().random_range(0.0..=1.0));
        match last_sync {
            Some(at) => {
                let since = (Utc::now() - at).to_std().unwrap_or(Duration::ZERO);
                match self.jittered().checked_sub(since) {
                    Some(left) if !left.is_zero() => now + left,
                    _ => soon,
                }
            }
            None => now + self.jittered(),
        }
    }

    fn tick(&mut self) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let active = self.core.directory.active();
        let ids: std::collections::HashSet<i64> = active.iter().map(|e| e.account_id).collect();
        self.due.retain(|id, _| ids.contains(id));
        for entry in active {
            // In a cluster only an account's owner reconciles it.
            if entry.degraded || !self.core.owns(entry.account_id) {
                self.due.remove(&entry.account_id);
                continue;
            }
            let due = match self.due.get(&entry.account_id) {
                Some(due) => *due,
                None => {
                    let due = self.first_due(entry.last_sync_at, now);
                    self.due.insert(entry.account_id, due);
                    due
                }
            };
            if due <= now {
                let span = tracing::info_span!(
                    "scheduler.reconcile",
                    hostaway.account_id = entry.account_id
                );
                let _entered = span.enter();
                self.router.do_send(
                    SyncAccount {
                        account_id: entry.account_id,
                        request: SyncRequest {
                            mode: SyncMode::Incremental,
                            dry_run: false,
                        },
                    }
                    .traced(),
                );
                self.due.insert(entry.account_id, now + self.jittered());
            }
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let tick = Duration::from_millis(self.core.settings.sync.scheduler_tick_ms.max(10));
        ctx.run_interval(tick, |act, ctx| {
            if let Err(panic) = contain_sync(|| act.tick()) {
                tracing::error!(error = %panic, "scheduler tick panicked; restarting");
                ctx.stop();
                return;
            }
            act.prune(ctx);
        });
        ctx.run_interval(CHECKPOINT_EVERY, |act, ctx| act.checkpoint(ctx));
    }
}

impl Supervised for Scheduler {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.core
            .metrics
            .actor_restarts
            .with_label_values(&["scheduler"])
            .inc();
    }
}
