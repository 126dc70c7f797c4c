//! Receipts read back from suppliers, recorded as `ReceiptReceived` on the message.
//!
//! Two ways, as the suppliers offer them:
//! - **Pull** (Tencent's `PullSmsSendStatus`): the supplier keeps a queue of reports for the
//!   account; [`run_pulls`] drains it every interval and matches each report to its message by
//!   the message id the supplier echoes back.
//! - **Query** (Aliyun's `QuerySendDetails`): the supplier answers per message. A message sent
//!   through such an account is not taken off the dispatch queue but moved to the [`LANE`]
//!   lane, in the transaction that records `MessageDispatched`; [`run_queries`] claims it when
//!   due, asks, and records the receipt, or asks again later with a growing interval, until
//!   [`GIVE_UP_AFTER`]. So a receipt query survives restarts like any dispatch does.
//!
//! A receipt that says what the stream already says (the same outcome twice) is not recorded
//! again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{EventMetadata, MessageCommand, MessageState};
use store::{EventStore, Store, queue};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, LiveAccounts};
use crate::supplier::{Outbound, SupplierReceipt};
use crate::worker::{Next, ProcessError, append_outcome, decide_all, load};

/// The queue lane of sent messages waiting for a receipt query.
pub const LANE: &str = "RECEIPTS";

/// By default a receipt is asked for this long after the send at the earliest: operators
/// report within seconds to minutes.
pub const FIRST_QUERY_AFTER: Duration = Duration::from_secs(30);

/// After this long without a receipt, the message stays `DISPATCHED`; reconciliation with the
/// supplier's bill settles it.
pub const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(72);

/// Receipts this process read that named no message Herald knows (another system's message on
/// a shared supplier account, a message from a wiped store, a forged id).
static UNMATCHED: AtomicU64 = AtomicU64::new(0);

/// How many receipts this process could not match to a message since it started.
pub fn unmatched_receipts() -> u64 {
    UNMATCHED.load(Ordering::Relaxed)
}

/// Counts and logs a receipt that names no message Herald knows; it is dropped.
fn unmatched(account: &str, receipt: &SupplierReceipt) {
    let total = UNMATCHED.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info!(
        account,
        message_id = ?receipt.message_id,
        supplier_message_id = ?receipt.supplier_message_id,
        unmatched_total = total,
        "a receipt for a message Herald does not know"
    );
}

/// Records one supplier receipt on its message, unless the stream already says the same.
/// Returns whether an event was appended. `next` says what happens to the message's queue row.
async fn record(
    store: &Store,
    receipt: &SupplierReceipt,
    stream: &str,
    state: &MessageState,
    next: Next,
) -> Result<bool, ProcessError> {
    let Some(accepted) = &state.accepted else {
        return Ok(false);
    };
    if state.last_receipt == Some(receipt.outcome) {
        // Nothing new; still settle the queue row.
        append_outcome(store, stream, &metadata(accepted), |_| Ok(Vec::new()), next).await?;
        return Ok(false);
    }
    let command = MessageCommand::RecordReceipt {
        outcome: receipt.outcome,
        supplier_status: receipt.supplier_status.clone(),
        reported_at: receipt.reported_at,
        at: Utc::now(),
    };
    append_outcome(
        store,
        stream,
        &metadata(accepted),
        decide_all(vec![command]),
        next,
    )
    .await?;
    Ok(true)
}

fn metadata(accepted: &domain::message::MessageAccepted) -> EventMetadata {
    EventMetadata::new(accepted.tenant.clone())
        .with_correlation_id(accepted.request_id.to_string())
        .with_actor("receipts")
}

/// Records the receipts a supplier pushed to Herald (a callback) for `account`, each on the
/// message it names by Herald's id or, failing that, by the supplier's id. Returns how many
/// found their message; the rest are counted ([`unmatched_receipts`]) and logged. An error means the supplier should push again.
pub async fn record_pushed(
    store: &Store,
    account: &str,
    receipts: &[SupplierReceipt],
) -> Result<usize, ProcessError> {
    let mut matched = 0;
    for receipt in receipts {
        let message_id = match (receipt.message_id, &receipt.supplier_message_id) {
            (Some(id), _) => Some(id.to_string()),
            (None, Some(supplier_id)) => {
                store::supplier_ids::find(store, account, supplier_id).await?
            }
            (None, None) => None,
        };
        let Some(message_id) = message_id else {
            unmatched(account, receipt);
            continue;
        };
        let stream = format!("message-{message_id}");
        let (state, _) = load(store, &stream).await?;
        if state.accepted.is_none() {
            unmatched(account, receipt);
            continue;
        }
        record(store, receipt, &stream, &state, Next::Keep).await?;
        matched += 1;
    }
    Ok(matched)
}

