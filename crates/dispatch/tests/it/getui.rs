//! The GeTui supplier against a local restapi.getui.com (see `fake`) that checks the auth sign,
//! the `token` header and the push payloads as GeTui does, and answers in GeTui's JSON.

mod fake;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dispatch::accounts::Accounts;
use dispatch::getui::GeTui;
use dispatch::tokens::Tokens;
use dispatch::{Outbound, SendError, Sent, Supplier};
use domain::{
    Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TenantId,
};
use fake::{APP_ID, APP_KEY, Call, MASTER_SECRET, config, start, supplier};
use serde_json::json;

fn card(url: Option<&str>) -> TemplateContent {
    TemplateContent::Card {
        title: "Order shipped".to_owned(),
        body: "Order 1042 is on its way".to_owned(),
        url: url.map(str::to_owned),
    }
}

fn text(body: &str) -> TemplateContent {
    TemplateContent::Text {
        body: body.to_owned(),
    }
}

/// The messages' receivers and contents, kept alive for their `Outbound`s.
struct Batch {
    tenant: TenantId,
    items: Vec<(MessageId, Receiver, TemplateContent)>,
}

impl Batch {
    fn new(items: impl IntoIterator<Item = (String, TemplateContent)>) -> Batch {
        Batch {
            tenant: TenantId::parse("acme").unwrap(),
            items: items
                .into_iter()
                .map(|(cid, content)| {
                    let receiver = Receiver::parse(ReceiverIdType::DeviceToken, &cid).unwrap();
                    (MessageId::generate(), receiver, content)
                })
                .collect(),
        }
    }

    fn outbound(&self) -> Vec<Outbound<'_>> {
        self.items
            .iter()
            .map(|(message_id, receiver, content)| Outbound {
                message_id: *message_id,
                tenant: &self.tenant,
                channel: Channel::Push,
                msg_type: MessageType::Notice,
                receiver,
                content,
                attempt: 1,
            })
            .collect()
    }
}

async fn send(
    supplier: &dyn Supplier,
    cid: &str,
    content: TemplateContent,
) -> (MessageId, Result<Sent, SendError>) {
    let batch = Batch::new([(cid.to_owned(), content)]);
    let outbound = batch.outbound();
    (batch.items[0].0, supplier.send(&outbound[0]).await)
}

#[tokio::test]
async fn a_card_push_carries_the_token_and_answers_the_task_id() {
    let (address, fake) = start().await;
    let tokens = Tokens::in_process();
    let accounts = Accounts::from_config(&[config(address, MASTER_SECRET)], &tokens).unwrap();
    let supplier = Arc::clone(&accounts.find("getui").unwrap().supplier);
    assert_eq!(supplier.name(), "getui");
    assert!(supplier.supports(Channel::Push) && !supplier.supports(Channel::Sms));

    let cid = "online-6f1c2e9a8b7d4c3e";
    let (id, sent) = send(
        supplier.as_ref(),
        cid,
        card(Some("https://example.com/o/1042")),
    )
    .await;
    let request_id = id.as_uuid().simple().to_string();
    assert_eq!(request_id.len(), 32);
    assert_eq!(
        sent.unwrap().supplier_message_id,
        Some(format!("RASS_0101_{request_id}"))
    );
    assert_eq!(fake.auth_calls(), 1);
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].path, calls[0].token.as_str(), calls[0].accepted),
        ("single", "tok-1", true)
    );
    assert_eq!(
        calls[0].payload,
        json!({
            "request_id": request_id,
            "settings": {"ttl": 7_200_000},
            "audience": {"cid": [cid]},
            "push_message": {"notification": {
                "title": "Order shipped",
                "body": "Order 1042 is on its way",
                "click_type": "url",
                "url": "https://example.com/o/1042",
            }},
        })
    );

    // The next push reuses the token.
    let (_, sent) = send(supplier.as_ref(), cid, card(None)).await;
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(fake.auth_calls(), 1);
    let calls = fake.calls();
    assert_eq!(calls[1].token, "tok-1");
    assert_eq!(
        calls[1].payload["push_message"]["notification"],
        json!({"title": "Order shipped", "body": "Order 1042 is on its way", "click_type": "startapp"})
    );
}

