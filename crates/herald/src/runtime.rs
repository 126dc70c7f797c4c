//! Run-time channel accounts, wired: the catalog the account commands ask (dispatch knows the
//! suppliers, and makes declarative suppliers' dry runs), and the watcher that keeps every
//! process's accounts, and the declarative suppliers they use, up to date.
//!
//! Each process reads a fingerprint of the run-time accounts from the store every
//! `runtime.poll_ms` (one read of a small table) and, when it moved, loads the accounts again,
//! opens their secrets and swaps the whole set in. The store carries the change, so it reaches
//! every process on both backends, Redis or not, within one interval.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use commands::accounts::{AccountCatalog, ConfiguredAccount, LiveAccount};
use commands::secrets::Keyring;
use dispatch::accounts::{AccountConfig, Accounts, Asks, LiveAccounts};
use dispatch::live_policy::{LivePolicies, PolicyTable};
use dispatch::tokens::Tokens;
use domain::http_supplier::{DryRunReport, DryRunRequest, HttpSupplierSpec};
use domain::{AccountSpec, TenantId};
use store::Store;
use tokio::sync::watch;

/// How long a dry run's call may take.
const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's side of [`AccountCatalog`].
pub struct Catalog {
    /// The configuration file's accounts, credentials resolved.
    pub configured: Vec<AccountConfig>,
}

impl AccountCatalog for Catalog {
    fn check(
        &self,
        account_id: &str,
        spec: &AccountSpec,
        secrets: &BTreeMap<String, String>,
        http_supplier: Option<Arc<HttpSupplierSpec>>,
    ) -> Result<(), String> {
        // Building the supplier checks what it needs, and makes no request: suppliers that
        // sign in fetch their token on the first send.
        let mut config = AccountConfig::from_spec(account_id, spec, secrets);
        config.http_supplier = http_supplier;
        dispatch::accounts::build(&config, None, &Tokens::pending())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn dry_run<'a>(
        &'a self,
        tenant: &'a TenantId,
        spec: &'a HttpSupplierSpec,
        request: DryRunRequest,
    ) -> Pin<Box<dyn Future<Output = DryRunReport> + Send + 'a>> {
        Box::pin(dispatch::declarative::dry_run(
            spec,
            tenant,
            request,
            DRY_RUN_TIMEOUT,
        ))
    }

    fn configured(&self) -> Vec<ConfiguredAccount> {
        self.configured
            .iter()
            .map(|c| ConfiguredAccount {
                account_id: c.id.clone(),
                spec: c.spec(),
                secrets: c.credentials.keys().cloned().collect(),
            })
            .collect()
    }
}

/// The run-time accounts' configurations, each `http:{name}` account with its tenant's
/// definition (left without one when it is gone, so building it says so).
fn runtime_configs(
    live: Vec<LiveAccount>,
    definitions: &BTreeMap<(TenantId, String), Arc<HttpSupplierSpec>>,
) -> Vec<(AccountConfig, TenantId, bool)> {
    live.into_iter()
        .map(|a| {
            let mut config = AccountConfig::from_spec(&a.account_id, &a.spec, &a.secrets);
            if let Some(name) = a
                .spec
                .supplier
                .strip_prefix(domain::http_supplier::ACCOUNT_PREFIX)
            {
                config.http_supplier = definitions
                    .get(&(a.tenant.clone(), name.to_owned()))
                    .cloned();
            }
            (config, a.tenant, a.enabled)
        })
        .collect()
}

/// The configuration file's accounts with the store's run-time accounts beside them.
async fn load(
    store: &Store,
    base: &Accounts,
    keyring: &Keyring,
    tokens: &Tokens,
) -> anyhow::Result<Accounts> {
    let (live, broken) = commands::accounts::load_all(store, keyring)
        .await
        .map_err(|e| anyhow::anyhow!("loading the run-time channel accounts: {e}"))?;
    for (account, error) in broken {
        tracing::error!(%account, %error, "a run-time channel account cannot be opened; it is left out");
    }
    let definitions = commands::http_suppliers::load_all(store)
        .await
        .map_err(|e| anyhow::anyhow!("loading the declarative HTTP suppliers: {e}"))?;
    let (accounts, errors) =
        Accounts::with_runtime(base, runtime_configs(live, &definitions), tokens);
    for error in errors {
        tracing::error!(%error, "a run-time channel account cannot be built; it is left out");
    }
    Ok(accounts)
}

/// What [`start`] sets up for a process.
pub struct Runtime {
    pub accounts: LiveAccounts,
    /// Tenants' and templates' live policy; the dispatch options carry it.
    pub policies: LivePolicies,
    /// The suppliers' access tokens; dispatch connects them to its cache.
    pub tokens: Tokens,
    pub keyring: Keyring,
    /// The configuration file's accounts, credentials resolved.
    pub configured: Vec<AccountConfig>,
}

