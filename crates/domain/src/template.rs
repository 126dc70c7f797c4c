//! Template content: one content model per channel family, with `${name}` placeholders in its text fields.
//! Rendering is a single pure pass, so a variable's value is never expanded again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::attachment::{Attachment, MAX_ATTACHMENTS};
use crate::channel::Channel;
use crate::template_aggregate::TemplateError;

/// The largest text field, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// The largest email subject, in bytes: the line length limit of RFC 5322.
pub const MAX_SUBJECT_BYTES: usize = 998;
/// The longest placeholder name.
pub const MAX_PLACEHOLDER_NAME_LEN: usize = 64;

/// What a template sends. Only the text fields carry placeholders; codes and names are configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateContent {
    /// Plain text, such as an SMS body.
    Text {
        body: String,
    },
    /// An email; at least one of `html` and `text` is present.
    Email {
        subject: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        html: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Absent from events written before attachments existed, which therefore still decode.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
    Markdown {
        title: String,
        body: String,
    },
    /// A template registered with the supplier (SMS, WeChat, mini-program):
    /// Herald sends its code and fills in the parameters, whose values carry the placeholders.
    SupplierTemplate {
        template_code: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sign_name: Option<String>,
        #[serde(default)]
        params: Vec<TemplateParam>,
    },
    /// A card with an optional link, for robots, news-style messages and push.
    Card {
        title: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
}

/// One parameter of a supplier-side template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateParam {
    pub name: String,
    pub value: String,
}

/// Why variables do not match a template's placeholders. Both lists are sorted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("missing template variables: {}", .0.join(", "))]
    MissingVariables(Vec<String>),
    #[error("unknown template variables: {}", .0.join(", "))]
    UnknownVariables(Vec<String>),
}

impl RenderError {
    /// A stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingVariables(_) => "MISSING_VARIABLES",
            Self::UnknownVariables(_) => "UNKNOWN_VARIABLES",
        }
    }
}