#[tokio::test]
async fn a_text_push_takes_the_default_title_and_opens_the_app() {
    let (address, fake) = start().await;
    let mut config = config(address, MASTER_SECRET);
    config
        .settings
        .insert("ttl_ms".to_owned(), "60000".to_owned());
    let supplier = GeTui::from_account(&config, &Tokens::in_process()).unwrap();
    let (id, sent) = send(&supplier, "offline-1", text("您的验证码是 4370")).await;
    assert_eq!(
        sent.unwrap().supplier_message_id,
        Some(format!("RASS_0101_{}", id.as_uuid().simple()))
    );
    let payload = &fake.calls()[0].payload;
    assert_eq!(payload["settings"], json!({"ttl": 60_000}));
    assert_eq!(
        payload["push_message"],
        json!({"notification": {"title": "Herald", "body": "您的验证码是 4370", "click_type": "startapp"}})
    );

    // Without `default_title`, the app name titles texts; without either the account is refused.
    config.settings.remove("default_title");
    config
        .settings
        .insert("app_name".to_owned(), "Acme".to_owned());
    let supplier = GeTui::from_account(&config, &Tokens::in_process()).unwrap();
    let (_, sent) = send(&supplier, "online-1", text("hello")).await;
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(
        fake.calls()[1].payload["push_message"]["notification"]["title"],
        "Acme"
    );
    config.settings.remove("app_name");
    assert!(GeTui::from_account(&config, &Tokens::in_process()).is_err());
}

