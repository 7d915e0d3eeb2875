//! What the account API accepts: request bodies as serde types that refuse
//! unknown fields, and the path and query parameters as typed extractors.
//! Each field type checks its own rule and names it in the error, so a bad
//! request gets a 400 that says which field is wrong and why.

use std::fmt;
use std::str::FromStr;

use actix_web::web;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;
use uuid::Uuid;

use super::ApiError;
use crate::events::EventType;
use crate::store::inbox::EventStatus;
use crate::sync::SyncMode;

/// Longest client secret accepted.
const MAX_SECRET_LEN: usize = 512;

/// A field that must be present.
pub fn required<T>(field: Option<T>, name: &str) -> Result<T, ApiError> {
    field.ok_or_else(|| ApiError::bad_request("invalid_body", format!("{name} is required")))
}

/// Reads one JSON field through `check`, which returns the value or the
/// message that says what the field must be.
fn json_field<'de, D, T>(
    d: D,
    check: impl FnOnce(Value) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    check(Value::deserialize(d)?).map_err(de::Error::custom)
}

/// `#[serde(default, deserialize_with = "present")]`: a field that is there,
/// even as `null`, is `Some`; one that is absent is `None`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// An account id: a positive integer, in a path segment or a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountId(pub i64);

const ACCOUNT_ID_RULE: &str = "account_id must be a positive integer";

impl FromStr for AccountId {
    type Err = &'static str;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(AccountId)
            .ok_or(ACCOUNT_ID_RULE)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The account id of a path such as `/accounts/{account_id}`.
#[derive(Debug, Clone, Copy)]
pub struct AccountPath(pub AccountId);

impl<'de> Deserialize<'de> for AccountPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map(AccountPath).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    /// From a JSON body: a number, never a string that looks like one.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        json_field(d, |v| {
            match v {
                Value::Number(n) => n.as_i64().filter(|id| *id > 0).map(AccountId),
                _ => None,
            }
            .ok_or_else(|| ACCOUNT_ID_RULE.to_string())
        })
    }
}

/// A client secret: a non-empty string of bounded length. Never printed.
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        json_field(d, |v| match v {
            Value::String(s) if !s.trim().is_empty() && s.len() <= MAX_SECRET_LEN => Ok(Secret(s)),
            Value::String(_) => Err(format!(
                "client_secret must be a non-empty string of at most {MAX_SECRET_LEN} characters"
            )),
            _ => Err("client_secret must be a string".into()),
        })
    }
}

/// A customer id: a UUID, or `null` for none.
#[derive(Debug, Clone, Copy)]
pub struct Customer(pub Option<Uuid>);

impl<'de> Deserialize<'de> for Customer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        json_field(d, |v| match v {
            Value::Null => Ok(Customer(None)),
            Value::String(s) => Uuid::parse_str(&s)
                .map(|u| Customer(Some(u)))
                .map_err(|_| "customer_id must be a UUID".to_string()),
            _ => Err("customer_id must be a UUID string".into()),
        })
    }
}

/// The event types an account ignores, each one the service knows.
#[derive(Debug, Clone, Default)]
pub struct IgnoredEvents(pub Vec<String>);

impl<'de> Deserialize<'de> for IgnoredEvents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        json_field(d, |v| {
            let names = match v {
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) if EventType::parse(&s).is_some() => Some(s),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>(),
                _ => None,
            };
            names.map(IgnoredEvents).ok_or_else(|| {
                format!(
                    "ignored_events must be a list of event names ({})",
                    EventType::names().collect::<Vec<_>>().join(", ")
                )
            })
        })
    }
}

/// `true` or `false`.
#[derive(Debug, Clone, Copy)]
pub struct Active(pub bool);

impl<'de> Deserialize<'de> for Active {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        json_field(d, |v| match v {
            Value::Bool(b) => Ok(Active(b)),
            _ => Err("is_active must be true or false".into()),
        })
    }
}

/// `POST /accounts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// The Hostaway account id.
    #[schema(value_type = i64, minimum = 1, required = true)]
    pub account_id: Option<AccountId>,
    /// Checked with Hostaway before anything is stored; never returned.
    #[schema(value_type = String, min_length = 1, max_length = 512, required = true, write_only)]
    pub client_secret: Option<Secret>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub customer_id: Option<Customer>,
    #[schema(value_type = Option<Vec<super::openapi::EventName>>)]
    pub ignored_events: Option<IgnoredEvents>,
}

