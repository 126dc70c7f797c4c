//! Builders for message events and commands with sensible defaults, laid out as one timeline.
//! Tests name only the fields they care about, so a new field touches this file alone.

use chrono::{DateTime, Utc};
use domain::message::*;
use domain::*;
use uuid::Uuid;

/// A fixed instant `secs` seconds after an arbitrary epoch, so tests read as a timeline.
pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
}

pub fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

pub fn phone() -> Receiver {
    Receiver::parse(ReceiverIdType::Phone, "13812345678").unwrap()
}

pub fn sms_content() -> TemplateContent {
    TemplateContent::Text {
        body: "Your order shipped: https://example.com/t/0".to_owned(),
    }
}

pub fn message_id() -> MessageId {
    MessageId::from_uuid(Uuid::from_u128(0x0190_b6c4_5c8e_7b7e_8f3a_2d1e_4c5b_6a79))
}

pub fn template_id() -> TemplateId {
    TemplateId::from_uuid(Uuid::from_u128(0x0190_b6c4_5c8e_7b7e_8f3a_2d1e_4c5b_0001))
}

pub fn accept() -> MessageCommand {
    accept_at(t(0))
}

pub fn accept_at(at: DateTime<Utc>) -> MessageCommand {
    MessageCommand::AcceptMessage {
        message_id: message_id(),
        tenant: tenant(),
        request_id: RequestId::parse("req-1").unwrap(),
        template_id: template_id(),
        template_version: 1,
        channel: Channel::Sms,
        msg_type: MessageType::Notice,
        shield_type: ShieldType::None,
        account: "default".to_owned(),
        receiver: phone(),
        content: sms_content(),
        tracked_links: vec![TrackedLink {
            index: 0,
            url: "https://example.com/order/42".to_owned(),
        }],
        send_at: None,
        at,
    }
}

/// The event `accept()` decides.
pub fn accepted() -> MessageEvent {
    MessageAccepted {
        message_id: message_id(),
        tenant: tenant(),
        request_id: RequestId::parse("req-1").unwrap(),
        template_id: template_id(),
        template_version: 1,
        channel: Channel::Sms,
        msg_type: MessageType::Notice,
        shield_type: ShieldType::None,
        account: "default".to_owned(),
        receiver: phone(),
        content: sms_content(),
        tracked_links: vec![TrackedLink {
            index: 0,
            url: "https://example.com/order/42".to_owned(),
        }],
        send_at: None,
        at: t(0),
    }
    .into()
}

pub fn deduplicated() -> MessageEvent {
    MessageDeduplicated {
        rule: DedupRule::Content,
        key: "k".to_owned(),
        window_secs: 300,
        at: t(1),
    }
    .into()
}

pub fn shielded() -> MessageEvent {
    MessageShielded {
        reason: "NIGHT_DISCARD".to_owned(),
        at: t(1),
    }
    .into()
}

pub fn deferred(until: i64) -> MessageEvent {
    MessageDeferred {
        until: t(until),
        reason: DeferReason::NightShield,
        at: t(1),
    }
    .into()
}

pub fn discarded() -> MessageEvent {
    MessageDiscarded {
        rule: DiscardRule::NotWhitelisted,
        at: t(1),
    }
    .into()
}

pub fn rate_limited() -> MessageEvent {
    MessageRateLimited {
        account: "tencent-1".to_owned(),
        until: t(5),
        at: t(1),
    }
    .into()
}

pub fn dispatched() -> MessageEvent {
    MessageDispatched {
        account: "tencent-1".to_owned(),
        supplier: "tencent".to_owned(),
        supplier_message_id: Some("s-1".to_owned()),
        attempt: 1,
        latency_ms: 20,
        masked_words: 0,
        at: t(2),
    }
    .into()
}

pub fn dispatch_failed() -> MessageEvent {
    DispatchFailed {
        account: "tencent-1".to_owned(),
        supplier: "tencent".to_owned(),
        attempt: 1,
        error_class: ErrorClass::Retryable,
        error_code: "HTTP_503".to_owned(),
        error_message: "unavailable".to_owned(),
        retryable: true,
        next_attempt_at: Some(t(60)),
        at: t(2),
    }
    .into()
}

pub fn failed() -> MessageEvent {
    MessageFailed {
        reason: "attempts exhausted".to_owned(),
        attempts: 0,
        at: t(3),
    }
    .into()
}

pub fn receipt(outcome: ReceiptOutcome) -> MessageEvent {
    ReceiptReceived {
        outcome,
        supplier_status: "DELIVRD".to_owned(),
        reported_at: t(3),
        at: t(4),
    }
    .into()
}

