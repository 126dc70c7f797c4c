//! Every request runs in a span with its trace id: the caller's, from a W3C `traceparent`
//! header, or a new one. The id goes back in the `traceparent` response header, into the
//! GraphQL request (sends record it and the request's span id in their events' metadata, so
//! dispatch logs the same trace and continues it), and into every log line written while the
//! request is handled. When traces are exported (`log.otlp_endpoint`) the request span is the
//! caller's span's child.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero).
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    parse_traceparent(traceparent).map(|(trace, _)| trace)
}

/// The trace id and parent span id of a valid `traceparent`.
pub fn parse_traceparent(traceparent: &str) -> Option<(String, String)> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    valid.then(|| (trace.to_owned(), parent.to_owned()))
}

/// A random id of `digits` hex digits (at most 32), never all zeros.
fn new_id(digits: usize) -> String {
    let mut id = format!("{:032x}", rand::random::<u128>() | 1);
    id.drain(..32 - digits.min(32));
    id
}

/// Runs the request in a span carrying its trace id. When traces are exported the span is a
/// child of the caller's `traceparent` span, and its own ids are the ones passed on.
pub async fn trace(mut request: Request, next: Next) -> Response {
    let caller = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        trace_id = tracing::field::Empty,
        method = %request.method(),
        route = %route
    );
    if let Some((trace, parent)) = &caller {
        telemetry::trace::continue_trace(&span, trace, Some(parent));
    }
    let (trace_id, span_id) = telemetry::trace::ids(&span).unwrap_or_else(|| {
        (
            caller.map_or_else(|| new_id(32), |(trace, _)| trace),
            new_id(16),
        )
    });
    span.record("trace_id", trace_id.as_str());
    let traceparent = format!("00-{trace_id}-{span_id}-01");
    request
        .extensions_mut()
        .insert(api::TraceId { trace_id, span_id });
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::trace_id_of;

    #[test]
    fn traceparent_headers() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Some(id)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }
}
