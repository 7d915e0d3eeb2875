//! An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf) on a free
//! loopback port, on its own thread: what an exporter sends is kept as
//! `CapturedSpan`s for the caller to inspect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;

/// One exported span, ids in lower-case hex.
#[derive(Debug, Clone)]
pub struct CapturedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub attributes: HashMap<String, String>,
    pub resource: HashMap<String, String>,
}

impl CapturedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A running receiver (it serves until the process ends).
pub struct OtlpReceiver {
    pub address: SocketAddr,
    spans: Arc<Mutex<Vec<CapturedSpan>>>,
}

impl OtlpReceiver {
    /// Binds 127.0.0.1 on a free port and serves on a thread of its own.
    pub fn start() -> OtlpReceiver {
        let spans: Arc<Mutex<Vec<CapturedSpan>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let store = spans.clone();
        std::thread::spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                let server = HttpServer::new(move || {
                    let store = store.clone();
                    App::new()
                        .app_data(web::PayloadConfig::new(64 << 20))
                        .route(
                            "/v1/traces",
                            web::post().to(move |body: web::Bytes| {
                                let store = store.clone();
                                async move { receive(&store, &body) }
                            }),
                        )
                })
                .workers(1)
                .disable_signals()
                .bind("127.0.0.1:0")
                .expect("the OTLP receiver binds");
                tx.send(server.addrs()[0]).expect("address sent");
                let _ = server.run().await;
            });
        });
        let address = rx.recv().expect("the OTLP receiver started");
        OtlpReceiver { address, spans }
    }

    /// The endpoint to configure an exporter with (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Everything received so far.
    pub fn spans(&self) -> Vec<CapturedSpan> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn receive(store: &Mutex<Vec<CapturedSpan>>, body: &[u8]) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut out = store.lock().unwrap_or_else(|e| e.into_inner());
    for resource_spans in request.resource_spans {
        let resource: HashMap<String, String> = resource_spans
            .resource
            .map(|r| {
                r.attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(&kv.value)))
                    .collect()
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(CapturedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    name: span.name.clone(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                    resource: resource.clone(),
                });
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
