//! Declarative HTTP suppliers: a supplier defined as data, by a tenant's admin, with no code
//! change. The definition names the request (method, URL, headers, a body template over the
//! message), a signing recipe from a fixed set, how to read the answer (JSON pointers to
//! success, the supplier's message id and its error code) and which error codes are worth a
//! retry. A channel account then uses it by naming `http:{name}` as its supplier, with the
//! credentials and settings the templates name.
//!
//! Each definition is a stream `http_supplier-{tenant}.{name}` of `HttpSupplierDefined` events,
//! each holding the whole definition after the change, what changed and who changed it.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::Channel;
use crate::ids::TenantId;
use crate::wire::{EventDecodeError, event_enum, unsupported_version};

/// How an account names a declarative supplier: `http:{name}`.
pub const ACCOUNT_PREFIX: &str = "http:";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
}

impl HttpMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
        }
    }
}

/// How the body template is read and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BodyFormat {
    /// A JSON document whose string leaves are templates (`application/json`).
    Json,
    /// A JSON object of field templates, sent as `application/x-www-form-urlencoded` in the
    /// order of the field names.
    Form,
    /// One text template, sent as it renders (`text/plain` unless a header says otherwise).
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpBody {
    pub format: BodyFormat,
    /// A JSON value for `JSON` and `FORM`, a JSON string for `TEXT`.
    pub template: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    pub name: String,
    /// A template.
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HmacAlgorithm {
    Sha256,
    Sha1,
}

/// How a signature's bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignEncoding {
    Hex,
    HexUpper,
    Base64,
}

/// The signing recipe, from a fixed set. HMAC and MD5 compute `{{sign}}` over their parts
/// (templates, joined by the separator) for the URL, headers or body to carry; bearer and
/// basic set the `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Signing {
    None,
    Hmac {
        algorithm: HmacAlgorithm,
        /// A template, usually `{{credentials.secret}}`.
        key: String,
        parts: Vec<String>,
        #[serde(default)]
        separator: String,
        encoding: SignEncoding,
    },
    Md5 {
        parts: Vec<String>,
        #[serde(default)]
        separator: String,
        encoding: SignEncoding,
    },
    Bearer {
        token: String,
    },
    Basic {
        username: String,
        password: String,
    },
}

impl Signing {
    pub const fn kind(&self) -> &'static str {
        match self {
            Signing::None => "NONE",
            Signing::Hmac { .. } => "HMAC",
            Signing::Md5 { .. } => "MD5",
            Signing::Bearer { .. } => "BEARER",
            Signing::Basic { .. } => "BASIC",
        }
    }

    /// Whether it computes `{{sign}}`.
    pub const fn signs(&self) -> bool {
        matches!(self, Signing::Hmac { .. } | Signing::Md5 { .. })
    }
}

/// How the supplier's answer is read. Pointers are JSON pointers (RFC 6901) into the answer's
/// body. Without `success_pointer`, any 2xx answer is a success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponseRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_pointer: Option<String>,
    /// The values at `success_pointer` that mean success, compared as text (`0`, `"OK"`, `true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id_pointer: Option<String>,
    /// Where the supplier's error code is; absent, the value at `success_pointer` is the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code_pointer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message_pointer: Option<String>,
}

/// A declarative supplier's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSupplierSpec {
    /// The channels accounts using it may send on.
    pub channels: Vec<Channel>,
    pub method: HttpMethod,
    /// An absolute http(s) URL template. An account's `base_url` (or a dry run's URL) replaces
    /// its scheme, host and port.
    pub url: String,
    #[serde(default)]
    pub headers: Vec<HttpHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
    pub signing: Signing,
    #[serde(default)]
    pub response: HttpResponseRule,
    /// Supplier error codes worth another try; any other code is final.
    #[serde(default)]
    pub retry_codes: Vec<String>,
}

impl HttpSupplierSpec {
    /// The names of the parts that differ between `self` and `other`.
    pub fn differences(&self, other: &HttpSupplierSpec) -> Vec<String> {
        let mut changed = Vec::new();
        let mut check = |name: &str, differs: bool| {
            if differs {
                changed.push(name.to_owned());
            }
        };
        check("channels", self.channels != other.channels);
        check("method", self.method != other.method);
        check("url", self.url != other.url);
        check("headers", self.headers != other.headers);
        check("body", self.body != other.body);
        check("signing", self.signing != other.signing);
        check("response", self.response != other.response);
        check("retry_codes", self.retry_codes != other.retry_codes);
        changed
    }
}

