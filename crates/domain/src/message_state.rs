//! A message's state folded from its events, and the transition rules that `apply` enforces.
//! The same rules back `decide`, so a decided event is always one that applies.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::message::*;
use crate::template_aggregate::TemplateError;
use crate::wire::wire_enum;

wire_enum! {
    /// The delivery axis of a message's status: exactly one at a time.
    pub enum DeliveryStatus {
        Accepted = "ACCEPTED",
        Deferred = "DEFERRED",
        Dispatched = "DISPATCHED",
        Delivered = "DELIVERED",
        Undelivered = "UNDELIVERED",
        Failed = "FAILED",
        Deduplicated = "DEDUPLICATED",
        Shielded = "SHIELDED",
        Discarded = "DISCARDED",
        Recalled = "RECALLED",
    }
}

impl DeliveryStatus {
    /// Whether the status can never change again.
    /// Delivered and undelivered are not final: a later receipt or a recall may still move them.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Deduplicated | Self::Shielded | Self::Discarded | Self::Recalled
        )
    }

    /// Whether dispatch has not reached an outcome yet.
    pub const fn is_pending(self) -> bool {
        matches!(self, Self::Accepted | Self::Deferred)
    }

    /// Whether a recall may still be requested.
    pub const fn is_recallable(self) -> bool {
        matches!(
            self,
            Self::Accepted
                | Self::Deferred
                | Self::Dispatched
                | Self::Delivered
                | Self::Undelivered
        )
    }

    /// Whether a delivery receipt moves the status: only once the supplier has the message.
    pub const fn follows_receipts(self) -> bool {
        matches!(self, Self::Dispatched | Self::Delivered | Self::Undelivered)
    }
}

impl From<ReceiptOutcome> for DeliveryStatus {
    fn from(outcome: ReceiptOutcome) -> Self {
        match outcome {
            ReceiptOutcome::Delivered => Self::Delivered,
            ReceiptOutcome::Undelivered => Self::Undelivered,
        }
    }
}

/// A broken message rule. `code()` gives the rule's stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message has not been accepted")]
    NotAccepted,
    #[error("the message has already been accepted")]
    AlreadyAccepted,
    #[error("the message already reached the outcome {status}")]
    AlreadyFinal { status: DeliveryStatus },
    #[error("a {status} message cannot be recalled")]
    NotRecallable { status: DeliveryStatus },
    #[error("a recall has already been requested")]
    RecallAlreadyRequested,
    #[error("no recall has been requested")]
    RecallNotRequested,
    #[error("the recall has already failed")]
    RecallAlreadyFailed,
    #[error("cannot wait until {until}, which is not after {at}")]
    InvalidDeferral {
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    #[error("attempt numbers start at 1, got {attempt}")]
    InvalidAttempt { attempt: u32 },
    #[error("a FINAL error cannot be retryable, and only a retryable error has a next attempt")]
    InconsistentRetry,
    #[error("the message has no tracked link {index}")]
    UnknownLink { index: u32 },
    #[error("tracked link index {index} appears more than once")]
    DuplicateLinkIndex { index: u32 },
    #[error("template versions start at 1")]
    InvalidTemplateVersion,
    #[error("{kind} content cannot be sent on channel {channel}")]
    ContentDoesNotFitChannel {
        channel: Channel,
        kind: &'static str,
    },
    #[error("invalid content: {0}")]
    InvalidContent(TemplateError),
    #[error("{field} must not be empty")]
    EmptyField { field: &'static str },
}

impl MessageError {
    /// A stable code for APIs and metrics: the variant name in SCREAMING_SNAKE_CASE.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAccepted => "NOT_ACCEPTED",
            Self::AlreadyAccepted => "ALREADY_ACCEPTED",
            Self::AlreadyFinal { .. } => "ALREADY_FINAL",
            Self::NotRecallable { .. } => "NOT_RECALLABLE",
            Self::RecallAlreadyRequested => "RECALL_ALREADY_REQUESTED",
            Self::RecallNotRequested => "RECALL_NOT_REQUESTED",
            Self::RecallAlreadyFailed => "RECALL_ALREADY_FAILED",
            Self::InvalidDeferral { .. } => "INVALID_DEFERRAL",
            Self::InvalidAttempt { .. } => "INVALID_ATTEMPT",
            Self::InconsistentRetry => "INCONSISTENT_RETRY",
            Self::UnknownLink { .. } => "UNKNOWN_LINK",
            Self::DuplicateLinkIndex { .. } => "DUPLICATE_LINK_INDEX",
            Self::InvalidTemplateVersion => "INVALID_TEMPLATE_VERSION",
            Self::ContentDoesNotFitChannel { .. } => "CONTENT_DOES_NOT_FIT_CHANNEL",
            Self::InvalidContent(_) => "INVALID_CONTENT",
            Self::EmptyField { .. } => "EMPTY_FIELD",
        }
    }
}

