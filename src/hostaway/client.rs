//! The Hostaway API client. Every request goes through the rate limiter, carries
//! the account's cached token (refreshed once, single flight, on 403/401), and is
//! retried with exponential backoff and jitter on 429, 5xx, connect errors and
//! timeouts; 400/404/422 and other 4xx are final. Each request is one span and
//! one set of metrics, labelled by route template, never by token or id.

use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use super::error::HostawayError;
use super::ratelimit::RateLimiter;
use super::tokens::{Token, TokenCache, TokenStore};
use super::transport::{Anonymous, Attempt, Body, Call, Sender, Try};
use super::types::{Envelope, TokenResponse, WebhookRegistration, WebhookSpec};
use super::{Observer, decode};
use crate::config::HostawaySettings;
use crate::metrics::Metrics;

/// Route templates, used as the `endpoint` label of spans, metrics and errors.
pub mod endpoints {
    pub const ACCESS_TOKENS: &str = "POST /v1/accessTokens";
    pub const REVOKE_TOKEN: &str = "DELETE /v1/accessTokens";
    pub const LISTINGS: &str = "GET /v1/listings";
    pub const LISTING: &str = "GET /v1/listings/{id}";
    pub const RESERVATIONS: &str = "GET /v1/reservations";
    pub const RESERVATION: &str = "GET /v1/reservations/{id}";
    pub const CONVERSATIONS: &str = "GET /v1/conversations";
    pub const MESSAGES: &str = "GET /v1/conversations/{id}/messages";
    pub const WEBHOOKS_LIST: &str = "GET /v1/webhooks/unifiedWebhooks";
    pub const WEBHOOK_CREATE: &str = "POST /v1/webhooks/unifiedWebhooks";
    pub const WEBHOOK_GET: &str = "GET /v1/webhooks/unifiedWebhooks/{id}";
    pub const WEBHOOK_UPDATE: &str = "PUT /v1/webhooks/unifiedWebhooks/{id}";
    pub const WEBHOOK_DELETE: &str = "DELETE /v1/webhooks/unifiedWebhooks/{id}";
}

/// An account's API credentials.
#[derive(Clone)]
pub struct Credentials {
    pub account_id: i64,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_id", &self.account_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

/// Shared by every account: HTTP connection pool, limiter, token cache.
#[derive(Clone)]
pub struct HostawayClient {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    pub(super) base_url: String,
    pub(super) settings: HostawaySettings,
    pub(super) limiter: RateLimiter,
    pub(super) tokens: TokenCache,
    pub(super) metrics: Arc<Metrics>,
    /// The `latestActivityStart` format the server took last:
    /// `ACTIVITY_AS_DATETIME` or `ACTIVITY_AS_DATE`.
    pub(super) activity_format: AtomicU8,
}

const ACTIVITY_AS_DATETIME: u8 = 0;
const ACTIVITY_AS_DATE: u8 = 1;

/// Every other endpoint: the account's token, replaced once if refused.
struct WithToken<'a> {
    account: &'a AccountClient,
    token: Arc<Token>,
    refreshed: bool,
}

impl Sender for WithToken<'_> {
    async fn send(
        &mut self,
        inner: &Inner,
        call: &Call,
        attempt: u32,
    ) -> Result<Try, HostawayError> {
        let account_id = self.account.account_id();
        self.token.ready().await;
        let outcome = inner
            .send_once(
                call,
                Some(self.token.expose()),
                account_id,
                attempt,
                self.account.observer.as_deref(),
            )
            .await;
        let refused = matches!(
            &outcome,
            Attempt::Status { status, .. }
                if matches!(*status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED)
        );
        if !refused {
            return Ok(Try::Sent(outcome));
        }
        if self.refreshed {
            return Err(HostawayError::AuthFailed {
                account_id,
                message: format!("a freshly issued token was refused on {}", call.endpoint),
            });
        }
        self.refreshed = true;
        inner
            .metrics
            .hostaway_retries
            .with_label_values(&["token"])
            .inc();
        self.token = inner
            .tokens
            .refresh(account_id, &self.token, self.account.token_fetcher())
            .await?;
        Ok(Try::TokenReplaced)
    }

    fn is_token_request(&self) -> bool {
        false
    }

    fn observer(&self) -> Option<&dyn Observer> {
        self.account.observer.as_deref()
    }
}

