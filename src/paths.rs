//! The service's URL paths, in one place: the HTTP layer routes them, the
//! registrar tells Hostaway where to deliver, docs and tests name them.

pub const HEALTH: &str = "/health";
pub const READY: &str = "/ready";
pub const METRICS: &str = "/metrics";
/// Where Hostaway delivers webhooks (registered as `public_base_url` + this).
pub const WEBHOOKS: &str = "/api/v1/hostaway/webhooks";
pub const WEBHOOK_EVENTS: &str = "/api/v1/hostaway/webhooks/events";
pub const WEBHOOK_EVENT_REPLAY: &str = "/api/v1/hostaway/webhooks/events/{id}/replay";
pub const ACCOUNTS: &str = "/api/v1/hostaway/accounts";
pub const ACCOUNT: &str = "/api/v1/hostaway/accounts/{id}";
pub const ACCOUNT_SYNC: &str = "/api/v1/hostaway/accounts/{id}/sync";
pub const ACCOUNT_REPLAY_FAILED: &str = "/api/v1/hostaway/accounts/{id}/replay-failed";
/// Cluster mode: replicas, their accounts and lease ages (admin).
pub const CLUSTER: &str = "/api/v1/hostaway/cluster";
pub const ACCOUNT_ROTATE_CREDENTIALS: &str =
    "/api/v1/hostaway/accounts/{id}/rotate-webhook-credentials";
/// The OpenAPI 3.1 description of every route.
pub const OPENAPI: &str = "/api/v1/openapi.json";
