//! Click tracking: links in content are rewritten to `{public_url}/c/{token}`, where the token
//! names the message and link and carries an HMAC, so it cannot be guessed or altered.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{MessageId, TemplateContent, TrackedLink};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of HMAC kept in a token: 128 bits is far beyond guessing, and keeps links short.
const TAG_BYTES: usize = 16;

#[derive(Clone)]
pub struct LinkSigner {
    secret: Vec<u8>,
    /// Where `/c/{token}` is served, without a trailing slash.
    public_url: String,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl LinkSigner {
    pub fn new(secret: impl Into<Vec<u8>>, public_url: &str) -> Self {
        LinkSigner {
            secret: secret.into(),
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!());
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_BYTES].to_vec()
    }

    /// The token for link `index` of `message`.
    pub fn token(&self, message: MessageId, index: u32) -> String {
        let mut payload = message.as_uuid().as_bytes().to_vec();
        payload.extend_from_slice(&index.to_be_bytes());
        let tag = self.tag(&payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// The message and link index a token names, when its signature holds.
    pub fn verify(&self, token: &str) -> Option<(MessageId, u32)> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != 16 + 4 + TAG_BYTES {
            return None;
        }
        let (payload, tag) = bytes.split_at(20);
        let expected = self.tag(payload);
        // Constant time: a timing difference must not reveal how much of a forged tag is right.
        if expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return None;
        }
        let uuid = uuid::Uuid::from_slice(&payload[..16]).ok()?;
        let index = u32::from_be_bytes(payload[16..20].try_into().ok()?);
        Some((MessageId::from_uuid(uuid), index))
    }

    /// Rewrites every http(s) link of `content` for `message`, and lists the originals.
    pub fn track(
        &self,
        message: MessageId,
        content: &TemplateContent,
    ) -> (TemplateContent, Vec<TrackedLink>) {
        let links = content.links();
        if links.is_empty() {
            return (content.clone(), Vec::new());
        }
        let tracked: Vec<TrackedLink> = links
            .iter()
            .enumerate()
            .map(|(i, url)| TrackedLink {
                index: i as u32,
                url: url.clone(),
            })
            .collect();
        let rewritten = content.rewrite_links(|url| {
            let index = links.iter().position(|l| l == url)?;
            Some(format!(
                "{}/c/{}",
                self.public_url,
                self.token(message, index as u32)
            ))
        });
        (rewritten, tracked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_tampering_fails() {
        let signer = LinkSigner::new(b"secret".to_vec(), "https://h.example/");
        let message = MessageId::generate();
        let token = signer.token(message, 3);
        assert_eq!(signer.verify(&token), Some((message, 3)));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("decodes");
        bytes[17] ^= 1;
        assert_eq!(signer.verify(&URL_SAFE_NO_PAD.encode(&bytes)), None);
        assert_eq!(LinkSigner::new(b"other".to_vec(), "x").verify(&token), None);
        assert_eq!(signer.verify("not a token"), None);
    }

    #[test]
    fn links_are_rewritten_and_listed() {
        let signer = LinkSigner::new(b"k".to_vec(), "https://h.example");
        let content = TemplateContent::Text {
            body: "see https://a.example/x and https://b.example".into(),
        };
        let message = MessageId::generate();
        let (rewritten, tracked) = signer.track(message, &content);
        assert_eq!(tracked.len(), 2);
        assert_eq!(tracked[1].url, "https://b.example");
        let TemplateContent::Text { body } = rewritten else {
            panic!("kind kept")
        };
        assert!(
            !body.contains("a.example") && body.matches("https://h.example/c/").count() == 2,
            "{body}"
        );
    }
}
