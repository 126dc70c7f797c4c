//! Suppliers against local fake services that check what the real ones check.
#![allow(clippy::unwrap_used)]

mod aliyun;
mod dingtalk;
mod email;
mod feishu;
mod getui;
mod tencent;
mod tokens;
mod webhook;
mod wechat;
mod wecom;
