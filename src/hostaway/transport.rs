//! Sending requests to Hostaway: one attempt (rate limiter, span, metrics),
//! the retry policy (429 waits a full window or `Retry-After`, capped;
//! 5xx, timeouts and connect errors back off with jitter; other 4xx are
//! final) and the one retry loop every request goes through.

use std::time::Duration;

use tokio::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracing::{Instrument, field::Empty};

use super::Observer;
use super::client::Inner;
use super::error::HostawayError;
use super::types::Envelope;
use crate::backoff::Backoff;

pub(super) enum Body {
    Empty,
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

/// One logical request (retried as a unit).
pub(super) struct Call {
    pub method: Method,
    pub path: String,
    pub endpoint: &'static str,
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Call {
    pub(super) fn new(method: Method, path: impl Into<String>, endpoint: &'static str) -> Self {
        Call {
            method,
            path: path.into(),
            endpoint,
            query: Vec::new(),
            body: Body::Empty,
        }
    }

    pub(super) fn query(mut self, key: &'static str, value: impl ToString) -> Self {
        self.query.push((key, value.to_string()));
        self
    }

    pub(super) fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
}

/// What one attempt produced.
pub(super) enum Attempt {
    Ok(bytes::Bytes),
    Status {
        status: StatusCode,
        message: String,
        retry_after: Option<Duration>,
    },
    Timeout,
    Connect(String),
}

/// One turn of the retry loop.
pub(super) enum Try {
    Sent(Attempt),
    /// The token was refused and has been replaced: try again, uncounted.
    TokenReplaced,
}

/// How the retry loop sends one attempt: with or without a token.
pub(super) trait Sender {
    async fn send(
        &mut self,
        inner: &Inner,
        call: &Call,
        attempt: u32,
    ) -> Result<Try, HostawayError>;

    /// A failure of the token endpoint itself (reported as such).
    fn is_token_request(&self) -> bool;

    /// Who watches this client's requests, if anyone.
    fn observer(&self) -> Option<&dyn Observer> {
        None
    }
}

/// The token endpoint: no token to send.
pub(super) struct Anonymous {
    pub account_id: i64,
}

impl Sender for Anonymous {
    async fn send(
        &mut self,
        inner: &Inner,
        call: &Call,
        attempt: u32,
    ) -> Result<Try, HostawayError> {
        Ok(Try::Sent(
            inner
                .send_once(call, None, self.account_id, attempt, None)
                .await,
        ))
    }

    fn is_token_request(&self) -> bool {
        true
    }
}

impl Inner {
    fn backoff(&self, attempt: u32) -> Duration {
        Backoff::from_millis(self.settings.retry_base_ms, self.settings.retry_max_ms)
            .jittered(attempt)
    }

    /// Waits for the rate limiter, sends one attempt and records its span
    /// and metrics.
    pub(super) async fn send_once(
        &self,
        call: &Call,
        token: Option<&str>,
        account_id: i64,
        attempt: u32,
        observer: Option<&dyn Observer>,
    ) -> Attempt {
        let waited = self.limiter.acquire(account_id).await;
        if let Some(observer) = observer {
            observer.request_sent(waited);
        }
        let span = tracing::info_span!(
            "hostaway.request",
            otel.name = call.endpoint,
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = %call.method,
            url.template = call.endpoint,
            server.address = Empty,
            http.response.status_code = Empty,
            hostaway.account_id = account_id,
            hostaway.attempt = attempt,
            error.type = Empty,
        );
        let url = format!("{}{}", self.base_url, call.path);
        let mut request = self
            .http
            .request(call.method.clone(), &url)
            .query(&call.query)
            .header(reqwest::header::CACHE_CONTROL, "no-cache");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match &call.body {
            Body::Empty => request,
            Body::Json(body) => request.json(body),
            Body::Form(fields) => request.form(fields),
        };
        let started = Instant::now();
        let outcome = async {
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => return classify(err, &url),
            };
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = match response.bytes().await {
                Ok(body) => body,
                Err(err) => return classify(err, &url),
            };
            if status.is_success() {
                Attempt::Ok(body)
            } else {
                Attempt::Status {
                    status,
                    message: error_message(&body),
                    retry_after,
                }
            }
        }
        .instrument(span.clone())
        .await;

