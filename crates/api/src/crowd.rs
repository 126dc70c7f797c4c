//! Crowd sends: `crowdSend` schedules one, `crowdSend(id)` shows its progress, `cancelCrowdSend`
//! stops it. The audience file is uploaded first to `/uploads` (or named by an http(s) URL).

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use commands::crowd::{self, CrowdRequest};
use commands::keys::Scope;
use domain::crowd::{CrowdSchedule, CrowdSource, Misfire as DomainMisfire};
use domain::{CrowdId, CrowdState};

use crate::errors::{self, validation};
use crate::templates::{caller, state, template_id};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Misfire {
    /// A missed firing is skipped; the next one runs.
    Skip,
    /// A missed firing runs once, late, however many were missed.
    RunOnceLate,
}

#[derive(InputObject)]
pub struct CronInput {
    /// Five fields: minute hour day-of-month month day-of-week, e.g. `0 9 * * 1-5`.
    pub expression: String,
    /// The UTC offset the expression is read in, e.g. `+08:00`.
    #[graphql(default = "+00:00")]
    pub zone: String,
    #[graphql(default_with = "Misfire::Skip")]
    pub misfire: Misfire,
}

#[derive(InputObject)]
pub struct CrowdSendInput {
    pub template_id: ID,
    /// Makes the request idempotent: the same id answers the same crowd send.
    pub request_id: String,
    /// The id `/uploads` answered with, or
    pub upload_id: Option<String>,
    /// an http(s) URL of the CSV, fetched at each run.
    pub url: Option<String>,
    /// The header of the receivers' column.
    #[graphql(default = "receiver")]
    pub receiver_column: String,
    /// Run once at this time (at once by default), or
    pub send_at: Option<DateTime<Utc>>,
    /// on a cron schedule.
    pub cron: Option<CronInput>,
}

#[derive(SimpleObject)]
pub struct RowError {
    /// The line in the file (the header is line 1).
    pub line: u64,
    pub code: String,
    pub message: String,
}

#[derive(SimpleObject)]
pub struct RunFailure {
    pub code: String,
    pub message: String,
}

/// A crowd send and the progress of its current (or last) run.
#[derive(SimpleObject)]
pub struct CrowdSend {
    pub id: ID,
    pub request_id: String,
    pub template_id: ID,
    /// `SCHEDULED`, `RUNNING`, `COMPLETED` or `CANCELLED`.
    pub status: String,
    pub upload_id: Option<String>,
    pub url: Option<String>,
    pub cron: Option<String>,
    pub zone: Option<String>,
    pub send_at: Option<DateTime<Utc>>,
    /// Runs started so far.
    pub run: u32,
    /// Cron firings missed and skipped.
    pub skipped_runs: u32,
    pub next_run_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// The first rows rejected in this run (at most 100), by line.
    pub errors: Vec<RowError>,
    pub bytes_read: u64,
    pub total_bytes: Option<u64>,
    /// When the run will likely finish, from its pace so far.
    pub estimated_end: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the last run failed before its rows, if it did.
    pub failure: Option<RunFailure>,
    /// On `cancelCrowdSend`: the messages that had not gone out and were recalled.
    pub recalled: Option<u64>,
}

