//! `/callbacks/{account}`: where suppliers push to Herald (delivery reports, address checks).
//! The account's supplier checks the request and reads the receipts out of it; they are
//! recorded on their messages before the supplier gets its answer, so a failure to record
//! makes the supplier push again.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch::CallbackRequest;
use std::sync::Arc;

use crate::server::AppState;

pub async fn callback(
    State(state): State<Arc<AppState>>,
    Path(account): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let accounts = state.accounts.current();
    let Some(found) = accounts.find(&account) else {
        return (StatusCode::NOT_FOUND, "no such account").into_response();
    };
    let request = CallbackRequest {
        method: method.as_str(),
        query: query.as_deref().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let Some(reply) = found.supplier.callback(&request) else {
        return (StatusCode::NOT_FOUND, "this account takes no callbacks").into_response();
    };
    if !reply.receipts.is_empty() {
        match dispatch::receipts::record_pushed(&state.store, &account, &reply.receipts).await {
            Ok(matched) => {
                tracing::info!(%account, receipts = reply.receipts.len(), matched, "callback receipts recorded");
            }
            Err(error) => {
                tracing::warn!(%error, %account, "recording callback receipts failed; the supplier will push again");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
            }
        }
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut response = (status, reply.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    response
}
