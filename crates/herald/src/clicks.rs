//! `/c/{token}`: a receiver followed a tracked link. A valid token records `MessageClicked` and
//! redirects (302) to the original link; a tampered or unknown token answers 404 and records
//! nothing.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::server::AppState;

pub async fn click(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match commands::clicks::click(
        &state.store,
        &state.links,
        &token,
        user_agent,
        chrono::Utc::now(),
    )
    .await
    {
        // 302 Found: the link may change with the next message; nothing should cache it.
        Ok(url) => match HeaderValue::from_str(&url) {
            Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
            Err(_) => (StatusCode::NOT_FOUND, "no such link").into_response(),
        },
        Err(error) if error.code.as_str() == "NOT_FOUND" => {
            (StatusCode::NOT_FOUND, "no such link").into_response()
        }
        Err(error) => {
            tracing::error!(error = %error.message, "recording a click failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}
