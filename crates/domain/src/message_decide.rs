//! Message commands and `decide`: checks a command's data, then the transition rules, and returns the events.
//! Whatever a decision needs from outside (times, supplier answers, policy verdicts) arrives inside the command.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::channel::{Channel, MessageType, ShieldType};
use crate::ids::{MessageId, RequestId, TemplateId, TenantId};
use crate::message::*;
use crate::message_state::{MessageError, MessageState, check};
use crate::receiver::Receiver;
use crate::template::TemplateContent;

/// Supplier error messages are cut to this many characters, because they can be whole HTML error pages.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1024;

/// What the send path, dispatch, receipts, clicks and recall ask of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageCommand {
    AcceptMessage {
        message_id: MessageId,
        tenant: TenantId,
        request_id: RequestId,
        template_id: TemplateId,
        template_version: u32,
        channel: Channel,
        msg_type: MessageType,
        shield_type: ShieldType,
        /// The channel account the template names.
        account: String,
        receiver: Receiver,
        /// Already rendered, with tracked links rewritten.
        content: TemplateContent,
        tracked_links: Vec<TrackedLink>,
        send_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    DeduplicateMessage {
        rule: DedupRule,
        key: String,
        window_secs: u64,
        at: DateTime<Utc>,
    },
    ShieldMessage {
        reason: String,
        at: DateTime<Utc>,
    },
    DeferMessage {
        until: DateTime<Utc>,
        reason: DeferReason,
        at: DateTime<Utc>,
    },
    DiscardMessage {
        rule: DiscardRule,
        at: DateTime<Utc>,
    },
    RateLimitMessage {
        account: String,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    RecordDispatch {
        account: String,
        supplier: String,
        supplier_message_id: Option<String>,
        attempt: u32,
        latency_ms: u64,
        masked_words: u32,
        at: DateTime<Utc>,
    },
    /// Records one failed attempt. A retry is scheduled by a separate `DeferMessage` with `RETRY_BACKOFF`.
    RecordDispatchFailure {
        account: String,
        supplier: String,
        attempt: u32,
        error_class: ErrorClass,
        error_code: String,
        error_message: String,
        retryable: bool,
        next_attempt_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// Gives up; the event records the attempts made so far.
    FailMessage {
        reason: String,
        at: DateTime<Utc>,
    },
    RecordReceipt {
        outcome: ReceiptOutcome,
        supplier_status: String,
        reported_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    RecordClick {
        link_index: u32,
        user_agent_class: String,
        at: DateTime<Utc>,
    },
    /// Idempotent: a message already read (by a click or an earlier mark) decides nothing.
    MarkRead {
        source: String,
        at: DateTime<Utc>,
    },
    /// Idempotent: asking again for a message whose recall was already requested decides nothing.
    RequestRecall {
        actor: String,
        request_id: Option<String>,
        at: DateTime<Utc>,
    },
    ConfirmRecall {
        via_supplier: bool,
        at: DateTime<Utc>,
    },
    FailRecall {
        reason: String,
        at: DateTime<Utc>,
    },
}

/// Decides what a command means for the message: the events to append, or the rule it breaks.
pub fn decide(
    state: &MessageState,
    command: MessageCommand,
) -> Result<Vec<MessageEvent>, MessageError> {
    if matches!(command, MessageCommand::RequestRecall { .. }) && state.recall_requested {
        return Ok(Vec::new());
    }
    // Reading a message again changes nothing.
    if matches!(command, MessageCommand::MarkRead { .. }) && state.read {
        return Ok(Vec::new());
    }
    let event = event_for(state, command)?;
    check(state, &event)?;
    Ok(vec![event])
}

/// Validates the command's own data and turns it into its event.
fn event_for(state: &MessageState, command: MessageCommand) -> Result<MessageEvent, MessageError> {
    use MessageCommand as C;
    let event = match command {
        C::AcceptMessage {
            message_id,
            tenant,
            request_id,
            template_id,
            template_version,
            channel,
            msg_type,
            shield_type,
            account,
            receiver,
            content,
            tracked_links,
            send_at,
            at,
        } => {
            if template_version == 0 {
                return Err(MessageError::InvalidTemplateVersion);
            }
            if !content.fits(channel) {
                return Err(MessageError::ContentDoesNotFitChannel {
                    channel,
                    kind: content.kind(),
                });
            }
            content.validate().map_err(MessageError::InvalidContent)?;
            check_links(&tracked_links)?;
            MessageAccepted {
                message_id,
                tenant,
                request_id,
                template_id,
                template_version,
                channel,
                msg_type,
                shield_type,
                account,
                receiver,
                content,
                tracked_links,
                send_at,
                at,
            }
            .into()
        }
        C::DeduplicateMessage {
            rule,
            key,
            window_secs,
            at,
        } => {
            non_empty("key", &key)?;
            MessageDeduplicated {
                rule,
                key,
                window_secs,
                at,
            }
            .into()
        }
        C::ShieldMessage { reason, at } => {
            non_empty("reason", &reason)?;
            MessageShielded { reason, at }.into()
        }
        C::DeferMessage { until, reason, at } => {
            later(until, at)?;
            MessageDeferred { until, reason, at }.into()
        }
        C::DiscardMessage { rule, at } => MessageDiscarded { rule, at }.into(),
        C::RateLimitMessage { account, until, at } => {
            non_empty("account", &account)?;
            later(until, at)?;
            MessageRateLimited { account, until, at }.into()
        }
        C::RecordDispatch {
            account,
            supplier,
            supplier_message_id,
            attempt,
            latency_ms,
            masked_words,
            at,
        } => {
            non_empty("account", &account)?;
            non_empty("supplier", &supplier)?;
            first_attempt_is_one(attempt)?;
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
        C::RecordDispatchFailure {
            account,
            supplier,
            attempt,
            error_class,
            error_code,
            error_message,
            retryable,
            next_attempt_at,
            at,
        } => {
            non_empty("account", &account)?;
            non_empty("supplier", &supplier)?;
            non_empty("error_code", &error_code)?;
            first_attempt_is_one(attempt)?;
            if (retryable && error_class == ErrorClass::Final)
                || (!retryable && next_attempt_at.is_some())
            {
                return Err(MessageError::InconsistentRetry);
            }
            if let Some(next) = next_attempt_at {
                later(next, at)?;
            }
            DispatchFailed {
                account,
                supplier,
                attempt,
                error_class,
                error_code,
                error_message: truncate(error_message, MAX_ERROR_MESSAGE_CHARS),
                retryable,
                next_attempt_at,
                at,
            }
            .into()
        }
        C::FailMessage { reason, at } => {
            non_empty("reason", &reason)?;
            MessageFailed {
                reason,
                attempts: state.attempts,
                at,
            }
            .into()
        }
        C::RecordReceipt {
            outcome,
            supplier_status,
            reported_at,
            at,
        } => ReceiptReceived {
            outcome,
            supplier_status,
            reported_at,
            at,
        }
        .into(),
        C::RecordClick {
            link_index,
            user_agent_class,
            at,
        } => {
            if let Some(accepted) = &state.accepted
                && !accepted
                    .tracked_links
                    .iter()
                    .any(|link| link.index == link_index)
            {
                return Err(MessageError::UnknownLink { index: link_index });
            }
            MessageClicked {
                link_index,
                user_agent_class,
                at,
            }
            .into()
        }
        C::MarkRead { source, at } => {
            non_empty("source", &source)?;
            MessageRead { source, at }.into()
        }
        C::RequestRecall {
            actor,
            request_id,
            at,
        } => {
            non_empty("actor", &actor)?;
            RecallRequested {
                actor,
                request_id,
                at,
            }
            .into()
        }
        C::ConfirmRecall { via_supplier, at } => MessageRecalled { via_supplier, at }.into(),
        C::FailRecall { reason, at } => {
            non_empty("reason", &reason)?;
            RecallFailed { reason, at }.into()
        }
    };
    Ok(event)
}

fn check_links(links: &[TrackedLink]) -> Result<(), MessageError> {
    let mut seen = BTreeSet::new();
    for link in links {
        non_empty("tracked_links.url", &link.url)?;
        if !seen.insert(link.index) {
            return Err(MessageError::DuplicateLinkIndex { index: link.index });
        }
    }
    Ok(())
}

fn later(until: DateTime<Utc>, at: DateTime<Utc>) -> Result<(), MessageError> {
    if until > at {
        Ok(())
    } else {
        Err(MessageError::InvalidDeferral { until, at })
    }
}

fn first_attempt_is_one(attempt: u32) -> Result<(), MessageError> {
    if attempt == 0 {
        Err(MessageError::InvalidAttempt { attempt })
    } else {
        Ok(())
    }
}

fn non_empty(field: &'static str, value: &str) -> Result<(), MessageError> {
    if value.trim().is_empty() {
        Err(MessageError::EmptyField { field })
    } else {
        Ok(())
    }
}

fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
    }
    text
}
