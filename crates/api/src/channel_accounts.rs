//! Channel accounts managed at run time (`admin` scope): a tenant's own supplier accounts,
//! beside the configuration file's, which every tenant sees read-only. Secret values go in and
//! never come out: an account shows the names of its secrets only.

use std::collections::BTreeMap;

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use commands::accounts::{self, AccountChange, AccountUpdate, AccountView, Admin, NewAccount};
use commands::keys::Scope;
use domain::AccountPatch;
use domain::channel_account::{PerSecond, RateLimit};

use crate::errors::{self, validation};
use crate::templates::{caller, state};
use crate::types::Channel;

/// A name and a value: a supplier setting or a secret.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "SettingInput")]
pub struct Setting {
    pub name: String,
    pub value: String,
}

/// Where an account is defined.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AccountSource {
    /// The configuration file: every tenant may use it; change it in the file.
    Config,
    /// Made through this API by the owning tenant's admin.
    Runtime,
}

/// A supplier account a channel sends through.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ChannelAccount {
    pub id: String,
    pub channel: Channel,
    pub supplier: String,
    pub base_url: Option<String>,
    /// Share of the channel's traffic; 0 keeps the account for named templates and failover.
    pub weight: u32,
    pub settings: Vec<Setting>,
    /// The names of its secrets; values are never shown.
    pub secret_names: Vec<String>,
    pub timeout_secs: u64,
    pub rate_limit_per_sec: Option<f64>,
    pub rate_limit_burst: Option<u32>,
    pub enabled: bool,
    pub read_only: bool,
    pub source: AccountSource,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The version of its stream: one per change.
    pub version: u64,
}

/// What a change to an account was.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AccountChangeKind {
    Created,
    Updated,
    Disabled,
    Enabled,
}

/// One entry of an account's audit trail.
#[derive(SimpleObject)]
pub struct ChannelAccountChange {
    pub kind: AccountChangeKind,
    pub at: DateTime<Utc>,
    /// The API key that made the change.
    pub actor: String,
    /// Fields changed: `base_url`, `weight`, `settings`, `timeout_secs`, `rate_limit`.
    pub changed: Vec<String>,
    pub secrets_set: Vec<String>,
    pub secrets_removed: Vec<String>,
    pub reason: Option<String>,
}

#[async_graphql::ComplexObject]
impl ChannelAccount {
    /// Who changed what, and when, oldest first (empty for the configuration file's accounts).
    async fn history(&self, ctx: &Context<'_>) -> Result<Vec<ChannelAccountChange>> {
        let caller = caller(ctx, Scope::Admin)?;
        if self.read_only {
            return Ok(Vec::new());
        }
        let changes = accounts::history(&state(ctx).store, &caller.tenant, &self.id)
            .await
            .map_err(errors::command)?;
        Ok(changes.into_iter().map(change).collect())
    }
}

fn change(c: AccountChange) -> ChannelAccountChange {
    ChannelAccountChange {
        kind: match c.kind {
            "CREATED" => AccountChangeKind::Created,
            "DISABLED" => AccountChangeKind::Disabled,
            "ENABLED" => AccountChangeKind::Enabled,
            _ => AccountChangeKind::Updated,
        },
        at: c.at,
        actor: c.actor,
        changed: c.changed,
        secrets_set: c.secrets_set,
        secrets_removed: c.secrets_removed,
        reason: c.reason,
    }
}

fn view(v: AccountView) -> ChannelAccount {
    ChannelAccount {
        id: v.account_id,
        channel: v.spec.channel.into(),
        supplier: v.spec.supplier,
        base_url: v.spec.base_url,
        weight: v.spec.weight,
        settings: v
            .spec
            .settings
            .into_iter()
            .map(|(name, value)| Setting { name, value })
            .collect(),
        secret_names: v.secrets,
        timeout_secs: v.spec.timeout_secs,
        rate_limit_per_sec: v.spec.rate_limit.map(|l| l.per_sec.0),
        rate_limit_burst: v.spec.rate_limit.and_then(|l| l.burst),
        enabled: v.enabled,
        read_only: v.read_only,
        source: if v.read_only {
            AccountSource::Config
        } else {
            AccountSource::Runtime
        },
        created_at: v.created_at,
        updated_at: v.updated_at,
        version: v.version,
    }
}

