//! Hostaway's rate limits: a sliding window of accepted requests
//! per client IP and per account. A request is accepted only if it fits both
//! windows; rejected requests do not count against either.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::config::{SimLimit, SimRateLimits};

/// The instants of accepted requests within the trailing window.
#[derive(Debug, Default)]
pub struct SlidingWindow {
    hits: VecDeque<Instant>,
}

impl SlidingWindow {
    /// Forgets hits that are `window` or more in the past.
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(&oldest) = self.hits.front() {
            if now.saturating_duration_since(oldest) >= window {
                self.hits.pop_front();
            } else {
                break;
            }
        }
    }

    /// Whether one more request fits, after pruning to `limit`'s window.
    fn has_room(&mut self, now: Instant, limit: &SimLimit) -> bool {
        self.prune(now, limit.window());
        self.hits.len() < limit.requests as usize
    }

    fn record(&mut self, now: Instant) {
        self.hits.push_back(now);
    }

    /// When the oldest counted hit leaves the window.
    fn frees_at(&self, limit: &SimLimit) -> Option<Instant> {
        self.hits.front().map(|oldest| *oldest + limit.window())
    }
}

/// Both limits and every window. Limits can be changed at run time; the
/// recorded hits stay and are judged against the new limits.
#[derive(Debug)]
pub struct RateLimiter {
    config: SimRateLimits,
    per_ip: HashMap<IpAddr, SlidingWindow>,
    per_account: HashMap<i64, SlidingWindow>,
}

/// Why a request was turned away, and when the blocking window frees up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_at: Option<Instant>,
}

impl RateLimiter {
    pub fn new(config: SimRateLimits) -> Self {
        RateLimiter {
            config,
            per_ip: HashMap::new(),
            per_account: HashMap::new(),
        }
    }

    pub fn config(&self) -> SimRateLimits {
        self.config
    }

    pub fn set_config(&mut self, config: SimRateLimits) {
        self.config = config;
    }

    /// Accepts (and counts) a request from `ip` for `account` (when the
    /// caller's account is known), or rejects it without counting it.
    pub fn admit(&mut self, ip: IpAddr, account: Option<i64>, now: Instant) -> Result<(), Limited> {
        if !self.config.enabled {
            return Ok(());
        }
        let per_ip = self.config.per_ip;
        let per_account = self.config.per_account;
        let ip_window = self.per_ip.entry(ip).or_default();
        if !ip_window.has_room(now, &per_ip) {
            return Err(Limited {
                retry_at: ip_window.frees_at(&per_ip),
            });
        }
        if let Some(account) = account {
            let account_window = self.per_account.entry(account).or_default();
            if !account_window.has_room(now, &per_account) {
                return Err(Limited {
                    retry_at: account_window.frees_at(&per_account),
                });
            }
            account_window.record(now);
        }
        // The IP window was only checked above, so that a request refused
        // for its account does not count against the IP.
        self.per_ip.entry(ip).or_default().record(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn limiter(ip: u32, account: u32) -> RateLimiter {
        RateLimiter::new(SimRateLimits {
            enabled: true,
            per_ip: SimLimit::new(ip, 10.0),
            per_account: SimLimit::new(account, 10.0),
        })
    }

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn window_slides() {
        let mut limiter = limiter(3, 100);
        let t0 = Instant::now();
        assert!(limiter.admit(IP, None, at(t0, 0)).is_ok());
        assert!(limiter.admit(IP, None, at(t0, 4_000)).is_ok());
        assert!(limiter.admit(IP, None, at(t0, 9_000)).is_ok());
        let refused = limiter.admit(IP, None, at(t0, 9_500)).unwrap_err();
        assert_eq!(refused.retry_at, Some(at(t0, 10_000)));
        // The first hit leaves the window exactly 10 s after it was made.
        assert!(limiter.admit(IP, None, at(t0, 9_999)).is_err());
        assert!(limiter.admit(IP, None, at(t0, 10_000)).is_ok());
        assert!(limiter.admit(IP, None, at(t0, 10_001)).is_err());
        assert!(limiter.admit(IP, None, at(t0, 14_000)).is_ok());
    }

    #[test]
    fn rejected_requests_do_not_count() {
        let mut limiter = limiter(2, 100);
        let t0 = Instant::now();
        assert!(limiter.admit(IP, None, at(t0, 0)).is_ok());
        assert!(limiter.admit(IP, None, at(t0, 1)).is_ok());
        for ms in 2..500 {
            assert!(limiter.admit(IP, None, at(t0, ms)).is_err());
        }
        // Only the two accepted hits occupied the window.
        assert!(limiter.admit(IP, None, at(t0, 10_001)).is_ok());
    }

    #[test]
    fn accounts_and_ips_are_limited_separately() {
        let mut limiter = limiter(3, 2);
        let t0 = Instant::now();
        assert!(limiter.admit(IP, Some(1), t0).is_ok());
        assert!(limiter.admit(IP, Some(1), t0).is_ok());
        // Account 1 is full; the refusal does not use up the IP's budget.
        assert!(limiter.admit(IP, Some(1), t0).is_err());
        assert!(limiter.admit(IP, Some(2), t0).is_ok());
        // The IP is now full for every account and for unauthenticated calls.
        assert!(limiter.admit(IP, Some(3), t0).is_err());
        assert!(limiter.admit(IP, None, t0).is_err());
        // Another IP still has room, but not for the full account 1.
        assert!(limiter.admit(OTHER_IP, Some(1), t0).is_err());
        assert!(limiter.admit(OTHER_IP, Some(2), t0).is_ok());
    }

    #[test]
    fn disabled_limits_and_runtime_changes() {
        let mut limiter = limiter(1, 1);
        let t0 = Instant::now();
        assert!(limiter.admit(IP, Some(1), t0).is_ok());
        assert!(limiter.admit(IP, Some(1), t0).is_err());
        limiter.set_config(SimRateLimits::disabled());
        for _ in 0..100 {
            assert!(limiter.admit(IP, Some(1), t0).is_ok());
        }
        limiter.set_config(SimRateLimits {
            enabled: true,
            per_ip: SimLimit::new(2, 1.0),
            per_account: SimLimit::new(2, 1.0),
        });
        assert!(limiter.admit(IP, Some(1), t0).is_ok());
        assert!(limiter.admit(IP, Some(1), t0).is_err());
    }
}
