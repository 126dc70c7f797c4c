//! Proptest strategies over ids, receivers, content, message events and message commands.
//! Times fall in a short window so that `until` and `at` land on either side of each other.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use domain::message::*;
use domain::*;
use proptest::prelude::*;
use uuid::Uuid;

use crate::support::accept_at;

/// Instants in a short window, with sub-second parts, so orderings vary and timestamps round-trip exactly.
pub fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..200, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(1_700_000_000 + secs, nanos).unwrap())
}

pub fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z ]{1,8}", ".{0,12}"]
}

pub fn any_receiver() -> impl Strategy<Value = Receiver> {
    prop_oneof![
        Just((ReceiverIdType::Phone, "13812345678")),
        Just((ReceiverIdType::Phone, "+14155552671")),
        Just((ReceiverIdType::Email, "a.b@Example.com")),
        Just((
            ReceiverIdType::WebhookUrl,
            "https://oapi.dingtalk.com/robot/send?access_token=x"
        )),
        Just((ReceiverIdType::UserId, "u-42")),
        Just((ReceiverIdType::OpenId, "oAbCdEf123456")),
    ]
    .prop_map(|(id_type, raw)| Receiver::parse(id_type, raw).unwrap())
}

pub fn any_content() -> impl Strategy<Value = TemplateContent> {
    prop_oneof![
        any_text().prop_map(|body| TemplateContent::Text { body }),
        (
            any_text(),
            proptest::option::of(any_text()),
            proptest::option::of(any_text()),
            proptest::collection::vec((any_text(), proptest::option::of(any_text())), 0..3)
        )
            .prop_map(
                |(subject, html, text, attachments)| TemplateContent::Email {
                    subject,
                    html,
                    text,
                    attachments: attachments
                        .into_iter()
                        .map(|(url, filename)| Attachment { url, filename })
                        .collect(),
                }
            ),
        (any_text(), any_text())
            .prop_map(|(title, body)| TemplateContent::Markdown { title, body }),
        (
            any_text(),
            proptest::option::of(any_text()),
            proptest::collection::vec((any_text(), any_text()), 0..3)
        )
            .prop_map(|(template_code, sign_name, params)| {
                TemplateContent::SupplierTemplate {
                    template_code,
                    sign_name,
                    params: params
                        .into_iter()
                        .map(|(name, value)| TemplateParam { name, value })
                        .collect(),
                }
            }),
        (any_text(), any_text(), proptest::option::of(any_text()))
            .prop_map(|(title, body, url)| TemplateContent::Card { title, body, url }),
    ]
}

fn any_enum<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

pub fn any_channel() -> impl Strategy<Value = Channel> {
    any_enum(Channel::ALL)
}

pub fn any_links() -> impl Strategy<Value = Vec<TrackedLink>> {
    proptest::collection::vec((0u32..4, "https://[a-z]{1,6}\\.com/[a-z0-9]{0,4}"), 0..3).prop_map(
        |links| {
            links
                .into_iter()
                .map(|(index, url)| TrackedLink { index, url })
                .collect()
        },
    )
}

pub fn any_accepted() -> impl Strategy<Value = MessageAccepted> {
    (
        (
            any::<u128>(),
            "[a-z0-9][a-z0-9_-]{0,10}",
            "[!-~]{1,20}",
            any::<u128>(),
            0u32..4,
        ),
        (
            any_channel(),
            any_enum(MessageType::ALL),
            any_enum(ShieldType::ALL),
        ),
        (any_receiver(), any_content(), any_links()),
        (proptest::option::of(any_time()), any_time()),
    )
        .prop_map(
            |(
                (message, tenant, request, template, template_version),
                (channel, msg_type, shield_type),
                (receiver, content, tracked_links),
                (send_at, at),
            )| MessageAccepted {
                message_id: MessageId::from_uuid(Uuid::from_u128(message)),
                tenant: TenantId::from_str(&tenant).unwrap(),
                request_id: RequestId::from_str(&request).unwrap(),
                template_id: TemplateId::from_uuid(Uuid::from_u128(template)),
                template_version,
                channel,
                msg_type,
                shield_type,
                account: "default".to_owned(),
                receiver,
                content,
                tracked_links,
                send_at,
                at,
            },
        )
}

