//! `wecom_robot`: text, markdown and news reach the group; WeCom's refusals are classified.

use super::*;

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
