//! The GraphQL API over real HTTP on both backends: templates with approval, send, batch send,
//! idempotency, recall, tenants and scopes, and a coded error for every failure.

use serde_json::{Value, json};
use store::EventStore;

use crate::app::{TestApp, both_backends};

both_backends!(
    a_template_is_approved_and_sends_to_three_receivers,
    concurrent_sends_with_one_request_id_make_one_set_of_messages,
    every_failure_has_a_code,
    tenants_never_see_each_other,
    recall_cancels_what_has_not_gone_out,
    batch_send_renders_each_item_with_its_own_variables,
    an_edited_template_keeps_sending_its_approved_version_until_the_new_one_is_approved,
    a_request_for_the_newly_approved_version_is_judged_by_it,
);

const CREATE: &str = "mutation($input: CreateTemplateInput!) { createTemplate(input: $input) { id latestVersion approvedVersion versions { status } } }";
const SUBMIT: &str = "mutation($id: ID!) { submitTemplate(id: $id) { versions { status } } }";
const APPROVE: &str = "mutation($id: ID!, $v: Int!) { approveTemplate(id: $id, version: $v) { approvedVersion enabled } }";
const SEND: &str = "mutation($input: SendInput!) { send(input: $input) { requestId replayed messages { id receiver } } }";
const RECALL: &str =
    "mutation($ids: [ID!]!) { recall(input: { messageIds: $ids }) { messages { id status } } }";

/// The error's `extensions.code` and `reason`, or a panic that shows the whole answer.
#[track_caller]
fn code(answer: &Value) -> (String, String) {
    let ext = &answer["errors"][0]["extensions"];
    match (ext["code"].as_str(), ext["reason"].as_str()) {
        (Some(c), r) => (c.to_owned(), r.unwrap_or("").to_owned()),
        _ => panic!("expected a coded error, got {answer}"),
    }
}

#[track_caller]
fn ok(status: u16, answer: Value) -> Value {
    assert!(
        status == 200 && answer["errors"].is_null(),
        "{status}: {answer}"
    );
    answer["data"].clone()
}

struct Keys {
    author: String,
    reviewer: String,
    sender: String,
}

async fn keys(app: &TestApp, tenant: &str) -> Keys {
    Keys {
        author: app.key(tenant, "admin").await,
        reviewer: app.key(tenant, "admin").await,
        sender: app.key(tenant, "send,recall,read").await,
    }
}

/// Creates, submits and (unless `approve` is false) approves a template; returns its id.
async fn template(
    app: &TestApp,
    keys: &Keys,
    channel: &str,
    content: Value,
    approve: bool,
) -> String {
    let input = json!({ "name": "code", "channel": channel, "msgType": "AUTH_CODE", "content": content, "account": "default", "ownerTeam": "identity" });
    let created = ok_answer(
        app.gql(Some(&keys.author), CREATE, json!({ "input": input }))
            .await,
    );
    let id = created["createTemplate"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["createTemplate"]["versions"][0]["status"], "DRAFT");
    let submitted = ok_answer(
        app.gql(Some(&keys.author), SUBMIT, json!({ "id": id }))
            .await,
    );
    assert_eq!(
        submitted["submitTemplate"]["versions"][0]["status"],
        "SUBMITTED"
    );
    if approve {
        let approved = ok_answer(
            app.gql(Some(&keys.reviewer), APPROVE, json!({ "id": id, "v": 1 }))
                .await,
        );
        assert_eq!(approved["approveTemplate"]["approvedVersion"], 1);
    }
    id
}

#[track_caller]
fn ok_answer((status, answer): (u16, Value)) -> Value {
    ok(status, answer)
}

fn sms() -> Value {
    json!({ "kind": "TEXT", "body": "Your code is ${code}. Details: https://example.com/help" })
}

