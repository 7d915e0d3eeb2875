//! Injected failures for `/v1` requests: added latency, random 5xx, bursts of
//! 503 or 429, and hanging requests that end in 504. Decisions come from a
//! seeded generator, so a run with the same requests fails the same way.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::paging::Page;

/// What to inject. The default injects nothing. Burst counters count down as
/// they are used; `path_contains` restricts every fault (but not
/// `retry_after_secs`, which applies to every 429) to matching paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share (0..=1) of requests answered 500, 502 or 503.
    pub error_rate: f64,
    /// The next N requests get 503.
    pub error_burst: u32,
    /// The next N requests get 429.
    pub burst_429: u32,
    /// Added to every affected request.
    pub latency_ms: u64,
    /// Share (0..=1) of requests that hang for `hang_ms`, then get 504.
    pub timeout_rate: f64,
    pub hang_ms: u64,
    /// `Retry-After` seconds sent on every 429 when set.
    pub retry_after_secs: Option<u64>,
    /// Only requests whose path contains this are affected.
    pub path_contains: Option<String>,
    /// A lying list endpoint: `count` announces this many more items than
    /// exist.
    pub count_bonus: u64,
    /// A lying list endpoint: items past this position are never served
    /// (pages beyond it come back short or empty) while `count` still
    /// announces them.
    pub serve_at_most: Option<usize>,
    /// The next N list pages that do not start at the beginning come back
    /// empty (a page lost mid-way, once).
    pub empty_pages: u32,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            error_burst: 0,
            burst_429: 0,
            latency_ms: 0,
            timeout_rate: 0.0,
            hang_ms: 30_000,
            retry_after_secs: None,
            path_contains: None,
            count_bonus: 0,
            serve_at_most: None,
            empty_pages: 0,
        }
    }
}

impl Faults {
    /// Rates clamped into 0..=1 (NaN counts as 0).
    fn sanitized(mut self) -> Self {
        let clamp = |rate: f64| {
            if rate.is_nan() {
                0.0
            } else {
                rate.clamp(0.0, 1.0)
            }
        };
        self.error_rate = clamp(self.error_rate);
        self.timeout_rate = clamp(self.timeout_rate);
        self
    }

    fn applies_to(&self, path: &str) -> bool {
        self.path_contains
            .as_deref()
            .is_none_or(|needle| path.contains(needle))
    }
}

/// The verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve normally.
    Pass,
    /// Answer 429 as if rate limited.
    TooManyRequests,
    /// Answer this 5xx status immediately.
    Error(u16),
    /// Wait this long, then answer 504.
    Hang(Duration),
}

/// Added latency plus the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub latency: Duration,
    pub verdict: Verdict,
}

/// The current faults and the generator behind the random ones.
#[derive(Debug)]
pub struct FaultInjector {
    faults: Faults,
    rng: StdRng,
}

impl FaultInjector {
    pub fn new(seed: u64) -> Self {
        FaultInjector {
            faults: Faults::default(),
            rng: StdRng::seed_from_u64(seed ^ 0x00FA_0175),
        }
    }

    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    pub fn set(&mut self, faults: Faults) {
        self.faults = faults.sanitized();
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        self.faults.retry_after_secs
    }

    /// Applies the list lies to a page served for `path`.
    pub fn distort<T>(&mut self, path: &str, mut page: Page<T>) -> Page<T> {
        let faults = &mut self.faults;
        if !faults.applies_to(path) {
            return page;
        }
        page.count = page.count.saturating_add(faults.count_bonus as usize);
        if let Some(max) = faults.serve_at_most {
            page.items.truncate(max.saturating_sub(page.offset));
        }
        if faults.empty_pages > 0 && page.offset > 0 {
            faults.empty_pages -= 1;
            page.items.clear();
        }
        page
    }

