//! Clicks: a receiver followed a tracked link `/c/{token}`. The token names the message and the
//! link and carries an HMAC ([`LinkSigner`]); a valid one appends `MessageClicked` and answers
//! where the link pointed. A token that does not verify, or names no link of the message,
//! appends nothing.

use chrono::{DateTime, Utc};
use domain::{EventMetadata, MessageCommand, MessageEvent};
use store::{EventStore, ExpectedVersion, Store, StreamAppend};

use crate::error::CommandError;
use crate::events;
use crate::links::LinkSigner;

/// Records a click on the link a token names; returns the original URL to redirect to.
pub async fn click(
    store: &Store,
    links: &LinkSigner,
    token: &str,
    user_agent: &str,
    now: DateTime<Utc>,
) -> Result<String, CommandError> {
    let Some((message_id, index)) = links.verify(token) else {
        return Err(CommandError::not_found("link"));
    };
    let stream = message_id.stream_name();
    // A concurrent append (dispatch recording an outcome) moves the version: decide again.
    for _ in 0..5 {
        let (history, version) = events::load::<MessageEvent>(store, &stream).await?;
        let state = domain::message_state::fold(&history).map_err(CommandError::internal)?;
        let Some(accepted) = &state.accepted else {
            return Err(CommandError::not_found("link"));
        };
        let Some(link) = accepted.tracked_links.iter().find(|l| l.index == index) else {
            return Err(CommandError::not_found("link"));
        };
        let url = link.url.clone();
        let command = MessageCommand::RecordClick {
            link_index: index,
            user_agent_class: user_agent_class(user_agent).to_owned(),
            at: now,
        };
        let new_events = domain::message_decide::decide(&state, command)
            .map_err(|_| CommandError::not_found("link"))?;
        let metadata = EventMetadata::new(accepted.tenant.clone())
            .with_correlation_id(accepted.request_id.to_string())
            .with_actor("click");
        let append = StreamAppend {
            stream_id: stream.clone(),
            expected: ExpectedVersion::Exact(version),
            events: new_events
                .iter()
                .map(|e| events::encode(e, &metadata))
                .collect(),
        };
        match store.append(&[append]).await {
            Ok(_) => return Ok(url),
            Err(error) if error.is_conflict() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(CommandError::internal(
        "the message kept changing while recording a click",
    ))
}

/// A coarse class of the clicking client, kept instead of the user agent itself (which can
/// identify a person): `bot` for link previewers and crawlers, `mobile`, `desktop`, `unknown`.
pub fn user_agent_class(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.is_empty() {
        "unknown"
    } else if [
        "bot", "spider", "crawler", "preview", "curl", "wget", "python", "go-http",
    ]
    .iter()
    .any(|b| ua.contains(b))
    {
        "bot"
    } else if ["mobile", "android", "iphone", "ipad", "micromessenger"]
        .iter()
        .any(|m| ua.contains(m))
    {
        "mobile"
    } else {
        "desktop"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_agents_are_classed() {
        use super::user_agent_class as class;
        assert_eq!(class(""), "unknown");
        assert_eq!(class("Slackbot-LinkExpanding 1.0"), "bot");
        assert_eq!(class("curl/8.5.0"), "bot");
        assert_eq!(
            class("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) MicroMessenger/8.0"),
            "mobile"
        );
        assert_eq!(
            class("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
            "desktop"
        );
    }
}
