//! `/console`: the web console, three static files built into the binary (`console/` beside
//! `src/`): find a message or a receiver's messages with the timeline, today's rates and ratios
//! by channel and account, and the reconciliation view. The page is plain HTML, CSS and
//! JavaScript with no build step; it talks to `/graphql` with the API key the user gives it.
//!
//! Every file leaves with a Content-Security-Policy that allows this server only: no inline
//! script or style, nothing external, no framing. The charts are SVG elements made through the
//! DOM, which the policy does not restrict.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/app.css");

/// Same-origin only: the page, its script and style, and its `fetch` of `/graphql`.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /console`: the page.
pub async fn index() -> Response {
    file(INDEX, "text/html; charset=utf-8")
}

/// `GET /console/app.js`.
pub async fn script() -> Response {
    file(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /console/app.css`.
pub async fn style() -> Response {
    file(STYLE, "text/css; charset=utf-8")
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // Served from the binary: a new release brings new files, so revalidate each time.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
