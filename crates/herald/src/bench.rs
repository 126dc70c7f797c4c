//! `herald bench`: starts Herald (each role as its own `herald serve` process, so each one's
//! memory is its own) against a fresh store and a local supplier that answers at once, drives
//! it over HTTP with many concurrent clients, and prints one JSON object:
//!
//! - `send`: single-receiver `send` requests per second, p50 and p99 latency;
//! - `batch_send`: messages accepted per second through `batchSend`;
//! - `dispatch`: messages per second from accepted to dispatched, dedup and rate limits on;
//! - `projections`: how fast the live projections catch up with the log;
//! - `message`: `message(id)` p50 and p99 with the store at `--store-size` messages, from
//!   `--concurrency` clients and from one (`one_client`);
//! - `replay`: events per second of `herald replay --all`;
//! - `ceiling`: a raw batched insert into a copy of the events table, and the `batchSend`
//!   accept rate as a fraction of it;
//! - `rss_mb`: each role's resident memory idle and at its peak.
//!
//! With `--target URL --api-key KEY --template-id ID` it drives a running Herald instead and
//! measures only what the API shows (`send`, `batch_send`, `message`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What `herald bench` measures with.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The store to measure: `sqlite` (a fresh file) or `postgres` (a fresh database).
    #[arg(long, default_value = "sqlite")]
    pub backend: Backend,
    /// The Postgres server the bench database is created on, through this database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres_url: String,
    /// Redis for the cache with the postgres backend (empty: the in-process cache).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Seconds each timed phase runs.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Messages the dispatch role has in flight per lane (its `dispatch.concurrency`): the
    /// bench's supplier answers at once, so this and the group commit bound the rate. A message
    /// in flight mostly waits for its group commit (at 64, 8.5k and 7.8k messages a second at
    /// 1M stored, with a fifth of the two cores idle; at 128, 10.8k and 9.7k).
    #[arg(long, default_value_t = 128)]
    pub dispatch_concurrency: usize,
    /// Messages in the store when `message(id)` is measured.
    #[arg(long, default_value_t = 1_000_000)]
    pub store_size: u64,
    /// Receivers per `batchSend` request (in items of up to 100).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// A running Herald's base URL, instead of starting one.
    #[arg(long)]
    pub target: Option<String>,
    /// With `--target`: an API key with the send and read scopes.
    #[arg(long)]
    pub api_key: Option<String>,
    /// With `--target`: an approved WEBHOOK template with one placeholder `${n}`.
    #[arg(long)]
    pub template_id: Option<String>,
    /// With `--target`: where the WEBHOOK messages go (a URL that answers 2xx).
    #[arg(long)]
    pub hook_url: Option<String>,
    /// Keep the bench database (and print where it is) and its Redis keys instead of dropping them.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