impl TemplateContent {
    /// The content model's name, as in the serialised `kind` tag.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Text { .. } => "TEXT",
            Self::Email { .. } => "EMAIL",
            Self::Markdown { .. } => "MARKDOWN",
            Self::SupplierTemplate { .. } => "SUPPLIER_TEMPLATE",
            Self::Card { .. } => "CARD",
        }
    }

    /// Whether this content model can be sent on `channel`.
    pub const fn fits(&self, channel: Channel) -> bool {
        use Channel as C;
        match channel {
            C::Sms => matches!(self, Self::SupplierTemplate { .. } | Self::Text { .. }),
            C::Email => matches!(self, Self::Email { .. }),
            C::WechatOfficial | C::MiniProgram => matches!(self, Self::SupplierTemplate { .. }),
            C::Push => matches!(self, Self::Card { .. } | Self::Text { .. }),
            C::WecomApp | C::WecomRobot | C::DingtalkRobot | C::DingtalkWork | C::FeishuRobot => {
                matches!(
                    self,
                    Self::Text { .. } | Self::Markdown { .. } | Self::Card { .. }
                )
            }
            C::Webhook | C::Inbox => !matches!(self, Self::SupplierTemplate { .. }),
        }
    }

    /// Every placeholder name used in any text field.
    pub fn placeholders(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for field in self.text_fields() {
            for segment in Segments::new(field) {
                if let Segment::Placeholder(name) = segment {
                    names.insert(name.to_owned());
                }
            }
        }
        names
    }

    /// Substitutes every placeholder in one pass.
    ///
    /// Every placeholder must be supplied and every variable must be used, so a typo in a variable name
    /// fails loudly instead of sending a message with a hole in it.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> Result<TemplateContent, RenderError> {
        let placeholders = self.placeholders();
        let missing: Vec<String> = placeholders
            .iter()
            .filter(|name| !vars.contains_key(*name))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(RenderError::MissingVariables(missing));
        }
        let unknown: Vec<String> = vars
            .keys()
            .filter(|name| !placeholders.contains(*name))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(RenderError::UnknownVariables(unknown));
        }
        Ok(self.map_text(|field| render_field(field, vars)))
    }

    /// The http(s) links in the text fields, first occurrence first and without repeats.
    pub fn links(&self) -> Vec<String> {
        let mut links: Vec<String> = Vec::new();
        for field in self.text_fields() {
            for (start, end) in link_spans(field) {
                let link = &field[start..end];
                if !links.iter().any(|known| known == link) {
                    links.push(link.to_owned());
                }
            }
        }
        links
    }

    /// Replaces each link found by [`TemplateContent::links`] with what `rewrite` returns for it,
    /// leaving it alone when `rewrite` returns `None`. Click tracking uses this to swap in tracked URLs.
    pub fn rewrite_links(
        &self,
        mut rewrite: impl FnMut(&str) -> Option<String>,
    ) -> TemplateContent {
        self.map_text(|field| {
            let mut out = String::with_capacity(field.len());
            let mut copied = 0;
            for (start, end) in link_spans(field) {
                if let Some(replacement) = rewrite(&field[start..end]) {
                    out.push_str(&field[copied..start]);
                    out.push_str(&replacement);
                    copied = end;
                }
            }
            out.push_str(&field[copied..]);
            out
        })
    }

    /// Checks required fields and sizes: text fields at most 64 KiB, an email subject at most 998 bytes.
    pub fn validate(&self) -> Result<(), TemplateError> {
        match self {
            Self::Text { body } => required("body", body, MAX_TEXT_BYTES),
            Self::Email {
                subject,
                html,
                text,
                attachments,
            } => {
                required("subject", subject, MAX_SUBJECT_BYTES)?;
                within("html", html.as_deref().unwrap_or_default(), MAX_TEXT_BYTES)?;
                within("text", text.as_deref().unwrap_or_default(), MAX_TEXT_BYTES)?;
                let blank =
                    |body: &Option<String>| body.as_deref().is_none_or(|b| b.trim().is_empty());
                if blank(html) && blank(text) {
                    return Err(TemplateError::EmailWithoutBody);
                }
                if attachments.len() > MAX_ATTACHMENTS {
                    return Err(TemplateError::TooManyAttachments {
                        count: attachments.len(),
                        max: MAX_ATTACHMENTS,
                    });
                }
                for attachment in attachments {
                    attachment.validate()?;
                }
                Ok(())
            }
            Self::Markdown { title, body } => {
                required("title", title, MAX_TEXT_BYTES)?;
                required("body", body, MAX_TEXT_BYTES)
            }
            Self::SupplierTemplate {
                template_code,
                sign_name,
                params,
            } => {
                required("template_code", template_code, MAX_TEXT_BYTES)?;
                if let Some(sign_name) = sign_name {
                    required("sign_name", sign_name, MAX_TEXT_BYTES)?;
                }
                let mut names = BTreeSet::new();
                for param in params {
                    required("params.name", &param.name, MAX_TEXT_BYTES)?;
                    within("params.value", &param.value, MAX_TEXT_BYTES)?;
                    if !names.insert(param.name.as_str()) {
                        return Err(TemplateError::DuplicateParam {
                            name: crate::wire::excerpt(&param.name),
                        });
                    }
                }
                Ok(())
            }
            Self::Card { title, body, url } => {
                required("title", title, MAX_TEXT_BYTES)?;
                required("body", body, MAX_TEXT_BYTES)?;
                match url {
                    Some(url) => required("url", url, MAX_TEXT_BYTES),
                    None => Ok(()),
                }
            }
        }
    }

    /// The fields that carry placeholders and links, in a fixed order.
    fn text_fields(&self) -> Vec<&str> {
        match self {
            Self::Text { body } => vec![body],
            Self::Email {
                subject,
                html,
                text,
                attachments: _,
            } => [Some(subject), html.as_ref(), text.as_ref()]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            Self::Markdown { title, body } => vec![title, body],
            Self::SupplierTemplate { params, .. } => {
                params.iter().map(|param| param.value.as_str()).collect()
            }
            Self::Card { title, body, url } => [Some(title), Some(body), url.as_ref()]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
        }
    }

    /// A copy with `f` applied to every text field and every other field unchanged.
    fn map_text(&self, mut f: impl FnMut(&str) -> String) -> TemplateContent {
        match self {
            Self::Text { body } => Self::Text { body: f(body) },
            Self::Email {
                subject,
                html,
                text,
                attachments,
            } => Self::Email {
                subject: f(subject),
                html: html.as_deref().map(&mut f),
                text: text.as_deref().map(&mut f),
                attachments: attachments.clone(),
            },
            Self::Markdown { title, body } => Self::Markdown {
                title: f(title),
                body: f(body),
            },
            Self::SupplierTemplate {
                template_code,
                sign_name,
                params,
            } => Self::SupplierTemplate {
                template_code: template_code.clone(),
                sign_name: sign_name.clone(),
                params: params
                    .iter()
                    .map(|param| TemplateParam {
                        name: param.name.clone(),
                        value: f(&param.value),
                    })
                    .collect(),
            },
            Self::Card { title, body, url } => Self::Card {
                title: f(title),
                body: f(body),
                url: url.as_deref().map(&mut f),
            },
        }
    }
}

