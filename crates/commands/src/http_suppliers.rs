//! Declarative HTTP suppliers, defined by a tenant's admin: each definition a stream of
//! `HttpSupplierDefined` events, indexed in `http_suppliers` in the same commit so every
//! process notices a change by reading one small table. A definition may be tried for real
//! (a dry run against a URL the admin gives) before it is stored; a failed try stores nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::http_supplier::{
    self, ACCOUNT_PREFIX, DryRunRequest, HttpSupplierDefined, HttpSupplierError, HttpSupplierEvent,
    HttpSupplierSpec,
};
use domain::{EventMetadata, TenantId};
use store::{EventStore, Store, on_read, on_tx};

use crate::accounts::AccountCatalog;
use crate::error::CommandError;
use crate::events;

impl From<HttpSupplierError> for CommandError {
    fn from(error: HttpSupplierError) -> Self {
        CommandError::validation(error.code(), error.to_string()).with("field", error.field)
    }
}

/// A definition as the API shows it, with its history oldest first.
#[derive(Debug, Clone)]
pub struct HttpSupplierView {
    pub name: String,
    pub spec: HttpSupplierSpec,
    pub version: u64,
    pub history: Vec<HttpSupplierDefined>,
}

impl HttpSupplierView {
    /// How an account names it as its supplier.
    pub fn account_supplier(&self) -> String {
        format!("{ACCOUNT_PREFIX}{}", self.name)
    }
}

async fn load(
    store: &Store,
    tenant: &TenantId,
    name: &str,
) -> Result<(Vec<HttpSupplierEvent>, u64), CommandError> {
    events::load::<HttpSupplierEvent>(store, &http_supplier::stream_name(tenant, name)).await
}

fn view(name: &str, history: Vec<HttpSupplierEvent>, version: u64) -> Option<HttpSupplierView> {
    let last = http_supplier::fold(&history)?;
    Some(HttpSupplierView {
        name: name.to_owned(),
        spec: last.spec,
        version,
        history: history
            .into_iter()
            .map(|HttpSupplierEvent::HttpSupplierDefined(e)| e)
            .collect(),
    })
}

/// Defines `name` for `tenant`, or changes it. With `dry_run`, the definition is first tried
/// against the URL it gives and is stored only if the try was a success; otherwise the error
/// `HTTP_SUPPLIER_DRY_RUN_FAILED` carries what happened. Accounts using it pick up a change on
/// every process within `runtime.poll_ms`.
#[allow(clippy::too_many_arguments)]
pub async fn define(
    store: &Store,
    catalog: &dyn AccountCatalog,
    tenant: &TenantId,
    actor: &str,
    name: &str,
    spec: HttpSupplierSpec,
    dry_run: Option<DryRunRequest>,
    at: DateTime<Utc>,
) -> Result<HttpSupplierView, CommandError> {
    domain::http_supplier_check::check_name(name)?;
    let (history, version) = load(store, tenant, name).await?;
    let current = http_supplier::fold(&history);
    let new_events =
        http_supplier::decide(current.as_ref(), tenant, name, spec.clone(), actor, at)?;
    if let Some(request) = dry_run {
        let report = catalog.dry_run(tenant, &spec, request).await;
        if !report.sent() {
            let mut error = CommandError::validation(
                "HTTP_SUPPLIER_DRY_RUN_FAILED",
                format!(
                    "the dry run ended {}{}{}; nothing was stored",
                    report.outcome,
                    report
                        .code
                        .as_deref()
                        .map(|c| format!(" with {c}"))
                        .unwrap_or_default(),
                    report
                        .message
                        .as_deref()
                        .map(|m| format!(": {}", m.chars().take(300).collect::<String>()))
                        .unwrap_or_default(),
                ),
            )
            .with("outcome", report.outcome.clone());
            if let Some(code) = report.code {
                error = error.with("supplierCode", code);
            }
            if let Some(status) = report.status {
                error = error.with("status", status);
            }
            return Err(error);
        }
    }
    if new_events.is_empty() {
        return view(name, history, version).ok_or_else(|| CommandError::not_found(name));
    }
    let metadata = EventMetadata::new(tenant.clone()).with_actor(actor);
    let stream_id = http_supplier::stream_name(tenant, name);
    let mut tx = store.begin().await?;
    let new_version = events::append_at(
        store,
        &mut tx,
        stream_id.clone(),
        version,
        &new_events,
        &metadata,
    )
    .await?;
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO http_suppliers (stream_id, tenant_id, name, version) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version"
    )
    .bind(&stream_id)
    .bind(tenant.as_str())
    .bind(name)
    .bind(new_version as i64)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))
    .map_err(CommandError::internal)?;
    tx.commit().await?;
    let mut all = history;
    all.extend(new_events);
    view(name, all, new_version).ok_or_else(|| CommandError::internal("a defined supplier"))
}

/// One of the tenant's definitions.
pub async fn get(
    store: &Store,
    tenant: &TenantId,
    name: &str,
) -> Result<Option<HttpSupplierView>, CommandError> {
    if domain::http_supplier_check::check_name(name).is_err() {
        return Ok(None);
    }
    let (history, version) = load(store, tenant, name).await?;
    Ok(view(name, history, version))
}

/// The tenant's definitions, by name.
pub async fn list(store: &Store, tenant: &TenantId) -> Result<Vec<HttpSupplierView>, CommandError> {
    let names: Vec<(String,)> = on_read!(store, |pool| sqlx::query_as(
        "SELECT name FROM http_suppliers WHERE tenant_id = $1 ORDER BY name"
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await)
    .map_err(CommandError::internal)?;
    let mut views = Vec::with_capacity(names.len());
    for (name,) in names {
        if let Some(view) = get(store, tenant, &name).await? {
            views.push(view);
        }
    }
    Ok(views)
}

/// The definition an account's supplier names (`http:{name}`), or `None` for a built-in
/// supplier. Naming one the tenant has not defined is refused.
pub async fn for_account(
    store: &Store,
    tenant: &TenantId,
    supplier: &str,
) -> Result<Option<Arc<HttpSupplierSpec>>, CommandError> {
    let Some(name) = supplier.strip_prefix(ACCOUNT_PREFIX) else {
        return Ok(None);
    };
    match get(store, tenant, name).await? {
        Some(view) => Ok(Some(Arc::new(view.spec))),
        None => Err(CommandError::validation(
            "ACCOUNT_UNUSABLE",
            format!("no HTTP supplier {name:?} is defined; define it with defineHttpSupplier"),
        )
        .with("field", "supplier")),
    }
}

/// Changes whenever any definition changes (see `accounts::fingerprint`).
pub async fn fingerprint(store: &Store) -> Result<(i64, i64), CommandError> {
    events::index_fingerprint(store, "http_suppliers").await
}

/// Every tenant's definitions, by tenant and name.
pub async fn load_all(
    store: &Store,
) -> Result<BTreeMap<(TenantId, String), Arc<HttpSupplierSpec>>, CommandError> {
    let streams: Vec<(String,)> = on_read!(store, |pool| sqlx::query_as(
        "SELECT stream_id FROM http_suppliers ORDER BY stream_id"
    )
    .fetch_all(pool)
    .await)
    .map_err(CommandError::internal)?;
    let mut all = BTreeMap::new();
    for (stream,) in streams {
        let (history, _) = events::load::<HttpSupplierEvent>(store, &stream).await?;
        if let Some(last) = http_supplier::fold(&history) {
            all.insert((last.tenant, last.name), Arc::new(last.spec));
        }
    }
    Ok(all)
}
