//! `wecom_app`: tokens fetched once and replaced when refused, even under a burst and across
//! processes; sends, recalls, and WeCom's refusals classified.

use super::*;

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