/// A new channel account.
#[derive(InputObject)]
pub struct CreateChannelAccountInput {
    /// 1 to 64 lowercase letters, digits, `-` and `_`; unique across the deployment.
    pub id: String,
    pub channel: Channel,
    /// The supplier kind: `tencent_sms`, `aliyun_sms`, `smtp`, `webhook`, `dingtalk_robot`,
    /// `dingtalk_work`, `wecom_robot`, `wecom_app`, `feishu_robot`, `wechat_official`,
    /// `mini_program`, `getui`, or `http:{name}` for one of the tenant's declarative HTTP
    /// suppliers (see `defineHttpSupplier`).
    pub supplier: String,
    /// The supplier's API address (absent: its public one).
    pub base_url: Option<String>,
    #[graphql(default = 1)]
    pub weight: u32,
    #[graphql(default)]
    pub settings: Vec<Setting>,
    /// Credentials by name (`secret_id`, `secret_key`, `password`...): stored encrypted,
    /// never returned.
    #[graphql(default)]
    pub secrets: Vec<Setting>,
    #[graphql(default = 10)]
    pub timeout_secs: u64,
    pub rate_limit_per_sec: Option<f64>,
    pub rate_limit_burst: Option<u32>,
}

/// A change to a channel account; absent fields stay as they are.
#[derive(InputObject)]
pub struct UpdateChannelAccountInput {
    pub id: String,
    pub base_url: Option<String>,
    /// Back to the supplier's public address.
    #[graphql(default)]
    pub clear_base_url: bool,
    pub weight: Option<u32>,
    /// Replaces every setting.
    pub settings: Option<Vec<Setting>>,
    /// Secrets to set (new or replaced).
    #[graphql(default)]
    pub secrets: Vec<Setting>,
    /// Secrets to remove, by name.
    #[graphql(default)]
    pub remove_secrets: Vec<String>,
    pub timeout_secs: Option<u64>,
    /// Sets the rate limit (with `rateLimitBurst`, if given).
    pub rate_limit_per_sec: Option<f64>,
    pub rate_limit_burst: Option<u32>,
    /// Removes the rate limit.
    #[graphql(default)]
    pub clear_rate_limit: bool,
}

pub(crate) fn pairs(field: &str, list: Vec<Setting>) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for Setting { name, value } in list {
        if map.insert(name.clone(), value).is_some() {
            return Err(errors::command(
                commands::CommandError::validation(
                    "INVALID_ACCOUNT",
                    format!("{field}: {name} is given twice"),
                )
                .with("field", field.to_owned()),
            ));
        }
    }
    Ok(map)
}

fn admin<'a>(ctx: &Context<'a>) -> Admin<'a> {
    let s = state(ctx);
    Admin {
        store: &s.store,
        keyring: &s.accounts.keyring,
        catalog: s.accounts.catalog.as_ref(),
    }
}

#[derive(Default)]
pub struct ChannelAccountQuery;

#[Object]
impl ChannelAccountQuery {
    /// The accounts the tenant may use: the configuration file's (read-only), then its own.
    async fn channel_accounts(&self, ctx: &Context<'_>) -> Result<Vec<ChannelAccount>> {
        let caller = caller(ctx, Scope::Admin)?;
        let a = admin(ctx);
        let list = accounts::list(a.store, a.catalog, &caller.tenant)
            .await
            .map_err(errors::command)?;
        Ok(list.into_iter().map(view).collect())
    }

