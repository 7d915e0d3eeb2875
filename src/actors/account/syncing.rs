//! The account's syncs: a queued sync's fetch runs beside the applies (slow,
//! rate-limited, writes nothing); what it fetched is then written as one
//! unit, serialized with the applies; the outcome is recorded on the account
//! and answers everyone who asked for that sync.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix::{ActorContext, ActorFutureExt, AsyncContext, Context, WrapFuture};
use chrono::{DateTime, Utc};

use super::{AccountActor, FetchedSync, PendingSync};
use crate::actors::registrar::EnsureWebhook;
use crate::actors::supervision::contain;
use crate::actors::traced::TraceExt;
use crate::actors::writers::Writers;
use crate::context::Core;
use crate::hostaway::AccountClient;
use crate::store::accounts;
use crate::store::rows::Owner;
use crate::sync::progress::{Phase, SyncProgress};
use crate::sync::{self, SyncContext, SyncError, SyncReport, SyncRequest};
use entities::account::SyncState;

impl AccountActor {
    /// Starts the fetch of the next sync beside the applies (no write).
    pub(super) fn start_fetch(&mut self, ctx: &mut Context<Self>) {
        let Some(pending) = self.syncs.pop_front() else {
            return;
        };
        let Some(client) = self.client.clone() else {
            let error = SyncError::Unavailable("the account's secret cannot be read".into());
            for reply in pending.replies {
                let _ = reply.send(Err(error.clone()));
            }
            return;
        };
        self.fetching = true;
        let core = self.core.clone();
        let writers = self.writers.clone();
        let owner = self.owner;
        let last_sync_at = self.last_sync_at;
        let request = pending.request;
        let account_id = self.account_id;
        let span = tracing::info_span!(
            parent: None,
            "sync.run",
            otel.name = "sync.run",
            hostaway.account_id = account_id,
            sync.mode = request.mode.as_str(),
            sync.dry_run = request.dry_run,
        );
        {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            span.add_link(pending.trigger.clone());
        }
        let started = std::time::Instant::now();
        let progress = Arc::new(SyncProgress::new(
            request.mode,
            request.dry_run,
            self.core.metrics.sync_phase.clone(),
        ));
        let client = client.observed_by(progress.clone());
        let watched = progress.clone();
        let work = async move {
            if !request.dry_run {
                accounts::record_sync_state(&core.db, account_id, SyncState::Syncing, None, None)
                    .await?;
            }
            if core
                .settings
                .faults
                .panic_on_sync_accounts
                .contains(&account_id)
            {
                panic!("injected sync panic for account {account_id}");
            }
            let context = sync_context(&core, &client, &writers, owner, last_sync_at, &watched);
            let limit = core.settings.sync.max_duration_secs;
            let fetch =
                tokio::time::timeout(Duration::from_secs(limit), sync::fetch(&context, request));
            tokio::select! {
                fetched = fetch => fetched.unwrap_or(Err(SyncError::TimedOut(limit))),
                never = report_progress(&core, account_id, &watched) => match never {},
            }
        };
        let traced = tracing::Instrument::instrument(contain(work), span.clone());
        ctx.spawn(traced.into_actor(self).map(move |outcome, act, ctx| {
            act.fetching = false;
            match outcome {
                Ok(Ok(fetched)) => {
                    act.to_write = Some(FetchedSync {
                        pending,
                        fetched,
                        span,
                        started,
                        progress,
                    });
                }
                Ok(Err(error)) => act.end_sync(ctx, pending, started, Err(error)),
                Err(panic) => {
                    act.end_sync(ctx, pending, started, Err(SyncError::Panicked(panic.0)));
                    tracing::error!(
                        account_id = act.account_id,
                        "sync panicked; restarting the account actor"
                    );
                    ctx.stop();
                    return;
                }
            }
            act.drive(ctx);
        }));
    }

    /// Writes a fetched sync as one unit, serialized with the applies.
    pub(super) fn start_sync_write(&mut self, ctx: &mut Context<Self>) {
        let Some(FetchedSync {
            pending,
            fetched,
            span,
            started,
            progress,
        }) = self.to_write.take()
        else {
            return;
        };
        let Some(client) = self.client.clone() else {
            let error = SyncError::Unavailable("the account's secret cannot be read".into());
            self.end_sync(ctx, pending, started, Err(error));
            self.drive(ctx);
            return;
        };
        self.busy = true;
        let core = self.core.clone();
        let writers = self.writers.clone();
        let (owner, last_sync_at) = (self.owner, self.last_sync_at);
        let account_id = self.account_id;
        let work = async move {
            let context = sync_context(&core, &client, &writers, owner, last_sync_at, &progress);
            progress.enter(Phase::Writing);
            save_progress(&core, account_id, &progress).await;
            sync::write(&context, fetched).await
        };
        let traced = tracing::Instrument::instrument(contain(work), span);
        ctx.spawn(traced.into_actor(self).map(move |outcome, act, ctx| {
            act.busy = false;
            match outcome {
                Ok(result) => act.end_sync(ctx, pending, started, result),
                Err(panic) => {
                    act.end_sync(ctx, pending, started, Err(SyncError::Panicked(panic.0)));
                    ctx.stop();
                    return;
                }
            }
            act.drive(ctx);
        }));
    }

