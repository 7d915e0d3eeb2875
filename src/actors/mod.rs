//! The actor system, wired in one place. Every long-lived actor runs under an
//! actix `Supervisor`; handlers contain panics (see `supervision`) so a
//! failing actor stops itself and is restarted with its state reset.
//!
//! ```text
//! System arbiter
//! ├─ Supervisor ─ ListingWriter        ┐ GroupCommit<Writer<_>>: the only writers of
//! ├─ Supervisor ─ ReservationWriter    ├ entity tables (on the writer arbiter)
//! ├─ Supervisor ─ MessageThreadWriter  ┘
//! ├─ Supervisor ─ WebhookRegistrar       subscriptions at Hostaway
//! ├─ Supervisor ─ AccountRouter          account_id → AccountActor
//! │                └─ Supervisor ─ AccountActor × N   (on the account arbiters)
//! ├─ Supervisor ─ IngestActor            GroupCommit<InboxJob>: durable inbox appends
//! ├─ Supervisor ─ Scheduler              periodic reconciliation syncs, inbox pruning
//! └─ LeaseKeeper + listener task         cluster mode only: account leases, NOTIFY wake-ups
//! ```

pub mod account;
pub mod cluster;
pub mod doorbell;
pub mod group_commit;
pub mod ingest;
pub mod registrar;
pub mod router;
pub mod scheduler;
pub mod supervision;
pub mod traced;
pub mod writers;

use std::sync::Arc;

use actix::{Actor, Addr, Arbiter, Supervisor};

use crate::context::Core;
use crate::store::WriteGate;
use cluster::{LeaseKeeper, Leave};
use group_commit::GroupCommit;
use ingest::{InboxJob, IngestActor};
use registrar::WebhookRegistrar;
use router::AccountRouter;
use scheduler::Scheduler;
use writers::Writers;

/// Starts an inbox committer (supervised, on the current arbiter)
/// appending through `db`.
fn start_ingest(
    core: &Arc<Core>,
    router: &Addr<AccountRouter>,
    gate: &WriteGate,
    db: crate::store::InboxConnection,
) -> Addr<IngestActor> {
    let settings = &core.settings;
    let gate = gate.clone();
    let (metrics, router) = (core.metrics.clone(), router.clone());
    let max_batch = settings.webhooks.ingest_batch_max.get();
    let poison = settings.faults.fail_inbox_event_types.clone();
    let cluster = core.cluster.clone();
    Supervisor::start(move |_| {
        GroupCommit::new(
            InboxJob::new(
                db.clone(),
                gate.clone(),
                metrics.clone(),
                router.clone(),
                poison.clone(),
                cluster.clone(),
            ),
            max_batch,
            metrics.clone(),
        )
    })
}

/// Addresses of the running actors.
pub struct ActorSystem {
    pub writers: Writers,
    pub registrar: Addr<WebhookRegistrar>,
    pub router: Addr<AccountRouter>,
    /// The inbox committer: started by the first HTTP worker, on its
    /// thread (`worker_ingest`).
    ingest: std::sync::Mutex<Option<Addr<IngestActor>>>,
    pub scheduler: Addr<Scheduler>,
    /// Cluster mode: this replica's leases.
    pub keeper: Option<Addr<LeaseKeeper>>,
    /// Cluster mode: the tasks listening for and waking the other replicas.
    listener: std::sync::Mutex<Option<(tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>)>>,
    arbiters: Vec<Arbiter>,
    /// SQLite's one write lock, shared by every committer.
    gate: WriteGate,
}

