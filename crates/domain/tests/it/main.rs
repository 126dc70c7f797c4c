//! The domain crate's integration tests: one binary, one module per feature, through the public API only.
#![allow(clippy::unwrap_used)]

mod channel;
mod channel_account;
mod crowd;
mod http_supplier;
mod ids;
mod message;
mod message_after_dispatch;
mod message_props;
mod receiver;
mod strategies;
mod support;
mod template;
mod template_aggregate;
mod tidy;
mod wire;
