//! Channel accounts made at run time: created, changed, disabled and enabled by a tenant's
//! admin, each change an event on the account's stream, its secrets sealed beside it.
//!
//! Which suppliers exist and what each needs is dispatch's knowledge; the command side asks
//! through [`AccountCatalog`], which the server implements, so a definition a supplier cannot
//! work with is refused before anything is written.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::channel_account::{self, ChannelAccountInfo};
use domain::http_supplier::{DryRunReport, DryRunRequest, HttpSupplierSpec};
use domain::{
    AccountPatch, AccountSpec, ChannelAccountCommand, ChannelAccountEvent, ChannelAccountState,
    EventMetadata, TenantId,
};
use store::{EventStore, Store, on_read, on_tx};

use crate::error::{Code, CommandError};
use crate::events;
use crate::secrets::{Keyring, SecretError};

/// The longest secret value accepted.
pub const MAX_SECRET_LEN: usize = 8192;

/// What the server knows about suppliers and the configuration file's accounts.
pub trait AccountCatalog: Send + Sync {
    /// Refuses a definition the supplier cannot work with (an unknown supplier, a channel it
    /// does not serve, a missing setting or secret), saying what is wrong.
    /// `http_supplier` is the definition an `http:{name}` supplier names.
    fn check(
        &self,
        account_id: &str,
        spec: &AccountSpec,
        secrets: &BTreeMap<String, String>,
        http_supplier: Option<Arc<HttpSupplierSpec>>,
    ) -> Result<(), String>;

    /// Tries a declarative supplier's definition for real (see `http_suppliers::define`).
    fn dry_run<'a>(
        &'a self,
        tenant: &'a TenantId,
        spec: &'a HttpSupplierSpec,
        request: DryRunRequest,
    ) -> Pin<Box<dyn Future<Output = DryRunReport> + Send + 'a>>;

    /// The accounts of the configuration file, which the API shows but cannot change.
    fn configured(&self) -> Vec<ConfiguredAccount>;
}

/// What the account commands work with: the store, the keys that seal secrets, and the
/// server's knowledge of suppliers.
#[derive(Clone, Copy)]
pub struct Admin<'a> {
    pub store: &'a Store,
    pub keyring: &'a Keyring,
    pub catalog: &'a dyn AccountCatalog,
}

/// An account of the configuration file.
#[derive(Debug, Clone)]
pub struct ConfiguredAccount {
    pub account_id: String,
    pub spec: AccountSpec,
    /// Names of its credentials.
    pub secrets: Vec<String>,
}

/// A new account as the admin gives it.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub account_id: String,
    pub spec: AccountSpec,
    pub secrets: BTreeMap<String, String>,
}

/// A change as the admin gives it: the spec fields to change, secrets to set and to remove.
#[derive(Debug, Clone, Default)]
pub struct AccountUpdate {
    pub patch: AccountPatch,
    pub secrets: BTreeMap<String, String>,
}

/// An account as the API shows it: never a secret's value.
#[derive(Debug, Clone)]
pub struct AccountView {
    pub account_id: String,
    /// `None` for the configuration file's accounts, which every tenant may use.
    pub tenant: Option<TenantId>,
    pub spec: AccountSpec,
    pub secrets: Vec<String>,
    pub enabled: bool,
    pub read_only: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: u64,
}

/// One entry of an account's audit trail.
#[derive(Debug, Clone)]
pub struct AccountChange {
    /// `CREATED`, `UPDATED`, `DISABLED` or `ENABLED`.
    pub kind: &'static str,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub changed: Vec<String>,
    pub secrets_set: Vec<String>,
    pub secrets_removed: Vec<String>,
    pub reason: Option<String>,
}

