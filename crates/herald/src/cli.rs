//! The command line: `herald serve`, `herald migrate`, the administration of tenants and API
//! keys (`herald tenant`, `herald apikey`), the operator's tools on the read models
//! (`herald reconcile`, `herald replay`, `herald trace`, `herald crowd status`), and moving a
//! store (`herald export`, `herald import`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use commands::keys::{self, Scopes};
use domain::TenantId;

use crate::config::Config;
use crate::reconcile::{self, Format};
use crate::server::{self, AppState};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: one API to send and trace messages on every channel"
)]
pub struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The store: `sqlite://FILE` (default `sqlite://herald.db`) or `postgres://…`.
    /// Overrides `HERALD_DATABASE_URL` and the file.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the server: every role in one process, or the roles named.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// What this process does, a comma list: `api` (the GraphQL API, callbacks and
        /// clicks), `dispatch` (the workers that send), `projections` (the read views), or
        /// `all`. Every role serves `/healthz` and `/readyz`.
        #[arg(
            long,
            env = "HERALD_ROLE",
            value_delimiter = ',',
            default_value = "all"
        )]
        role: Vec<Role>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Measure accept, dispatch, trace and replay rates; prints one JSON object.
    Bench(crate::bench::BenchArgs),
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Compare what a channel account dispatched on a day with the supplier's bill.
    /// Exits 0 within the tolerance, 1 when the gap is flagged, 2 on an error.
    Reconcile {
        /// The channel account, as configured (`accounts[].id`).
        #[arg(long)]
        account: String,
        /// The day, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// The time zone of the day, as an offset (the supplier's billing zone, e.g. +08:00).
        #[arg(long, default_value = "+00:00", allow_hyphen_values = true)]
        zone: String,
        /// The supplier's bill: a CSV file with a header row (see the README for its shapes).
        #[arg(long)]
        bill: Option<PathBuf>,
        /// The gap, in percent, beyond which the day is flagged.
        #[arg(long, default_value_t = 2.0)]
        tolerance: f64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Rebuild projections from the event log into shadow tables and swap them in; a running
    /// server keeps serving the old tables until the swap. Calls no supplier.
    Replay {
        /// The projection to rebuild (`trace`...).
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        projection: Option<String>,
        /// Rebuild every projection, reading the log once for all of them.
        #[arg(long)]
        all: bool,
        /// Events applied per transaction.
        #[arg(long, default_value_t = 5_000)]
        batch_size: usize,
    },
    /// Write the whole store to one NDJSON file: tenants, API keys (hashes), the template
    /// index, settings (the link-signing key) and every event in log order. An export that was
    /// interrupted resumes when run again with the same --out.
    Export {
        /// The file to write (or to finish, after an interrupted export).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Events read from the log per batch.
        #[arg(long, default_value_t = 1_000)]
        batch_size: usize,
    },
    /// Load an export into a store without events, then rebuild the dispatch queue, the
    /// supplier ids and every projection from the imported log.
    Import {
        /// The file `herald export` wrote.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Events inserted per transaction.
        #[arg(long, default_value_t = 1_000)]
        batch_size: usize,
    },
    /// Show a message: its status, where it went and its timeline, from the trace projection.
    Trace {
        /// The message id.
        message_id: String,
        /// Look only among this tenant's messages (by default every tenant's).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Crowd sends.
    Crowd {
        #[command(subcommand)]
        command: CrowdCommand,
    },
    /// The keys that seal the channel accounts' secrets (`HERALD_SECRET_KEY`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Print a new random key (32 bytes, base64) for HERALD_SECRET_KEY.
    Generate,
    /// Seal every stored secret again under HERALD_SECRET_KEY, opening the old ones with
    /// HERALD_SECRET_KEY_PREVIOUS: all in one transaction, so all move or none.
    Rotate,
}

/// A failure that ends the process with its own exit status; `message` (if any) is printed as
/// the one line of error, like any other.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(message) => f.write_str(message),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// A part of Herald a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    All,
    Api,
    Dispatch,
    Projections,
}

/// Whether `roles` include `role`.
pub fn runs(roles: &[Role], role: Role) -> bool {
    roles.iter().any(|r| *r == role || *r == Role::All)
}

