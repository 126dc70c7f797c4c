//! Configuration: defaults, then a TOML file, then `HERALD_*` environment variables, then
//! command-line flags. Each layer overrides the one before it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use dispatch::sensitive::SensitiveAction;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub log: LogConfig,
    pub api: ApiConfig,
    pub security: SecurityConfig,
    pub dispatch: DispatchConfig,
    pub sandbox: SandboxConfig,
    pub crowd: CrowdConfig,
    pub alerting: AlertingConfig,
    pub runtime: RuntimeConfig,
    /// Alert rules, `[[alerts]]` in the file (see [`AlertRule`]).
    pub alerts: Vec<AlertRule>,
    /// Supplier accounts, `[[accounts]]` in the file. A credential written `env:NAME` is read
    /// from the environment variable NAME, so secrets stay out of the file.
    pub accounts: Vec<dispatch::accounts::AccountConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Run the dispatch workers in this process.
    pub enabled: bool,
    /// Messages in flight at once per lane (channel and message type).
    pub concurrency: usize,
    pub retry_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_factor: u32,
    /// How long a worker's claim on a message holds before another worker may take it.
    pub lease_secs: u64,
    /// The receivers' night (`HH:MM`), when templates with a night shield discard or defer.
    pub night_start: String,
    pub night_end: String,
    /// When deferred messages go out.
    pub night_resume: String,
    /// The zone of those times, as a UTC offset such as `+08:00`; also the zone of the
    /// calendar day of frequency caps.
    pub night_zone: String,
    /// The same receiver, template and content within this many seconds is a duplicate (0: off).
    pub dedup_window_secs: u64,
    /// At most this many messages per receiver and channel per calendar day (0: off).
    pub frequency_cap: u32,
    /// Messages in flight at once for particular lanes, over `concurrency`:
    /// `lane_concurrency = { "SMS.MARKETING" = 2, "SMS.AUTH_CODE" = 32 }`. Reloaded live.
    pub lane_concurrency: BTreeMap<String, usize>,
    /// The rolling window over which an account's failed calls are counted.
    pub breaker_window_ms: u64,
    /// Fewer calls than this in the window never open an account's breaker.
    pub breaker_min_calls: u32,
    /// The share of failed calls (0 to 1] at which the breaker opens.
    pub breaker_failure_ratio: f64,
    /// How long an open breaker keeps the account out before a probe call.
    pub breaker_open_ms: u64,
    /// A file of sensitive words, one a line (`#` comments). Empty: none. Reloaded live.
    pub sensitive_words_file: String,
    /// `mask` (replace with `*` and send) or `reject` (discard the message). Reloaded live.
    pub sensitive_action: SensitiveAction,
    /// How long after a send its receipt is first asked for, from suppliers asked per message
    /// (Aliyun SMS); later questions space out with the message's age.
    pub receipt_query_delay_ms: u64,
    /// How often receipts are pulled from suppliers that keep them for pulling (Tencent SMS).
    pub receipt_pull_interval_ms: u64,
    /// How often the configuration file and the word list are checked for changes (0: only on
    /// SIGHUP).
    pub reload_interval_ms: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            enabled: true,
            concurrency: 8,
            retry_attempts: 3,
            retry_base_ms: 60_000,
            retry_factor: 2,
            lease_secs: 60,
            night_start: "22:00".to_owned(),
            night_end: "08:00".to_owned(),
            night_resume: "09:00".to_owned(),
            night_zone: "+08:00".to_owned(),
            dedup_window_secs: 300,
            frequency_cap: 5,
            lane_concurrency: BTreeMap::new(),
            breaker_window_ms: 60_000,
            breaker_min_calls: 20,
            breaker_failure_ratio: 0.5,
            breaker_open_ms: 30_000,
            sensitive_words_file: String::new(),
            sensitive_action: SensitiveAction::Mask,
            reload_interval_ms: 2_000,
            receipt_pull_interval_ms: 10_000,
            receipt_query_delay_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where users reach this Herald; click-tracking links point at `{public_url}/c/…`.
    pub public_url: String,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Requests per second per API key, on average (0 turns the limit off) ...
    pub rate_limit_per_second: u32,
    /// ... and at most this many at once.
    pub rate_limit_burst: u32,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_receivers_per_item: usize,
    pub max_items: usize,
    /// Largest file `/uploads` takes, in bytes.
    pub max_upload_bytes: usize,
    /// Seconds between two heartbeats (SSE comments) of an idle `/inbox/stream`, so proxies
    /// keep it open.
    pub inbox_heartbeat_secs: u64,
}