    /// Decides the fate of a request to `path`, using up burst counters.
    pub fn decide(&mut self, path: &str) -> Decision {
        let faults = &mut self.faults;
        if !faults.applies_to(path) {
            return Decision {
                latency: Duration::ZERO,
                verdict: Verdict::Pass,
            };
        }
        let latency = Duration::from_millis(faults.latency_ms);
        let verdict = if faults.burst_429 > 0 {
            faults.burst_429 -= 1;
            Verdict::TooManyRequests
        } else if faults.error_burst > 0 {
            faults.error_burst -= 1;
            Verdict::Error(503)
        } else if faults.timeout_rate > 0.0 && self.rng.random_bool(faults.timeout_rate) {
            Verdict::Hang(Duration::from_millis(faults.hang_ms))
        } else if faults.error_rate > 0.0 && self.rng.random_bool(faults.error_rate) {
            Verdict::Error([500, 502, 503][self.rng.random_range(0..3)])
        } else {
            Verdict::Pass
        };
        Decision { latency, verdict }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_count_down_in_order() {
        let mut injector = FaultInjector::new(1);
        injector.set(Faults {
            burst_429: 2,
            error_burst: 1,
            latency_ms: 5,
            ..Faults::default()
        });
        let verdicts: Vec<Verdict> = (0..4)
            .map(|_| injector.decide("/v1/listings").verdict)
            .collect();
        assert_eq!(
            verdicts,
            [
                Verdict::TooManyRequests,
                Verdict::TooManyRequests,
                Verdict::Error(503),
                Verdict::Pass
            ]
        );
        assert_eq!(
            injector.decide("/v1/listings").latency,
            Duration::from_millis(5)
        );
        assert_eq!(injector.faults().burst_429, 0);
    }

    #[test]
    fn path_filter_and_rates() {
        let mut injector = FaultInjector::new(1);
        injector.set(Faults {
            error_rate: 7.0,
            path_contains: Some("/messages".into()),
            ..Faults::default()
        });
        assert_eq!(injector.faults().error_rate, 1.0);
        assert_eq!(injector.decide("/v1/listings").verdict, Verdict::Pass);
        assert!(matches!(
            injector.decide("/v1/conversations/5/messages").verdict,
            Verdict::Error(500 | 502 | 503)
        ));
        injector.set(Faults {
            timeout_rate: 1.0,
            hang_ms: 10,
            ..Faults::default()
        });
        assert_eq!(
            injector.decide("/v1/listings").verdict,
            Verdict::Hang(Duration::from_millis(10))
        );
        injector.set(Faults {
            error_rate: 0.5,
            ..Faults::default()
        });
        let failures = (0..1000)
            .filter(|_| injector.decide("/v1/x").verdict != Verdict::Pass)
            .count();
        assert!((400..600).contains(&failures), "{failures}");
    }

    #[test]
    fn list_lies() {
        let page = |offset: usize| Page {
            items: (offset..offset + 10).collect::<Vec<_>>(),
            limit: 10,
            offset,
            count: 30,
        };
        let mut injector = FaultInjector::new(1);
        injector.set(Faults {
            count_bonus: 5,
            serve_at_most: Some(15),
            empty_pages: 1,
            path_contains: Some("/reservations".into()),
            ..Faults::default()
        });
        assert_eq!(injector.distort("/v1/listings", page(0)), page(0));
        let first = injector.distort("/v1/reservations", page(0));
        assert_eq!((first.items.len(), first.count), (10, 35));
        assert!(
            injector
                .distort("/v1/reservations", page(10))
                .items
                .is_empty(),
            "lost once"
        );
        assert_eq!(
            injector.distort("/v1/reservations", page(10)).items,
            vec![10, 11, 12, 13, 14]
        );
        assert!(
            injector
                .distort("/v1/reservations", page(20))
                .items
                .is_empty()
        );
    }

    #[test]
    fn partial_json_uses_defaults() {
        let faults: Faults = serde_json::from_str(r#"{"burst_429": 3}"#).unwrap();
        assert_eq!(faults.burst_429, 3);
        assert_eq!(faults.hang_ms, 30_000);
    }
}
