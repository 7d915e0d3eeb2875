//! Trace context for actor messages: `Traced<M>` wraps any message with the
//! spans it was sent from, so a handler on another actor (and thread) opens its
//! span as their child. One generic wrapper instead of a field per message.

use actix::Message;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A message plus the span(s) that caused it. Most messages have one parent;
/// a batch built from several deliveries carries one per delivery.
pub struct Traced<M> {
    pub msg: M,
    pub parents: Vec<Span>,
}

impl<M: Message> Message for Traced<M> {
    type Result = M::Result;
}

impl<M> Traced<M> {
    /// The first parent: the one a child span hangs under.
    pub fn parent(&self) -> &Span {
        static NONE: std::sync::OnceLock<Span> = std::sync::OnceLock::new();
        self.parents
            .first()
            .unwrap_or_else(|| NONE.get_or_init(Span::none))
    }

    /// Links `span` to every parent but the first (work done for several
    /// deliveries at once shows up in each of their traces).
    pub fn link_others(&self, span: &Span) {
        use opentelemetry::trace::TraceContextExt;
        for other in self.parents.iter().skip(1) {
            span.add_link(other.context().span().span_context().clone());
        }
    }
}

/// `msg.traced()` wraps a message with the current span.
pub trait TraceExt: Sized {
    fn traced(self) -> Traced<Self> {
        Traced {
            msg: self,
            parents: vec![Span::current()],
        }
    }

    fn traced_by(self, parents: Vec<Span>) -> Traced<Self> {
        Traced { msg: self, parents }
    }
}

impl<M: Message> TraceExt for M {}
