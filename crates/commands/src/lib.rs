//! The command side: turns API requests into events. Each handler is an IO sandwich: load the
//! stream, `decide` in the pure domain, append with the expected version.
//!
//! - [`error`]: the coded error every command returns.
//! - [`accounts`]: channel accounts made at run time, with their audit trail.
//! - [`http_suppliers`]: declarative HTTP suppliers defined by a tenant's admin, tried by a dry run.
//! - [`secrets`]: secrets sealed with AES-256-GCM under a key from the environment.
//! - [`links`]: signed click-tracking links.
//! - [`keys`]: tenants and API keys (hashed at rest, shown once).
//! - [`templates`]: the template aggregate's commands and queries.
//! - [`send`]: the send chain with idempotency by request id.
//! - [`policies`]: live dispatch policy per tenant and template.
//! - [`recall`]: recall by message id.
//! - [`clicks`]: a followed tracked link, recorded.
//! - [`inbox`]: signed receiver tokens for the real-time inbox, and marking messages read.
//! - [`csv`]: CSV lines read a piece at a time.
//! - [`crowd`]: crowd sends: scheduled, cancelled, and their progress.
//! - [`crowd_run`]: a crowd send's run: its file read in batches, each batch of rows made messages.

pub mod accounts;
pub mod clicks;
pub mod crowd;
pub mod crowd_run;
pub mod csv;
pub mod error;
pub mod events;
pub mod http_suppliers;
pub mod inbox;
pub mod keys;
pub mod links;
pub mod policies;
pub mod recall;
pub mod secrets;
pub mod send;
pub mod settings;
pub mod templates;

pub use error::{Code, CommandError};
