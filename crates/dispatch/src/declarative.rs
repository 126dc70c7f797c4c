//! Declarative HTTP suppliers at work: an account naming `http:{name}` sends through the
//! definition its tenant stored (see `domain::http_supplier`). Each call renders the URL,
//! headers and body from the message, the account's credentials and settings and the call's
//! time and nonce; signs it as the recipe says; and reads the answer through the definition's
//! JSON pointers into sent, retryable or final.
//!
//! Substitutions are escaped for where they land: percent-encoded in the URL (the account's
//! settings are trusted in the URL's path, so a host or path prefix can come from them),
//! JSON-escaped in a JSON body, form-encoded in a form body, and stripped of line breaks in
//! headers.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use domain::http_supplier::{
    BodyFormat, DryRunReport, DryRunRequest, HmacAlgorithm, HttpSupplierSpec, SignEncoding, Signing,
};
use domain::http_supplier_check::{needs, templates};
use domain::http_template::Template;
use domain::{Channel, MessageId, MessageType, Receiver, TemplateContent, TenantId};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::Value;

use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};

/// The longest answer a dry run reports.
const MAX_REPORTED: usize = 2048;

pub struct HttpSupplier {
    spec: Arc<HttpSupplierSpec>,
    /// Every template of the definition, parsed once, by its text.
    parsed: Templates,
    client: reqwest::Client,
    credentials: BTreeMap<String, String>,
    settings: BTreeMap<String, String>,
    origin: Option<String>,
}

impl std::fmt::Debug for HttpSupplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSupplier")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// One request, rendered and signed, before it goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// A definition's templates by their text.
type Templates = HashMap<String, Template>;

/// The values of one call.
struct Call<'a> {
    parsed: &'a Templates,
    message: &'a Outbound<'a>,
    credentials: &'a BTreeMap<String, String>,
    settings: &'a BTreeMap<String, String>,
    now: DateTime<Utc>,
    nonce: String,
    body: Option<String>,
    sign: Option<String>,
}

fn params(content: &TemplateContent) -> &[domain::TemplateParam] {
    match content {
        TemplateContent::SupplierTemplate { params, .. } => params,
        _ => &[],
    }
}

impl Call<'_> {
    fn value(&self, name: &str) -> String {
        let content = self.message.content;
        let none = String::new;
        if let Some(key) = name.strip_prefix("credentials.") {
            return self.credentials.get(key).cloned().unwrap_or_default();
        }
        if let Some(key) = name.strip_prefix("settings.") {
            return self.settings.get(key).cloned().unwrap_or_default();
        }
        if let Some(key) = name.strip_prefix("params.") {
            return params(content)
                .iter()
                .find(|p| p.name == key)
                .map(|p| p.value.clone())
                .unwrap_or_default();
        }
        match name {
            "message_id" => self.message.message_id.to_string(),
            "tenant" => self.message.tenant.to_string(),
            "channel" => self.message.channel.as_str().to_owned(),
            "msg_type" => self.message.msg_type.as_str().to_owned(),
            "receiver" => self.message.receiver.value().to_owned(),
            "attempt" => self.message.attempt.to_string(),
            "timestamp" => self.now.timestamp().to_string(),
            "timestamp_ms" => self.now.timestamp_millis().to_string(),
            "datetime" => self.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "nonce" => self.nonce.clone(),
            "params" => self.params().to_string(),
            "body" => self.body.clone().unwrap_or_default(),
            "sign" => self.sign.clone().unwrap_or_default(),
            "text" => match content {
                TemplateContent::Text { body }
                | TemplateContent::Markdown { body, .. }
                | TemplateContent::Card { body, .. } => body.clone(),
                TemplateContent::Email { text, html, .. } => {
                    text.clone().or_else(|| html.clone()).unwrap_or_default()
                }
                TemplateContent::SupplierTemplate { .. } => none(),
            },
            "title" => match content {
                TemplateContent::Markdown { title, .. } | TemplateContent::Card { title, .. } => {
                    title.clone()
                }
                TemplateContent::Email { subject, .. } => subject.clone(),
                _ => none(),
            },
            "url" => match content {
                TemplateContent::Card { url, .. } => url.clone().unwrap_or_default(),
                _ => none(),
            },
            "template_code" => match content {
                TemplateContent::SupplierTemplate { template_code, .. } => template_code.clone(),
                _ => none(),
            },
            "sign_name" => match content {
                TemplateContent::SupplierTemplate { sign_name, .. } => {
                    sign_name.clone().unwrap_or_default()
                }
                _ => none(),
            },
            _ => none(),
        }
    }

    fn params(&self) -> Value {
        Value::Object(
            params(self.message.content)
                .iter()
                .map(|p| (p.name.clone(), Value::String(p.value.clone())))
                .collect(),
        )
    }

    fn render(&self, text: &str, escape: impl Fn(&str) -> String) -> Result<String, SendError> {
        Ok(parse(self.parsed, text)?.render(|name| self.value(name), escape))
    }

    /// A JSON body leaf: `{{params}}` alone becomes the object, numbers alone stay numbers.
    fn render_json(&self, template: &Value) -> Result<Value, SendError> {
        Ok(match template {
            Value::String(text) => {
                let parsed = parse(self.parsed, text)?;
                match parsed.whole_variable() {
                    Some("params") => self.params(),
                    Some(number @ ("timestamp" | "timestamp_ms" | "attempt")) => self
                        .value(number)
                        .parse::<i64>()
                        .map_or_else(|_| Value::String(self.value(number)), Value::from),
                    _ => Value::String(parsed.render(|name| self.value(name), str::to_owned)),
                }
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.render_json(item))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_json(v)?)))
                    .collect::<Result<_, SendError>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// The template `text`, parsed when the supplier was built.
