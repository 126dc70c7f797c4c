//! The GraphQL transport: authenticates the API key, applies the per-key rate limit and the body
//! size limit, runs the schema, and makes sure every error leaves with an `extensions.code`.

use std::sync::Arc;
use std::time::Instant;

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
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
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
