//! SIGTERM: a dispatching process stops taking work, finishes the messages in flight, records
//! their outcomes and exits cleanly; a process started after it sends the rest, none twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;
use store::{EventStore, LogFilter};

use crate::app::{Client, serve_fake};
use crate::deployment::Deployment;
use crate::support::{serve, serve_with, terminate};

const MESSAGES: usize = 40;

async fn dispatched(store: &store::Store) -> usize {
    let filter = LogFilter {
        event_types: vec!["MessageDispatched".into()],
        ..LogFilter::all()
    };
    let mut at = store::Checkpoint::START;
    let mut n = 0;
    loop {
        let batch = store.read_log(at, &filter, 1_000).await.unwrap();
        if batch.events.is_empty() && !batch.blocked {
            return n;
        }
        n += batch.events.len();
        at = batch.next;
        if batch.events.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_what_is_in_flight_and_loses_nothing() {
    // A supplier taking 300 ms a call, counting the calls it completes.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let supplier = axum::Router::new().route(
        "/hook",
        post(move || {
            let counter = Arc::clone(&counter);
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                counter.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }
        }),
    );
    let hook = format!("{}/hook", serve_fake(supplier).await);

    let deployment = Deployment::new(
        "[dispatch]\nconcurrency = 8\nlease_secs = 120\ndedup_window_secs = 0\nfrequency_cap = 0\n\n\
         [[accounts]]\nid = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = { secret = \"s\" }\n",
    )
    .await;
    let mut first = serve(deployment.command()).await;
    let api = Client {
        address: first.address,
    };
    let template = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE", "content": { "kind": "TEXT", "body": "m" }, "account": "hooks", "ownerTeam": "t" });
    let id = api
        .approved_template(&deployment.author, &deployment.reviewer, template)
        .await;
    let receivers: Vec<String> = (0..MESSAGES).map(|i| format!("{hook}?m={i}")).collect();
    let query = "mutation($input: SendInput!) { send(input: $input) { requestId } }";
    let (status, sent) = api
        .gql(
            Some(&deployment.sender),
            query,
            json!({ "input": { "templateId": id, "receivers": receivers } }),
        )
        .await;
    assert!(status == 200 && sent["errors"].is_null(), "{sent}");

    // Stop it while calls are in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "dispatch never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exit = terminate(&mut first.child, Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}");

    // Every supplier call made before the stop has its outcome recorded.
    let store = deployment.store().await;
    let made = calls.load(Ordering::SeqCst);
    let recorded = dispatched(&store).await;
    assert_eq!(
        recorded, made,
        "a call finished by the stopping process was not recorded"
    );
    assert!(
        made < MESSAGES,
        "the stop came before everything went out ({made} calls)"
    );

    // A new process sends the rest; nothing is sent twice (no lease had to expire).
    let second = serve(deployment.command()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while dispatched(&store).await < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "only {} of {MESSAGES} went out",
            dispatched(&store).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        MESSAGES,
        "each message went to the supplier exactly once"
    );
    eprintln!(
        "sigterm: stopped with {made} of {MESSAGES} sent and recorded; the rest sent after a restart, none twice"
    );
    drop(second);
    if let store::Store::Postgres(s) = &store {
        s.pool().close().await;
    }
    deployment.remove().await;
}

/// Each role of a split deployment (`api`, `dispatch`, `projections`) exits cleanly and
/// promptly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_stops_cleanly_on_sigterm() {
    let deployment = Deployment::new(
        "[[accounts]]\nid = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = { secret = \"s\" }\n",
    )
    .await;
    for role in ["api", "dispatch", "projections"] {
        let mut server = serve_with(deployment.command(), &["--role", role]).await;
        // Up: its health check answers.
        let health = dispatch::http::client(Duration::from_secs(5))
            .unwrap()
            .get(format!("http://{}/healthz", server.address))
            .send()
            .await
            .unwrap();
        assert!(health.status().is_success(), "{role}: {}", health.status());
        let exit = terminate(&mut server.child, Duration::from_secs(10)).await;
        assert!(exit.success(), "{role}: {exit}");
    }
}