/// `[crowd]`: how crowd sends run (in the dispatch role).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrowdConfig {
    /// Rows per batch, each batch one commit.
    pub batch_size: usize,
    /// The most rows per second one runner turns into messages.
    pub rows_per_sec: u32,
    /// A runner waits while its lane's queue holds more messages than this.
    pub max_backlog: u64,
    /// A cron firing later than this many seconds is a misfire.
    pub misfire_grace_secs: u64,
    /// A runner's claim on a send lasts this long, extended with every batch; after a crash
    /// another runner resumes the send once it runs out.
    pub lease_secs: u64,
}

impl Default for CrowdConfig {
    fn default() -> Self {
        let run = commands::crowd_run::RunOptions::default();
        CrowdConfig {
            batch_size: run.batch_size,
            rows_per_sec: run.rows_per_sec,
            max_backlog: run.max_backlog,
            misfire_grace_secs: run.misfire_grace.num_seconds() as u64,
            lease_secs: run.lease.as_secs(),
        }
    }
}

/// `[alerting]`: how often the dispatch role evaluates the `[[alerts]]` rules.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Milliseconds between two evaluations of every rule.
    pub interval_ms: u64,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            interval_ms: 30_000,
        }
    }
}

/// What an alert rule watches.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// `MessageFailed` / (`MessageDispatched` + `MessageFailed`) over the last `window_secs`,
    /// optionally of one channel and account; `threshold` is a ratio (0.05 is 5 %).
    FailureRatio,
    /// Events some projection has still to apply; `threshold` is a number of events.
    ProjectionLag,
}

/// `[[alerts]]`: a rule that, when its value is above `threshold`, sends a text through the
/// robot account `notify_account` to `notify_receiver`, at most once per `window_secs`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub kind: AlertKind,
    /// failure_ratio only: count only this channel's messages.
    #[serde(default)]
    pub channel: Option<domain::Channel>,
    /// failure_ratio only: count only the messages last tried through this account.
    #[serde(default)]
    pub account: Option<String>,
    pub threshold: f64,
    /// The window measured (the last `window_secs`) and the period at most one alert is sent in.
    #[serde(default = "default_alert_window")]
    pub window_secs: u64,
    /// failure_ratio only: fewer outcomes than this in the window never alert.
    #[serde(default = "default_alert_min_messages")]
    pub min_messages: u64,
    /// The id of a `dingtalk_robot` or `wecom_robot` account in `[[accounts]]`.
    pub notify_account: String,
    /// The robot's webhook URL.
    pub notify_receiver: String,
}

fn default_alert_window() -> u64 {
    300
}

fn default_alert_min_messages() -> u64 {
    20
}

/// `[sandbox]`: tenants (or the whole deployment) that send only to whitelisted receivers;
/// their other messages end in `MessageDiscarded` with `NOT_WHITELISTED`. Reloads live.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Every tenant is in the sandbox (a staging deployment).
    pub all_tenants: bool,
    /// These tenants are.
    pub tenants: Vec<String>,
    /// Receivers that still get messages: phone numbers, addresses, openids, URLs.
    pub whitelist: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Signs click-tracking links. Empty: Herald makes one on first start and keeps it in the
    /// store, so every process of a deployment shares it.
    pub link_secret: String,
    /// Seals the run-time channel accounts' secrets: 32 bytes in base64 (`herald keys
    /// generate`). Set it through `HERALD_SECRET_KEY` rather than in the file.
    pub secret_key: String,
    /// Keys of earlier rotations, a comma list (`HERALD_SECRET_KEY_PREVIOUS`): they still open
    /// secrets until `herald keys rotate` has sealed them again under `secret_key`.
    pub secret_key_previous: String,
}

impl SecurityConfig {
    /// The keys for secrets at rest.
    pub fn keyring(&self) -> anyhow::Result<commands::secrets::Keyring> {
        let previous: Vec<&str> = self.secret_key_previous.split(',').collect();
        Ok(commands::secrets::Keyring::new(
            Some(self.secret_key.as_str()),
            &previous,
        )?)
    }
}

