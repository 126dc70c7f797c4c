//! The WeCom suppliers against a local qyapi.weixin.qq.com that does what WeCom does: hands out
//! access tokens for the right corp id and secret (and counts how often), refuses unknown and
//! expired tokens, checks each message's fields, and answers in WeCom's JSON and codes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use cache::{Cache, RedisCache};
use dispatch::accounts::{AccountConfig, Accounts};
use dispatch::tokens::Tokens;
use dispatch::{Outbound, SendError, Sent, Supplier};
use domain::{
    Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TenantId,
};
use serde_json::{Value, json};

const CORP_ID: &str = "ww7a3f0c5e2b1d4f60";
const SECRET: &str = "app-secret-from-the-admin-console";
const AGENT_ID: i64 = 1_000_002;
const ROBOT_KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";
/// The token a test puts in the cache as if fetched earlier; the fake says it has expired.
const STALE_TOKEN: &str = "stale-token";

type Params = Query<HashMap<String, String>>;

/// What the fake WeCom remembers.
#[derive(Default)]
struct Wecom {
    gettoken_calls: AtomicUsize,
    /// Tokens handed out and still good.
    tokens: Mutex<HashSet<String>>,
    /// Sends to answer with 42001 although their token is good (a token revoked mid-way).
    refuse_next_sends: AtomicUsize,
    /// Every `message/send` that reached the payload checks, with the token it came with.
    sends: Mutex<Vec<(String, Value)>>,
    /// Message ids handed out, and those recalled.
    msgids: Mutex<Vec<String>>,
    recalls: Mutex<Vec<String>>,
    /// Every robot message that reached the group.
    robot: Mutex<Vec<Value>>,
}

fn answer(errcode: i64, errmsg: &str) -> axum::response::Response {
    axum::Json(json!({"errcode": errcode, "errmsg": errmsg})).into_response()
}

async fn gettoken(State(wecom): State<Arc<Wecom>>, Query(q): Params) -> axum::response::Response {
    wecom.gettoken_calls.fetch_add(1, Ordering::SeqCst);
    // WeCom takes a moment to answer: a burst that would fetch more than once overlaps here.
    tokio::time::sleep(Duration::from_millis(20)).await;
    if q.get("corpid").map(String::as_str) != Some(CORP_ID) {
        return answer(40013, "invalid corpid");
    }
    if q.get("corpsecret").map(String::as_str) != Some(SECRET) {
        return answer(40001, "invalid credential");
    }
    let token = format!("token-{}", uuid::Uuid::now_v7().simple());
    wecom.tokens.lock().unwrap().insert(token.clone());
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}))
        .into_response()
}

/// The token check every API call makes: the token from the query string, or WeCom's refusal.
fn check_token(wecom: &Wecom, q: &HashMap<String, String>) -> Result<String, (i64, &'static str)> {
    let Some(token) = q.get("access_token").filter(|t| !t.is_empty()) else {
        return Err((41001, "access_token missing"));
    };
    if token == STALE_TOKEN {
        return Err((42001, "access_token expired"));
    }
    if !wecom.tokens.lock().unwrap().contains(token) {
        return Err((40014, "invalid access_token"));
    }
    Ok(token.clone())
}

