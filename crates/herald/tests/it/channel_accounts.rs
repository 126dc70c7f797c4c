//! Channel accounts made at run time through GraphQL: used by dispatch within seconds, on
//! another process too; secrets sealed in the store, absent from every answer and log line,
//! and still good after `herald keys rotate`; bad definitions refused with coded errors; the
//! audit trail; other tenants kept out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use store::{EventStore, Store, on_read};

use crate::app::{Client, TestApp, serve_fake, spawn, webhook_account};
use crate::deployment::Deployment;
use crate::dispatch::{send, wait_for};
use crate::support::serve_logged;

const CONFIG_SECRET: &str = "cfg-secret-51c0";
const SECRET: &str = "rt-secret-3f9a7c21";
const NEW_SECRET: &str = "rt-secret-rotated-88d1e4";

/// A receiving system that checks the webhook signature against the secrets it knows and
/// records which one signed each call; anything else is refused with 401.
async fn receiver() -> (String, Arc<Mutex<Vec<&'static str>>>) {
    let signed = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(signed): State<Arc<Mutex<Vec<&'static str>>>>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let timestamp: i64 = header("x-herald-timestamp").parse().unwrap_or(0);
                    for secret in [CONFIG_SECRET, SECRET, NEW_SECRET] {
                        if header("x-herald-signature")
                            == dispatch::webhook::signature(secret.as_bytes(), timestamp, &body)
                        {
                            signed.lock().unwrap().push(secret);
                            return StatusCode::OK;
                        }
                    }
                    StatusCode::UNAUTHORIZED
                },
            ),
        )
        .with_state(Arc::clone(&signed));
    (format!("{}/hook", serve_fake(app).await), signed)
}

const CREATE: &str = "mutation($input: CreateChannelAccountInput!) { createChannelAccount(input: $input) { id channel supplier weight secretNames enabled readOnly source version settings { name value } } }";
const UPDATE: &str = "mutation($input: UpdateChannelAccountInput!) { updateChannelAccount(input: $input) { id version secretNames weight } }";

fn runtime_hook(id: &str, secret: &str) -> Value {
    json!({ "id": id, "channel": "WEBHOOK", "supplier": "webhook",
            "settings": [{ "name": "note", "value": "team hooks" }],
            "secrets": [{ "name": "secret", "value": secret }] })
}

/// The account a message was dispatched through.
async fn dispatched_by(app: &TestApp, stream: &str) -> String {
    wait_for(app, stream, "MessageDispatched").await;
    let events = app.store.read_stream(stream, 1, 100).await.unwrap();
    let last = events.last().unwrap().data_json().unwrap();
    last["account"].as_str().unwrap().to_owned()
}

async fn sealed_rows(store: &Store) -> Vec<String> {
    on_read!(store, |pool| sqlx::query_scalar::<_, String>(
        "SELECT sealed FROM account_secrets ORDER BY account_id, name"
    )
    .fetch_all(pool)
    .await)
    .unwrap()
}

async fn account_events(store: &Store, id: &str) -> String {
    store
        .read_stream(&format!("channel_account-{id}"), 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e.event_type, e.data, e.metadata))
        .collect::<Vec<_>>()
        .join("\n")
}

