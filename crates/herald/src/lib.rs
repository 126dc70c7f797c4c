//! The `herald` binary's library: configuration, the HTTP server and the commands of the CLI.
//! This is the only crate that wires the store, commands, dispatch and projections together.
//!
//! - [`config`]: layered configuration (defaults, TOML file, `HERALD_*` environment, flags).
//! - [`server`]: application state, routes and the serve loop.
//! - [`graphql`]: `/graphql`, with authentication, rate and size limits.
//! - [`console`]: `/console`, the web console (message lookup, rates, reconciliation).
//! - [`health`]: `/healthz` and `/readyz`.
//! - [`metrics`]: `/metrics` (Prometheus text) and the HTTP request counter.
//! - [`requests`]: each request's span and trace id (`traceparent`).
//! - [`logs`]: the log writer that masks receivers.
//! - [`otel`]: span export over OTLP/HTTP when a collector is configured.
//! - [`clicks`]: `/c/{token}`, tracked links followed.
//! - [`inbox_stream`]: `/inbox/stream`, the real-time inbox over SSE, and its notifications.
//! - [`uploads`]: `/uploads`, crowd-send audience files.
//! - [`callbacks`]: `/callbacks/{account}`, where suppliers push receipts.
//! - [`roles`]: the dispatch role (queue feed and lane workers) and the projection role.
//! - [`reconcile`]: `herald reconcile`, an account's day beside the supplier's bill.
//! - [`replay`]: `herald replay`, projections rebuilt with a progress line.
//! - [`trace`]: `herald trace`, one message as a table.
//! - [`portability`]: `herald export` and `herald import`, a whole store as one NDJSON file.
//! - [`crowd`]: `herald crowd status`, a crowd send's progress.
//! - [`cli`]: the command-line interface that `main` runs.
//! - [`bench`]: `herald bench`, the project's own benchmark.

pub mod alerts;
pub mod bench;
pub mod callbacks;
pub mod cli;
pub mod clicks;
pub mod config;
pub mod console;
pub mod crowd;
pub mod graphql;
pub mod health;
pub mod inbox_stream;
pub mod logs;
pub mod metrics;
pub mod otel;
pub mod portability;
pub mod reconcile;
pub mod replay;
pub mod requests;
pub mod roles;
pub mod runtime;
pub mod server;
pub mod trace;
pub mod uploads;
