//! `/healthz` (the process is alive) and `/readyz` (each component it depends on answers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use store::EventStore;

use crate::server::AppState;

/// How long one component may take to answer before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ready` when every component is up.
    pub status: &'static str,
    pub components: Vec<Component>,
}

#[derive(Debug, Serialize)]
pub struct Component {
    pub name: &'static str,
    /// Which implementation: `postgres`, `sqlite`, `redis`, `in-process`.
    pub backend: &'static str,
    pub up: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    let store = check("store", state.store.backend(), state.store.ping()).await;
    let cache = match &state.redis {
        Some(client) => check("cache", "redis", ping_redis(client.clone())).await,
        None => Component {
            name: "cache",
            backend: "in-process",
            up: true,
            latency_ms: 0,
            error: None,
        },
    };
    let components = vec![store, cache];
    let ready = components.iter().all(|c| c.up);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "unavailable" },
            components,
        }),
    )
}

async fn check<E: std::fmt::Display>(
    name: &'static str,
    backend: &'static str,
    probe: impl Future<Output = Result<(), E>>,
) -> Component {
    let started = Instant::now();
    let error = match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    };
    if let Some(error) = &error {
        tracing::warn!(component = name, %error, "readiness check failed");
    }
    Component {
        name,
        backend,
        up: error.is_none(),
        latency_ms: started.elapsed().as_millis() as u64,
        error,
    }
}

async fn ping_redis(client: redis::Client) -> Result<(), redis::RedisError> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(|_| ())
}