fn code(answer: &Value) -> (&str, &str) {
    let ext = &answer["errors"][0]["extensions"];
    (
        ext["code"].as_str().unwrap_or_else(|| panic!("{answer}")),
        ext["reason"].as_str().unwrap_or(""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_account_sends_within_seconds_and_keeps_its_secret_sealed() {
    let prefix = format!("herald-test-{}", uuid::Uuid::now_v7().simple());
    let app = spawn("postgres", |c| {
        c.accounts = vec![webhook_account(CONFIG_SECRET, "")];
        c.security.secret_key = commands::secrets::Keyring::generate();
        c.runtime.poll_ms = 200;
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        c.cache.redis_url = crate::support::redis_url();
        c.cache.key_prefix = prefix.clone();
    })
    .await;
    let (url, signed) = receiver().await;
    let admin = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send,read").await;
    let (_, me) = app.gql(Some(&admin), "{ me { keyId } }", json!({})).await;
    let admin_id = me["data"]["me"]["keyId"].as_str().unwrap().to_owned();

    // Created through the API: the answer names the secret, never its value.
    let created_at = Instant::now();
    let (_, created) = app
        .gql(
            Some(&admin),
            CREATE,
            json!({ "input": runtime_hook("hooks-rt", SECRET) }),
        )
        .await;
    let account = &created["data"]["createChannelAccount"];
    assert_eq!(account["id"], "hooks-rt", "{created}");
    assert_eq!(account["secretNames"], json!(["secret"]));
    assert_eq!(account["source"], "RUNTIME");
    assert_eq!(account["readOnly"], false);
    assert_eq!(account["version"], 1);
    assert!(!created.to_string().contains(SECRET));

    // At rest: sealed, and not in the account's events either.
    let sealed = sealed_rows(&app.store).await;
    assert_eq!(sealed.len(), 1);
    assert!(sealed[0].starts_with("v1."), "{}", sealed[0]);
    assert!(!sealed[0].contains(SECRET));
    let events = account_events(&app.store, "hooks-rt").await;
    assert!(events.contains("ChannelAccountCreated"), "{events}");
    assert!(!events.contains(SECRET), "{events}");

    // A template naming it sends through it, signed with its secret, within seconds.
    let template = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE",
        "content": { "kind": "TEXT", "body": "Build ${n}" }, "account": "hooks-rt", "ownerTeam": "ci" });
    let template = app
        .client()
        .approved_template(&admin, &reviewer, template)
        .await;
    let stream = send(&app, &sender, &template, &url).await;
    assert_eq!(dispatched_by(&app, &stream).await, "hooks-rt");
    assert!(
        created_at.elapsed() < Duration::from_secs(5),
        "used {:?} after it was created",
        created_at.elapsed()
    );
    assert_eq!(*signed.lock().unwrap(), [SECRET]);

    // A new secret takes over on the next reload.
    let (_, updated) = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "input": { "id": "hooks-rt", "weight": 5,
                "secrets": [{ "name": "secret", "value": NEW_SECRET }] } }),
        )
        .await;
    assert_eq!(
        updated["data"]["updateChannelAccount"]["version"], 2,
        "{updated}"
    );
    assert!(!updated.to_string().contains(NEW_SECRET));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stream = send(&app, &sender, &template, &url).await;
    assert_eq!(dispatched_by(&app, &stream).await, "hooks-rt");
    assert_eq!(signed.lock().unwrap().last(), Some(&NEW_SECRET));
    assert!(
        !sealed_rows(&app.store)
            .await
            .iter()
            .any(|s| s.contains(NEW_SECRET))
    );

    // Disabled: messages naming it go to the channel's other account.
    let (_, disabled) = app
        .gql(
            Some(&admin),
            "mutation { disableChannelAccount(id: \"hooks-rt\", reason: \"supplier outage\") { enabled } }",
            json!({}),
        )
        .await;
    assert_eq!(
        disabled["data"]["disableChannelAccount"]["enabled"], false,
        "{disabled}"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stream = send(&app, &sender, &template, &url).await;
    assert_eq!(dispatched_by(&app, &stream).await, "hooks");
    assert_eq!(signed.lock().unwrap().last(), Some(&CONFIG_SECRET));

    // The list shows the file's account read-only beside the tenant's own, and the audit
    // trail says who changed what; no answer holds a secret.
    let (_, listed) = app
        .gql(
            Some(&admin),
            "{ channelAccounts { id source readOnly enabled secretNames history { kind actor changed secretsSet reason } } }",
            json!({}),
        )
        .await;
    let text = listed.to_string();
    for secret in [CONFIG_SECRET, SECRET, NEW_SECRET] {
        assert!(!text.contains(secret), "{text}");
    }
    let accounts = listed["data"]["channelAccounts"].as_array().unwrap();
    assert_eq!(accounts[0]["id"], "hooks", "{listed}");
    assert_eq!(accounts[0]["source"], "CONFIG");
    assert_eq!(accounts[0]["readOnly"], true);
    assert_eq!(accounts[0]["history"], json!([]));
    let history = &accounts[1]["history"];
    assert_eq!(
        history,
        &json!([
            { "kind": "CREATED", "actor": admin_id, "changed": [], "secretsSet": ["secret"], "reason": null },
            { "kind": "UPDATED", "actor": admin_id, "changed": ["weight"], "secretsSet": ["secret"], "reason": null },
            { "kind": "DISABLED", "actor": admin_id, "changed": [], "secretsSet": [], "reason": "supplier outage" },
        ]),
        "{listed}"
    );

    // Another tenant sees nothing of it and cannot change it.
    let other = app.key("beta", "admin").await;
    let (_, seen) = app
        .gql(
            Some(&other),
            "{ channelAccount(id: \"hooks-rt\") { id } channelAccounts { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        seen["data"],
        json!({ "channelAccount": null, "channelAccounts": [{ "id": "hooks" }] })
    );
    let (_, refused) = app
        .gql(
            Some(&other),
            "mutation { enableChannelAccount(id: \"hooks-rt\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&refused), ("NOT_FOUND", "ACCOUNT_NOT_FOUND"));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_account_never_carries_a_message() {
    let app = spawn("sqlite", |c| {
        c.security.secret_key = commands::secrets::Keyring::generate();
        c.runtime.poll_ms = 100;
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
    })
    .await;
    let (url, signed) = receiver().await;
    let owner = app.key("acme", "admin").await;
    let (_, created) = app
        .gql(
            Some(&owner),
            CREATE,
            json!({ "input": runtime_hook("acme-hooks", SECRET) }),
        )
        .await;
    assert_eq!(created["data"]["createChannelAccount"]["id"], "acme-hooks");
    // Beta's template names acme's account: no account of beta's serves the channel, so the
    // message waits in the queue rather than go out through acme's.
    let admin = app.key("beta", "admin").await;
    let reviewer = app.key("beta", "admin").await;
    let sender = app.key("beta", "send,read").await;
    let template = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE",
        "content": { "kind": "TEXT", "body": "Build ${n}" }, "account": "acme-hooks", "ownerTeam": "ci" });
    let template = app
        .client()
        .approved_template(&admin, &reviewer, template)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stream = send(&app, &sender, &template, &url).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let types: Vec<String> = app
        .store
        .read_stream(&stream, 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["MessageAccepted"]);
    assert!(signed.lock().unwrap().is_empty());
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_are_refused_with_a_code_that_says_what_is_wrong() {
    // No secret key: accounts without secrets work, secrets are refused.
    let app = spawn("sqlite", |c| {
        c.accounts = vec![webhook_account(CONFIG_SECRET, "")];
    })
    .await;
    let admin = app.key("acme", "admin").await;
    let create = |input: Value| {
        let (client, admin) = (app.client(), admin.clone());
        async move {
            client
                .gql(Some(&admin), CREATE, json!({ "input": input }))
                .await
                .1
        }
    };
    let cases = [
        (
            json!({ "id": "pigeons", "channel": "WEBHOOK", "supplier": "carrier-pigeon" }),
            ("VALIDATION", "ACCOUNT_UNUSABLE"),
            "unknown supplier \"carrier-pigeon\"",
        ),
        (
            json!({ "id": "hooks-2", "channel": "WEBHOOK", "supplier": "webhook" }),
            ("VALIDATION", "ACCOUNT_UNUSABLE"),
            "missing credential \"secret\"",
        ),
        (
            json!({ "id": "sms-hooks", "channel": "SMS", "supplier": "webhook",
                    "secrets": [{ "name": "secret", "value": "s" }] }),
            ("VALIDATION", "ACCOUNT_UNUSABLE"),
            "cannot send on SMS",
        ),
        (
            json!({ "id": "Bad Id", "channel": "INBOX", "supplier": "inbox" }),
            ("VALIDATION", "INVALID_ACCOUNT_ID"),
            "lowercase letters",
        ),
        (
            json!({ "id": "slow", "channel": "INBOX", "supplier": "inbox", "timeoutSecs": 0 }),
            ("VALIDATION", "INVALID_ACCOUNT"),
            "timeout_secs: must be 1 to 300",
        ),
        (
            json!({ "id": "fast", "channel": "INBOX", "supplier": "inbox", "rateLimitPerSec": -1.0 }),
            ("VALIDATION", "INVALID_ACCOUNT"),
            "rate_limit_per_sec",
        ),
        (
            json!({ "id": "hooks", "channel": "INBOX", "supplier": "inbox" }),
            ("CONFLICT", "ACCOUNT_EXISTS"),
            "already exists",
        ),
        (
            runtime_hook("hooks-3", SECRET),
            ("VALIDATION", "SECRET_KEY_MISSING"),
            "HERALD_SECRET_KEY",
        ),
    ];
    for (input, expected, says) in cases {
        let answer = create(input.clone()).await;
        assert_eq!(code(&answer), expected, "{input}: {answer}");
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{input}: {message}");
        assert!(!answer.to_string().contains(SECRET));
    }
    let invalid =
        create(json!({ "id": "slow", "channel": "INBOX", "supplier": "inbox", "timeoutSecs": 0 }))
            .await;
    assert_eq!(invalid["errors"][0]["extensions"]["field"], "timeout_secs");

    // An account without secrets needs no key; its id is then taken.
    let inbox = json!({ "id": "inbox-2", "channel": "INBOX", "supplier": "inbox" });
    let created = create(inbox.clone()).await;
    assert_eq!(
        created["data"]["createChannelAccount"]["id"], "inbox-2",
        "{created}"
    );
    assert_eq!(code(&create(inbox).await), ("CONFLICT", "ACCOUNT_EXISTS"));
    // The file's accounts are read-only.
    let (_, answer) = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "input": { "id": "hooks", "weight": 2 } }),
        )
        .await;
    assert_eq!(code(&answer), ("CONFLICT", "ACCOUNT_READ_ONLY"));
    // Removing a secret the account does not have says so.
    let (_, answer) = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "input": { "id": "inbox-2", "removeSecrets": ["token"] } }),
        )
        .await;
    assert_eq!(code(&answer), ("VALIDATION", "INVALID_ACCOUNT"));
    // Only admin keys manage accounts.
    let sender = app.key("acme", "send,read").await;
    let (_, answer) = app
        .gql(Some(&sender), "{ channelAccounts { id } }", json!({}))
        .await;
    assert_eq!(code(&answer), ("FORBIDDEN", "MISSING_SCOPE"));
    app.finish().await;
}

