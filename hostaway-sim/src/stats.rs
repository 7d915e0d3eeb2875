//! Request accounting for `/v1`: every request by route template and status,
//! tokens issued and 429s sent. Tests and benchmarks read it to count API
//! calls a client made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counters since start or the last reset. Route keys are
/// `"<METHOD> <route template>"`, e.g. `"GET /v1/conversations/{id}/messages"`;
/// paths that match no route count as `"<METHOD> (unmatched)"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Every `/v1` request received, including rejected ones.
    pub total: u64,
    pub requests: BTreeMap<String, u64>,
    /// Responses by status code (`"200"`, `"429"`, ...).
    pub statuses: BTreeMap<String, u64>,
    pub by_endpoint_status: BTreeMap<String, BTreeMap<String, u64>>,
    pub tokens_issued: u64,
    /// 429 responses, from rate limits or injected bursts.
    pub rate_limited: u64,
}

impl SimStats {
    /// Counts a request when it arrives (so requests a client abandons count).
    pub fn record_request(&mut self, route: &str) {
        self.total += 1;
        *self.requests.entry(route.to_string()).or_default() += 1;
    }

    /// Counts the response to a request counted by `record_request`.
    pub fn record_response(&mut self, route: &str, status: u16) {
        if status == 429 {
            self.rate_limited += 1;
        }
        let status = status.to_string();
        *self.statuses.entry(status.clone()).or_default() += 1;
        *self
            .by_endpoint_status
            .entry(route.to_string())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// Requests received for a route key such as `"GET /v1/listings"`.
    pub fn requests_for(&self, route: &str) -> u64 {
        self.requests.get(route).copied().unwrap_or(0)
    }

    /// Responses sent with `status`.
    pub fn responses_with(&self, status: u16) -> u64 {
        self.statuses.get(&status.to_string()).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_and_responses() {
        let mut stats = SimStats::default();
        stats.record_request("GET /v1/listings");
        stats.record_request("GET /v1/listings");
        stats.record_response("GET /v1/listings", 200);
        stats.record_response("GET /v1/listings", 429);
        assert_eq!(stats.total, 2);
        assert_eq!(stats.requests_for("GET /v1/listings"), 2);
        assert_eq!(stats.responses_with(429), 1);
        assert_eq!(stats.rate_limited, 1);
        assert_eq!(stats.by_endpoint_status["GET /v1/listings"]["200"], 1);
    }
}