impl ActorSystem {
    /// Starts the tree on the current actix system. `with_scheduler` is off for
    /// one-shot commands (`sync-hostaway sync`).
    pub fn start(core: Arc<Core>, with_scheduler: bool) -> ActorSystem {
        let settings = &core.settings;
        let arbiter_count = match settings.actors.account_arbiters {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let mut arbiters: Vec<Arbiter> = (0..arbiter_count).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        let writer_arbiter = Arbiter::new();
        let gate = WriteGate::for_backend(core.db.get_database_backend());
        let writers = Writers::start(
            &writer_arbiter.handle(),
            &core.committers,
            &gate,
            &core.metrics,
            settings.webhooks.ingest_batch_max.get(),
        );
        arbiters.push(writer_arbiter);
        let registrar = {
            let core = core.clone();
            Supervisor::start(move |_| WebhookRegistrar::new(core))
        };
        let router = {
            let (core, writers, registrar) = (core.clone(), writers.clone(), registrar.clone());
            Supervisor::start(move |_| AccountRouter::new(core, writers, registrar, handles))
        };
        let scheduler = {
            let (core, router) = (core.clone(), router.clone());
            Supervisor::start(move |_| Scheduler::new(core, router, with_scheduler))
        };
        let listener = core.cluster.as_ref().map(|member| {
            let (member, metrics) = (member.clone(), core.metrics.clone());
            let announcer = actix::spawn(async move { member.announce_loop(&metrics).await });
            (cluster::listen(core.clone(), router.clone()), announcer)
        });
        let keeper = core.cluster.as_ref().map(|member| {
            let directory = core.clone();
            LeaseKeeper::new(
                member.db.clone(),
                member.options.clone(),
                member.ownership.clone(),
                core.metrics.clone(),
                Box::new(move || directory.directory.active_ids()),
                Some(router.clone().recipient()),
            )
            .start()
        });
        ActorSystem {
            writers,
            registrar,
            router,
            ingest: std::sync::Mutex::new(None),
            scheduler,
            keeper,
            listener: std::sync::Mutex::new(listener),
            arbiters,
            gate,
        }
    }

    /// The inbox committer, for the HTTP worker this is called on (from the
    /// server's per-worker factory). There is one, so inbox ids commit in
    /// the order they are drawn (an account's queue relies on it). The first
    /// worker to ask starts it on its own thread, with (PostgreSQL) a
    /// connection opened there: that worker's deliveries — all of them with
    /// `server.workers = 1` — are appended and answered without a handoff to
    /// another thread and back (two wake-ups on the acknowledgement's path).
    /// Started again by the next worker to ask if its thread is gone (a
    /// worker restarted after a panic).
    pub fn worker_ingest(&self, core: &Arc<Core>) -> Addr<IngestActor> {
        let mut ingest = self
            .ingest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(addr) = ingest.as_ref().filter(|addr| addr.connected()) {
            return addr.clone();
        }
        let db = core.committers.inbox();
        if let crate::store::InboxConnection::Own(own) = &db {
            // Opened now, on this thread, rather than by the first delivery:
            // under load the server's connection slots may all be taken by
            // then.
            let own = own.clone();
            actix::spawn(async move {
                if let Err(err) = own.get().await {
                    tracing::warn!(error = %err, "could not open the inbox connection; the first delivery tries again");
                }
            });
        }
        let addr = start_ingest(core, &self.router, &self.gate, db);
        *ingest = Some(addr.clone());
        addr
    }

    /// Whether each long-lived actor is running (its mailbox is open), by name.
    pub fn liveness(&self) -> Vec<(&'static str, bool)> {
        let mut each = vec![
            (
                "ingest",
                self.ingest
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .as_ref()
                    .is_some_and(Addr::connected),
            ),
            ("router", self.router.connected()),
            ("registrar", self.registrar.connected()),
            ("scheduler", self.scheduler.connected()),
            ("listing_writer", self.writers.listings.connected()),
            (
                "reservation_writer",
                self.writers.reservations.iter().all(|w| w.connected()),
            ),
            ("message_thread_writer", self.writers.threads.connected()),
        ];
        if let Some(keeper) = &self.keeper {
            each.push(("lease_keeper", keeper.connected()));
        }
        each
    }

    /// Drains the account actors (bounded by `actors.shutdown_timeout_secs`),
    /// gives this replica's leases up (cluster mode) and stops the account
    /// arbiters.
    pub async fn stop(&self) {
        let _ = self.router.send(router::Shutdown).await;
        if let Some(keeper) = &self.keeper {
            let _ = keeper.send(Leave).await;
        }
        // Ended while the runtime runs: its connection goes back in order.
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(tasks) = listener {
            for task in [tasks.0, tasks.1] {
                task.abort();
                let _ = task.await;
            }
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
