//! The `{{name}}` templates of a declarative HTTP supplier: its URL, headers, body and signing
//! parts are text with variables such as `{{receiver}}`, `{{credentials.secret}}` or
//! `{{params.code}}`. Parsing is strict (an unclosed brace or an unknown variable is an error
//! naming it) and rendering is one pure pass: a value is never expanded again.

/// The variables of a message and of the call, always available.
pub const VARIABLES: &[(&str, &str)] = &[
    ("message_id", "Herald's message id (a UUID)"),
    ("tenant", "the tenant id"),
    ("channel", "the channel, such as SMS"),
    ("msg_type", "the message type, such as VERIFICATION"),
    (
        "receiver",
        "the receiver: a phone number, an address, an open id",
    ),
    ("attempt", "the attempt, 1 for the first"),
    ("timestamp", "Unix seconds at the call"),
    ("timestamp_ms", "Unix milliseconds at the call"),
    ("datetime", "the call's time as RFC 3339 in UTC"),
    ("nonce", "32 random hex digits, new for each call"),
    (
        "text",
        "the content's text: a TEXT body, a MARKDOWN or CARD body, an email's text part",
    ),
    (
        "title",
        "a MARKDOWN or CARD title, an email subject (empty otherwise)",
    ),
    ("url", "a CARD's link (empty otherwise)"),
    (
        "template_code",
        "a SUPPLIER_TEMPLATE's code (empty otherwise)",
    ),
    (
        "sign_name",
        "a SUPPLIER_TEMPLATE's sign name (empty otherwise)",
    ),
    (
        "params",
        "a SUPPLIER_TEMPLATE's parameters as a JSON object (a JSON body leaf of only \
         `{{params}}` becomes the object itself)",
    ),
    (
        "body",
        "the rendered request body (signing parts and headers only)",
    ),
    (
        "sign",
        "the signature an HMAC or MD5 recipe computed (URL, headers and body only)",
    ),
];

/// Families of variables named after a dot: the account's credentials and settings, and one
/// supplier-template parameter by name.
pub const FAMILIES: &[&str] = &["credentials.", "settings.", "params."];

/// The longest variable name.
const MAX_NAME: usize = 80;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    pieces: Vec<Piece>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` at byte {0} is not closed by `}}}}`")]
    Unclosed(usize),
    #[error("`{{{{{0}}}}}` is not a variable (known: {known}, or credentials.NAME, settings.NAME, params.NAME)", known = known())]
    Unknown(String),
}

fn known() -> String {
    VARIABLES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `name` is a variable a template may use.
pub fn is_variable(name: &str) -> bool {
    if VARIABLES.iter().any(|(known, _)| *known == name) {
        return true;
    }
    FAMILIES.iter().any(|family| {
        name.strip_prefix(family).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
    })
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + start))?;
            let name = after[..end].trim();
            if name.len() > MAX_NAME || !is_variable(name) {
                return Err(TemplateError::Unknown(
                    name.chars().take(MAX_NAME).collect(),
                ));
            }
            pieces.push(Piece::Var(name.to_owned()));
            let consumed = start + 2 + end + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template {
            text: text.to_owned(),
            pieces,
        })
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The variables it uses, in order, with repeats.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    pub fn uses(&self, name: &str) -> bool {
        self.variables().any(|v| v == name)
    }

    /// The variable when the template is that one variable and nothing else.
    pub fn whole_variable(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [Piece::Var(name)] => Some(name),
            _ => None,
        }
    }

    /// Substitutes each variable with `value(name)`, passed through `escape`.
    pub fn render(
        &self,
        value: impl Fn(&str) -> String,
        escape: impl Fn(&str) -> String,
    ) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(name) => out.push_str(&escape(&value(name))),
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn parses_renders_and_refuses() {
        let t = Template::parse("a={{ settings.app_id }}&to={{receiver}}{{nonce}}").unwrap();
        assert_eq!(
            t.variables().collect::<Vec<_>>(),
            ["settings.app_id", "receiver", "nonce"]
        );
        let mut values = BTreeMap::new();
        values.insert("settings.app_id".to_owned(), "A".to_owned());
        values.insert("receiver".to_owned(), "{{nonce}}".to_owned());
        let rendered = t.render(
            |name| values.get(name).cloned().unwrap_or_default(),
            str::to_owned,
        );
        assert_eq!(rendered, "a=A&to={{nonce}}");
        assert_eq!(
            Template::parse("x {{receiver").unwrap_err(),
            TemplateError::Unclosed(2)
        );
        assert_eq!(
            Template::parse("{{recever}}").unwrap_err(),
            TemplateError::Unknown("recever".to_owned())
        );
        assert!(Template::parse("{{credentials.}}").is_err());
        assert_eq!(
            Template::parse("{{params}}").unwrap().whole_variable(),
            Some("params")
        );
        assert_eq!(Template::parse("{}").unwrap().whole_variable(), None);
    }
}
