//! Dispatch: the workers that take accepted messages to suppliers, and the suppliers themselves.
//!
//! - [`supplier`]: the one trait every supplier implements, and how an answer is classified
//!   (sent, retryable, final, throttled).
//! - [`http`]: the shared HTTP client (rustls on ring) and its classification of HTTP answers.
//! - [`accounts`]: configured channel accounts and the choice of one per message.
//! - [`inbox`]: the INBOX channel, delivered on send.
//! - [`worker`]: lane workers that claim, send and record the outcome.
//! - [`policy`]: the policy rules as pure functions (night shield).
//! - [`recall`]: recall of messages already handed over, through the supplier where the channel can.
//! - [`webhook`]: the WEBHOOK channel: a signed JSON POST.
//! - [`email`]: the EMAIL channel over SMTP (supplier `smtp`), attachments fetched over http(s).
//!
//! Still to come (issue 4): the worker pipeline (shield, dedup, caps, rate limits, failover)
//! on top of the queue (`store::queue`), and the SMS and inbox suppliers.

pub mod accounts;
pub mod email;
pub mod http;
pub mod inbox;
pub mod policy;
pub mod recall;
pub mod supplier;
pub mod webhook;
pub mod worker;

pub use supplier::{
    Outbound, ReceiptFuture, SendError, SendFuture, Sent, Supplier, SupplierReceipt,
};
