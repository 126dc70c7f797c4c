//! The EMAIL channel over SMTP (supplier `smtp`), with `lettre` on tokio and rustls.
//!
//! One connection per message: EHLO, STARTTLS or implicit TLS, AUTH PLAIN or LOGIN when
//! credentials are configured, then MAIL FROM, RCPT TO and DATA. The `Message-ID` is
//! `<{message id}@{sender's domain}>`, so a retried message is recognisable downstream.
//! Attachments are fetched over http(s) at send time with the shared HTTP client.
//!
//! ```toml
//! [[accounts]]
//! id = "mail"
//! channel = "EMAIL"
//! supplier = "smtp"
//! settings = { host = "smtp.example.com", from = "Herald <noreply@example.com>" }
//! credentials = { username = "herald", password = "..." }
//! ```
//!
//! Settings: `host` (required), `tls` = `starttls` (default), `tls` (implicit) or `none`, `port`
//! (default 587, 465 or 25 by `tls`), `from` (required), `reply_to`, and `ca_file`: a PEM file of
//! the only certificate authorities to trust, for a private relay. Credentials: `username` and
//! `password`, both or neither (no AUTH). `timeout_secs` bounds the whole SMTP exchange.

use std::fmt;
use std::time::Duration;

use domain::{Channel, TemplateContent};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};

/// Most bytes of attachments one message carries: relays commonly cap whole messages at 10 to
/// 25 MiB, and base64 grows attachments by a third.
pub const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;

/// Longest piece of an error kept in an event.
const MAX_ERROR_MESSAGE: usize = 512;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP, for a relay on the same host or network only.
    None,
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

impl TlsMode {
    fn parse(value: &str) -> Option<TlsMode> {
        match value {
            "none" => Some(TlsMode::None),
            "starttls" => Some(TlsMode::StartTls),
            "tls" => Some(TlsMode::Tls),
            _ => None,
        }
    }

    /// The port each mode is served on by convention.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::StartTls => 587,
            TlsMode::Tls => 465,
        }
    }
}

pub struct EmailSupplier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    http: reqwest::Client,
    host: String,
    port: u16,
    tls: TlsMode,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    timeout: Duration,
}

