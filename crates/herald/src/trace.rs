//! `herald trace MESSAGE_ID`: one message as the trace projection has it, as a table for a
//! terminal. The receiver is masked: the operator sees where a message went, not who got it.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use domain::{MessageId, Receiver, ReceiverIdType, TenantId};
use projections::trace::{self, MessageView, TimelineEntry};
use serde_json::Value;
use store::Store;

/// The message `message_id` (of `tenant`, when given) as text to print.
pub async fn show(
    store: &Store,
    message_id: &str,
    tenant: Option<&TenantId>,
) -> anyhow::Result<String> {
    let id: MessageId = message_id
        .trim()
        .parse()
        .with_context(|| format!("{message_id:?} is not a message id"))?;
    let id = id.to_string();
    let found = match tenant {
        Some(tenant) => trace::message(store, tenant.as_str(), &id).await,
        None => trace::message_of_any_tenant(store, &id).await,
    }
    .context("reading the trace projection")?;
    match (found, tenant) {
        (Some((view, timeline)), _) => Ok(render(&view, &timeline)),
        (None, Some(tenant)) => bail!("message {id} not found for tenant {tenant}"),
        (None, None) => bail!("message {id} not found"),
    }
}

fn render(view: &MessageView, timeline: &[TimelineEntry]) -> String {
    let receiver = masked_receiver(view, timeline);
    let supplier = match (&view.supplier, &view.supplier_message_id) {
        (Some(supplier), Some(id)) => format!("{supplier} (supplier's id {id})"),
        (Some(supplier), None) => supplier.clone(),
        (None, _) => "-".to_owned(),
    };
    let facts = [
        ("message", view.message_id.clone()),
        ("tenant", view.tenant_id.clone()),
        ("status", view.status.clone()),
        ("channel", format!("{} ({})", view.channel, view.msg_type)),
        ("receiver", receiver),
        (
            "account",
            view.account.clone().unwrap_or_else(|| "-".into()),
        ),
        ("supplier", supplier),
        ("template", view.template_id.clone()),
        ("request", view.request_id.clone()),
        ("attempts", view.attempts.to_string()),
        ("clicks", view.clicks.to_string()),
        ("accepted", time(view.accepted_at)),
        ("updated", time(view.updated_at)),
    ];
    let mut out = String::new();
    for (name, value) in facts {
        out.push_str(&format!("{name:<10}{value}\n"));
    }
    out.push('\n');
    let rows: Vec<[String; 3]> = timeline
        .iter()
        .map(|step| {
            let detail = serde_json::from_str(&step.detail).unwrap_or(Value::Null);
            [
                time(step.at),
                step.kind.clone(),
                summary(&step.kind, &detail),
            ]
        })
        .collect();
    let width = |column: usize, title: &str| {
        rows.iter()
            .map(|r| r[column].chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (time_width, kind_width) = (width(0, "TIME"), width(1, "KIND"));
    out.push_str(&format!(
        "{:<time_width$}  {:<kind_width$}  DETAIL\n",
        "TIME", "KIND"
    ));
    for [at, kind, detail] in rows {
        let line = format!("{at:<time_width$}  {kind:<kind_width$}  {detail}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// The receiver with most of it hidden, as its id type masks it (read from the acceptance).
fn masked_receiver(view: &MessageView, timeline: &[TimelineEntry]) -> String {
    let accepted = timeline
        .iter()
        .find(|step| step.kind == "ACCEPTED")
        .and_then(|step| serde_json::from_str::<Value>(&step.detail).ok())
        .and_then(|detail| serde_json::from_value::<Receiver>(detail["receiver"].clone()).ok());
    match accepted {
        Some(receiver) => receiver.masked(),
        // Masked as an opaque id: never shown whole.
        None => Receiver::parse(ReceiverIdType::UserId, &view.receiver)
            .map_or_else(|_| "***".to_owned(), |r| r.masked()),
    }
}

/// What an event says, in a few words: the rule, the account, the error, the receipt. Never the
/// receiver or the content.
fn summary(kind: &str, detail: &Value) -> String {
    let field = |name: &str| match &detail[name] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let with = |text: String, name: &str, label: &str| {
        let value = field(name);
        if value.is_empty() {
            text
        } else {
            format!("{text}, {label}{value}")
        }
    };
    let text = match kind {
        "ACCEPTED" => with(
            format!(
                "template {} v{}, {}",
                field("template_id"),
                field("template_version"),
                field("msg_type")
            ),
            "send_at",
            "send at ",
        ),
        "DEDUPLICATED" => format!("{} rule, window {} s", field("rule"), field("window_secs")),
        "SHIELDED" => field("reason"),
        "DISCARDED" => field("rule"),
        "DEFERRED" => format!("{} until {}", field("reason"), field("until")),
        "RATE_LIMITED" => format!("{} until {}", field("account"), field("until")),
        "DISPATCHED" => with(
            format!(
                "{} via {}, attempt {}, {} ms",
                field("account"),
                field("supplier"),
                field("attempt"),
                field("latency_ms")
            ),
            "supplier_message_id",
            "supplier's id ",
        ),
        "DISPATCH_FAILED" => with(
            format!(
                "{} via {}, attempt {}: {} {} {}",
                field("account"),
                field("supplier"),
                field("attempt"),
                field("error_class"),
                field("error_code"),
                field("error_message")
            ),
            "next_attempt_at",
            "next at ",
        ),
        "FAILED" => format!("{} after {} attempts", field("reason"), field("attempts")),
        "DELIVERED" | "UNDELIVERED" => with(
            format!("supplier status {}", field("supplier_status")),
            "reported_at",
            "reported ",
        ),
        "CLICKED" => format!(
            "link {}, {}",
            field("link_index"),
            field("user_agent_class")
        ),
        "RECALL_REQUESTED" => with(format!("by {}", field("actor")), "request_id", "request "),
        "RECALLED" => {
            if detail["via_supplier"] == Value::Bool(true) {
                "taken back by the supplier".to_owned()
            } else {
                "cancelled before dispatch".to_owned()
            }
        }
        "RECALL_FAILED" => field("reason"),
        _ => String::new(),
    };
    shorten(&text, 100)
}

fn shorten(text: &str, max: usize) -> String {
    let text = text.replace(['\n', '\r', '\t'], " ");
    if text.chars().count() <= max {
        text
    } else {
        let kept: String = text.chars().take(max - 1).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_say_what_happened_without_the_receiver() {
        let dispatched = json!({ "account": "tx-main", "supplier": "tencent", "attempt": 1,
            "latency_ms": 42, "supplier_message_id": "s-1", "at": "2025-01-01T00:00:00Z" });
        assert_eq!(
            summary("DISPATCHED", &dispatched),
            "tx-main via tencent, attempt 1, 42 ms, supplier's id s-1"
        );
        let accepted = json!({ "template_id": "t", "template_version": 2, "msg_type": "NOTICE",
            "receiver": { "id_type": "PHONE", "value": "+8613812345678" } });
        let text = summary("ACCEPTED", &accepted);
        assert_eq!(text, "template t v2, NOTICE");
        assert_eq!(
            summary("RECALLED", &json!({ "via_supplier": false })),
            "cancelled before dispatch"
        );
        assert_eq!(shorten(&"x".repeat(120), 10).chars().count(), 10);
    }
}
