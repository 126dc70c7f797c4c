//! The supplier trait. A supplier turns one message into one call to an outside service and says
//! what happened in terms dispatch can act on: sent, worth retrying, final, or throttled.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{
    Channel, MessageId, MessageType, ReceiptOutcome, Receiver, TemplateContent, TenantId,
};

/// One message on its way out.
#[derive(Debug, Clone)]
pub struct Outbound<'a> {
    /// Sent to the supplier as its idempotency or out-id field where it has one, so a retry
    /// after a lost answer does not deliver twice.
    pub message_id: MessageId,
    pub tenant: &'a TenantId,
    pub channel: Channel,
    pub msg_type: MessageType,
    pub receiver: &'a Receiver,
    pub content: &'a TemplateContent,
    /// 1 for the first try.
    pub attempt: u32,
}

/// The supplier took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The supplier's own id, to match receipts and to recall.
    pub supplier_message_id: Option<String>,
}

/// Why a send did not happen, classified for dispatch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A 5xx, a timeout, a broken connection: try again later, maybe through another account.
    #[error("retryable {code}: {message}")]
    Retryable { code: String, message: String },
    /// The supplier refused the message itself (bad receiver, bad content): retrying cannot help.
    #[error("final {code}: {message}")]
    Final { code: String, message: String },
    /// The account cannot send for now, whatever the message: its credentials were refused, its
    /// balance or daily quota is used up. The account is paused (for `retry_after`, or a
    /// minute) and the message fails over to the next account at once.
    #[error("account unavailable {code}: {message}")]
    Unavailable {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The account is over the supplier's rate: pause it for the time asked, without spending an attempt.
    #[error("throttled {code}: {message}")]
    Throttled {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl SendError {
    pub fn code(&self) -> &str {
        match self {
            SendError::Retryable { code, .. }
            | SendError::Final { code, .. }
            | SendError::Unavailable { code, .. }
            | SendError::Throttled { code, .. } => code,
        }
    }
}

/// The future a supplier returns; boxed, because suppliers are chosen at run time from accounts.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>>;

/// A delivery report read back from a supplier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierReceipt {
    /// Herald's message id, where the supplier echoes it back (Tencent's `SessionContext`,
    /// Aliyun's `OutId`).
    pub message_id: Option<MessageId>,
    /// The supplier's own id of the message.
    pub supplier_message_id: Option<String>,
    pub receiver: Option<String>,
    pub outcome: ReceiptOutcome,
    /// The supplier's own status code, kept for reconciliation.
    pub supplier_status: String,
    /// When the supplier says delivery happened (or failed).
    pub reported_at: DateTime<Utc>,
}

/// A request a supplier made to Herald at `/callbacks/{account}`: a delivery report, or a
/// check that the address is Herald's.
#[derive(Debug, Clone, Copy)]
pub struct CallbackRequest<'a> {
    pub method: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub headers: &'a reqwest::header::HeaderMap,
    pub body: &'a [u8],
}

/// What Herald answers a supplier's callback, and the receipts it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub receipts: Vec<SupplierReceipt>,
}

impl CallbackReply {
    /// A plain-text answer with no receipts.
    pub fn text(status: u16, body: impl Into<String>) -> CallbackReply {
        CallbackReply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            receipts: Vec::new(),
        }
    }
}

pub type ReceiptFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<SupplierReceipt>, SendError>> + Send + 'a>>;

pub trait Supplier: Send + Sync {
    /// The supplier's stable name, as recorded in `MessageDispatched` and metric labels.
    fn name(&self) -> &'static str;

    /// Whether this supplier can deliver to `channel`.
    fn supports(&self, channel: Channel) -> bool;

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a>;

    /// Whether a successful send is already delivery (the in-app inbox), so dispatch records
    /// the receipt at once.
    fn delivers_on_send(&self) -> bool {
        false
    }

    /// Takes a delivered message back, where the channel can. `None`: this supplier cannot.
    fn recall<'a>(
        &'a self,
        _message: &'a Outbound<'a>,
        _supplier_message_id: Option<&'a str>,
    ) -> Option<SendFuture<'a>> {
        None
    }

    /// Pulls the receipts the supplier has gathered since the last pull (Tencent's
    /// `PullSmsSendStatus`). `None`: this supplier has no such batch pull.
    fn pull_receipts(&self) -> Option<ReceiptFuture<'_>> {
        None
    }

    /// Reads a request the supplier made to Herald (`/callbacks/{account}`): checks that it
    /// came from the supplier (its signature) and takes the receipts out of it. `None`: this
    /// supplier makes no callbacks. Pure: the caller records the receipts.
    fn callback(&self, _request: &CallbackRequest<'_>) -> Option<CallbackReply> {
        None
    }

    /// Whether receipts are read with [`query_receipt`](Self::query_receipt): dispatch then keeps
    /// a sent message in the receipt lane until its receipt is in.
    fn queries_receipts(&self) -> bool {
        false
    }

    /// Asks for the receipt of one dispatched message (Aliyun's `QuerySendDetails`). `None`:
    /// this supplier cannot be asked per message.
    fn query_receipt<'a>(
        &'a self,
        _message: &'a Outbound<'a>,
        _supplier_message_id: &'a str,
        _sent_at: DateTime<Utc>,
    ) -> Option<ReceiptFuture<'a>> {
        None
    }
}
