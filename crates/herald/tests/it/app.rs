//! An in-process Herald on a free port with a store of its own, driven over real HTTP, plus
//! tenants and keys made the way `herald apikey create` makes them.

use std::net::SocketAddr;

use commands::keys::{self, Scopes};
use domain::TenantId;
use herald::config::Config;
use herald::server::{self, AppState};
use store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support;

pub struct TestApp {
    pub address: SocketAddr,
    pub store: Store,
    /// The store's URL, for `herald` commands run beside the app.
    pub database_url: String,
    /// The dispatch options the lanes read: send new ones to change them while the app runs.
    pub options: tokio::sync::watch::Sender<dispatch::worker::WorkerOptions>,
    shutdown: CancellationToken,
    cleanup: Option<String>,
    // Dropping the set aborts the dispatch role with the app.
    _dispatch: tokio::task::JoinSet<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub async fn finish(mut self) {
        self.shutdown.cancel();
        if let Some(url) = self.cleanup.take() {
            if let Store::Postgres(s) = &self.store {
                s.pool().close().await;
            }
            support::drop_database(&url).await;
        }
    }

    /// A tenant with a key holding `scopes`; returns the key.
    pub async fn key(&self, tenant: &str, scopes: &str) -> String {
        let tenant = TenantId::parse(tenant).unwrap();
        if !keys::tenant_exists(&self.store, &tenant).await.unwrap() {
            keys::create_tenant(&self.store, &tenant).await.unwrap();
        }
        let scopes = Scopes::parse(scopes).unwrap();
        keys::create_api_key(&self.store, &tenant, &scopes, "test")
            .await
            .unwrap()
            .key
    }

    pub async fn gql(
        &self,
        key: Option<&str>,
        query: &str,
        variables: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        Client {
            address: self.address,
        }
        .gql(key, query, variables)
        .await
    }

    pub async fn post(&self, key: Option<&str>, body: &str) -> (u16, serde_json::Value) {
        Client {
            address: self.address,
        }
        .post(key, body)
        .await
    }

    pub fn client(&self) -> Client {
        Client {
            address: self.address,
        }
    }
}

/// Speaks HTTP to a running Herald.
#[derive(Clone, Copy)]
pub struct Client {
    pub address: SocketAddr,
}

/// A WEBHOOK account `hooks` signing with `secret`; `extra` adds TOML lines (a rate limit...).
pub fn webhook_account(secret: &str, extra: &str) -> dispatch::accounts::AccountConfig {
    let text = format!(
        "id = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\n{extra}\ncredentials = {{ secret = \"{secret}\" }}"
    );
    toml::from_str(&text).unwrap()
}

impl Client {
    /// Creates a template from `input`, submits it as `author` and approves it as `reviewer`:
    /// the steps every sending test starts with. Returns the template's id.
    pub async fn approved_template(
        &self,
        author: &str,
        reviewer: &str,
        input: serde_json::Value,
    ) -> String {
        let create =
            "mutation($input: CreateTemplateInput!) { createTemplate(input: $input) { id } }";
        let (_, created) = self
            .gql(Some(author), create, serde_json::json!({ "input": input }))
            .await;
        let id = created["data"]["createTemplate"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_owned();
        let submit = "mutation($id: ID!) { submitTemplate(id: $id) { latestVersion } }";
        self.gql(Some(author), submit, serde_json::json!({ "id": id }))
            .await;
        let approve =
            "mutation($id: ID!) { approveTemplate(id: $id, version: 1) { approvedVersion } }";
        let (_, approved) = self
            .gql(Some(reviewer), approve, serde_json::json!({ "id": id }))
            .await;
        assert_eq!(
            approved["data"]["approveTemplate"]["approvedVersion"], 1,
            "{approved}"
        );
        id
    }

    /// POSTs a GraphQL request; returns the HTTP status and the JSON answer.
    pub async fn gql(
        &self,
        key: Option<&str>,
        query: &str,
        variables: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        self.post(key, &body).await
    }

    pub async fn post(&self, key: Option<&str>, body: &str) -> (u16, serde_json::Value) {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let request = format!(
            "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(self.address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response);
        let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (
            status,
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }
}

pub async fn spawn(backend: &str, tune: impl FnOnce(&mut Config)) -> TestApp {
    let (url, cleanup) = match backend {
        "postgres" => {
            let url = support::postgres_database().await;
            (url.clone(), Some(url))
        }
        _ => (
            format!("sqlite://{}/herald.db", support::empty_dir().display()),
            None,
        ),
    };
    spawn_on(url, cleanup, tune).await
}

/// An app on the store at `url` (which may hold data already); `cleanup` is a Postgres
/// database to drop when the app finishes.
pub async fn spawn_on(
    url: String,
    cleanup: Option<String>,
    tune: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config::default();
    config.database.url = url;
    tune(&mut config);
    let database_url = config.database.url.clone();
    let state = AppState::connect(&config).await.unwrap();
    let store = state.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let mut options = herald::roles::dispatch_options(&config).unwrap();
    options.policies = state.policies.clone();
    let (options_sender, options) = tokio::sync::watch::channel(options);
    let mut dispatch = herald::roles::start_dispatch(
        &store,
        &config,
        &state.accounts,
        &state.tokens,
        options,
        &shutdown,
    )
    .unwrap();
    let mut projections = herald::roles::start_projections(&store, &state.bus, &shutdown);
    let mut crowds = herald::roles::start_crowds(&state, &config, &shutdown).unwrap();
    let mut alerts = herald::alerts::start(&store, &config, &shutdown).unwrap();
    // One set owns every role, so dropping the app stops them.
    dispatch.spawn(async move { while projections.join_next().await.is_some() {} });
    dispatch.spawn(async move { while crowds.join_next().await.is_some() {} });
    dispatch.spawn(async move { while alerts.join_next().await.is_some() {} });
    tokio::spawn(server::run(listener, state, shutdown.clone()));
    TestApp {
        address,
        store,
        database_url,
        options: options_sender,
        shutdown,
        cleanup,
        _dispatch: dispatch,
    }
}

/// Runs an API test against both backends.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::app::spawn("postgres", |_| {}).await;
                    super::$name(&app).await;
                    app.finish().await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::app::spawn("sqlite", |_| {}).await;
                    super::$name(&app).await;
                    app.finish().await;
                }
            )*
        }
    };
}
pub(crate) use both_backends;

/// Serves `router` on a free loopback port, as a fake supplier; its base URL (`http://ip:port`).
pub async fn serve_fake(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// The `[[accounts]]` entries of a configuration snippet.
pub fn accounts_from_toml(toml: &str) -> Vec<dispatch::accounts::AccountConfig> {
    #[derive(serde::Deserialize)]
    struct Accounts {
        accounts: Vec<dispatch::accounts::AccountConfig>,
    }
    toml::from_str::<Accounts>(toml).unwrap().accounts
}