impl fmt::Debug for EmailSupplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The transport holds the credentials, so it is left out.
        f.debug_struct("EmailSupplier")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl EmailSupplier {
    /// Builds the supplier from an `[[accounts]]` entry (see the module documentation).
    pub fn from_account(config: &AccountConfig) -> Result<EmailSupplier, AccountError> {
        let host = config.setting("host")?.to_owned();
        let tls = match config.settings.get("tls") {
            None => TlsMode::StartTls,
            Some(value) => TlsMode::parse(value).ok_or_else(|| {
                config.client_error(format!("tls must be none, starttls or tls, not {value:?}"))
            })?,
        };
        let port = match config.settings.get("port") {
            None => tls.default_port(),
            Some(value) => value
                .parse()
                .map_err(|_| config.client_error(format!("port {value:?} is not a port")))?,
        };
        let mailbox = |name: &'static str, value: &str| {
            value
                .parse::<Mailbox>()
                .map_err(|e| config.client_error(format!("{name} {value:?}: {e}")))
        };
        let from = mailbox("from", config.setting("from")?)?;
        let reply_to = config
            .settings
            .get("reply_to")
            .map(|value| mailbox("reply_to", value))
            .transpose()?;

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(port)
            .timeout(Some(config.timeout()));
        if tls != TlsMode::None {
            let parameters = tls_parameters(config, &host)?;
            builder = builder.tls(match tls {
                TlsMode::StartTls => Tls::Required(parameters),
                _ => Tls::Wrapper(parameters),
            });
        }
        match (
            config.credentials.get("username"),
            config.credentials.get("password"),
        ) {
            (Some(username), Some(password)) => {
                builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
            }
            (None, None) => {}
            (Some(_), None) => return Err(missing_credential(config, "password")),
            (None, Some(_)) => return Err(missing_credential(config, "username")),
        }
        Ok(EmailSupplier {
            transport: builder.build(),
            http: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            host,
            port,
            tls,
            from,
            reply_to,
            timeout: config.timeout(),
        })
    }

    async fn deliver(&self, outbound: &Outbound<'_>) -> Result<Sent, SendError> {
        let TemplateContent::Email {
            subject,
            html,
            text,
            attachments,
        } = outbound.content
        else {
            return Err(final_error(
                "CONTENT_NOT_EMAIL",
                format!(
                    "the smtp supplier sends EMAIL content, not {}",
                    outbound.content.kind()
                ),
            ));
        };
        let to: Address = outbound.receiver.value().parse().map_err(|e| {
            final_error(
                "INVALID_ADDRESS",
                format!("the receiver is no address: {e}"),
            )
        })?;
        let body = body(text.as_deref(), html.as_deref())?;

        let mut parts = Vec::with_capacity(attachments.len());
        let mut total = 0;
        for attachment in attachments {
            let part = self.fetch(attachment, MAX_ATTACHMENT_BYTES - total).await?;
            total += part.bytes.len();
            parts.push(part);
        }
        let message_id = format!("<{}@{}>", outbound.message_id, self.from.email.domain());
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject.as_str())
            .message_id(Some(message_id.clone()));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let email = if parts.is_empty() {
            match body {
                Body::Single(part) => builder.singlepart(part),
                Body::Alternative(part) => builder.multipart(part),
            }
        } else {
            let mut mixed = match body {
                Body::Single(part) => MultiPart::mixed().singlepart(part),
                Body::Alternative(part) => MultiPart::mixed().multipart(part),
            };
            for part in parts {
                mixed = mixed.singlepart(
                    lettre::message::Attachment::new(part.filename)
                        .body(part.bytes, part.content_type),
                );
            }
            builder.multipart(mixed)
        }
        .map_err(|e| final_error("INVALID_MESSAGE", e.to_string()))?;

        match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(Sent {
                supplier_message_id: Some(message_id),
            }),
            Ok(Err(error)) => Err(smtp_error(&error)),
            Err(_) => Err(SendError::Retryable {
                code: "TIMEOUT".to_owned(),
                message: format!(
                    "{}:{} did not finish within {:?}",
                    self.host, self.port, self.timeout
                ),
            }),
        }
    }

    /// Fetches one attachment, at most `room` bytes of it.
    async fn fetch(
        &self,
        attachment: &domain::Attachment,
        room: usize,
    ) -> Result<Fetched, SendError> {
        // Templates are validated on the way in; this is the second line of defence, so the
        // dispatcher never reads a local file or speaks another protocol whatever the event says.
        let url = reqwest::Url::parse(&attachment.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                final_error(
                    "ATTACHMENT_URL_NOT_HTTP",
                    format!(
                        "attachment {:?} is not an http or https URL",
                        excerpt(&attachment.url)
                    ),
                )
            })?;
        let filename = attachment
            .filename
            .clone()
            .or_else(|| filename_from(&url))
            .unwrap_or_else(|| "attachment".to_owned());
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| attachment_error(http::transport_error(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let code = format!("ATTACHMENT_HTTP_{}", status.as_u16());
            let message = format!("fetching attachment {filename:?} answered {status}");
            // The file's host being slow or busy says nothing about this message: try again later.
            return Err(
                if status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                {
                    SendError::Retryable { code, message }
                } else {
                    SendError::Final { code, message }
                },
            );
        }
        let too_large = || {
            final_error(
                "ATTACHMENT_TOO_LARGE",
                format!("attachments exceed {MAX_ATTACHMENT_BYTES} bytes with {filename:?}"),
            )
        };
        if response
            .content_length()
            .is_some_and(|length| length > room as u64)
        {
            return Err(too_large());
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| ContentType::parse(value).ok())
            .unwrap_or_else(|| {
                ContentType::parse("application/octet-stream")
                    .unwrap_or_else(|_| unreachable!("a valid media type"))
            });
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| attachment_error(http::transport_error(&e)))?
        {
            if bytes.len() + chunk.len() > room {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            filename,
            content_type,
            bytes,
        })
    }
}