/// A run-time account with its secrets opened, for dispatch.
#[derive(Clone)]
pub struct LiveAccount {
    pub account_id: String,
    pub tenant: TenantId,
    /// Disabled accounts take no new messages but still serve receipts and recalls.
    pub enabled: bool,
    pub spec: AccountSpec,
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for LiveAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveAccount")
            .field("account_id", &self.account_id)
            .field("tenant", &self.tenant)
            .field("enabled", &self.enabled)
            .field("spec", &self.spec)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl From<domain::ChannelAccountError> for CommandError {
    fn from(error: domain::ChannelAccountError) -> Self {
        use domain::ChannelAccountError as E;
        let code = match &error {
            E::NotFound => Code::NotFound,
            E::AlreadyExists => Code::Conflict,
            E::InvalidId(_) | E::Invalid { .. } => Code::Validation,
        };
        let mut out = CommandError::new(code, error.code(), error.to_string());
        if let E::Invalid { field, .. } = &error {
            out = out.with("field", *field);
        }
        out
    }
}

fn secret_error(error: SecretError) -> CommandError {
    match error {
        SecretError::NoKey => CommandError::validation("SECRET_KEY_MISSING", error.to_string()),
        other => CommandError::internal(other),
    }
}

fn read_only(id: &str) -> CommandError {
    CommandError::new(
        Code::Conflict,
        "ACCOUNT_READ_ONLY",
        format!("account {id} comes from the configuration file; change it there"),
    )
}

fn invalid_secret(name: &str, message: &str) -> CommandError {
    CommandError::validation("INVALID_ACCOUNT", format!("secrets: {name} {message}"))
        .with("field", "secrets")
}

fn check_secret_values(secrets: &BTreeMap<String, String>) -> Result<(), CommandError> {
    for (name, value) in secrets {
        if value.is_empty() {
            return Err(invalid_secret(name, "is empty"));
        }
        if value.len() > MAX_SECRET_LEN {
            return Err(invalid_secret(
                name,
                &format!("is longer than {MAX_SECRET_LEN} bytes"),
            ));
        }
    }
    Ok(())
}

fn unusable(message: String) -> CommandError {
    CommandError::validation("ACCOUNT_UNUSABLE", message)
}

/// The account's state and stream version; another tenant's account answers like a missing one.
async fn load(
    store: &Store,
    tenant: &TenantId,
    id: &str,
) -> Result<(ChannelAccountInfo, u64), CommandError> {
    let (events, version) =
        events::load::<ChannelAccountEvent>(store, &channel_account::stream_name(id)).await?;
    let state = channel_account::fold(&events).map_err(CommandError::internal)?;
    match state.info {
        Some(info) if info.tenant == *tenant => Ok((info, version)),
        _ => Err(domain::ChannelAccountError::NotFound.into()),
    }
}

/// The sealed secrets of an account, by name.
async fn sealed_secrets(store: &Store, id: &str) -> Result<BTreeMap<String, String>, CommandError> {
    let rows: Vec<(String, String)> = on_read!(store, |pool| sqlx::query_as(
        "SELECT name, sealed FROM account_secrets WHERE account_id = $1"
    )
    .bind(id)
    .fetch_all(pool)
    .await)
    .map_err(CommandError::internal)?;
    Ok(rows.into_iter().collect())
}

/// Appends the account's events, and in the same commit moves its index row and its secrets.
#[allow(clippy::too_many_arguments)]
async fn append(
    store: &Store,
    tenant: &TenantId,
    actor: &str,
    id: &str,
    version: u64,
    new_events: &[ChannelAccountEvent],
    sealed: &BTreeMap<String, String>,
    removed: &[String],
) -> Result<u64, CommandError> {
    let metadata = EventMetadata::new(tenant.clone()).with_actor(actor);
    let mut tx = store.begin().await?;
    let new_version = events::append_at(
        store,
        &mut tx,
        channel_account::stream_name(id),
        version,
        new_events,
        &metadata,
    )
    .await?;
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO channel_accounts (account_id, tenant_id, version) VALUES ($1, $2, $3) \
         ON CONFLICT (account_id) DO UPDATE SET version = excluded.version"
    )
    .bind(id)
    .bind(tenant.as_str())
    .bind(new_version as i64)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))
    .map_err(CommandError::internal)?;
    for (name, value) in sealed {
        on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO account_secrets (account_id, name, sealed) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, name) DO UPDATE SET sealed = excluded.sealed"
        )
        .bind(id)
        .bind(name)
        .bind(value)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))
        .map_err(CommandError::internal)?;
    }
    for name in removed {
        on_tx!(tx, |conn| sqlx::query(
            "DELETE FROM account_secrets WHERE account_id = $1 AND name = $2"
        )
        .bind(id)
        .bind(name)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))
        .map_err(CommandError::internal)?;
    }
    tx.commit().await?;
    Ok(new_version)
}

