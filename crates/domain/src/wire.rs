//! Shared pieces of the wire format: enums named by stable strings, and event decoding.
//! Events are stored as a type name, a schema version and a JSON payload, so every event enum decodes the same way.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A string that names no variant of a wire enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}, expected one of: {}", expected.join(", "))]
pub struct ParseEnumError {
    /// The enum that was being parsed, such as `Channel`.
    pub kind: &'static str,
    /// The rejected input, shortened so that a huge input cannot flood a log.
    pub value: String,
    /// Every accepted name, in declaration order.
    pub expected: &'static [&'static str],
}

impl ParseEnumError {
    pub(crate) fn new(kind: &'static str, value: &str, expected: &'static [&'static str]) -> Self {
        Self {
            kind,
            value: excerpt(value),
            expected,
        }
    }

    /// A stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        "UNKNOWN_ENUM_VALUE"
    }
}

/// Why a stored event could not be turned back into a domain event.
///
/// The three cases need different handling: an unknown type usually means an older build reads a newer log,
/// an unsupported version means an upcaster is missing, and a bad payload means the data itself is damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventDecodeError {
    #[error("unknown event type {event_type:?}")]
    UnknownType { event_type: String },
    #[error(
        "event type {event_type} has no schema version {schema_version}; this build reads 1 to {latest}"
    )]
    UnsupportedVersion {
        event_type: String,
        schema_version: u16,
        latest: u16,
    },
    #[error("bad {event_type} payload: {message}")]
    BadPayload { event_type: String, message: String },
}

impl EventDecodeError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownType { .. } => "UNKNOWN_EVENT_TYPE",
            Self::UnsupportedVersion { .. } => "UNSUPPORTED_SCHEMA_VERSION",
            Self::BadPayload { .. } => "BAD_EVENT_PAYLOAD",
        }
    }
}

/// What the store needs from an event enum, so that it can stay generic over message and template streams.
pub trait DomainEvent: Sized {
    /// The schema version written with new events.
    const SCHEMA_VERSION: u16;
    /// Every event type name this enum can decode.
    const EVENT_TYPES: &'static [&'static str];
    /// The stable type name kept in the store's `type` column.
    fn event_type(&self) -> &'static str;
    /// The JSON payload alone; type and version live in their own columns.
    fn encode(&self) -> Value;
    /// [`encode`](Self::encode) as JSON text, written straight from the payload: building the
    /// `Value` first (a map per object) was most of the work of accepting a batch.
    fn encode_json(&self) -> String {
        self.encode().to_string()
    }
    /// Reads a stored event back, upcasting older schema versions first.
    fn decode(
        event_type: &str,
        schema_version: u16,
        data: &Value,
    ) -> Result<Self, EventDecodeError>;
    /// [`decode`](Self::decode) from the stored JSON text. An event of the current schema
    /// version is read straight into its payload struct; building the `Value` first (a map per
    /// object) was most of the work of reading the log. Older versions go through the `Value`
    /// and the upcaster.
    fn decode_json(
        event_type: &str,
        schema_version: u16,
        data: &str,
    ) -> Result<Self, EventDecodeError> {
        Self::decode(
            event_type,
            schema_version,
            &parse_payload(event_type, data)?,
        )
    }
}

/// Serialises an event payload.
///
/// Payloads are plain structs of strings, numbers and enums with string keys, which `serde_json` always accepts,
/// so a failure here would be a programming error in this crate rather than something user data can cause.
pub(crate) fn to_payload<T: Serialize>(payload: &T) -> Value {
    serde_json::to_value(payload).expect("event payloads are plain data and always serialise")
}

/// Serialises an event payload as JSON text, as [`to_payload`] would give it (object keys in
/// the payload's own order rather than sorted; JSON readers do not tell the two apart).
pub(crate) fn to_payload_json<T: Serialize>(payload: &T) -> String {
    serde_json::to_string(payload).expect("event payloads are plain data and always serialise")
}

pub(crate) fn from_payload<T: DeserializeOwned>(
    event_type: &str,
    data: &Value,
) -> Result<T, EventDecodeError> {
    T::deserialize(data).map_err(|error| EventDecodeError::BadPayload {
        event_type: event_type.to_owned(),
        message: error.to_string(),
    })
}

/// Reads a current-version payload straight from its JSON text.
pub(crate) fn from_payload_json<T: DeserializeOwned>(
    event_type: &str,
    data: &str,
) -> Result<T, EventDecodeError> {
    serde_json::from_str(data).map_err(|error| EventDecodeError::BadPayload {
        event_type: event_type.to_owned(),
        message: error.to_string(),
    })
}

/// Parses stored JSON text, for an upcaster to rewrite.
pub(crate) fn parse_payload(event_type: &str, data: &str) -> Result<Value, EventDecodeError> {
    serde_json::from_str(data).map_err(|error| EventDecodeError::BadPayload {
        event_type: event_type.to_owned(),
        message: error.to_string(),
    })
}

