//! `/metrics`: parsed strictly as Prometheus text, with counters that match what was sent.
//!
//! The counters are the process's, shared by the tests running beside this one, so the test
//! gives its account a name of its own and checks exact counts only for series labelled with it.

use std::collections::BTreeMap;

use serde_json::json;

use crate::app::{TestApp, spawn};
use crate::dispatch::{SECRET, receiver, wait_for};

type Series = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Parses the Prometheus text exposition format (0.0.4), refusing what a scraper would: a
/// sample before its family's `# TYPE`, a bad name, a bad label, a bad value, a series twice.
fn parse(text: &str) -> Series {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut series = Series::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) => assert!(name_ok(name), "line {number}"),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(name_ok(name), "line {number}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "line {number}: type {kind}"
                    );
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "line {number}: {name} typed twice"
                    );
                }
                _ => panic!("line {number}: a comment that is neither HELP nor TYPE: {line}"),
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "line {number} is blank");
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => panic!("line {number}: no value: {line}"),
        };
        assert!(name_ok(name), "line {number}: metric name {name:?}");
        let mut labels = Vec::new();
        let value = if let Some(mut rest) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    break after;
                }
                let eq = rest.find('=').unwrap_or_else(|| panic!("line {number}"));
                let key = &rest[..eq];
                assert!(name_ok(key), "line {number}: label name {key:?}");
                let mut chars = rest[eq + 1..].chars();
                assert_eq!(chars.next(), Some('"'), "line {number}");
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("line {number}: bad escape {other:?}"),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => panic!("line {number}: unterminated label value"),
                    }
                }
                labels.push((key.to_owned(), value));
                rest = chars.as_str();
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        } else {
            rest
        };
        let value = value
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("line {number}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("line {number}: value {other:?}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "line {number}: {name} has no # TYPE before it"
        );
        labels.sort();
        assert!(
            series.insert((name.to_owned(), labels), value).is_none(),
            "line {number}: a series twice"
        );
    }
    series
}

fn get(series: &Series, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    series.get(&(name.to_owned(), labels)).copied()
}

/// The sum of every series of `name` whose labels include `labels`.
fn sum(series: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    series
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(app: &TestApp) -> Series {
    let response = reqwest::get(format!("http://{}/metrics", app.address))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&response.text().await.unwrap())
}

async fn metrics_parse_and_count_what_was_sent(backend: &str) {
    let account = format!(
        "metrics-{}",
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let config = format!(
        "id = \"{account}\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = {{ secret = \"{SECRET}\" }}"
    );
    let app = spawn(backend, |c| {
        c.dispatch.retry_base_ms = 100;
        c.accounts = vec![toml::from_str(&config).unwrap()];
    })
    .await;
    let (url, _calls) = receiver().await;
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send,read").await;
    let input = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE",
        "content": { "kind": "TEXT", "body": "Build ${n} finished" }, "account": account, "ownerTeam": "ci" });
    let template = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;

    let send = |receiver: String, later: bool| {
        let app = &app;
        let sender = &sender;
        let template = &template;
        async move {
            let mut input = json!({ "templateId": template, "receivers": [receiver], "variables": { "n": "1" } });
            if later {
                input["sendAt"] =
                    json!((chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339());
            }
            let (_, sent) = app
                .gql(
                    Some(sender),
                    "mutation($input: SendInput!) { send(input: $input) { messages { id } } }",
                    json!({ "input": input }),
                )
                .await;
            format!(
                "message-{}",
                sent["data"]["send"]["messages"][0]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{sent}"))
            )
        }
    };
    let mut ok = Vec::new();
    for i in 0..3 {
        ok.push(send(format!("{url}/ok?i={i}"), false).await);
    }
    let mut refused = Vec::new();
    for i in 0..2 {
        refused.push(send(format!("{url}/refuse?i={i}"), false).await);
    }
    send(format!("{url}/ok?later"), true).await;
    for stream in &ok {
        wait_for(&app, stream, "MessageDispatched").await;
    }
    for stream in &refused {
        wait_for(&app, stream, "MessageFailed").await;
    }

    let series = scrape(&app).await;
    let events = |event: &str| {
        get(
            &series,
            "herald_message_events_total",
            &[
                ("channel", "WEBHOOK"),
                ("account", &account),
                ("event", event),
            ],
        )
    };
    assert_eq!(events("MessageDispatched"), Some(3.0));
    assert_eq!(events("DispatchFailed"), Some(2.0));
    assert_eq!(events("MessageFailed"), Some(2.0));
    let calls = |result: &str| {
        get(
            &series,
            "herald_supplier_request_duration_seconds_count",
            &[
                ("account", &account),
                ("supplier", "webhook"),
                ("result", result),
            ],
        )
    };
    assert_eq!(calls("ok"), Some(3.0));
    assert_eq!(calls("final"), Some(2.0));
    assert_eq!(
        get(
            &series,
            "herald_supplier_request_duration_seconds_bucket",
            &[
                ("account", &account),
                ("supplier", "webhook"),
                ("result", "ok"),
                ("le", "+Inf")
            ],
        ),
        Some(3.0)
    );
    // Shared with the other tests of this process: at least ours.
    assert!(
        get(
            &series,
            "herald_graphql_fields_total",
            &[("kind", "mutation"), ("field", "send"), ("outcome", "ok")],
        )
        .unwrap_or(0.0)
            >= 6.0
    );
    assert!(
        get(
            &series,
            "herald_http_requests_total",
            &[("method", "POST"), ("route", "/graphql"), ("status", "200")],
        )
        .unwrap_or(0.0)
            >= 6.0
    );
    // Read from this app's store: exact. The message sent for later waits, not yet due.
    assert_eq!(sum(&series, "herald_queue_messages", &[]), 1.0);
    assert_eq!(sum(&series, "herald_queue_due_messages", &[]), 0.0);
    for projection in ["trace", "stats", "reconciliation", "inbox"] {
        assert!(
            get(
                &series,
                "herald_projection_lag_events",
                &[("projection", projection)]
            )
            .is_some(),
            "no lag for {projection}"
        );
    }
    assert!(
        get(
            &series,
            "herald_subscription_lag_events",
            &[("subscription", "dispatch-recall")]
        )
        .is_some(),
        "no lag for dispatch's recall group"
    );
    // The scrape itself is counted by the next one.
    let again = scrape(&app).await;
    assert!(
        get(
            &again,
            "herald_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "200")],
        )
        .unwrap_or(0.0)
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_was_sent_sqlite() {
    metrics_parse_and_count_what_was_sent("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_was_sent_postgres() {
    metrics_parse_and_count_what_was_sent("postgres").await;
}
