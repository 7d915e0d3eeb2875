//! Hostaway response envelopes and the few typed views the service needs.
//! Entities stay raw `serde_json::Value`s: the raw JSON is what gets stored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode;

/// `{"status": "success", "result": ..., "count": ..., ...}`.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(default, deserialize_with = "decode::de::opt_id")]
    pub count: Option<i64>,
    #[serde(default, deserialize_with = "decode::de::opt_id")]
    pub limit: Option<i64>,
}

impl Envelope {
    /// The human message of a `fail` envelope: `result` (most errors) or
    /// `message` (429s).
    pub fn error_message(&self) -> Option<String> {
        let pick = |v: &Value| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        pick(&self.result).or_else(|| self.message.as_ref().and_then(pick))
    }
}

/// The bare OAuth answer of `POST /v1/accessTokens`.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default, deserialize_with = "decode::de::opt_id")]
    pub expires_in: Option<i64>,
}

/// A unified webhook registration as Hostaway returns it. The password is
/// usually masked (`****`) in lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRegistration {
    #[serde(deserialize_with = "decode::de::id")]
    pub id: i64,
    #[serde(default, deserialize_with = "decode::de::opt_bool")]
    pub is_enabled: Option<bool>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl WebhookRegistration {
    pub fn enabled(&self) -> bool {
        self.is_enabled.unwrap_or(false)
    }
}

/// Body of a create or update call.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    pub is_enabled: u8,
    pub url: String,
    /// Left out of the body when `None`: Hostaway keeps what it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerting_email_address: Option<String>,
}

impl std::fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("is_enabled", &self.is_enabled)
            .field("url", &self.url)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}
