//! Dispatch: the workers that take accepted messages to suppliers, and the suppliers themselves.
//!
//! - [`supplier`]: the one trait every supplier implements, and how an answer is classified
//!   (sent, retryable, final, throttled).
//! - [`http`]: the shared HTTP client (rustls on ring) and its classification of HTTP answers.
//! - [`accounts`]: configured channel accounts and the choice of one per message.
//! - [`inbox`]: the INBOX channel, delivered on send.
//! - [`worker`]: lane workers that claim, send and record the outcome.
//! - `commit`: group commit of the outcomes of a lane's messages in flight.
//! - [`policy`]: the policy rules as pure functions (night shield, dedup and frequency keys).
//! - [`live_policy`]: tenants' and templates' overrides of the policy, resolved per message.
//! - [`recall`]: recall of messages already handed over, through the supplier where the channel can.
//! - [`receipts`]: receipts read back from suppliers, pulled per account or asked per message.
//! - [`sensitive`]: the sensitive-word list, masking or rejecting content before it goes out.
//! - [`tokens`]: access tokens shared by every process, refreshed one at a time under a lock.
//! - [`webhook`]: the WEBHOOK channel: a signed JSON POST.
//! - [`declarative`]: declarative HTTP suppliers (`http:{name}`): a tenant's definition rendered,
//!   signed and read back, and its dry run.
//! - [`tencent`]: Tencent Cloud SMS (TC3-HMAC-SHA256 signed `SendSms`, `PullSmsSendStatus` receipts).
//! - [`aliyun`]: SMS through Aliyun's `dysmsapi` (send, and receipts per message).
//! - [`email`]: the EMAIL channel over SMTP (supplier `smtp`), attachments fetched over http(s).
//! - [`dingtalk`]: DingTalk group robots (`dingtalk_robot`, signed webhooks) and work notices
//!   (`dingtalk_work`: access token, recall, read receipts).
//! - [`getui`]: the PUSH channel through GeTui's RestAPI V2 (single and batch pushes by cid).
//! - [`wecom`]: WeCom group robots (`wecom_robot`) and app messages to members (`wecom_app`, with recall).
//! - [`feishu`]: Feishu group robots (signed webhook POSTs of text and message cards).
//! - [`wechat`]: WeChat official-account template messages and mini-program subscribe
//!   messages, on a shared stable access token; template delivery events read back.

pub mod accounts;
pub mod aliyun;
mod commit;
pub mod declarative;
pub mod dingtalk;
pub mod email;
pub mod feishu;
pub mod getui;
pub mod http;
pub mod inbox;
pub mod live_policy;
pub mod policy;
pub mod recall;
pub mod receipts;
pub mod sensitive;
mod successes;
pub mod supplier;
pub mod tencent;
pub mod tokens;
pub mod webhook;
pub mod wechat;
pub mod wecom;
pub mod worker;

pub use supplier::{
    CallbackReply, CallbackRequest, Outbound, ReceiptFuture, SendError, SendFuture, Sent, Supplier,
    SupplierReceipt,
};