async fn a_template_is_approved_and_sends_to_three_receivers(app: &TestApp) {
    let keys = keys(app, "acme").await;
    let id = template(app, &keys, "SMS", sms(), true).await;
    let receivers = ["13800138000", "+8613900139000", "+14155550100"];
    let input = json!({ "templateId": id, "requestId": "order-1", "receivers": receivers, "variables": { "code": "123456" } });
    let sent = ok_answer(
        app.gql(Some(&keys.sender), SEND, json!({ "input": input }))
            .await,
    );
    let messages = sent["send"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(sent["send"]["requestId"], "order-1");
    assert_eq!(sent["send"]["replayed"], false);
    assert_eq!(
        messages[0]["receiver"], "+8613800138000",
        "phone numbers are normalised"
    );

    for message in messages {
        let stream = format!("message-{}", message["id"].as_str().unwrap());
        let events = app.store.read_stream(&stream, 1, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, "MessageAccepted");
        let data = events[0].data_json().unwrap();
        let body = data["content"]["body"].as_str().unwrap();
        assert!(
            body.starts_with("Your code is 123456. Details: http://127.0.0.1:8080/c/"),
            "{body}"
        );
        assert_eq!(data["tracked_links"][0]["url"], "https://example.com/help");
        assert_eq!(data["template_version"], 1);
        assert_eq!(data["receiver"]["value"], message["receiver"]);
    }

    // The same request again: the same messages, nothing new.
    let again = ok_answer(
        app.gql(Some(&keys.sender), SEND, json!({ "input": input }))
            .await,
    );
    assert_eq!(again["send"]["messages"], sent["send"]["messages"]);
    assert_eq!(again["send"]["replayed"], true);

    // The template reads back with its review.
    let read = ok_answer(app.gql(Some(&keys.sender), "query($id: ID!) { template(id: $id) { name enabled approvedVersion versions { status author reviewer } } }", json!({ "id": id })).await);
    assert_eq!(read["template"]["versions"][0]["status"], "APPROVED");
    let list = ok_answer(
        app.gql(
            Some(&keys.sender),
            "{ templates(filter: { channel: SMS }) { nodes { id } pageInfo { hasNextPage } } }",
            json!({}),
        )
        .await,
    );
    assert_eq!(list["templates"]["nodes"][0]["id"], id.as_str());
}

async fn concurrent_sends_with_one_request_id_make_one_set_of_messages(app: &TestApp) {
    let keys = keys(app, "acme").await;
    let id = template(app, &keys, "SMS", sms(), true).await;
    let input = json!({ "templateId": id, "requestId": "same", "receivers": ["13800138000", "13800138001"], "variables": { "code": "1" } });
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (address, key, input) = (app.address, keys.sender.clone(), input.clone());
            tokio::spawn(async move {
                crate::app::Client { address }
                    .gql(Some(&key), SEND, json!({ "input": input }))
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(ok_answer(task.await.unwrap())["send"]["messages"].clone());
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "every caller gets the same ids"
    );
    let accepted = count_accepted(app).await;
    assert_eq!(accepted, 2, "exactly one set of messages exists");
}

async fn count_accepted(app: &TestApp) -> usize {
    let filter = store::LogFilter {
        event_types: vec!["MessageAccepted".into()],
        ..store::LogFilter::all()
    };
    let mut total = 0;
    let mut at = store::Checkpoint::START;
    loop {
        let batch = app.store.read_log(at, &filter, 1000).await.unwrap();
        if batch.events.is_empty() && !batch.blocked {
            return total;
        }
        total += batch.events.len();
        at = batch.next;
        if batch.events.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

async fn every_failure_has_a_code(app: &TestApp) {
    let keys = keys(app, "acme").await;
    let id = template(app, &keys, "SMS", sms(), true).await;
    let send = |receivers: Value, variables: Value| json!({ "input": { "templateId": id, "receivers": receivers, "variables": variables } });
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            send(json!(["13800138000"]), json!({})),
            "VALIDATION",
            "MISSING_VARIABLES",
        ),
        (
            send(json!(["13800138000"]), json!({ "code": "1", "extra": "x" })),
            "VALIDATION",
            "UNKNOWN_VARIABLES",
        ),
        (
            send(json!(["13800138000", "12345"]), json!({ "code": "1" })),
            "VALIDATION",
            "INVALID_PHONE",
        ),
        (
            send(
                json!(
                    (0..101)
                        .map(|i| format!("1380013{i:04}"))
                        .collect::<Vec<_>>()
                ),
                json!({ "code": "1" }),
            ),
            "VALIDATION",
            "RECEIVER_COUNT",
        ),
        (
            send(json!([]), json!({ "code": "1" })),
            "VALIDATION",
            "RECEIVER_COUNT",
        ),
        (
            send(json!(["13800138000"]), json!({ "code": { "nested": 1 } })),
            "VALIDATION",
            "INVALID_VARIABLES",
        ),
        (
            json!({ "input": { "templateId": "nope", "receivers": ["13800138000"] } }),
            "VALIDATION",
            "INVALID_TEMPLATE_ID",
        ),
        (
            json!({ "input": { "templateId": uuid::Uuid::now_v7().to_string(), "receivers": ["13800138000"] } }),
            "NOT_FOUND",
            "NOT_FOUND",
        ),
    ];
    for (variables, want_code, want_reason) in cases {
        let (status, answer) = app.gql(Some(&keys.sender), SEND, variables.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            code(&answer),
            (want_code.to_owned(), want_reason.to_owned()),
            "{variables}"
        );
    }
    // The invalid phone error names the receiver.
    let (_, answer) = app
        .gql(
            Some(&keys.sender),
            SEND,
            send(json!(["13800138000", "12345"]), json!({ "code": "1" })),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["receiver"], "12345",
        "{answer}"
    );
    assert_eq!(answer["errors"][0]["extensions"]["receiverIndex"], 1);

    // A template not yet approved, and one disabled, do not send.
    let draft = template(app, &keys, "SMS", sms(), false).await;
    let input = json!({ "input": { "templateId": draft, "receivers": ["13800138000"], "variables": { "code": "1" } } });
    assert_eq!(
        code(&app.gql(Some(&keys.sender), SEND, input).await.1).0,
        "TEMPLATE_NOT_APPROVED"
    );
    ok_answer(
        app.gql(
            Some(&keys.author),
            "mutation($id: ID!) { disableTemplate(id: $id) { enabled } }",
            json!({ "id": id }),
        )
        .await,
    );
    let (_, answer) = app
        .gql(
            Some(&keys.sender),
            SEND,
            send(json!(["13800138000"]), json!({ "code": "1" })),
        )
        .await;
    assert_eq!(
        code(&answer),
        ("TEMPLATE_NOT_APPROVED".into(), "DISABLED".into())
    );

    // Review rules.
    let (_, answer) = app
        .gql(Some(&keys.author), APPROVE, json!({ "id": draft, "v": 1 }))
        .await;
    assert_eq!(code(&answer).1, "SELF_APPROVAL");

    // Scopes and keys.
    let (_, answer) = app.gql(Some(&keys.sender), CREATE, json!({ "input": { "name": "x", "channel": "SMS", "msgType": "NOTICE", "content": sms(), "account": "a", "ownerTeam": "t" } })).await;
    assert_eq!(code(&answer), ("FORBIDDEN".into(), "MISSING_SCOPE".into()));
    let read_only = app.key("acme", "read").await;
    assert_eq!(
        code(
            &app.gql(
                Some(&read_only),
                SEND,
                send(json!(["13800138000"]), json!({ "code": "1" }))
            )
            .await
            .1
        )
        .0,
        "FORBIDDEN"
    );
    let (status, answer) = app.gql(None, "{ me { tenant } }", json!({})).await;
    assert_eq!((status, code(&answer).0.as_str()), (401, "UNAUTHENTICATED"));
    let (status, answer) = app
        .gql(
            Some("hk_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
            "{ me { tenant } }",
            json!({}),
        )
        .await;
    assert_eq!((status, code(&answer).0.as_str()), (401, "UNAUTHENTICATED"));
    // The last character changed (to one it is not: a key ending in `x` stays valid as `…x`).
    let (kept, last) = keys.sender.split_at(keys.sender.len() - 1);
    let tampered = format!("{kept}{}", if last == "x" { "y" } else { "x" });
    assert_eq!(
        app.gql(Some(&tampered), "{ me { tenant } }", json!({}))
            .await
            .0,
        401
    );

    // Malformed requests.
    let (status, answer) = app.post(Some(&keys.sender), "{not json").await;
    assert_eq!((status, code(&answer).0.as_str()), (400, "VALIDATION"));
    let (status, answer) = app.gql(Some(&keys.sender), "{ nope }", json!({})).await;
    assert_eq!((status, code(&answer).0.as_str()), (200, "VALIDATION"));
    let (_, answer) = app.gql(Some(&keys.author), CREATE, json!({ "input": { "name": "x", "channel": "EMAIL", "msgType": "NOTICE", "content": { "kind": "TEXT", "body": "hi" }, "account": "a", "ownerTeam": "t" } })).await;
    assert_eq!(
        code(&answer).0,
        "VALIDATION",
        "text content does not fit email"
    );
    let email = |url: &str| json!({ "input": { "name": "x", "channel": "EMAIL", "msgType": "NOTICE", "content": { "kind": "EMAIL", "subject": "s", "text": "t", "attachments": [{ "url": url }] }, "account": "a", "ownerTeam": "t" } });
    for url in ["file:///etc/passwd", "ftp://example.com/a", "data:,hi"] {
        let (_, answer) = app.gql(Some(&keys.author), CREATE, email(url)).await;
        assert_eq!(
            code(&answer),
            ("VALIDATION".into(), "ATTACHMENT_URL_NOT_HTTP".into()),
            "{url}"
        );
    }
    ok_answer(
        app.gql(
            Some(&keys.author),
            CREATE,
            email("https://example.com/a.pdf"),
        )
        .await,
    );
}

async fn tenants_never_see_each_other(app: &TestApp) {
    let ours = keys(app, "acme").await;
    let theirs = keys(app, "globex").await;
    let id = template(app, &ours, "SMS", sms(), true).await;
    let input = json!({ "input": { "templateId": id, "receivers": ["13800138000"], "variables": { "code": "1" } } });
    let sent = ok_answer(app.gql(Some(&ours.sender), SEND, input.clone()).await);
    let message = sent["send"]["messages"][0]["id"].clone();

    assert_eq!(
        code(&app.gql(Some(&theirs.sender), SEND, input).await.1).0,
        "NOT_FOUND"
    );
    let (_, answer) = app
        .gql(
            Some(&theirs.sender),
            "query($id: ID!) { template(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&answer).0, "NOT_FOUND");
    let (_, answer) = app
        .gql(Some(&theirs.author), SUBMIT, json!({ "id": id }))
        .await;
    assert_eq!(code(&answer).0, "NOT_FOUND");
    let list = ok_answer(
        app.gql(
            Some(&theirs.sender),
            "{ templates { nodes { id } } }",
            json!({}),
        )
        .await,
    );
    assert_eq!(list["templates"]["nodes"], json!([]));
    let (_, answer) = app
        .gql(Some(&theirs.sender), RECALL, json!({ "ids": [message] }))
        .await;
    assert_eq!(code(&answer).0, "NOT_FOUND");
    // And the message was not touched.
    let stream = format!("message-{}", message.as_str().unwrap());
    assert_eq!(app.store.stream_version(&stream).await.unwrap(), Some(1));
}

async fn recall_cancels_what_has_not_gone_out(app: &TestApp) {
    let keys = keys(app, "acme").await;
    let id = template(app, &keys, "SMS", sms(), true).await;
    let input = json!({ "input": { "templateId": id, "receivers": ["13800138000", "13800138001"], "variables": { "code": "1" } } });
    let sent = ok_answer(app.gql(Some(&keys.sender), SEND, input).await);
    let ids: Vec<Value> = sent["send"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    let recalled = ok_answer(
        app.gql(Some(&keys.sender), RECALL, json!({ "ids": ids }))
            .await,
    );
    assert!(
        recalled["recall"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "RECALLED"),
        "{recalled}"
    );
    let stream = format!("message-{}", ids[0].as_str().unwrap());
    let types: Vec<String> = app
        .store
        .read_stream(&stream, 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        ["MessageAccepted", "RecallRequested", "MessageRecalled"]
    );
    let again = ok_answer(
        app.gql(Some(&keys.sender), RECALL, json!({ "ids": [ids[0]] }))
            .await,
    );
    assert_eq!(
        again["recall"]["messages"][0]["status"],
        "ALREADY_REQUESTED"
    );
    let (_, answer) = app
        .gql(Some(&keys.sender), RECALL, json!({ "ids": ["not-an-id"] }))
        .await;
    assert_eq!(code(&answer).1, "INVALID_MESSAGE_ID");
}

async fn batch_send_renders_each_item_with_its_own_variables(app: &TestApp) {
    let keys = keys(app, "acme").await;
    let content = json!({ "kind": "EMAIL", "subject": "Hello ${name}", "text": "Hi ${name}" });
    let input = json!({ "name": "hello", "channel": "EMAIL", "msgType": "NOTICE", "content": content, "account": "smtp", "ownerTeam": "growth" });
    let id = ok_answer(
        app.gql(Some(&keys.author), CREATE, json!({ "input": input }))
            .await,
    )["createTemplate"]["id"]
        .clone();
    ok_answer(
        app.gql(Some(&keys.author), SUBMIT, json!({ "id": id }))
            .await,
    );
    ok_answer(
        app.gql(Some(&keys.reviewer), APPROVE, json!({ "id": id, "v": 1 }))
            .await,
    );
    let batch = json!({ "input": { "templateId": id, "requestId": "b-1", "items": [
        { "receivers": ["ann@Example.com"], "variables": { "name": "Ann" } },
        { "receivers": ["bo@example.com", "cy@example.com"], "variables": { "name": "Bo" } }
    ] } });
    let sent = ok_answer(app.gql(Some(&keys.sender), "mutation($input: BatchSendInput!) { batchSend(input: $input) { messages { id receiver } } }", batch).await);
    let messages = sent["batchSend"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["receiver"], "ann@example.com");
    let stream = format!("message-{}", messages[2]["id"].as_str().unwrap());
    let data = app.store.read_stream(&stream, 1, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(data["content"]["subject"], "Hello Bo");
}

async fn an_edited_template_keeps_sending_its_approved_version_until_the_new_one_is_approved(
    app: &TestApp,
) {
    let keys = keys(app, "acme").await;
    let id = template(app, &keys, "SMS", sms(), true).await;
    let update = "mutation($id: ID!) { updateTemplate(input: { id: $id, content: { kind: \"TEXT\", body: \"New code ${code}\" } }) { latestVersion approvedVersion versions { version status } } }";
    let updated = ok_answer(
        app.gql(Some(&keys.author), update, json!({ "id": id }))
            .await,
    );
    assert_eq!(updated["updateTemplate"]["latestVersion"], 2);
    assert_eq!(updated["updateTemplate"]["approvedVersion"], 1);
    assert_eq!(updated["updateTemplate"]["versions"][1]["status"], "DRAFT");

    let send_one = |request: &str| json!({ "input": { "templateId": id, "requestId": request, "receivers": ["13800138000"], "variables": { "code": "9" } } });
    let first = |answer: &Value| {
        format!(
            "message-{}",
            answer["send"]["messages"][0]["id"].as_str().unwrap()
        )
    };
    let before = ok_answer(app.gql(Some(&keys.sender), SEND, send_one("v1")).await);
    let data = app.store.read_stream(&first(&before), 1, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(
        data["template_version"], 1,
        "the approved version sends while v2 is a draft"
    );
    assert!(
        data["content"]["body"]
            .as_str()
            .unwrap()
            .starts_with("Your code is 9")
    );

    ok_answer(
        app.gql(Some(&keys.author), SUBMIT, json!({ "id": id }))
            .await,
    );
    ok_answer(
        app.gql(Some(&keys.reviewer), APPROVE, json!({ "id": id, "v": 2 }))
            .await,
    );
    // The server read the template at the first send and kept it; the approval moved the
    // template's stream since, so this send's write finds its copy stale and reads it again.
    let after = ok_answer(app.gql(Some(&keys.sender), SEND, send_one("v2")).await);
    let data = app.store.read_stream(&first(&after), 1, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(data["template_version"], 2);
    assert_eq!(data["content"]["body"], "New code 9");
}

/// The server keeps the template it sent with; a request that only the newly approved version
/// accepts (another placeholder) is judged by that version, not refused by the kept copy.
async fn a_request_for_the_newly_approved_version_is_judged_by_it(app: &TestApp) {
    let keys = keys(app, "acme").await;
    let id = template(app, &keys, "SMS", sms(), true).await;
    let send_with = |variables: Value| json!({ "input": { "templateId": id, "receivers": ["13800138000"], "variables": variables } });
    ok_answer(
        app.gql(Some(&keys.sender), SEND, send_with(json!({ "code": "1" })))
            .await,
    );
    let update = "mutation($id: ID!) { updateTemplate(input: { id: $id, content: { kind: \"TEXT\", body: \"Hello ${name}\" } }) { latestVersion } }";
    ok_answer(
        app.gql(Some(&keys.author), update, json!({ "id": id }))
            .await,
    );
    ok_answer(
        app.gql(Some(&keys.author), SUBMIT, json!({ "id": id }))
            .await,
    );
    ok_answer(
        app.gql(Some(&keys.reviewer), APPROVE, json!({ "id": id, "v": 2 }))
            .await,
    );
    let sent = ok_answer(
        app.gql(Some(&keys.sender), SEND, send_with(json!({ "name": "Bo" })))
            .await,
    );
    let message = format!(
        "message-{}",
        sent["send"]["messages"][0]["id"].as_str().unwrap()
    );
    let data = app.store.read_stream(&message, 1, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(data["template_version"], 2);
    assert_eq!(data["content"]["body"], "Hello Bo");
}
