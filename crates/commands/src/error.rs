//! The one error of the command side. Each carries a stable API `code` (the GraphQL
//! `extensions.code`) and a `reason` naming the exact rule, so clients can branch on either.

use std::collections::BTreeMap;

/// The API-level codes of design section 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Validation,
    NotFound,
    TemplateNotApproved,
    Conflict,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Validation => "VALIDATION",
            Code::NotFound => "NOT_FOUND",
            Code::TemplateNotApproved => "TEMPLATE_NOT_APPROVED",
            Code::Conflict => "CONFLICT",
            Code::Internal => "INTERNAL",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: Code,
    /// The rule that was broken, e.g. `MISSING_VARIABLES`, `INVALID_PHONE`, `SELF_APPROVAL`.
    pub reason: &'static str,
    pub message: String,
    /// Details for the client, such as the offending receiver and its index.
    pub details: BTreeMap<&'static str, serde_json::Value>,
}

impl CommandError {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        CommandError {
            code,
            reason,
            message: message.into(),
            details: BTreeMap::new(),
        }
    }

    pub fn validation(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(Code::Validation, reason, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(Code::NotFound, "NOT_FOUND", format!("{what} not found"))
    }

    pub fn with(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key, value.into());
        self
    }

    /// A failure the caller cannot fix; the cause is logged here, once, and not shown.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "command failed");
        Self::new(Code::Internal, "INTERNAL", "something went wrong")
    }
}

impl From<store::StoreError> for CommandError {
    fn from(error: store::StoreError) -> Self {
        if error.is_conflict() {
            return Self::new(
                Code::Conflict,
                "CONCURRENT_CHANGE",
                "changed concurrently; try again",
            );
        }
        Self::internal(error)
    }
}

impl From<domain::TemplateError> for CommandError {
    fn from(error: domain::TemplateError) -> Self {
        use domain::TemplateError as E;
        let code = match &error {
            E::NotFound => Code::NotFound,
            E::NotApproved | E::Disabled => Code::TemplateNotApproved,
            E::AlreadyCreated => Code::Conflict,
            _ => Code::Validation,
        };
        Self::new(code, error.code(), error.to_string())
    }
}

impl From<domain::MessageError> for CommandError {
    fn from(error: domain::MessageError) -> Self {
        Self::new(Code::Validation, error.code(), error.to_string())
    }
}