pub(crate) fn unsupported_version(
    event_type: &str,
    schema_version: u16,
    latest: u16,
) -> EventDecodeError {
    EventDecodeError::UnsupportedVersion {
        event_type: excerpt(event_type),
        schema_version,
        latest,
    }
}

/// Shortens untrusted input before it goes into an error message.
pub(crate) fn excerpt(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// Declares a `Copy` enum whose variants travel as fixed SCREAMING_SNAKE_CASE names.
///
/// Every such enum gets the same surface: `ALL`, `as_str`, `Display`, `FromStr` and serde by name,
/// so one concept keeps one spelling in events, APIs, columns and metric labels.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        $vis enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $wire)] $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            const NAMES: &'static [&'static str] = &[$($wire),+];

            /// The stable wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::wire::ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|variant| variant.as_str() == s)
                    .ok_or_else(|| $crate::wire::ParseEnumError::new(stringify!($name), s, Self::NAMES))
            }
        }
    };
}
pub(crate) use wire_enum;

/// Declares an event enum with one variant per payload struct of the same name.
///
/// The variant name is the stored event type. The module that uses this macro supplies
/// `SCHEMA_VERSION` and an `upcast` function, which is where old payloads are rewritten to the current shape.
macro_rules! event_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant($variant) ),+
        }

        impl $name {
            /// Every event type name, in declaration order.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The stable type name kept in the store's `type` column.
            pub const fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant)),+
                }
            }

            /// The schema version this build writes for the event.
            pub const fn schema_version(&self) -> u16 {
                Self::SCHEMA_VERSION
            }

            /// The JSON payload alone, without a type tag: the store keeps type and version in columns.
            pub fn encode(&self) -> serde_json::Value {
                match self {
                    $(Self::$variant(payload) => $crate::wire::to_payload(payload)),+
                }
            }

            /// [`encode`](Self::encode) as JSON text, written straight from the payload.
            pub fn encode_json(&self) -> String {
                match self {
                    $(Self::$variant(payload) => $crate::wire::to_payload_json(payload)),+
                }
            }

            /// Reads a stored event back: unknown types, unsupported versions and bad payloads fail distinctly.
            pub fn decode(
                event_type: &str,
                schema_version: u16,
                data: &serde_json::Value,
            ) -> Result<Self, $crate::wire::EventDecodeError> {
                if !Self::EVENT_TYPES.contains(&event_type) {
                    return Err($crate::wire::EventDecodeError::UnknownType {
                        event_type: $crate::wire::excerpt(event_type),
                    });
                }
                let data = Self::upcast(event_type, schema_version, data)?;
                $(
                    if event_type == stringify!($variant) {
                        return $crate::wire::from_payload(event_type, &data).map(Self::$variant);
                    }
                )+
                Err($crate::wire::EventDecodeError::UnknownType {
                    event_type: $crate::wire::excerpt(event_type),
                })
            }

            /// [`decode`](Self::decode) from the stored JSON text: the current schema version
            /// is read straight into its payload struct (the upcaster leaves it as it is), an
            /// older one through a `Value` and the upcaster.
            pub fn decode_json(
                event_type: &str,
                schema_version: u16,
                data: &str,
            ) -> Result<Self, $crate::wire::EventDecodeError> {
                if schema_version == Self::SCHEMA_VERSION {
                    $(
                        if event_type == stringify!($variant) {
                            return $crate::wire::from_payload_json(event_type, data)
                                .map(Self::$variant);
                        }
                    )+
                    return Err($crate::wire::EventDecodeError::UnknownType {
                        event_type: $crate::wire::excerpt(event_type),
                    });
                }
                let data = $crate::wire::parse_payload(event_type, data)?;
                Self::decode(event_type, schema_version, &data)
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(payload: $variant) -> Self {
                    Self::$variant(payload)
                }
            }
        )+

        impl $crate::wire::DomainEvent for $name {
            const SCHEMA_VERSION: u16 = $name::SCHEMA_VERSION;
            const EVENT_TYPES: &'static [&'static str] = $name::EVENT_TYPES;

            fn event_type(&self) -> &'static str {
                $name::event_type(self)
            }

            fn encode(&self) -> serde_json::Value {
                $name::encode(self)
            }

            fn encode_json(&self) -> String {
                $name::encode_json(self)
            }

            fn decode(
                event_type: &str,
                schema_version: u16,
                data: &serde_json::Value,
            ) -> Result<Self, $crate::wire::EventDecodeError> {
                $name::decode(event_type, schema_version, data)
            }

            fn decode_json(
                event_type: &str,
                schema_version: u16,
                data: &str,
            ) -> Result<Self, $crate::wire::EventDecodeError> {
                $name::decode_json(event_type, schema_version, data)
            }
        }
    };
}
pub(crate) use event_enum;
