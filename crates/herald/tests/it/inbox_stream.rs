//! The real-time inbox over SSE, across two `herald serve` processes sharing Postgres and Redis:
//! a client connected to the API-only process receives messages sent, dispatched and projected
//! by the other; reconnecting with `Last-Event-ID` gives exactly the missed ones; `markInboxRead`
//! moves the unread count and is recorded once; bad and expired tokens are refused.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use store::EventStore;

use crate::app::Client;
use crate::deployment::Deployment;
use crate::support::{redis_url, serve, serve_with};

/// One SSE event.
#[derive(Debug, Clone)]
struct SseEvent {
    id: String,
    data: Value,
}

/// An open `/inbox/stream`, read a chunk at a time.
struct Stream {
    response: reqwest::Response,
    text: String,
    heartbeats: usize,
}

fn http() -> reqwest::Client {
    dispatch::http::client(Duration::from_secs(300)).unwrap()
}

async fn open(address: SocketAddr, token: &str, last_event_id: Option<&str>) -> Stream {
    let mut request = http()
        .get(format!("http://{address}/inbox/stream"))
        .bearer_auth(token);
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    Stream {
        response,
        text: String::new(),
        heartbeats: 0,
    }
}

impl Stream {
    /// The next message event, within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let (mut id, mut data) = (None, String::new());
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.heartbeats += 1;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    return Some(SseEvent {
                        id,
                        data: serde_json::from_str(&data).unwrap(),
                    });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.text.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => panic!("the stream broke: {e}"),
                Err(_) => return None,
            }
        }
    }
}

/// An event id, `{transaction}-{position}`, as numbers.
fn cursor(id: &str) -> (i64, i64) {
    let (tx, pos) = id.split_once('-').unwrap();
    (tx.parse().unwrap(), pos.parse().unwrap())
}

async fn gql(address: SocketAddr, key: &str, query: &str, variables: Value) -> Value {
    let (status, answer) = Client { address }.gql(Some(key), query, variables).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"].clone()
}

async fn token(address: SocketAddr, key: &str, receiver: &str, ttl: i64) -> String {
    let data = gql(
        address,
        key,
        "mutation($r: String!, $ttl: Int!) { inboxToken(receiver: $r, ttlSecs: $ttl) { token receiver expiresAt } }",
        json!({ "r": receiver, "ttl": ttl }),
    )
    .await;
    assert_eq!(data["inboxToken"]["receiver"], receiver);
    data["inboxToken"]["token"].as_str().unwrap().to_owned()
}

