//! Channel accounts: the configured supplier accounts, and which one a message goes through.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use domain::{AccountSpec, Channel, MessageId, TenantId};
use serde::Deserialize;
use tokio::sync::watch;

use crate::aliyun::AliyunSmsSupplier;
use crate::declarative::HttpSupplier;
use crate::dingtalk::{DingtalkRobot, DingtalkWork};
use crate::email::EmailSupplier;
use crate::feishu::FeishuRobot;
use crate::getui::GeTui;
use crate::inbox::InboxSupplier;
use crate::supplier::Supplier;
use crate::tencent::TencentSms;
use crate::tokens::Tokens;
use crate::webhook::WebhookSupplier;
use crate::wechat::mini_program::MiniProgram;
use crate::wechat::official::WechatOfficial;
use crate::wecom::{WecomApp, WecomRobot};

/// One `[[accounts]]` entry of the configuration.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: String,
    pub channel: Channel,
    /// `webhook`, `inbox`, `smtp`, `tencent_sms`, `aliyun_sms`, `dingtalk_robot`, `dingtalk_work`,
    /// `wecom_robot`, `wecom_app`, `feishu_robot`, `wechat_official`, `mini_program`, `getui`, or
    /// `http:{name}` for a tenant's declarative HTTP supplier.
    pub supplier: String,
    /// The supplier's API address, for a private endpoint or a test double (absent: the
    /// supplier's public address).
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default = "one")]
    pub weight: u32,
    /// Supplier settings that are not secret, by name (a sender address, an app id, a region).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Supplier credentials by name, such as `secret` for `webhook`. Never logged.
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// Seconds a supplier call may take.
    #[serde(default = "ten")]
    pub timeout_secs: u64,
    /// Sends per second through this account, shared by every worker and process (absent: no limit).
    #[serde(default)]
    pub rate_limit_per_sec: Option<f64>,
    /// Sends at once before the rate applies (default: one second's worth).
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    /// The definition an `http:{name}` supplier names, loaded from the store beside the
    /// account (never from the configuration file).
    #[serde(skip)]
    pub http_supplier: Option<Arc<domain::http_supplier::HttpSupplierSpec>>,
}

fn one() -> u32 {
    1
}

fn ten() -> u64 {
    10
}

impl AccountConfig {
    /// The configuration of a run-time account: its spec and its opened secrets.
    pub fn from_spec(id: &str, spec: &AccountSpec, secrets: &BTreeMap<String, String>) -> Self {
        AccountConfig {
            id: id.to_owned(),
            channel: spec.channel,
            supplier: spec.supplier.clone(),
            base_url: spec.base_url.clone(),
            weight: spec.weight,
            settings: spec.settings.clone(),
            credentials: secrets.clone(),
            timeout_secs: spec.timeout_secs,
            rate_limit_per_sec: spec.rate_limit.map(|l| l.per_sec.0),
            rate_limit_burst: spec.rate_limit.and_then(|l| l.burst),
            http_supplier: None,
        }
    }

    /// The spec the API shows for a configured account (its credentials by name only).
    pub fn spec(&self) -> AccountSpec {
        AccountSpec {
            channel: self.channel,
            supplier: self.supplier.clone(),
            base_url: self.base_url.clone(),
            weight: self.weight,
            settings: self.settings.clone(),
            timeout_secs: self.timeout_secs,
            rate_limit: self
                .rate_limit_per_sec
                .map(|rate| domain::channel_account::RateLimit {
                    per_sec: domain::channel_account::PerSecond(rate),
                    burst: self.rate_limit_burst,
                }),
        }
    }

