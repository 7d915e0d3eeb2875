//! Logs and traces. One tracing subscriber per process: an env filter, JSON
//! lines (with `trace_id`/`span_id`) or human-readable logs, and an
//! OpenTelemetry layer. Spans always get W3C ids (so logs correlate and
//! context propagates); they are exported over OTLP only when
//! `telemetry.otlp_endpoint` is set, from a bounded queue on a background
//! thread, so a slow or absent collector never slows request handling.

use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{self, FilterExt};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Environment, LogFormat, OtlpProtocol, TelemetrySettings};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(String),
    #[error("telemetry log or trace filter: {0}")]
    Filter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the tracer provider; `shutdown` flushes what is queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Flushes queued spans and stops the exporter (bounded by its timeout).
    /// Runs on a blocking thread: the exporter may need the async runtime.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }

    /// Exports everything queued so far (tests).
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }
}

/// Installs the process-wide subscriber writing logs to stdout.
pub fn init(
    settings: &TelemetrySettings,
    environment: Environment,
) -> Result<Telemetry, TelemetryError> {
    init_with_writer(settings, environment, std::io::stdout)
}

/// Installs the process-wide subscriber writing logs to `writer`. Call it
/// inside the async runtime (the gRPC exporter spawns onto it).
pub fn init_with_writer<W>(
    settings: &TelemetrySettings,
    environment: Environment,
    writer: W,
) -> Result<Telemetry, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    crate::install_tls_provider();
    let provider = tracer_provider(settings, environment)?;
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    let filter = EnvFilter::try_new(&*settings.log_filter)
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let trace_filter = EnvFilter::try_new(&*settings.trace_filter)
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    // Per span only what the traces use: no source location, thread name,
    // target or busy/idle timings (each an allocation or a clock read on
    // every span, enter and exit, several spans per webhook), and no
    // OpenTelemetry context pushed on every enter (the one reader, the log
    // line's trace id, asks the current span instead).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(trace_filter);
    let logs = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            ))
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_target(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(otel)
        // Log lines only: the log layer never sees a span, so it does not
        // format every span's fields into text on the chance that a log
        // line is written inside it (several spans per webhook; a line
        // names its trace and span by id, and its own fields).
        .with(logs.with_filter(filter.and(filter::filter_fn(|meta| meta.is_event()))))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry { provider })
}

fn tracer_provider(
    settings: &TelemetrySettings,
    environment: Environment,
) -> Result<SdkTracerProvider, TelemetryError> {
    crate::install_tls_provider();
    let resource = Resource::builder()
        .with_service_name(settings.service_name.to_string())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment", environment.as_str()),
            KeyValue::new("deployment.environment.name", environment.as_str()),
        ])
        .build();
    let endpoint = settings.otlp_endpoint.trim();
    // With nowhere to export, new traces are not recorded: their spans
    // still get ids (log lines and stored traceparents name them) but no
    // span data is built; a sampled incoming parent is still honoured.
    let root_ratio = if endpoint.is_empty() {
        0.0
    } else {
        settings.sampling_ratio.get()
    };
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            root_ratio,
        ))));
    if !endpoint.is_empty() {
        let timeout = Duration::from_millis(settings.export_timeout_ms.max(100));
        let exporter = match settings.otlp_protocol {
            OtlpProtocol::HttpProtobuf => {
                let url = if endpoint.ends_with("/v1/traces") {
                    endpoint.to_string()
                } else {
                    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
                };
                // The batch processor exports from its own thread with a
                // blocking client; reqwest builds that client only outside
                // an async runtime.
                let client = std::thread::spawn(move || {
                    reqwest::blocking::Client::builder()
                        .timeout(timeout)
                        .build()
                })
                .join()
                .map_err(|_| TelemetryError::Exporter("HTTP client thread panicked".into()))?
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
                SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(url)
                    .with_timeout(timeout)
                    .with_http_client(client)
                    .build()
            }
            OtlpProtocol::Grpc => SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.to_string())
                .with_timeout(timeout)
                .build(),
        }
        .map_err(|e| TelemetryError::Exporter(format!("{endpoint}: {e}")))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(settings.export_queue_size.max(64))
                    .with_max_export_batch_size(512.min(settings.export_queue_size.max(64)))
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        builder = builder.with_span_processor(processor);
    }
    Ok(builder.build())
}

