//! Projections: transactional subscribers that build the query views from the event log. Each
//! writes its read tables and moves its checkpoint in one transaction, so every event is
//! applied exactly once; each can be rebuilt from the log.
//!
//! - [`trace`]: the message trace (status, where it went, timeline) and the customer-service
//!   lookup by receiver, request, template, status, channel and time.
//! - [`lag`]: how far a projection has caught up with the log.

pub mod lag;
pub mod trace;
