//! Limits and hostile input: per-key rate, body size, query depth, and random JSON thrown at the
//! send chain. Never a panic, never a 500: a success or a coded error.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::app::spawn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_rate_limited() {
    let app = spawn("sqlite", |c| {
        c.api.rate_limit_per_second = 1;
        c.api.rate_limit_burst = 3;
    })
    .await;
    let key = app.key("acme", "read").await;
    let other = app.key("acme", "read").await;
    for _ in 0..3 {
        assert_eq!(
            app.gql(Some(&key), "{ me { tenant } }", json!({})).await.0,
            200
        );
    }
    let (status, answer) = app.gql(Some(&key), "{ me { tenant } }", json!({})).await;
    assert_eq!(status, 429);
    assert_eq!(answer["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(
        app.gql(Some(&other), "{ me { tenant } }", json!({}))
            .await
            .0,
        200,
        "limits are per key"
    );
    app.finish().await;
}

/// The server keeps the queries it parsed; a query asked again is answered and limited exactly
/// as the first time, and one that does not parse fails alike every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_asked_again_is_checked_again() {
    let app = spawn("sqlite", |c| c.api.max_depth = 3).await;
    let key = app.key("acme", "read").await;
    let other = app.key("other", "read").await;
    let me = "{ me { tenant } }";
    for (key, tenant) in [(&key, "acme"), (&other, "other"), (&key, "acme")] {
        let (status, answer) = app.gql(Some(key), me, json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(answer["data"]["me"]["tenant"], tenant, "{answer}");
    }
    for query in [
        "{ templates { nodes { versions { content } } } }",
        "{ me { tenant }",
    ] {
        let mut answers = Vec::new();
        for _ in 0..3 {
            let (status, answer) = app.gql(Some(&key), query, json!({})).await;
            assert_eq!(status, 200);
            assert_eq!(
                answer["errors"][0]["extensions"]["code"], "VALIDATION",
                "{answer}"
            );
            assert!(answer["data"].is_null(), "{answer}");
            answers.push(answer["errors"][0]["message"].clone());
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    }
    // Variables are the request's own, not the kept query's.
    let query = "query($id: ID!) { message(id: $id) { message { id } } }";
    let (_, answer) = app.gql(Some(&key), query, json!({ "id": "nope" })).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "VALIDATION",
        "{answer}"
    );
    let id = domain::MessageId::generate().to_string();
    let (_, answer) = app.gql(Some(&key), query, json!({ "id": id })).await;
    assert!(answer["errors"].is_null(), "{answer}");
    assert!(answer["data"]["message"]["message"].is_null(), "{answer}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_queries_over_the_limits_are_refused_with_a_code() {
    let app = spawn("sqlite", |c| {
        c.api.max_body_bytes = 2_000;
        c.api.max_depth = 3;
    })
    .await;
    let key = app.key("acme", "read").await;
    let big = json!({ "query": "{ me { tenant } }", "variables": { "pad": "x".repeat(5_000) } })
        .to_string();
    let (status, answer) = app.post(Some(&key), &big).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["errors"][0]["extensions"]["code"], "VALIDATION");
    let deep = "{ templates { nodes { versions { content } } } }";
    let (status, answer) = app.gql(Some(&key), deep, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "VALIDATION",
        "{answer}"
    );
    app.finish().await;
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    let strings = [
        "",
        "13800138000",
        "+14155550100",
        "a@b.co",
        "${code}",
        "\u{0}",
        "ümlaut ✉",
        "-1",
        "null",
        "9".repeat(400).as_str(),
    ]
    .map(str::to_owned);
    match rng.random_range(0..if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random_range(-1e12..1e12)),
        3 => json!(rng.random::<i64>()),
        4 => Value::String(strings[rng.random_range(0..strings.len())].clone()),
        5 => Value::Array(
            (0..rng.random_range(0..5))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..5))
                .map(|i| {
                    (
                        ["code", "name", "x", ""][i % 4].to_owned(),
                        random_json(rng, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

/// Mixes well-formed and random fields, so requests get past the first checks often enough.
fn random_send(rng: &mut StdRng, template: &str) -> Value {
    let mut input = serde_json::Map::new();
    let mut pick = |name: &str, good: Value, rng: &mut StdRng| match rng.random_range(0..4) {
        0 => {}
        1 => {
            input.insert(name.to_owned(), random_json(rng, 3));
        }
        _ => {
            input.insert(name.to_owned(), good);
        }
    };
    pick("templateId", json!(template), rng);
    pick("receivers", json!(["13800138000"]), rng);
    pick("variables", json!({ "code": "1" }), rng);
    pick(
        "requestId",
        json!(format!("r-{}", rng.random::<u32>())),
        rng,
    );
    pick("sendAt", json!("2030-01-01T00:00:00Z"), rng);
    json!({ "input": Value::Object(input) })
}

async fn random_json_never_breaks_the_chain(backend: &str) {
    let app = spawn(backend, |c| c.api.rate_limit_per_second = 0).await;
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send,recall,read").await;
    let create = "mutation($input: CreateTemplateInput!) { createTemplate(input: $input) { id } }";
    let input = json!({ "name": "c", "channel": "SMS", "msgType": "AUTH_CODE", "content": { "kind": "TEXT", "body": "code ${code}" }, "account": "a", "ownerTeam": "t" });
    let id = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;

    let mut rng = StdRng::seed_from_u64(7);
    let send = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let (mut successes, mut coded) = (0, 0);
    for round in 0..300 {
        let (status, answer) = match round % 10 {
            // The whole body random.
            0 => {
                app.post(Some(&sender), &random_json(&mut rng, 3).to_string())
                    .await
            }
            // Random content and variables into createTemplate.
            1 => {
                let input = json!({ "name": random_json(&mut rng, 1), "channel": "SMS", "msgType": "NOTICE", "content": random_json(&mut rng, 3), "account": "a", "ownerTeam": "t" });
                app.gql(Some(&author), create, json!({ "input": input }))
                    .await
            }
            _ => {
                app.gql(Some(&sender), send, random_send(&mut rng, &id))
                    .await
            }
        };
        assert!(
            status == 200 || status == 400,
            "round {round}: status {status}: {answer}"
        );
        match answer["errors"].as_array() {
            None => successes += 1,
            Some(errors) => {
                for e in errors {
                    let code = e["extensions"]["code"]
                        .as_str()
                        .unwrap_or_else(|| panic!("round {round}: uncoded {e}"));
                    assert_ne!(code, "INTERNAL", "round {round}: {answer}");
                }
                coded += 1;
            }
        }
    }
    assert!(
        successes > 10 && coded > 100,
        "a useful mix: {successes} successes, {coded} coded errors"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_random_json_never_breaks_the_chain() {
    random_json_never_breaks_the_chain("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_random_json_never_breaks_the_chain() {
    random_json_never_breaks_the_chain("sqlite").await;
}
