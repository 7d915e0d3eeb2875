//! Exponential backoff, written once: webhook retries, registration retries,
//! actor restarts and Hostaway request retries all wait `base`, doubling per
//! attempt, capped at `max`.

use std::time::Duration;

use rand::Rng;

/// Doublings beyond this change nothing below any sensible cap.
const MAX_DOUBLINGS: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// `base` (at least 1 ms) doubling up to `max` (at least `base`).
    pub fn new(base: Duration, max: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Backoff {
            base,
            max: max.max(base),
        }
    }

    pub fn from_millis(base_ms: u64, max_ms: u64) -> Self {
        Backoff::new(
            Duration::from_millis(base_ms),
            Duration::from_millis(max_ms),
        )
    }

    /// The wait before attempt `attempt` (1 = the first retry): `base`,
    /// then twice that, and so on, never more than `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(MAX_DOUBLINGS);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// `delay` with jitter: a random share between half and all of it, so
    /// callers that failed together do not retry together.
    pub fn jittered(&self, attempt: u32) -> Duration {
        self.delay(attempt)
            .mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_up_to_max() {
        let backoff = Backoff::from_millis(100, 1_000);
        let delays: Vec<u64> = (0..7)
            .map(|a| backoff.delay(a).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn degenerate_settings_still_wait() {
        let backoff = Backoff::from_millis(0, 0);
        assert_eq!(backoff.delay(1), Duration::from_millis(1));
        assert_eq!(backoff.delay(30), Duration::from_millis(1));
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        let backoff = Backoff::from_millis(1_000, 10_000);
        for _ in 0..200 {
            let d = backoff.jittered(2);
            assert!(d >= Duration::from_millis(1_000) && d <= Duration::from_millis(2_000));
        }
    }
}