/// Two processes share Postgres and Redis: the account is made through the API process and
/// used by the dispatch process; no log line of either holds the secret. Then the key is
/// rotated with the CLI, and a process that knows only the new key sends through the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_survives_a_key_rotation_and_never_reaches_a_log() {
    let (url, signed) = receiver().await;
    let prefix = format!("herald-test-{}", uuid::Uuid::now_v7().simple());
    let deployment = Deployment::new(&format!(
        "[log]\nformat = \"json\"\n\n[runtime]\npoll_ms = 200\n\n\
         [dispatch]\ndedup_window_secs = 0\nfrequency_cap = 0\n\n\
         [cache]\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n",
        crate::support::redis_url()
    ))
    .await;
    let (old_key, new_key) = (
        commands::secrets::Keyring::generate(),
        commands::secrets::Keyring::generate(),
    );
    let role = |roles: &str, key: &str| {
        let mut command = deployment.command();
        command
            .env("HERALD_SECRET_KEY", key)
            .env("RUST_LOG", "info,dispatch=debug,herald=debug")
            .env("HERALD_ROLE", roles);
        command
    };
    let (api, api_logs) = serve_logged(role("api", &old_key)).await;
    let (dispatcher, dispatch_logs) = serve_logged(role("dispatch,projections", &old_key)).await;
    let client = Client {
        address: api.address,
    };
    let (_, created) = client
        .gql(
            Some(&deployment.author),
            CREATE,
            json!({ "input": runtime_hook("hooks-rt", SECRET) }),
        )
        .await;
    assert_eq!(
        created["data"]["createChannelAccount"]["id"], "hooks-rt",
        "{created}"
    );
    let template = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE",
        "content": { "kind": "TEXT", "body": "Build ${n}" }, "account": "hooks-rt", "ownerTeam": "ci" });
    let template = client
        .approved_template(&deployment.author, &deployment.reviewer, template)
        .await;
    let store = deployment.store().await;
    let sent = Instant::now();
    send_and_wait(&client, &store, &deployment.sender, &template, &url).await;
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(*signed.lock().unwrap(), [SECRET]);
    for line in api_logs
        .lock()
        .unwrap()
        .iter()
        .chain(dispatch_logs.lock().unwrap().iter())
    {
        assert!(!line.contains(SECRET), "{line}");
    }
    drop((api, dispatcher));

    // Rotate: the old key opens, the new one seals; all in one transaction.
    let before = sealed_rows(&store).await;
    let output = deployment
        .command()
        .env("HERALD_SECRET_KEY", &new_key)
        .env("HERALD_SECRET_KEY_PREVIOUS", &old_key)
        .args(["keys", "rotate"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("1 secrets sealed again"), "{stdout}");
    let after = sealed_rows(&store).await;
    assert_ne!(before, after);
    assert!(!after[0].contains(SECRET));
    let key_id = |sealed: &str| sealed.split('.').nth(1).unwrap().to_owned();
    assert_ne!(key_id(&before[0]), key_id(&after[0]));

    // A process with only the new key sends through the account.
    let (server, _) = serve_logged(role("all", &new_key)).await;
    let client = Client {
        address: server.address,
    };
    send_and_wait(&client, &store, &deployment.sender, &template, &url).await;
    assert_eq!(*signed.lock().unwrap(), [SECRET, SECRET]);
    drop(server);
    deployment.remove().await;
}

