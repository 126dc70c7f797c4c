//! A small SMTP server on loopback that speaks enough of RFC 5321 for a real client: EHLO,
//! STARTTLS (RFC 3207) or implicit TLS, AUTH PLAIN and LOGIN (RFC 4954) against one account,
//! MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP and QUIT. It records what it accepts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    /// Offers STARTTLS, and refuses AUTH and MAIL until the client has upgraded.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// How the server behaves.
#[derive(Clone)]
pub struct Behaviour {
    pub security: Security,
    /// The one account AUTH accepts; when set, MAIL needs a successful AUTH first.
    pub account: Option<(&'static str, &'static str)>,
    /// Offer LOGIN only, so the client cannot pick PLAIN.
    pub login_only: bool,
    /// The reply to every RCPT instead of `250`.
    pub rcpt_reply: Option<&'static str>,
    /// The reply after the message data instead of `250`; the message is then not recorded.
    pub data_reply: Option<&'static str>,
}

impl Behaviour {
    pub fn new(security: Security) -> Behaviour {
        Behaviour {
            security,
            account: None,
            login_only: false,
            rcpt_reply: None,
            data_reply: None,
        }
    }
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The user AUTH accepted.
    pub user: Option<String>,
    /// Whether the message came over TLS.
    pub tls: bool,
    /// The message as sent, dot-unstuffed, lines ending in CRLF.
    pub data: String,
}

pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpServer {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// `tests/fixtures`: `smtp-ca.pem`, a test authority whose key was thrown away once it had
/// signed `smtp-server.pem` (P-256, for `localhost` and `127.0.0.1`, valid until 2126) with its
/// key `smtp-server.key`; made with `openssl req -x509` and `openssl x509 -req`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn acceptor() -> TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("smtp-server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("smtp-server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// Listens on `127.0.0.1:0`; each connection gets its own task.
pub async fn start(behaviour: Behaviour) -> SmtpServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&received);
    let acceptor = acceptor();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let session = Session {
                behaviour: behaviour.clone(),
                received: Arc::clone(&recorded),
                tls: false,
                user: None,
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that hangs up mid-session is not the server's problem.
                let _ = session.serve(tcp, acceptor).await;
            });
        }
    });
    SmtpServer { port, received }
}

struct Session {
    behaviour: Behaviour,
    received: Arc<Mutex<Vec<Received>>>,
    tls: bool,
    user: Option<String>,
}