    async fn channel_account(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> Result<Option<ChannelAccount>> {
        let caller = caller(ctx, Scope::Admin)?;
        let a = admin(ctx);
        let found = accounts::get(a.store, a.catalog, &caller.tenant, &id)
            .await
            .map_err(errors::command)?;
        Ok(found.map(view))
    }
}

#[derive(Default)]
pub struct ChannelAccountMutation;

#[Object]
impl ChannelAccountMutation {
    /// Creates an account owned by the caller's tenant. Its definition is checked as the
    /// supplier would need it (`ACCOUNT_UNUSABLE` says what is missing); dispatch on every
    /// process uses it within `runtime.poll_ms`.
    async fn create_channel_account(
        &self,
        ctx: &Context<'_>,
        input: CreateChannelAccountInput,
    ) -> Result<ChannelAccount> {
        let caller = caller(ctx, Scope::Admin)?;
        let rate_limit = input.rate_limit_per_sec.map(|rate| RateLimit {
            per_sec: PerSecond(rate),
            burst: input.rate_limit_burst,
        });
        let new = NewAccount {
            account_id: input.id,
            spec: domain::AccountSpec {
                channel: input.channel.into(),
                supplier: input.supplier,
                base_url: input.base_url,
                weight: input.weight,
                settings: pairs("settings", input.settings)?,
                timeout_secs: input.timeout_secs,
                rate_limit,
            },
            secrets: pairs("secrets", input.secrets)?,
        };
        let created = accounts::create(admin(ctx), &caller.tenant, &caller.key_id, new, Utc::now())
            .await
            .map_err(errors::command)?;
        Ok(view(created))
    }

    /// Changes an account. The result is checked as a whole before it is recorded.
    async fn update_channel_account(
        &self,
        ctx: &Context<'_>,
        input: UpdateChannelAccountInput,
    ) -> Result<ChannelAccount> {
        let caller = caller(ctx, Scope::Admin)?;
        if input.clear_base_url && input.base_url.is_some() {
            return Err(validation(
                "INVALID_ACCOUNT",
                "baseUrl and clearBaseUrl are both given",
            ));
        }
        if input.clear_rate_limit && input.rate_limit_per_sec.is_some() {
            return Err(validation(
                "INVALID_ACCOUNT",
                "rateLimitPerSec and clearRateLimit are both given",
            ));
        }
        let rate_limit = if input.clear_rate_limit {
            Some(None)
        } else {
            input.rate_limit_per_sec.map(|rate| {
                Some(RateLimit {
                    per_sec: PerSecond(rate),
                    burst: input.rate_limit_burst,
                })
            })
        };
        let update = AccountUpdate {
            patch: AccountPatch {
                base_url: if input.clear_base_url {
                    Some(None)
                } else {
                    input.base_url.map(Some)
                },
                weight: input.weight,
                settings: input.settings.map(|s| pairs("settings", s)).transpose()?,
                timeout_secs: input.timeout_secs,
                rate_limit,
                secrets_set: Vec::new(),
                secrets_removed: input.remove_secrets,
            },
            secrets: pairs("secrets", input.secrets)?,
        };
        let updated = accounts::update(
            admin(ctx),
            &caller.tenant,
            &caller.key_id,
            &input.id,
            update,
            Utc::now(),
        )
        .await
        .map_err(errors::command)?;
        Ok(view(updated))
    }

    /// Takes an account out of dispatch: new messages go to the channel's other accounts; its
    /// receipts and recalls still work.
    async fn disable_channel_account(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: Option<String>,
    ) -> Result<ChannelAccount> {
        let caller = caller(ctx, Scope::Admin)?;
        let changed = accounts::set_enabled(
            admin(ctx),
            &caller.tenant,
            &caller.key_id,
            &id,
            false,
            reason,
            Utc::now(),
        )
        .await
        .map_err(errors::command)?;
        Ok(view(changed))
    }

    /// Puts a disabled account back into dispatch.
    async fn enable_channel_account(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> Result<ChannelAccount> {
        let caller = caller(ctx, Scope::Admin)?;
        let changed = accounts::set_enabled(
            admin(ctx),
            &caller.tenant,
            &caller.key_id,
            &id,
            true,
            None,
            Utc::now(),
        )
        .await
        .map_err(errors::command)?;
        Ok(view(changed))
    }
}
