//! Hostaway's response envelopes: `{"status":"success",
//! "result":...}` with paging numbers on lists, `{"status":"fail","result":
//! "<message>"}` for errors, and `{"status":"fail","message":...}` for 429.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;

use super::behaviour::CountMode;
use super::paging::Page;

/// The 429 text of `tests/fixtures/hostaway/rate_limit_429_response.json`.
pub const RATE_LIMIT_MESSAGE: &str = "Too many requests: the rate limit for this IP address or \
    account has been exceeded. Please retry later.";

/// A failed request, rendered in Hostaway's fail envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub status: StatusCode,
    pub message: String,
    /// `Retry-After` seconds, only ever set on 429.
    pub retry_after: Option<u64>,
}

impl Fail {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Fail {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Fail::new(StatusCode::BAD_REQUEST, message)
    }

    /// Token endpoint: wrong grant, unknown account or wrong secret.
    pub fn invalid_client() -> Self {
        Fail::new(StatusCode::UNAUTHORIZED, "Invalid client credentials")
    }

    /// Missing, unknown, revoked, expired or not yet usable token: Hostaway
    /// answers 403.
    pub fn unauthorized() -> Self {
        Fail::new(StatusCode::FORBIDDEN, "Unauthorized")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Fail::new(StatusCode::NOT_FOUND, message)
    }

    pub fn method_not_allowed() -> Self {
        Fail::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
    }

    pub fn too_many_requests(retry_after: Option<u64>) -> Self {
        Fail {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: RATE_LIMIT_MESSAGE.to_string(),
            retry_after,
        }
    }

    /// An injected server-side failure (500, 502, 503, 504).
    pub fn server(status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match status.as_u16() {
            502 => "Bad gateway",
            503 => "Service temporarily unavailable",
            504 => "Gateway timeout",
            _ => "Internal server error",
        };
        Fail::new(status, message)
    }

    /// The envelope: `message` on 429 (like Hostaway), `result` otherwise.
    fn wire(&self) -> FailBody<'_> {
        let limited = self.status == StatusCode::TOO_MANY_REQUESTS;
        FailBody {
            status: "fail",
            result: (!limited).then_some(self.message.as_str()),
            message: limited.then_some(self.message.as_str()),
        }
    }
}

// The wire structs keep Hostaway's key order (`status` first), which a
// `serde_json::Value` (sorted keys) would not.

#[derive(Serialize)]
struct FailBody<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct SuccessBody {
    status: &'static str,
    result: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageBody {
    status: &'static str,
    result: Vec<Value>,
    limit: usize,
    offset: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_pages: Option<usize>,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl ResponseError for Fail {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        response.json(self.wire())
    }
}

/// `{"status":"success","result":<result>}`.
pub fn success(result: Value) -> HttpResponse {
    HttpResponse::Ok().json(SuccessBody {
        status: "success",
        result,
    })
}

/// A list page with Hostaway's paging numbers (`count`, `page` and
/// `totalPages` only when `count` says so).
pub fn page(page: Page<Value>, count: CountMode) -> HttpResponse {
    let totals = count == CountMode::Present;
    HttpResponse::Ok().json(PageBody {
        status: "success",
        page: totals.then(|| page.page()),
        total_pages: totals.then(|| page.total_pages()),
        limit: page.limit,
        offset: page.offset,
        count: totals.then_some(page.count),
        result: page.items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_fixtures() {
        let read = |name: &str| -> Value {
            let path = format!(
                "{}/../tests/fixtures/hostaway/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
        };
        let body = |fail: Fail| serde_json::to_value(fail.wire()).unwrap();
        assert_eq!(
            body(Fail::too_many_requests(None)),
            read("rate_limit_429_response.json")
        );
        assert_eq!(
            body(Fail::not_found("Reservation not found")),
            read("error_fail_response.json")
        );
    }
}