async fn send(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::response::Response {
    let token = match check_token(&wecom, &q) {
        Ok(token) => token,
        Err((code, message)) => return answer(code, message),
    };
    if wecom
        .refuse_next_sends
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return answer(42001, "access_token expired");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return answer(40058, "Warning: wrong json format.");
    };
    if payload["agentid"].as_i64() != Some(AGENT_ID) {
        return answer(
            301002,
            "not allow operate another agent with this accesstoken.",
        );
    }
    let msgtype = payload["msgtype"].as_str().unwrap_or_default();
    let fields = &payload[msgtype];
    let complete = match msgtype {
        "text" | "markdown" => fields["content"].as_str().is_some_and(|c| !c.is_empty()),
        "textcard" => ["title", "description", "url"]
            .iter()
            .all(|f| fields[f].as_str().is_some_and(|v| !v.is_empty())),
        _ => return answer(40008, "invalid message type"),
    };
    if !complete {
        return answer(44004, "empty content");
    }
    wecom.sends.lock().unwrap().push((token, payload.clone()));
    let user = payload["touser"].as_str().unwrap_or_default();
    match user {
        "left-the-company" => answer(81013, "user & party & tag all invalid"),
        "flood" => answer(45009, "api freq out of limit"),
        "busy" => answer(-1, "system busy"),
        "outside-ip" => answer(
            60020,
            "not allow to access from your ip, from ip: 203.0.113.7",
        ),
        "ghost" => axum::Json(json!({
            "errcode": 0, "errmsg": "ok", "invaliduser": "ghost", "msgid": "",
        }))
        .into_response(),
        _ => {
            let msgid = format!("msgid-{}", uuid::Uuid::now_v7().simple());
            wecom.msgids.lock().unwrap().push(msgid.clone());
            axum::Json(json!({
                "errcode": 0, "errmsg": "ok", "invaliduser": "", "invalidparty": "",
                "invalidtag": "", "unlicenseduser": "", "msgid": msgid,
            }))
            .into_response()
        }
    }
}

async fn recall(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::response::Response {
    if let Err((code, message)) = check_token(&wecom, &q) {
        return answer(code, message);
    }
    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
    let msgid = payload["msgid"].as_str().unwrap_or_default().to_owned();
    if !wecom.msgids.lock().unwrap().contains(&msgid) {
        return answer(42052, "msgid expired");
    }
    wecom.recalls.lock().unwrap().push(msgid);
    answer(0, "ok")
}

async fn robot(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::response::Response {
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return answer(40058, "Warning: wrong json format.");
    };
    match q.get("key").map(String::as_str) {
        Some(ROBOT_KEY) => {}
        Some("limited") => return answer(45009, "api freq out of limit"),
        Some("busy") => return answer(-1, "system busy"),
        Some("down") => return (StatusCode::BAD_GATEWAY, "<html>502</html>").into_response(),
        _ => return answer(93000, "invalid webhook url"),
    }
    wecom.robot.lock().unwrap().push(payload);
    answer(0, "ok")
}

/// The fake on a free port; returns its base URL.
async fn start() -> (String, Arc<Wecom>) {
    let wecom = Arc::new(Wecom::default());
    let app = Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/message/send", post(send))
        .route("/cgi-bin/message/recall", post(recall))
        .route("/cgi-bin/webhook/send", post(robot))
        .with_state(Arc::clone(&wecom));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), wecom)
}

fn account(channel: Channel, supplier: &str, base_url: &str, secret: &str) -> AccountConfig {
    AccountConfig {
        id: supplier.to_owned(),
        channel,
        supplier: supplier.to_owned(),
        base_url: Some(base_url.to_owned()),
        weight: 1,
        settings: BTreeMap::from([
            ("corp_id".to_owned(), CORP_ID.to_owned()),
            ("agent_id".to_owned(), AGENT_ID.to_string()),
        ]),
        credentials: BTreeMap::from([("secret".to_owned(), secret.to_owned())]),
        timeout_secs: 5,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
    }
}

/// The app supplier as the configuration builds it.
fn app(base_url: &str, secret: &str, tokens: &Tokens) -> Arc<dyn Supplier> {
    let config = account(Channel::WecomApp, "wecom_app", base_url, secret);
    let accounts = Accounts::from_config(&[config], tokens).unwrap();
    Arc::clone(&accounts.find("wecom_app").unwrap().supplier)
}

fn robot_supplier() -> Arc<dyn Supplier> {
    let mut config = account(Channel::WecomRobot, "wecom_robot", "http://unused", "");
    config.credentials.clear();
    config.settings.clear();
    let accounts = Accounts::from_config(&[config], &Tokens::in_process()).unwrap();
    Arc::clone(&accounts.find("wecom_robot").unwrap().supplier)
}

