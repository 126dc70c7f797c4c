//! Metadata stored next to every event: who and what caused it, for tracing a send across streams.
//! Event id, type, schema version and recorded-at are store columns, so they are not repeated here.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::TenantId;

/// Context of one event. Absent fields are left out of the JSON to keep rows small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub tenant: TenantId,
    /// The send request (or other operation) that the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the event or command that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The span (W3C parent id, 16 hex digits) that caused the event, so a later step, on any
    /// process, continues the trace under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

impl EventMetadata {
    pub fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            correlation_id: None,
            causation_id: None,
            actor: None,
            trace_id: None,
            span_id: None,
        }
    }

    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    pub fn with_causation_id(mut self, causation_id: Uuid) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn with_trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self
    }

    pub fn with_span_id(mut self, span_id: impl Into<String>) -> Self {
        self.span_id = Some(span_id.into());
        self
    }
}
