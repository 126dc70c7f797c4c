//! Declarative HTTP suppliers (`admin` scope): a supplier defined as data, tried for real with
//! a dry run against a URL the admin gives, and used by any of the tenant's channel accounts
//! that names `http:{name}` as its supplier. Definitions hold templates, not secrets: the values
//! behind `{{credentials.…}}` are the account's sealed secrets.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use commands::http_suppliers::{self, HttpSupplierView};
use commands::keys::Scope;
use domain::http_supplier::{
    DryRunReport, DryRunRequest, HttpBody, HttpHeader, HttpResponseRule, HttpSupplierError,
    HttpSupplierSpec, Signing,
};
use domain::{TemplateContent, TemplateParam};

use crate::channel_accounts::{Setting, pairs};
use crate::errors;
use crate::templates::{caller, state};
use crate::types::Channel;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "domain::http_supplier::HttpMethod")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "domain::http_supplier::BodyFormat")]
pub enum HttpBodyFormat {
    /// A JSON document whose string leaves are templates; a leaf of only `{{params}}` becomes
    /// the parameters' object, and `{{timestamp}}`, `{{timestamp_ms}}` or `{{attempt}}` alone
    /// become numbers.
    Json,
    /// A JSON object of field templates, sent form-encoded in the order of the field names.
    Form,
    /// One text template.
    Text,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum HttpSigningKind {
    None,
    /// `{{sign}}` = HMAC of the parts joined by the separator, under `key`.
    Hmac,
    /// `{{sign}}` = MD5 of the parts joined by the separator.
    Md5,
    /// `Authorization: Bearer {token}`.
    Bearer,
    /// `Authorization: Basic base64(username:password)`.
    Basic,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "domain::http_supplier::HmacAlgorithm")]
pub enum HmacAlgorithm {
    #[graphql(name = "SHA256")]
    Sha256,
    #[graphql(name = "SHA1")]
    Sha1,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "domain::http_supplier::SignEncoding")]
pub enum SignEncoding {
    Hex,
    HexUpper,
    #[graphql(name = "BASE64")]
    Base64,
}

/// A header; its value is a template.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "HttpHeaderInput")]
pub struct HttpHeaderEntry {
    pub name: String,
    pub value: String,
}

#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "HttpBodyInput")]
pub struct HttpBodyTemplate {
    pub format: HttpBodyFormat,
    /// JSON text for `JSON` and `FORM`; the template itself for `TEXT`.
    pub template: String,
}

/// The signing recipe; the fields its kind does not use are ignored. Every text is a template.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "HttpSigningInput")]
pub struct HttpSigning {
    pub kind: HttpSigningKind,
    /// HMAC (default `SHA256`).
    pub algorithm: Option<HmacAlgorithm>,
    /// HMAC's key, such as `{{credentials.secret}}`.
    pub key: Option<String>,
    /// HMAC and MD5: what is signed, in order.
    #[graphql(default)]
    pub parts: Vec<String>,
    #[graphql(default)]
    pub separator: String,
    /// HMAC and MD5 (default `HEX`).
    pub encoding: Option<SignEncoding>,
    /// BEARER.
    pub token: Option<String>,
    /// BASIC.
    pub username: Option<String>,
    pub password: Option<String>,
}

/// How the answer is read: JSON pointers (RFC 6901) into its body. Without `successPointer`
/// any 2xx answer is a success.
#[derive(SimpleObject, InputObject, Clone, Default)]
#[graphql(input_name = "HttpResponseInput")]
pub struct HttpResponse {
    pub success_pointer: Option<String>,
    /// Values at `successPointer` meaning success, compared as text.
    #[graphql(default)]
    pub success_values: Vec<String>,
    pub message_id_pointer: Option<String>,
    /// Absent: the value at `successPointer` is the error code.
    pub error_code_pointer: Option<String>,
    pub error_message_pointer: Option<String>,
}