impl Supplier for EmailSupplier {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Email
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.deliver(message))
    }
}

enum Body {
    Single(SinglePart),
    Alternative(MultiPart),
}

/// Text only, html only, or both as `multipart/alternative`; a blank body counts as absent.
fn body(text: Option<&str>, html: Option<&str>) -> Result<Body, SendError> {
    let present = |body: Option<&str>| body.filter(|b| !b.trim().is_empty()).map(str::to_owned);
    match (present(text), present(html)) {
        (Some(text), Some(html)) => Ok(Body::Alternative(MultiPart::alternative_plain_html(
            text, html,
        ))),
        (Some(text), None) => Ok(Body::Single(SinglePart::plain(text))),
        (None, Some(html)) => Ok(Body::Single(SinglePart::html(html))),
        (None, None) => Err(final_error(
            "EMAIL_WITHOUT_BODY",
            "an email needs an html or a text body",
        )),
    }
}

struct Fetched {
    filename: String,
    content_type: ContentType,
    bytes: Vec<u8>,
}

fn tls_parameters(config: &AccountConfig, host: &str) -> Result<TlsParameters, AccountError> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(path) = config.settings.get("ca_file") {
        let pem = std::fs::read(path)
            .map_err(|e| config.client_error(format!("ca_file {path:?}: {e}")))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| config.client_error(format!("ca_file {path:?}: {e}")))?;
        // A private relay's own authority replaces the public ones rather than joining them.
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(certificate);
    }
    builder.build().map_err(|e| config.client_error(e))
}

fn missing_credential(config: &AccountConfig, name: &'static str) -> AccountError {
    AccountError::MissingCredential {
        id: config.id.clone(),
        name,
    }
}

/// Classifies what the SMTP exchange said: the server refusing the account's login (530,
/// 534, 535) makes the account unavailable, so messages fail over to another; any other 5xx
/// reply is final; a 4xx reply and anything without a reply (connection, TLS, timeout) is worth
/// another try.
fn smtp_error(error: &lettre::transport::smtp::Error) -> SendError {
    let message = excerpt(&error.to_string());
    if let Some(status) = error.status() {
        let code = format!("SMTP_{status}");
        if matches!(status.to_string().as_str(), "530" | "534" | "535") {
            return SendError::Unavailable {
                code,
                message,
                retry_after: None,
            };
        }
        return if error.is_permanent() {
            SendError::Final { code, message }
        } else {
            SendError::Retryable { code, message }
        };
    }
    let code = if error.is_timeout() {
        "TIMEOUT"
    } else if error.is_tls() {
        "TLS"
    } else if error.is_client() {
        "SMTP_CLIENT"
    } else if error.is_response() {
        "SMTP_RESPONSE"
    } else {
        "CONNECT"
    };
    SendError::Retryable {
        code: code.to_owned(),
        message,
    }
}

fn attachment_error(error: SendError) -> SendError {
    match error {
        SendError::Retryable { code, message } => SendError::Retryable {
            code: format!("ATTACHMENT_{code}"),
            message,
        },
        other => other,
    }
}

fn final_error(code: &str, message: impl Into<String>) -> SendError {
    SendError::Final {
        code: code.to_owned(),
        message: message.into(),
    }
}

fn excerpt(text: &str) -> String {
    text.chars().take(MAX_ERROR_MESSAGE).collect()
}

/// The last segment of the URL's path, percent-decoded, when there is one.
fn filename_from(url: &reqwest::Url) -> Option<String> {
    let segment = url.path_segments()?.next_back()?;
    let name = percent_decode(segment);
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn percent_decode(text: &str) -> String {
    let hex = |b: &u8| (*b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_comes_from_the_last_path_segment() {
        let name = |url: &str| filename_from(&reqwest::Url::parse(url).expect("url"));
        assert_eq!(
            name("https://x.io/files/Q3%20report.pdf?sig=1"),
            Some("Q3 report.pdf".to_owned())
        );
        assert_eq!(name("https://x.io/a/b/"), None);
        assert_eq!(name("https://x.io"), None);
        assert_eq!(percent_decode("100%25%zz%4"), "100%%zz%4");
    }
}
