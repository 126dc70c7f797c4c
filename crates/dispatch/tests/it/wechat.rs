//! The WeChat suppliers (official-account template messages, mini-program subscribe messages)
//! against a local api.weixin.qq.com ([`fake`]) that hands out stable tokens, counts the token
//! calls, checks the token and the payload of every send and answers in WeChat's JSON; and the
//! template delivery event and callback signature ([`callback`]).

mod callback;
mod fake;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use dispatch::accounts::{AccountConfig, Accounts};
use dispatch::tokens::Tokens;
use dispatch::wechat::official::WechatOfficial;
use dispatch::{Outbound, SendError, Sent, Supplier};
use domain::{
    Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TemplateParam,
    TenantId,
};
use serde_json::json;

use fake::{APP_ID, APP_SECRET, Health, OPENID, start};

fn config(
    address: SocketAddr,
    channel: Channel,
    supplier: &str,
    settings: &[(&str, &str)],
    secret: &str,
) -> AccountConfig {
    let mut all = BTreeMap::from([("app_id".to_owned(), APP_ID.to_owned())]);
    all.extend(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    AccountConfig {
        id: supplier.to_owned(),
        channel,
        supplier: supplier.to_owned(),
        base_url: Some(format!("http://{address}")),
        weight: 1,
        settings: all,
        credentials: BTreeMap::from([("app_secret".to_owned(), secret.to_owned())]),
        timeout_secs: 5,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: None,
    }
}

/// The supplier as the configuration builds it, with its own tokens.
fn build(config: AccountConfig) -> Arc<dyn Supplier> {
    let accounts =
        Accounts::from_config(std::slice::from_ref(&config), &Tokens::in_process()).unwrap();
    let supplier = Arc::clone(&accounts.find(&config.id).unwrap().supplier);
    assert_eq!(supplier.name(), config.supplier);
    assert!(supplier.supports(config.channel) && !supplier.supports(Channel::Sms));
    supplier
}

fn official(address: SocketAddr) -> Arc<dyn Supplier> {
    build(config(
        address,
        Channel::WechatOfficial,
        "wechat_official",
        &[],
        APP_SECRET,
    ))
}

fn template(code: &str, params: &[(&str, &str)]) -> TemplateContent {
    TemplateContent::SupplierTemplate {
        template_code: code.to_owned(),
        sign_name: None,
        params: params
            .iter()
            .map(|(name, value)| TemplateParam {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
            })
            .collect(),
    }
}

fn order() -> TemplateContent {
    template(
        "TPL_ORDER",
        &[
            ("thing1", "Order #42 shipped"),
            ("time2", "2024-05-01 10:00"),
        ],
    )
}

async fn send(
    supplier: &dyn Supplier,
    channel: Channel,
    openid: &str,
    content: &TemplateContent,
) -> (MessageId, Result<Sent, SendError>) {
    let tenant = TenantId::parse("acme").unwrap();
    let receiver = Receiver::parse(ReceiverIdType::OpenId, openid).unwrap();
    let message_id = MessageId::generate();
    let outbound = Outbound {
        message_id,
        tenant: &tenant,
        channel,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content,
        attempt: 1,
    };
    (message_id, supplier.send(&outbound).await)
}

fn outcome(result: Result<Sent, SendError>) -> String {
    match result {
        Ok(sent) => format!("sent {}", sent.supplier_message_id.unwrap_or_default()),
        Err(SendError::Retryable { code, .. }) => format!("retryable {code}"),
        Err(SendError::Final { code, .. }) => format!("final {code}"),
        Err(SendError::Throttled {
            code, retry_after, ..
        }) => {
            format!(
                "throttled {code} {}s",
                retry_after.unwrap_or_default().as_secs()
            )
        }
        Err(SendError::Unavailable { code, .. }) => format!("unavailable {code}"),
    }
}

#[tokio::test]
async fn a_template_message_goes_out_on_one_stable_token() {
    let (address, fake) = start().await;
    let supplier = official(address);
    let content = template(
        "TPL_ORDER",
        &[
            ("thing1", "Order #42 shipped"),
            ("url", "https://example.com/orders/42"),
            ("time2", "2024-05-01 10:00"),
        ],
    );
    let (first, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &content).await;
    assert_eq!(outcome(sent), "sent 200163836");
    let (second, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
    assert_eq!(outcome(sent), "sent 200163836");

    let fake = fake.lock().unwrap();
    assert_eq!((fake.token_calls, fake.force_calls), (1, 0));
    assert!(
        fake.sent
            .iter()
            .all(|(path, token, _)| path == "template" && token == "88_stable-1")
    );
    assert_eq!(
        fake.sent[0].2,
        json!({
            "touser": OPENID,
            "template_id": "TPL_ORDER",
            "url": "https://example.com/orders/42",
            "client_msg_id": first.to_string(),
            "data": {
                "thing1": {"value": "Order #42 shipped"},
                "time2": {"value": "2024-05-01 10:00"},
            },
        })
    );
    // No link: no `url` at all.
    assert_eq!(fake.sent[1].2.get("url"), None);
    assert_eq!(fake.sent[1].2["client_msg_id"], second.to_string());
}

#[tokio::test]
async fn the_account_link_is_used_when_the_message_has_none() {
    let (address, fake) = start().await;
    let supplier = build(config(
        address,
        Channel::WechatOfficial,
        "wechat_official",
        &[("url", "https://example.com/inbox")],
        APP_SECRET,
    ));
    let (_, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(
        fake.lock().unwrap().sent[0].2["url"],
        "https://example.com/inbox"
    );
}

#[tokio::test]
async fn an_expired_token_is_replaced_and_the_send_made_once_more() {
    let (address, fake) = start().await;
    let supplier = official(address);
    let (_, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
    assert!(sent.is_ok(), "{sent:?}");
    fake.lock()
        .unwrap()
        .tokens
        .insert("88_stable-1".to_owned(), Health::Expired);

    let (_, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
    assert_eq!(outcome(sent), "sent 200163836");
    let fake = fake.lock().unwrap();
    // Normal mode was enough: WeChat handed out a new token for the expired one.
    assert_eq!((fake.token_calls, fake.force_calls), (2, 0));
    assert_eq!(fake.refused, [("88_stable-1".to_owned(), 42001)]);
    assert_eq!(fake.sent.last().unwrap().1, "88_stable-2");
}

#[tokio::test]
async fn a_refused_token_that_comes_back_unchanged_is_force_refreshed() {
    let (address, fake) = start().await;
    let supplier = official(address);
    let (_, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
    assert!(sent.is_ok(), "{sent:?}");
    fake.lock()
        .unwrap()
        .tokens
        .insert("88_stable-1".to_owned(), Health::Revoked);

    let (_, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
    assert_eq!(outcome(sent), "sent 200163836");
    let fake = fake.lock().unwrap();
    // The first refetch (normal mode) handed back the refused token; force mode replaced it.
    assert_eq!((fake.token_calls, fake.force_calls), (3, 1));
    assert_eq!(fake.sent.last().unwrap().1, "88_stable-3");
}

#[tokio::test]
async fn a_token_refused_again_after_the_refresh_is_retried_later_not_looped() {
    let (address, fake) = start().await;
    let supplier = official(address);
    fake.lock().unwrap().refuse_all = true;
    let (_, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
    assert_eq!(outcome(sent), "retryable 40001");
    let fake = fake.lock().unwrap();
    assert_eq!(fake.refused.len(), 2, "one send and one retry");
    assert_eq!((fake.token_calls, fake.force_calls), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_sends_on_an_expired_token_make_one_token_request() {
    let (address, fake) = start().await;
    let supplier = official(address);
    let (_, sent) = send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
    assert!(sent.is_ok(), "{sent:?}");
    fake.lock()
        .unwrap()
        .tokens
        .insert("88_stable-1".to_owned(), Health::Expired);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let supplier = Arc::clone(&supplier);
        tasks.spawn(async move {
            let (_, sent) =
                send(supplier.as_ref(), Channel::WechatOfficial, OPENID, &order()).await;
            outcome(sent)
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap(), "sent 200163836");
    }
    let fake = fake.lock().unwrap();
    assert_eq!(
        fake.token_calls, 2,
        "one token at first, one refresh for the whole burst"
    );
    assert_eq!(fake.force_calls, 0);
    assert!(
        !fake.refused.is_empty()
            && fake
                .refused
                .iter()
                .all(|r| r == &("88_stable-1".to_owned(), 42001))
    );
    assert_eq!(
        fake.sent
            .iter()
            .filter(|(_, token, _)| token == "88_stable-2")
            .count(),
        100
    );
}

#[tokio::test]
async fn wrong_credentials_make_the_account_unavailable() {
    let (address, fake) = start().await;
    let wrong_secret = build(config(
        address,
        Channel::WechatOfficial,
        "wechat_official",
        &[],
        "nope",
    ));
    let (_, sent) = send(
        wrong_secret.as_ref(),
        Channel::WechatOfficial,
        OPENID,
        &order(),
    )
    .await;
    assert_eq!(outcome(sent), "unavailable 40125");
    let mut wrong_app = config(
        address,
        Channel::MiniProgram,
        "mini_program",
        &[],
        APP_SECRET,
    );
    wrong_app
        .settings
        .insert("app_id".to_owned(), "wx0000000000000000".to_owned());
    let (_, sent) = send(
        build(wrong_app).as_ref(),
        Channel::MiniProgram,
        OPENID,
        &order(),
    )
    .await;
    assert_eq!(outcome(sent), "unavailable 40013");
    assert!(fake.lock().unwrap().sent.is_empty());
}

#[tokio::test]
async fn template_refusals_are_classified() {
    let (address, _) = start().await;
    let supplier = official(address);
    for (openid, content, expected) in [
        ("o-unfollowed", order(), "final 43004"),
        ("o-not-ours", order(), "final 40003"),
        (
            OPENID,
            template("TPL_GONE", &[("thing1", "x")]),
            "final 40037",
        ),
        (
            OPENID,
            template("TPL_QUOTA", &[("thing1", "x")]),
            "throttled 45009 60s",
        ),
        (
            OPENID,
            template("TPL_BUSY", &[("thing1", "x")]),
            "retryable -1",
        ),
        (
            OPENID,
            TemplateContent::Text {
                body: "hi".to_owned(),
            },
            "final UNSUPPORTED_CONTENT",
        ),
    ] {
        let (_, sent) = send(supplier.as_ref(), Channel::WechatOfficial, openid, &content).await;
        assert_eq!(outcome(sent), expected, "{openid} {content:?}");
    }
    // A refusal about the receiver names it masked, never in full.
    let (_, sent) = send(
        supplier.as_ref(),
        Channel::WechatOfficial,
        "o-unfollowed",
        &order(),
    )
    .await;
    let Err(SendError::Final { message, .. }) = sent else {
        panic!("final")
    };
    assert!(
        message.contains("require subscribe") && !message.contains("o-unfollowed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_subscribe_message_goes_to_the_mini_program() {
    let (address, fake) = start().await;
    let supplier = build(config(
        address,
        Channel::MiniProgram,
        "mini_program",
        &[
            ("page", "pages/index/index"),
            ("miniprogram_state", "trial"),
            ("lang", "en_US"),
        ],
        APP_SECRET,
    ));
    let with_page = template(
        "SUB_ORDER",
        &[
            ("page", "pages/order/detail?id=42"),
            ("thing1", "Order #42 shipped"),
        ],
    );
    let (_, sent) = send(supplier.as_ref(), Channel::MiniProgram, OPENID, &with_page).await;
    assert_eq!(outcome(sent), "sent 3248682510344192008");
    let without_page = template("SUB_ORDER", &[("thing1", "Order #43 shipped")]);
    let (_, sent) = send(
        supplier.as_ref(),
        Channel::MiniProgram,
        OPENID,
        &without_page,
    )
    .await;
    assert!(sent.is_ok(), "{sent:?}");

    let fake = fake.lock().unwrap();
    assert_eq!(fake.token_calls, 1);
    assert_eq!(
        fake.sent[0],
        (
            "subscribe".to_owned(),
            "88_stable-1".to_owned(),
            json!({
                "touser": OPENID,
                "template_id": "SUB_ORDER",
                "page": "pages/order/detail?id=42",
                "data": {"thing1": {"value": "Order #42 shipped"}},
                "miniprogram_state": "trial",
                "lang": "en_US",
            })
        )
    );
    assert_eq!(fake.sent[1].2["page"], "pages/index/index");
}

#[tokio::test]
async fn subscribe_refusals_are_classified_and_the_defaults_are_formal_and_chinese() {
    let (address, fake) = start().await;
    let supplier = build(config(
        address,
        Channel::MiniProgram,
        "mini_program",
        &[],
        APP_SECRET,
    ));
    for (openid, content, expected) in [
        (
            "o-refused",
            template("SUB_ORDER", &[("thing1", "x")]),
            "final 43101",
        ),
        (
            OPENID,
            template("SUB_ORDER", &[("thing1", "")]),
            "final 47003",
        ),
        (
            "o-not-ours",
            template("SUB_ORDER", &[("thing1", "x")]),
            "final 40003",
        ),
        (
            OPENID,
            template("SUB_QUOTA", &[("thing1", "x")]),
            "throttled 45009 60s",
        ),
        (
            OPENID,
            template("SUB_ORDER", &[("thing1", "x")]),
            "sent 3248682510344192008",
        ),
    ] {
        let (_, sent) = send(supplier.as_ref(), Channel::MiniProgram, openid, &content).await;
        assert_eq!(outcome(sent), expected, "{openid} {content:?}");
    }
    let fake = fake.lock().unwrap();
    let last = &fake.sent.last().unwrap().2;
    assert_eq!(
        (&last["miniprogram_state"], &last["lang"]),
        (&json!("formal"), &json!("zh_CN"))
    );
    assert_eq!(last.get("page"), None);
}

#[test]
fn a_bad_mini_program_setting_is_refused_at_start() {
    let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let bad = config(
        address,
        Channel::MiniProgram,
        "mini_program",
        &[("miniprogram_state", "beta")],
        APP_SECRET,
    );
    let error = Accounts::from_config(&[bad], &Tokens::in_process())
        .err()
        .unwrap();
    assert!(error.to_string().contains("miniprogram_state"), "{error}");
    let mut no_secret = config(
        address,
        Channel::WechatOfficial,
        "wechat_official",
        &[],
        APP_SECRET,
    );
    no_secret.credentials.clear();
    let error = Accounts::from_config(&[no_secret], &Tokens::in_process())
        .err()
        .unwrap();
    assert!(error.to_string().contains("app_secret"), "{error}");
}

#[test]
fn debug_leaves_the_secret_out() {
    let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let supplier = WechatOfficial::from_account(
        &config(
            address,
            Channel::WechatOfficial,
            "wechat_official",
            &[],
            APP_SECRET,
        ),
        &Tokens::in_process(),
    )
    .unwrap();
    let debug = format!("{supplier:?}");
    assert!(
        debug.contains(APP_ID) && !debug.contains(APP_SECRET),
        "{debug}"
    );
}
