//! Identifiers of messages, templates, events, tenants and send requests, each parsed once at the edge.
//! Stream names are built here so that every crate spells them the same way.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::{Builder, Uuid};

use crate::wire::excerpt;

/// Bits of a UUID v7 below its timestamp, version and variant aside.
const TAIL_BITS: u32 = 74;

/// A fresh UUID v7 (RFC 9562): ordered by creation within this process, as `Uuid::now_v7`
/// promises, with its random bits from the thread's generator. `Uuid::now_v7` made a system
/// call for random bytes for every id, a tenth of the API's work accepting a batch.
///
/// Within a millisecond each id's 74 bits below the timestamp are the last one's plus a random
/// step of 1 to 2^32 (method 2 of the RFC, monotonic random); a new millisecond starts from 73
/// random bits, leaving room for 2^41 steps. A clock that goes back keeps the last millisecond.
pub fn uuid_v7() -> Uuid {
    static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));
    let fresh = || rand::random::<u128>() >> (128 - (TAIL_BITS - 1));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (millis, tail) = {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut millis, mut tail) = *last;
        if now > millis {
            millis = now;
            tail = fresh();
        } else {
            tail += 1 + u128::from(rand::random::<u32>());
            if tail >> TAIL_BITS != 0 {
                millis += 1;
                tail = fresh();
            }
        }
        *last = (millis, tail);
        (millis, tail)
    };
    // 12 bits beside the version, 62 beside the variant: the builder sets both fields over
    // the bits left zero here, so ids compare as (millisecond, tail).
    let rand_a = u16::try_from(tail >> 62).unwrap_or(0x0FFF);
    let rand_b = u64::try_from(tail & ((1 << 62) - 1)).unwrap_or(0);
    let mut bytes = [0_u8; 10];
    bytes[..2].copy_from_slice(&rand_a.to_be_bytes());
    bytes[2..].copy_from_slice(&rand_b.to_be_bytes());
    Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be a UUID such as 0190b6c4-5c8e-7b7e-8f3a-2d1e4c5b6a79, got {value:?}")]
    InvalidUuid { kind: &'static str, value: String },
    #[error(
        "tenant id must be 1 to 64 characters of a-z, 0-9, '_' or '-' starting with a letter or digit, got {value:?}"
    )]
    InvalidTenantId { value: String },
    #[error("request id must be 1 to 128 printable ASCII characters without spaces, got {value:?}")]
    InvalidRequestId { value: String },
}

impl IdError {
    /// A stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUuid { .. } => "INVALID_UUID",
            Self::InvalidTenantId { .. } => "INVALID_TENANT_ID",
            Self::InvalidRequestId { .. } => "INVALID_REQUEST_ID",
        }
    }
}

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// A fresh time-ordered (v7) id.
            /// Only the edges call this; decisions receive ids inside their commands.
            pub fn generate() -> Self {
                Self(uuid_v7())
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self).map_err(|_| IdError::InvalidUuid {
                    kind: $kind,
                    value: excerpt(s),
                })
            }
        }
    };
}

uuid_id!(
    /// The id of one message: one template rendered for one receiver, with its own event stream.
    MessageId,
    "message id"
);
uuid_id!(
    /// The id of a template aggregate.
    TemplateId,
    "template id"
);
uuid_id!(
    /// The id of one stored event, unique across the whole log so that a retried append is recognised.
    EventId,
    "event id"
);

uuid_id!(
    /// The id of a crowd send, with its own event stream.
    CrowdId,
    "crowd send id"
);

impl CrowdId {
    /// The crowd send's event stream, `crowd-{uuid}`.
    pub fn stream_name(&self) -> String {
        format!("crowd-{}", self.0.hyphenated())
    }
}

impl MessageId {
    /// The message's event stream, `message-{uuid}`.
    pub fn stream_name(&self) -> String {
        format!("message-{}", self.0.hyphenated())
    }
}

impl TemplateId {
    /// The template's event stream, `template-{uuid}`.
    pub fn stream_name(&self) -> String {
        format!("template-{}", self.0.hyphenated())
    }
}

/// A tenant: 1 to 64 characters of `[a-z0-9_-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let bytes = raw.as_bytes();
        let valid = (1..=64).contains(&bytes.len())
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::InvalidTenantId {
                value: excerpt(raw),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A send request's id, the key of its idempotency stream: 1 to 128 printable ASCII characters without spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let valid =
            (1..=128).contains(&raw.len()) && raw.bytes().all(|b| (b'!'..=b'~').contains(&b));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::InvalidRequestId {
                value: excerpt(raw),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id_conversions {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id_conversions!(TenantId);
string_id_conversions!(RequestId);

/// The idempotency stream of one send request, `send-{tenant}:{request id}`.
///
/// Tenant ids may contain `-` but never `:`, so the colon keeps the name unambiguous:
/// with a dash, tenant `a` sending request `b-c` and tenant `a-b` sending request `c` would share a stream,
/// and one tenant would be handed the other's answer.
pub fn send_stream_name(tenant: &TenantId, request: &RequestId) -> String {
    format!("send-{tenant}:{request}")
}
