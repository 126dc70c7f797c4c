//! The sandbox: a sandbox tenant's messages reach whitelisted receivers only; the rest end in
//! `MessageDiscarded` with `NOT_WHITELISTED` and never reach the supplier. Other tenants are not
//! touched, and the whitelist changes while Herald runs.

use serde_json::json;
use store::EventStore;

use crate::app::{TestApp, spawn, webhook_account};
use crate::dispatch::{SECRET, receiver, send, template, wait_for};

async fn discard_rule(app: &TestApp, stream: &str) -> serde_json::Value {
    app.store.read_stream(stream, 2, 1).await.unwrap()[0]
        .data_json()
        .unwrap()["rule"]
        .clone()
}

async fn sandbox_sends_only_to_the_whitelist(backend: &str) {
    let (hook, calls) = receiver().await;
    let allowed = format!("{hook}/ok");
    let other = format!("{hook}/ok?team=ops");
    let whitelist = vec![allowed.clone()];
    let app = spawn(backend, move |c| {
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        c.accounts = vec![webhook_account(SECRET, "")];
        c.sandbox.tenants = vec!["acme".to_owned()];
        c.sandbox.whitelist = whitelist;
    })
    .await;
    let (acme_template, acme) = template(&app, "WEBHOOK").await;

    let to_allowed = send(&app, &acme, &acme_template, &allowed).await;
    let to_other = send(&app, &acme, &acme_template, &other).await;
    wait_for(&app, &to_allowed, "MessageDispatched").await;
    assert_eq!(
        wait_for(&app, &to_other, "MessageDiscarded").await,
        ["MessageAccepted", "MessageDiscarded"]
    );
    assert_eq!(discard_rule(&app, &to_other).await, "NOT_WHITELISTED");

    // Another tenant is not in the sandbox: its message to the same receiver goes out.
    let author = app.key("beta", "admin").await;
    let reviewer = app.key("beta", "admin").await;
    let beta = app.key("beta", "send,read").await;
    let input = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE",
        "content": { "kind": "TEXT", "body": "Build ${n} finished" },
        "account": "hooks", "ownerTeam": "ci" });
    let beta_template = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;
    let from_beta = send(&app, &beta, &beta_template, &other).await;
    wait_for(&app, &from_beta, "MessageDispatched").await;

    // The supplier saw the whitelisted message and the other tenant's, nothing else.
    let seen: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c["tenant"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["acme", "beta"]);

    // The whitelist grows while Herald runs (as a reloaded configuration does).
    app.options
        .send_modify(|o| o.sandbox.whitelist.push(other.clone()));
    let now_allowed = send(&app, &acme, &acme_template, &other).await;
    wait_for(&app, &now_allowed, "MessageDispatched").await;
    assert_eq!(calls.lock().unwrap().len(), 3);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sandbox_whitelist() {
    sandbox_sends_only_to_the_whitelist("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sandbox_whitelist() {
    sandbox_sends_only_to_the_whitelist("postgres").await;
}