/// The stream of a tenant's definition.
pub fn stream_name(tenant: &TenantId, name: &str) -> String {
    format!("http_supplier-{tenant}.{name}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSupplierDefined {
    pub tenant: TenantId,
    pub name: String,
    /// The whole definition after the change.
    pub spec: HttpSupplierSpec,
    /// What changed; every part for the first definition.
    pub changed: Vec<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Everything that happens to a declarative supplier.
    pub enum HttpSupplierEvent {
        HttpSupplierDefined,
    }
}

impl HttpSupplierEvent {
    pub const SCHEMA_VERSION: u16 = 1;

    fn upcast<'a>(
        event_type: &str,
        schema_version: u16,
        data: &'a Value,
    ) -> Result<Cow<'a, Value>, EventDecodeError> {
        match schema_version {
            1 => Ok(Cow::Borrowed(data)),
            _ => Err(unsupported_version(
                event_type,
                schema_version,
                Self::SCHEMA_VERSION,
            )),
        }
    }
}

/// Why a definition is refused: the field (`signing.parts[1]`, `body.template.to`) and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct HttpSupplierError {
    pub field: String,
    pub message: String,
}

impl HttpSupplierError {
    pub fn code(&self) -> &'static str {
        "INVALID_HTTP_SUPPLIER"
    }

    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        HttpSupplierError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The definition after its events, if any.
pub fn fold(events: &[HttpSupplierEvent]) -> Option<HttpSupplierDefined> {
    events
        .iter()
        .fold(None, |_, HttpSupplierEvent::HttpSupplierDefined(e)| {
            Some(e.clone())
        })
}

/// Defines or redefines a supplier: one event naming what changed, or none when nothing did.
pub fn decide(
    current: Option<&HttpSupplierDefined>,
    tenant: &TenantId,
    name: &str,
    spec: HttpSupplierSpec,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<Vec<HttpSupplierEvent>, HttpSupplierError> {
    crate::http_supplier_check::check_name(name)?;
    crate::http_supplier_check::check(&spec)?;
    let changed = match current {
        Some(current) => current.spec.differences(&spec),
        None => [
            "channels",
            "method",
            "url",
            "headers",
            "body",
            "signing",
            "response",
            "retry_codes",
        ]
        .map(str::to_owned)
        .to_vec(),
    };
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![
        HttpSupplierDefined {
            tenant: tenant.clone(),
            name: name.to_owned(),
            spec,
            changed,
            actor: actor.to_owned(),
            at,
        }
        .into(),
    ])
}

/// A trial call of a definition, made for real against a URL the admin gives, before the
/// definition is stored or while it is tried out.
#[derive(Clone)]
pub struct DryRunRequest {
    /// Replaces the definition URL's scheme, host and port, like an account's `base_url`.
    pub url: String,
    pub channel: Channel,
    pub receiver: String,
    pub content: crate::template::TemplateContent,
    pub credentials: std::collections::BTreeMap<String, String>,
    pub settings: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for DryRunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are secrets: names only.
        f.debug_struct("DryRunRequest")
            .field("url", &self.url)
            .field("channel", &self.channel)
            .field("settings", &self.settings)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a dry run sent and got back. Credential values are masked (`***`) wherever they
/// appear, and `Authorization` headers entirely.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DryRunReport {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// The answer's status; `None` when no answer came.
    pub status: Option<u16>,
    /// The answer's body, cut at 2 KiB.
    pub response: Option<String>,
    /// `SENT`, `RETRYABLE`, `FINAL`, `UNAVAILABLE`, `THROTTLED`, or `NOT_SENT` when the request
    /// could not be made at all.
    pub outcome: String,
    /// The supplier's (or Herald's) error code when not sent.
    pub code: Option<String>,
    pub message: Option<String>,
    pub supplier_message_id: Option<String>,
}

impl DryRunReport {
    pub fn sent(&self) -> bool {
        self.outcome == "SENT"
    }
}