/// Wraps a JSON event formatter and prepends the current OpenTelemetry
/// `trace_id` and `span_id`.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::with_capacity(256);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let span_context = span.span_context();
        match line.strip_prefix('{') {
            Some(rest) if span_context.is_valid() => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{}",
                span_context.trace_id(),
                span_context.span_id(),
                rest
            ),
            _ => writer.write_str(&line),
        }
    }
}

/// The W3C `traceparent` of `span`, to store with work that may run later
/// (an inbox row) or elsewhere.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span = cx.span();
    let context = span.span_context();
    if !context.is_valid() {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        (context.trace_flags() & TraceFlags::SAMPLED).to_u8()
    ))
}

/// The OpenTelemetry context a stored `traceparent` describes (version 00:
/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`).
pub fn context_from_traceparent(traceparent: &str) -> Option<Context> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00"
        || parts.next().is_some()
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context
        .is_valid()
        .then(|| Context::new().with_remote_span_context(context))
}

/// The OpenTelemetry span context of `span`: what travels between actors
/// (the span itself would stay open as long as a handle to it lives).
pub fn span_context(span: &tracing::Span) -> opentelemetry::trace::SpanContext {
    span.context().span().span_context().clone()
}

/// `span_context` of the current span.
pub fn current_span_context() -> opentelemetry::trace::SpanContext {
    span_context(&tracing::Span::current())
}

/// Makes `span` a child of the delivery described by `traceparent`. Call it
/// before the span is entered.
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(context_from_traceparent) {
        let _ = span.set_parent(cx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, protocol: OtlpProtocol) -> TelemetrySettings {
        TelemetrySettings {
            otlp_endpoint: endpoint.to_string().try_into().unwrap(),
            otlp_protocol: protocol,
            service_name: "sync-hostaway".to_string().try_into().unwrap(),
            log_format: LogFormat::Json,
            log_filter: "info".to_string().try_into().unwrap(),
            trace_filter: "info".to_string().try_into().unwrap(),
            sampling_ratio: 1.0.try_into().unwrap(),
            export_queue_size: 64,
            export_timeout_ms: 200,
            metrics_refresh_secs: 10,
        }
    }

    #[tokio::test]
    async fn both_otlp_protocols_build_an_exporter() {
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            let provider =
                tracer_provider(&settings("http://127.0.0.1:9", protocol), Environment::Test)
                    .expect("exporter builds");
            // Nothing listens there: shutting down must still return promptly.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
        assert!(
            crate::config::OptionalUrl::try_from("not a url".to_string()).is_err(),
            "an endpoint that is not a URL never reaches the exporter"
        );
    }

    #[test]
    fn without_an_exporter_spans_get_ids_but_new_traces_are_not_recorded() {
        let provider =
            tracer_provider(&settings("", OtlpProtocol::HttpProtobuf), Environment::Test)
                .expect("provider");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_context_activation(false);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("inbox.append");
            let stored = traceparent_of(&span).expect("a new span has ids");
            assert!(
                stored.starts_with("00-") && stored.ends_with("-00"),
                "{stored}"
            );
            // A sampled incoming parent is honoured.
            let child = tracing::info_span!("account.apply");
            set_remote_parent(
                &child,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            let stored = traceparent_of(&child).expect("ids");
            assert!(
                stored.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
                    && stored.ends_with("-01"),
                "{stored}"
            );
        });
    }

    #[test]
    fn traceparent_round_trip() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = context_from_traceparent(tp).unwrap();
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context_from_traceparent("garbage").is_none());
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert!(context_from_traceparent(bad).is_none(), "{bad}");
        }
        assert!(sc.is_sampled() && sc.is_remote());
        let unsampled =
            context_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
                .unwrap();
        assert!(!unsampled.span().span_context().is_sampled());
    }
}