fn text(body: &str) -> TemplateContent {
    TemplateContent::Text {
        body: body.to_owned(),
    }
}

async fn deliver(
    supplier: &dyn Supplier,
    channel: Channel,
    receiver: &str,
    content: &TemplateContent,
) -> Result<Sent, SendError> {
    let tenant = TenantId::parse("acme").unwrap();
    let id_type = match channel {
        Channel::WecomRobot => ReceiverIdType::WebhookUrl,
        _ => ReceiverIdType::WecomUser,
    };
    let receiver = Receiver::parse(id_type, receiver)
        .or_else(|_| Receiver::parse(ReceiverIdType::UserId, receiver))
        .unwrap();
    let outbound = Outbound {
        message_id: MessageId::generate(),
        tenant: &tenant,
        channel,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content,
        attempt: 1,
    };
    supplier.send(&outbound).await
}

async fn recall_msgid(supplier: &dyn Supplier, msgid: Option<&str>) -> Result<Sent, SendError> {
    let tenant = TenantId::parse("acme").unwrap();
    let receiver = Receiver::parse(ReceiverIdType::WecomUser, "zhangsan").unwrap();
    let content = text("x");
    let outbound = Outbound {
        message_id: MessageId::generate(),
        tenant: &tenant,
        channel: Channel::WecomApp,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content: &content,
        attempt: 1,
    };
    supplier
        .recall(&outbound, msgid)
        .expect("wecom_app recalls")
        .await
}