/// `PATCH /accounts/{id}`: only the fields present change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    /// A new secret, checked with Hostaway first; never returned.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 512, write_only)]
    pub client_secret: Option<Secret>,
    /// `null` clears it. (`Some(Customer(None))` in code.)
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<uuid::Uuid>)]
    pub customer_id: Option<Customer>,
    #[schema(value_type = Option<bool>)]
    pub is_active: Option<Active>,
    #[schema(value_type = Option<Vec<super::openapi::EventName>>)]
    pub ignored_events: Option<IgnoredEvents>,
}

/// Parses a request body into `T`: JSON, an object, fields as `T` allows.
pub fn parse_body<T: de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    T::deserialize(value).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
}

/// A query flag: `true`/`false` or `1`/`0`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "true" | "1" => Ok(Flag(true)),
            "false" | "0" => Ok(Flag(false)),
            _ => Err(de::Error::custom("must be true or false")),
        }
    }
}

/// `POST /accounts?verify=false`, `PATCH /accounts/{id}?verify=false`:
/// store a secret without checking it with Hostaway first.
#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    pub verify: Option<Flag>,
}

impl VerifyQuery {
    pub fn verify(&self) -> bool {
        self.verify.is_none_or(|f| f.0)
    }
}

/// `DELETE /accounts/{id}?hard=true`.
#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    pub hard: Flag,
}

/// `POST /accounts/{id}/sync?mode=full&dry_run=true`.
#[derive(Debug, Deserialize)]
pub struct SyncQuery {
    /// `full` or `incremental` (the default).
    pub mode: Option<SyncMode>,
    #[serde(default)]
    pub dry_run: Flag,
    /// Answer when the sync ends (200 with its report) instead of at once
    /// (202).
    #[serde(default)]
    pub wait: Flag,
}

/// `GET /webhooks/events?account_id=&status=&limit=`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    pub account_id: Option<i64>,
    pub status: Option<EventStatus>,
    pub limit: Option<EventsLimit>,
    /// The next page: events older than this id (`next_before_id`).
    pub before_id: Option<i64>,
    pub after_id: Option<i64>,
    /// Payloads are left out unless asked for.
    pub include_payload: Option<Flag>,
}

/// Events listed when the query names no limit.
pub const DEFAULT_EVENTS_LIMIT: u64 = 50;

/// How many events one listing returns: 1 to 1000.
#[derive(Debug, Clone, Copy)]
pub struct EventsLimit(pub u64);

impl<'de> Deserialize<'de> for EventsLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .map(EventsLimit)
            .ok_or_else(|| de::Error::custom("limit must be between 1 and 1000"))
    }
}

/// The typed extractors answer a bad path or query with a JSON 400.
pub fn extractor_errors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::bad_request("invalid_query", err.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::bad_request("invalid_path", err.to_string()).into()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_the_field_and_its_rule() {
        let err = |body: &str| parse_body::<CreateAccount>(body.as_bytes()).unwrap_err();
        assert!(
            err(r#"{"account_id":"7"}"#)
                .message
                .contains(ACCOUNT_ID_RULE)
        );
        assert!(
            err(r#"{"colour":1}"#)
                .message
                .contains("unknown field `colour`")
        );
        assert!(err("[]").message.contains("must be a JSON object"));
        let ok: CreateAccount =
            parse_body(br#"{"account_id":7,"client_secret":"s","customer_id":null}"#).unwrap();
        assert_eq!(ok.account_id, Some(AccountId(7)));
        assert!(ok.customer_id.is_none());
        let patch: UpdateAccount = parse_body(br#"{"customer_id":null}"#).unwrap();
        assert!(matches!(patch.customer_id, Some(Customer(None))));
        let patch: UpdateAccount = parse_body(b"{}").unwrap();
        assert!(patch.customer_id.is_none());
        assert!(format!("{:?}", ok.client_secret).contains(".."));
    }

    #[test]
    fn path_ids_are_positive() {
        assert_eq!("12".parse(), Ok(AccountId(12)));
        for bad in ["0", "-1", "abc", ""] {
            assert!(bad.parse::<AccountId>().is_err(), "{bad}");
        }
    }
}