    /// A credential the supplier needs.
    pub fn credential(&self, name: &'static str) -> Result<&str, AccountError> {
        self.credentials
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| AccountError::MissingCredential {
                id: self.id.clone(),
                name,
            })
    }

    /// A setting the supplier needs.
    pub fn setting(&self, name: &'static str) -> Result<&str, AccountError> {
        self.settings
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| AccountError::MissingSetting {
                id: self.id.clone(),
                name,
            })
    }

    /// How long one supplier call may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    /// The configured base URL, or the supplier's public one.
    pub fn base_url_or(&self, default: &str) -> String {
        self.base_url
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    }

    /// An error building this account's client.
    pub fn client_error(&self, error: impl std::fmt::Display) -> AccountError {
        AccountError::Client {
            id: self.id.clone(),
            message: error.to_string(),
        }
    }
}

/// The supplier an account names, built from its configuration.
fn build_supplier(
    config: &AccountConfig,
    tokens: &Tokens,
) -> Result<Arc<dyn Supplier>, AccountError> {
    Ok(match config.supplier.as_str() {
        "webhook" => {
            let secret = config.credential("secret")?;
            Arc::new(
                WebhookSupplier::new(secret.as_bytes().to_vec(), config.timeout())
                    .map_err(|e| config.client_error(e))?,
            )
        }
        "inbox" => Arc::new(InboxSupplier),
        "tencent_sms" => Arc::new(TencentSms::from_account(config)?),
        "aliyun_sms" => Arc::new(AliyunSmsSupplier::from_account(config)?),
        "smtp" => Arc::new(EmailSupplier::from_account(config)?),
        "dingtalk_robot" => Arc::new(DingtalkRobot::from_account(config)?),
        "dingtalk_work" => Arc::new(DingtalkWork::from_account(config, tokens)?),
        "getui" => Arc::new(GeTui::from_account(config, tokens)?),
        "wecom_robot" => Arc::new(WecomRobot::from_account(config)?),
        "wecom_app" => Arc::new(WecomApp::from_account(config, tokens)?),
        "feishu_robot" => Arc::new(FeishuRobot::from_account(config)?),
        "wechat_official" => Arc::new(WechatOfficial::from_account(config, tokens)?),
        "mini_program" => Arc::new(MiniProgram::from_account(config, tokens)?),
        name if name.starts_with(domain::http_supplier::ACCOUNT_PREFIX) => {
            Arc::new(HttpSupplier::from_account(config)?)
        }
        other => {
            return Err(AccountError::UnknownSupplier {
                id: config.id.clone(),
                supplier: other.to_owned(),
            });
        }
    })
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are secrets: show their names only.
        f.debug_struct("AccountConfig")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("supplier", &self.supplier)
            .field("base_url", &self.base_url)
            .field("settings", &self.settings)
            .field("weight", &self.weight)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Clone)]
pub struct Account {
    pub id: String,
    /// The tenant whose templates may use it; `None` (the configuration file's accounts): every tenant.
    pub tenant: Option<TenantId>,
    /// A disabled account takes no new messages, but its receipts, callbacks and recalls
    /// still work for what it sent.
    pub enabled: bool,
    pub channel: Channel,
    pub weight: u32,
    pub supplier: Arc<dyn Supplier>,
    /// `(per second, burst)`.
    pub rate_limit: Option<(f64, u32)>,
}

/// Every account, and the built-in inbox.
#[derive(Clone)]
pub struct Accounts {
    accounts: Arc<Vec<Account>>,
}

/// The accounts as they are now: the configuration file's and the run-time ones, replaced as a
/// whole when an admin changes one. Long-running tasks hold this and take [`current`] for each
/// unit of work, so a change applies from the next message on and never in the middle of one.
///
/// [`current`]: LiveAccounts::current
#[derive(Clone)]
pub struct LiveAccounts(watch::Receiver<Accounts>);

impl LiveAccounts {
    /// Accounts that never change (tests, tools).
    pub fn fixed(accounts: Accounts) -> LiveAccounts {
        LiveAccounts(watch::channel(accounts).1)
    }

    /// Follows the accounts a sender publishes.
    pub fn follow(receiver: watch::Receiver<Accounts>) -> LiveAccounts {
        LiveAccounts(receiver)
    }

