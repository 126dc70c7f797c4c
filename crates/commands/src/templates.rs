//! Template commands and queries. A template is its own stream (`template-{id}`); a command
//! loads it, decides in the pure domain, and appends with the version it loaded.

use chrono::{DateTime, Utc};
use domain::{
    Channel, EventMetadata, MessageType, ReceiverIdType, ShieldType, TemplateCommand,
    TemplateContent, TemplateEvent, TemplateId, TemplateState, TenantId,
};
use store::{EventStore, Store, on_read, on_tx};

use crate::error::CommandError;
use crate::events;

/// What a new template is made of; the rest comes from the caller and the clock.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    pub name: String,
    pub channel: Channel,
    pub msg_type: MessageType,
    /// `None`: the channel's usual receiver id type.
    pub receiver_id_type: Option<ReceiverIdType>,
    pub shield_type: ShieldType,
    pub content: TemplateContent,
    pub account: String,
    pub owner_team: String,
}

#[derive(Debug, Clone, Default)]
pub struct TemplateFilter {
    pub channel: Option<Channel>,
    pub name_contains: Option<String>,
}

/// A template's current state and its stream version.
pub async fn load(
    store: &Store,
    tenant: &TenantId,
    id: TemplateId,
) -> Result<(TemplateState, u64), CommandError> {
    let (events, version) = events::load::<TemplateEvent>(store, &id.stream_name()).await?;
    let state = domain::template_aggregate::fold(&events).map_err(CommandError::internal)?;
    // Another tenant's template answers exactly like a missing one.
    match &state.info {
        Some(info) if info.tenant == *tenant => Ok((state, version)),
        _ => Err(CommandError::not_found("template")),
    }
}

pub async fn create(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    new: NewTemplate,
    at: DateTime<Utc>,
) -> Result<(TemplateId, TemplateState), CommandError> {
    let id = TemplateId::generate();
    let command = TemplateCommand::CreateTemplate {
        template_id: id,
        tenant: tenant.clone(),
        name: new.name,
        channel: new.channel,
        msg_type: new.msg_type,
        receiver_id_type: new
            .receiver_id_type
            .unwrap_or(new.channel.default_receiver_id_type()),
        shield_type: new.shield_type,
        content: new.content,
        account: new.account,
        owner_team: new.owner_team,
        proposer: actor.to_owned(),
        at,
    };
    let state = decide_and_append(
        store,
        tenant,
        actor,
        id,
        TemplateState::default(),
        0,
        command,
    )
    .await?;
    Ok((id, state))
}

/// Runs any command on an existing template. Retries once on a concurrent change, because the
/// rules are checked again on the fresh state.
pub async fn execute(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    id: TemplateId,
    command: TemplateCommand,
) -> Result<TemplateState, CommandError> {
    let mut tries = 0;
    loop {
        let (state, version) = load(store, tenant, id).await?;
        match decide_and_append(store, tenant, actor, id, state, version, command.clone()).await {
            Err(e) if e.reason == "CONCURRENT_CHANGE" && tries < 3 => tries += 1,
            other => return other,
        }
    }
}

async fn decide_and_append(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    id: TemplateId,
    state: TemplateState,
    version: u64,
    command: TemplateCommand,
) -> Result<TemplateState, CommandError> {
    let new_events = domain::template_decide::decide(&state, command)?;
    let mut state = state;
    for event in &new_events {
        state = domain::template_aggregate::apply(state, event).map_err(CommandError::internal)?;
    }
    if new_events.is_empty() {
        return Ok(state);
    }
    let metadata = EventMetadata::new(tenant.clone()).with_actor(actor);
    let latest = state
        .latest()
        .ok_or_else(|| CommandError::internal("a created template has a version"))?;
    let info = state
        .info
        .as_ref()
        .ok_or_else(|| CommandError::internal("a created template has info"))?;
    let mut tx = store.begin().await?;
    events::append_at(
        store,
        &mut tx,
        id.stream_name(),
        version,
        &new_events,
        &metadata,
    )
    .await?;
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO template_index (tenant_id, template_id, name, channel) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, template_id) DO UPDATE SET name = excluded.name"
    )
    .bind(tenant.as_str())
    .bind(id.to_string())
    .bind(&latest.name)
    .bind(info.channel.as_str())
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))
    .map_err(CommandError::internal)?;
    tx.commit().await?;
    Ok(state)
}

/// A page of the tenant's templates, newest first, and whether more follow.
pub async fn list(
    store: &Store,
    tenant: &TenantId,
    filter: &TemplateFilter,
    first: usize,
    after: Option<TemplateId>,
) -> Result<(Vec<(TemplateId, TemplateState)>, bool), CommandError> {
    let pattern = filter.name_contains.as_deref().map_or(String::new(), |n| {
        format!(
            "%{}%",
            n.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let channel = filter.channel.map_or("", Channel::as_str);
    let after = after.map_or(String::new(), |a| a.to_string());
    let ids: Vec<(String,)> = on_read!(store, |pool| sqlx::query_as(
        "SELECT template_id FROM template_index WHERE tenant_id = $1 \
           AND ($2 = '' OR channel = $2) AND ($3 = '' OR name LIKE $3 ESCAPE '\\') \
           AND ($4 = '' OR template_id < $4) \
         ORDER BY template_id DESC LIMIT $5"
    )
    .bind(tenant.as_str())
    .bind(channel)
    .bind(&pattern)
    .bind(&after)
    .bind((first + 1) as i64)
    .fetch_all(pool)
    .await)
    .map_err(CommandError::internal)?;
    let has_next = ids.len() > first;
    let mut page = Vec::with_capacity(first.min(ids.len()));
    for (id,) in ids.into_iter().take(first) {
        let id: TemplateId = id.parse().map_err(CommandError::internal)?;
        let (state, _) = load(store, tenant, id).await?;
        page.push((id, state));
    }
    Ok((page, has_next))
}
