//! Receivers: who a message goes to, validated and normalised for the template's receiver id type.
//! Values are stored in full for lookup; `masked` is the only form that may reach a log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::channel::ReceiverIdType;

const MAX_EMAIL_LEN: usize = 254;
const MAX_EMAIL_LOCAL_LEN: usize = 64;
const MAX_DOMAIN_LABEL_LEN: usize = 63;
const MAX_URL_CHARS: usize = 2048;
const MAX_ID_CHARS: usize = 256;
/// Values shorter than this are masked completely, because showing four characters would show most of them.
const MIN_PARTIAL_MASK_CHARS: usize = 8;

/// A validated receiver. It can only be built by [`Receiver::parse`], and deserialising goes through it too.
///
/// `Debug` prints the masked value, so a receiver that slips into a log line leaks nothing.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "ReceiverWire")]
pub struct Receiver {
    id_type: ReceiverIdType,
    value: String,
}

#[derive(Deserialize)]
struct ReceiverWire {
    id_type: ReceiverIdType,
    value: String,
}

impl TryFrom<ReceiverWire> for Receiver {
    type Error = ReceiverError;

    fn try_from(wire: ReceiverWire) -> Result<Self, Self::Error> {
        Receiver::parse(wire.id_type, &wire.value)
    }
}

/// Why a raw receiver was refused. Each variant carries the masked input, never the input itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverError {
    #[error(
        "invalid phone number {value}: expected a mainland China mobile number or + and 8 to 15 digits"
    )]
    InvalidPhone { value: String },
    #[error("invalid email address {value}")]
    InvalidEmail { value: String },
    #[error(
        "invalid webhook URL {value}: expected http:// or https:// and a host, at most 2048 characters"
    )]
    InvalidUrl { value: String },
    #[error(
        "invalid {id_type} receiver {value}: expected 1 to 256 characters without spaces or control characters"
    )]
    InvalidId {
        id_type: ReceiverIdType,
        value: String,
    },
}

impl ReceiverError {
    /// A stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidPhone { .. } => "INVALID_PHONE",
            Self::InvalidEmail { .. } => "INVALID_EMAIL",
            Self::InvalidUrl { .. } => "INVALID_URL",
            Self::InvalidId { .. } => "INVALID_RECEIVER_ID",
        }
    }
}

impl Receiver {
    /// Trims `raw`, validates it for `id_type` and normalises it.
    ///
    /// Mainland China mobile numbers become `+86XXXXXXXXXXX` and email domains are lower-cased,
    /// so the same person always maps to the same value for dedup and lookup.
    /// Parsing a parsed value again gives the same receiver.
    pub fn parse(id_type: ReceiverIdType, raw: &str) -> Result<Self, ReceiverError> {
        let raw = raw.trim();
        let parsed = match id_type {
            ReceiverIdType::Phone => parse_phone(raw).ok_or_else(|| ReceiverError::InvalidPhone {
                value: mask_generic(raw),
            }),
            ReceiverIdType::Email => parse_email(raw).ok_or_else(|| ReceiverError::InvalidEmail {
                value: mask_generic(raw),
            }),
            ReceiverIdType::WebhookUrl => parse_url(raw).ok_or_else(|| ReceiverError::InvalidUrl {
                value: mask_generic(raw),
            }),
            _ => parse_plain_id(raw).ok_or_else(|| ReceiverError::InvalidId {
                id_type,
                value: mask_generic(raw),
            }),
        };
        parsed.map(|value| Self { id_type, value })
    }

    pub fn id_type(&self) -> ReceiverIdType {
        self.id_type
    }

    /// The full value, for storage and lookup only; logs use [`Receiver::masked`].
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The value with most of it hidden: `+86138****5678`, `a***@example.com`, `ab***yz`.
    pub fn masked(&self) -> String {
        match self.id_type {
            ReceiverIdType::Phone => mask_phone(&self.value),
            ReceiverIdType::Email => mask_email(&self.value),
            _ => mask_generic(&self.value),
        }
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("id_type", &self.id_type)
            .field("value", &self.masked())
            .finish()
    }
}

fn parse_phone(raw: &str) -> Option<String> {
    for prefix in ["+86", "0086", "86", ""] {
        if let Some(national) = raw.strip_prefix(prefix)
            && is_mainland_mobile(national)
        {
            return Some(format!("+86{national}"));
        }
    }
    let digits = raw.strip_prefix('+')?;
    let e164 = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    e164.then(|| raw.to_owned())
}

fn is_mainland_mobile(national: &str) -> bool {
    let bytes = national.as_bytes();
    bytes.len() == 11
        && bytes.iter().all(u8::is_ascii_digit)
        && bytes[0] == b'1'
        && (b'3'..=b'9').contains(&bytes[1])
}

fn parse_email(raw: &str) -> Option<String> {
    if raw.len() > MAX_EMAIL_LEN {
        return None;
    }
    let (local, domain) = raw.split_once('@')?;
    let local_ok = (1..=MAX_EMAIL_LOCAL_LEN).contains(&local.len())
        && local
            .bytes()
            .all(|b| (b'!'..=b'~').contains(&b) && !b"<>()[]\\,;:\"@".contains(&b));
    let domain_ok = domain.contains('.') && domain.split('.').all(is_domain_label);
    (local_ok && domain_ok).then(|| format!("{local}@{}", domain.to_ascii_lowercase()))
}

fn is_domain_label(label: &str) -> bool {
    (1..=MAX_DOMAIN_LABEL_LEN).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn parse_url(raw: &str) -> Option<String> {
    if raw.chars().count() > MAX_URL_CHARS
        || raw.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_and_port.strip_prefix('[') {
        Some(ipv6) => ipv6.split_once(']').map(|(host, _)| host)?,
        None => host_and_port.split(':').next().unwrap_or_default(),
    };
    (!host.is_empty()).then(|| raw.to_owned())
}

fn parse_plain_id(raw: &str) -> Option<String> {
    let ok = (1..=MAX_ID_CHARS).contains(&raw.chars().count())
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| raw.to_owned())
}

fn mask_phone(value: &str) -> String {
    if let Some(national) = value.strip_prefix("+86")
        && is_mainland_mobile(national)
    {
        return format!("+86{}****{}", &national[..3], &national[7..]);
    }
    // Parsed phones are ASCII digits after the `+`, so byte slicing is on character boundaries.
    match value.strip_prefix('+') {
        Some(digits) if digits.is_ascii() && digits.len() >= 10 => {
            format!("+{}****{}", &digits[..3], &digits[digits.len() - 4..])
        }
        Some(digits) if digits.is_ascii() && digits.len() >= 4 => {
            format!("+{}****{}", &digits[..2], &digits[digits.len() - 2..])
        }
        _ => mask_generic(value),
    }
}

fn mask_email(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            let masked = format!("{first}***@{domain}");
            // A local part such as `a***` would survive the mask unchanged, so fall back to the generic form.
            if masked == value {
                mask_generic(value)
            } else {
                masked
            }
        }
        None => mask_generic(value),
    }
}

/// Keeps the first two and last two characters; short values are hidden completely.
pub(crate) fn mask_generic(value: &str) -> String {
    let count = value.chars().count();
    if count < MIN_PARTIAL_MASK_CHARS {
        return "***".to_owned();
    }
    let head: String = value.chars().take(2).collect();
    let tail: String = value.chars().skip(count - 2).collect();
    format!("{head}***{tail}")
}