/// A declarative supplier's definition.
#[derive(InputObject)]
pub struct HttpSupplierInput {
    /// 1 to 64 lowercase letters, digits, `_` and `-`; accounts name it as `http:{name}`.
    pub name: String,
    pub channels: Vec<Channel>,
    #[graphql(default_with = "HttpMethod::Post")]
    pub method: HttpMethod,
    /// An absolute http(s) URL template; an account's `baseUrl` replaces its scheme, host and port.
    pub url: String,
    #[graphql(default)]
    pub headers: Vec<HttpHeaderEntry>,
    pub body: Option<HttpBodyTemplate>,
    pub signing: HttpSigning,
    #[graphql(default)]
    pub response: HttpResponse,
    /// Supplier error codes worth another try; any other is final.
    #[graphql(default)]
    pub retry_codes: Vec<String>,
}

/// A real call made with a sample message.
#[derive(InputObject)]
pub struct HttpDryRunInput {
    /// Where the call goes: replaces the definition URL's scheme, host and port.
    pub url: String,
    pub channel: Channel,
    pub receiver: String,
    /// The message's text (`{{text}}`).
    pub text: Option<String>,
    /// `{{title}}`.
    pub title: Option<String>,
    /// Makes the sample a supplier template: `{{template_code}}` and `{{params}}`.
    pub template_code: Option<String>,
    #[graphql(default)]
    pub params: Vec<Setting>,
    /// What `{{credentials.…}}` stand for in this call; never stored.
    #[graphql(default)]
    pub credentials: Vec<Setting>,
    #[graphql(default)]
    pub settings: Vec<Setting>,
}

/// What a dry run sent and got back, credential values masked as `***`.
#[derive(SimpleObject)]
pub struct HttpDryRunReport {
    /// `SENT`, `RETRYABLE`, `FINAL`, `UNAVAILABLE`, `THROTTLED`, or `NOT_SENT`.
    pub outcome: String,
    pub code: Option<String>,
    pub message: Option<String>,
    pub supplier_message_id: Option<String>,
    pub method: String,
    pub url: String,
    pub headers: Vec<HttpHeaderEntry>,
    pub body: Option<String>,
    pub status: Option<u16>,
    pub response: Option<String>,
}

/// One change to a definition.
#[derive(SimpleObject)]
pub struct HttpSupplierChange {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub changed: Vec<String>,
}

#[derive(SimpleObject)]
pub struct HttpSupplier {
    pub name: String,
    /// What a channel account names as its supplier: `http:{name}`.
    pub account_supplier: String,
    pub channels: Vec<Channel>,
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<HttpHeaderEntry>,
    pub body: Option<HttpBodyTemplate>,
    pub signing: HttpSigning,
    pub response: HttpResponse,
    pub retry_codes: Vec<String>,
    pub version: u64,
    /// Oldest first.
    pub history: Vec<HttpSupplierChange>,
}

fn invalid(field: &str, message: &str) -> async_graphql::Error {
    errors::command(HttpSupplierError::new(field, message).into())
}

fn required(field: &str, value: Option<String>) -> Result<String> {
    value.ok_or_else(|| invalid(field, "is required for this kind"))
}

fn signing(input: HttpSigning) -> Result<Signing> {
    Ok(match input.kind {
        HttpSigningKind::None => Signing::None,
        HttpSigningKind::Hmac => Signing::Hmac {
            algorithm: input.algorithm.unwrap_or(HmacAlgorithm::Sha256).into(),
            key: required("signing.key", input.key)?,
            parts: input.parts,
            separator: input.separator,
            encoding: input.encoding.unwrap_or(SignEncoding::Hex).into(),
        },
        HttpSigningKind::Md5 => Signing::Md5 {
            parts: input.parts,
            separator: input.separator,
            encoding: input.encoding.unwrap_or(SignEncoding::Hex).into(),
        },
        HttpSigningKind::Bearer => Signing::Bearer {
            token: required("signing.token", input.token)?,
        },
        HttpSigningKind::Basic => Signing::Basic {
            username: required("signing.username", input.username)?,
            password: required("signing.password", input.password)?,
        },
    })
}

