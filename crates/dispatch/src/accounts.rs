//! Channel accounts: the configured supplier accounts, and which one a message goes through.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::{AccountSpec, Channel, MessageId, TenantId};
use serde::Deserialize;
use tokio::sync::{Notify, watch};

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
pub struct LiveAccounts {
    current: watch::Receiver<Accounts>,
    /// How to ask whoever publishes the set to look at the store now; none for a fixed set.
    asks: Option<Arc<Asks>>,
    /// Names the store was asked about lately and does not know (a template may name an
    /// account group rather than an account), with when: not asked again for [`UNKNOWN_FOR`].
    unknown: Arc<Mutex<HashMap<String, Instant>>>,
}

/// How long a name the store did not know is not asked about again.
const UNKNOWN_FOR: Duration = Duration::from_secs(1);

/// How long [`LiveAccounts::knowing`] waits for the store to be looked at.
const RELOAD_WAIT: Duration = Duration::from_secs(1);

impl LiveAccounts {
    /// Accounts that never change (tests, tools).
    pub fn fixed(accounts: Accounts) -> LiveAccounts {
        LiveAccounts {
            current: watch::channel(accounts).1,
            asks: None,
            unknown: Arc::default(),
        }
    }

    /// Follows the accounts a sender publishes; `asks` reach the task that publishes them.
    pub fn follow(receiver: watch::Receiver<Accounts>, asks: Arc<Asks>) -> LiveAccounts {
        LiveAccounts {
            current: receiver,
            asks: Some(asks),
            unknown: Arc::default(),
        }
    }

    pub fn current(&self) -> Accounts {
        self.current.borrow().clone()
    }

    /// The current set, for a message that names `id`. When this process has not heard of
    /// `id` (an account created at run time since the last poll, say), the store is looked at
    /// first (waiting at most a second), so that the message is not sent through another
    /// account of its channel meanwhile. A name the store did not know either (an account
    /// group) is not asked about again for a second.
    pub async fn knowing(&self, id: &str) -> Accounts {
        let current = self.current();
        let Some(asks) = &self.asks else {
            return current;
        };
        if current.find(id).is_some() || self.lately_unknown(id) {
            return current;
        }
        asks.ask(RELOAD_WAIT).await;
        let current = self.current();
        if current.find(id).is_none() {
            self.unknown
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.to_owned(), Instant::now());
        }
        current
    }

    fn lately_unknown(&self, id: &str) -> bool {
        let mut unknown = self.unknown.lock().unwrap_or_else(PoisonError::into_inner);
        unknown.retain(|_, at| at.elapsed() < UNKNOWN_FOR);
        unknown.contains_key(id)
    }

    /// Waits for the next change; `false` once no sender is left.
    pub async fn changed(&mut self) -> bool {
        self.current.changed().await.is_ok()
    }
}

/// Asks to look at the store now, between a task that follows it on a poll and the holders of
/// what it publishes. A holder's ask is answered by the first check that began after it; checks
/// are shared, so many asks at once cost one.
#[derive(Debug)]
pub struct Asks {
    /// Asks made so far.
    asked: AtomicU64,
    wake: Notify,
    /// The asks the latest finished check answered (every ask up to this number).
    answered: watch::Sender<u64>,
}

impl Default for Asks {
    fn default() -> Self {
        Asks {
            asked: AtomicU64::new(0),
            wake: Notify::new(),
            answered: watch::channel(0).0,
        }
    }
}

impl Asks {
    /// A holder: asks, and waits until a check begun after the ask has finished (at most
    /// `limit`).
    pub async fn ask(&self, limit: Duration) {
        let mine = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut answered = self.answered.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(limit, answered.wait_for(|&n| n >= mine)).await;
    }

    /// The follower: waits for `poll` to pass or for an ask, whichever comes first.
    pub async fn next(&self, poll: Duration) {
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = self.wake.notified() => {}
        }
    }

    /// The follower, as a check begins: the asks it will answer.
    pub fn begin(&self) -> u64 {
        self.asked.load(Ordering::SeqCst)
    }

    /// The follower, once the check begun at `begun` has finished (whatever it found) and
    /// what it loaded is published.
    pub fn answer(&self, begun: u64) {
        self.answered.send_if_modified(|n| {
            let moved = begun > *n;
            *n = (*n).max(begun);
            moved
        });
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

    /// A follower as the server runs one: a check on every poll or ask, publishing `next` at
    /// its first check; answers how many checks it made.
    fn follower(
        asks: Arc<Asks>,
        sender: watch::Sender<Accounts>,
        next: Accounts,
    ) -> Arc<AtomicU64> {
        let checks = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&checks);
        tokio::spawn(async move {
            loop {
                asks.next(Duration::from_secs(3_600)).await;
                let begun = asks.begin();
                counted.fetch_add(1, Ordering::SeqCst);
                sender.send_replace(next.clone());
                asks.answer(begun);
            }
        });
        checks
    }

    #[tokio::test]
    async fn an_unknown_account_is_looked_up_before_the_message_goes_elsewhere() {
        let tokens = Tokens::in_process();
        let before = Accounts::from_config(&[account("a", 1)], &tokens).expect("accounts");
        let after = Accounts::from_config(&[account("a", 1), account("new", 1)], &tokens)
            .expect("accounts");
        let (sender, receiver) = watch::channel(before);
        let asks = Arc::new(Asks::default());
        let live = LiveAccounts::follow(receiver, Arc::clone(&asks));
        let checks = follower(asks, sender, after);

        // A known account asks nothing.
        assert!(live.knowing("a").await.find("a").is_some());
        assert_eq!(checks.load(Ordering::SeqCst), 0);
        // An account created since the last poll is found at once, not after the hour's poll.
        let started = Instant::now();
        assert!(live.knowing("new").await.find("new").is_some());
        assert!(started.elapsed() < RELOAD_WAIT, "{:?}", started.elapsed());
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        // A name the store does not know either (a group) is asked about once a second only.
        assert!(live.knowing("group").await.find("group").is_none());
        assert_eq!(checks.load(Ordering::SeqCst), 2);
        assert!(live.knowing("group").await.find("group").is_none());
        assert_eq!(checks.load(Ordering::SeqCst), 2);
        // A fixed set never asks.
        let fixed = LiveAccounts::fixed(live.current());
        assert!(fixed.knowing("other").await.find("other").is_none());
    }

    #[tokio::test]
    async fn an_ask_is_answered_by_a_check_begun_after_it() {
        let asks = Arc::new(Asks::default());
        // A check begins; then a holder asks.
        let earlier = asks.begin();
        let waiter = tokio::spawn({
            let asks = Arc::clone(&asks);
            async move { asks.ask(Duration::from_secs(30)).await }
        });
        while asks.begin() == earlier {
            tokio::task::yield_now().await;
        }
        // The check that began before the ask may have missed what the holder wants to see.
        asks.answer(earlier);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        // The next one answers it.
        let started = Instant::now();
        asks.answer(asks.begin());
        waiter.await.expect("the waiter");
        assert!(started.elapsed() < Duration::from_secs(1));
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