async fn send(address: SocketAddr, key: &str, template: &str, receiver: &str, n: &str) -> String {
    let data = gql(
        address,
        key,
        "mutation($input: SendInput!) { send(input: $input) { messages { id } } }",
        json!({ "input": { "templateId": template, "receivers": [receiver], "variables": { "n": n } } }),
    )
    .await;
    data["send"]["messages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn unread_becomes(address: SocketAddr, key: &str, receiver: &str, want: i64) {
    let mut last = Value::Null;
    for _ in 0..400 {
        let data = gql(
            address,
            key,
            "query($r: String!) { inboxUnread(receiver: $r) inbox(receiver: $r) { unread } }",
            json!({ "r": receiver }),
        )
        .await;
        if data["inboxUnread"] == want && data["inbox"]["unread"] == want {
            return;
        }
        last = data;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the unread count never became {want}: {last}");
}

async fn refused(address: SocketAddr, query: &str) -> (u16, Value) {
    let response = http()
        .get(format!("http://{address}/inbox/stream{query}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn inbox_streams_across_processes_and_resumes_without_loss() {
    let prefix = format!("herald-sse-{}", uuid::Uuid::now_v7().simple());
    let deployment = Deployment::new(&format!(
        "[cache]\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n\n[api]\ninbox_heartbeat_secs = 1\n",
        redis_url()
    ))
    .await;
    let reader = deployment.key("read").await;
    // B does everything; A only serves the API (and the stream): it runs no projection and
    // no dispatch, so whatever A streams was announced by B through Redis.
    let b = serve(deployment.command()).await;
    let a = serve_with(deployment.command(), &["--role", "api"]).await;
    let template = Client { address: b.address }
        .approved_template(
            &deployment.author,
            &deployment.reviewer,
            json!({ "name": "note", "channel": "INBOX", "msgType": "NOTICE",
                "content": { "kind": "TEXT", "body": "note ${n}" },
                "account": "inbox", "ownerTeam": "ci" }),
        )
        .await;
    let sender = &deployment.sender;
    let live = Duration::from_secs(20);

    // Live: connected to A, sent through B.
    let user_token = token(a.address, &reader, "user-1", 600).await;
    let mut stream = open(a.address, &user_token, None).await;
    let first = send(b.address, sender, &template, "user-1", "1").await;
    let event = stream.next(live).await.expect("the first message, live");
    assert_eq!(event.data["id"], first.as_str());
    assert_eq!(event.data["body"], "note 1");
    assert_eq!(event.data["read"], false);
    assert_eq!(event.data["cursor"], event.id.as_str());
    // Another receiver's message never shows here.
    send(b.address, sender, &template, "user-2", "x").await;
    // Heartbeats keep the idle stream open (one a second here).
    assert!(stream.next(Duration::from_millis(2500)).await.is_none());
    assert!(stream.heartbeats >= 1, "no heartbeat in 2.5 s");
    drop(stream);

    // Disconnected: two more, then resume after the first. The stream's order is the order of
    // delivery, which concurrent dispatch may swap: each is delivered before the next is sent.
    let second = send(b.address, sender, &template, "user-1", "2").await;
    unread_becomes(a.address, &reader, "user-1", 2).await;
    let third = send(b.address, sender, &template, "user-1", "3").await;
    unread_becomes(a.address, &reader, "user-1", 3).await;
    let mut resumed = open(a.address, &user_token, Some(&event.id)).await;
    let two = resumed.next(live).await.expect("the second message");
    let three = resumed.next(live).await.expect("the third message");
    assert_eq!(
        (two.data["id"].as_str(), three.data["id"].as_str()),
        (Some(second.as_str()), Some(third.as_str()))
    );
    let ids = [&event, &two, &three].map(|e| cursor(&e.id));
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "ids grow: {ids:?}");
    // Then live again, with nothing doubled in between.
    let fourth = send(b.address, sender, &template, "user-1", "4").await;
    let four = resumed.next(live).await.expect("the fourth message, live");
    assert_eq!(four.data["id"], fourth.as_str());
    assert!(resumed.next(Duration::from_secs(2)).await.is_none());
    drop(resumed);

    // `lastEventId` in the query works too (for EventSource polyfills), and a stream from the
    // start replays the inbox in delivery order.
    let mut from_start = open(a.address, &user_token, None).await;
    let mut all = Vec::new();
    while let Some(e) = from_start.next(Duration::from_secs(3)).await {
        all.push(e.data["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        all,
        [first.clone(), second.clone(), third.clone(), fourth.clone()]
    );
    drop(from_start);
    let response = http()
        .get(format!(
            "http://{}/inbox/stream?token={user_token}&lastEventId={}",
            a.address, three.id
        ))
        .send()
        .await
        .unwrap();
    let mut by_query = Stream {
        response,
        text: String::new(),
        heartbeats: 0,
    };
    let next = by_query.next(live).await.expect("after the third");
    assert_eq!(next.data["id"], fourth.as_str());
    drop(by_query);

    // Read marks: recorded once, counted, and in the timeline.
    let marked = gql(
        a.address,
        &reader,
        "mutation($ids: [ID!]!) { markInboxRead(ids: $ids) }",
        json!({ "ids": [first, second] }),
    )
    .await;
    assert_eq!(marked["markInboxRead"], json!([first, second]));
    let again = gql(
        a.address,
        &reader,
        "mutation($ids: [ID!]!) { markInboxRead(ids: $ids) }",
        json!({ "ids": [first] }),
    )
    .await;
    assert_eq!(
        again["markInboxRead"],
        json!([]),
        "a second read changes nothing"
    );
    unread_becomes(a.address, &reader, "user-1", 2).await;
    let store = deployment.store().await;
    let reads = store
        .read_stream(&format!("message-{first}"), 1, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "MessageRead")
        .count();
    assert_eq!(reads, 1);
    let (status, answer) = Client { address: a.address }
        .gql(
            Some(&reader),
            "mutation($ids: [ID!]!) { markInboxRead(ids: $ids) }",
            json!({ "ids": [uuid::Uuid::now_v7().to_string()] }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{answer}"
    );

    // Refused: no token, a forged one, an expired one.
    let (status, body) = refused(a.address, "").await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["reason"], "NO_TOKEN");
    let forged = format!("{}A", &user_token[..user_token.len() - 1]);
    let forged = if forged == user_token {
        format!("{}B", &user_token[..user_token.len() - 1])
    } else {
        forged
    };
    let (status, body) = refused(a.address, &format!("?token={forged}")).await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["reason"], "INVALID_TOKEN");
    let short = token(a.address, &reader, "user-1", 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = refused(a.address, &format!("?token={short}")).await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0]["extensions"]["reason"], "TOKEN_EXPIRED");
    let (status, answer) = Client { address: a.address }
        .gql(
            Some(&reader),
            "mutation { inboxToken(receiver: \"u\", ttlSecs: 0) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["errors"][0]["extensions"]["reason"], "INVALID_TTL");

    // SIGTERM ends an open stream at once, so the server stops well inside its grace period.
    let open_stream = open(a.address, &user_token, None).await;
    let mut a = a;
    let stopping = std::time::Instant::now();
    // Before the 10 s grace period.
    let exit = crate::support::terminate(&mut a.child, Duration::from_secs(8)).await;
    assert!(exit.success(), "{exit}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    drop((open_stream, b));
    deployment.remove().await;
}
