//! The smtp supplier against a real SMTP server on loopback (see `smtp`): plain SMTP, STARTTLS
//! and implicit TLS with the checked-in test certificate authority, AUTH, refusals, and
//! attachments fetched from a local HTTP server.

mod attachments;
mod smtp;

use dispatch::accounts::{AccountConfig, AccountError, Accounts};
use dispatch::email::EmailSupplier;
use dispatch::{Outbound, SendError, Sent, Supplier};
use domain::{
    Attachment, Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent,
    TenantId,
};
use smtp::{Behaviour, Security, fixture, start};

const USER: &str = "herald";
const PASSWORD: &str = "correct horse";

/// An account for the test server on `port`, trusting the test authority, with credentials.
fn account(port: u16, tls: &str) -> AccountConfig {
    let settings = [
        ("host", "127.0.0.1".to_owned()),
        ("port", port.to_string()),
        ("tls", tls.to_owned()),
        ("from", "Herald <noreply@example.com>".to_owned()),
        (
            "ca_file",
            fixture("smtp-ca.pem").to_string_lossy().into_owned(),
        ),
    ];
    AccountConfig {
        id: "mail".to_owned(),
        channel: Channel::Email,
        supplier: "smtp".to_owned(),
        base_url: None,
        weight: 1,
        settings: settings
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        credentials: [("username", USER), ("password", PASSWORD)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        timeout_secs: 5,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: None,
    }
}

fn supplier(config: &AccountConfig) -> EmailSupplier {
    EmailSupplier::from_account(config).unwrap()
}

fn email(text: Option<&str>, html: Option<&str>, attachments: Vec<Attachment>) -> TemplateContent {
    TemplateContent::Email {
        subject: "Your receipt".to_owned(),
        html: html.map(str::to_owned),
        text: text.map(str::to_owned),
        attachments,
    }
}

fn ann() -> Receiver {
    Receiver::parse(ReceiverIdType::Email, "ann@example.com").unwrap()
}

async fn send(
    supplier: &EmailSupplier,
    receiver: &Receiver,
    content: &TemplateContent,
) -> (MessageId, Result<Sent, SendError>) {
    let tenant = TenantId::parse("acme").unwrap();
    let message_id = MessageId::generate();
    let outbound = Outbound {
        message_id,
        tenant: &tenant,
        channel: Channel::Email,
        msg_type: MessageType::Notice,
        receiver,
        content,
        attempt: 1,
    };
    (message_id, supplier.send(&outbound).await)
}

/// A top-level header of a raw message, unfolded; `None` when absent.
fn header(data: &str, name: &str) -> Option<String> {
    let head = data.split("\r\n\r\n").next().unwrap_or_default();
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = value.as_mut() {
                value.push_str(line);
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((key, rest)) = line.split_once(':')
            && key.eq_ignore_ascii_case(name)
        {
            value = Some(rest.trim().to_owned());
        }
    }
    value
}

/// The headers every message carries, as the supplier configured them.
#[track_caller]
fn check_envelope_and_headers(data: &str, id: MessageId) {
    assert_eq!(
        header(data, "From").as_deref(),
        Some("Herald <noreply@example.com>")
    );
    assert_eq!(header(data, "To").as_deref(), Some("ann@example.com"));
    assert_eq!(header(data, "Subject").as_deref(), Some("Your receipt"));
    assert_eq!(
        header(data, "Message-ID"),
        Some(format!("<{id}@example.com>"))
    );
    assert!(header(data, "Date").is_some(), "{data}");
}

#[track_caller]
fn check_error(result: &Result<Sent, SendError>, retryable: bool, want: &str) {
    let (is_retryable, code) = match result {
        Err(SendError::Retryable { code, .. }) => (true, code),
        Err(SendError::Final { code, .. }) => (false, code),
        other => panic!("expected an error {want}, got {other:?}"),
    };
    assert_eq!(
        (is_retryable, code.as_str()),
        (retryable, want),
        "{result:?}"
    );
}

#[tokio::test]
async fn plain_text_goes_over_plain_smtp_with_auth_plain() {
    let mut behaviour = Behaviour::new(Security::Plain);
    behaviour.account = Some((USER, PASSWORD));
    let server = start(behaviour).await;
    let mut config = account(server.port, "none");
    config.settings.insert(
        "reply_to".to_owned(),
        "Support <help@example.com>".to_owned(),
    );
    let supplier = supplier(&config);
    assert_eq!(supplier.name(), "smtp");
    assert!(supplier.supports(Channel::Email) && !supplier.supports(Channel::Sms));

    let content = email(
        Some("Thanks for your order.\n.A line that starts with a dot."),
        None,
        vec![],
    );
    let (id, sent) = send(&supplier, &ann(), &content).await;
    assert_eq!(
        sent.unwrap().supplier_message_id,
        Some(format!("<{id}@example.com>"))
    );

    let received = server.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.mail_from, "noreply@example.com");
    assert_eq!(message.rcpt_to, ["ann@example.com"]);
    assert_eq!(message.user.as_deref(), Some(USER));
    assert!(!message.tls);
    check_envelope_and_headers(&message.data, id);
    assert_eq!(
        header(&message.data, "Reply-To").as_deref(),
        Some("Support <help@example.com>")
    );
    assert_eq!(
        header(&message.data, "Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    // The body arrives intact: lettre dot-stuffed the line the server unstuffed.
    assert!(
        message
            .data
            .contains("\r\n\r\nThanks for your order.\r\n.A line that starts with a dot.\r\n"),
        "{}",
        message.data
    );
}

#[tokio::test]
async fn html_and_text_go_as_multipart_alternative_over_starttls_with_auth_login() {
    let mut behaviour = Behaviour::new(Security::StartTls);
    behaviour.account = Some((USER, PASSWORD));
    behaviour.login_only = true;
    let server = start(behaviour).await;
    let supplier = supplier(&account(server.port, "starttls"));

    let content = email(Some("Hello Ann"), Some("<p>Hello <b>Ann</b></p>"), vec![]);
    let (id, sent) = send(&supplier, &ann(), &content).await;
    sent.unwrap();

    let received = server.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert!(message.tls, "the message went over the upgraded connection");
    assert_eq!(message.user.as_deref(), Some(USER));
    check_envelope_and_headers(&message.data, id);
    let content_type = header(&message.data, "Content-Type").unwrap();
    assert!(
        content_type.starts_with("multipart/alternative;"),
        "{content_type}"
    );
    let data = &message.data;
    let plain = data.find("Content-Type: text/plain").unwrap();
    let html = data.find("Content-Type: text/html").unwrap();
    assert!(plain < html, "the plain part comes first: {data}");
    assert!(
        data[plain..html].contains("\r\n\r\nHello Ann\r\n"),
        "{data}"
    );
    assert!(
        data[html..].contains("\r\n\r\n<p>Hello <b>Ann</b></p>\r\n"),
        "{data}"
    );
}

#[tokio::test]
async fn html_only_goes_over_implicit_tls_without_auth_when_no_credentials_are_set() {
    let server = start(Behaviour::new(Security::Implicit)).await;
    let mut config = account(server.port, "tls");
    config.credentials.clear();
    let supplier = supplier(&config);

    let (id, sent) = send(&supplier, &ann(), &email(None, Some("<p>Hi</p>"), vec![])).await;
    sent.unwrap();
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
    assert_eq!(received[0].user, None);
    check_envelope_and_headers(&received[0].data, id);
    assert_eq!(
        header(&received[0].data, "Content-Type").as_deref(),
        Some("text/html; charset=utf-8")
    );
}

#[tokio::test]
async fn a_server_certificate_from_another_authority_is_refused() {
    let server = start(Behaviour::new(Security::Implicit)).await;
    let mut config = account(server.port, "tls");
    // Without `ca_file` the public roots apply, and the test authority is not one of them.
    config.settings.remove("ca_file");
    let (_, sent) = send(&supplier(&config), &ann(), &email(Some("x"), None, vec![])).await;
    check_error(&sent, true, "CONNECT");
    let Err(SendError::Retryable { message, .. }) = &sent else {
        unreachable!()
    };
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(server.received().is_empty());
}

/// A refused login is the account's problem, not the message's: the account is unavailable
/// and messages fail over to another.
#[tokio::test]
async fn a_wrong_password_makes_the_account_unavailable() {
    let mut behaviour = Behaviour::new(Security::Plain);
    behaviour.account = Some((USER, PASSWORD));
    let server = start(behaviour).await;
    let mut config = account(server.port, "none");
    config
        .credentials
        .insert("password".to_owned(), "wrong".to_owned());
    let (_, sent) = send(&supplier(&config), &ann(), &email(Some("x"), None, vec![])).await;
    assert!(
        matches!(&sent, Err(SendError::Unavailable { code, .. }) if code == "SMTP_535"),
        "{sent:?}"
    );
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_refused_recipient_is_final_and_a_temporary_failure_is_retryable() {
    let mut refusing = Behaviour::new(Security::Plain);
    refusing.account = Some((USER, PASSWORD));
    refusing.rcpt_reply = Some("550 5.1.1 <ann@example.com>: Recipient address rejected");
    let server = start(refusing).await;
    let (_, sent) = send(
        &supplier(&account(server.port, "none")),
        &ann(),
        &email(Some("x"), None, vec![]),
    )
    .await;
    check_error(&sent, false, "SMTP_550");
    let Err(SendError::Final { message, .. }) = &sent else {
        unreachable!()
    };
    assert!(message.contains("Recipient address rejected"), "{message}");

    let mut busy = Behaviour::new(Security::Plain);
    busy.data_reply = Some("451 4.3.0 Local error in processing, try again later");
    let server = start(busy).await;
    let mut config = account(server.port, "none");
    config.credentials.clear();
    let (_, sent) = send(&supplier(&config), &ann(), &email(Some("x"), None, vec![])).await;
    check_error(&sent, true, "SMTP_451");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn credentials_the_server_offers_no_auth_for_are_not_silently_dropped() {
    let server = start(Behaviour::new(Security::Plain)).await;
    let (_, sent) = send(
        &supplier(&account(server.port, "none")),
        &ann(),
        &email(Some("x"), None, vec![]),
    )
    .await;
    check_error(&sent, true, "SMTP_CLIENT");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_server_that_is_down_or_silent_is_retryable() {
    let (_, refused) = send(
        &supplier(&account(1, "none")),
        &ann(),
        &email(Some("x"), None, vec![]),
    )
    .await;
    check_error(&refused, true, "CONNECT");

    // A server that accepts the connection and never greets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let (connection, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
        drop(connection);
    });
    let mut config = account(port, "none");
    config.timeout_secs = 1;
    let (_, silent) = send(&supplier(&config), &ann(), &email(Some("x"), None, vec![])).await;
    check_error(&silent, true, "TIMEOUT");
    held.abort();
}

#[tokio::test]
async fn content_other_than_email_and_receivers_that_are_no_address_are_final() {
    let server = start(Behaviour::new(Security::Plain)).await;
    let supplier = supplier(&account(server.port, "none"));
    let text = TemplateContent::Text {
        body: "hi".to_owned(),
    };
    let (_, sent) = send(&supplier, &ann(), &text).await;
    check_error(&sent, false, "CONTENT_NOT_EMAIL");

    let user = Receiver::parse(ReceiverIdType::UserId, "u-42").unwrap();
    let (_, sent) = send(&supplier, &user, &email(Some("x"), None, vec![])).await;
    check_error(&sent, false, "INVALID_ADDRESS");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn accounts_are_checked_when_built_and_never_show_their_password() {
    let config = account(2525, "starttls");
    let accounts = Accounts::from_config(
        std::slice::from_ref(&config),
        &dispatch::tokens::Tokens::in_process(),
    )
    .unwrap();
    assert!(accounts.find("mail").is_some());

    // Ports follow the mode unless set.
    for (tls, port) in [("none", 25), ("starttls", 587), ("tls", 465)] {
        let mut config = account(0, tls);
        config.settings.remove("port");
        let shown = format!("{:?}", supplier(&config));
        assert!(shown.contains(&format!("port: {port},")), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }

    let broken = |change: &dyn Fn(&mut AccountConfig)| {
        let mut config = account(2525, "starttls");
        change(&mut config);
        EmailSupplier::from_account(&config).unwrap_err()
    };
    assert!(matches!(
        broken(&|c| {
            c.settings.remove("host");
        }),
        AccountError::MissingSetting { name: "host", .. }
    ));
    assert!(matches!(
        broken(&|c| {
            c.settings.remove("from");
        }),
        AccountError::MissingSetting { name: "from", .. }
    ));
    assert!(matches!(
        broken(&|c| {
            c.credentials.remove("password");
        }),
        AccountError::MissingCredential {
            name: "password",
            ..
        }
    ));
    for (key, value) in [
        ("tls", "ssl"),
        ("port", "smtp"),
        ("from", "not an address"),
        ("reply_to", "@"),
        ("ca_file", "/nonexistent/ca.pem"),
    ] {
        let error = broken(&|c| {
            c.settings.insert(key.to_owned(), value.to_owned());
        });
        assert!(
            matches!(error, AccountError::Client { .. }),
            "{key}: {error}"
        );
        assert!(!error.to_string().contains(PASSWORD));
    }

    let mut sms = config.clone();
    sms.channel = Channel::Sms;
    assert!(matches!(
        Accounts::from_config(&[sms], &dispatch::tokens::Tokens::in_process()),
        Err(AccountError::WrongChannel { .. })
    ));
}
