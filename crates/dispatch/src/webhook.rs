//! The WEBHOOK channel: a JSON POST to the receiver's URL, signed so the receiving system can
//! tell it came from Herald and was not replayed later.
//!
//! Headers: `X-Herald-Timestamp` (Unix seconds), `X-Herald-Signature: v1=<hex>` where the hex is
//! HMAC-SHA256 over `"{timestamp}.{body}"` with the account's secret, and `Idempotency-Key`
//! (the message id). Receivers should reject timestamps more than five minutes old.

use std::time::Duration;

use chrono::Utc;
use domain::Channel;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::http;
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};

pub struct WebhookSupplier {
    client: reqwest::Client,
    secret: Vec<u8>,
}

impl std::fmt::Debug for WebhookSupplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSupplier").finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    message_id: String,
    tenant: &'a str,
    channel: &'static str,
    msg_type: &'static str,
    receiver: &'a str,
    content: &'a domain::TemplateContent,
    attempt: u32,
}

/// The signature of a webhook call: what the receiving system recomputes.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1={}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl WebhookSupplier {
    pub fn new(secret: impl Into<Vec<u8>>, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(WebhookSupplier {
            client: http::client(timeout)?,
            secret: secret.into(),
        })
    }

    async fn post(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let payload = Payload {
            message_id: message.message_id.to_string(),
            tenant: message.tenant.as_str(),
            channel: message.channel.as_str(),
            msg_type: message.msg_type.as_str(),
            receiver: message.receiver.value(),
            content: message.content,
            attempt: message.attempt,
        };
        let body = serde_json::to_vec(&payload).map_err(|e| SendError::Final {
            code: "ENCODE".into(),
            message: e.to_string(),
        })?;
        let timestamp = Utc::now().timestamp();
        let response = self
            .client
            .post(message.receiver.value())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Herald-Timestamp", timestamp.to_string())
            .header(
                "X-Herald-Signature",
                signature(&self.secret, timestamp, &body),
            )
            .header("Idempotency-Key", payload.message_id.as_str())
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(http::status_error(status, &headers, &text));
        }
        // A receiver may answer `{"id": "..."}` to name its own record of the message.
        let supplier_message_id = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_owned)));
        Ok(Sent {
            supplier_message_id,
        })
    }
}

impl Supplier for WebhookSupplier {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Webhook
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.post(message))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            super::signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