/// `[runtime]`: how run-time changes (channel accounts) reach every process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Milliseconds between two checks of the store for changed channel accounts.
    pub poll_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { poll_ms: 1_000 }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            public_url: "http://127.0.0.1:8080".to_owned(),
            max_body_bytes: 1024 * 1024,
            rate_limit_per_second: 200,
            rate_limit_burst: 400,
            max_depth: 12,
            max_complexity: 500,
            max_receivers_per_item: 100,
            max_items: 100,
            max_upload_bytes: 100 * 1024 * 1024,
            inbox_heartbeat_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (the embedded default) or `postgres://…`.
    pub url: String,
    /// Apply pending migrations when the server starts.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `redis://…`; empty keeps dedup windows, counters and buckets in process.
    pub redis_url: String,
    /// Every Redis key starts with this, so deployments can share a Redis.
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter such as `info` or `herald=debug,sqlx=warn`; `RUST_LOG` wins.
    pub filter: String,
    /// An OTLP/HTTP collector (such as `http://otel-collector:4318`): spans are exported there
    /// as protobuf to `{endpoint}/v1/traces`. Empty: no export. `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is read too.
    pub otlp_endpoint: String,
    /// The `service.name` spans are exported under.
    pub service_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: DatabaseConfig::default(),
            cache: CacheConfig::default(),
            log: LogConfig::default(),
            api: ApiConfig::default(),
            security: SecurityConfig::default(),
            dispatch: DispatchConfig::default(),
            sandbox: SandboxConfig::default(),
            crowd: CrowdConfig::default(),
            alerting: AlertingConfig::default(),
            runtime: RuntimeConfig::default(),
            alerts: Vec::new(),
            accounts: Vec::new(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            redis_url: String::new(),
            key_prefix: "herald".to_owned(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://herald.db".to_owned(),
            migrate_on_start: true,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".to_owned(),
            filter: "info,sqlx::postgres::notice=warn".to_owned(),
            otlp_endpoint: String::new(),
            service_name: "herald".to_owned(),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
}

/// The environment variables Herald reads, and the setting each overrides.
const ENVIRONMENT: &[(&str, &[&str], Kind)] = &[
    ("HERALD_LISTEN", &["listen"], Kind::Text),
    ("HERALD_DATABASE_URL", &["database", "url"], Kind::Text),
    (
        "HERALD_DATABASE_MIGRATE_ON_START",
        &["database", "migrate_on_start"],
        Kind::Boolean,
    ),
    (
        "HERALD_CACHE_REDIS_URL",
        &["cache", "redis_url"],
        Kind::Text,
    ),
    ("HERALD_LOG_FORMAT", &["log", "format"], Kind::Text),
    ("HERALD_LOG_FILTER", &["log", "filter"], Kind::Text),
    (
        "HERALD_LOG_OTLP_ENDPOINT",
        &["log", "otlp_endpoint"],
        Kind::Text,
    ),
    (
        "HERALD_LOG_SERVICE_NAME",
        &["log", "service_name"],
        Kind::Text,
    ),
    ("HERALD_API_PUBLIC_URL", &["api", "public_url"], Kind::Text),
    (
        "HERALD_API_MAX_BODY_BYTES",
        &["api", "max_body_bytes"],
        Kind::Integer,
    ),
    (
        "HERALD_API_RATE_LIMIT_PER_SECOND",
        &["api", "rate_limit_per_second"],
        Kind::Integer,
    ),
    (
        "HERALD_API_RATE_LIMIT_BURST",
        &["api", "rate_limit_burst"],
        Kind::Integer,
    ),
    ("HERALD_API_MAX_DEPTH", &["api", "max_depth"], Kind::Integer),
    (
        "HERALD_API_MAX_COMPLEXITY",
        &["api", "max_complexity"],
        Kind::Integer,
    ),
    (
        "HERALD_API_MAX_RECEIVERS_PER_ITEM",
        &["api", "max_receivers_per_item"],
        Kind::Integer,
    ),
    ("HERALD_API_MAX_ITEMS", &["api", "max_items"], Kind::Integer),
    (
        "HERALD_API_MAX_UPLOAD_BYTES",
        &["api", "max_upload_bytes"],
        Kind::Integer,
    ),
    (
        "HERALD_API_INBOX_HEARTBEAT_SECS",
        &["api", "inbox_heartbeat_secs"],
        Kind::Integer,
    ),
    (
        "HERALD_CROWD_BATCH_SIZE",
        &["crowd", "batch_size"],
        Kind::Integer,
    ),
    (
        "HERALD_CROWD_ROWS_PER_SEC",
        &["crowd", "rows_per_sec"],
        Kind::Integer,
    ),
    (
        "HERALD_CROWD_MAX_BACKLOG",
        &["crowd", "max_backlog"],
        Kind::Integer,
    ),
    (
        "HERALD_CROWD_MISFIRE_GRACE_SECS",
        &["crowd", "misfire_grace_secs"],
        Kind::Integer,
    ),
    (
        "HERALD_CROWD_LEASE_SECS",
        &["crowd", "lease_secs"],
        Kind::Integer,
    ),
    (
        "HERALD_SECURITY_LINK_SECRET",
        &["security", "link_secret"],
        Kind::Text,
    ),
    ("HERALD_SECRET_KEY", &["security", "secret_key"], Kind::Text),
    (
        "HERALD_SECRET_KEY_PREVIOUS",
        &["security", "secret_key_previous"],
        Kind::Text,
    ),
    (
        "HERALD_RUNTIME_POLL_MS",
        &["runtime", "poll_ms"],
        Kind::Integer,
    ),
];

impl Config {
    /// Loads the layers below the command line: the file (if any), then the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, path, kind) in ENVIRONMENT {
            if let Some(raw) = env(name) {
                let value = match kind {
                    Kind::Text => toml::Value::String(raw),
                    Kind::Integer => toml::Value::Integer(
                        raw.trim()
                            .parse()
                            .with_context(|| format!("{name} must be a whole number"))?,
                    ),
                    Kind::Boolean => toml::Value::Boolean(match raw.trim() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => bail!("{name} must be true or false"),
                    }),
                };
                set(&mut table, path, value);
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bail!(
                "database.url must start with sqlite:, postgres:// or postgresql://, not {}",
                store::redact(url)
            );
        }
        let redis = &self.cache.redis_url;
        let redis_ok =
            redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://");
        if !redis_ok {
            bail!("cache.redis_url must start with redis:// or rediss://");
        }
        if !(self.api.public_url.starts_with("http://")
            || self.api.public_url.starts_with("https://"))
        {
            bail!("api.public_url must be an http(s) URL");
        }
        if self.api.inbox_heartbeat_secs == 0 {
            bail!("api.inbox_heartbeat_secs must be at least 1");
        }
        if self.api.max_receivers_per_item == 0 || self.api.max_items == 0 {
            bail!("api.max_receivers_per_item and api.max_items must be at least 1");
        }
        if self.crowd.batch_size == 0 || self.crowd.rows_per_sec == 0 || self.crowd.lease_secs == 0
        {
            bail!("crowd.batch_size, crowd.rows_per_sec and crowd.lease_secs must be at least 1");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be text or json, not {:?}", self.log.format);
        }
        self.validate_alerts()
    }

    fn validate_alerts(&self) -> anyhow::Result<()> {
        if self.alerting.interval_ms == 0 {
            bail!("alerting.interval_ms must be at least 1");
        }
        let mut names = std::collections::BTreeSet::new();
        for rule in &self.alerts {
            let name = &rule.name;
            if name.trim().is_empty() || !names.insert(name.as_str()) {
                bail!("alerts: every rule needs a name of its own, {name:?} is empty or repeated");
            }
            if rule.window_secs == 0 {
                bail!("alerts {name:?}: window_secs must be at least 1");
            }
            let threshold_ok = match rule.kind {
                AlertKind::FailureRatio => rule.threshold >= 0.0 && rule.threshold < 1.0,
                AlertKind::ProjectionLag => rule.threshold >= 0.0 && rule.threshold.is_finite(),
            };
            if !threshold_ok {
                bail!(
                    "alerts {name:?}: threshold must be a ratio from 0 up to 1 for failure_ratio, \
                     a number of events for projection_lag, not {}",
                    rule.threshold
                );
            }
            if rule.kind == AlertKind::ProjectionLag
                && (rule.channel.is_some() || rule.account.is_some())
            {
                bail!("alerts {name:?}: channel and account filter failure_ratio rules only");
            }
            let robot = self
                .accounts
                .iter()
                .find(|a| a.id == rule.notify_account)
                .filter(|a| matches!(a.supplier.as_str(), "dingtalk_robot" | "wecom_robot"));
            if robot.is_none() {
                bail!(
                    "alerts {name:?}: notify_account {:?} must be the id of a dingtalk_robot or \
                     wecom_robot account",
                    rule.notify_account
                );
            }
            if domain::Receiver::parse(domain::ReceiverIdType::WebhookUrl, &rule.notify_receiver)
                .is_err()
            {
                bail!("alerts {name:?}: notify_receiver must be the robot's webhook URL");
            }
        }
        Ok(())
    }
}

