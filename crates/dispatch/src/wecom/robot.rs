//! WeCom group robots (`wecom_robot`): a JSON POST to the robot's webhook URL, which is the
//! message's receiver (`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`;
//! "群机器人配置说明", document 91770).
//!
//! TEXT goes out as `msgtype: text`, MARKDOWN as `markdown` with the title as a heading line
//! above the body, a CARD with a link as `news` (one article: title, description, url) and a
//! CARD without one as `markdown`. The key in the URL is the robot's only credential, so the
//! account needs none:
//!
//! ```toml
//! [[accounts]]
//! id = "wecom-robot"
//! channel = "WECOM_ROBOT"
//! supplier = "wecom_robot"
//! timeout_secs = 5
//! ```

use std::fmt;

use domain::{Channel, Receiver, TemplateContent};
use serde::Serialize;

use super::{read_answer, transport_error};
use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};

/// A robot message, as `webhook/send` takes it.
#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
enum RobotMessage<'a> {
    Text { text: Content },
    Markdown { markdown: Content },
    News { news: News<'a> },
}

#[derive(Serialize, Debug, PartialEq)]
struct Content {
    content: String,
}

#[derive(Serialize, Debug, PartialEq)]
struct News<'a> {
    articles: [Article<'a>; 1],
}

#[derive(Serialize, Debug, PartialEq)]
struct Article<'a> {
    title: &'a str,
    description: &'a str,
    url: &'a str,
}

/// Markdown with the title as a heading line, when there is a title.
pub(crate) fn titled_markdown(title: &str, body: &str) -> String {
    if title.trim().is_empty() {
        body.to_owned()
    } else {
        format!("# {title}\n{body}")
    }
}

fn message(content: &TemplateContent) -> Result<RobotMessage<'_>, SendError> {
    Ok(match content {
        TemplateContent::Text { body } => RobotMessage::Text {
            text: Content {
                content: body.clone(),
            },
        },
        TemplateContent::Markdown { title, body } => RobotMessage::Markdown {
            markdown: Content {
                content: titled_markdown(title, body),
            },
        },
        TemplateContent::Card {
            title,
            body,
            url: Some(url),
        } => RobotMessage::News {
            news: News {
                articles: [Article {
                    title,
                    description: body,
                    url,
                }],
            },
        },
        // A news article needs a link; a card without one reads the same as markdown.
        TemplateContent::Card {
            title,
            body,
            url: None,
        } => RobotMessage::Markdown {
            markdown: Content {
                content: titled_markdown(title, body),
            },
        },
        other => {
            return Err(SendError::Final {
                code: "UNSUPPORTED_CONTENT".to_owned(),
                message: format!(
                    "wecom_robot sends TEXT, MARKDOWN and CARD, not {}",
                    other.kind()
                ),
            });
        }
    })
}

/// The robot's webhook URL, from the receiver.
fn webhook_url(receiver: &Receiver) -> Result<reqwest::Url, SendError> {
    let refused = || SendError::Final {
        code: "INVALID_RECEIVER".to_owned(),
        message: format!(
            "a wecom_robot receiver is the robot's http(s) webhook URL, not {}",
            receiver.masked()
        ),
    };
    let url = reqwest::Url::parse(receiver.value()).map_err(|_| refused())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(refused());
    }
    Ok(url)
}

/// Posts to group robots; one account serves every robot, each named by its receiver URL.
pub struct WecomRobot {
    client: reqwest::Client,
}

impl fmt::Debug for WecomRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WecomRobot").finish_non_exhaustive()
    }
}

impl WecomRobot {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs).
    pub fn from_account(config: &AccountConfig) -> Result<Self, AccountError> {
        Ok(WecomRobot {
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
        })
    }

    async fn post(&self, outbound: &Outbound<'_>) -> Result<Sent, SendError> {
        let url = webhook_url(outbound.receiver)?;
        let body =
            serde_json::to_vec(&message(outbound.content)?).map_err(|e| SendError::Final {
                code: "ENCODE".to_owned(),
                message: e.to_string(),
            })?;
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        read_answer(response).await.map_err(|error| match error {
            // Name the robot (masked) when it is the robot that is refused.
            SendError::Final { code, message } => SendError::Final {
                message: format!("{}: {message}", outbound.receiver.masked()),
                code,
            },
            other => other,
        })?;
        // A robot's answer names no message, and a robot message cannot be recalled.
        Ok(Sent {
            supplier_message_id: None,
        })
    }
}

impl Supplier for WecomRobot {
    fn name(&self) -> &'static str {
        "wecom_robot"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::WecomRobot
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.post(message))
    }
}

#[cfg(test)]
mod tests {
    use domain::ReceiverIdType;
    use serde_json::json;

    use super::*;

    fn payload(content: TemplateContent) -> serde_json::Value {
        serde_json::to_value(message(&content).expect("supported")).expect("json")
    }

    #[test]
    fn contents_become_robot_messages() {
        assert_eq!(
            payload(TemplateContent::Text {
                body: "hello world".into()
            }),
            json!({"msgtype": "text", "text": {"content": "hello world"}})
        );
        assert_eq!(
            payload(TemplateContent::Markdown {
                title: "Build".into(),
                body: "**42** finished".into()
            }),
            json!({"msgtype": "markdown", "markdown": {"content": "# Build\n**42** finished"}})
        );
        assert_eq!(
            payload(TemplateContent::Card {
                title: "Release".into(),
                body: "v2 is out".into(),
                url: Some("https://example.com/v2".into())
            }),
            json!({"msgtype": "news", "news": {"articles": [
                {"title": "Release", "description": "v2 is out", "url": "https://example.com/v2"}
            ]}})
        );
        assert_eq!(
            payload(TemplateContent::Card {
                title: "Release".into(),
                body: "v2 is out".into(),
                url: None
            }),
            json!({"msgtype": "markdown", "markdown": {"content": "# Release\nv2 is out"}})
        );
        assert!(matches!(
            message(&TemplateContent::SupplierTemplate {
                template_code: "t".into(),
                sign_name: None,
                params: Vec::new()
            }),
            Err(SendError::Final { code, .. }) if code == "UNSUPPORTED_CONTENT"
        ));
    }

    #[test]
    fn only_http_urls_are_robots() {
        let url = |raw: &str| {
            webhook_url(&Receiver::parse(ReceiverIdType::UserId, raw).expect("receiver"))
        };
        assert!(url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k").is_ok());
        for raw in ["ops-group", "ftp://example.com/x", "mailto:ops@example.com"] {
            assert!(
                matches!(url(raw), Err(SendError::Final { code, .. }) if code == "INVALID_RECEIVER"),
                "{raw}"
            );
        }
    }
}
