//! The DingTalk suppliers against a local oapi.dingtalk.com: group robots whose fake recomputes
//! the 加签 signature from the request as received, and work notices whose fake hands out
//! access tokens, counts the requests for them and refuses the ones it no longer knows. Both
//! answer in DingTalk's JSON with its error codes.

mod robot;
mod work;

use std::sync::Arc;

use axum::Router;
use dispatch::accounts::{AccountConfig, Accounts};
use dispatch::tokens::Tokens;
use dispatch::{Outbound, SendError, Sent, Supplier};
use domain::{
    Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TenantId,
};
use serde_json::Value;

/// Serves `app` on a free local port; returns its `http://host:port`.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

/// The supplier as the account factory builds it from an `[[accounts]]` entry.
fn supplier(config: Value, tokens: &Tokens) -> Arc<dyn Supplier> {
    let config: AccountConfig = serde_json::from_value(config).unwrap();
    let id = config.id.clone();
    let accounts = Accounts::from_config(&[config], tokens).unwrap();
    Arc::clone(&accounts.find(&id).unwrap().supplier)
}

/// One message, owning what an [`Outbound`] borrows.
struct Message {
    id: MessageId,
    tenant: TenantId,
    channel: Channel,
    receiver: Receiver,
    content: TemplateContent,
}

impl Message {
    fn new(
        channel: Channel,
        id_type: ReceiverIdType,
        receiver: &str,
        content: TemplateContent,
    ) -> Self {
        Message {
            id: MessageId::generate(),
            tenant: TenantId::parse("acme").unwrap(),
            channel,
            receiver: Receiver::parse(id_type, receiver).unwrap(),
            content,
        }
    }

    fn outbound(&self) -> Outbound<'_> {
        Outbound {
            message_id: self.id,
            tenant: &self.tenant,
            channel: self.channel,
            msg_type: MessageType::Notice,
            receiver: &self.receiver,
            content: &self.content,
            attempt: 1,
        }
    }

    async fn send(&self, supplier: &dyn Supplier) -> Result<Sent, SendError> {
        supplier.send(&self.outbound()).await
    }
}

fn text(body: &str) -> TemplateContent {
    TemplateContent::Text { body: body.into() }
}

fn markdown(title: &str, body: &str) -> TemplateContent {
    TemplateContent::Markdown {
        title: title.into(),
        body: body.into(),
    }
}

fn card(title: &str, body: &str, url: Option<&str>) -> TemplateContent {
    TemplateContent::Card {
        title: title.into(),
        body: body.into(),
        url: url.map(str::to_owned),
    }
}

/// The class and code of an error, for one-line assertions.
fn class(error: &SendError) -> (&'static str, &str) {
    let class = match error {
        SendError::Retryable { .. } => "retryable",
        SendError::Final { .. } => "final",
        SendError::Throttled { .. } => "throttled",
        SendError::Unavailable { .. } => "unavailable",
    };
    (class, error.code())
}
