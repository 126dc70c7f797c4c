//! Crowd sends: a template to a whole audience from a CSV (an upload or an http(s) URL), once
//! or on a cron schedule. `schedule` checks what can be checked up front (the template sends, the
//! upload is the tenant's and its header names the receiver column and every placeholder) and
//! records `CrowdSendScheduled` with the send on the schedule in one commit; `crowd_run` does the
//! runs; `cancel` stops a send and recalls its messages that have not gone out.

use chrono::{DateTime, TimeDelta, Utc};
use domain::crowd::{CrowdSchedule, CrowdSendScheduled, CrowdSource, Misfire};
use domain::crowd_state::{self, CrowdCommand, CrowdError, CrowdState, CrowdStatus};
use domain::{CrowdEvent, CrowdId, EventMetadata, MessageId, RequestId, TemplateId, TenantId};
use sha2::{Digest, Sha256};
use store::{EventStore, ExpectedVersion, Store, StoreError, StreamAppend};

use crate::error::{Code, CommandError};
use crate::events;

/// What a crowd send asks for.
#[derive(Debug, Clone)]
pub struct CrowdRequest {
    pub template_id: TemplateId,
    /// Makes the request idempotent: the same request id answers the same crowd send.
    pub request_id: String,
    pub source: CrowdSource,
    /// A one-off send's time (`None`: at once).
    pub send_at: Option<DateTime<Utc>>,
    /// A cron schedule instead: expression, zone (`+08:00`) and misfire policy.
    pub cron: Option<(String, String, Misfire)>,
    /// The header of the column that holds receivers.
    pub receiver_column: String,
}

impl From<CrowdError> for CommandError {
    fn from(error: CrowdError) -> Self {
        let code = match error {
            CrowdError::NotScheduled => Code::NotFound,
            CrowdError::InvalidSchedule(_) => Code::Validation,
            _ => Code::Conflict,
        };
        CommandError::new(code, error.code(), error.to_string())
    }
}

