//! Attachments: fetched from a local HTTP server and attached with their names and types;
//! failed fetches classified; anything but http(s) refused.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use domain::Attachment;

use super::smtp::{Behaviour, Security, start};
use super::{account, ann, check_envelope_and_headers, check_error, email, header, send, supplier};

/// Serves `/files/*` for attachments.
async fn file_server() -> SocketAddr {
    let app = Router::new()
        .route(
            "/files/invoice.pdf",
            get(|| async { ([(header::CONTENT_TYPE, "application/pdf")], pdf()) }),
        )
        .route(
            "/files/report",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/csv")],
                    "month,total\r\n9,42\r\n",
                )
            }),
        )
        .route(
            "/files/gone",
            get(|| async { StatusCode::NOT_FOUND.into_response() }),
        )
        .route(
            "/files/busy",
            get(|| async { StatusCode::SERVICE_UNAVAILABLE.into_response() }),
        )
        .route(
            "/files/huge",
            get(|| async { vec![b'x'; dispatch::email::MAX_ATTACHMENT_BYTES + 1] }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// A small binary file, so it travels base64-encoded on one line.
fn pdf() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend([0x00, 0x9c, 0xff, 0xe2, 0x80, 0x0a, 0x7f]);
    bytes
}

fn attachment(url: String, filename: Option<&str>) -> Attachment {
    Attachment {
        url,
        filename: filename.map(str::to_owned),
    }
}

#[tokio::test]
async fn attachments_are_fetched_and_attached() {
    let files = file_server().await;
    let server = start(Behaviour::new(Security::Plain)).await;
    let mut config = account(server.port, "none");
    config.credentials.clear();
    let supplier = supplier(&config);

    let content = email(
        Some("Your invoice is attached."),
        Some("<p>Your invoice is attached.</p>"),
        vec![
            attachment(format!("http://{files}/files/invoice.pdf"), None),
            attachment(
                format!("http://{files}/files/report?month=9"),
                Some("Q3 report.csv"),
            ),
        ],
    );
    let (id, sent) = send(&supplier, &ann(), &content).await;
    sent.unwrap();
    let received = server.received();
    assert_eq!(received.len(), 1);
    let data = &received[0].data;
    check_envelope_and_headers(data, id);
    assert!(
        header(data, "Content-Type")
            .unwrap()
            .starts_with("multipart/mixed;"),
        "{data}"
    );
    // The bodies come first, as alternatives, then each file with its name and type.
    let alternative = data.find("Content-Type: multipart/alternative").unwrap();
    let invoice = data
        .find("Content-Disposition: attachment; filename=\"invoice.pdf\"")
        .unwrap();
    let report = data
        .find("Content-Disposition: attachment; filename=\"Q3 report.csv\"")
        .unwrap();
    assert!(alternative < invoice && invoice < report, "{data}");
    let invoice_part = &data[invoice..report];
    assert!(
        invoice_part.contains("Content-Type: application/pdf"),
        "{data}"
    );
    assert!(
        invoice_part.contains("Content-Transfer-Encoding: base64"),
        "{data}"
    );
    assert!(invoice_part.contains(&BASE64.encode(pdf())), "{data}");
    let report_part = &data[report..];
    assert!(report_part.contains("Content-Type: text/csv"), "{data}");
    assert!(report_part.contains("month,total\r\n9,42\r\n"), "{data}");

    // A missing file is final, a busy file host worth another try; neither sends anything.
    for (path, retryable, code) in [
        ("gone", false, "ATTACHMENT_HTTP_404"),
        ("busy", true, "ATTACHMENT_HTTP_503"),
        ("huge", false, "ATTACHMENT_TOO_LARGE"),
    ] {
        let content = email(
            Some("x"),
            None,
            vec![attachment(format!("http://{files}/files/{path}"), None)],
        );
        let (_, sent) = send(&supplier, &ann(), &content).await;
        check_error(&sent, retryable, code);
    }
    let (_, sent) = send(
        &supplier,
        &ann(),
        &email(
            Some("x"),
            None,
            vec![attachment("http://127.0.0.1:1/a.pdf".to_owned(), None)],
        ),
    )
    .await;
    check_error(&sent, true, "ATTACHMENT_CONNECT");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn an_attachment_that_is_not_http_is_refused_before_anything_is_fetched_or_sent() {
    let server = start(Behaviour::new(Security::Plain)).await;
    let supplier = supplier(&account(server.port, "none"));
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/a.pdf",
        "data:,hello",
    ] {
        let content = email(Some("x"), None, vec![attachment(url.to_owned(), None)]);
        let (_, sent) = send(&supplier, &ann(), &content).await;
        check_error(&sent, false, "ATTACHMENT_URL_NOT_HTTP");
    }
    assert!(server.received().is_empty());
}