fn spec(input: HttpSupplierInput) -> Result<(String, HttpSupplierSpec)> {
    let body = match input.body {
        None => None,
        Some(body) => {
            let template = match body.format {
                HttpBodyFormat::Text => serde_json::Value::String(body.template),
                HttpBodyFormat::Json | HttpBodyFormat::Form => serde_json::from_str(&body.template)
                    .map_err(|e| invalid("body.template", &format!("is not JSON: {e}")))?,
            };
            Some(HttpBody {
                format: body.format.into(),
                template,
            })
        }
    };
    let r = input.response;
    Ok((
        input.name,
        HttpSupplierSpec {
            channels: input.channels.into_iter().map(Into::into).collect(),
            method: input.method.into(),
            url: input.url,
            headers: input
                .headers
                .into_iter()
                .map(|h| HttpHeader {
                    name: h.name,
                    value: h.value,
                })
                .collect(),
            body,
            signing: signing(input.signing)?,
            response: HttpResponseRule {
                success_pointer: r.success_pointer,
                success_values: r.success_values,
                message_id_pointer: r.message_id_pointer,
                error_code_pointer: r.error_code_pointer,
                error_message_pointer: r.error_message_pointer,
            },
            retry_codes: input.retry_codes,
        },
    ))
}

fn dry_run_request(input: HttpDryRunInput) -> Result<DryRunRequest> {
    let content = match input.template_code {
        Some(template_code) => TemplateContent::SupplierTemplate {
            template_code,
            sign_name: None,
            params: input
                .params
                .into_iter()
                .map(|p| TemplateParam {
                    name: p.name,
                    value: p.value,
                })
                .collect(),
        },
        None => match input.title {
            Some(title) => TemplateContent::Card {
                title,
                body: input.text.unwrap_or_default(),
                url: None,
            },
            None => TemplateContent::Text {
                body: input.text.unwrap_or_else(|| "Herald dry run".to_owned()),
            },
        },
    };
    Ok(DryRunRequest {
        url: input.url,
        channel: input.channel.into(),
        receiver: input.receiver,
        content,
        credentials: pairs("credentials", input.credentials)?,
        settings: pairs("settings", input.settings)?,
    })
}

fn show_signing(signing: Signing) -> HttpSigning {
    let mut out = HttpSigning {
        kind: HttpSigningKind::None,
        algorithm: None,
        key: None,
        parts: Vec::new(),
        separator: String::new(),
        encoding: None,
        token: None,
        username: None,
        password: None,
    };
    match signing {
        Signing::None => {}
        Signing::Hmac {
            algorithm,
            key,
            parts,
            separator,
            encoding,
        } => {
            out.kind = HttpSigningKind::Hmac;
            out.algorithm = Some(algorithm.into());
            out.key = Some(key);
            out.parts = parts;
            out.separator = separator;
            out.encoding = Some(encoding.into());
        }
        Signing::Md5 {
            parts,
            separator,
            encoding,
        } => {
            out.kind = HttpSigningKind::Md5;
            out.parts = parts;
            out.separator = separator;
            out.encoding = Some(encoding.into());
        }
        Signing::Bearer { token } => {
            out.kind = HttpSigningKind::Bearer;
            out.token = Some(token);
        }
        Signing::Basic { username, password } => {
            out.kind = HttpSigningKind::Basic;
            out.username = Some(username);
            out.password = Some(password);
        }
    }
    out
}

fn view(v: HttpSupplierView) -> HttpSupplier {
    let account_supplier = v.account_supplier();
    let spec = v.spec;
    HttpSupplier {
        name: v.name,
        account_supplier,
        channels: spec.channels.into_iter().map(Into::into).collect(),
        method: spec.method.into(),
        url: spec.url,
        headers: spec
            .headers
            .into_iter()
            .map(|h| HttpHeaderEntry {
                name: h.name,
                value: h.value,
            })
            .collect(),
        body: spec.body.map(|b| HttpBodyTemplate {
            format: b.format.into(),
            template: match b.template {
                serde_json::Value::String(text)
                    if b.format == domain::http_supplier::BodyFormat::Text =>
                {
                    text
                }
                other => other.to_string(),
            },
        }),
        signing: show_signing(spec.signing),
        response: HttpResponse {
            success_pointer: spec.response.success_pointer,
            success_values: spec.response.success_values,
            message_id_pointer: spec.response.message_id_pointer,
            error_code_pointer: spec.response.error_code_pointer,
            error_message_pointer: spec.response.error_message_pointer,
        },
        retry_codes: spec.retry_codes,
        version: v.version,
        history: v
            .history
            .into_iter()
            .map(|e| HttpSupplierChange {
                at: e.at,
                actor: e.actor,
                changed: e.changed,
            })
            .collect(),
    }
}