/// Drains the pull-style receipt queues of every account that has one, every `interval`, until
/// `shutdown`.
pub async fn run_pulls(
    store: Store,
    accounts: LiveAccounts,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let current = accounts.current();
        for account in current.all() {
            // Drain: a pull returns at most a page; stop when a page comes back empty.
            loop {
                let Some(pull) = account.supplier.pull_receipts() else {
                    break;
                };
                let receipts = match pull.await {
                    Ok(receipts) => receipts,
                    Err(error) => {
                        tracing::warn!(%error, account = %account.id, "pulling receipts failed");
                        break;
                    }
                };
                if receipts.is_empty() {
                    break;
                }
                for receipt in &receipts {
                    let Some(message_id) = receipt.message_id else {
                        unmatched(&account.id, receipt);
                        continue;
                    };
                    let stream = format!("message-{message_id}");
                    let outcome = async {
                        let (state, _) = load(&store, &stream).await?;
                        if state.accepted.is_none() {
                            unmatched(&account.id, receipt);
                            return Ok(false);
                        }
                        record(&store, receipt, &stream, &state, Next::Keep).await
                    };
                    if let Err(error) = outcome.await {
                        // The report is gone from the supplier's queue; the stream keeps
                        // DISPATCHED and reconciliation settles it.
                        tracing::warn!(%error, %stream, "recording a pulled receipt failed");
                    }
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Claims messages of the receipt lane when due and asks their suppliers, until `shutdown`.
pub async fn run_queries(
    store: Store,
    accounts: LiveAccounts,
    worker: String,
    poll: Duration,
    first: Duration,
    shutdown: CancellationToken,
) {
    let context = Arc::new((store, accounts));
    while !shutdown.is_cancelled() {
        let claimed = match queue::claim(&context.0, LANE, &worker, Utc::now(), 60_000, 16).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "claiming from the receipt lane failed");
                Vec::new()
            }
        };
        let mut asking = JoinSet::new();
        for claimed in claimed {
            let context = Arc::clone(&context);
            asking.spawn(async move {
                let stream = format!("message-{}", claimed.message_id);
                let accounts = context.1.current();
                if let Err(error) = query(&context.0, &accounts, &stream, first).await {
                    tracing::warn!(%error, %stream, "a receipt query failed; the claim will expire and it is asked again");
                }
            });
        }
        let busy = !asking.is_empty();
        while asking.join_next().await.is_some() {}
        if !busy {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// The next time to ask: half the message's age, between `first` and an hour.
fn next_query(sent_at: DateTime<Utc>, now: DateTime<Utc>, first: Duration) -> DateTime<Utc> {
    let first = chrono::Duration::from_std(first).unwrap_or(chrono::Duration::hours(1));
    let age = (now - sent_at).max(chrono::Duration::zero());
    now + (age / 2).clamp(
        first.min(chrono::Duration::hours(1)),
        chrono::Duration::hours(1),
    )
}

async fn query(
    store: &Store,
    accounts: &Accounts,
    stream: &str,
    first: Duration,
) -> Result<(), ProcessError> {
    let (state, _) = load(store, stream).await?;
    let settle = |next| async move {
        let mut tx = store.begin().await?;
        crate::worker::update_queue(&mut tx, stream, &next).await?;
        tx.commit().await?;
        Ok::<(), ProcessError>(())
    };
    let (Some(accepted), Some(dispatch)) = (&state.accepted, &state.dispatch) else {
        return settle(Next::Remove).await;
    };
    let now = Utc::now();
    let account = accounts.find(&dispatch.account);
    let (Some(account), Some(supplier_message_id)) = (account, &dispatch.supplier_message_id)
    else {
        // The account is gone from the configuration, or the supplier gave no id to ask by.
        return settle(Next::Remove).await;
    };
    if state.last_receipt.is_some() || now - dispatch.at > GIVE_UP_AFTER {
        return settle(Next::Remove).await;
    }
    let outbound = Outbound {
        message_id: accepted.message_id,
        tenant: &accepted.tenant,
        channel: accepted.channel,
        msg_type: accepted.msg_type,
        receiver: &accepted.receiver,
        content: &accepted.content,
        attempt: dispatch.attempt,
    };
    let Some(asked) = account
        .supplier
        .query_receipt(&outbound, supplier_message_id, dispatch.at)
    else {
        return settle(Next::Remove).await;
    };
    let receipts = match asked.await {
        Ok(receipts) => receipts,
        Err(error) => {
            tracing::warn!(%error, %stream, "asking for a receipt failed; asking again later");
            return settle(Next::Reschedule(next_query(dispatch.at, now, first))).await;
        }
    };
    let ours = receipts.iter().find(|r| {
        r.message_id == Some(accepted.message_id)
            || r.supplier_message_id.as_deref() == Some(supplier_message_id.as_str())
    });
    match ours {
        Some(receipt) => {
            record(store, receipt, stream, &state, Next::Remove).await?;
            Ok(())
        }
        None => settle(Next::Reschedule(next_query(dispatch.at, now, first))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_space_out_as_the_message_ages() {
        let sent = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let at = |secs: i64| sent + chrono::Duration::seconds(secs);
        let first = FIRST_QUERY_AFTER;
        assert_eq!(next_query(sent, at(30), first), at(60));
        assert_eq!(next_query(sent, at(600), first), at(900));
        assert_eq!(next_query(sent, at(86_400), first), at(86_400 + 3_600));
    }
}
