//! The webhook supplier against a local receiver that verifies the signature and the payload
//! the way a receiving system should, and answers as told.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use dispatch::webhook::{WebhookSupplier, signature};
use dispatch::{Outbound, SendError, Supplier};
use domain::{
    Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TenantId,
};

const SECRET: &[u8] = b"shared-secret";

#[derive(Default)]
struct Seen {
    payloads: Vec<serde_json::Value>,
    idempotency_keys: Vec<String>,
}

/// The receiver: `/ok`, `/throttle`, `/down`, `/reject`, `/slow`. Every call must be signed.
async fn receiver(
    State(seen): State<Arc<Mutex<Seen>>>,
    Path(mode): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let timestamp: i64 = header("x-herald-timestamp").parse().unwrap_or(0);
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 300
        || header("x-herald-signature") != signature(SECRET, timestamp, &body)
    {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    if header("content-type") != "application/json" {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "json only").into_response();
    }
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    {
        let mut seen = seen.lock().unwrap();
        seen.payloads.push(payload);
        seen.idempotency_keys.push(header("idempotency-key"));
    }
    match mode.as_str() {
        "ok" => (StatusCode::OK, r#"{"id":"r-1"}"#).into_response(),
        "throttle" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "30")],
            "slow down",
        )
            .into_response(),
        "down" => (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response(),
        "reject" => (StatusCode::UNPROCESSABLE_ENTITY, "no such user").into_response(),
        _ => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
    }
}

async fn start() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/hook/{mode}", post(receiver))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, seen)
}

async fn send(
    supplier: &WebhookSupplier,
    url: &str,
) -> (MessageId, Result<dispatch::Sent, SendError>) {
    let tenant = TenantId::parse("acme").unwrap();
    let receiver = Receiver::parse(ReceiverIdType::WebhookUrl, url).unwrap();
    let content = TemplateContent::Text {
        body: "Deploy finished".into(),
    };
    let message_id = MessageId::generate();
    let outbound = Outbound {
        message_id,
        tenant: &tenant,
        channel: Channel::Webhook,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content: &content,
        attempt: 1,
    };
    (message_id, supplier.send(&outbound).await)
}

#[tokio::test]
async fn a_signed_post_reaches_the_receiver_and_answers_are_classified() {
    let (address, seen) = start().await;
    let supplier = WebhookSupplier::new(SECRET.to_vec(), Duration::from_secs(1)).unwrap();
    assert_eq!(supplier.name(), "webhook");
    assert!(supplier.supports(Channel::Webhook) && !supplier.supports(Channel::Sms));

    let (id, sent) = send(&supplier, &format!("http://{address}/hook/ok")).await;
    assert_eq!(sent.unwrap().supplier_message_id.as_deref(), Some("r-1"));
    {
        let seen = seen.lock().unwrap();
        let payload = &seen.payloads[0];
        assert_eq!(payload["message_id"], id.to_string());
        assert_eq!(payload["tenant"], "acme");
        assert_eq!(payload["channel"], "WEBHOOK");
        assert_eq!(payload["content"]["body"], "Deploy finished");
        assert_eq!(seen.idempotency_keys[0], id.to_string());
    }

    let (_, throttled) = send(&supplier, &format!("http://{address}/hook/throttle")).await;
    assert!(
        matches!(throttled, Err(SendError::Throttled { retry_after: Some(d), .. }) if d == Duration::from_secs(30))
    );
    let (_, down) = send(&supplier, &format!("http://{address}/hook/down")).await;
    assert!(
        matches!(&down, Err(SendError::Retryable { code, .. }) if code == "HTTP_503"),
        "{down:?}"
    );
    let (_, rejected) = send(&supplier, &format!("http://{address}/hook/reject")).await;
    assert!(
        matches!(&rejected, Err(SendError::Final { code, message }) if code == "HTTP_422" && message == "no such user")
    );
    let (_, slow) = send(&supplier, &format!("http://{address}/hook/slow")).await;
    assert!(
        matches!(&slow, Err(SendError::Retryable { code, .. }) if code == "TIMEOUT"),
        "{slow:?}"
    );
    let (_, refused) = send(&supplier, "http://127.0.0.1:1/hook").await;
    assert!(
        matches!(&refused, Err(SendError::Retryable { code, .. }) if code == "CONNECT"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_receiver() {
    let (address, seen) = start().await;
    let supplier =
        WebhookSupplier::new(b"not-the-secret".to_vec(), Duration::from_secs(1)).unwrap();
    let (_, result) = send(&supplier, &format!("http://{address}/hook/ok")).await;
    assert!(
        matches!(&result, Err(SendError::Final { code, .. }) if code == "HTTP_401"),
        "{result:?}"
    );
    assert!(seen.lock().unwrap().payloads.is_empty());
}
