//! Webhook delivery as Hostaway does it: a JSON POST with
//! HTTP Basic auth from the registration, 2xx acknowledges, network errors,
//! timeouts, 5xx and 429 are retried three times with exponential backoff,
//! any other 4xx is final. Deliveries of one call go out one after another.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::behaviour::WebhookEnvelope;

/// Retries after the first attempt (four attempts in all).
pub const MAX_RETRIES: u32 = 3;

/// One try to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Network error or timeout, when it did not.
    pub error: Option<String>,
    /// When the attempt started (RFC 3339, UTC).
    pub at: String,
}

/// The outcome of delivering one event to one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub url: String,
    pub event: String,
    pub account_id: i64,
    pub attempts: Vec<DeliveryAttempt>,
    /// A 2xx was received.
    pub delivered: bool,
}

/// `POST /_sim/deliver`: an event to send now.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeliverRequest {
    pub account_id: i64,
    pub event: String,
    /// Webhook `object`; derived from `event` when absent (see `object_for_event`).
    #[serde(default)]
    pub object: Option<String>,
    /// Webhook `data`; `{}` when absent.
    #[serde(default)]
    pub data: Option<Value>,
    /// Sent verbatim instead of the `{"object","event","accountId","data"}` envelope.
    #[serde(default)]
    pub body: Option<Value>,
    /// Target; default every enabled registration of the account.
    #[serde(default)]
    pub url: Option<String>,
    /// Override the registration's Basic-auth login.
    #[serde(default)]
    pub login: Option<String>,
    /// Override the registration's Basic-auth password.
    #[serde(default)]
    pub password: Option<String>,
    /// Return at once; records appear in `deliveries()` as they complete.
    #[serde(default, rename = "async")]
    pub asynchronous: bool,
}

/// Never prints the password.
impl fmt::Debug for DeliverRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliverRequest")
            .field("account_id", &self.account_id)
            .field("event", &self.event)
            .field("url", &self.url)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field("async", &self.asynchronous)
            .finish()
    }
}

/// The webhook `object` Hostaway pairs with an event: `reservation` for
/// `reservation.*`, `conversationMessage` for `message.*`, otherwise the part
/// before the first dot.
pub fn object_for_event(event: &str) -> String {
    match event.split('.').next().unwrap_or_default() {
        "reservation" => "reservation".to_string(),
        "message" => "conversationMessage".to_string(),
        other => other.to_string(),
    }
}

/// The delivery body Hostaway sends, the entity where `shape` puts it.
pub fn envelope(
    shape: WebhookEnvelope,
    object: &str,
    event: &str,
    account_id: i64,
    data: Value,
) -> Value {
    match shape {
        WebhookEnvelope::Data => {
            json!({ "object": object, "event": event, "accountId": account_id, "data": data })
        }
        WebhookEnvelope::PayloadData => json!({
            "object": object, "event": event, "accountId": account_id,
            "payload": { "data": data }
        }),
    }
}

/// One delivery to make.
#[derive(Clone)]
pub struct DeliveryJob {
    pub url: String,
    pub event: String,
    pub account_id: i64,
    pub body: Value,
    /// Basic-auth login and password.
    pub credentials: Option<(String, String)>,
}

/// Sends deliveries and keeps the record of every one made.
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    retry_base: Duration,
    attempt_timeout: Duration,
    log: Arc<Mutex<Vec<DeliveryRecord>>>,
}

enum Outcome {
    Delivered,
    Retry,
    Final,
}

