//! The in-app inbox's commands: receiver tokens for the real-time stream, and marking messages
//! read.
//!
//! A receiver token ([`InboxTokens`]) binds a tenant and a receiver until an expiry, signed with
//! HMAC-SHA256 under the link secret (domain-separated from click links, so one kind of token is
//! never accepted as the other). A tenant's backend mints one for its signed-in user and hands it
//! to the browser, which opens `/inbox/stream` with it: no API key ever reaches the browser.
//!
//! [`mark_read`] appends `MessageRead` to each named message that was delivered to an inbox of
//! the tenant and is not read yet; a message read before (by a click or a mark) records nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use domain::{Channel, EventMetadata, MessageCommand, MessageEvent, MessageId, TenantId};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use store::{EventStore, ExpectedVersion, Store, StreamAppend};

use crate::error::CommandError;
use crate::events;

/// Bytes of HMAC kept in a token.
const TAG_BYTES: usize = 16;
/// The first byte of a token's payload: its format.
const VERSION: u8 = 1;
/// Domain separation from the click links signed with the same secret.
const CONTEXT: &[u8] = b"herald-inbox-token\0";
/// The longest life a token may be given: a day.
pub const MAX_TTL_SECS: i64 = 86_400;
/// The most messages one `mark_read` takes.
pub const MAX_MARK: usize = 100;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token, or not signed by this deployment.
    Invalid,
    /// Signed, but past its expiry.
    Expired,
}

impl TokenError {
    /// The code the HTTP answer carries.
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Invalid => "INVALID_TOKEN",
            TokenError::Expired => "TOKEN_EXPIRED",
        }
    }
}

/// What a valid token grants: one receiver's inbox in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxGrant {
    pub tenant: String,
    pub receiver: String,
    pub expires_at: DateTime<Utc>,
}

/// Signs and checks receiver tokens.
#[derive(Clone)]
pub struct InboxTokens {
    secret: Vec<u8>,
}

impl std::fmt::Debug for InboxTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxTokens").finish_non_exhaustive()
    }
}

impl InboxTokens {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        InboxTokens {
            secret: secret.into(),
        }
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(CONTEXT);
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_BYTES].to_vec()
    }

    /// A token for `receiver` of `tenant`, valid until `expires_at`.
    pub fn token(&self, tenant: &str, receiver: &str, expires_at: DateTime<Utc>) -> String {
        // version, expiry (seconds), tenant length (u16), tenant, receiver.
        let mut payload = vec![VERSION];
        payload.extend_from_slice(&expires_at.timestamp().to_be_bytes());
        let tenant_len = u16::try_from(tenant.len()).unwrap_or(u16::MAX);
        payload.extend_from_slice(&tenant_len.to_be_bytes());
        payload.extend_from_slice(&tenant.as_bytes()[..usize::from(tenant_len)]);
        payload.extend_from_slice(receiver.as_bytes());
        let tag = self.tag(&payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// What `token` grants at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<InboxGrant, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| TokenError::Invalid)?;
        if bytes.len() < 1 + 8 + 2 + TAG_BYTES {
            return Err(TokenError::Invalid);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let expected = self.tag(payload);
        // Constant time: a timing difference must not reveal how much of a forged tag is right.
        if expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(TokenError::Invalid);
        }
        if payload[0] != VERSION {
            return Err(TokenError::Invalid);
        }
        let expiry = i64::from_be_bytes(payload[1..9].try_into().map_err(|_| TokenError::Invalid)?);
        let tenant_len = usize::from(u16::from_be_bytes(
            payload[9..11].try_into().map_err(|_| TokenError::Invalid)?,
        ));
        let rest = &payload[11..];
        if rest.len() < tenant_len {
            return Err(TokenError::Invalid);
        }
        let (tenant, receiver) = rest.split_at(tenant_len);
        let tenant = std::str::from_utf8(tenant).map_err(|_| TokenError::Invalid)?;
        let receiver = std::str::from_utf8(receiver).map_err(|_| TokenError::Invalid)?;
        let expires_at = DateTime::from_timestamp(expiry, 0).ok_or(TokenError::Invalid)?;
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(InboxGrant {
            tenant: tenant.to_owned(),
            receiver: receiver.to_owned(),
            expires_at,
        })
    }
}