/// The envelope of the transaction in progress.
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl Session {
    async fn serve(
        mut self,
        tcp: tokio::net::TcpStream,
        acceptor: TlsAcceptor,
    ) -> std::io::Result<()> {
        if self.behaviour.security == Security::Implicit {
            let stream = acceptor.accept(tcp).await?;
            self.tls = true;
            self.run(stream, true).await?;
            return Ok(());
        }
        if let Some(tcp) = self.run(tcp, true).await? {
            let stream = acceptor.accept(tcp).await?;
            self.tls = true;
            // RFC 3207: after the handshake the client starts over with EHLO, and no greeting.
            self.user = None;
            self.run(stream, false).await?;
        }
        Ok(())
    }

    /// Runs commands until QUIT or end of input; returns the stream when STARTTLS was accepted.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: S,
        greet: bool,
    ) -> std::io::Result<Option<S>> {
        let mut io = BufReader::new(stream);
        if greet {
            reply(&mut io, "220 localhost ESMTP test server").await?;
        }
        let mut transaction = Transaction::default();
        loop {
            let Some(line) = read_line(&mut io).await? else {
                return Ok(None);
            };
            let (verb, argument) = match line.split_once(' ') {
                Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.to_owned()),
                None => (line.to_ascii_uppercase(), String::new()),
            };
            match verb.as_str() {
                "EHLO" => {
                    transaction = Transaction::default();
                    let mut lines = vec!["250-localhost greets you".to_owned()];
                    if self.behaviour.security == Security::StartTls && !self.tls {
                        lines.push("250-STARTTLS".to_owned());
                    }
                    if self.behaviour.account.is_some() && self.may_authenticate() {
                        let mechanisms = if self.behaviour.login_only {
                            "LOGIN"
                        } else {
                            "PLAIN LOGIN"
                        };
                        lines.push(format!("250-AUTH {mechanisms}"));
                    }
                    lines.push("250 ENHANCEDSTATUSCODES".to_owned());
                    reply(&mut io, &lines.join("\r\n")).await?;
                }
                "STARTTLS" if self.behaviour.security == Security::StartTls && !self.tls => {
                    reply(&mut io, "220 2.0.0 Ready to start TLS").await?;
                    // The client sends nothing more in clear, so nothing is left in the buffer.
                    return Ok(Some(io.into_inner()));
                }
                "AUTH" if self.behaviour.account.is_some() && self.may_authenticate() => {
                    let answer = self.authenticate(&mut io, &argument).await?;
                    reply(&mut io, answer).await?;
                }
                "MAIL" => {
                    let answer = if self.behaviour.security == Security::StartTls && !self.tls {
                        "530 5.7.0 Must issue a STARTTLS command first"
                    } else if self.behaviour.account.is_some() && self.user.is_none() {
                        "530 5.7.0 Authentication required"
                    } else if let Some(from) = path(&argument, "FROM:") {
                        transaction = Transaction {
                            mail_from: Some(from),
                            rcpt_to: Vec::new(),
                        };
                        "250 2.1.0 Ok"
                    } else {
                        "501 5.5.4 Syntax: MAIL FROM:<address>"
                    };
                    reply(&mut io, answer).await?;
                }
                "RCPT" => {
                    let answer = match (&transaction.mail_from, path(&argument, "TO:")) {
                        (None, _) => "503 5.5.1 Need MAIL first",
                        (_, None) => "501 5.5.4 Syntax: RCPT TO:<address>",
                        (Some(_), Some(to)) => match self.behaviour.rcpt_reply {
                            Some(refusal) => refusal,
                            None => {
                                transaction.rcpt_to.push(to);
                                "250 2.1.5 Ok"
                            }
                        },
                    };
                    reply(&mut io, answer).await?;
                }
                "DATA" => {
                    if transaction.rcpt_to.is_empty() {
                        reply(&mut io, "503 5.5.1 No valid recipients").await?;
                        continue;
                    }
                    reply(&mut io, "354 End data with <CR><LF>.<CR><LF>").await?;
                    let Some(data) = read_data(&mut io).await? else {
                        return Ok(None);
                    };
                    let transaction = std::mem::take(&mut transaction);
                    if let Some(answer) = self.behaviour.data_reply {
                        reply(&mut io, answer).await?;
                        continue;
                    }
                    self.received.lock().unwrap().push(Received {
                        mail_from: transaction.mail_from.unwrap_or_default(),
                        rcpt_to: transaction.rcpt_to,
                        user: self.user.clone(),
                        tls: self.tls,
                        data,
                    });
                    reply(&mut io, "250 2.0.0 Ok: queued").await?;
                }
                "RSET" => {
                    transaction = Transaction::default();
                    reply(&mut io, "250 2.0.0 Ok").await?;
                }
                "NOOP" => reply(&mut io, "250 2.0.0 Ok").await?,
                "QUIT" => {
                    reply(&mut io, "221 2.0.0 Bye").await?;
                    return Ok(None);
                }
                _ => reply(&mut io, "502 5.5.2 Command not recognized").await?,
            }
        }
    }

    /// AUTH is offered once the connection is as secure as the server demands.
    fn may_authenticate(&self) -> bool {
        self.behaviour.security != Security::StartTls || self.tls
    }

    async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut BufReader<S>,
        argument: &str,
    ) -> std::io::Result<&'static str> {
        let Some((user, password)) = self.behaviour.account else {
            return Ok("502 5.5.2 No AUTH here");
        };
        let (mechanism, initial) = match argument.split_once(' ') {
            Some((mechanism, initial)) => {
                (mechanism.to_ascii_uppercase(), Some(initial.to_owned()))
            }
            None => (argument.to_ascii_uppercase(), None),
        };
        let given = match mechanism.as_str() {
            "PLAIN" if !self.behaviour.login_only => {
                let response = match initial {
                    Some(response) => response,
                    None => challenge(io, "").await?.unwrap_or_default(),
                };
                // authzid NUL authcid NUL password (RFC 4616).
                let decoded = decode(&response);
                let mut fields = decoded.split('\0');
                let _authzid = fields.next();
                fields
                    .next()
                    .zip(fields.next())
                    .map(|(u, p)| (u.to_owned(), p.to_owned()))
            }
            "LOGIN" => {
                let user = match initial {
                    Some(user) => Some(user),
                    None => challenge(io, &BASE64.encode("Username:")).await?,
                };
                let password = challenge(io, &BASE64.encode("Password:")).await?;
                user.zip(password).map(|(u, p)| (decode(&u), decode(&p)))
            }
            _ => return Ok("504 5.5.4 Unrecognized authentication type"),
        };
        Ok(match given {
            Some((u, p)) if u == user && p == password => {
                self.user = Some(u);
                "235 2.7.0 Authentication successful"
            }
            _ => "535 5.7.8 Authentication credentials invalid",
        })
    }
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    text: &str,
) -> std::io::Result<()> {
    let stream = io.get_mut();
    stream.write_all(text.as_bytes()).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// One line without its CRLF; `None` at end of input.
async fn read_line<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    if io.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Sends `334 {text}` and reads the client's answer.
async fn challenge<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    text: &str,
) -> std::io::Result<Option<String>> {
    reply(io, &format!("334 {text}")).await?;
    read_line(io).await
}

/// The message up to the line holding a lone dot, with the dot-stuffing of RFC 5321 4.5.2 undone.
async fn read_data<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        let Some(line) = read_line(io).await? else {
            return Ok(None);
        };
        if line == "." {
            return Ok(Some(data));
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
    }
}

/// The address in `FROM:<a@b> PARAM=...` or `TO:<a@b>`.
fn path(argument: &str, prefix: &str) -> Option<String> {
    let rest = argument
        .get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| argument[prefix.len()..].trim_start())?;
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

fn decode(text: &str) -> String {
    String::from_utf8_lossy(&BASE64.decode(text.trim()).unwrap_or_default()).into_owned()
}