/// Any event of a message stream, with arbitrary field values.
pub fn any_event() -> impl Strategy<Value = MessageEvent> {
    prop_oneof![
        any_accepted().prop_map(MessageEvent::from),
        (
            any_enum(DedupRule::ALL),
            any_text(),
            any::<u64>(),
            any_time()
        )
            .prop_map(|(rule, key, window_secs, at)| MessageDeduplicated {
                rule,
                key,
                window_secs,
                at
            }
            .into()),
        (any_text(), any_time()).prop_map(|(reason, at)| MessageShielded { reason, at }.into()),
        (any_time(), any_enum(DeferReason::ALL), any_time())
            .prop_map(|(until, reason, at)| MessageDeferred { until, reason, at }.into()),
        (any_enum(DiscardRule::ALL), any_time()).prop_map(|(rule, at)| MessageDiscarded {
            rule,
            at
        }
        .into()),
        (any_text(), any_time(), any_time()).prop_map(|(account, until, at)| MessageRateLimited {
            account,
            until,
            at
        }
        .into()),
        (
            any_text(),
            any_text(),
            proptest::option::of(any_text()),
            any::<u32>(),
            any::<u64>(),
            0..3u32,
            any_time()
        )
            .prop_map(
                |(
                    account,
                    supplier,
                    supplier_message_id,
                    attempt,
                    latency_ms,
                    masked_words,
                    at,
                )| {
                    MessageDispatched {
                        account,
                        supplier,
                        supplier_message_id,
                        attempt,
                        latency_ms,
                        masked_words,
                        at,
                    }
                    .into()
                }
            ),
        (
            (
                any_text(),
                any_text(),
                any::<u32>(),
                any_enum(ErrorClass::ALL)
            ),
            (
                any_text(),
                any_text(),
                any::<bool>(),
                proptest::option::of(any_time()),
                any_time()
            )
        )
            .prop_map(
                |(
                    (account, supplier, attempt, error_class),
                    (error_code, error_message, retryable, next_attempt_at, at),
                )| {
                    DispatchFailed {
                        account,
                        supplier,
                        attempt,
                        error_class,
                        error_code,
                        error_message,
                        retryable,
                        next_attempt_at,
                        at,
                    }
                    .into()
                }
            ),
        (any_text(), any::<u32>(), any_time()).prop_map(|(reason, attempts, at)| MessageFailed {
            reason,
            attempts,
            at
        }
        .into()),
        (
            any_enum(ReceiptOutcome::ALL),
            any_text(),
            any_time(),
            any_time()
        )
            .prop_map(|(outcome, supplier_status, reported_at, at)| {
                ReceiptReceived {
                    outcome,
                    supplier_status,
                    reported_at,
                    at,
                }
                .into()
            }),
        (0u32..4, any_text(), any_time()).prop_map(|(link_index, user_agent_class, at)| {
            MessageClicked {
                link_index,
                user_agent_class,
                at,
            }
            .into()
        }),
        (any_text(), any_time()).prop_map(|(source, at)| MessageRead { source, at }.into()),
        (any_text(), proptest::option::of(any_text()), any_time()).prop_map(
            |(actor, request_id, at)| RecallRequested {
                actor,
                request_id,
                at
            }
            .into()
        ),
        (any::<bool>(), any_time()).prop_map(|(via_supplier, at)| MessageRecalled {
            via_supplier,
            at
        }
        .into()),
        (any_text(), any_time()).prop_map(|(reason, at)| RecallFailed { reason, at }.into()),
    ]
}

/// A valid acceptance most of the time, so that random command sequences reach interesting states.
pub fn any_accept_command() -> impl Strategy<Value = MessageCommand> {
    prop_oneof![
        4 => any_time().prop_map(accept_at),
        1 => any_accepted().prop_map(|e| MessageCommand::AcceptMessage {
            message_id: e.message_id,
            tenant: e.tenant,
            request_id: e.request_id,
            template_id: e.template_id,
            template_version: e.template_version,
            channel: e.channel,
            msg_type: e.msg_type,
            shield_type: e.shield_type,
            account: e.account,
            receiver: e.receiver,
            content: e.content,
            tracked_links: e.tracked_links,
            send_at: e.send_at,
            at: e.at,
        }),
    ]
}

