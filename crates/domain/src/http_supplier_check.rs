//! The rules a declarative supplier's definition must meet before it is stored, each failure
//! naming the field: every template parses and names known variables, `{{sign}}` is only used
//! where a recipe computes it and never inside its own parts, pointers are JSON pointers, and
//! the sizes stay small.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::http_supplier::{BodyFormat, HttpSupplierError, HttpSupplierSpec, Signing};
use crate::http_template::Template;

/// The longest definition name.
pub const MAX_NAME_LEN: usize = 64;
/// The largest definition, all templates together, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// The most headers, signing parts and retry codes.
pub const MAX_ITEMS: usize = 32;

/// Headers Herald writes itself.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

type Error = HttpSupplierError;

/// A name is 1 to 64 lowercase letters, digits, `_` and `-`.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            "name",
            format!(
                "must be 1 to {MAX_NAME_LEN} lowercase letters, digits, _ and -, not {:?}",
                name.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// The string leaves of a JSON body template, with their field paths.
pub fn body_leaves(template: &Value) -> Vec<(String, &str)> {
    fn walk<'a>(path: String, value: &'a Value, out: &mut Vec<(String, &'a str)>) {
        match value {
            Value::String(s) => out.push((path, s)),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(format!("{path}[{i}]"), item, out);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    walk(format!("{path}.{key}"), item, out);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    let mut out = Vec::new();
    walk("body.template".to_owned(), template, &mut out);
    out
}

/// Where a template sits, which decides the variables it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Url,
    Header,
    Body,
    /// Signing parts and the HMAC key.
    SignPart,
    /// Bearer token, basic user and password.
    Auth,
}

/// Every template of the definition with its field and place; the first that does not parse
/// is the error.
pub fn templates(spec: &HttpSupplierSpec) -> Result<Vec<(String, Place, Template)>, Error> {
    let mut raw: Vec<(String, Place, &str)> = vec![("url".to_owned(), Place::Url, &spec.url)];
    for (i, header) in spec.headers.iter().enumerate() {
        raw.push((format!("headers[{i}].value"), Place::Header, &header.value));
    }
    if let Some(body) = &spec.body {
        for (field, leaf) in body_leaves(&body.template) {
            raw.push((field, Place::Body, leaf));
        }
    }
    match &spec.signing {
        Signing::None => {}
        Signing::Hmac { key, parts, .. } => {
            raw.push(("signing.key".to_owned(), Place::SignPart, key));
            for (i, part) in parts.iter().enumerate() {
                raw.push((format!("signing.parts[{i}]"), Place::SignPart, part));
            }
        }
        Signing::Md5 { parts, .. } => {
            for (i, part) in parts.iter().enumerate() {
                raw.push((format!("signing.parts[{i}]"), Place::SignPart, part));
            }
        }
        Signing::Bearer { token } => raw.push(("signing.token".to_owned(), Place::Auth, token)),
        Signing::Basic { username, password } => {
            raw.push(("signing.username".to_owned(), Place::Auth, username));
            raw.push(("signing.password".to_owned(), Place::Auth, password));
        }
    }
    raw.into_iter()
        .map(|(field, place, text)| {
            Template::parse(text)
                .map(|t| (field.clone(), place, t))
                .map_err(|e| Error::new(field, e.to_string()))
        })
        .collect()
}

/// The credentials and the settings an account using this definition must have.
pub fn needs(spec: &HttpSupplierSpec) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut credentials = BTreeSet::new();
    let mut settings = BTreeSet::new();
    for (_, _, template) in templates(spec).unwrap_or_default() {
        for name in template.variables() {
            if let Some(c) = name.strip_prefix("credentials.") {
                credentials.insert(c.to_owned());
            } else if let Some(s) = name.strip_prefix("settings.") {
                settings.insert(s.to_owned());
            }
        }
    }
    (credentials, settings)
}

fn pointer(field: &str, value: Option<&String>) -> Result<(), Error> {
    match value {
        Some(p) if !(p.is_empty() || p.starts_with('/')) => Err(Error::new(
            field,
            format!("must be a JSON pointer such as /code, not {p:?}"),
        )),
        _ => Ok(()),
    }
}

fn check_body(spec: &HttpSupplierSpec) -> Result<(), Error> {
    let Some(body) = &spec.body else {
        return Ok(());
    };
    if spec.method == crate::http_supplier::HttpMethod::Get {
        return Err(Error::new("body", "a GET request has no body"));
    }
    match (body.format, &body.template) {
        (BodyFormat::Json, _) | (BodyFormat::Text, Value::String(_)) => Ok(()),
        (BodyFormat::Text, _) => Err(Error::new(
            "body.template",
            "a TEXT body is one string template",
        )),
        (BodyFormat::Form, Value::Object(fields)) => {
            match fields.iter().find(|(_, v)| !v.is_string()) {
                Some((key, _)) => Err(Error::new(
                    format!("body.template.{key}"),
                    "a FORM field is a string template",
                )),
                None => Ok(()),
            }
        }
        (BodyFormat::Form, _) => Err(Error::new(
            "body.template",
            "a FORM body is an object of field templates",
        )),
    }
}

fn check_signing(signing: &Signing) -> Result<(), Error> {
    match signing {
        Signing::Hmac { key, parts, .. } if key.trim().is_empty() || parts.is_empty() => Err(
            Error::new("signing", "HMAC needs a key and at least one part"),
        ),
        Signing::Md5 { parts, .. } if parts.is_empty() => {
            Err(Error::new("signing.parts", "MD5 needs at least one part"))
        }
        Signing::Hmac { parts, .. } | Signing::Md5 { parts, .. } if parts.len() > MAX_ITEMS => Err(
            Error::new("signing.parts", format!("at most {MAX_ITEMS} parts")),
        ),
        Signing::Bearer { token } if token.trim().is_empty() => {
            Err(Error::new("signing.token", "is empty"))
        }
        _ => Ok(()),
    }
}

/// Refuses a definition that cannot work, naming the field.
pub fn check(spec: &HttpSupplierSpec) -> Result<(), Error> {
    if spec.channels.is_empty() {
        return Err(Error::new("channels", "name at least one channel"));
    }
    let scheme_end = spec.url.find("://").map(|i| &spec.url[..i]);
    if !matches!(scheme_end, Some("http" | "https")) || spec.url.len() <= "https://".len() {
        return Err(Error::new(
            "url",
            format!(
                "must be an absolute http(s) URL, not {:?}",
                spec.url.chars().take(200).collect::<String>()
            ),
        ));
    }
    if spec.headers.len() > MAX_ITEMS || spec.retry_codes.len() > MAX_ITEMS {
        return Err(Error::new(
            "headers",
            format!("at most {MAX_ITEMS} headers and {MAX_ITEMS} retry codes"),
        ));
    }
    for (i, header) in spec.headers.iter().enumerate() {
        let name = &header.name;
        let token = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
        if !token || RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Error::new(
                format!("headers[{i}].name"),
                format!("{name:?} is not a header Herald lets a definition set"),
            ));
        }
    }
    check_body(spec)?;
    check_signing(&spec.signing)?;
    let templates = templates(spec)?;
    let size: usize = serde_json::to_string(spec).map_or(usize::MAX, |s| s.len());
    if size > MAX_TEMPLATE_BYTES {
        return Err(Error::new(
            "spec",
            format!("is {size} bytes; at most {MAX_TEMPLATE_BYTES}"),
        ));
    }
    let body_signed = templates
        .iter()
        .any(|(_, place, t)| *place == Place::SignPart && t.uses("body"));
    for (field, place, template) in &templates {
        if template.uses("sign") {
            if !spec.signing.signs() {
                return Err(Error::new(
                    field.clone(),
                    format!(
                        "uses {{{{sign}}}}, which only HMAC and MD5 compute (signing is {})",
                        spec.signing.kind()
                    ),
                ));
            }
            if matches!(place, Place::SignPart | Place::Auth) {
                return Err(Error::new(
                    field.clone(),
                    "a signature cannot be part of itself",
                ));
            }
            if *place == Place::Body && body_signed {
                return Err(Error::new(
                    field.clone(),
                    "the body carries {{sign}} and the signature covers {{body}}: one must go",
                ));
            }
        }
        if template.uses("body") && !matches!(place, Place::SignPart | Place::Header) {
            return Err(Error::new(
                field.clone(),
                "{{body}} can only be signed or sent in a header",
            ));
        }
    }
    let rule = &spec.response;
    pointer("response.success_pointer", rule.success_pointer.as_ref())?;
    pointer(
        "response.message_id_pointer",
        rule.message_id_pointer.as_ref(),
    )?;
    pointer(
        "response.error_code_pointer",
        rule.error_code_pointer.as_ref(),
    )?;
    pointer(
        "response.error_message_pointer",
        rule.error_message_pointer.as_ref(),
    )?;
    if rule.success_pointer.is_some() && rule.success_values.is_empty() {
        return Err(Error::new(
            "response.success_values",
            "name the values at success_pointer that mean success",
        ));
    }
    Ok(())
}