impl HostawayClient {
    pub fn new(
        settings: &HostawaySettings,
        metrics: Arc<Metrics>,
        store: Option<Arc<dyn TokenStore>>,
    ) -> Result<Self, HostawayError> {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout())
            .connect_timeout(settings.request_timeout().min(Duration::from_secs(10)))
            .pool_max_idle_per_host(settings.concurrency.get().max(4))
            .user_agent(concat!("sync-hostaway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HostawayError::Connect {
                endpoint: "client".into(),
                message: e.without_url().to_string(),
            })?;
        Ok(HostawayClient {
            inner: Arc::new(Inner {
                http,
                base_url: settings.base_url.trim_end_matches('/').to_string(),
                limiter: RateLimiter::new(&settings.rate_limit),
                tokens: TokenCache::new(
                    store,
                    Duration::from_secs(settings.token_refresh_margin_secs),
                ),
                settings: settings.clone(),
                metrics,
                activity_format: AtomicU8::new(ACTIVITY_AS_DATETIME),
            }),
        })
    }

    /// A client bound to one account's credentials.
    pub fn account(&self, credentials: Credentials) -> AccountClient {
        AccountClient {
            client: self.clone(),
            credentials: Arc::new(credentials),
            observer: None,
        }
    }

    /// Asks Hostaway for a token with `credentials`, caching nothing: a
    /// new secret is checked before it is stored.
    pub async fn verify_credentials(&self, credentials: Credentials) -> Result<(), HostawayError> {
        self.inner
            .clone()
            .fetch_token(Arc::new(credentials))
            .await
            .map(|_| ())
    }

    /// Stores the account's cached token (fetched before the account was).
    pub async fn persist_token(&self, account_id: i64) {
        self.inner.tokens.persist(account_id).await;
    }

    /// Drops what is cached for an account (its secret changed, or it is gone).
    pub fn forget_account(&self, account_id: i64) {
        self.inner.tokens.forget(account_id);
        self.inner.limiter.forget(account_id);
    }
}

impl Inner {
    /// Fetches a new token with the client-credentials grant.
    async fn fetch_token(
        self: Arc<Self>,
        credentials: Arc<Credentials>,
    ) -> Result<Token, HostawayError> {
        let call = Call {
            method: Method::POST,
            path: "/accessTokens".into(),
            endpoint: endpoints::ACCESS_TOKENS,
            query: Vec::new(),
            body: Body::Form(vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", credentials.account_id.to_string()),
                (
                    "client_secret",
                    credentials.client_secret.expose_secret().to_string(),
                ),
                ("scope", "general".into()),
            ]),
        };
        let sender = Anonymous {
            account_id: credentials.account_id,
        };
        let body = self.retrying(&call, credentials.account_id, sender).await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| HostawayError::Decode {
                endpoint: endpoints::ACCESS_TOKENS.into(),
                message: e.to_string(),
            })?;
        self.metrics.hostaway_token_refreshes.inc();
        let lifetime = parsed.expires_in.unwrap_or(24 * 3600).max(0);
        tracing::info!(
            account_id = credentials.account_id,
            expires_in = lifetime,
            "issued a Hostaway access token"
        );
        Ok(Token::new(
            parsed.access_token,
            Utc::now() + chrono::Duration::seconds(lifetime),
            Instant::now() + Duration::from_millis(self.settings.token_ready_delay_ms),
        ))
    }
}

/// The client bound to one account. Cheap to clone.
#[derive(Clone)]
pub struct AccountClient {
    pub(super) client: HostawayClient,
    credentials: Arc<Credentials>,
    pub(super) observer: Option<Arc<dyn Observer>>,
}

impl AccountClient {
    pub fn account_id(&self) -> i64 {
        self.credentials.account_id
    }

    /// The same client, its requests and pages reported to `observer`.
    pub fn observed_by(&self, observer: Arc<dyn Observer>) -> AccountClient {
        AccountClient {
            observer: Some(observer),
            ..self.clone()
        }
    }