/// Marks the named messages of `tenant` read, as `source` saw them at `now`. Each must be an
/// INBOX message of the tenant that was delivered (`NOT_FOUND` otherwise, like another tenant's);
/// the answer is the ids newly marked, so a message already read is not among them.
pub async fn mark_read(
    store: &Store,
    tenant: &TenantId,
    ids: &[MessageId],
    source: &str,
    now: DateTime<Utc>,
) -> Result<Vec<MessageId>, CommandError> {
    if ids.len() > MAX_MARK {
        return Err(CommandError::validation(
            "TOO_MANY_IDS",
            format!("markInboxRead takes at most {MAX_MARK} ids"),
        ));
    }
    let metadata = EventMetadata::new(tenant.clone()).with_actor(source);
    let mut marked = Vec::new();
    for id in ids {
        if marked.contains(id) {
            continue;
        }
        if mark_one(store, tenant, *id, source, &metadata, now).await? {
            marked.push(*id);
        }
    }
    Ok(marked)
}

async fn mark_one(
    store: &Store,
    tenant: &TenantId,
    id: MessageId,
    source: &str,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
) -> Result<bool, CommandError> {
    let stream = id.stream_name();
    // A concurrent append (a click, a recall) moves the version: decide again.
    for _ in 0..5 {
        let (history, version) = events::load::<MessageEvent>(store, &stream).await?;
        let state = domain::message_state::fold(&history).map_err(CommandError::internal)?;
        let delivered = state.accepted.as_ref().is_some_and(|a| {
            a.tenant == *tenant && a.channel == Channel::Inbox && state.dispatch.is_some()
        });
        if !delivered {
            return Err(CommandError::not_found("inbox message").with("id", id.to_string()));
        }
        let command = MessageCommand::MarkRead {
            source: source.to_owned(),
            at: now,
        };
        let new_events =
            domain::message_decide::decide(&state, command).map_err(CommandError::internal)?;
        if new_events.is_empty() {
            return Ok(false);
        }
        let append = StreamAppend {
            stream_id: stream.clone(),
            expected: ExpectedVersion::Exact(version),
            events: new_events
                .iter()
                .map(|e| events::encode(e, metadata))
                .collect(),
        };
        match store.append(&[append]).await {
            Ok(_) => return Ok(true),
            Err(error) if error.is_conflict() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(CommandError::internal(
        "the message kept changing while marking it read",
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_tenant_and_receiver_until_expiry() {
        let tokens = InboxTokens::new(b"secret".to_vec());
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let expires = now + chrono::Duration::seconds(60);
        let token = tokens.token("acme", "user:42", expires);
        let grant = tokens.verify(&token, now).unwrap();
        assert_eq!(grant.tenant, "acme");
        assert_eq!(grant.receiver, "user:42");
        assert_eq!(grant.expires_at, expires);
        assert_eq!(tokens.verify(&token, expires), Err(TokenError::Expired));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[12] ^= 1;
        assert_eq!(
            tokens.verify(&URL_SAFE_NO_PAD.encode(&bytes), now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            InboxTokens::new(b"other".to_vec()).verify(&token, now),
            Err(TokenError::Invalid)
        );
        assert_eq!(tokens.verify("nope", now), Err(TokenError::Invalid));
        assert_eq!(tokens.verify("", now), Err(TokenError::Invalid));
    }

    #[test]
    fn a_click_link_token_is_not_an_inbox_token() {
        let links = crate::links::LinkSigner::new(b"secret".to_vec(), "https://h");
        let token = links.token(MessageId::generate(), 0);
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        assert_eq!(
            InboxTokens::new(b"secret".to_vec()).verify(&token, now),
            Err(TokenError::Invalid)
        );
    }
}
