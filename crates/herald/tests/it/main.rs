//! The `herald` binary, run as a user runs it: a real process, real sockets, real databases.
#![allow(clippy::unwrap_used)]

mod alerts;
mod app;
mod bench;
mod channel_accounts;
mod cli;
mod console;
mod crash;
mod crowd;
mod crowd_crash;
mod deployment;
mod dingtalk;
mod dispatch;
mod failover;
mod graphql;
mod inbox;
mod inbox_stream;
mod isolation;
mod limits;
mod logs;
mod metrics;
mod policies;
mod portability;
mod readme;
mod reconcile;
mod reload;
mod replay;
mod sandbox;
mod serve;
mod sigterm;
mod sms;
mod stats;
mod support;
mod trace;
mod wechat;
mod wecom;
