//! The GraphQL transport: authenticates the API key, applies the per-key rate limit and the body
//! size limit, runs the schema, and makes sure every error leaves with an `extensions.code`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::parser::types::ExecutableDocument;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use commands::keys::{self, KeyError};

use crate::server::AppState;

pub async fn graphiql() -> Html<&'static str> {
    Html(GRAPHIQL)
}

pub async fn graphql(
    State(state): State<Arc<AppState>>,
    trace: Option<axum::Extension<api::TraceId>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            return error(
                status,
                "VALIDATION",
                "BODY_TOO_LARGE",
                &rejection.body_text(),
            );
        }
    };
    let caller = match authenticate(&state, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if !state.rate.allow(&caller.key_id, Instant::now()) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "KEY_RATE",
            "too many requests for this API key; slow down",
        );
    }
    let mut request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION",
                "BAD_REQUEST_BODY",
                &format!("not a GraphQL request: {e}"),
            );
        }
    };
    state.queries.prepare(&mut request);
    let mut request = request.data(caller);
    if let Some(axum::Extension(trace)) = trace {
        request = request.data(trace);
    }
    let mut response = state.schema.execute(request).await;
    for e in &mut response.errors {
        // Parse and validation errors come from the GraphQL engine without a code: they are the
        // caller's to fix.
        let extensions = e.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", "VALIDATION");
        }
    }
    (StatusCode::OK, axum::Json(response)).into_response()
}

/// Parsed queries by their text. Clients send the same few queries again and again, and
/// parsing a `send` mutation was a tenth of the API process's work; a kept document is cloned
/// instead. The schema still checks every document, kept or not, against its depth and
/// complexity limits and validates it with the request's variables.
#[derive(Default)]
pub struct ParsedQueries {
    documents: Mutex<HashMap<String, ExecutableDocument>>,
}

impl ParsedQueries {
    /// Queries kept at most; past it the cache starts over.
    const KEPT: usize = 256;
    /// Longer queries are parsed every time.
    const LONGEST: usize = 16 * 1024;

    /// Hands `request` its parsed query, kept from an earlier request with the same text or
    /// parsed now and kept. A query that does not parse is left to the schema, which reports
    /// the error as it always does.
    pub fn prepare(&self, request: &mut async_graphql::Request) {
        if request.query.len() > Self::LONGEST {
            return;
        }
        let kept = self.lock().get(&request.query).cloned();
        if let Some(document) = kept {
            request.set_parsed_query(document);
            return;
        }
        let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
            return;
        };
        {
            let mut documents = self.lock();
            if documents.len() >= Self::KEPT {
                documents.clear();
            }
            documents.insert(request.query.clone(), document.clone());
        }
        request.set_parsed_query(document);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutableDocument>> {
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The caller an API key names, or the response that refuses the request.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<keys::Caller, Response> {
    let Some(key) = bearer(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "NO_API_KEY",
            "send an API key as `Authorization: Bearer <key>`",
        ));
    };
    match state.keys.authenticate(&state.store, key).await {
        Ok(caller) => Ok(caller),
        // Unknown, revoked and malformed keys answer alike: the answer must not help guessing.
        Err(KeyError::MalformedKey | KeyError::UnknownKey { .. } | KeyError::RevokedKey { .. }) => {
            Err(error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "BAD_API_KEY",
                "the API key is not valid",
            ))
        }
        Err(other) => {
            tracing::error!(error = %other, "authenticating an API key failed");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "INTERNAL",
                "something went wrong",
            ))
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// A GraphQL-shaped error response, for failures before the schema runs.
pub fn error(status: StatusCode, code: &str, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code, "reason": reason } }]
    });
    (status, axum::Json(body)).into_response()
}

const GRAPHIQL: &str = r#"<!doctype html>
<html>
<head>
  <title>Herald GraphQL</title>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css" />
</head>
<body style="margin:0">
  <div id="graphiql" style="height:100vh"></div>
  <script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
  <script>
    // Set the key in the Headers tab: {"Authorization": "Bearer hk_..."}
    const fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, { fetcher, defaultHeaders: '{"Authorization": "Bearer "}' }));
  </script>
</body>
</html>
"#;