fn parse<'a>(parsed: &'a Templates, text: &str) -> Result<Cow<'a, Template>, SendError> {
    if let Some(template) = parsed.get(text) {
        return Ok(Cow::Borrowed(template));
    }
    // Definitions are checked before they are stored, so this only fails on a corrupt one.
    Template::parse(text)
        .map(Cow::Owned)
        .map_err(|e| SendError::Final {
            code: "INVALID_HTTP_SUPPLIER".to_owned(),
            message: e.to_string(),
        })
}

/// Percent-encodes all but the unreserved characters of RFC 3986.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn encode(bytes: &[u8], encoding: SignEncoding) -> String {
    match encoding {
        SignEncoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        SignEncoding::HexUpper => bytes.iter().map(|b| format!("{b:02X}")).collect(),
        SignEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

impl HttpSupplier {
    /// The supplier of an account naming a definition: the definition must be loaded into the
    /// account, and the account must hold every credential and setting the definition names.
    pub fn from_account(config: &AccountConfig) -> Result<HttpSupplier, AccountError> {
        let spec = config
            .http_supplier
            .clone()
            .ok_or_else(|| AccountError::Client {
                id: config.id.clone(),
                message: format!("no HTTP supplier is defined as {:?}", config.supplier),
            })?;
        let (credentials, settings) = needs(&spec);
        if let Some(missing) = credentials
            .iter()
            .find(|c| !config.credentials.contains_key(*c))
        {
            return Err(
                config.client_error(format!("the definition needs the credential {missing:?}"))
            );
        }
        if let Some(missing) = settings.iter().find(|s| !config.settings.contains_key(*s)) {
            return Err(
                config.client_error(format!("the definition needs the setting {missing:?}"))
            );
        }
        // The URL is rendered in two parts, escaped differently: parse those too.
        let mut texts: Vec<String> = Vec::new();
        match spec.url.split_once('?') {
            Some((path, query)) => texts.extend([path.to_owned(), query.to_owned()]),
            None => texts.push(spec.url.clone()),
        }
        let mut parsed: Templates = texts
            .into_iter()
            .filter_map(|text| Template::parse(&text).ok().map(|t| (text, t)))
            .collect();
        for (_, _, template) in templates(&spec).map_err(|e| config.client_error(e))? {
            parsed.insert(template.text().to_owned(), template);
        }
        Ok(HttpSupplier {
            parsed,
            spec,
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            credentials: config.credentials.clone(),
            settings: config.settings.clone(),
            origin: config.base_url.clone(),
        })
    }

    fn signature(&self, call: &Call<'_>) -> Result<Option<String>, SendError> {
        let joined = |parts: &[String], separator: &str| -> Result<String, SendError> {
            Ok(parts
                .iter()
                .map(|part| call.render(part, str::to_owned))
                .collect::<Result<Vec<_>, _>>()?
                .join(separator))
        };
        Ok(match &self.spec.signing {
            Signing::Hmac {
                algorithm,
                key,
                parts,
                separator,
                encoding,
            } => {
                let key = call.render(key, str::to_owned)?;
                let message = joined(parts, separator)?;
                let tag = match algorithm {
                    HmacAlgorithm::Sha256 => {
                        hmac::<Hmac<sha2::Sha256>>(key.as_bytes(), message.as_bytes())
                    }
                    HmacAlgorithm::Sha1 => {
                        hmac::<Hmac<sha1::Sha1>>(key.as_bytes(), message.as_bytes())
                    }
                };
                Some(encode(&tag, *encoding))
            }
            Signing::Md5 {
                parts,
                separator,
                encoding,
            } => {
                let digest = Md5::digest(joined(parts, separator)?.as_bytes());
                Some(encode(&digest, *encoding))
            }
            Signing::None | Signing::Bearer { .. } | Signing::Basic { .. } => None,
        })
    }

    fn body(&self, call: &Call<'_>) -> Result<Option<(String, &'static str)>, SendError> {
        let Some(body) = &self.spec.body else {
            return Ok(None);
        };
        Ok(Some(match body.format {
            BodyFormat::Json => (
                call.render_json(&body.template)?.to_string(),
                "application/json",
            ),
            BodyFormat::Form => {
                let mut fields: Vec<(&String, &Value)> = body
                    .template
                    .as_object()
                    .map(|m| m.iter().collect())
                    .unwrap_or_default();
                fields.sort_by_key(|(k, _)| *k);
                let mut encoded = Vec::with_capacity(fields.len());
                for (key, value) in fields {
                    let value = call.render(value.as_str().unwrap_or_default(), str::to_owned)?;
                    encoded.push(format!(
                        "{}={}",
                        percent_encode(key),
                        percent_encode(&value)
                    ));
                }
                (encoded.join("&"), "application/x-www-form-urlencoded")
            }
            BodyFormat::Text => (
                call.render(body.template.as_str().unwrap_or_default(), str::to_owned)?,
                "text/plain; charset=utf-8",
            ),
        }))
    }

    fn url(&self, call: &Call<'_>) -> Result<String, SendError> {
        let text = &self.spec.url;
        let (path, query) = match text.find('?') {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text.as_str(), None),
        };
        let path = parse(&self.parsed, path)?.render(
            |name| {
                let value = call.value(name);
                if name.starts_with("settings.") {
                    value
                } else {
                    percent_encode(&value)
                }
            },
            str::to_owned,
        );
        let mut url = match &self.origin {
            Some(origin) => {
                let after_scheme = path.find("://").map_or(0, |i| i + 3);
                let rest = path[after_scheme..]
                    .find('/')
                    .map_or("", |i| &path[after_scheme + i..]);
                format!("{}{rest}", origin.trim_end_matches('/'))
            }
            None => path,
        };
        if let Some(query) = query {
            url.push('?');
            url.push_str(&call.render(query, percent_encode)?);
        }
        Ok(url)
    }

    /// Renders and signs the request for one message at `now`.
    pub fn prepare(
        &self,
        message: &Outbound<'_>,
        now: DateTime<Utc>,
        nonce: String,
    ) -> Result<Prepared, SendError> {
        let mut call = Call {
            parsed: &self.parsed,
            message,
            credentials: &self.credentials,
            settings: &self.settings,
            now,
            nonce,
            body: None,
            sign: None,
        };
        let uses_body = |text: &String| self.parsed.get(text).is_some_and(|t| t.uses("body"));
        let body_signed = match &self.spec.signing {
            Signing::Hmac { key, parts, .. } => uses_body(key) || parts.iter().any(uses_body),
            Signing::Md5 { parts, .. } => parts.iter().any(uses_body),
            _ => false,
        };
        let content_type;
        if body_signed {
            let body = self.body(&call)?;
            content_type = body.as_ref().map(|(_, t)| *t);
            call.body = body.map(|(b, _)| b);
            call.sign = self.signature(&call)?;
        } else {
            call.sign = self.signature(&call)?;
            let body = self.body(&call)?;
            content_type = body.as_ref().map(|(_, t)| *t);
            call.body = body.map(|(b, _)| b);
        }
        let mut headers = Vec::new();
        for header in &self.spec.headers {
            let value = call.render(&header.value, |v| v.replace(['\r', '\n'], ""))?;
            headers.push((header.name.clone(), value));
        }
        let has = |headers: &[(String, String)], name: &str| {
            headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        match &self.spec.signing {
            Signing::Bearer { token } => {
                let token = call.render(token, str::to_owned)?;
                headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
            }
            Signing::Basic { username, password } => {
                let pair = format!(
                    "{}:{}",
                    call.render(username, str::to_owned)?,
                    call.render(password, str::to_owned)?
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                headers.push(("Authorization".to_owned(), format!("Basic {encoded}")));
            }
            _ => {}
        }
        if let Some(content_type) = content_type
            && !has(&headers, "content-type")
        {
            headers.push(("Content-Type".to_owned(), content_type.to_owned()));
        }
        Ok(Prepared {
            method: self.spec.method.as_str(),
            url: self.url(&call)?,
            headers,
            body: call.body,
        })
    }

    /// Makes the call; the answer's status, headers and body.
    async fn execute(
        &self,
        prepared: &Prepared,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, String), SendError> {
        let method = reqwest::Method::from_bytes(prepared.method.as_bytes()).map_err(|e| {
            SendError::Final {
                code: "INVALID_HTTP_SUPPLIER".to_owned(),
                message: e.to_string(),
            }
        })?;
        let mut request = self.client.request(method, &prepared.url);
        for (name, value) in &prepared.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &prepared.body {
            request = request.body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Ok((status, headers, text))
    }

    /// Reads an answer as the definition says.
    pub fn interpret(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        text: &str,
    ) -> Result<Sent, SendError> {
        let rule = &self.spec.response;
        let json: Option<Value> = serde_json::from_str(text).ok();
        let at = |pointer: &Option<String>| -> Option<String> {
            let value = json.as_ref()?.pointer(pointer.as_deref()?)?;
            Some(match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let excerpt = || text.chars().take(512).collect::<String>();
        let failed = |code: String| {
            let message = at(&rule.error_message_pointer).unwrap_or_else(excerpt);
            if self.spec.retry_codes.contains(&code) {
                SendError::Retryable { code, message }
            } else {
                SendError::Final { code, message }
            }
        };
        if !status.is_success() {
            return Err(match at(&rule.error_code_pointer) {
                Some(code) if self.spec.retry_codes.contains(&code) => failed(code),
                _ => http::status_error(status, headers, text),
            });
        }
        if rule.success_pointer.is_some() {
            let value = at(&rule.success_pointer);
            if !value
                .as_ref()
                .is_some_and(|v| rule.success_values.contains(v))
            {
                let code = at(&rule.error_code_pointer)
                    .or(value)
                    .unwrap_or_else(|| "UNREADABLE_ANSWER".to_owned());
                return Err(failed(code));
            }
        }
        Ok(Sent {
            supplier_message_id: at(&rule.message_id_pointer),
        })
    }

    async fn post(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let prepared = self.prepare(
            message,
            Utc::now(),
            uuid::Uuid::now_v7().simple().to_string(),
        )?;
        let (status, headers, text) = self.execute(&prepared).await?;
        self.interpret(status, &headers, &text)
    }
}

impl Supplier for HttpSupplier {
    fn name(&self) -> &'static str {
        "http"
    }

    fn supports(&self, channel: Channel) -> bool {
        self.spec.channels.contains(&channel)
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.post(message))
    }
}

fn outcome(error: &SendError) -> &'static str {
    match error {
        SendError::Retryable { .. } => "RETRYABLE",
        SendError::Final { .. } => "FINAL",
        SendError::Unavailable { .. } => "UNAVAILABLE",
        SendError::Throttled { .. } => "THROTTLED",
    }
}

fn error_report(report: &mut DryRunReport, error: &SendError, outcome_name: &'static str) {
    report.outcome = outcome_name.to_owned();
    report.code = Some(error.code().to_owned());
    report.message = Some(match error {
        SendError::Retryable { message, .. }
        | SendError::Final { message, .. }
        | SendError::Unavailable { message, .. }
        | SendError::Throttled { message, .. } => message.clone(),
    });
}

/// Tries a definition for real: one call to `request.url` with a sample message, reported with
/// every credential value masked.
pub async fn dry_run(
    spec: &HttpSupplierSpec,
    tenant: &TenantId,
    request: DryRunRequest,
    timeout: Duration,
) -> DryRunReport {
    let mut report = DryRunReport {
        outcome: "NOT_SENT".to_owned(),
        ..DryRunReport::default()
    };
    let config = AccountConfig {
        id: "dry-run".to_owned(),
        channel: request.channel,
        supplier: String::new(),
        base_url: Some(request.url.clone()),
        weight: 1,
        settings: request.settings.clone(),
        credentials: request.credentials.clone(),
        timeout_secs: timeout.as_secs().max(1),
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: Some(Arc::new(spec.clone())),
    };
    let not_sent = |report: &mut DryRunReport, code: &str, message: String| {
        report.code = Some(code.to_owned());
        report.message = Some(message);
    };
    let supplier = match HttpSupplier::from_account(&config) {
        Ok(supplier) => supplier,
        Err(error) => {
            not_sent(&mut report, "ACCOUNT_UNUSABLE", error.to_string());
            return report;
        }
    };
    if !supplier.supports(request.channel) {
        not_sent(
            &mut report,
            "WRONG_CHANNEL",
            format!("the definition does not serve {}", request.channel),
        );
        return report;
    }
    let receiver = match Receiver::parse(
        request.channel.default_receiver_id_type(),
        &request.receiver,
    ) {
        Ok(receiver) => receiver,
        Err(error) => {
            not_sent(&mut report, error.code(), error.to_string());
            return report;
        }
    };
    let message = Outbound {
        message_id: MessageId::generate(),
        tenant,
        channel: request.channel,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content: &request.content,
        attempt: 1,
    };
    let prepared = match supplier.prepare(
        &message,
        Utc::now(),
        uuid::Uuid::now_v7().simple().to_string(),
    ) {
        Ok(prepared) => prepared,
        Err(error) => {
            error_report(&mut report, &error, "NOT_SENT");
            return report;
        }
    };
    let mask = |text: &str| {
        request
            .credentials
            .values()
            .filter(|v| v.len() >= 3)
            .fold(text.to_owned(), |text, secret| {
                text.replace(secret.as_str(), "***")
            })
    };
    report.method = prepared.method.to_owned();
    report.url = mask(&prepared.url);
    report.headers = prepared
        .headers
        .iter()
        .map(|(name, value)| {
            let value = if name.eq_ignore_ascii_case("authorization") {
                "***".to_owned()
            } else {
                mask(value)
            };
            (name.clone(), value)
        })
        .collect();
    report.body = prepared.body.as_deref().map(mask);
    match supplier.execute(&prepared).await {
        Err(error) => error_report(&mut report, &error, outcome(&error)),
        Ok((status, headers, text)) => {
            report.status = Some(status.as_u16());
            report.response = Some(mask(&text.chars().take(MAX_REPORTED).collect::<String>()));
            match supplier.interpret(status, &headers, &text) {
                Ok(sent) => {
                    report.outcome = "SENT".to_owned();
                    report.supplier_message_id = sent.supplier_message_id;
                }
                Err(error) => error_report(&mut report, &error, outcome(&error)),
            }
        }
    }
    report
}

#[cfg(test)]
#[path = "declarative_tests.rs"]
mod tests;