async fn send_and_wait(client: &Client, store: &Store, key: &str, template: &str, url: &str) {
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let input = json!({ "templateId": template, "receivers": [url], "variables": { "n": "1" } });
    let (_, sent) = client
        .gql(Some(key), query, json!({ "input": input }))
        .await;
    let id = sent["data"]["send"]["messages"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{sent}"))
        .to_owned();
    let stream = format!("message-{id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = store.read_stream(&stream, 1, 100).await.unwrap();
        if events.iter().any(|e| e.event_type == "MessageDispatched") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: {:?}",
            events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moving a deployment moves its run-time accounts and live policy: the export holds the
/// secrets sealed, never in the clear, and the target opens them with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_policy_move_from_sqlite_to_postgres_still_sealed() {
    let key = commands::secrets::Keyring::generate();
    let app = spawn("sqlite", |c| c.security.secret_key = key.clone()).await;
    let admin = app.key("acme", "admin").await;
    let (_, created) = app
        .gql(
            Some(&admin),
            CREATE,
            json!({ "input": runtime_hook("hooks-rt", SECRET) }),
        )
        .await;
    assert_eq!(
        created["data"]["createChannelAccount"]["id"], "hooks-rt",
        "{created}"
    );
    let set = "mutation { setPolicy(input: { dedupWindowSecs: 42 }) { version } }";
    let (_, policy) = app.gql(Some(&admin), set, json!({})).await;
    assert_eq!(policy["data"]["setPolicy"]["version"], 1, "{policy}");
    let source = app.database_url.clone();
    app.finish().await;

    let dir = crate::support::empty_dir();
    let file = dir.join("store.ndjson");
    let file_arg = file.to_str().unwrap();
    let target = crate::support::postgres_database().await;
    for (url, args) in [
        (&source, ["export", "--out", file_arg]),
        (&target, ["import", "--in", file_arg]),
    ] {
        let output = crate::support::herald(&dir)
            .args(["--database-url", url])
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let exported = std::fs::read_to_string(&file).unwrap();
    assert!(exported.contains("\"account_secrets\""));
    assert!(!exported.contains(SECRET));

    let store = Store::connect(&target).await.unwrap();
    let keyring = commands::secrets::Keyring::new(Some(&key), &[]).unwrap();
    let (live, broken) = commands::accounts::load_all(&store, &keyring)
        .await
        .unwrap();
    assert!(broken.is_empty(), "{broken:?}");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].account_id, "hooks-rt");
    assert_eq!(live[0].secrets["secret"], SECRET);
    let scopes = commands::policies::load_all(&store).await.unwrap();
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0].1.dedup_window_secs, Some(42));
    if let Store::Postgres(s) = &store {
        s.pool().close().await;
    }
    crate::support::drop_database(&target).await;
}