/// The channel accounts of `config` and of the store, and the live policy, followed every
/// `runtime.poll_ms`.
pub async fn start(store: &Store, config: &crate::config::Config) -> anyhow::Result<Runtime> {
    use anyhow::Context;
    let keyring = config
        .security
        .keyring()
        .context("reading security.secret_key")?;
    let configured = crate::roles::resolve(&config.accounts)?;
    let tokens = Tokens::pending();
    let base = Accounts::from_config(&configured, &tokens).context("configuring accounts")?;
    let poll = Duration::from_millis(config.runtime.poll_ms.max(50));
    let accounts =
        watch_accounts(store.clone(), base, keyring.clone(), tokens.clone(), poll).await?;
    let policies = watch_policies(store.clone(), poll).await?;
    Ok(Runtime {
        accounts,
        policies,
        tokens,
        keyring,
        configured,
    })
}

/// Loads the accounts and starts following the store: the returned handle always holds the
/// current set. The watcher ends when every handle is dropped.
pub async fn watch_accounts(
    store: Store,
    base: Accounts,
    keyring: Keyring,
    tokens: Tokens,
    poll: Duration,
) -> anyhow::Result<LiveAccounts> {
    let asks = Arc::new(Asks::default());
    let receiver = follow(
        store,
        poll,
        Arc::clone(&asks),
        "the run-time channel accounts",
        // A changed definition changes the accounts that use it.
        |store| async move {
            Ok((
                commands::accounts::fingerprint(&store).await?,
                commands::http_suppliers::fingerprint(&store).await?,
            ))
        },
        move |store| {
            let (base, keyring, tokens) = (base.clone(), keyring.clone(), tokens.clone());
            async move { load(&store, &base, &keyring, &tokens).await }
        },
    )
    .await?;
    Ok(LiveAccounts::follow(receiver, asks))
}

/// Loads `what` and reloads it whenever its fingerprint in the store moves, checked every
/// `poll` and whenever `asks` asks; a failed check or load is logged and the current value
/// kept. Ends when every receiver is dropped.
async fn follow<T, P, F, FFut, L, LFut>(
    store: Store,
    poll: Duration,
    asks: Arc<Asks>,
    what: &'static str,
    fingerprint: F,
    load: L,
) -> anyhow::Result<watch::Receiver<T>>
where
    T: Send + Sync + 'static,
    P: PartialEq + Send + 'static,
    F: Fn(Store) -> FFut + Send + Sync + 'static,
    FFut: Future<Output = Result<P, commands::CommandError>> + Send,
    L: Fn(Store) -> LFut + Send + Sync + 'static,
    LFut: Future<Output = anyhow::Result<T>> + Send,
{
    let mut seen = fingerprint(store.clone())
        .await
        .map_err(|e| anyhow::anyhow!("reading {what}: {e}"))?;
    let (sender, receiver) = watch::channel(load(store.clone()).await?);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = sender.closed() => return,
                () = asks.next(poll) => {}
            }
            let begun = asks.begin();
            match fingerprint(store.clone()).await {
                Ok(now) if now == seen => {}
                Ok(now) => match load(store.clone()).await {
                    Ok(value) => {
                        seen = now;
                        tracing::info!("{what} reloaded");
                        sender.send_replace(value);
                    }
                    Err(error) => tracing::warn!(%error, "reloading {what} failed"),
                },
                Err(error) => tracing::warn!(%error, "checking {what} failed"),
            }
            asks.answer(begun);
        }
    });
    Ok(receiver)
}

async fn load_policies(store: &Store) -> anyhow::Result<PolicyTable> {
    let scopes = commands::policies::load_all(store)
        .await
        .map_err(|e| anyhow::anyhow!("loading the live policy: {e}"))?;
    let (table, errors) = PolicyTable::new(scopes);
    for (scope, error) in errors {
        tracing::error!(stream = %scope.stream_name(), %error, "a policy cannot be applied; it is left out");
    }
    Ok(table)
}

/// Loads the live policy and follows the store, like [`watch_accounts`].
pub async fn watch_policies(store: Store, poll: Duration) -> anyhow::Result<LivePolicies> {
    let receiver = follow(
        store,
        poll,
        // No one asks: the policy applies from the next poll.
        Arc::new(Asks::default()),
        "the live policy",
        |store| async move { commands::policies::fingerprint(&store).await },
        |store| async move { load_policies(&store).await },
    )
    .await?;
    Ok(LivePolicies::follow(receiver))
}