pub(crate) fn required(field: &'static str, value: &str, max: usize) -> Result<(), TemplateError> {
    if value.trim().is_empty() {
        return Err(TemplateError::EmptyField { field });
    }
    within(field, value, max)
}

fn within(field: &'static str, value: &str, max: usize) -> Result<(), TemplateError> {
    if value.len() > max {
        return Err(TemplateError::FieldTooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn render_field(field: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(field.len());
    for segment in Segments::new(field) {
        match segment {
            Segment::Literal(text) => out.push_str(text),
            Segment::Placeholder(name) => match vars.get(name) {
                Some(value) => out.push_str(value),
                // `render` checks every placeholder first, so this only keeps the text intact if it did not.
                None => {
                    out.push_str("${");
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    out
}

/// A piece of a text field: literal text, or the name inside a valid `${name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

/// Splits a text field into literals and placeholders.
///
/// A `${` that is not followed by a valid name and `}` stays literal text, so templates may contain
/// shell snippets or prices without escaping; `$$` has no special meaning.
struct Segments<'a> {
    rest: &'a str,
}

impl<'a> Segments<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: text }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    fn next(&mut self) -> Option<Segment<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let mut search_from = 0;
        while let Some(offset) = self.rest[search_from..].find("${") {
            let start = search_from + offset;
            if let Some(name_len) = placeholder_name_len(&self.rest[start + 2..]) {
                if start > 0 {
                    let (literal, rest) = self.rest.split_at(start);
                    self.rest = rest;
                    return Some(Segment::Literal(literal));
                }
                let name = &self.rest[2..2 + name_len];
                self.rest = &self.rest[2 + name_len + 1..];
                return Some(Segment::Placeholder(name));
            }
            search_from = start + 1;
        }
        let literal = std::mem::take(&mut self.rest);
        Some(Segment::Literal(literal))
    }
}

/// The length of a valid placeholder name at the start of `text`, if `text` continues with `}` after it.
fn placeholder_name_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let len = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    let valid = (1..=MAX_PLACEHOLDER_NAME_LEN).contains(&len)
        && !bytes[0].is_ascii_digit()
        && bytes.get(len) == Some(&b'}');
    valid.then_some(len)
}

/// Byte ranges of the http(s) links in `text`.
///
/// A link runs to whitespace, a control character or one of `"'<>()`, and loses trailing `.,;!?`,
/// which in prose is almost always punctuation rather than part of the URL.
fn link_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut next_allowed = 0;
    for (start, _) in text.match_indices("http") {
        if start < next_allowed {
            continue;
        }
        let tail = &text[start..];
        let scheme_len = if tail.starts_with("https://") {
            "https://".len()
        } else if tail.starts_with("http://") {
            "http://".len()
        } else {
            continue;
        };
        let host_start = start + scheme_len;
        let stop = text[host_start..]
            .find(|c: char| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')')
            })
            .map_or(text.len(), |offset| host_start + offset);
        let end = host_start
            + text[host_start..stop]
                .trim_end_matches(['.', ',', ';', '!', '?'])
                .len();
        if end > host_start {
            spans.push((start, end));
        }
        next_allowed = stop.max(host_start);
    }
    spans
}
