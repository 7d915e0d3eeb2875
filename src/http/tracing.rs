//! The root span of every request, named and attributed after the
//! OpenTelemetry HTTP semantic conventions; an incoming W3C `traceparent`
//! becomes its parent.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use opentelemetry::global;
use opentelemetry::propagation::Extractor;
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

pub struct SemConvRootSpan;

impl RootSpanBuilder for SemConvRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let method = request.method().as_str().to_owned();
        let route = request.match_pattern();
        let name = match &route {
            Some(route) => format!("{method} {route}"),
            None => method.clone(),
        };
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %method,
            http.route = Empty,
            http.response.status_code = Empty,
            url.path = %request.path(),
            url.scheme = %request.connection_info().scheme(),
            server.address = %request.connection_info().host(),
            client.address = %request.connection_info().realip_remote_addr().unwrap_or(""),
            user_agent.original = %request
                .headers()
                .get("user-agent")
                .and_then(|h| h.to_str().ok())
                .unwrap_or(""),
            "error.type" = Empty,
            hostaway.account_id = Empty,
            hostaway.event = Empty,
            inbox.event_id = Empty,
        );
        if let Some(route) = route {
            span.record("http.route", route.as_str());
        }
        let parent = global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
        let _ = span.set_parent(parent);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", status.as_str());
        }
    }
}
