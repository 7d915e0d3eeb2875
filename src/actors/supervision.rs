//! What actix leaves to us: a panic inside a handler ends an actor for good and
//! `Supervisor` restarts only actors that stop themselves. So handlers run their
//! work through `contain`, which turns a panic into an error; the actor then
//! stops itself, its `Supervisor` restarts it (`restarting()` resets state), and
//! a `RestartTracker` (a field, so it survives restarts) limits restarts per
//! window with exponential backoff.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::backoff::Backoff;
use crate::config::ActorSettings;

/// A panic caught inside an actor, with its message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("panicked: {0}")]
pub struct Panicked(pub String);

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `work`, turning a panic into `Err(Panicked)`.
pub fn contain_sync<T>(work: impl FnOnce() -> T) -> Result<T, Panicked> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|p| Panicked(panic_message(p)))
}

/// Awaits `work`, turning a panic at any await point into `Err(Panicked)`.
pub async fn contain<F: Future>(work: F) -> Result<F::Output, Panicked> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|p| Panicked(panic_message(p)))
}

/// Runs a handler's body. A panic is logged and stops the actor, so its
/// `Supervisor` restarts it (`restarting()` runs; the actor's fields are
/// kept), and the caller gets `fallback()`.
pub fn guarded<A, R>(
    actor: &'static str,
    ctx: &mut actix::Context<A>,
    fallback: impl FnOnce() -> R,
    work: impl FnOnce() -> R,
) -> R
where
    A: actix::Actor<Context = actix::Context<A>>,
{
    use actix::ActorContext;
    match contain_sync(work) {
        Ok(result) => result,
        Err(panic) => {
            tracing::error!(actor, error = %panic, "handler panicked; restarting the actor");
            ctx.stop();
            fallback()
        }
    }
}

/// What to do after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Resume work after this delay.
    Resume(Duration),
    /// Too many restarts in the window: stop working and report degraded.
    GiveUp,
}

/// Counts restarts within a sliding window.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    max_restarts: usize,
    window: Duration,
    backoff: Backoff,
    restarts: VecDeque<Instant>,
}

impl RestartTracker {
    pub fn new(settings: &ActorSettings) -> Self {
        RestartTracker {
            max_restarts: settings.max_restarts.get() as usize,
            window: Duration::from_secs(settings.restart_window_secs.max(1)),
            backoff: Backoff::from_millis(
                settings.restart_backoff_ms,
                settings.restart_backoff_max_ms,
            ),
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart now and decides whether to resume.
    pub fn record(&mut self) -> RestartDecision {
        self.record_at(Instant::now())
    }

    fn record_at(&mut self, now: Instant) -> RestartDecision {
        while let Some(&first) = self.restarts.front() {
            if now.duration_since(first) > self.window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.push_back(now);
        if self.restarts.len() > self.max_restarts {
            return RestartDecision::GiveUp;
        }
        let delay = self.backoff.delay(self.restarts.len() as u32);
        RestartDecision::Resume(delay)
    }

    /// Restarts within the current window.
    pub fn recent(&self) -> usize {
        self.restarts.len()
    }

    pub fn reset(&mut self) {
        self.restarts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::{NonZeroU32, NonZeroUsize};

    fn settings(max: u32) -> ActorSettings {
        ActorSettings {
            max_restarts: NonZeroU32::new(max).unwrap(),
            restart_window_secs: 60,
            restart_backoff_ms: 100,
            restart_backoff_max_ms: 300,
            shutdown_timeout_secs: 1,
            account_arbiters: 1,
            max_queued_rows: NonZeroUsize::new(10).unwrap(),
            max_queued_bytes: 1 << 20,
            max_queued_bytes_total: 1 << 21,
            degraded_retry_secs: 300,
        }
    }

    #[test]
    fn backoff_grows_then_gives_up() {
        let mut tracker = RestartTracker::new(&settings(3));
        let t = Instant::now();
        assert_eq!(
            tracker.record_at(t),
            RestartDecision::Resume(Duration::from_millis(100))
        );
        assert_eq!(
            tracker.record_at(t),
            RestartDecision::Resume(Duration::from_millis(200))
        );
        assert_eq!(
            tracker.record_at(t),
            RestartDecision::Resume(Duration::from_millis(300))
        );
        assert_eq!(tracker.record_at(t), RestartDecision::GiveUp);
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let mut tracker = RestartTracker::new(&settings(1));
        let t = Instant::now();
        assert!(matches!(tracker.record_at(t), RestartDecision::Resume(_)));
        assert!(matches!(
            tracker.record_at(t + Duration::from_secs(61)),
            RestartDecision::Resume(_)
        ));
    }

    #[test]
    fn panics_become_errors() {
        let caught = contain_sync(|| -> u8 { panic!("boom") }).unwrap_err();
        assert_eq!(caught.0, "boom");
        assert_eq!(contain_sync(|| 7).unwrap(), 7);
    }
}