/// The crowd send a tenant's request id names: the same id for the same request, always.
pub fn crowd_id_of(tenant: &TenantId, request_id: &RequestId) -> CrowdId {
    let digest = Sha256::digest(format!("crowd:{tenant}:{request_id}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // A version-8 (custom) UUID, so it reads as what it is.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    CrowdId::from_uuid(uuid::Uuid::from_bytes(bytes))
}

/// A crowd send's state, if it is the tenant's; another tenant's answers like a missing one.
pub async fn load(
    store: &Store,
    tenant: &TenantId,
    id: CrowdId,
) -> Result<(CrowdState, u64, Vec<CrowdEvent>), CommandError> {
    let (history, version) = events::load::<CrowdEvent>(store, &id.stream_name()).await?;
    let state = crowd_state::fold(&history).map_err(CommandError::internal)?;
    match &state.scheduled {
        Some(s) if s.tenant == *tenant => Ok((state, version, history)),
        _ => Err(CommandError::not_found("crowd send").with("id", id.to_string())),
    }
}

/// A crowd send's state and its stream's version, whichever tenant's it is: for the operator's
/// tools (`herald crowd status`), never for a caller of the API. `None` when there is none.
pub async fn load_of_any_tenant(
    store: &Store,
    id: CrowdId,
) -> Result<Option<(CrowdState, u64)>, CommandError> {
    let (history, version) = events::load::<CrowdEvent>(store, &id.stream_name()).await?;
    if history.is_empty() {
        return Ok(None);
    }
    let state = crowd_state::fold(&history).map_err(CommandError::internal)?;
    Ok(state.scheduled.is_some().then_some((state, version)))
}

/// Schedules a crowd send; a repeated request id answers the first send (`true` when it did).
pub async fn schedule(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    request: CrowdRequest,
    now: DateTime<Utc>,
) -> Result<(CrowdId, bool), CommandError> {
    let request_id = RequestId::parse(&request.request_id).map_err(|e| {
        CommandError::validation("INVALID_REQUEST_ID", e.to_string())
            .with("requestId", request.request_id.as_str())
    })?;
    let crowd_id = crowd_id_of(tenant, &request_id);
    if let Ok((state, _, _)) = load(store, tenant, crowd_id).await {
        return same_request(&state, &request).map(|()| (crowd_id, true));
    }
    let (template, _) = crate::templates::load(store, tenant, request.template_id).await?;
    let version = template.sendable()?;
    if let CrowdSource::Upload { upload_id } = &request.source {
        let upload = store::crowd::upload(store, upload_id)
            .await?
            .filter(|u| u.tenant_id == tenant.as_str())
            .ok_or_else(|| {
                CommandError::not_found("upload").with("uploadId", upload_id.as_str())
            })?;
        let header = crate::crowd_run::read_header(store, &upload.id).await?;
        crate::crowd_run::Columns::new(&header, &request.receiver_column, &version.content)?;
    } else if let CrowdSource::Url { url } = &request.source
        && (!(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048)
    {
        return Err(CommandError::validation(
            "INVALID_SOURCE_URL",
            "the source URL must be http(s) and at most 2048 characters",
        )
        .with("url", url.as_str()));
    }
    let schedule = match (&request.cron, request.send_at) {
        (Some(_), Some(_)) => {
            return Err(CommandError::validation(
                "SCHEDULE_CONFLICT",
                "give sendAt or cron, not both",
            ));
        }
        (Some((expression, zone, misfire)), None) => CrowdSchedule::Cron {
            expression: expression.clone(),
            zone: zone.clone(),
            misfire: *misfire,
        },
        (None, send_at) => {
            if send_at.is_some_and(|at| at > now + TimeDelta::days(366)) {
                return Err(CommandError::validation(
                    "SEND_AT_TOO_FAR",
                    "sendAt may be at most 366 days ahead",
                ));
            }
            CrowdSchedule::Once { send_at }
        }
    };
    let first_run_at = match &schedule {
        CrowdSchedule::Once { send_at } => send_at.map_or(now, |at| at.max(now)),
        CrowdSchedule::Cron { .. } => {
            // A valid expression that never fires is refused with the invalid ones, in decide.
            crowd_state::next_run(&schedule, now).unwrap_or(now)
        }
    };
    let scheduled = CrowdSendScheduled {
        crowd_id,
        tenant: tenant.clone(),
        request_id: request_id.clone(),
        template_id: request.template_id,
        source: request.source.clone(),
        receiver_column: request.receiver_column.clone(),
        schedule: schedule.clone(),
        first_run_at,
        at: now,
    };
    let new_events = crowd_state::decide(
        &CrowdState::default(),
        CrowdCommand::Schedule(Box::new(scheduled)),
    )?;
    if matches!(schedule, CrowdSchedule::Cron { .. })
        && crowd_state::next_run(&schedule, now).is_none()
    {
        return Err(CommandError::validation(
            "INVALID_SCHEDULE",
            "the cron expression never fires",
        ));
    }
    let metadata = EventMetadata::new(tenant.clone())
        .with_correlation_id(request_id.as_str())
        .with_actor(actor);
    let mut tx = store.begin().await?;
    let append = StreamAppend {
        stream_id: crowd_id.stream_name(),
        expected: ExpectedVersion::NoStream,
        events: new_events
            .iter()
            .map(|e| events::encode(e, &metadata))
            .collect(),
    };
    match store.append_in(&mut tx, &[append]).await {
        Ok(_) => {}
        Err(StoreError::WrongExpectedVersion { .. } | StoreError::ConcurrentAppend) => {
            tx.rollback().await?;
            let (state, _, _) = load(store, tenant, crowd_id).await?;
            return same_request(&state, &request).map(|()| (crowd_id, true));
        }
        Err(error) => return Err(error.into()),
    }
    store::crowd::schedule(
        &mut tx,
        &crowd_id.to_string(),
        tenant.as_str(),
        first_run_at,
    )
    .await?;
    tx.commit().await?;
    Ok((crowd_id, false))
}

/// A repeated request id must ask for the same thing.
fn same_request(state: &CrowdState, request: &CrowdRequest) -> Result<(), CommandError> {
    let first = state
        .scheduled
        .as_ref()
        .ok_or_else(|| CommandError::internal("a loaded crowd send is scheduled"))?;
    if first.template_id == request.template_id && first.source == request.source {
        Ok(())
    } else {
        Err(CommandError::new(
            Code::Conflict,
            "REQUEST_ID_REUSED",
            "this request id was already used for a different crowd send",
        )
        .with("requestId", request.request_id.as_str()))
    }
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled {
    /// Messages that had not gone out and were recalled.
    pub recalled: u64,
}

/// Cancels a crowd send: no batch is accepted after this commits, the send leaves the
/// schedule, and its messages that have not been dispatched are recalled.
pub async fn cancel(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    id: CrowdId,
    now: DateTime<Utc>,
) -> Result<Cancelled, CommandError> {
    let mut tries = 0;
    let history = loop {
        let (state, version, history) = load(store, tenant, id).await?;
        let new_events = crowd_state::decide(
            &state,
            CrowdCommand::Cancel {
                actor: actor.to_owned(),
                at: now,
            },
        )?;
        let metadata = EventMetadata::new(tenant.clone()).with_actor(actor);
        let mut tx = store.begin().await?;
        let append = StreamAppend {
            stream_id: id.stream_name(),
            expected: ExpectedVersion::Exact(version),
            events: new_events
                .iter()
                .map(|e| events::encode(e, &metadata))
                .collect(),
        };
        match store.append_in(&mut tx, &[append]).await {
            Ok(_) => {}
            // A batch was accepted meanwhile: cancel again, counting it too.
            Err(error) if error.is_conflict() && tries < 20 => {
                tx.rollback().await?;
                tries += 1;
                continue;
            }
            Err(error) => return Err(error.into()),
        }
        store::crowd::unschedule(&mut tx, &id.to_string()).await?;
        tx.commit().await?;
        break history;
    };
    let ids: Vec<MessageId> = history
        .iter()
        .filter_map(|e| match e {
            CrowdEvent::CrowdBatchAccepted(b) => Some(b.message_ids.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut recalled = 0;
    for chunk in ids.chunks(crate::recall::MAX_MESSAGES) {
        recalled += crate::recall::cancel_pending(store, tenant, actor, chunk, now).await?;
    }
    Ok(Cancelled { recalled })
}

/// Whether a crowd send is over (completed or cancelled).
pub fn finished(state: &CrowdState) -> bool {
    matches!(
        state.status,
        Some(CrowdStatus::Completed | CrowdStatus::Cancelled)
    )
}

/// When the current run will likely be done, from its pace through the file so far.
pub fn estimate_end(state: &CrowdState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if state.status != Some(CrowdStatus::Running) {
        return None;
    }
    let total = state.total_bytes? as f64;
    let started = state.run_started_at?;
    let done = state.offset as f64;
    if done <= 0.0 {
        return None;
    }
    let elapsed = (now - started).num_milliseconds().max(1) as f64;
    let left = elapsed * (total - done).max(0.0) / done;
    Some(now + TimeDelta::milliseconds(left as i64))
}