        let status_label = match &outcome {
            Attempt::Ok(_) => "200".to_string(),
            Attempt::Status { status, .. } => status.as_u16().to_string(),
            Attempt::Timeout => "timeout".to_string(),
            Attempt::Connect(_) => "error".to_string(),
        };
        match &outcome {
            Attempt::Ok(_) => {
                span.record("http.response.status_code", 200);
            }
            Attempt::Status { status, .. } => {
                span.record("http.response.status_code", status.as_u16());
                span.record("error.type", status.as_str());
                span.record("otel.status_code", "ERROR");
            }
            Attempt::Timeout => {
                span.record("error.type", "timeout");
                span.record("otel.status_code", "ERROR");
            }
            Attempt::Connect(_) => {
                span.record("error.type", "connect");
                span.record("otel.status_code", "ERROR");
            }
        }
        self.metrics
            .hostaway_requests
            .with_label_values(&[call.endpoint, &status_label])
            .inc();
        self.metrics
            .hostaway_latency
            .with_label_values(&[call.endpoint])
            .observe(started.elapsed().as_secs_f64());
        if matches!(&outcome, Attempt::Status { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS)
        {
            self.metrics.hostaway_rate_limited.inc();
        }
        outcome
    }

    /// The wait before retrying `outcome`, or `None` when it must not be retried.
    pub(super) fn retry_delay(
        &self,
        outcome: &Attempt,
        attempt: u32,
    ) -> Option<(Duration, &'static str)> {
        match outcome {
            Attempt::Ok(_) => None,
            Attempt::Status {
                status,
                retry_after,
                ..
            } if *status == StatusCode::TOO_MANY_REQUESTS => {
                // A 429 waits a full window, or longer if Retry-After asks,
                // but never beyond `hostaway.max_retry_after_secs`.
                let cap = Duration::from_secs(self.settings.max_retry_after_secs.max(1));
                let floor = retry_after
                    .unwrap_or_default()
                    .max(self.limiter.full_window())
                    .min(cap);
                Some((floor + self.backoff(attempt), "rate_limited"))
            }
            Attempt::Status { status, .. } if status.is_server_error() => {
                Some((self.backoff(attempt), "server_error"))
            }
            Attempt::Status { .. } => None,
            Attempt::Timeout => Some((self.backoff(attempt), "timeout")),
            Attempt::Connect(_) => Some((self.backoff(attempt), "connect")),
        }
    }

    /// The retry loop, written once: sends through `sender` until an
    /// attempt succeeds, the outcome must not be retried, or
    /// `hostaway.max_attempts` is spent. A refused token that the sender
    /// replaced does not count as an attempt.
    pub(super) async fn retrying(
        &self,
        call: &Call,
        account_id: i64,
        mut sender: impl Sender,
    ) -> Result<bytes::Bytes, HostawayError> {
        let max = self.settings.max_attempts.get();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = match sender.send(self, call, attempt).await? {
                Try::TokenReplaced => {
                    attempt -= 1;
                    continue;
                }
                Try::Sent(Attempt::Ok(body)) => return Ok(body),
                Try::Sent(outcome) => outcome,
            };
            match self.retry_delay(&outcome, attempt) {
                Some((delay, reason)) if attempt < max => {
                    self.metrics
                        .hostaway_retries
                        .with_label_values(&[reason])
                        .inc();
                    tracing::debug!(
                        endpoint = call.endpoint,
                        attempt,
                        ?delay,
                        reason,
                        "retrying"
                    );
                    if reason == "rate_limited"
                        && let Some(observer) = sender.observer()
                    {
                        observer.waited(delay);
                    }
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    return Err(final_error(
                        call.endpoint,
                        outcome,
                        attempt,
                        account_id,
                        sender.is_token_request(),
                    ));
                }
            }
        }
    }
}

/// `url` is the request's without its query (the token-revoke call carries
/// a token there), named with the underlying cause.
fn classify(err: reqwest::Error, url: &str) -> Attempt {
    if err.is_timeout() {
        Attempt::Timeout
    } else {
        let err = err.without_url();
        Attempt::Connect(format!("{} (at {url})", crate::errors::root_cause(&err)))
    }
}

fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope
            .error_message()
            .unwrap_or_else(|| "no message".to_string()),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

pub(super) fn final_error(
    endpoint: &str,
    outcome: Attempt,
    attempts: u32,
    account_id: i64,
    token_endpoint: bool,
) -> HostawayError {
    let endpoint = endpoint.to_string();
    match outcome {
        Attempt::Ok(_) => HostawayError::Decode {
            endpoint,
            message: "unexpected success".into(),
        },
        Attempt::Status { status, .. } if status == StatusCode::TOO_MANY_REQUESTS => {
            HostawayError::RateLimited { endpoint, attempts }
        }
        Attempt::Status {
            status, message, ..
        } if token_endpoint && status.is_client_error() => HostawayError::AuthFailed {
            account_id,
            message: format!("{status}: {message}"),
        },
        Attempt::Status {
            status, message, ..
        } => HostawayError::Api {
            endpoint,
            status: status.as_u16(),
            message,
        },
        Attempt::Timeout => HostawayError::Timeout { endpoint, attempts },
        Attempt::Connect(message) => HostawayError::Connect { endpoint, message },
    }
}
