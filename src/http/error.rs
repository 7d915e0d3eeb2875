//! JSON errors for every route: `{"error": "<code>", "message": "<text>"}`
//! with the right status. Never a stack trace, never a secret.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` seconds to send.
    pub retry_after: Option<u64>,
    /// Close the connection after answering (a client that sends its body
    /// too slowly, or that arrived while the service is saturated).
    pub close: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    /// The same error, answered with `Connection: close`.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The same error, with a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    /// A server-side failure: the cause is logged, the client gets a generic text.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the service logs",
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        if self.close {
            builder.force_close();
        }
        if let Some(seconds) = self.retry_after {
            builder.insert_header((header::RETRY_AFTER, seconds));
        }
        let mut response = builder.json(Body {
            error: self.code,
            message: &self.message,
        });
        if self.status == StatusCode::UNAUTHORIZED && self.code == "unauthorized_basic" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sync-hostaway\""),
            );
        } else if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::lifecycle::LifecycleError> for ApiError {
    fn from(err: crate::lifecycle::LifecycleError) -> Self {
        use crate::lifecycle::LifecycleError;
        match err {
            LifecycleError::NotFound(_) => ApiError::not_found(err.to_string()),
            LifecycleError::AlreadyExists(_) => ApiError::conflict(err.to_string()),
            LifecycleError::Inactive(_) => {
                ApiError::new(StatusCode::CONFLICT, "inactive", err.to_string())
            }
            LifecycleError::Unavailable(message) => ApiError::unavailable(message),
            LifecycleError::Failed(message) => ApiError::internal(&message),
            LifecycleError::Database(db) => db.into(),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        tracing::error!(error = %err, "database error");
        ApiError::unavailable("database unavailable; retry later")
    }
}