const SEND: &str = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
const BATCH: &str = "mutation($input: BatchSendInput!) { batchSend(input: $input) { requestId } }";
const MESSAGE: &str = "query($id: ID!) { message(id: $id) { message { status } } }";

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = match &args.target {
        Some(target) => against(&args, target).await?,
        None => hosted(&args).await?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Measures a running Herald through its API only.
async fn against(args: &BenchArgs, target: &str) -> anyhow::Result<Value> {
    let (Some(key), Some(template), Some(hook)) =
        (&args.api_key, &args.template_id, &args.hook_url)
    else {
        bail!("--target needs --api-key, --template-id and --hook-url");
    };
    let api = Api::new(target, key)?;
    let duration = Duration::from_secs(args.duration);
    let send = send_phase(&api, template, hook, args.concurrency, duration).await;
    let batch = batch_phase(&api, template, hook, args, duration, None).await;
    let message = message_phase(&api, &send.ids, args.concurrency, duration).await;
    let alone = message_phase(&api, &send.ids, 1, duration).await;
    Ok(json!({
        "target": target,
        "concurrency": args.concurrency,
        "duration_secs": args.duration,
        "send": send.report(),
        "batch_send": batch.report(),
        "message": message_report(&message, &alone),
    }))
}

/// Starts Herald on a fresh store and measures every line.
async fn hosted(args: &BenchArgs) -> anyhow::Result<Value> {
    let duration = Duration::from_secs(args.duration);
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let database = Database::create(args, &dir).await?;
    let result = measure(args, &dir, &database, duration).await;
    if args.keep {
        eprintln!(
            "bench: the store is kept at {}",
            store::redact(&database.url)
        );
    } else {
        database.drop(args).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn measure(
    args: &BenchArgs,
    dir: &Path,
    database: &Database,
    duration: Duration,
) -> anyhow::Result<Value> {
    let url = database.url.as_str();
    let supplier = instant_supplier().await?;
    let hook = format!("{supplier}/hook");
    let redis = match args.backend {
        Backend::Postgres => args.redis_url.clone(),
        Backend::Sqlite => String::new(),
    };
    let config = dir.join("herald.toml");
    std::fs::write(
        &config,
        config_file(url, &redis, &database.key_prefix, args.dispatch_concurrency),
    )?;

    let store = store::Store::connect(url).await?;
    store.migrate().await?;
    let author = admin_key(&config, "admin").await?;
    let reviewer = admin_key(&config, "admin").await?;
    let key = admin_key(&config, "send,read").await?;

    eprintln!("bench: starting the api role");
    let mut api_server = Server::start(&config, "api").await?;
    let api = Api::new(&api_server.url, &key)?;
    let template = approved_template(&api_server.url, &author, &reviewer).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let api_idle = api_server.rss_mb();

    eprintln!("bench: send, {} clients, {duration:?}", args.concurrency);
    let send = send_phase(&api, &template, &hook, args.concurrency, duration).await;
    eprintln!("bench: batchSend, {} receivers a request", args.batch_size);
    let batch = batch_phase(&api, &template, &hook, args, duration, None).await;
    let accepted = send.ok + batch.messages;
    if accepted < args.store_size {
        eprintln!(
            "bench: filling the store to {} messages (untimed)",
            args.store_size
        );
        let missing = args.store_size - accepted;
        batch_phase(&api, &template, &hook, args, duration, Some(missing)).await;
    }
    let api_peak = api_server.peak_mb();

    eprintln!("bench: dispatch, {duration:?}");
    let backlog_before = queue_depth(&store).await?;
    let mut dispatch_server = Server::start(&config, "dispatch").await?;
    let dispatch_idle = dispatch_server.rss_mb();
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let backlog_after = queue_depth(&store).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let dispatch_peak = dispatch_server.peak_mb();
    dispatch_server.stop().await;
    let dispatched = backlog_before.saturating_sub(backlog_after);

    eprintln!("bench: projections catching up");
    let events_before = applied_events(&store).await?;
    let mut projection_server = Server::start(&config, "projections").await?;
    let started = Instant::now();
    caught_up(&store).await?;
    let projection_secs = started.elapsed().as_secs_f64();
    let projected = event_count(&store).await?.saturating_sub(events_before);
    let projections_peak = projection_server.peak_mb();

    let stored = accepted.max(args.store_size);
    eprintln!("bench: message(id) with {stored} messages stored");
    let message = message_phase(&api, &send.ids, args.concurrency, duration).await;
    // One client: a request's own latency, with no queue of other clients' requests before it
    // (at 64 clients, p99 is mostly waiting for the API's two cores).
    eprintln!("bench: message(id), one client");
    let alone = message_phase(&api, &send.ids, 1, duration).await;
    let mut message = message_report(&message, &alone);
    message["store_size"] = json!(stored);

    eprintln!("bench: replay --all");
    let replay = replay(&config, &store).await;
    projection_server.stop().await;
    api_server.stop().await;

    eprintln!("bench: the ceiling, a raw batched insert");
    let ceiling = ceiling(&store, args, duration).await?;
    let batch_rate = batch.rate();
    Ok(json!({
        "backend": match args.backend { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" },
        "cache": if redis.is_empty() { "in-process" } else { "redis" },
        "machine": machine(),
        "concurrency": args.concurrency,
        "duration_secs": args.duration,
        "send": send.report(),
        "batch_send": batch.report(),
        "dispatch": {
            "messages": dispatched,
            "per_sec": round(dispatched as f64 / elapsed),
            "backlog_at_start": backlog_before,
            "concurrency": args.dispatch_concurrency,
        },
        "projections": {
            "events": projected,
            "per_sec": round(projected as f64 / projection_secs.max(0.001)),
        },
        "message": message,
        "replay": replay,
        "ceiling": {
            "rows_per_sec": round(ceiling),
            "batch_send_fraction": round_to(batch_rate / ceiling.max(1.0), 3),
        },
        "rss_mb": {
            "api_idle": api_idle,
            "api_peak": api_peak,
            "dispatch_idle": dispatch_idle,
            "dispatch_peak": dispatch_peak,
            "projections_peak": projections_peak,
        },
    }))
}

fn round(x: f64) -> f64 {
    x.round()
}

fn round_to(x: f64, digits: i32) -> f64 {
    let scale = 10_f64.powi(digits);
    (x * scale).round() / scale
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu,
        "os": std::env::consts::OS,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

/// The bench's own store: a new SQLite file or a new Postgres database.
struct Database {
    url: String,
    name: Option<String>,
    /// What the bench's Redis keys start with.
    key_prefix: String,
}

impl Database {
    async fn create(args: &BenchArgs, dir: &Path) -> anyhow::Result<Database> {
        let key_prefix = format!("bench-{}:", uuid::Uuid::now_v7().simple());
        match args.backend {
            Backend::Sqlite => Ok(Database {
                url: format!("sqlite://{}", dir.join("bench.db").display()),
                name: None,
                key_prefix,
            }),
            Backend::Postgres => {
                use sqlx::Connection as _;
                let name = format!("herald_bench_{}", uuid::Uuid::now_v7().simple());
                let mut admin = sqlx::PgConnection::connect(&args.postgres_url)
                    .await
                    .with_context(|| {
                        format!("connecting to {}", store::redact(&args.postgres_url))
                    })?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await?;
                let base = args
                    .postgres_url
                    .rsplit_once('/')
                    .map_or(args.postgres_url.as_str(), |(base, _)| base);
                Ok(Database {
                    url: format!("{base}/{name}"),
                    name: Some(name),
                    key_prefix,
                })
            }
        }
    }

    async fn drop(&self, args: &BenchArgs) {
        use sqlx::Connection as _;
        let Some(name) = &self.name else {
            return;
        };
        if let Err(error) = clear_keys(&args.redis_url, &self.key_prefix).await {
            eprintln!(
                "bench: the keys under {} stay in Redis: {error}",
                self.key_prefix
            );
        }
        if let Ok(mut admin) = sqlx::PgConnection::connect(&args.postgres_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
}

/// Removes the bench's keys from Redis. Its frequency caps last until the end of the day: left
/// behind, a few runs put a million keys in Redis, and every later run's Redis worked on a
/// bigger keyspace (growing and rehashing its dictionary was a tenth of its time).
async fn clear_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    if url.is_empty() {
        return Ok(());
    }
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

fn config_file(url: &str, redis: &str, key_prefix: &str, dispatch_concurrency: usize) -> String {
    format!(
        r#"# Written by herald bench.
[database]
url = "{url}"

[cache]
redis_url = "{redis}"
key_prefix = "{key_prefix}"

[log]
filter = "warn"

[api]
rate_limit_per_second = 0
max_items = 100
max_receivers_per_item = 100
max_body_bytes = 8388608

[dispatch]
# Messages in flight per lane: the supplier answers at once, so this bounds the rate.
concurrency = {concurrency}
# Dedup and the frequency cap stay on; every bench message has its own receiver.
dedup_window_secs = 300
frequency_cap = 5

[[accounts]]
id = "bench-hook"
channel = "WEBHOOK"
supplier = "webhook"
credentials = {{ secret = "bench-secret" }}
# A limit the bench never reaches, so the shared token bucket is asked on every send.
rate_limit_per_sec = 1000000.0
"#,
        concurrency = dispatch_concurrency,
    )
}

/// A supplier that answers every call at once: what is measured is Herald.
async fn instant_supplier() -> anyhow::Result<String> {
    let router = axum::Router::new().route(
        "/hook/{n}",
        axum::routing::post(|| async { axum::Json(json!({})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(url)
}

fn herald() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the herald binary")
}

/// A new key of the `bench` tenant with `scopes`, through the CLI a user would use.
async fn admin_key(config: &Path, scopes: &str) -> anyhow::Result<String> {
    let _ = Command::new(herald()?)
        .arg("--config")
        .arg(config)
        .args(["tenant", "create", "bench"])
        .output()
        .await?;
    let out = Command::new(herald()?)
        .arg("--config")
        .arg(config)
        .args(["apikey", "create", "--tenant", "bench", "--scopes", scopes])
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "creating an API key: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// One `herald serve` process with some roles.
struct Server {
    child: Child,
    url: String,
    pid: u32,
}

impl Server {
    async fn start(config: &Path, role: &str) -> anyhow::Result<Server> {
        let mut child = Command::new(herald()?)
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0", "--role", role])
            .env("RUST_LOG", "warn,herald::server=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting herald serve")?;
        let pid = child.id().context("herald serve exited at once")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("address=").nth(1) {
                    return Ok(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                eprintln!("herald {role}: {line}");
            }
            bail!("herald serve --role {role} exited before listening")
        })
        .await
        .context("herald serve did not listen within 30 s")??;
        let role = role.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("herald {role}: {line}");
            }
        });
        Ok(Server {
            child,
            url: format!("http://{address}"),
            pid,
        })
    }

    /// Resident memory now, in MiB.
    fn rss_mb(&self) -> f64 {
        self.status_mb("VmRSS:")
    }

    /// The most resident memory so far, in MiB.
    fn peak_mb(&self) -> f64 {
        self.status_mb("VmHWM:")
    }

    fn status_mb(&self, field: &str) -> f64 {
        let kb = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        round_to(kb / 1024.0, 1)
    }

    /// SIGTERM, then wait for the drain.
    async fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A GraphQL client with a key.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    url: String,
    auth: String,
}

impl Api {
    fn new(base: &str, key: &str) -> anyhow::Result<Api> {
        Ok(Api {
            client: dispatch::http::client(Duration::from_secs(30))?,
            url: format!("{}/graphql", base.trim_end_matches('/')),
            auth: format!("Bearer {key}"),
        })
    }

    /// The answer's `data`, or an error naming what went wrong.
    async fn call(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(&self.url)
            .header("Authorization", &self.auth)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() || body.get("errors").is_some() {
            bail!("HTTP {status}: {body}");
        }
        Ok(body["data"].clone())
    }
}

async fn approved_template(base: &str, author: &str, reviewer: &str) -> anyhow::Result<String> {
    let author = Api::new(base, author)?;
    let reviewer = Api::new(base, reviewer)?;
    let input = json!({ "name": "bench", "channel": "WEBHOOK", "msgType": "NOTICE",
        "content": { "kind": "TEXT", "body": "Bench message ${n}" },
        "account": "bench-hook", "ownerTeam": "bench" });
    let created = author
        .call(
            "mutation($input: CreateTemplateInput!) { createTemplate(input: $input) { id } }",
            json!({ "input": input }),
        )
        .await?;
    let id = created["createTemplate"]["id"]
        .as_str()
        .context("createTemplate answered no id")?
        .to_owned();
    author
        .call(
            "mutation($id: ID!) { submitTemplate(id: $id) { latestVersion } }",
            json!({ "id": id }),
        )
        .await?;
    reviewer
        .call(
            "mutation($id: ID!) { approveTemplate(id: $id, version: 1) { approvedVersion } }",
            json!({ "id": id }),
        )
        .await?;
    Ok(id)
}

/// Latencies and counts of one timed phase.
#[derive(Default)]
struct Phase {
    ok: u64,
    errors: u64,
    /// Messages accepted (batchSend).
    messages: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Message ids answered (send), for the `message(id)` phase.
    ids: Vec<String>,
    first_error: Option<String>,
}

impl Phase {
    fn merge(&mut self, other: Phase) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.messages += other.messages;
        self.latencies.extend(other.latencies);
        self.ids.extend(other.ids);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        round_to(sorted[index].as_secs_f64() * 1000.0, 2)
    }

    fn rate(&self) -> f64 {
        let count = if self.messages > 0 {
            self.messages
        } else {
            self.ok
        };
        count as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    fn report(&self) -> Value {
        json!({
            "requests": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "per_sec": round(self.ok as f64 / self.elapsed.as_secs_f64().max(0.001)),
            "messages_per_sec": round(self.rate()),
            "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
        })
    }
}

/// Runs `clients` copies of `step` until `duration` is over; `step` gets the client and a
/// number unique across clients, and answers how many messages it accepted.
async fn drive<F, Fut>(clients: usize, duration: Duration, limit: Option<u64>, step: F) -> Phase
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(u64, Option<String>)>> + Send,
{
    let step = Arc::new(step);
    let counter = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients.max(1) {
        let (step, counter, accepted) = (
            Arc::clone(&step),
            Arc::clone(&counter),
            Arc::clone(&accepted),
        );
        tasks.spawn(async move {
            let mut phase = Phase::default();
            loop {
                let done = match limit {
                    Some(limit) => accepted.load(Ordering::Relaxed) >= limit,
                    None => Instant::now() >= deadline,
                };
                if done {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                match step(n).await {
                    Ok((messages, id)) => {
                        phase.latencies.push(sent.elapsed());
                        phase.ok += 1;
                        phase.messages += messages;
                        accepted.fetch_add(messages.max(1), Ordering::Relaxed);
                        if let Some(id) = id.filter(|_| phase.ids.len() < 10_000) {
                            phase.ids.push(id);
                        }
                    }
                    Err(error) => {
                        phase.errors += 1;
                        if phase.first_error.is_none() {
                            phase.first_error = Some(format!("{error:#}"));
                        }
                        if phase.errors > 1000 && phase.ok == 0 {
                            break;
                        }
                    }
                }
            }
            phase
        });
    }
    let mut total = Phase::default();
    while let Some(Ok(phase)) = tasks.join_next().await {
        total.merge(phase);
    }
    total.elapsed = started.elapsed();
    total
}

async fn send_phase(
    api: &Api,
    template: &str,
    hook: &str,
    clients: usize,
    duration: Duration,
) -> Phase {
    let (api, template, hook) = (api.clone(), template.to_owned(), hook.to_owned());
    let run = uuid::Uuid::now_v7().simple().to_string();
    drive(clients, duration, None, move |n| {
        let (api, template, hook, run) = (api.clone(), template.clone(), hook.clone(), run.clone());
        async move {
            let input = json!({ "templateId": template, "requestId": format!("bench-{run}-{n}"),
                "receivers": [format!("{hook}/s{n}")], "variables": { "n": n.to_string() } });
            let data = api.call(SEND, json!({ "input": input })).await?;
            let id = data["send"]["messages"][0]["id"]
                .as_str()
                .map(str::to_owned);
            Ok((0, id))
        }
    })
    .await
}

async fn batch_phase(
    api: &Api,
    template: &str,
    hook: &str,
    args: &BenchArgs,
    duration: Duration,
    limit: Option<u64>,
) -> Phase {
    let (api, template, hook) = (api.clone(), template.to_owned(), hook.to_owned());
    let size = args.batch_size.max(1);
    let run = uuid::Uuid::now_v7().simple().to_string();
    drive(args.concurrency, duration, limit, move |n| {
        let (api, template, hook, run) = (api.clone(), template.clone(), hook.clone(), run.clone());
        async move {
            let receivers: Vec<String> = (0..size).map(|i| format!("{hook}/b{n}x{i}")).collect();
            let items: Vec<Value> = receivers
                .chunks(100)
                .map(|chunk| json!({ "receivers": chunk, "variables": { "n": n.to_string() } }))
                .collect();
            let input = json!({ "templateId": template, "requestId": format!("bench-{run}-{n}"),
                "items": items });
            api.call(BATCH, json!({ "input": input })).await?;
            Ok((size as u64, None))
        }
    })
    .await
}

/// `message(id)` from many clients, with one client's figures as `one_client`.
fn message_report(many: &Phase, one: &Phase) -> Value {
    let mut report = many.report();
    report["errors"] = json!(many.errors + one.errors);
    report["one_client"] = one.report();
    report
}

async fn message_phase(api: &Api, ids: &[String], clients: usize, duration: Duration) -> Phase {
    if ids.is_empty() {
        return Phase::default();
    }
    let (api, ids) = (api.clone(), Arc::new(ids.to_vec()));
    drive(clients, duration, None, move |n| {
        let (api, ids) = (api.clone(), Arc::clone(&ids));
        async move {
            // A spread of ids, not one hot row.
            let id = &ids[(n.wrapping_mul(2_654_435_761) % ids.len() as u64) as usize];
            let data = api.call(MESSAGE, json!({ "id": id })).await?;
            if data["message"]["message"].is_null() {
                bail!("message {id} not found");
            }
            Ok((0, None))
        }
    })
    .await
}

async fn queue_depth(store: &store::Store) -> anyhow::Result<u64> {
    count(
        store,
        "SELECT COUNT(*) FROM dispatch_queue WHERE lane <> 'RECEIPTS'",
    )
    .await
}

async fn event_count(store: &store::Store) -> anyhow::Result<u64> {
    count(store, "SELECT COUNT(*) FROM events").await
}

async fn count(store: &store::Store, sql: &str) -> anyhow::Result<u64> {
    let n: i64 = match store {
        store::Store::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await?,
        store::Store::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.readers()).await?,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Events the projections had applied, by the slowest.
async fn applied_events(store: &store::Store) -> anyhow::Result<u64> {
    let mut least = u64::MAX;
    for projection in projections::Projection::ALL {
        let lag =
            projections::lag::lag(store, projection.subscription(), projection.category()).await?;
        least = least.min(u64::try_from(lag.applied.global_position).unwrap_or(0));
    }
    Ok(if least == u64::MAX { 0 } else { least })
}

/// Waits until every projection has applied the whole log.
async fn caught_up(store: &store::Store) -> anyhow::Result<()> {
    loop {
        let mut all = true;
        for projection in projections::Projection::ALL {
            let lag =
                projections::lag::lag(store, projection.subscription(), projection.category())
                    .await?;
            all &= lag.caught_up();
        }
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `herald replay --all` as a user runs it: events per second.
async fn replay(config: &Path, store: &store::Store) -> Value {
    let events = event_count(store).await.unwrap_or(0);
    let started = Instant::now();
    let out = match herald() {
        Ok(herald) => {
            Command::new(herald)
                .arg("--config")
                .arg(config)
                .args(["replay", "--all"])
                .stdin(Stdio::null())
                .output()
                .await
        }
        Err(error) => return json!({ "error": error.to_string() }),
    };
    let secs = started.elapsed().as_secs_f64();
    match out {
        Ok(out) if out.status.success() => json!({ "events": events, "seconds": round_to(secs, 2),
            "per_sec": round(events as f64 / secs.max(0.001)) }),
        Ok(out) => json!({ "error": String::from_utf8_lossy(&out.stderr).trim().to_owned() }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

/// The most a plain batched insert into a copy of the events table achieves, in rows per
/// second: the ceiling for durable accepts on this machine and store.
async fn ceiling(
    store: &store::Store,
    args: &BenchArgs,
    duration: Duration,
) -> anyhow::Result<f64> {
    let (data, metadata): (String, String) =
        match store {
            store::Store::Postgres(s) => {
                sqlx::query_as(
                    "SELECT data::text, metadata::text FROM events \
                 WHERE event_type = 'MessageAccepted' LIMIT 1",
                )
                .fetch_one(s.pool())
                .await?
            }
            store::Store::Sqlite(s) => sqlx::query_as(
                "SELECT data, metadata FROM events WHERE event_type = 'MessageAccepted' LIMIT 1",
            )
            .fetch_one(s.readers())
            .await?,
        };
    let size = args.batch_size.max(1);
    let rows = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    match store {
        store::Store::Postgres(s) => {
            let pool = s.pool().clone();
            sqlx::query("CREATE TABLE bench_ceiling (LIKE events INCLUDING ALL)")
                .execute(&pool)
                .await?;
            let mut tasks = tokio::task::JoinSet::new();
            for client in 0..args.concurrency.clamp(1, 16) {
                let (pool, rows, data, metadata) = (
                    pool.clone(),
                    Arc::clone(&rows),
                    data.clone(),
                    metadata.clone(),
                );
                tasks.spawn(async move {
                    let mut n = 0_u64;
                    while Instant::now() < deadline {
                        let streams: Vec<String> = (0..size)
                            .map(|i| format!("message-c{client}x{n}x{i}"))
                            .collect();
                        let ids: Vec<uuid::Uuid> =
                            (0..size).map(|_| uuid::Uuid::now_v7()).collect();
                        let result = sqlx::query(
                            "INSERT INTO bench_ceiling (stream_id, stream_position, category, \
                             partition_key, event_id, event_type, schema_version, data, metadata) \
                             SELECT s, 1, 'message', 0, e, 'MessageAccepted', 1, $3::json, $4::json \
                             FROM unnest($1::text[], $2::uuid[]) AS t(s, e)",
                        )
                        .bind(&streams)
                        .bind(&ids)
                        .bind(&data)
                        .bind(&metadata)
                        .execute(&pool)
                        .await;
                        if result.is_err() {
                            break;
                        }
                        rows.fetch_add(size as u64, Ordering::Relaxed);
                        n += 1;
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
            let elapsed = started.elapsed().as_secs_f64();
            sqlx::query("DROP TABLE bench_ceiling")
                .execute(&pool)
                .await?;
            Ok(rows.load(Ordering::Relaxed) as f64 / elapsed)
        }
        store::Store::Sqlite(s) => {
            let pool = s.writer().clone();
            let ddl: String = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            )
            .fetch_one(&pool)
            .await?;
            sqlx::query(&ddl.replacen("events", "bench_ceiling", 1))
                .execute(&pool)
                .await?;
            let mut n = 0_u64;
            // SQLite has one writer: one client, as Herald's store has.
            while Instant::now() < deadline {
                let mut tx = pool.begin().await?;
                for i in 0..size {
                    sqlx::query(
                        "INSERT INTO bench_ceiling (stream_id, stream_position, category, \
                         partition_key, event_id, event_type, schema_version, data, metadata, \
                         recorded_at) VALUES ($1, 1, 'message', 0, $2, 'MessageAccepted', 1, \
                         json($3), json($4), 0)",
                    )
                    .bind(format!("message-x{n}x{i}"))
                    .bind(uuid::Uuid::now_v7())
                    .bind(&data)
                    .bind(&metadata)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                rows.fetch_add(size as u64, Ordering::Relaxed);
                n += 1;
            }
            let elapsed = started.elapsed().as_secs_f64();
            sqlx::query("DROP TABLE bench_ceiling")
                .execute(&pool)
                .await?;
            Ok(rows.load(Ordering::Relaxed) as f64 / elapsed)
        }
    }
}