    pub fn current(&self) -> Accounts {
        self.0.borrow().clone()
    }

    /// Waits for the next change; `false` once no sender is left.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account {id}: unknown supplier {supplier:?}")]
    UnknownSupplier { id: String, supplier: String },
    #[error("account {id}: supplier {supplier} cannot send on {channel}")]
    WrongChannel {
        id: String,
        supplier: String,
        channel: Channel,
    },
    #[error("account {id}: missing credential {name:?}")]
    MissingCredential { id: String, name: &'static str },
    #[error("account {id}: missing setting {name:?}")]
    MissingSetting { id: String, name: &'static str },
    #[error("account {0} is configured twice")]
    Duplicate(String),
    #[error("account {id}: {message}")]
    Client { id: String, message: String },
}

/// One account built from its configuration: the supplier, checked against the channel.
pub fn build(
    config: &AccountConfig,
    tenant: Option<TenantId>,
    tokens: &Tokens,
) -> Result<Account, AccountError> {
    let supplier = build_supplier(config, tokens)?;
    if !supplier.supports(config.channel) {
        return Err(AccountError::WrongChannel {
            id: config.id.clone(),
            supplier: config.supplier.clone(),
            channel: config.channel,
        });
    }
    let rate_limit = match config.rate_limit_per_sec {
        Some(rate) if rate.is_finite() && rate > 0.0 => {
            let burst = config
                .rate_limit_burst
                .unwrap_or_else(|| rate.ceil().max(1.0) as u32);
            Some((rate, burst.max(1)))
        }
        Some(rate) => {
            return Err(AccountError::Client {
                id: config.id.clone(),
                message: format!("rate_limit_per_sec must be above 0, not {rate}"),
            });
        }
        None => None,
    };
    Ok(Account {
        id: config.id.clone(),
        tenant,
        enabled: true,
        channel: config.channel,
        weight: config.weight,
        supplier,
        rate_limit,
    })
}

impl Accounts {
    /// Builds the suppliers. The in-app inbox needs no supplier account, so it is always there.
    /// Suppliers that sign in with an access token share theirs through `tokens`.
    pub fn from_config(
        configs: &[AccountConfig],
        tokens: &Tokens,
    ) -> Result<Accounts, AccountError> {
        let mut accounts: Vec<Account> = Vec::with_capacity(configs.len() + 1);
        for config in configs {
            if accounts.iter().any(|a| a.id == config.id) {
                return Err(AccountError::Duplicate(config.id.clone()));
            }
            accounts.push(build(config, None, tokens)?);
        }
        Ok(Accounts::with_inbox(accounts))
    }

    /// The configuration file's accounts (`base`) and beside them run-time accounts, each
    /// owned by a tenant. A run-time account that cannot be built is left out and returned with
    /// its error, so one bad account does not stop the rest.
    pub fn with_runtime(
        base: &Accounts,
        runtime: Vec<(AccountConfig, TenantId, bool)>,
        tokens: &Tokens,
    ) -> (Accounts, Vec<AccountError>) {
        let mut accounts: Vec<Account> = base.accounts.iter().map(Account::clone).collect();
        let mut errors = Vec::new();
        for (config, tenant, enabled) in runtime {
            if accounts.iter().any(|a| a.id == config.id) {
                errors.push(AccountError::Duplicate(config.id.clone()));
                continue;
            }
            match build(&config, Some(tenant), tokens) {
                Ok(account) => accounts.push(Account { enabled, ..account }),
                Err(error) => errors.push(error),
            }
        }
        (Accounts::with_inbox(accounts), errors)
    }

    fn with_inbox(mut accounts: Vec<Account>) -> Accounts {
        if !accounts.iter().any(|a| a.channel == Channel::Inbox) {
            accounts.push(Account {
                id: "inbox".to_owned(),
                tenant: None,
                enabled: true,
                channel: Channel::Inbox,
                weight: 1,
                supplier: Arc::new(InboxSupplier),
                rate_limit: None,
            });
        }
        Accounts {
            accounts: Arc::new(accounts),
        }
    }

    /// The channels some account can send on: only their lanes get workers, so messages for a
    /// channel with no account wait in the queue until one is configured, rather than fail.
    pub fn channels(&self) -> Vec<Channel> {
        let mut channels: Vec<Channel> = self.accounts.iter().map(|a| a.channel).collect();
        channels.sort_by_key(|c| c.as_str());
        channels.dedup();
        channels
    }

    /// Every account, the built-in inbox included.
    pub fn all(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter()
    }

    /// The account with this id, if it is still configured.
    pub fn find(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// The account a template names, when it serves the channel; otherwise one of the channel's
    /// accounts chosen by weight. The choice is a function of the message id, so a message
    /// redelivered after a crash goes to the same account, and traffic splits by weight.
    pub fn pick(
        &self,
        channel: Channel,
        named: &str,
        tenant: &TenantId,
        message: MessageId,
    ) -> Option<&Account> {
        self.candidates(channel, named, tenant, message, |_| false)
            .into_iter()
            .next()
    }

    /// The channel's accounts in the order a message tries them, leaving out those `skip`
    /// names (accounts it has used up) and other tenants' accounts: first the one [`pick`](Self::pick) would choose among
    /// the rest, then the others in configuration order. Failover walks this list.
    pub fn candidates(
        &self,
        channel: Channel,
        named: &str,
        tenant: &TenantId,
        message: MessageId,
        skip: impl Fn(&str) -> bool,
    ) -> Vec<&Account> {
        let serving: Vec<&Account> = self
            .accounts
            .iter()
            .filter(|a| {
                a.channel == channel
                    && a.enabled
                    && a.weight > 0
                    && a.tenant.as_ref().is_none_or(|t| t == tenant)
                    && !skip(&a.id)
            })
            .collect();
        let first = match serving.iter().position(|a| a.id == named) {
            Some(index) => index,
            None => {
                let total: u64 = serving.iter().map(|a| u64::from(a.weight)).sum();
                if total == 0 {
                    return Vec::new();
                }
                // The low bits of a UUID v7 are random, so they spread evenly over the weights.
                let mut point = (message.as_uuid().as_u128() as u64) % total;
                serving
                    .iter()
                    .position(|a| {
                        let weight = u64::from(a.weight);
                        if point < weight {
                            true
                        } else {
                            point -= weight;
                            false
                        }
                    })
                    .unwrap_or(0)
            }
        };
        let mut ordered = Vec::with_capacity(serving.len());
        ordered.push(serving[first]);
        ordered.extend(
            serving
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != first)
                .map(|(_, a)| *a),
        );
        ordered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("acme").expect("a tenant id")
    }

    fn account(id: &str, weight: u32) -> AccountConfig {
        let mut credentials = BTreeMap::new();
        credentials.insert("secret".to_owned(), "s".to_owned());
        AccountConfig {
            id: id.to_owned(),
            channel: Channel::Webhook,
            supplier: "webhook".to_owned(),
            base_url: None,
            settings: BTreeMap::new(),
            weight,
            credentials,
            timeout_secs: 1,
            rate_limit_per_sec: None,
            rate_limit_burst: None,
            http_supplier: None,
        }
    }

    #[test]
    fn traffic_splits_by_weight_and_a_message_always_picks_the_same_account() {
        let accounts =
            Accounts::from_config(&[account("a", 1), account("b", 3)], &Tokens::in_process())
                .expect("accounts");
        let mut to_b = 0;
        for _ in 0..10_000 {
            let message = MessageId::generate();
            let picked = accounts
                .pick(Channel::Webhook, "group", &tenant(), message)
                .expect("an account")
                .id
                .clone();
            assert_eq!(
                accounts
                    .pick(Channel::Webhook, "group", &tenant(), message)
                    .expect("again")
                    .id,
                picked
            );
            to_b += usize::from(picked == "b");
        }
        assert!(
            (7_000..8_000).contains(&to_b),
            "about three quarters to b: {to_b}"
        );
        // A named account is used as named.
        assert_eq!(
            accounts
                .pick(Channel::Webhook, "a", &tenant(), MessageId::generate())
                .expect("a")
                .id,
            "a"
        );
        // The inbox is always there; a channel with no account has none.
        assert!(
            accounts
                .pick(Channel::Inbox, "", &tenant(), MessageId::generate())
                .is_some()
        );
        assert!(
            accounts
                .pick(Channel::Sms, "", &tenant(), MessageId::generate())
                .is_none()
        );
    }

    #[test]
    fn failover_tries_the_other_accounts_after_the_chosen_one() {
        let accounts = Accounts::from_config(
            &[account("a", 1), account("b", 1), account("c", 1)],
            &Tokens::in_process(),
        )
        .expect("accounts");
        let ids = |skip: &[&str]| {
            accounts
                .candidates(
                    Channel::Webhook,
                    "b",
                    &tenant(),
                    MessageId::generate(),
                    |id| skip.contains(&id),
                )
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(ids(&[]), "b,a,c");
        // Without the named account, the weighted choice among the rest comes first.
        assert!(matches!(ids(&["b"]).as_str(), "a,c" | "c,a"));
        assert_eq!(ids(&["a", "b", "c"]), "");
    }

    #[test]
    fn a_tenants_runtime_account_serves_only_that_tenant_and_not_once_disabled() {
        let tokens = Tokens::in_process();
        let base = Accounts::from_config(&[account("shared", 1)], &tokens).expect("accounts");
        let beta = TenantId::parse("beta").expect("a tenant id");
        let (accounts, errors) = Accounts::with_runtime(
            &base,
            vec![
                (account("acme-own", 1000), tenant(), true),
                (account("acme-off", 1000), tenant(), false),
                (account("shared", 1), beta.clone(), true),
            ],
            &tokens,
        );
        assert!(matches!(errors.as_slice(), [AccountError::Duplicate(id)] if id == "shared"));
        let ids = |tenant: &TenantId, named: &str| {
            accounts
                .candidates(
                    Channel::Webhook,
                    named,
                    tenant,
                    MessageId::generate(),
                    |_| false,
                )
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(ids(&tenant(), "acme-own"), "acme-own,shared");
        assert_eq!(ids(&beta, "acme-own"), "shared");
        // Disabled: never a candidate, but still found for its receipts and recalls.
        assert_eq!(ids(&tenant(), "acme-off"), "acme-own,shared");
        assert!(accounts.find("acme-off").is_some_and(|a| !a.enabled));
    }

    #[test]
    fn bad_accounts_are_refused_with_the_reason() {
        let mut wrong = account("x", 1);
        wrong.channel = Channel::Sms;
        assert!(matches!(
            Accounts::from_config(&[wrong], &Tokens::in_process()),
            Err(AccountError::WrongChannel { .. })
        ));
        let mut no_secret = account("x", 1);
        no_secret.credentials.clear();
        assert!(matches!(
            Accounts::from_config(&[no_secret], &Tokens::in_process()),
            Err(AccountError::MissingCredential { .. })
        ));
        assert!(matches!(
            Accounts::from_config(&[account("x", 1), account("x", 1)], &Tokens::in_process()),
            Err(AccountError::Duplicate(_))
        ));
        let mut unknown = account("x", 1);
        unknown.supplier = "carrier-pigeon".to_owned();
        assert!(matches!(
            Accounts::from_config(&[unknown], &Tokens::in_process()),
            Err(AccountError::UnknownSupplier { .. })
        ));
    }
}
