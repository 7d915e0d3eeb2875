//! Client-side rate limiting: one sliding window shared by every account (the
//! egress IP) and one per account, so a sync stays under Hostaway's limits
//! instead of bouncing off them. A request is admitted only when both windows
//! have room, and it is recorded in both at the same instant.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{RateLimit, RateLimitSettings};

/// At most `limit` admissions in any window of `window`.
#[derive(Debug)]
struct Window {
    limit: usize,
    window: Duration,
    admitted: VecDeque<Instant>,
}

impl Window {
    fn new(limit: RateLimit, margin: Duration) -> Self {
        Window {
            limit: limit.requests.get() as usize,
            window: limit.window() + margin,
            admitted: VecDeque::new(),
        }
    }

    /// How long until one more admission fits (zero when it fits now).
    fn wait(&mut self, now: Instant) -> Duration {
        while let Some(&oldest) = self.admitted.front() {
            if now.duration_since(oldest) >= self.window {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        if self.admitted.len() < self.limit {
            Duration::ZERO
        } else {
            // The oldest admission leaves the window at oldest + window.
            let oldest = self.admitted[self.admitted.len() - self.limit];
            (oldest + self.window).saturating_duration_since(now)
        }
    }

    fn admit(&mut self, now: Instant) {
        self.admitted.push_back(now);
    }
}

struct State {
    per_ip: Window,
    per_account: HashMap<i64, Window>,
}

/// The limiter every Hostaway request goes through.
#[derive(Clone)]
pub struct RateLimiter {
    enabled: bool,
    per_account: RateLimit,
    margin: Duration,
    full_window: Duration,
    state: Arc<Mutex<State>>,
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let margin = Duration::from_millis(settings.safety_margin_ms);
        RateLimiter {
            enabled: settings.enabled,
            per_account: settings.per_account,
            margin,
            full_window: settings.per_ip.window().max(settings.per_account.window()) + margin,
            state: Arc::new(Mutex::new(State {
                per_ip: Window::new(settings.per_ip, margin),
                per_account: HashMap::new(),
            })),
        }
    }

    /// Waits until a request for `account_id` may be sent, then records it.
    /// Returns how long it waited.
    pub async fn acquire(&self, account_id: i64) -> Duration {
        if !self.enabled {
            return Duration::ZERO;
        }
        let started = Instant::now();
        loop {
            let wait = {
                let mut state = self
                    .state
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let now = Instant::now();
                let State {
                    per_ip,
                    per_account,
                } = &mut *state;
                let account = per_account
                    .entry(account_id)
                    .or_insert_with(|| Window::new(self.per_account, self.margin));
                let wait = per_ip.wait(now).max(account.wait(now));
                if wait.is_zero() {
                    per_ip.admit(now);
                    account.admit(now);
                }
                wait
            };
            if wait.is_zero() {
                return started.elapsed();
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Forgets an account's window (account deleted).
    pub fn forget(&self, account_id: i64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.per_account.remove(&account_id);
    }

    /// The longest window: the minimum pause after a 429.
    pub fn full_window(&self) -> Duration {
        self.full_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ip: u32, account: u32, secs: f64) -> RateLimitSettings {
        RateLimitSettings {
            enabled: true,
            per_ip: RateLimit {
                requests: ip.try_into().unwrap(),
                per_seconds: secs.try_into().unwrap(),
            },
            per_account: RateLimit {
                requests: account.try_into().unwrap(),
                per_seconds: secs.try_into().unwrap(),
            },
            safety_margin_ms: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_window() {
        let limiter = RateLimiter::new(&settings(3, 10, 1.0));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..9 {
            limiter.acquire(1).await;
            times.push(start.elapsed());
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= 3, "request {i}: {in_window} in one window");
        }
        // 9 requests at 3 per second: the last one goes out at 2 s.
        assert_eq!(times[8], Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn per_account_limit_applies_per_account() {
        let limiter = RateLimiter::new(&settings(100, 2, 1.0));
        let start = Instant::now();
        limiter.acquire(1).await;
        limiter.acquire(1).await;
        limiter.acquire(2).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "other accounts are not held back"
        );
        limiter.acquire(1).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
