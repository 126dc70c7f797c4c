//! Distributed tracing: a span continues the trace its cause belongs to, so the API call, the
//! append, dispatch and the supplier call of one message share one trace, even across
//! processes (the trace travels in the events' metadata).
//!
//! These helpers work on `tracing` spans. When the process exports traces (an OpenTelemetry
//! layer is installed, see `herald`'s `otel`), they set and read the span's OpenTelemetry
//! context; without it they do nothing and [`ids`] answers `None`, so callers fall back to ids
//! of their own for the logs.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` a child of the remote span `parent_span_id` in the trace `trace_id` (lowercase
/// hex, as in a W3C `traceparent`). Without a parent span id (an event recorded before spans
/// were kept) the trace id alone is continued, under a parent derived from it. Call it before
/// the span is first entered; invalid ids are ignored.
pub fn continue_trace(span: &tracing::Span, trace_id: &str, parent_span_id: Option<&str>) {
    let Ok(trace) = TraceId::from_hex(trace_id) else {
        return;
    };
    let parent = parent_span_id
        .and_then(|id| SpanId::from_hex(id).ok())
        .unwrap_or_else(|| {
            SpanId::from_bytes((u128::from_be_bytes(trace.to_bytes()) as u64 | 1).to_be_bytes())
        });
    let context = SpanContext::new(
        trace,
        parent,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    if !context.is_valid() {
        return;
    }
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
}

/// The trace id and span id of `span` (lowercase hex), when traces are exported.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}
