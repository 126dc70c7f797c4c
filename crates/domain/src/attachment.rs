//! Email attachments: files named by an http(s) URL in the template and fetched by the email
//! supplier when each message is sent.

use serde::{Deserialize, Serialize};

use crate::template::required;
use crate::template_aggregate::TemplateError;

/// The most attachments one email carries.
pub const MAX_ATTACHMENTS: usize = 10;
/// The longest attachment URL, in bytes.
pub const MAX_ATTACHMENT_URL_BYTES: usize = 2048;
/// The longest attachment file name, in bytes.
pub const MAX_FILENAME_BYTES: usize = 255;

/// A file attached to an email, fetched over HTTP(S) when each message is sent.
///
/// Like a supplier template code, it is configuration: placeholders in it are not substituted,
/// and click tracking leaves it alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// An `http` or `https` URL, which must stay reachable while messages are being sent.
    pub url: String,
    /// The name the receiver sees (absent: the last segment of the URL's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl Attachment {
    /// The URL must be `http` or `https`: a `file:`, `ftp:` or `data:` URL would have the
    /// dispatcher read its own disk or speak protocols it has no business speaking.
    pub(crate) fn validate(&self) -> Result<(), TemplateError> {
        required("attachments.url", &self.url, MAX_ATTACHMENT_URL_BYTES)?;
        if !is_http_url(&self.url) {
            return Err(TemplateError::AttachmentUrlNotHttp {
                url: crate::wire::excerpt(&self.url),
            });
        }
        if let Some(filename) = &self.filename {
            required("attachments.filename", filename, MAX_FILENAME_BYTES)?;
        }
        Ok(())
    }
}

/// `http://` or `https://` (any case), then a host, and no whitespace or control characters.
fn is_http_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    scheme_ok && !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}