#[tokio::test]
async fn a_batch_maps_each_cid_to_its_own_result() {
    let (address, fake) = start().await;
    let supplier = supplier(address);
    let markdown = TemplateContent::Markdown {
        title: "t".to_owned(),
        body: "**b**".to_owned(),
    };
    let batch = Batch::new([
        ("online-a".to_owned(), card(Some("https://example.com/a"))),
        ("offline-b".to_owned(), text("b")),
        ("inactive-c".to_owned(), text("c")),
        ("failed-d".to_owned(), text("d")),
        ("online-e".to_owned(), markdown),
        ("busy-f".to_owned(), text("f")),
        ("online-a".to_owned(), text("a again")),
        ("online-g".to_owned(), text(&"长".repeat(257))),
    ]);
    let outbound = batch.outbound();
    let results = supplier.send_batch(&outbound).await;
    assert_eq!(results.len(), 8);
    let task = |at: usize| {
        Ok(Sent {
            supplier_message_id: Some(format!(
                "RASS_0101_{}",
                batch.items[at].0.as_uuid().simple()
            )),
        })
    };
    assert_eq!(results[0], task(0));
    assert_eq!(results[1], task(1));
    assert!(
        matches!(&results[2], Err(SendError::Final { code, message }) if code == "successed_ignore" && message.starts_with("in***-c")),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(&results[3], Err(SendError::Final { code, .. }) if code == "failed"),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(&results[4], Err(SendError::Final { code, message }) if code == "UNSUPPORTED_CONTENT" && message.contains("MARKDOWN")),
        "{:?}",
        results[4]
    );
    assert!(
        matches!(&results[5], Err(SendError::Retryable { code, .. }) if code == "busy"),
        "{:?}",
        results[5]
    );
    assert_eq!(results[6], task(6));
    assert!(
        matches!(&results[7], Err(SendError::Final { code, .. }) if code == "CONTENT_TOO_LONG"),
        "{:?}",
        results[7]
    );

    // Two calls, as the cid online-a may appear once per call; one token for both.
    assert_eq!(fake.auth_calls(), 1);
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let cids = |call: &Call| -> Vec<String> {
        call.payload["msg_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["audience"]["cid"][0].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        cids(&calls[0]),
        ["online-a", "offline-b", "inactive-c", "failed-d", "busy-f"]
    );
    assert_eq!(cids(&calls[1]), ["online-a"]);
    for call in &calls {
        assert_eq!((call.path, call.token.as_str()), ("batch", "tok-1"));
        assert_eq!(call.payload["is_async"], json!(false));
    }
    let first = &calls[0].payload["msg_list"][0];
    assert_eq!(
        first["request_id"],
        json!(batch.items[0].0.as_uuid().simple().to_string())
    );
    assert_eq!(
        first["push_message"]["notification"],
        json!({"title": "Order shipped", "body": "Order 1042 is on its way", "click_type": "url", "url": "https://example.com/a"})
    );
    assert_eq!(
        calls[0].payload["msg_list"][1]["push_message"]["notification"]["title"],
        "Herald"
    );
}

#[tokio::test]
async fn a_large_batch_goes_in_calls_of_two_hundred() {
    let (address, fake) = start().await;
    let supplier = supplier(address);
    let batch = Batch::new((0..250).map(|i| (format!("online-{i:04}"), text("hi"))));
    let results = supplier.send_batch(&batch.outbound()).await;
    assert_eq!(results.len(), 250);
    for (at, result) in results.iter().enumerate() {
        let expected = format!("RASS_0101_{}", batch.items[at].0.as_uuid().simple());
        assert_eq!(
            result.as_ref().unwrap().supplier_message_id.as_deref(),
            Some(expected.as_str())
        );
    }
    let sizes: Vec<usize> = fake
        .calls()
        .iter()
        .map(|c| c.payload["msg_list"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [200, 50]);
    assert_eq!(fake.auth_calls(), 1);
    // Nothing to send, nothing called.
    assert!(supplier.send_batch(&[]).await.is_empty());
    assert_eq!(fake.calls().len(), 2);
}

async fn burst(supplier: &Arc<GeTui>, wave: &str) -> Vec<Result<Sent, SendError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let supplier = Arc::clone(supplier);
        let cid = format!("online-{wave}-{i:03}");
        tasks.spawn(async move { send(supplier.as_ref(), &cid, text("hi")).await.1 });
    }
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_sends_make_one_auth_call_and_one_more_when_the_token_expires() {
    let (address, fake) = start().await;
    let supplier = supplier(address);

    let first = burst(&supplier, "a").await;
    assert!(first.iter().all(Result::is_ok), "{first:?}");
    assert_eq!(fake.auth_calls(), 1);
    assert!(
        fake.calls()
            .iter()
            .all(|c| c.accepted && c.token == "tok-1")
    );

    // GeTui expires tok-1: every sender that meets the refusal forgets it, one fetches tok-2.
    fake.expire_tokens();
    let second = burst(&supplier, "b").await;
    assert!(second.iter().all(Result::is_ok), "{second:?}");
    assert_eq!(fake.auth_calls(), 2);
    let calls = fake.calls();
    let after: Vec<&Call> = calls[100..].iter().collect();
    assert!(
        after
            .iter()
            .filter(|c| c.accepted)
            .all(|c| c.token == "tok-2")
    );
    assert_eq!(after.iter().filter(|c| c.accepted).count(), 100);
    assert!(
        after
            .iter()
            .filter(|c| !c.accepted)
            .all(|c| c.token == "tok-1")
    );
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once() {
    let (address, fake) = start().await;
    let supplier = supplier(address);
    assert!(
        send(supplier.as_ref(), "online-1", text("one"))
            .await
            .1
            .is_ok()
    );

    // Refused mid-way: forgotten, fetched again, the push made again with the new token.
    fake.expire_tokens();
    let (_, sent) = send(supplier.as_ref(), "online-1", text("two")).await;
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(fake.auth_calls(), 2);
    let tokens: Vec<(String, bool)> = fake
        .calls()
        .iter()
        .map(|c| (c.token.clone(), c.accepted))
        .collect();
    assert_eq!(
        tokens,
        [
            ("tok-1".to_owned(), true),
            ("tok-1".to_owned(), false),
            ("tok-2".to_owned(), true)
        ]
    );
    let calls = fake.calls();
    assert_eq!(
        calls[1].payload["request_id"],
        calls[2].payload["request_id"]
    );

    // A fresh token refused too: one refresh, one retry, then the account is unavailable.
    fake.refuse_all.store(true, Ordering::SeqCst);
    let (_, refused) = send(supplier.as_ref(), "online-1", text("three")).await;
    assert!(
        matches!(&refused, Err(SendError::Unavailable { code, .. }) if code == "10001"),
        "{refused:?}"
    );
    assert_eq!(fake.auth_calls(), 3);
    assert_eq!(fake.calls().len(), 5);
}

#[tokio::test]
async fn a_wrong_master_secret_makes_the_account_unavailable() {
    let (address, fake) = start().await;
    let supplier =
        GeTui::from_account(&config(address, "not-the-secret"), &Tokens::in_process()).unwrap();
    let (_, result) = send(&supplier, "online-1", text("hi")).await;
    assert!(
        matches!(&result, Err(SendError::Unavailable { code, message, .. })
            if code == "20001" && message == "auth refused: sign is invalid"),
        "{result:?}"
    );
    assert_eq!(fake.auth_calls(), 0);
    assert!(fake.calls().is_empty());
    // A batch fails each of its messages the same way.
    let batch = Batch::new([
        ("online-1".to_owned(), text("a")),
        ("online-2".to_owned(), text("b")),
    ]);
    let results = supplier.send_batch(&batch.outbound()).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(SendError::Unavailable { code, .. }) if code == "20001"))
    );

    // An app id GeTui does not know: its address is not found.
    let mut unknown = config(address, MASTER_SECRET);
    unknown
        .settings
        .insert("app_id".to_owned(), "NoSuchApp".to_owned());
    let supplier = GeTui::from_account(&unknown, &Tokens::in_process()).unwrap();
    let (_, result) = send(&supplier, "online-1", text("hi")).await;
    assert!(
        matches!(&result, Err(SendError::Unavailable { code, .. }) if code == "404"),
        "{result:?}"
    );
}