    fn token_fetcher(&self) -> impl FnOnce() -> BoxFuture<'static, Result<Token, HostawayError>> {
        let inner = self.client.inner.clone();
        let credentials = self.credentials.clone();
        move || Box::pin(inner.fetch_token(credentials))
    }

    /// Makes sure a usable token is cached (fetching one if needed).
    pub async fn ensure_token(&self) -> Result<(), HostawayError> {
        self.client
            .inner
            .tokens
            .get(self.account_id(), self.token_fetcher())
            .await
            .map(|_| ())
    }

    /// Runs `call` with the account's token and the retry policy.
    pub(super) async fn execute(&self, call: &Call) -> Result<Envelope, HostawayError> {
        let inner = &self.client.inner;
        let account_id = self.account_id();
        let token = inner.tokens.get(account_id, self.token_fetcher()).await?;
        let sender = WithToken {
            account: self,
            token,
            refreshed: false,
        };
        let body = inner.retrying(call, account_id, sender).await?;
        parse_envelope(call.endpoint, &body)
    }

    /// Every listing of the account.
    pub async fn list_listings(&self) -> Result<Vec<Value>, HostawayError> {
        self.list_by_offset("/listings", endpoints::LISTINGS, &[])
            .await
    }

    pub async fn get_listing(&self, id: i64) -> Result<Value, HostawayError> {
        let call = Call::new(Method::GET, format!("/listings/{id}"), endpoints::LISTING);
        Ok(self.execute(&call).await?.result)
    }

    /// Reservations, all of them or those with activity since `since`.
    /// The format `latestActivityStart` takes is not documented (API.md
    /// §7.2): a date-time is tried first (the narrower window), a date (the
    /// whole day, a superset) when the server refuses that, and if it
    /// refuses both every reservation is read. The accepted format is
    /// remembered for later runs.
    pub async fn list_reservations(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Value>, HostawayError> {
        let list = |extra: Vec<(&'static str, String)>| async move {
            self.list_by_cursor("/reservations", endpoints::RESERVATIONS, &extra)
                .await
        };
        let Some(since) = since else {
            return list(Vec::new()).await;
        };
        let remembered = &self.client.inner.activity_format;
        let preferred = remembered.load(std::sync::atomic::Ordering::Relaxed);
        let other = if preferred == ACTIVITY_AS_DATE {
            ACTIVITY_AS_DATETIME
        } else {
            ACTIVITY_AS_DATE
        };
        for format in [preferred, other] {
            let value = match format {
                ACTIVITY_AS_DATE => since.format("%Y-%m-%d").to_string(),
                _ => decode::format_datetime(since),
            };
            match list(vec![("latestActivityStart", value)]).await {
                Err(HostawayError::Api {
                    status: 400 | 422,
                    message,
                    ..
                }) => {
                    tracing::info!(
                        format = if format == ACTIVITY_AS_DATETIME {
                            "date-time"
                        } else {
                            "date"
                        },
                        message,
                        "Hostaway refused this latestActivityStart format"
                    );
                }
                result => {
                    remembered.store(format, std::sync::atomic::Ordering::Relaxed);
                    return result;
                }
            }
        }
        tracing::warn!(
            "Hostaway refused latestActivityStart in every format; reading every reservation"
        );
        list(Vec::new()).await
    }

    /// Reservations modified at or after `since`, read in the documented
    /// default order (`updatedOn DESC, id DESC`) until a page ends with an
    /// older modification. This does not depend on what Hostaway counts as
    /// "activity" (API.md §7.2), which `list_reservations` filters on. A
    /// reservation without `updatedOn` ends the walk: nothing tells its age.
    pub async fn list_reservations_modified_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Value>, HostawayError> {
        let modified = |item: &Value| decode::datetime_field(item, "updatedOn");
        let collected = self
            .walk_cursor("/reservations", endpoints::RESERVATIONS, &[], |page| {
                page.last()
                    .is_none_or(|last| modified(last).is_none_or(|at| at < since))
            })
            .await?;
        Ok(collected
            .into_items()
            .into_iter()
            .filter(|item| modified(item).is_some_and(|at| at >= since))
            .collect())
    }

    pub async fn get_reservation(&self, id: i64) -> Result<Value, HostawayError> {
        let call = Call::new(
            Method::GET,
            format!("/reservations/{id}"),
            endpoints::RESERVATION,
        );
        Ok(self.execute(&call).await?.result)
    }

    /// Every conversation, each with its latest message and its reservation.
    pub async fn list_conversations(&self) -> Result<Vec<Value>, HostawayError> {
        self.list_by_offset(
            "/conversations",
            endpoints::CONVERSATIONS,
            &[("includeResources", "1".into())],
        )
        .await
    }

    /// Every message of one conversation.
    pub async fn list_messages(&self, conversation_id: i64) -> Result<Vec<Value>, HostawayError> {
        self.list_by_offset(
            &format!("/conversations/{conversation_id}/messages"),
            endpoints::MESSAGES,
            &[],
        )
        .await
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRegistration>, HostawayError> {
        let call = Call::new(
            Method::GET,
            "/webhooks/unifiedWebhooks",
            endpoints::WEBHOOKS_LIST,
        );
        let envelope = self.execute(&call).await?;
        result_array(endpoints::WEBHOOKS_LIST, envelope.result)?
            .into_iter()
            .map(|item| decode_registration(endpoints::WEBHOOKS_LIST, item))
            .collect()
    }

    pub async fn create_webhook(
        &self,
        spec: &WebhookSpec,
    ) -> Result<WebhookRegistration, HostawayError> {
        let call = Call::new(
            Method::POST,
            "/webhooks/unifiedWebhooks",
            endpoints::WEBHOOK_CREATE,
        )
        .json(to_json(spec));
        decode_registration(endpoints::WEBHOOK_CREATE, self.execute(&call).await?.result)
    }

    pub async fn get_webhook(&self, id: i64) -> Result<WebhookRegistration, HostawayError> {
        let call = Call::new(
            Method::GET,
            format!("/webhooks/unifiedWebhooks/{id}"),
            endpoints::WEBHOOK_GET,
        );
        decode_registration(endpoints::WEBHOOK_GET, self.execute(&call).await?.result)
    }

    pub async fn update_webhook(
        &self,
        id: i64,
        spec: &WebhookSpec,
    ) -> Result<WebhookRegistration, HostawayError> {
        let call = Call::new(
            Method::PUT,
            format!("/webhooks/unifiedWebhooks/{id}"),
            endpoints::WEBHOOK_UPDATE,
        )
        .json(to_json(spec));
        decode_registration(endpoints::WEBHOOK_UPDATE, self.execute(&call).await?.result)
    }

    pub async fn delete_webhook(&self, id: i64) -> Result<(), HostawayError> {
        let call = Call::new(
            Method::DELETE,
            format!("/webhooks/unifiedWebhooks/{id}"),
            endpoints::WEBHOOK_DELETE,
        );
        self.execute(&call).await.map(|_| ())
    }

    /// Revokes the account's current token at Hostaway and forgets it.
    pub async fn revoke_token(&self) -> Result<(), HostawayError> {
        let inner = &self.client.inner;
        let token = inner
            .tokens
            .get(self.account_id(), self.token_fetcher())
            .await?;
        let call = Call::new(Method::DELETE, "/accessTokens", endpoints::REVOKE_TOKEN)
            .query("token", token.expose());
        let sender = Anonymous {
            account_id: self.account_id(),
        };
        let result = inner.retrying(&call, self.account_id(), sender).await;
        inner.tokens.forget(self.account_id());
        result.map(|_| ())
    }
}

/// The `entity` label of a list endpoint.
pub(super) fn entity_of(endpoint: &str) -> &'static str {
    match endpoint {
        endpoints::LISTINGS => "listings",
        endpoints::RESERVATIONS => "reservations",
        endpoints::CONVERSATIONS => "conversations",
        _ => "messages",
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn parse_envelope(endpoint: &str, body: &[u8]) -> Result<Envelope, HostawayError> {
    let mut envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| HostawayError::Decode {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
    if decode::may_hold_nul(body) {
        // Stored the same way as webhooks: NUL becomes U+FFFD.
        decode::replace_nul(&mut envelope.result);
    }
    if envelope.status.as_deref() == Some("fail") {
        return Err(HostawayError::Api {
            endpoint: endpoint.to_string(),
            status: 200,
            message: envelope.error_message().unwrap_or_default(),
        });
    }
    Ok(envelope)
}

pub(super) fn result_array(endpoint: &str, result: Value) -> Result<Vec<Value>, HostawayError> {
    match result {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        other => Err(HostawayError::Decode {
            endpoint: endpoint.to_string(),
            message: format!("expected a list in `result`, got {}", kind(&other)),
        }),
    }
}

fn decode_registration(endpoint: &str, value: Value) -> Result<WebhookRegistration, HostawayError> {
    serde_json::from_value(value).map_err(|e| HostawayError::Decode {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