fn report(r: DryRunReport) -> HttpDryRunReport {
    HttpDryRunReport {
        outcome: r.outcome,
        code: r.code,
        message: r.message,
        supplier_message_id: r.supplier_message_id,
        method: r.method,
        url: r.url,
        headers: r
            .headers
            .into_iter()
            .map(|(name, value)| HttpHeaderEntry { name, value })
            .collect(),
        body: r.body,
        status: r.status,
        response: r.response,
    }
}

#[derive(Default)]
pub struct HttpSupplierQuery;

#[Object]
impl HttpSupplierQuery {
    /// The tenant's declarative HTTP suppliers, by name.
    async fn http_suppliers(&self, ctx: &Context<'_>) -> Result<Vec<HttpSupplier>> {
        let caller = caller(ctx, Scope::Admin)?;
        let list = http_suppliers::list(&state(ctx).store, &caller.tenant)
            .await
            .map_err(errors::command)?;
        Ok(list.into_iter().map(view).collect())
    }

    async fn http_supplier(&self, ctx: &Context<'_>, name: String) -> Result<Option<HttpSupplier>> {
        let caller = caller(ctx, Scope::Admin)?;
        let found = http_suppliers::get(&state(ctx).store, &caller.tenant, &name)
            .await
            .map_err(errors::command)?;
        Ok(found.map(view))
    }
}

#[derive(Default)]
pub struct HttpSupplierMutation;

#[Object]
impl HttpSupplierMutation {
    /// Defines a declarative HTTP supplier, or changes one. A definition that cannot work is
    /// refused with `INVALID_HTTP_SUPPLIER` naming the field. With `dryRun`, it is first tried
    /// for real and stored only if the try succeeds (`HTTP_SUPPLIER_DRY_RUN_FAILED` otherwise).
    /// Accounts naming it pick up a change on every process within `runtime.poll_ms`.
    async fn define_http_supplier(
        &self,
        ctx: &Context<'_>,
        input: HttpSupplierInput,
        dry_run: Option<HttpDryRunInput>,
    ) -> Result<HttpSupplier> {
        let caller = caller(ctx, Scope::Admin)?;
        let (name, spec) = spec(input)?;
        let dry_run = dry_run.map(dry_run_request).transpose()?;
        let s = state(ctx);
        let defined = http_suppliers::define(
            &s.store,
            s.accounts.catalog.as_ref(),
            &caller.tenant,
            &caller.key_id,
            &name,
            spec,
            dry_run,
            Utc::now(),
        )
        .await
        .map_err(errors::command)?;
        Ok(view(defined))
    }

    /// Tries a definition for real without storing it: one call with a sample message to the
    /// URL given, reported with credential values masked.
    async fn dry_run_http_supplier(
        &self,
        ctx: &Context<'_>,
        input: HttpSupplierInput,
        dry_run: HttpDryRunInput,
    ) -> Result<HttpDryRunReport> {
        let caller = caller(ctx, Scope::Admin)?;
        let (name, spec) = spec(input)?;
        domain::http_supplier_check::check_name(&name)
            .and_then(|()| domain::http_supplier_check::check(&spec))
            .map_err(|e| errors::command(e.into()))?;
        let request = dry_run_request(dry_run)?;
        let done = state(ctx)
            .accounts
            .catalog
            .dry_run(&caller.tenant, &spec, request)
            .await;
        Ok(report(done))
    }
}