    /// Records a finished (or failed) sync and answers whoever waits for it.
    pub(super) fn end_sync(
        &mut self,
        ctx: &mut Context<Self>,
        pending: PendingSync,
        started: std::time::Instant,
        result: Result<SyncReport, SyncError>,
    ) {
        let mode_label = pending.request.mode.as_str();
        self.core
            .metrics
            .sync_duration
            .with_label_values(&[mode_label])
            .observe(started.elapsed().as_secs_f64());
        self.metrics_for_sync(mode_label, &result);
        if result.is_ok() {
            self.succeeded();
        }
        self.finish_sync(ctx, pending.request, &result);
        for reply in pending.replies {
            let _ = reply.send(result.clone());
        }
    }

    pub(super) fn metrics_for_sync(&self, mode: &str, result: &Result<SyncReport, SyncError>) {
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.core
            .metrics
            .sync_runs
            .with_label_values(&[mode, outcome])
            .inc();
    }

    /// Records the outcome on the account (not for dry runs).
    pub(super) fn finish_sync(
        &mut self,
        ctx: &mut Context<Self>,
        request: SyncRequest,
        result: &Result<SyncReport, SyncError>,
    ) {
        if request.dry_run {
            let core = self.core.clone();
            let account_id = self.account_id;
            ctx.spawn(
                async move {
                    if let Err(err) = accounts::save_progress(&core.db, account_id, None).await {
                        tracing::debug!(account_id, error = %err, "could not clear the sync progress");
                    }
                }
                .into_actor(self),
            );
            return;
        }
        let (state, error, synced_at) = match result {
            Ok(report) => {
                self.last_sync_at = Some(report.started_at);
                (SyncState::Idle, None, Some(report.started_at))
            }
            Err(err) => {
                tracing::warn!(account_id = self.account_id, error = %err, "sync failed");
                (SyncState::Failed, Some(err.to_string()), None)
            }
        };
        let core = self.core.clone();
        let registrar = self.registrar.clone();
        let account_id = self.account_id;
        let record = async move {
            if let Err(err) = accounts::record_sync_state(
                &core.db,
                account_id,
                state,
                error.as_deref(),
                synced_at,
            )
            .await
            {
                tracing::warn!(account_id, error = %err, "could not record the sync outcome");
            }
            if let Some(at) = synced_at {
                core.directory.set_last_sync(account_id, at);
                // Every successful sync also checks the subscription at
                // Hostaway (deleted or disabled there: repaired).
                registrar.do_send(EnsureWebhook { account_id }.traced());
            }
        };
        ctx.spawn(record.into_actor(self));
    }
}

/// What a sync run needs, from the account's shared services.
fn sync_context<'a>(
    core: &'a Core,
    client: &'a AccountClient,
    writers: &'a Writers,
    owner: Owner,
    last_sync_at: Option<DateTime<Utc>>,
    progress: &'a SyncProgress,
) -> SyncContext<'a> {
    SyncContext {
        client,
        owner,
        db: &core.db,
        writers,
        settings: &core.settings.sync,
        concurrency: core.settings.hostaway.concurrency.get(),
        metrics: &core.metrics,
        last_sync_at,
        max_future_skew: core.settings.webhooks.max_future_skew(),
        fence: core.fence(owner.account_id),
        progress,
    }
}

/// Stores the run's progress on its account row every second, and logs it
/// every `sync.progress_log_secs`, until the caller stops polling it.
async fn report_progress(core: &Core, account_id: i64, progress: &SyncProgress) -> Infallible {
    let log_every = Duration::from_secs(core.settings.sync.progress_log_secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logged = tokio::time::Instant::now();
    loop {
        // Every second, and at once when the phase changes.
        tokio::select! {
            _ = tick.tick() => {}
            () = progress.next_phase() => {}
        }
        save_progress(core, account_id, progress).await;
        if !log_every.is_zero() && logged.elapsed() >= log_every {
            progress.log(account_id);
            logged = tokio::time::Instant::now();
        }
    }
}

async fn save_progress(core: &Core, account_id: i64, progress: &SyncProgress) {
    let snapshot = serde_json::to_value(progress.snapshot()).ok();
    if let Err(err) = accounts::save_progress(&core.db, account_id, snapshot).await {
        // Progress is a view: a missed second is shown by the next.
        tracing::debug!(account_id, error = %err, "could not store the sync progress");
    }
}
