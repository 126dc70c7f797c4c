//! Live policy: a tenant's overrides of the configured dispatch policy, or a template's
//! overrides of its tenant's, set by the tenant's admin. Each change is a `PolicySet` event
//! naming its actor; dispatch on every process picks it up within `runtime.poll_ms`.

use chrono::{DateTime, Utc};
use domain::policy::{self, PolicyEvent, PolicyRules, PolicyScope, PolicySet};
use domain::{EventMetadata, TemplateId, TenantId};
use store::{EventStore, Store, on_read, on_tx};

use crate::error::CommandError;
use crate::events;

impl From<domain::policy::PolicyError> for CommandError {
    fn from(error: domain::policy::PolicyError) -> Self {
        CommandError::validation(error.code(), error.to_string()).with("field", error.field)
    }
}

/// The scope's rules and stream version.
async fn load(store: &Store, scope: &PolicyScope) -> Result<(Vec<PolicyEvent>, u64), CommandError> {
    events::load::<PolicyEvent>(store, &scope.stream_name()).await
}

/// The scope of a tenant, or of one of its templates (which must be the tenant's).
pub async fn scope(
    store: &Store,
    tenant: &TenantId,
    template: Option<TemplateId>,
) -> Result<PolicyScope, CommandError> {
    if let Some(id) = template {
        // Another tenant's template answers like a missing one.
        crate::templates::load(store, tenant, id).await?;
    }
    Ok(PolicyScope {
        tenant: tenant.clone(),
        template_id: template,
    })
}

/// Replaces the scope's rules; returns them with the scope's version. Setting the same rules
/// again records nothing.
pub async fn set(
    store: &Store,
    scope: PolicyScope,
    rules: PolicyRules,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(PolicyRules, u64), CommandError> {
    let (history, version) = load(store, &scope).await?;
    let current = policy::fold(&history);
    let new_events = policy::decide(&current, scope.clone(), rules, actor, at)?;
    if new_events.is_empty() {
        return Ok((current, version));
    }
    let metadata = EventMetadata::new(scope.tenant.clone()).with_actor(actor);
    let mut tx = store.begin().await?;
    let new_version = events::append_at(
        store,
        &mut tx,
        scope.stream_name(),
        version,
        &new_events,
        &metadata,
    )
    .await?;
    let template = scope.template_id.map_or(String::new(), |t| t.to_string());
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO policies (stream_id, tenant_id, template_id, version) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version"
    )
    .bind(scope.stream_name())
    .bind(scope.tenant.as_str())
    .bind(&template)
    .bind(new_version as i64)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))
    .map_err(CommandError::internal)?;
    tx.commit().await?;
    Ok((policy::fold(&new_events), new_version))
}

/// The scope's rules and every change to them, oldest first.
pub async fn get(
    store: &Store,
    scope: &PolicyScope,
) -> Result<(PolicyRules, Vec<PolicySet>), CommandError> {
    let (history, _) = load(store, scope).await?;
    let rules = policy::fold(&history);
    let changes = history
        .into_iter()
        .map(|PolicyEvent::PolicySet(e)| e)
        .collect();
    Ok((rules, changes))
}

/// Changes whenever any scope changes (see `accounts::fingerprint`).
pub async fn fingerprint(store: &Store) -> Result<(i64, i64), CommandError> {
    events::index_fingerprint(store, "policies").await
}

/// Every scope with rules.
pub async fn load_all(store: &Store) -> Result<Vec<(PolicyScope, PolicyRules)>, CommandError> {
    let streams: Vec<(String,)> = on_read!(store, |pool| sqlx::query_as(
        "SELECT stream_id FROM policies ORDER BY stream_id"
    )
    .fetch_all(pool)
    .await)
    .map_err(CommandError::internal)?;
    let mut scopes = Vec::with_capacity(streams.len());
    for (stream,) in streams {
        let (history, _) = events::load::<PolicyEvent>(store, &stream).await?;
        if let Some(PolicyEvent::PolicySet(last)) = history.last() {
            scopes.push((last.scope.clone(), last.rules.clone()));
        }
    }
    Ok(scopes)
}