fn seal_all(
    keyring: &Keyring,
    id: &str,
    secrets: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, CommandError> {
    secrets
        .iter()
        .map(|(name, value)| {
            keyring
                .seal(id, name, value)
                .map(|sealed| (name.clone(), sealed))
                .map_err(secret_error)
        })
        .collect()
}

fn view(info: ChannelAccountInfo, version: u64) -> AccountView {
    AccountView {
        account_id: info.account_id,
        tenant: Some(info.tenant),
        spec: info.spec,
        secrets: info.secrets.into_iter().collect(),
        enabled: info.enabled,
        read_only: false,
        created_at: Some(info.created_at),
        updated_at: Some(info.updated_at),
        version,
    }
}

/// The account after `new_events` on `state`, as the API shows it.
fn shown(
    state: ChannelAccountState,
    new_events: &[ChannelAccountEvent],
    version: u64,
) -> Result<AccountView, CommandError> {
    let state = new_events
        .iter()
        .try_fold(state, channel_account::apply)
        .map_err(CommandError::internal)?;
    let info = state
        .info
        .ok_or_else(|| CommandError::internal("an account after its events has info"))?;
    Ok(view(info, version))
}

fn configured_view(account: ConfiguredAccount) -> AccountView {
    AccountView {
        account_id: account.account_id,
        tenant: None,
        spec: account.spec,
        secrets: account.secrets,
        enabled: true,
        read_only: true,
        created_at: None,
        updated_at: None,
        version: 0,
    }
}

/// Creates an account owned by `tenant`, usable by its templates.
pub async fn create(
    admin: Admin<'_>,
    tenant: &TenantId,
    actor: &str,
    new: NewAccount,
    at: DateTime<Utc>,
) -> Result<AccountView, CommandError> {
    let Admin {
        store,
        keyring,
        catalog,
    } = admin;
    let id = new.account_id;
    channel_account::check_id(&id)?;
    if catalog.configured().iter().any(|a| a.account_id == id) {
        return Err(domain::ChannelAccountError::AlreadyExists.into());
    }
    let command = ChannelAccountCommand::Create {
        account_id: id.clone(),
        tenant: tenant.clone(),
        spec: new.spec.clone(),
        secrets: new.secrets.keys().cloned().collect(),
        actor: actor.to_owned(),
        at,
    };
    let (existing, version) =
        events::load::<ChannelAccountEvent>(store, &channel_account::stream_name(&id)).await?;
    let state = channel_account::fold(&existing).map_err(CommandError::internal)?;
    let new_events = channel_account::decide(&state, command)?;
    check_secret_values(&new.secrets)?;
    let definition = crate::http_suppliers::for_account(store, tenant, &new.spec.supplier).await?;
    catalog
        .check(&id, &new.spec, &new.secrets, definition)
        .map_err(unusable)?;
    let sealed = seal_all(keyring, &id, &new.secrets)?;
    let version = append(
        store,
        tenant,
        actor,
        &id,
        version,
        &new_events,
        &sealed,
        &[],
    )
    .await?;
    shown(ChannelAccountState::default(), &new_events, version)
}

/// Changes an account's spec or secrets. The result is checked as a whole, with the secrets it
/// keeps, so a change cannot leave an account its supplier cannot use.
pub async fn update(
    admin: Admin<'_>,
    tenant: &TenantId,
    actor: &str,
    id: &str,
    update: AccountUpdate,
    at: DateTime<Utc>,
) -> Result<AccountView, CommandError> {
    let Admin {
        store,
        keyring,
        catalog,
    } = admin;
    if catalog.configured().iter().any(|a| a.account_id == id) {
        return Err(read_only(id));
    }
    let (info, version) = load(store, tenant, id).await?;
    check_secret_values(&update.secrets)?;
    let mut patch = update.patch;
    patch.secrets_set = update.secrets.keys().cloned().collect();
    let state = ChannelAccountState {
        info: Some(info.clone()),
    };
    let new_events = channel_account::decide(
        &state,
        ChannelAccountCommand::Update {
            patch: patch.clone(),
            actor: actor.to_owned(),
            at,
        },
    )?;
    if new_events.is_empty() {
        return Ok(view(info, version));
    }
    // The whole account after the change, with its secrets opened, must still work.
    let mut secrets = BTreeMap::new();
    for (name, sealed) in sealed_secrets(store, id).await? {
        if !patch.secrets_removed.contains(&name) {
            let value = keyring.open(id, &name, &sealed).map_err(secret_error)?;
            secrets.insert(name, value);
        }
    }
    secrets.extend(update.secrets.clone());
    let (spec, _) = channel_account::patched(&info.spec, &patch);
    let definition = crate::http_suppliers::for_account(store, tenant, &spec.supplier).await?;
    catalog
        .check(id, &spec, &secrets, definition)
        .map_err(unusable)?;
    let sealed = seal_all(keyring, id, &update.secrets)?;
    let version = append(
        store,
        tenant,
        actor,
        id,
        version,
        &new_events,
        &sealed,
        &patch.secrets_removed,
    )
    .await?;
    shown(state, &new_events, version)
}

/// Disables (`enabled = false`) or enables an account. Disabling takes it out of dispatch on
/// every process within a reload interval; messages naming it go to the channel's others.
pub async fn set_enabled(
    admin: Admin<'_>,
    tenant: &TenantId,
    actor: &str,
    id: &str,
    enabled: bool,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Result<AccountView, CommandError> {
    let Admin { store, catalog, .. } = admin;
    if catalog.configured().iter().any(|a| a.account_id == id) {
        return Err(read_only(id));
    }
    let (info, version) = load(store, tenant, id).await?;
    let command = if enabled {
        ChannelAccountCommand::Enable {
            actor: actor.to_owned(),
            at,
        }
    } else {
        ChannelAccountCommand::Disable {
            reason,
            actor: actor.to_owned(),
            at,
        }
    };
    let state = ChannelAccountState {
        info: Some(info.clone()),
    };
    let new_events = channel_account::decide(&state, command)?;
    if new_events.is_empty() {
        return Ok(view(info, version));
    }
    let version = append(
        store,
        tenant,
        actor,
        id,
        version,
        &new_events,
        &BTreeMap::new(),
        &[],
    )
    .await?;
    shown(state, &new_events, version)
}

/// The configuration file's accounts (read-only), then the tenant's own, by id.
pub async fn list(
    store: &Store,
    catalog: &dyn AccountCatalog,
    tenant: &TenantId,
) -> Result<Vec<AccountView>, CommandError> {
    let mut views: Vec<AccountView> = catalog
        .configured()
        .into_iter()
        .map(configured_view)
        .collect();
    let ids: Vec<(String,)> = on_read!(store, |pool| sqlx::query_as(
        "SELECT account_id FROM channel_accounts WHERE tenant_id = $1 ORDER BY account_id"
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await)
    .map_err(CommandError::internal)?;
    for (id,) in ids {
        let (info, version) = load(store, tenant, &id).await?;
        views.push(view(info, version));
    }
    Ok(views)
}

/// One account the tenant can see, if any.
pub async fn get(
    store: &Store,
    catalog: &dyn AccountCatalog,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<AccountView>, CommandError> {
    if let Some(account) = catalog
        .configured()
        .into_iter()
        .find(|a| a.account_id == id)
    {
        return Ok(Some(configured_view(account)));
    }
    match load(store, tenant, id).await {
        Ok((info, version)) => Ok(Some(view(info, version))),
        Err(e) if e.code == Code::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The account's audit trail, oldest first (empty for a configuration file's account).
pub async fn history(
    store: &Store,
    tenant: &TenantId,
    id: &str,
) -> Result<Vec<AccountChange>, CommandError> {
    let (events, _) =
        events::load::<ChannelAccountEvent>(store, &channel_account::stream_name(id)).await?;
    let state = channel_account::fold(&events).map_err(CommandError::internal)?;
    if state.info.as_ref().is_none_or(|i| i.tenant != *tenant) {
        return Ok(Vec::new());
    }
    Ok(events
        .iter()
        .map(|event| {
            let mut change = AccountChange {
                kind: "",
                at: event.at(),
                actor: event.actor().to_owned(),
                changed: Vec::new(),
                secrets_set: Vec::new(),
                secrets_removed: Vec::new(),
                reason: None,
            };
            match event {
                ChannelAccountEvent::ChannelAccountCreated(e) => {
                    change.kind = "CREATED";
                    change.secrets_set.clone_from(&e.secrets);
                }
                ChannelAccountEvent::ChannelAccountUpdated(e) => {
                    change.kind = "UPDATED";
                    change.changed.clone_from(&e.changed);
                    change.secrets_set.clone_from(&e.secrets_set);
                    change.secrets_removed.clone_from(&e.secrets_removed);
                }
                ChannelAccountEvent::ChannelAccountDisabled(e) => {
                    change.kind = "DISABLED";
                    change.reason.clone_from(&e.reason);
                }
                ChannelAccountEvent::ChannelAccountEnabled(_) => change.kind = "ENABLED",
            }
            change
        })
        .collect())
}

/// Changes whenever any run-time account changes: the number of accounts and the sum of their
/// stream versions (every change raises one version). One read of a small table, so every
/// process can ask it each second.
pub async fn fingerprint(store: &Store) -> Result<(i64, i64), CommandError> {
    events::index_fingerprint(store, "channel_accounts").await
}

/// Every run-time account with its secrets opened, and the accounts that could not be loaded
/// with why (a secret under a key this process does not have, say): one broken account does
/// not stop the others.
pub async fn load_all(
    store: &Store,
    keyring: &Keyring,
) -> Result<(Vec<LiveAccount>, Vec<(String, String)>), CommandError> {
    let ids: Vec<(String,)> = on_read!(store, |pool| sqlx::query_as(
        "SELECT account_id FROM channel_accounts ORDER BY account_id"
    )
    .fetch_all(pool)
    .await)
    .map_err(CommandError::internal)?;
    let mut live = Vec::new();
    let mut broken = Vec::new();
    for (id,) in ids {
        let (events, _) =
            events::load::<ChannelAccountEvent>(store, &channel_account::stream_name(&id)).await?;
        let state = channel_account::fold(&events).map_err(CommandError::internal)?;
        let Some(info) = state.info else { continue };
        let mut secrets = BTreeMap::new();
        let mut failure = None;
        for (name, sealed) in sealed_secrets(store, &id).await? {
            match keyring.open(&id, &name, &sealed) {
                Ok(value) => {
                    secrets.insert(name, value);
                }
                Err(error) => failure = Some(error.to_string()),
            }
        }
        match failure {
            Some(error) => broken.push((id, error)),
            None => live.push(LiveAccount {
                account_id: id,
                tenant: info.tenant,
                enabled: info.enabled,
                spec: info.spec,
                secrets,
            }),
        }
    }
    Ok((live, broken))
}

/// What a key rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    /// Secrets sealed again under the current key.
    pub resealed: u64,
    /// Secrets already under it.
    pub current: u64,
}

/// Seals every secret again under the keyring's current key, in one transaction: either all
/// move or none. A secret under a key the keyring does not have stops the rotation.
pub async fn rotate(store: &Store, keyring: &Keyring) -> Result<Rotation, CommandError> {
    if keyring.current_id().is_none() {
        return Err(secret_error(SecretError::NoKey));
    }
    let mut tx = store.begin().await?;
    let rows: Vec<(String, String, String)> = on_tx!(tx, |conn| sqlx::query_as(
        "SELECT account_id, name, sealed FROM account_secrets ORDER BY account_id, name"
    )
    .fetch_all(conn)
    .await)
    .map_err(CommandError::internal)?;
    let mut rotation = Rotation::default();
    for (account, name, sealed) in rows {
        if keyring.is_current(&sealed) {
            rotation.current += 1;
            continue;
        }
        let plain = keyring.open(&account, &name, &sealed).map_err(|e| {
            CommandError::validation(
                "SECRET_KEY_MISSING",
                format!("account {account}, secret {name}: {e}"),
            )
        })?;
        let resealed = keyring
            .seal(&account, &name, &plain)
            .map_err(secret_error)?;
        on_tx!(tx, |conn| sqlx::query(
            "UPDATE account_secrets SET sealed = $3 WHERE account_id = $1 AND name = $2"
        )
        .bind(&account)
        .bind(&name)
        .bind(&resealed)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))
        .map_err(CommandError::internal)?;
        rotation.resealed += 1;
    }
    tx.commit().await?;
    Ok(rotation)
}
