//! The HTTP client every supplier shares, and the one place that reads an HTTP answer as a
//! dispatch outcome: 2xx sent, 429 throttled, 5xx and transport errors retryable, other 4xx final.

use std::sync::Once;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::supplier::SendError;

/// Longest a supplier's error body is kept in an event; error pages can be whole HTML documents.
const MAX_ERROR_BODY: usize = 512;

/// A client with rustls on the ring provider and a timeout on every call.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    static PROVIDER: Once = Once::new();
    // rustls needs one process-wide crypto provider; ring builds with no C toolchain beyond cc.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A transport failure: no answer, so the supplier may or may not have the message. Retrying
/// is safe because every supplier call carries the message id as its idempotency key.
pub fn transport_error(error: &reqwest::Error) -> SendError {
    let code = if error.is_timeout() {
        "TIMEOUT"
    } else if error.is_connect() {
        "CONNECT"
    } else {
        "TRANSPORT"
    };
    SendError::Retryable {
        code: code.to_owned(),
        message: error.to_string(),
    }
}

/// Classifies a non-2xx answer.
pub fn status_error(status: StatusCode, headers: &HeaderMap, body: &str) -> SendError {
    let code = format!("HTTP_{}", status.as_u16());
    let message: String = body.chars().take(MAX_ERROR_BODY).collect();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return SendError::Throttled {
            code,
            message,
            retry_after: retry_after(headers),
        };
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return SendError::Retryable { code, message };
    }
    SendError::Final { code, message }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and is treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert!(matches!(
            status_error(StatusCode::TOO_MANY_REQUESTS, &headers, ""),
            SendError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, &headers, ""),
            SendError::Retryable { .. }
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_REQUEST, &headers, ""),
            SendError::Final { .. }
        ));
        let long = "x".repeat(10_000);
        let SendError::Final { message, .. } = status_error(StatusCode::NOT_FOUND, &headers, &long)
        else {
            panic!("final")
        };
        assert_eq!(message.len(), MAX_ERROR_BODY);
    }
}