fn set(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry((*first).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(toml_text: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let dir =
            std::env::temp_dir().join(format!("herald-config-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("herald.toml");
        if let Some(text) = toml_text {
            std::fs::write(&file, text)?;
        }
        let result = Config::load(toml_text.map(|_| file.as_path()), |k| env.get(k).cloned());
        let _ = std::fs::remove_dir_all(dir);
        result
    }

    #[test]
    fn no_configuration_gives_the_embedded_default() {
        let config = load(None, &[]).expect("defaults load");
        assert_eq!(config, Config::default());
        assert_eq!(config.database.url, "sqlite://herald.db");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file = "listen = \"0.0.0.0:9000\"\n[database]\nurl = \"sqlite://a.db\"\n";
        let config =
            load(Some(file), &[("HERALD_DATABASE_URL", "postgres://u@h/db")]).expect("loads");
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.database.url, "postgres://u@h/db");
        let config =
            load(Some(file), &[("HERALD_DATABASE_MIGRATE_ON_START", "false")]).expect("loads");
        assert!(!config.database.migrate_on_start);
    }

    #[test]
    fn bad_configuration_is_refused_with_a_reason() {
        let unknown = load(Some("[database]\nulr = \"x\"\n"), &[]).expect_err("typo refused");
        assert!(format!("{unknown:#}").contains("ulr"), "{unknown:#}");
        let scheme = load(None, &[("HERALD_DATABASE_URL", "mysql://x")]).expect_err("bad scheme");
        assert!(format!("{scheme:#}").contains("database.url"));
        let flag =
            load(None, &[("HERALD_DATABASE_MIGRATE_ON_START", "maybe")]).expect_err("bad bool");
        assert!(format!("{flag:#}").contains("true or false"));
        assert!(load(Some("listen = 5"), &[]).is_err());
    }

    #[test]
    fn alert_rules_load_with_defaults_and_are_checked() {
        let robot = "[[accounts]]\nid = \"ops\"\nchannel = \"DINGTALK_ROBOT\"\nsupplier = \"dingtalk_robot\"\n";
        let rule = "[[alerts]]\nname = \"sms\"\nkind = \"failure_ratio\"\nchannel = \"SMS\"\nthreshold = 0.05\nnotify_account = \"ops\"\nnotify_receiver = \"https://oapi.dingtalk.com/robot/send?access_token=x\"\n";
        let config = load(Some(&format!("{robot}{rule}")), &[]).expect("loads");
        assert_eq!(config.alerting.interval_ms, 30_000);
        let loaded = &config.alerts[0];
        assert_eq!(loaded.kind, AlertKind::FailureRatio);
        assert_eq!(loaded.channel, Some(domain::Channel::Sms));
        assert_eq!((loaded.window_secs, loaded.min_messages), (300, 20));

        let no_robot = load(Some(rule), &[]).expect_err("unknown account refused");
        assert!(
            format!("{no_robot:#}").contains("notify_account"),
            "{no_robot:#}"
        );
        let ratio = rule.replace("0.05", "5.0");
        let ratio = load(Some(&format!("{robot}{ratio}")), &[]).expect_err("ratio above 1");
        assert!(format!("{ratio:#}").contains("threshold"), "{ratio:#}");
        let twice = load(Some(&format!("{robot}{rule}{rule}")), &[]).expect_err("same name");
        assert!(format!("{twice:#}").contains("repeated"), "{twice:#}");
        let typo = rule.replace("threshold", "treshold");
        assert!(load(Some(&format!("{robot}{typo}")), &[]).is_err());
        let url = rule.replace(
            "https://oapi.dingtalk.com/robot/send?access_token=x",
            "nope",
        );
        let url = load(Some(&format!("{robot}{url}")), &[]).expect_err("not a URL");
        assert!(format!("{url:#}").contains("notify_receiver"), "{url:#}");
    }
}
