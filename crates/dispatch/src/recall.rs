//! Recall of messages already handed over. The command side recalls a message that has not gone
//! out; one that has is left here: this subscription reads `RecallRequested`, asks the supplier
//! to take the message back where the channel can, and records `MessageRecalled` or
//! `RecallFailed` with the reason. It decides on the message's current state each time, so a
//! redelivered event changes nothing.

use chrono::Utc;
use domain::{DeliveryStatus, EventMetadata, MessageCommand};
use store::{
    EventStore, ExpectedVersion, HandlerError, LogFilter, RecordedEvent, Store, StoreTx,
    StreamAppend,
};

use crate::accounts::LiveAccounts;
use crate::supplier::Outbound;

pub const SUBSCRIPTION: &str = "dispatch-recall";

/// How long the recall subscription stays away from the log after a read that found no
/// recall, however often appends ring: at most ten reads a second on a busy log, each over
/// what was appended since, instead of one per dispatch group commit (41 reads instead of
/// 1,430 in 4.5 s of `herald bench`'s dispatch phase). A recall waits this long at most
/// before it is read.
pub const QUIET_GAP: std::time::Duration = std::time::Duration::from_millis(100);

pub fn filter() -> LogFilter {
    LogFilter {
        categories: vec!["message".to_owned()],
        event_types: vec!["RecallRequested".to_owned()],
        partition: None,
    }
}

pub struct Recaller {
    pub store: Store,
    pub accounts: LiveAccounts,
}

impl store::Handler for Recaller {
    /// The outcomes of a batch are appended in the batch's own transaction, with the checkpoint:
    /// on SQLite that transaction holds the only writer, and a second connection would wait
    /// for it forever. A batch rolled back (a receipt came in meanwhile) is decided again from
    /// the messages' fresh state.
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        let mut appends: Vec<StreamAppend> = Vec::new();
        for recorded in events {
            if appends.iter().any(|a| a.stream_id == recorded.stream_id) {
                continue;
            }
            if let Some(append) = self.recall(&recorded.stream_id).await? {
                appends.push(append);
            }
        }
        if !appends.is_empty() {
            self.store.append_in(tx, &appends).await?;
        }
        Ok(())
    }
}

impl Recaller {
    /// What the recall of one message appends, if anything.
    async fn recall(&self, stream: &str) -> Result<Option<StreamAppend>, HandlerError> {
        let (state, version) = crate::worker::load(&self.store, stream).await?;
        let Some(accepted) = state.accepted.clone() else {
            return Ok(None);
        };
        let handed_over = matches!(
            state.status,
            Some(
                DeliveryStatus::Dispatched
                    | DeliveryStatus::Delivered
                    | DeliveryStatus::Undelivered
            )
        );
        // Recalled already (pending messages are recalled by the command side), failed already,
        // or not yet out: nothing to do here.
        if !state.recall_requested || state.recall_failed || !handed_over {
            return Ok(None);
        }
        let dispatch = state.dispatch.clone();
        let accounts = self.accounts.current();
        let account = dispatch.as_ref().and_then(|d| accounts.find(&d.account));
        let outbound = Outbound {
            message_id: accepted.message_id,
            tenant: &accepted.tenant,
            channel: accepted.channel,
            msg_type: accepted.msg_type,
            receiver: &accepted.receiver,
            content: &accepted.content,
            attempt: state.attempts,
        };
        let supplier_id = dispatch
            .as_ref()
            .and_then(|d| d.supplier_message_id.as_deref());
        let now = Utc::now();
        let command = match account.and_then(|a| a.supplier.recall(&outbound, supplier_id)) {
            Some(call) => match call.await {
                Ok(_) => MessageCommand::ConfirmRecall {
                    via_supplier: true,
                    at: now,
                },
                Err(error) => MessageCommand::FailRecall {
                    reason: format!("SUPPLIER_REFUSED: {error}"),
                    at: now,
                },
            },
            None if account.is_none() => MessageCommand::FailRecall {
                reason: "ACCOUNT_GONE".to_owned(),
                at: now,
            },
            None => MessageCommand::FailRecall {
                reason: format!("CHANNEL_CANNOT_RECALL: {}", accepted.channel),
                at: now,
            },
        };
        let events = domain::message_decide::decide(&state, command)?;
        let metadata = EventMetadata::new(accepted.tenant.clone()).with_actor("dispatch");
        Ok(Some(StreamAppend {
            stream_id: stream.to_owned(),
            expected: ExpectedVersion::Exact(version),
            events: events
                .iter()
                .map(|e| crate::worker::encode(e, &metadata))
                .collect(),
        }))
    }
}