#[tokio::test]
async fn robot_messages_reach_the_group_as_text_markdown_and_news() {
    let (base, wecom) = start().await;
    let robot = robot_supplier();
    assert_eq!(robot.name(), "wecom_robot");
    assert!(robot.supports(Channel::WecomRobot) && !robot.supports(Channel::WecomApp));
    let hook = format!("{base}/cgi-bin/webhook/send?key={ROBOT_KEY}");
    for content in [
        text("Build 42 finished"),
        TemplateContent::Markdown {
            title: "Build 42".into(),
            body: "> <font color=\"info\">passed</font>".into(),
        },
        TemplateContent::Card {
            title: "Release v2".into(),
            body: "Notes inside".into(),
            url: Some("https://example.com/v2".into()),
        },
    ] {
        let sent = deliver(robot.as_ref(), Channel::WecomRobot, &hook, &content).await;
        assert_eq!(
            sent.unwrap(),
            Sent {
                supplier_message_id: None
            }
        );
    }
    assert_eq!(
        *wecom.robot.lock().unwrap(),
        [
            json!({"msgtype": "text", "text": {"content": "Build 42 finished"}}),
            json!({"msgtype": "markdown", "markdown": {"content": "# Build 42\n> <font color=\"info\">passed</font>"}}),
            json!({"msgtype": "news", "news": {"articles": [
                {"title": "Release v2", "description": "Notes inside", "url": "https://example.com/v2"}
            ]}}),
        ]
    );
    // The key in the URL is the robot's only credential: no token.
    assert_eq!(wecom.gettoken_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn robot_answers_are_classified() {
    let (base, wecom) = start().await;
    let robot = robot_supplier();
    let hook = |key: &str| format!("{base}/cgi-bin/webhook/send?key={key}");
    let send = |key: String| {
        let robot = Arc::clone(&robot);
        async move { deliver(robot.as_ref(), Channel::WecomRobot, &key, &text("hi")).await }
    };
    let limited = send(hook("limited")).await;
    assert!(
        matches!(&limited, Err(SendError::Throttled { code, retry_after: Some(d), .. })
            if code == "45009" && *d == Duration::from_secs(60)),
        "{limited:?}"
    );
    let busy = send(hook("busy")).await;
    assert!(
        matches!(&busy, Err(SendError::Retryable { code, .. }) if code == "-1"),
        "{busy:?}"
    );
    let removed = send(hook("no-such-robot")).await;
    assert!(
        matches!(&removed, Err(SendError::Final { code, message })
            if code == "93000" && message.contains("invalid webhook url") && !message.contains("no-such-robot")),
        "{removed:?}"
    );
    let down = send(hook("down")).await;
    assert!(
        matches!(&down, Err(SendError::Retryable { code, .. }) if code == "HTTP_502"),
        "{down:?}"
    );
    // A receiver that is no URL never leaves Herald.
    let not_a_url = send("ops-group".to_owned()).await;
    assert!(
        matches!(&not_a_url, Err(SendError::Final { code, .. }) if code == "INVALID_RECEIVER"),
        "{not_a_url:?}"
    );
    // An unreachable robot is a transport error, and its key stays out of the message.
    let unreachable =
        send("http://127.0.0.1:1/cgi-bin/webhook/send?key=secret-key".to_owned()).await;
    assert!(
        matches!(&unreachable, Err(SendError::Retryable { code, message })
            if code == "CONNECT" && !message.contains("secret-key")),
        "{unreachable:?}"
    );
    let unsupported = deliver(
        robot.as_ref(),
        Channel::WecomRobot,
        &hook(ROBOT_KEY),
        &TemplateContent::SupplierTemplate {
            template_code: "t".into(),
            sign_name: None,
            params: Vec::new(),
        },
    )
    .await;
    assert!(
        matches!(&unsupported, Err(SendError::Final { code, .. }) if code == "UNSUPPORTED_CONTENT"),
        "{unsupported:?}"
    );
    assert!(wecom.robot.lock().unwrap().is_empty());
}

#[tokio::test]
async fn app_messages_go_out_with_a_fetched_token_and_return_the_msgid() {
    let (base, wecom) = start().await;
    let app = app(&base, SECRET, &Tokens::in_process());
    assert_eq!(app.name(), "wecom_app");
    assert!(app.supports(Channel::WecomApp) && !app.supports(Channel::WecomRobot));

    let first = deliver(
        app.as_ref(),
        Channel::WecomApp,
        "zhangsan",
        &text("Your leave is approved"),
    )
    .await
    .unwrap();
    let card = TemplateContent::Card {
        title: "Leave approved".into(),
        body: "3 days from Monday".into(),
        url: Some("https://example.com/leave/7".into()),
    };
    let second = deliver(app.as_ref(), Channel::WecomApp, "lisi", &card)
        .await
        .unwrap();
    // One token for both.
    assert_eq!(wecom.gettoken_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        [
            first.supplier_message_id.unwrap(),
            second.supplier_message_id.unwrap()
        ],
        wecom.msgids.lock().unwrap()[..]
    );
    let sends = wecom.sends.lock().unwrap();
    assert_eq!(sends[0].0, sends[1].0, "the same token");
    assert_eq!(
        sends[0].1,
        json!({"touser": "zhangsan", "agentid": AGENT_ID, "msgtype": "text",
               "text": {"content": "Your leave is approved"}})
    );
    assert_eq!(
        sends[1].1,
        json!({"touser": "lisi", "agentid": AGENT_ID, "msgtype": "textcard", "textcard": {
            "title": "Leave approved", "description": "3 days from Monday",
            "url": "https://example.com/leave/7"}})
    );
}

/// 100 sends at once find the cached token expired: WeCom refuses it to each, and exactly one
/// of them fetches a new one, which all use.
async fn burst_with_an_expired_token(processes: &[Tokens]) {
    let (base, wecom) = start().await;
    // The token every process holds, fetched "earlier" and since expired at WeCom.
    processes[0]
        .get(&format!("wecom:{CORP_ID}:{AGENT_ID}"), || async {
            Ok((STALE_TOKEN.to_owned(), Duration::from_secs(7200)))
        })
        .await
        .unwrap();
    let apps: Vec<Arc<dyn Supplier>> = processes.iter().map(|t| app(&base, SECRET, t)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let app = Arc::clone(&apps[i % apps.len()]);
        tasks.spawn(async move {
            deliver(
                app.as_ref(),
                Channel::WecomApp,
                &format!("user{i}"),
                &text("hi"),
            )
            .await
        });
    }
    while let Some(sent) = tasks.join_next().await {
        assert!(sent.unwrap().unwrap().supplier_message_id.is_some());
    }
    assert_eq!(wecom.gettoken_calls.load(Ordering::SeqCst), 1);
    let sends = wecom.sends.lock().unwrap();
    assert_eq!(sends.len(), 100);
    let tokens: HashSet<&str> = sends.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tokens.len(), 1, "every send used the one new token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_with_an_expired_token_fetches_one_token_in_one_process() {
    burst_with_an_expired_token(&[Tokens::in_process()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_with_an_expired_token_fetches_one_token_across_processes_sharing_redis() {
    let url = std::env::var("HERALD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("herald-test-{}", uuid::Uuid::now_v7().simple());
    let mut processes = Vec::new();
    for _ in 0..4 {
        let redis = RedisCache::connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("Redis is not reachable at {url}: {e}"));
        processes.push(Tokens::new(Cache::Redis(redis)));
    }
    burst_with_an_expired_token(&processes).await;
}

#[tokio::test]
async fn a_token_refused_mid_way_is_replaced_and_the_send_goes_through() {
    let (base, wecom) = start().await;
    let app = app(&base, SECRET, &Tokens::in_process());
    deliver(app.as_ref(), Channel::WecomApp, "zhangsan", &text("one"))
        .await
        .unwrap();
    wecom.refuse_next_sends.store(1, Ordering::SeqCst);
    let sent = deliver(app.as_ref(), Channel::WecomApp, "zhangsan", &text("two")).await;
    assert!(sent.unwrap().supplier_message_id.is_some());
    assert_eq!(wecom.gettoken_calls.load(Ordering::SeqCst), 2);
    {
        let sends = wecom.sends.lock().unwrap();
        assert_eq!(
            sends.len(),
            2,
            "the refused call never reached the payload checks"
        );
        assert_ne!(
            sends[0].0, sends[1].0,
            "the second send came with a new token"
        );
    }

    // Refused again with the new token too: retried later, not forever now.
    wecom.refuse_next_sends.store(2, Ordering::SeqCst);
    let refused = deliver(app.as_ref(), Channel::WecomApp, "zhangsan", &text("three")).await;
    assert!(
        matches!(&refused, Err(SendError::Retryable { code, .. }) if code == "42001"),
        "{refused:?}"
    );
    assert_eq!(wecom.gettoken_calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_sent_message_is_recalled_by_its_msgid() {
    let (base, wecom) = start().await;
    let app = app(&base, SECRET, &Tokens::in_process());
    let sent = deliver(app.as_ref(), Channel::WecomApp, "zhangsan", &text("oops"))
        .await
        .unwrap();
    let msgid = sent.supplier_message_id.unwrap();
    recall_msgid(app.as_ref(), Some(&msgid)).await.unwrap();
    assert_eq!(*wecom.recalls.lock().unwrap(), [msgid]);

    let expired = recall_msgid(app.as_ref(), Some("msgid-from-last-week")).await;
    assert!(
        matches!(&expired, Err(SendError::Final { code, .. }) if code == "42052"),
        "{expired:?}"
    );
    let unknown = recall_msgid(app.as_ref(), None).await;
    assert!(
        matches!(&unknown, Err(SendError::Final { code, .. }) if code == "NO_MSGID"),
        "{unknown:?}"
    );
    assert_eq!(wecom.recalls.lock().unwrap().len(), 1);
    assert_eq!(wecom.gettoken_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn app_answers_are_classified() {
    let (base, wecom) = start().await;
    let app = app(&base, SECRET, &Tokens::in_process());
    let send = |user: &'static str| {
        let app = Arc::clone(&app);
        async move { deliver(app.as_ref(), Channel::WecomApp, user, &text("hi")).await }
    };
    let gone = send("left-the-company").await;
    assert!(
        matches!(&gone, Err(SendError::Final { code, message })
            if code == "81013" && message.contains("all invalid") && !message.contains("left-the-company")),
        "{gone:?}"
    );
    let ghost = send("ghost").await;
    assert!(
        matches!(&ghost, Err(SendError::Final { code, .. }) if code == "INVALID_USER"),
        "{ghost:?}"
    );
    let flood = send("flood").await;
    assert!(
        matches!(&flood, Err(SendError::Throttled { code, retry_after: Some(d), .. })
            if code == "45009" && *d == Duration::from_secs(60)),
        "{flood:?}"
    );
    let busy = send("busy").await;
    assert!(
        matches!(&busy, Err(SendError::Retryable { code, .. }) if code == "-1"),
        "{busy:?}"
    );
    let outside = send("outside-ip").await;
    assert!(
        matches!(&outside, Err(SendError::Unavailable { code, .. }) if code == "60020"),
        "{outside:?}"
    );
    let sends_so_far = wecom.sends.lock().unwrap().len();
    // `@all` and lists would reach many members: refused before WeCom.
    for many in ["@all", "zhangsan|lisi"] {
        let result = send(many).await;
        assert!(
            matches!(&result, Err(SendError::Final { code, .. }) if code == "INVALID_RECEIVER"),
            "{many}: {result:?}"
        );
    }
    assert_eq!(wecom.sends.lock().unwrap().len(), sends_so_far);

    // A wrong secret or corp id: the account cannot send, and no message reaches WeCom.
    let (base, wecom) = start().await;
    let wrong = app_with(&base, |c| {
        c.credentials
            .insert("secret".into(), "an-old-secret".into());
    });
    let refused = deliver(wrong.as_ref(), Channel::WecomApp, "zhangsan", &text("hi")).await;
    assert!(
        matches!(&refused, Err(SendError::Unavailable { code, message, .. })
            if code == "40001" && !message.contains("an-old-secret")),
        "{refused:?}"
    );
    let wrong = app_with(&base, |c| {
        c.settings.insert("corp_id".into(), "ww-not-ours".into());
    });
    let refused = deliver(wrong.as_ref(), Channel::WecomApp, "zhangsan", &text("hi")).await;
    assert!(
        matches!(&refused, Err(SendError::Unavailable { code, .. }) if code == "40013"),
        "{refused:?}"
    );
    let wrong = app_with(&base, |c| {
        c.settings.insert("agent_id".into(), "1000003".into());
    });
    let refused = deliver(wrong.as_ref(), Channel::WecomApp, "zhangsan", &text("hi")).await;
    assert!(
        matches!(&refused, Err(SendError::Unavailable { code, .. }) if code == "301002"),
        "{refused:?}"
    );
    assert!(wecom.sends.lock().unwrap().is_empty());
    // An unreachable WeCom: a transport error that names neither the secret nor a token.
    let down = app_with("http://127.0.0.1:1", |_| {});
    let unreachable = deliver(down.as_ref(), Channel::WecomApp, "zhangsan", &text("hi")).await;
    assert!(
        matches!(&unreachable, Err(SendError::Retryable { code, message })
            if code == "CONNECT" && !message.contains(SECRET)),
        "{unreachable:?}"
    );
}

fn app_with(base: &str, change: impl FnOnce(&mut AccountConfig)) -> Arc<dyn Supplier> {
    let mut config = account(Channel::WecomApp, "wecom_app", base, SECRET);
    change(&mut config);
    let accounts = Accounts::from_config(&[config], &Tokens::in_process()).unwrap();
    Arc::clone(&accounts.find("wecom_app").unwrap().supplier)
}
