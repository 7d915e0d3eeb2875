//! Trace context for actor messages: `Traced<M>` wraps any message with the
//! span contexts it was sent from, so a handler on another actor (and
//! thread) opens its span as their child. One generic wrapper instead of a
//! field per message.
//!
//! What travels is an OpenTelemetry `SpanContext` (trace id, span id,
//! flags), never the `tracing::Span` itself: a span is exported when its
//! last handle drops, so a handle riding in a queued message would keep,
//! say, a `POST /sync` request span open until the queued sync started.

use actix::Message;
pub use opentelemetry::trace::SpanContext;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A message plus the span context(s) that caused it. Most messages have
/// one parent; a batch built from several deliveries carries one per
/// delivery.
pub struct Traced<M> {
    pub msg: M,
    pub parents: Vec<SpanContext>,
}

impl<M: Message> Message for Traced<M> {
    type Result = M::Result;
}

pub use crate::telemetry::span_context as context_of;

/// Makes `span` a child of the first of `parents` and links it to the
/// others (work done for several deliveries at once shows up in each of
/// their traces). Call it before the span is entered.
pub fn adopt(span: &Span, parents: &[SpanContext]) {
    let mut parents = parents.iter().filter(|p| p.is_valid());
    if let Some(first) = parents.next() {
        let _ =
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(first.clone()));
    }
    for other in parents {
        span.add_link(other.clone());
    }
}

impl<M> Traced<M> {
    /// The first parent: the one a child span hangs under.
    pub fn parent(&self) -> SpanContext {
        self.parents
            .first()
            .cloned()
            .unwrap_or_else(SpanContext::empty_context)
    }
}

/// `msg.traced()` wraps a message with the current span's context.
pub trait TraceExt: Sized {
    fn traced(self) -> Traced<Self> {
        Traced {
            msg: self,
            parents: vec![context_of(&Span::current())],
        }
    }

    fn traced_by(self, parents: Vec<SpanContext>) -> Traced<Self> {
        Traced { msg: self, parents }
    }
}

impl<M: Message> TraceExt for M {}
