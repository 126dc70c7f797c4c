//! The log writer: every line goes through [`mask`] before it reaches stderr, so a phone
//! number, an email address or a credential in a URL that slipped into a message (a supplier's
//! error text that echoes the receiver, say) is masked however it got there. Code logs
//! receivers masked already (`Receiver::masked`); this is the net under it. Message contents
//! are never logged.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// Makes a [`MaskingWriter`] per log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter { line: Vec::new() }
    }
}

/// Collects one formatted event and writes it masked when dropped.
pub struct MaskingWriter {
    line: Vec<u8>,
}

impl Write for MaskingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskingWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let _ = std::io::stderr().lock().write_all(mask(&text).as_bytes());
    }
}

/// Query parameters and words whose values are credentials.
const SECRET_NAMES: [&str; 8] = [
    "key",
    "token",
    "access_token",
    "secret",
    "sign",
    "signature",
    "password",
    "sendkey",
];

/// Masks phone numbers (7 to 15 digits, maybe after a `+`, standing apart from letters, digits
/// and `-._:`, so ids, times and JSON numbers stay), email addresses (all but the local part's
/// first character) and the values of credential parameters (`key=…`, `token=…`, `Bearer …`).
pub fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let joined = |c: char| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '*');
    while i < chars.len() {
        let c = chars[i];
        // A credential: `name=value` or `Bearer value`.
        if c.is_ascii_alphabetic()
            && (i == 0 || !chars[i - 1].is_alphanumeric() && chars[i - 1] != '_')
        {
            let mut end = i;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            let word: String = chars[i..end].iter().collect();
            let lower = word.to_ascii_lowercase();
            let credential = (SECRET_NAMES.contains(&lower.as_str())
                && chars.get(end) == Some(&'='))
                || (lower == "bearer" && chars.get(end) == Some(&' '));
            let value_at = credential.then_some(end + 1);
            out.push_str(&word);
            i = end;
            if let Some(at) = value_at {
                out.push(chars[end]);
                let mut stop = at;
                while stop < chars.len()
                    && !matches!(
                        chars[stop],
                        '&' | ' ' | '"' | '\'' | ',' | ';' | '\\' | '}' | ')'
                    )
                {
                    stop += 1;
                }
                if stop > at {
                    out.push_str("***");
                }
                i = stop;
            }
            continue;
        }
        // A phone number.
        let starts_number =
            c.is_ascii_digit() || (c == '+' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        if starts_number && (i == 0 || !joined(chars[i - 1])) {
            let from = if c == '+' { i + 1 } else { i };
            let mut end = from;
            while end < chars.len() && chars[end].is_ascii_digit() {
                end += 1;
            }
            let digits = end - from;
            let apart = end == chars.len()
                || !joined(chars[end])
                || chars[end] == '.' && chars.get(end + 1).is_none_or(|n| !n.is_alphanumeric());
            if (7..=15).contains(&digits) && apart {
                let keep_head = if digits >= 11 { 3 } else { 2 };
                let keep_tail = if digits >= 11 { 4 } else { 2 };
                if c == '+' {
                    out.push('+');
                }
                out.extend(&chars[from..from + keep_head]);
                out.push_str("****");
                out.extend(&chars[end - keep_tail..end]);
            } else {
                out.extend(&chars[i..end]);
            }
            i = end;
            continue;
        }
        // An email address: mask back to the start of the local part.
        if c == '@' {
            let mut start = out.len();
            let bytes = out.as_bytes();
            while start > 0 {
                let b = bytes[start - 1];
                if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') {
                    start -= 1;
                } else {
                    break;
                }
            }
            let mut end = i + 1;
            while end < chars.len()
                && (chars[end].is_ascii_alphanumeric() || matches!(chars[end], '.' | '-'))
            {
                end += 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            if start < out.len() && domain.contains('.') {
                let first = out[start..].chars().next().unwrap_or('*');
                out.truncate(start);
                out.push(first);
                out.push_str("***");
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn receivers_and_credentials_are_masked() {
        assert_eq!(
            mask(r#"{"message":"bad number +8613812345678 for ann.lee@example.com"}"#),
            r#"{"message":"bad number +861****5678 for a***@example.com"}"#
        );
        assert_eq!(mask("call 13812345678 now"), "call 138****5678 now");
        assert_eq!(
            mask("POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7x&debug=1"),
            "POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&debug=1"
        );
        assert_eq!(
            mask("Authorization: Bearer hk_abc_def"),
            "Authorization: Bearer ***"
        );
        assert_eq!(mask("token=abc, next"), "token=***, next");
    }

    #[test]
    fn ids_times_and_numbers_stay() {
        for text in [
            r#"{"timestamp":"2026-12-02T13:58:00.123456789Z","latency_ms":1234567}"#,
            "message_id=01936f5a-1234-7abc-8def-0123456789ab",
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
            "+86138****5678 already masked",
            "keyboard=1 tokens=2",
            "12 rows, 345 bytes",
        ] {
            assert_eq!(mask(text), text);
        }
    }
}
