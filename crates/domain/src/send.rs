//! The send request stream (`send-{tenant}:{request id}`): one event that records which messages a
//! request made, so a retried request gets the same answer and makes no second message.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{MessageId, RequestId, TemplateId};
use crate::receiver::Receiver;
use crate::wire::{
    DomainEvent, EventDecodeError, from_payload, to_payload, to_payload_json, unsupported_version,
};

/// One message a send request made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    pub message_id: MessageId,
    pub receiver: Receiver,
}

/// A send request was accepted: its messages were appended in the same commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAccepted {
    pub request_id: RequestId,
    pub template_id: TemplateId,
    pub template_version: u32,
    /// A digest of the request's input. The same request id with other input is refused, not
    /// answered with the first request's messages.
    pub fingerprint: String,
    pub messages: Vec<SentMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// The events of a send request stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendEvent {
    SendAccepted(SendAccepted),
}

impl DomainEvent for SendEvent {
    const SCHEMA_VERSION: u16 = 1;
    const EVENT_TYPES: &'static [&'static str] = &["SendAccepted"];

    fn event_type(&self) -> &'static str {
        match self {
            SendEvent::SendAccepted(_) => "SendAccepted",
        }
    }

    fn encode(&self) -> Value {
        match self {
            SendEvent::SendAccepted(e) => to_payload(e),
        }
    }

    fn encode_json(&self) -> String {
        match self {
            SendEvent::SendAccepted(e) => to_payload_json(e),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u16,
        data: &Value,
    ) -> Result<Self, EventDecodeError> {
        if schema_version != Self::SCHEMA_VERSION {
            return Err(unsupported_version(
                event_type,
                schema_version,
                Self::SCHEMA_VERSION,
            ));
        }
        match event_type {
            "SendAccepted" => Ok(SendEvent::SendAccepted(from_payload(event_type, data)?)),
            other => Err(EventDecodeError::UnknownType {
                event_type: other.to_owned(),
            }),
        }
    }
}
