//! Events of one message stream (`message-{uuid}`) and their wire format.
//! Every step of a message's life is one event, so the stream is its full trace.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::{Channel, MessageType, ShieldType};
use crate::ids::{MessageId, RequestId, TemplateId, TenantId};
use crate::receiver::Receiver;
use crate::template::TemplateContent;
use crate::wire::{EventDecodeError, event_enum, unsupported_version, wire_enum};

wire_enum! {
    /// Which dedup rule matched.
    pub enum DedupRule {
        /// The same receiver got the same content within the window.
        Content = "CONTENT",
        /// The receiver reached the frequency cap for the channel within the window.
        Frequency = "FREQUENCY",
    }
}

wire_enum! {
    pub enum DeferReason {
        NightShield = "NIGHT_SHIELD",
        RetryBackoff = "RETRY_BACKOFF",
        Scheduled = "SCHEDULED",
        RateLimited = "RATE_LIMITED",
        /// Every account of the channel has its circuit breaker open.
        CircuitOpen = "CIRCUIT_OPEN",
    }
}

wire_enum! {
    pub enum DiscardRule {
        TemplateDisabled = "TEMPLATE_DISABLED",
        NotWhitelisted = "NOT_WHITELISTED",
        SensitiveWords = "SENSITIVE_WORDS",
        ReceiverBlocked = "RECEIVER_BLOCKED",
        /// The tenant's or template's discard switch is on (live policy).
        DiscardSwitch = "DISCARD_SWITCH",
    }
}

wire_enum! {
    /// How a supplier error is handled: retried, given up, or waited out without spending an attempt.
    pub enum ErrorClass {
        Retryable = "RETRYABLE",
        Final = "FINAL",
        Throttled = "THROTTLED",
    }
}

wire_enum! {
    /// What a delivery receipt says.
    pub enum ReceiptOutcome {
        Delivered = "DELIVERED",
        Undelivered = "UNDELIVERED",
    }
}

/// A link in the content that was rewritten for click tracking; clicks refer to it by index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedLink {
    pub index: u32,
    pub url: String,
}

/// The message was accepted for one receiver; the stream starts here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAccepted {
    pub message_id: MessageId,
    pub tenant: TenantId,
    pub request_id: RequestId,
    pub template_id: TemplateId,
    pub template_version: u32,
    pub channel: Channel,
    pub msg_type: MessageType,
    pub shield_type: ShieldType,
    /// The channel account (or account group) the template names; dispatch sends through it.
    /// Absent in events written before it was recorded: dispatch then picks by channel.
    #[serde(default)]
    pub account: String,
    pub receiver: Receiver,
    /// The rendered content, with tracked links already rewritten.
    pub content: TemplateContent,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracked_links: Vec<TrackedLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeduplicated {
    pub rule: DedupRule,
    pub key: String,
    pub window_secs: u64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageShielded {
    /// A reason code such as `NIGHT_DISCARD`.
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeferred {
    pub until: DateTime<Utc>,
    pub reason: DeferReason,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDiscarded {
    pub rule: DiscardRule,
    pub at: DateTime<Utc>,
}

/// The channel account was out of capacity; recorded only when it changes the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRateLimited {
    pub account: String,
    pub until: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// A supplier accepted the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDispatched {
    pub account: String,
    pub supplier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_message_id: Option<String>,
    pub attempt: u32,
    pub latency_ms: u64,
    /// Sensitive words masked in the content before it went out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub masked_words: u32,
    pub at: DateTime<Utc>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One supplier attempt failed; the message stays where it was, and a retry is a separate deferral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchFailed {
    pub account: String,
    pub supplier: String,
    pub attempt: u32,
    pub error_class: ErrorClass,
    pub error_code: String,
    pub error_message: String,
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// Dispatch gave up for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFailed {
    pub reason: String,
    pub attempts: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptReceived {
    pub outcome: ReceiptOutcome,
    /// The supplier's own status code, kept for reconciliation.
    pub supplier_status: String,
    /// When the supplier says delivery happened, which may be well before `at`.
    pub reported_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageClicked {
    pub link_index: u32,
    pub user_agent_class: String,
    pub at: DateTime<Utc>,
}

/// The receiver saw the message without following a link: an inbox client marked it read.
/// A click reads a message too, without this event; a second read records nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRead {
    /// Who said so, for example `inbox` for `markInboxRead`.
    pub source: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallRequested {
    pub actor: String,
    /// Set when the recall was asked for by send request rather than by message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecalled {
    /// True when the supplier took the message back; false when it was cancelled before dispatch.
    pub via_supplier: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallFailed {
    pub reason: String,
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Everything that can happen to a message.
    pub enum MessageEvent {
        MessageAccepted,
        MessageDeduplicated,
        MessageShielded,
        MessageDeferred,
        MessageDiscarded,
        MessageRateLimited,
        MessageDispatched,
        DispatchFailed,
        MessageFailed,
        ReceiptReceived,
        MessageClicked,
        MessageRead,
        RecallRequested,
        MessageRecalled,
        RecallFailed,
    }
}

impl MessageEvent {
    /// The schema version written by this build.
    pub const SCHEMA_VERSION: u16 = 1;

    /// Rewrites an older payload into the current shape; version 1 is current, so it passes through.
    fn upcast<'a>(
        event_type: &str,
        schema_version: u16,
        data: &'a Value,
    ) -> Result<Cow<'a, Value>, EventDecodeError> {
        match schema_version {
            1 => Ok(Cow::Borrowed(data)),
            _ => Err(unsupported_version(
                event_type,
                schema_version,
                Self::SCHEMA_VERSION,
            )),
        }
    }

    /// When the event happened, as stated by the command that caused it.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::MessageAccepted(e) => e.at,
            Self::MessageDeduplicated(e) => e.at,
            Self::MessageShielded(e) => e.at,
            Self::MessageDeferred(e) => e.at,
            Self::MessageDiscarded(e) => e.at,
            Self::MessageRateLimited(e) => e.at,
            Self::MessageDispatched(e) => e.at,
            Self::DispatchFailed(e) => e.at,
            Self::MessageFailed(e) => e.at,
            Self::ReceiptReceived(e) => e.at,
            Self::MessageClicked(e) => e.at,
            Self::MessageRead(e) => e.at,
            Self::RecallRequested(e) => e.at,
            Self::MessageRecalled(e) => e.at,
            Self::RecallFailed(e) => e.at,
        }
    }
}