#[derive(Debug, Clone, Subcommand)]
pub enum CrowdCommand {
    /// Show a crowd send's schedule and the progress of its current (or last) run.
    /// Exits 2 when the id is malformed or there is no such crowd send.
    Status {
        /// The crowd send id.
        id: String,
        /// Redraw every second until the send is finished, cancelled or its run failed.
        #[arg(long)]
        watch: bool,
        /// Print one JSON object instead of the table (with --watch, one line per change).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// The tenant id: lowercase letters, digits, `-` and `_`, at most 64 characters.
        name: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ApikeyCommand {
    /// Create an API key and print it, once, as the only line of standard output.
    Create {
        /// The tenant the key acts for.
        #[arg(long)]
        tenant: String,
        /// What the key may do: a comma list of send, recall, read and admin.
        #[arg(long)]
        scopes: String,
        /// A note on what the key is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke an API key; requests with it fail from then on.
    Revoke {
        /// The key id: the part between `hk_` and the second `_`.
        key_id: String,
    },
}

impl Cli {
    /// The configuration with every layer applied, flags last.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), |name| std::env::var(name).ok())?;
        if let Some(url) = &self.database_url {
            config.database.url = url.clone();
        }
        if let Command::Serve {
            listen: Some(listen),
            ..
        } = &self.command
        {
            config.listen = *listen;
        }
        config.validate()?;
        Ok(config)
    }
}

pub async fn run(cli: Cli, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    match cli.command.clone() {
        Command::Serve { role, .. } => {
            let mut config = config;
            if !runs(&role, Role::Dispatch) {
                config.dispatch.enabled = false;
            }
            let state = AppState::connect(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            let mut options = crate::roles::dispatch_options(&config)?;
            options.policies = state.policies.clone();
            let (sender, options) = tokio::sync::watch::channel(options);
            let mut dispatch = crate::roles::start_dispatch(
                &state.store,
                &config,
                &state.accounts,
                &state.tokens,
                options,
                &shutdown,
            )?;
            let mut crowds = crate::roles::start_crowds(&state, &config, &shutdown)?;
            let mut alerts = crate::alerts::start(&state.store, &config, &shutdown)?;
            let reload = cli.clone();
            tokio::spawn(crate::roles::watch_config(
                cli.config.clone(),
                move || reload.config(),
                config.clone(),
                sender,
                shutdown.clone(),
            ));
            let mut projections = if runs(&role, Role::Projections) {
                crate::roles::start_projections(&state.store, &state.bus, &shutdown)
            } else {
                tokio::task::JoinSet::new()
            };
            tracing::info!(roles = ?role, "roles");
            let served = server::run(listener, state, shutdown.clone()).await;
            // The server stops on `shutdown`; so do the workers, once their messages in
            // flight have their outcomes (their leases cover anything cut short).
            shutdown.cancel();
            let drained = async {
                while dispatch.join_next().await.is_some() {}
                while crowds.join_next().await.is_some() {}
                while alerts.join_next().await.is_some() {}
                while projections.join_next().await.is_some() {}
            };
            if tokio::time::timeout(std::time::Duration::from_secs(30), drained)
                .await
                .is_err()
            {
                tracing::warn!("dispatch workers still busy after 30s; their leases will expire");
            }
            served
        }
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!(
                "migrations applied to {} ({})",
                store::redact(&config.database.url),
                store.backend()
            );
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Create { name },
        } => {
            let tenant = TenantId::parse(&name)?;
            let store = open_store(&config).await?;
            keys::create_tenant(&store, &tenant)
                .await
                .context("creating the tenant")?;
            println!("tenant {tenant} created");
            Ok(())
        }
        Command::Apikey {
            command:
                ApikeyCommand::Create {
                    tenant,
                    scopes,
                    label,
                },
        } => {
            let tenant = TenantId::parse(&tenant)?;
            let scopes = Scopes::parse(&scopes)?;
            let store = open_store(&config).await?;
            let new = keys::create_api_key(&store, &tenant, &scopes, &label)
                .await
                .context("creating the API key")?;
            // The key alone on stdout lets a script capture it: `KEY=$(herald apikey create …)`.
            println!("{}", new.key);
            eprintln!(
                "API key {} created for tenant {tenant} with scopes {scopes}; \
                 store it now, it will not be shown again",
                new.key_id
            );
            Ok(())
        }
        Command::Reconcile {
            account,
            date,
            zone,
            bill,
            tolerance,
            format,
        } => {
            // Like diff: 0 the same within the tolerance, 1 flagged, 2 trouble.
            let report = async {
                let date =
                    chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").with_context(|| {
                        format!("--date must be a day like 2024-05-01, not {date:?}")
                    })?;
                let zone: chrono::FixedOffset = zone.parse().with_context(|| {
                    format!("--zone must be an offset like +08:00, not {zone:?}")
                })?;
                if !(tolerance.is_finite() && tolerance >= 0.0) {
                    anyhow::bail!("--tolerance must be a percentage of 0 or more");
                }
                let bill = match &bill {
                    None => None,
                    Some(path) => {
                        let text = std::fs::read_to_string(path)
                            .with_context(|| format!("reading the bill {}", path.display()))?;
                        let bill = reconcile::parse_bill(&text)
                            .with_context(|| format!("the bill {}", path.display()))?;
                        Some(bill)
                    }
                };
                let store = open_store(&config).await?;
                reconcile::reconcile(&store, &account, date, zone, bill.as_ref(), tolerance).await
            }
            .await?;
            print!("{}", reconcile::render(&report, format));
            if report.flagged() {
                return Err(Exit {
                    code: 1,
                    message: None,
                }
                .into());
            }
            Ok(())
        }
        Command::Replay {
            projection,
            all,
            batch_size,
        } => {
            let chosen = match (projection, all) {
                (Some(name), false) => {
                    vec![projections::Projection::parse(&name).ok_or_else(|| {
                        let names: Vec<&str> = projections::Projection::ALL
                            .iter()
                            .map(|p| p.name())
                            .collect();
                        anyhow::anyhow!(
                            "there is no projection {name:?}; there are: {}",
                            names.join(", ")
                        )
                    })?]
                }
                _ => projections::Projection::ALL.to_vec(),
            };
            let store = open_store(&config).await?;
            crate::replay::run(&store, &chosen, batch_size, &shutdown).await
        }
        Command::Export { out, batch_size } => {
            let store = open_store(&config).await?;
            let summary = crate::portability::export(&store, &out, batch_size, &shutdown).await?;
            let resumed = summary.resumed_after.map_or_else(String::new, |before| {
                format!(" (resumed after {})", crate::replay::thousands(before))
            });
            println!(
                "exported {} table rows and {} events{resumed} from {} ({}) to {} in {:.1} s",
                crate::replay::thousands(summary.rows),
                crate::replay::thousands(summary.events),
                store::redact(&config.database.url),
                store.backend(),
                out.display(),
                summary.elapsed.as_secs_f64()
            );
            Ok(())
        }
        Command::Import { input, batch_size } => {
            let store = open_store(&config).await?;
            let summary = crate::portability::import(&store, &input, batch_size, &shutdown).await?;
            println!(
                "imported {} table rows and {} events into {} ({}) in {:.1} s; \
                 {} supplier ids recorded, {} messages queued for dispatch, {} recalls pending",
                crate::replay::thousands(summary.rows),
                crate::replay::thousands(summary.events),
                store::redact(&config.database.url),
                store.backend(),
                summary.elapsed.as_secs_f64(),
                crate::replay::thousands(summary.supplier_ids),
                crate::replay::thousands(summary.queued),
                crate::replay::thousands(summary.pending_recalls),
            );
            // The read models are rebuilt now, so the API answers from the first request.
            crate::replay::run(&store, projections::Projection::ALL, 5_000, &shutdown).await
        }
        Command::Trace { message_id, tenant } => {
            let tenant = tenant.as_deref().map(TenantId::parse).transpose()?;
            let store = open_store(&config).await?;
            print!(
                "{}",
                crate::trace::show(&store, &message_id, tenant.as_ref()).await?
            );
            Ok(())
        }
        Command::Crowd {
            command: CrowdCommand::Status { id, watch, json },
        } => {
            let store = open_store(&config).await?;
            let show = crate::crowd::Show { watch, json };
            crate::crowd::status(&store, &id, show, &shutdown).await
        }
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            println!("{}", commands::secrets::Keyring::generate());
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let keyring = config
                .security
                .keyring()
                .context("reading HERALD_SECRET_KEY")?;
            let store = open_store(&config).await?;
            let rotation = commands::accounts::rotate(&store, &keyring)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{} secrets sealed again under key {}; {} were under it already",
                rotation.resealed,
                keyring.current_id().unwrap_or("?"),
                rotation.current
            );
            Ok(())
        }
        Command::Apikey {
            command: ApikeyCommand::Revoke { key_id },
        } => {
            let store = open_store(&config).await?;
            keys::revoke_api_key(&store, &key_id)
                .await
                .context("revoking the API key")?;
            println!("API key {key_id} revoked");
            Ok(())
        }
    }
}

/// The configured store, migrated: the administrative commands work on a fresh database too.
async fn open_store(config: &Config) -> anyhow::Result<store::Store> {
    let url = &config.database.url;
    let store = store::Store::connect(url)
        .await
        .with_context(|| format!("connecting to the store at {}", store::redact(url)))?;
    store.migrate().await.context("migrating the store")?;
    Ok(store)
}
