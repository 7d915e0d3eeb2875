//! Typed errors of the Hostaway client. Messages name the endpoint (a route
//! template such as `GET /v1/listings`), never a token or secret.

#[derive(Debug, Clone, thiserror::Error)]
pub enum HostawayError {
    /// The token endpoint refused the credentials, or a fresh token was still refused.
    #[error("Hostaway refused the credentials of account {account_id}: {message}")]
    AuthFailed { account_id: i64, message: String },
    #[error("Hostaway kept answering 429 on {endpoint} after {attempts} attempts")]
    RateLimited { endpoint: String, attempts: u32 },
    #[error("Hostaway answered {status} on {endpoint}: {message}")]
    Api {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint} timed out after {attempts} attempts")]
    Timeout { endpoint: String, attempts: u32 },
    #[error("could not reach Hostaway for {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("could not decode the answer of {endpoint}: {message}")]
    Decode { endpoint: String, message: String },
    /// A listing ended with fewer distinct items than the `count` Hostaway
    /// announced, even after a second walk with offset paging.
    #[error(
        "incomplete listing from {endpoint}: Hostaway announced {expected} items but {received} distinct ones were served"
    )]
    Incomplete {
        endpoint: String,
        expected: u64,
        received: u64,
    },
}

impl HostawayError {
    /// True for errors a later attempt may not see (network, 5xx, 429, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            HostawayError::RateLimited { .. }
            | HostawayError::Timeout { .. }
            | HostawayError::Connect { .. } => true,
            HostawayError::Api { status, .. } => *status >= 500,
            // A listing may well be complete on the next run.
            HostawayError::Incomplete { .. } => true,
            HostawayError::AuthFailed { .. } | HostawayError::Decode { .. } => false,
        }
    }
}
