//! Live policy across processes: a rule set through the API process changes what a separate
//! dispatch process does within seconds, with no restart; a template's rules override its
//! tenant's; each change is recorded with its actor; bad rules are refused with their field.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use store::{EventStore, Store};

use crate::app::{Client, serve_fake};
use crate::deployment::Deployment;
use crate::support::serve;

const SET: &str = "mutation($input: SetPolicyInput!) { setPolicy(input: $input) { templateId discard dedupWindowSecs version history { actor changed } } }";

/// Sends one message and waits for its outcome: the last event's type and its `rule`, if any.
async fn outcome(
    client: &Client,
    store: &Store,
    key: &str,
    template: &str,
    url: &str,
) -> (String, String) {
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
        if let Some(last) = events.last()
            && last.event_type != "MessageAccepted"
        {
            let data: Value = last.data_json().unwrap();
            let rule = data["rule"].as_str().unwrap_or("").to_owned();
            return (last.event_type.clone(), rule);
        }
        assert!(Instant::now() < deadline, "{stream} has no outcome");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends until a message ends in `expected`; returns how long that took.
async fn until(
    client: &Client,
    store: &Store,
    key: &str,
    template: &str,
    url: &str,
    expected: (&str, &str),
) -> Duration {
    let started = Instant::now();
    loop {
        let got = outcome(client, store, key, template, url).await;
        if (got.0.as_str(), got.1.as_str()) == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {got:?}, not {expected:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_set_on_one_process_changes_another_within_seconds() {
    let hook = axum::Router::new().route("/hook", post(|| async { StatusCode::OK }));
    let url = format!("{}/hook", serve_fake(hook).await);
    let prefix = format!("herald-test-{}", uuid::Uuid::now_v7().simple());
    let deployment = Deployment::new(&format!(
        "[runtime]\npoll_ms = 500\n\n[dispatch]\ndedup_window_secs = 0\nfrequency_cap = 0\n\n\
         [cache]\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n\n\
         [[accounts]]\nid = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = {{ secret = \"s\" }}\n",
        crate::support::redis_url()
    ))
    .await;
    let role = |roles: &str| {
        let mut command = deployment.command();
        command.env("HERALD_ROLE", roles);
        command
    };
    let api = serve(role("api")).await;
    let _dispatcher = serve(role("dispatch,projections")).await;
    let client = Client {
        address: api.address,
    };
    let store = deployment.store().await;
    let template = |name: &str| {
        json!({ "name": name, "channel": "WEBHOOK", "msgType": "NOTICE",
            "content": { "kind": "TEXT", "body": "Build ${n}" }, "account": "hooks", "ownerTeam": "ci" })
    };
    let builds = client
        .approved_template(&deployment.author, &deployment.reviewer, template("builds"))
        .await;
    let alerts = client
        .approved_template(&deployment.author, &deployment.reviewer, template("alerts"))
        .await;
    let sender = &deployment.sender;
    assert_eq!(
        outcome(&client, &store, sender, &builds, &url).await.0,
        "MessageDispatched"
    );

    // The tenant's discard switch, set through the API process, reaches the dispatch process.
    let (_, set) = client
        .gql(
            Some(&deployment.author),
            SET,
            json!({ "input": { "discard": true } }),
        )
        .await;
    assert_eq!(set["data"]["setPolicy"]["discard"], true, "{set}");
    assert_eq!(
        set["data"]["setPolicy"]["history"][0]["changed"],
        json!(["discard"])
    );
    let took = until(
        &client,
        &store,
        sender,
        &builds,
        &url,
        ("MessageDiscarded", "DISCARD_SWITCH"),
    )
    .await;
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // A template's own rule overrides its tenant's: alerts go out again, builds stay off.
    let (_, set) = client
        .gql(
            Some(&deployment.author),
            SET,
            json!({ "input": { "templateId": alerts, "discard": false } }),
        )
        .await;
    assert_eq!(set["data"]["setPolicy"]["templateId"], alerts, "{set}");
    let took = until(
        &client,
        &store,
        sender,
        &alerts,
        &url,
        ("MessageDispatched", ""),
    )
    .await;
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        outcome(&client, &store, sender, &builds, &url).await,
        ("MessageDiscarded".to_owned(), "DISCARD_SWITCH".to_owned())
    );

    // The tenant switches it off again: every change is in the history with its actor.
    let (_, me) = client
        .gql(Some(&deployment.author), "{ me { keyId } }", json!({}))
        .await;
    let (_, set) = client
        .gql(
            Some(&deployment.author),
            SET,
            json!({ "input": { "discard": false, "dedupWindowSecs": 60 } }),
        )
        .await;
    let policy = &set["data"]["setPolicy"];
    assert_eq!(policy["version"], 2, "{set}");
    assert_eq!(policy["history"][1]["actor"], me["data"]["me"]["keyId"]);
    assert_eq!(
        policy["history"][1]["changed"],
        json!(["dedup_window_secs", "discard"])
    );
    let took = until(
        &client,
        &store,
        sender,
        &builds,
        &url,
        ("MessageDispatched", ""),
    )
    .await;
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // Bad rules are refused with the field; only admin keys set policy.
    let (_, bad) = client
        .gql(
            Some(&deployment.author),
            SET,
            json!({ "input": { "night": { "start": "25:00", "end": "08:00", "resume": "09:00", "zone": "+08:00" } } }),
        )
        .await;
    let ext = &bad["errors"][0]["extensions"];
    assert_eq!(ext["reason"], "INVALID_POLICY", "{bad}");
    assert_eq!(ext["field"], "night.start");
    let (_, forbidden) = client.gql(Some(sender), SET, json!({ "input": {} })).await;
    assert_eq!(
        forbidden["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{forbidden}"
    );
    drop(api);
    deployment.remove().await;
}