impl CrowdSend {
    fn of(state: &CrowdState, now: DateTime<Utc>) -> Result<CrowdSend> {
        let scheduled = state
            .scheduled
            .as_ref()
            .ok_or_else(|| errors::internal("a crowd send without its schedule"))?;
        let (upload_id, url) = match &scheduled.source {
            CrowdSource::Upload { upload_id } => (Some(upload_id.clone()), None),
            CrowdSource::Url { url } => (None, Some(url.clone())),
        };
        let (cron, zone, send_at) = match &scheduled.schedule {
            CrowdSchedule::Once { send_at } => (None, None, *send_at),
            CrowdSchedule::Cron {
                expression, zone, ..
            } => (Some(expression.clone()), Some(zone.clone()), None),
        };
        Ok(CrowdSend {
            id: ID(scheduled.crowd_id.to_string()),
            request_id: scheduled.request_id.to_string(),
            template_id: ID(scheduled.template_id.to_string()),
            status: state.status_str().to_owned(),
            upload_id,
            url,
            cron,
            zone,
            send_at,
            run: state.run,
            skipped_runs: state.skipped_runs,
            next_run_at: state.next_run_at,
            started_at: state.run_started_at,
            rows_read: state.rows_read,
            accepted: state.accepted,
            rejected: state.rejected,
            errors: state
                .errors
                .iter()
                .map(|e| RowError {
                    line: e.line,
                    code: e.code.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            bytes_read: state.offset,
            total_bytes: state.total_bytes,
            estimated_end: crowd::estimate_end(state, now),
            finished_at: state.finished_at,
            failure: state.failure.as_ref().map(|(code, message)| RunFailure {
                code: code.clone(),
                message: message.clone(),
            }),
            recalled: None,
        })
    }
}

fn crowd_id(id: &ID) -> Result<CrowdId> {
    id.parse()
        .map_err(|_| validation("INVALID_ID", format!("{:?} is not a crowd send id", id.0)))
}

#[derive(Default)]
pub struct CrowdQuery;

#[Object]
impl CrowdQuery {
    /// A crowd send and its progress.
    async fn crowd_send(&self, ctx: &Context<'_>, id: ID) -> Result<CrowdSend> {
        let caller = caller(ctx, Scope::Read)?;
        let (state, _, _) = crowd::load(&state(ctx).store, &caller.tenant, crowd_id(&id)?)
            .await
            .map_err(errors::command)?;
        CrowdSend::of(&state, Utc::now())
    }
}

#[derive(Default)]
pub struct CrowdMutation;

#[Object]
impl CrowdMutation {
    /// Sends a template to every row of a CSV: once (now or at `sendAt`) or on a cron schedule.
    async fn crowd_send(&self, ctx: &Context<'_>, input: CrowdSendInput) -> Result<CrowdSend> {
        let caller = caller(ctx, Scope::Send)?;
        let source = match (input.upload_id, input.url) {
            (Some(upload_id), None) => CrowdSource::Upload { upload_id },
            (None, Some(url)) => CrowdSource::Url { url },
            _ => {
                return Err(validation(
                    "SOURCE",
                    "give the audience as uploadId or url, one of the two",
                ));
            }
        };
        let request = CrowdRequest {
            template_id: template_id(&input.template_id)?,
            request_id: input.request_id,
            source,
            send_at: input.send_at,
            cron: input.cron.map(|c| {
                let misfire = match c.misfire {
                    Misfire::Skip => DomainMisfire::Skip,
                    Misfire::RunOnceLate => DomainMisfire::RunOnceLate,
                };
                (c.expression, c.zone, misfire)
            }),
            receiver_column: input.receiver_column,
        };
        let store = &state(ctx).store;
        let now = Utc::now();
        let (id, _) = crowd::schedule(store, &caller.tenant, &caller.key_id, request, now)
            .await
            .map_err(errors::command)?;
        let (state, _, _) = crowd::load(store, &caller.tenant, id)
            .await
            .map_err(errors::command)?;
        CrowdSend::of(&state, now)
    }

    /// Stops a crowd send: no more rows become messages, and its messages not yet dispatched are
    /// recalled.
    async fn cancel_crowd_send(&self, ctx: &Context<'_>, id: ID) -> Result<CrowdSend> {
        let caller = caller(ctx, Scope::Recall)?;
        let store = &state(ctx).store;
        let id = crowd_id(&id)?;
        let now = Utc::now();
        let cancelled = crowd::cancel(store, &caller.tenant, &caller.key_id, id, now)
            .await
            .map_err(errors::command)?;
        let (state, _, _) = crowd::load(store, &caller.tenant, id)
            .await
            .map_err(errors::command)?;
        let mut answer = CrowdSend::of(&state, now)?;
        answer.recalled = Some(cancelled.recalled);
        Ok(answer)
    }
}