pub fn clicked() -> MessageEvent {
    MessageClicked {
        link_index: 0,
        user_agent_class: "MOBILE".to_owned(),
        at: t(5),
    }
    .into()
}

pub fn read() -> MessageEvent {
    MessageRead {
        source: "inbox".to_owned(),
        at: t(6),
    }
    .into()
}

pub fn read_cmd() -> MessageCommand {
    MessageCommand::MarkRead {
        source: "inbox".to_owned(),
        at: t(6),
    }
}

pub fn recall_requested() -> MessageEvent {
    RecallRequested {
        actor: "ops".to_owned(),
        request_id: None,
        at: t(6),
    }
    .into()
}

pub fn recalled(via_supplier: bool) -> MessageEvent {
    MessageRecalled {
        via_supplier,
        at: t(7),
    }
    .into()
}

pub fn recall_failed() -> MessageEvent {
    RecallFailed {
        reason: "channel cannot recall".to_owned(),
        at: t(7),
    }
    .into()
}

/// One command of every kind, each valid on its own data, with the event it decides where that is fixed.
pub fn every_command_after_accept() -> Vec<MessageCommand> {
    vec![
        deduplicate_cmd(),
        shield_cmd(),
        defer_cmd(100),
        discard_cmd(),
        rate_limit_cmd(),
        dispatch_cmd(),
        dispatch_failure_cmd(),
        fail_cmd(),
        receipt_cmd(ReceiptOutcome::Delivered),
        click_cmd(0),
        request_recall_cmd(),
        confirm_recall_cmd(),
        fail_recall_cmd(),
    ]
}

pub fn deduplicate_cmd() -> MessageCommand {
    MessageCommand::DeduplicateMessage {
        rule: DedupRule::Content,
        key: "k".to_owned(),
        window_secs: 300,
        at: t(1),
    }
}

pub fn shield_cmd() -> MessageCommand {
    MessageCommand::ShieldMessage {
        reason: "NIGHT_DISCARD".to_owned(),
        at: t(1),
    }
}

pub fn defer_cmd(until: i64) -> MessageCommand {
    MessageCommand::DeferMessage {
        until: t(until),
        reason: DeferReason::NightShield,
        at: t(1),
    }
}

pub fn discard_cmd() -> MessageCommand {
    MessageCommand::DiscardMessage {
        rule: DiscardRule::NotWhitelisted,
        at: t(1),
    }
}

pub fn rate_limit_cmd() -> MessageCommand {
    MessageCommand::RateLimitMessage {
        account: "tencent-1".to_owned(),
        until: t(5),
        at: t(1),
    }
}

pub fn dispatch_cmd() -> MessageCommand {
    MessageCommand::RecordDispatch {
        account: "tencent-1".to_owned(),
        supplier: "tencent".to_owned(),
        supplier_message_id: Some("s-1".to_owned()),
        attempt: 1,
        latency_ms: 20,
        masked_words: 0,
        at: t(2),
    }
}

pub fn dispatch_failure_cmd() -> MessageCommand {
    MessageCommand::RecordDispatchFailure {
        account: "tencent-1".to_owned(),
        supplier: "tencent".to_owned(),
        attempt: 1,
        error_class: ErrorClass::Retryable,
        error_code: "HTTP_503".to_owned(),
        error_message: "unavailable".to_owned(),
        retryable: true,
        next_attempt_at: Some(t(60)),
        at: t(2),
    }
}

pub fn fail_cmd() -> MessageCommand {
    MessageCommand::FailMessage {
        reason: "attempts exhausted".to_owned(),
        at: t(3),
    }
}

pub fn receipt_cmd(outcome: ReceiptOutcome) -> MessageCommand {
    MessageCommand::RecordReceipt {
        outcome,
        supplier_status: "DELIVRD".to_owned(),
        reported_at: t(3),
        at: t(4),
    }
}

pub fn click_cmd(link_index: u32) -> MessageCommand {
    MessageCommand::RecordClick {
        link_index,
        user_agent_class: "MOBILE".to_owned(),
        at: t(5),
    }
}

pub fn request_recall_cmd() -> MessageCommand {
    MessageCommand::RequestRecall {
        actor: "ops".to_owned(),
        request_id: None,
        at: t(6),
    }
}

pub fn confirm_recall_cmd() -> MessageCommand {
    MessageCommand::ConfirmRecall {
        via_supplier: true,
        at: t(7),
    }
}

pub fn fail_recall_cmd() -> MessageCommand {
    MessageCommand::FailRecall {
        reason: "channel cannot recall".to_owned(),
        at: t(7),
    }
}