/// Any message command, with data that is sometimes invalid (empty strings, `until` before `at`).
///
/// Commands that end dispatch early are rarer than the ones that keep a message going,
/// so that random sequences reach dispatched, delivered and recalled states often.
pub fn any_command() -> impl Strategy<Value = MessageCommand> {
    let short = || prop_oneof![1 => Just(String::new()), 7 => "[a-z]{1,6}"];
    let deduplicate = (any_enum(DedupRule::ALL), short(), any::<u64>(), any_time()).prop_map(
        |(rule, key, window_secs, at)| MessageCommand::DeduplicateMessage {
            rule,
            key,
            window_secs,
            at,
        },
    );
    let shield =
        (short(), any_time()).prop_map(|(reason, at)| MessageCommand::ShieldMessage { reason, at });
    let defer = (any_time(), any_enum(DeferReason::ALL), any_time())
        .prop_map(|(until, reason, at)| MessageCommand::DeferMessage { until, reason, at });
    let discard = (any_enum(DiscardRule::ALL), any_time())
        .prop_map(|(rule, at)| MessageCommand::DiscardMessage { rule, at });
    let rate_limit = (short(), any_time(), any_time())
        .prop_map(|(account, until, at)| MessageCommand::RateLimitMessage { account, until, at });
    let dispatch = (
        short(),
        short(),
        proptest::option::of(short()),
        0u32..4,
        any::<u64>(),
        any_time(),
    )
        .prop_map(
            |(account, supplier, supplier_message_id, attempt, latency_ms, at)| {
                MessageCommand::RecordDispatch {
                    account,
                    supplier,
                    supplier_message_id,
                    attempt,
                    latency_ms,
                    masked_words: 0,
                    at,
                }
            },
        );
    let dispatch_failure = (
        (short(), short(), 0u32..4, any_enum(ErrorClass::ALL)),
        (
            short(),
            short(),
            any::<bool>(),
            proptest::option::of(any_time()),
            any_time(),
        ),
    )
        .prop_map(
            |(
                (account, supplier, attempt, error_class),
                (error_code, error_message, retryable, next_attempt_at, at),
            )| {
                MessageCommand::RecordDispatchFailure {
                    account,
                    supplier,
                    attempt,
                    error_class,
                    error_code,
                    error_message,
                    retryable,
                    next_attempt_at,
                    at,
                }
            },
        );
    let fail =
        (short(), any_time()).prop_map(|(reason, at)| MessageCommand::FailMessage { reason, at });
    let receipt = (
        any_enum(ReceiptOutcome::ALL),
        short(),
        any_time(),
        any_time(),
    )
        .prop_map(|(outcome, supplier_status, reported_at, at)| {
            MessageCommand::RecordReceipt {
                outcome,
                supplier_status,
                reported_at,
                at,
            }
        });
    let click = (0u32..3, short(), any_time()).prop_map(|(link_index, user_agent_class, at)| {
        MessageCommand::RecordClick {
            link_index,
            user_agent_class,
            at,
        }
    });
    let request_recall =
        (short(), proptest::option::of(short()), any_time()).prop_map(|(actor, request_id, at)| {
            MessageCommand::RequestRecall {
                actor,
                request_id,
                at,
            }
        });
    let confirm_recall = (any::<bool>(), any_time())
        .prop_map(|(via_supplier, at)| MessageCommand::ConfirmRecall { via_supplier, at });
    let fail_recall =
        (short(), any_time()).prop_map(|(reason, at)| MessageCommand::FailRecall { reason, at });
    prop_oneof![
        1 => any_accept_command(),
        1 => deduplicate,
        1 => shield,
        3 => defer,
        1 => discard,
        2 => rate_limit,
        4 => dispatch,
        3 => dispatch_failure,
        1 => fail,
        3 => receipt,
        2 => click,
        3 => request_recall,
        2 => confirm_recall,
        2 => fail_recall,
    ]
}