/// A message folded from its events. The default value is a stream with no events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    /// `None` until the message is accepted.
    pub status: Option<DeliveryStatus>,
    /// The facts fixed at acceptance: tenant, receiver, template, channel, rendered content.
    pub accepted: Option<MessageAccepted>,
    /// Supplier attempts made so far, successful or not.
    pub attempts: u32,
    /// When a deferred message is due; cleared once dispatch reaches an outcome.
    pub deferred_until: Option<DateTime<Utc>>,
    /// When the channel account expects capacity again, after the last rate limit.
    pub rate_limited_until: Option<DateTime<Utc>>,
    /// The supplier attempt that succeeded, needed to match receipts and to recall through the supplier.
    pub dispatch: Option<MessageDispatched>,
    /// The most recent failed attempt, so failover knows which account to skip.
    pub last_failure: Option<DispatchFailed>,
    /// Failed attempts per channel account: failover moves on once an account has had its share.
    pub failures_by_account: BTreeMap<String, u32>,
    /// The latest receipt, kept even when it arrives before `MessageDispatched` or cannot move the status.
    pub last_receipt: Option<ReceiptOutcome>,
    pub recall_requested: bool,
    pub recall_failed: bool,
    /// Engagement axis: several flags may hold at once. A click proves the message was read.
    pub clicked: bool,
    pub read: bool,
    pub clicks: u32,
    /// How many events have been applied: the stream version to expect when appending.
    pub version: u64,
}

impl MessageState {
    pub fn is_accepted(&self) -> bool {
        self.status.is_some()
    }
}

/// Applies one event, refusing a transition the rules do not allow.
pub fn apply(mut state: MessageState, event: &MessageEvent) -> Result<MessageState, MessageError> {
    check(&state, event)?;
    use MessageEvent as E;
    match event {
        E::MessageAccepted(e) => {
            state.status = Some(DeliveryStatus::Accepted);
            state.accepted = Some(e.clone());
        }
        E::MessageDeduplicated(_) => reach_outcome(&mut state, DeliveryStatus::Deduplicated),
        E::MessageShielded(_) => reach_outcome(&mut state, DeliveryStatus::Shielded),
        E::MessageDiscarded(_) => reach_outcome(&mut state, DeliveryStatus::Discarded),
        E::MessageFailed(_) => reach_outcome(&mut state, DeliveryStatus::Failed),
        E::MessageRecalled(_) => reach_outcome(&mut state, DeliveryStatus::Recalled),
        E::MessageDeferred(e) => {
            state.status = Some(DeliveryStatus::Deferred);
            state.deferred_until = Some(e.until);
        }
        E::MessageRateLimited(e) => state.rate_limited_until = Some(e.until),
        E::MessageDispatched(e) => {
            // A fast supplier may call back before the dispatch is recorded; its receipt then decides.
            let status = state
                .last_receipt
                .map_or(DeliveryStatus::Dispatched, DeliveryStatus::from);
            reach_outcome(&mut state, status);
            state.attempts = state.attempts.saturating_add(1);
            state.dispatch = Some(e.clone());
        }
        E::DispatchFailed(e) => {
            state.attempts = state.attempts.saturating_add(1);
            let failures = state
                .failures_by_account
                .entry(e.account.clone())
                .or_default();
            *failures = failures.saturating_add(1);
            state.last_failure = Some(e.clone());
        }
        E::ReceiptReceived(e) => {
            state.last_receipt = Some(e.outcome);
            if state.status.is_some_and(DeliveryStatus::follows_receipts) {
                state.status = Some(e.outcome.into());
            }
        }
        E::MessageClicked(_) => {
            state.clicked = true;
            state.read = true;
            state.clicks = state.clicks.saturating_add(1);
        }
        E::MessageRead(_) => state.read = true,
        E::RecallRequested(_) => state.recall_requested = true,
        E::RecallFailed(_) => state.recall_failed = true,
    }
    state.version += 1;
    Ok(state)
}

/// Folds a whole stream, stopping at the first event the rules refuse.
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a MessageEvent>,
) -> Result<MessageState, MessageError> {
    events.into_iter().try_fold(MessageState::default(), apply)
}

fn reach_outcome(state: &mut MessageState, status: DeliveryStatus) {
    state.status = Some(status);
    state.deferred_until = None;
}

/// The transition rules shared by `decide` and `apply`.
pub(crate) fn check(state: &MessageState, event: &MessageEvent) -> Result<(), MessageError> {
    use MessageEvent as E;
    let Some(status) = state.status else {
        return match event {
            E::MessageAccepted(_) => Ok(()),
            _ => Err(MessageError::NotAccepted),
        };
    };
    match event {
        E::MessageAccepted(_) => Err(MessageError::AlreadyAccepted),
        E::MessageDeduplicated(_)
        | E::MessageShielded(_)
        | E::MessageDeferred(_)
        | E::MessageDiscarded(_)
        | E::MessageRateLimited(_)
        | E::MessageDispatched(_)
        | E::DispatchFailed(_)
        | E::MessageFailed(_) => {
            if status.is_pending() {
                Ok(())
            } else {
                Err(MessageError::AlreadyFinal { status })
            }
        }
        E::ReceiptReceived(_) | E::MessageClicked(_) | E::MessageRead(_) => Ok(()),
        E::RecallRequested(_) => {
            if !status.is_recallable() {
                Err(MessageError::NotRecallable { status })
            } else if state.recall_requested {
                Err(MessageError::RecallAlreadyRequested)
            } else {
                Ok(())
            }
        }
        E::MessageRecalled(_) => {
            if !state.recall_requested {
                Err(MessageError::RecallNotRequested)
            } else if !status.is_recallable() {
                Err(MessageError::AlreadyFinal { status })
            } else if state.recall_failed {
                Err(MessageError::RecallAlreadyFailed)
            } else {
                Ok(())
            }
        }
        E::RecallFailed(_) => {
            if !state.recall_requested {
                Err(MessageError::RecallNotRequested)
            } else if status == DeliveryStatus::Recalled {
                Err(MessageError::AlreadyFinal { status })
            } else if state.recall_failed {
                Err(MessageError::RecallAlreadyFailed)
            } else {
                Ok(())
            }
        }
    }
}