#[tokio::test]
async fn answers_are_classified() {
    let (address, _) = start().await;
    let supplier = supplier(address);
    let outcome = |cid: &'static str| {
        let supplier = Arc::clone(&supplier);
        async move { send(supplier.as_ref(), cid, text("hi")).await.1 }
    };
    let invalid = outcome("invalid-cid").await;
    assert!(
        matches!(&invalid, Err(SendError::Final { code, message }) if code == "20001" && message == "target user is invalid"),
        "{invalid:?}"
    );
    let quota = outcome("quota-1").await;
    assert!(
        matches!(&quota, Err(SendError::Unavailable { code, retry_after: Some(d), .. }) if code == "30009" && *d == Duration::from_secs(300)),
        "{quota:?}"
    );
    let rate = outcome("rate-1").await;
    assert!(
        matches!(&rate, Err(SendError::Throttled { code, retry_after: Some(d), .. }) if code == "10005" && *d == Duration::from_secs(60)),
        "{rate:?}"
    );
    let starting = outcome("starting-1").await;
    assert!(
        matches!(&starting, Err(SendError::Retryable { code, .. }) if code == "2"),
        "{starting:?}"
    );
    let down = outcome("down-1").await;
    assert!(
        matches!(&down, Err(SendError::Retryable { code, .. }) if code == "HTTP_502"),
        "{down:?}"
    );
    let inactive = outcome("inactive-1").await;
    assert!(
        matches!(&inactive, Err(SendError::Final { code, .. }) if code == "successed_ignore"),
        "{inactive:?}"
    );
}

#[tokio::test]
async fn content_getui_cannot_take_fails_without_a_call() {
    let (address, fake) = start().await;
    let supplier = supplier(address);
    let long_title = TemplateContent::Card {
        title: "t".repeat(51),
        body: "b".to_owned(),
        url: None,
    };
    let (_, result) = send(supplier.as_ref(), "online-1", long_title).await;
    assert!(
        matches!(&result, Err(SendError::Final { code, .. }) if code == "CONTENT_TOO_LONG"),
        "{result:?}"
    );
    let (_, result) = send(supplier.as_ref(), "online-1", text("  ")).await;
    assert!(
        matches!(&result, Err(SendError::Final { code, .. }) if code == "EMPTY_CONTENT"),
        "{result:?}"
    );
    let template = TemplateContent::SupplierTemplate {
        template_code: "1".to_owned(),
        sign_name: None,
        params: Vec::new(),
    };
    let (_, result) = send(supplier.as_ref(), "online-1", template).await;
    assert!(
        matches!(&result, Err(SendError::Final { code, .. }) if code == "UNSUPPORTED_CONTENT"),
        "{result:?}"
    );
    assert_eq!(fake.auth_calls(), 0);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn debug_leaves_the_secrets_and_the_token_out() {
    let (address, _) = start().await;
    let supplier = supplier(address);
    assert!(
        send(supplier.as_ref(), "online-1", text("hi"))
            .await
            .1
            .is_ok()
    );
    let debug = format!("{supplier:?}");
    assert!(
        debug.contains(APP_ID) && debug.contains("Herald"),
        "{debug}"
    );
    assert!(
        !debug.contains(APP_KEY) && !debug.contains(MASTER_SECRET) && !debug.contains("tok-1"),
        "{debug}"
    );
    let config = format!("{:?}", config(address, MASTER_SECRET));
    assert!(
        !config.contains(MASTER_SECRET) && !config.contains(APP_KEY),
        "{config}"
    );
}

#[test]
fn bad_settings_are_refused() {
    let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let tokens = Tokens::in_process();
    for (key, value) in [
        ("ttl_ms", "259200001"),
        ("ttl_ms", "-2"),
        ("ttl_ms", "two hours"),
        ("app_id", "../evil"),
        ("default_title", &"t".repeat(51)),
    ] {
        let mut account = config(address, MASTER_SECRET);
        account.settings.insert(key.to_owned(), value.to_owned());
        assert!(
            GeTui::from_account(&account, &tokens).is_err(),
            "{key} = {value}"
        );
    }
    let mut account = config(address, MASTER_SECRET);
    account.credentials.remove("master_secret");
    assert!(GeTui::from_account(&account, &tokens).is_err());
    let mut wrong = config(address, MASTER_SECRET);
    wrong.channel = Channel::Sms;
    assert!(Accounts::from_config(&[wrong], &tokens).is_err());
}
