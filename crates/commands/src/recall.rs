//! Recall by message id: `RecallRequested` on each message; one not yet dispatched is recalled at
//! once (`MessageRecalled`), a dispatched one is left to dispatch, which knows the supplier.

use chrono::{DateTime, Utc};
use domain::{
    DeliveryStatus, EventMetadata, MessageCommand, MessageEvent, MessageId, MessageState,
    RequestId, SendEvent, TenantId, send_stream_name,
};
use store::{EventStore, ExpectedVersion, Store, StreamAppend};

use crate::error::CommandError;
use crate::events;

/// Most messages one recall may name.
pub const MAX_MESSAGES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecallStatus {
    /// Not yet dispatched, so cancelled here and now.
    Recalled,
    /// Already dispatched: dispatch recalls it through the supplier, or records why it cannot.
    Requested,
    /// A recall was asked for before; nothing new was appended.
    AlreadyRequested,
}

impl RecallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecallStatus::Recalled => "RECALLED",
            RecallStatus::Requested => "REQUESTED",
            RecallStatus::AlreadyRequested => "ALREADY_REQUESTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallOutcome {
    pub message_id: MessageId,
    pub status: RecallStatus,
}

/// Recalls the named messages of `tenant` and, with a `request_id`, every message that send
/// request made; all in one commit, or none: an unknown or foreign id, or a message that can no
/// longer be recalled, fails the whole recall.
pub async fn recall(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    message_ids: &[String],
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<RecallOutcome>, CommandError> {
    if message_ids.is_empty() || message_ids.len() > MAX_MESSAGES {
        return Err(CommandError::validation(
            "MESSAGE_COUNT",
            format!(
                "a recall takes 1 to {MAX_MESSAGES} message ids, not {}",
                message_ids.len()
            ),
        ));
    }
    let mut ids: Vec<MessageId> = Vec::with_capacity(message_ids.len());
    for raw in message_ids {
        let id: MessageId = raw.parse().map_err(|_| {
            CommandError::validation("INVALID_MESSAGE_ID", format!("{raw:?} is not a message id"))
                .with("messageId", raw.as_str())
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if let Some(raw) = request_id {
        for id in messages_of_request(store, tenant, raw).await? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let mut tries = 0;
    loop {
        match try_recall(store, tenant, actor, &ids, request_id, now).await {
            // Dispatch appended to one of the messages meanwhile: decide again on the new state.
            Err(e) if e.reason == "CONCURRENT_CHANGE" && tries < 3 => tries += 1,
            other => return other,
        }
    }
}

/// The messages a send request made; `NOT_FOUND` for a request this tenant never sent.
async fn messages_of_request(
    store: &Store,
    tenant: &TenantId,
    raw: &str,
) -> Result<Vec<MessageId>, CommandError> {
    let request = RequestId::parse(raw).map_err(|e| {
        CommandError::validation("INVALID_REQUEST_ID", e.to_string()).with("requestId", raw)
    })?;
    // The stream name carries the tenant, so another tenant's request is simply not there.
    let stream = send_stream_name(tenant, &request);
    let Some(first) = store.read_stream(&stream, 1, 1).await?.into_iter().next() else {
        return Err(CommandError::not_found("send request").with("requestId", raw));
    };
    let SendEvent::SendAccepted(accepted) = events::decode::<SendEvent>(&first)?;
    Ok(accepted
        .messages
        .into_iter()
        .map(|m| m.message_id)
        .collect())
}

async fn try_recall(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    ids: &[MessageId],
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<RecallOutcome>, CommandError> {
    let mut metadata = EventMetadata::new(tenant.clone()).with_actor(actor);
    if let Some(request_id) = request_id {
        metadata = metadata.with_correlation_id(request_id);
    }
    let mut appends = Vec::new();
    let mut outcomes = Vec::with_capacity(ids.len());
    for id in ids {
        let (history, version) = events::load::<MessageEvent>(store, &id.stream_name()).await?;
        let state = domain::message_state::fold(&history).map_err(CommandError::internal)?;
        // Another tenant's message answers exactly like a missing one.
        if state.accepted.as_ref().is_none_or(|a| a.tenant != *tenant) {
            return Err(CommandError::not_found("message").with("messageId", id.to_string()));
        }
        let request = MessageCommand::RequestRecall {
            actor: actor.to_owned(),
            request_id: request_id.map(str::to_owned),
            at: now,
        };
        let mut new_events = domain::message_decide::decide(&state, request)
            .map_err(|e| CommandError::from(e).with("messageId", id.to_string()))?;
        if new_events.is_empty() {
            outcomes.push(RecallOutcome {
                message_id: *id,
                status: RecallStatus::AlreadyRequested,
            });
            continue;
        }
        let mut next: MessageState = state.clone();
        for event in &new_events {
            next = domain::message_state::apply(next, event).map_err(CommandError::internal)?;
        }
        let pending = matches!(
            next.status,
            Some(DeliveryStatus::Accepted | DeliveryStatus::Deferred)
        );
        let status = if pending {
            let confirm = MessageCommand::ConfirmRecall {
                via_supplier: false,
                at: now,
            };
            new_events.extend(domain::message_decide::decide(&next, confirm)?);
            RecallStatus::Recalled
        } else {
            RecallStatus::Requested
        };
        appends.push(StreamAppend {
            stream_id: id.stream_name(),
            expected: ExpectedVersion::Exact(version),
            events: new_events
                .iter()
                .map(|e| events::encode(e, &metadata))
                .collect(),
        });
        outcomes.push(RecallOutcome {
            message_id: *id,
            status,
        });
    }
    if !appends.is_empty() {
        // A message recalled before dispatch leaves its lane's queue in the same commit.
        let mut tx = store.begin().await?;
        store.append_in(&mut tx, &appends).await?;
        for outcome in outcomes
            .iter()
            .filter(|o| o.status == RecallStatus::Recalled)
        {
            store::queue::remove(&mut tx, &outcome.message_id.to_string())
                .await
                .map_err(CommandError::internal)?;
        }
        tx.commit().await?;
    }
    Ok(outcomes)
}

/// Recalls those of `ids` (the tenant's) that have not been dispatched, and leaves the rest
/// alone: a crowd send cancelled half way stops what has not gone out. Each message is its own
/// commit, so a worker recording one message's outcome meanwhile holds up only that one.
/// Returns how many were recalled.
pub async fn cancel_pending(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    ids: &[MessageId],
    now: DateTime<Utc>,
) -> Result<u64, CommandError> {
    let metadata = EventMetadata::new(tenant.clone()).with_actor(actor);
    let mut recalled = 0;
    for id in ids {
        let mut tries = 0;
        loop {
            let (history, version) = events::load::<MessageEvent>(store, &id.stream_name()).await?;
            let state = domain::message_state::fold(&history).map_err(CommandError::internal)?;
            let pending = matches!(
                state.status,
                Some(DeliveryStatus::Accepted | DeliveryStatus::Deferred)
            );
            if !pending || state.accepted.as_ref().is_none_or(|a| a.tenant != *tenant) {
                break;
            }
            let request = MessageCommand::RequestRecall {
                actor: actor.to_owned(),
                request_id: None,
                at: now,
            };
            let mut new_events = domain::message_decide::decide(&state, request)?;
            let mut next = state;
            for event in &new_events {
                next = domain::message_state::apply(next, event).map_err(CommandError::internal)?;
            }
            let confirm = MessageCommand::ConfirmRecall {
                via_supplier: false,
                at: now,
            };
            new_events.extend(domain::message_decide::decide(&next, confirm)?);
            let append = StreamAppend {
                stream_id: id.stream_name(),
                expected: ExpectedVersion::Exact(version),
                events: new_events
                    .iter()
                    .map(|e| events::encode(e, &metadata))
                    .collect(),
            };
            let mut tx = store.begin().await?;
            match store.append_in(&mut tx, &[append]).await {
                Ok(_) => {}
                // Dispatch recorded something meanwhile: look again.
                Err(error) if error.is_conflict() && tries < 5 => {
                    tx.rollback().await?;
                    tries += 1;
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
            store::queue::remove(&mut tx, &id.to_string())
                .await
                .map_err(CommandError::internal)?;
            tx.commit().await?;
            recalled += 1;
            break;
        }
    }
    Ok(recalled)
}
