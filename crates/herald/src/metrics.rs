//! `/metrics` in the Prometheus text format, and the middleware that counts HTTP requests.
//!
//! Counters and histograms are this process's (every role serves them): HTTP requests by route
//! and status, GraphQL root fields by outcome, message events recorded by dispatch by channel,
//! account and event, supplier call latency, token refreshes. Gauges are read from the store
//! when scraped, so every instance reports the same: each lane's queue (waiting and due) and
//! each projection's and subscription group's lag behind the log.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use telemetry::Gauge;

use crate::server::AppState;

/// Counts a request and its latency, by the route it matched.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    telemetry::counter(
        "herald_http_requests_total",
        "HTTP requests by method, route and status.",
        &[("method", &method), ("route", &route), ("status", &status)],
        1,
    );
    telemetry::observe(
        "herald_http_request_duration_seconds",
        "HTTP request latency by route.",
        &[("route", &route)],
        started.elapsed().as_secs_f64(),
    );
    response
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut gauges = Vec::new();
    let now_ms = chrono::Utc::now().timestamp_millis();
    match store::queue::depths(&state.store, now_ms).await {
        Ok(lanes) => {
            for (lane, waiting, due) in lanes {
                gauges.push(Gauge {
                    name: "herald_queue_messages",
                    help: "Messages in the dispatch queue, by lane.",
                    labels: vec![("lane", lane.clone())],
                    value: waiting as f64,
                });
                gauges.push(Gauge {
                    name: "herald_queue_due_messages",
                    help: "Messages in the dispatch queue that are due now, by lane.",
                    labels: vec![("lane", lane)],
                    value: due as f64,
                });
            }
        }
        Err(error) => tracing::warn!(%error, "reading the queue for /metrics failed"),
    }
    // Every subscription group, read once: the projections' (also shown by projection) and
    // dispatch's recall group.
    let groups = projections::Projection::ALL
        .iter()
        .map(|p| (Some(p.name()), p.subscription(), p.category()))
        .chain([(None, dispatch::recall::SUBSCRIPTION, "message")]);
    for (projection, subscription, category) in groups {
        let behind = match projections::lag::lag(&state.store, subscription, category).await {
            Ok(lag) => lag.behind() as f64,
            Err(error) => {
                tracing::warn!(%error, %subscription, "reading a subscription's lag for /metrics failed");
                continue;
            }
        };
        gauges.push(Gauge {
            name: "herald_subscription_lag_events",
            help: "About how many events of its category each subscription group has still to read.",
            labels: vec![("subscription", subscription.to_owned())],
            value: behind,
        });
        if let Some(projection) = projection {
            gauges.push(Gauge {
                name: "herald_projection_lag_events",
                help: "About how many events each projection has still to apply.",
                labels: vec![("projection", projection.to_owned())],
                value: behind,
            });
        }
    }
    let mut response = telemetry::global().render(&gauges).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