impl Deliverer {
    /// Needs the TLS provider installed (`crate::install_tls_provider`).
    pub fn new(retry_base: Duration, attempt_timeout: Duration) -> std::io::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent("hostaway-sim webhook delivery")
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Deliverer {
            client,
            retry_base,
            attempt_timeout,
            log: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Every delivery completed so far, in completion order.
    pub fn records(&self) -> Vec<DeliveryRecord> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Delivers `jobs` one after another. With `asynchronous` the work runs
    /// in a spawned task and this returns an empty list at once.
    pub async fn run(&self, jobs: Vec<DeliveryJob>, asynchronous: bool) -> Vec<DeliveryRecord> {
        if asynchronous {
            let deliverer = self.clone();
            tokio::spawn(async move {
                deliverer.run_all(jobs).await;
            });
            Vec::new()
        } else {
            self.run_all(jobs).await
        }
    }

    async fn run_all(&self, jobs: Vec<DeliveryJob>) -> Vec<DeliveryRecord> {
        let mut records = Vec::with_capacity(jobs.len());
        for job in jobs {
            records.push(self.deliver(job).await);
        }
        records
    }

    /// One event to one URL, with retries; the record is logged on completion.
    pub async fn deliver(&self, job: DeliveryJob) -> DeliveryRecord {
        let mut attempts = Vec::new();
        let mut delivered = false;
        for attempt in 0..=MAX_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(self.retry_base * 2u32.pow(attempt - 1)).await;
            }
            let (record, outcome) = self.attempt(&job).await;
            attempts.push(record);
            match outcome {
                Outcome::Delivered => {
                    delivered = true;
                    break;
                }
                Outcome::Final => break,
                Outcome::Retry => {}
            }
        }
        tracing::info!(
            url = %job.url,
            event = %job.event,
            account_id = job.account_id,
            attempts = attempts.len(),
            delivered,
            "webhook delivery finished"
        );
        let record = DeliveryRecord {
            url: job.url,
            event: job.event,
            account_id: job.account_id,
            attempts,
            delivered,
        };
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record.clone());
        record
    }

    async fn attempt(&self, job: &DeliveryJob) -> (DeliveryAttempt, Outcome) {
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut request = self
            .client
            .post(&job.url)
            .timeout(self.attempt_timeout)
            .json(&job.body);
        if let Some((login, password)) = &job.credentials {
            let token = STANDARD.encode(format!("{login}:{password}"));
            request = request.header(reqwest::header::AUTHORIZATION, format!("Basic {token}"));
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                // Drain the body so the connection can be reused; its content is not needed.
                let _ = response.bytes().await;
                let outcome = if status.is_success() {
                    Outcome::Delivered
                } else if status.is_server_error() || status.as_u16() == 429 {
                    Outcome::Retry
                } else {
                    Outcome::Final
                };
                let attempt = DeliveryAttempt {
                    status: Some(status.as_u16()),
                    error: None,
                    at,
                };
                (attempt, outcome)
            }
            Err(err) => {
                let error = if err.is_timeout() {
                    format!("timed out after {} ms", self.attempt_timeout.as_millis())
                } else {
                    describe(&err)
                };
                let attempt = DeliveryAttempt {
                    status: None,
                    error: Some(error),
                    at,
                };
                (attempt, Outcome::Retry)
            }
        }
    }
}

/// The error and its causes on one line (reqwest's top level alone says
/// little, e.g. "error sending request").
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_follow_events() {
        assert_eq!(object_for_event("reservation.updated"), "reservation");
        assert_eq!(object_for_event("message.received"), "conversationMessage");
        assert_eq!(object_for_event("task.created"), "task");
        let body = envelope(
            WebhookEnvelope::Data,
            "reservation",
            "reservation.created",
            7,
            json!({"id": 1}),
        );
        assert_eq!(body["accountId"], 7);
        assert_eq!(body["data"]["id"], 1);
    }

    #[test]
    fn requests_parse_with_defaults_and_hide_passwords() {
        let request: DeliverRequest = serde_json::from_value(json!({
            "account_id": 1001,
            "event": "reservation.updated",
            "password": "hunter2",
            "async": true
        }))
        .unwrap();
        assert!(request.asynchronous);
        assert_eq!(request.url, None);
        assert!(!format!("{request:?}").contains("hunter2"));
    }
}
