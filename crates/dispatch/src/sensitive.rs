//! Sensitive words: a list the operator keeps (one word or phrase a line, `#` starts a comment),
//! found in a message's content just before it goes out. Depending on the configured action the
//! words are masked with `*`, one per character, or the message is discarded with
//! `MessageDiscarded { rule: SENSITIVE_WORDS }`.
//!
//! Matching is by Aho-Corasick over every text field of the content (for supplier templates, the
//! parameter values: the supplier holds the rest), leftmost-longest, ASCII case-insensitive.
//! A word written in ASCII matches whole words only ("ass" is not in "class"); words in scripts
//! without spaces match anywhere. URLs and HTML tags are never masked: a tracked link or an
//! `href` would break. The list is reloaded while Herald runs, so the matcher is built once per
//! list and shared.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use domain::TemplateContent;
use serde::Deserialize;

/// What to do with a message whose content holds a listed word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensitiveAction {
    /// Replace each character of the word with `*` and send.
    #[default]
    Mask,
    /// Do not send: discard the message.
    Reject,
}

/// A compiled word list.
#[derive(Clone, Default)]
pub struct SensitiveWords {
    matcher: Option<AhoCorasick>,
    words: usize,
}

impl std::fmt::Debug for SensitiveWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words themselves may be offensive or confidential: only their count.
        f.debug_struct("SensitiveWords")
            .field("words", &self.words)
            .finish()
    }
}

impl SensitiveWords {
    /// Reads the list format: one entry a line; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<SensitiveWords, aho_corasick::BuildError> {
        SensitiveWords::new(
            text.lines()
                .map(|line| line.split('#').next().unwrap_or_default().trim())
                .filter(|line| !line.is_empty()),
        )
    }

    pub fn new<'a>(
        words: impl IntoIterator<Item = &'a str>,
    ) -> Result<SensitiveWords, aho_corasick::BuildError> {
        let mut words: Vec<&str> = words.into_iter().filter(|w| !w.is_empty()).collect();
        words.sort_unstable();
        words.dedup();
        if words.is_empty() {
            return Ok(SensitiveWords::default());
        }
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&words)?;
        Ok(SensitiveWords {
            matcher: Some(matcher),
            words: words.len(),
        })
    }

    /// How many words the list holds.
    pub fn len(&self) -> usize {
        self.words
    }

    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// The content with every listed word masked, and how many were.
    pub fn mask(&self, content: &TemplateContent) -> (TemplateContent, u32) {
        let mut content = content.clone();
        let Some(matcher) = &self.matcher else {
            return (content, 0);
        };
        let mut count = 0u32;
        let mut mask = |text: &mut String| {
            let protected = protected_spans(text);
            let mut masked = String::with_capacity(text.len());
            let mut last = 0;
            for found in matcher.find_iter(text.as_str()) {
                let (start, end) = (found.start(), found.end());
                if !whole_word(text, start, end)
                    || protected
                        .iter()
                        .any(|(from, to)| start < *to && *from < end)
                {
                    continue;
                }
                masked.push_str(&text[last..found.start()]);
                let chars = text[found.start()..found.end()].chars().count();
                masked.extend(std::iter::repeat_n('*', chars));
                last = found.end();
                count = count.saturating_add(1);
            }
            if last > 0 {
                masked.push_str(&text[last..]);
                *text = masked;
            }
        };
        match &mut content {
            TemplateContent::Text { body } => mask(body),
            TemplateContent::Email {
                subject,
                html,
                text,
                ..
            } => {
                mask(subject);
                html.iter_mut().for_each(&mut mask);
                text.iter_mut().for_each(&mut mask);
            }
            TemplateContent::Markdown { title, body }
            | TemplateContent::Card { title, body, .. } => {
                mask(title);
                mask(body);
            }
            TemplateContent::SupplierTemplate { params, .. } => {
                params.iter_mut().for_each(|p| mask(&mut p.value));
            }
        }
        (content, count)
    }
}

/// Whether `text[start..end]` stands as a word: where it begins or ends with an ASCII letter or
/// digit, the character beyond is not one (so "ass" is not found in "class"). Scripts written
/// without spaces, such as Chinese, match anywhere.
fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric();
    let found = &text[start..end];
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let starts_in_word = found.chars().next().is_some_and(word) && before.is_some_and(word);
    let ends_in_word = found.chars().next_back().is_some_and(word) && after.is_some_and(word);
    !starts_in_word && !ends_in_word
}

/// Byte ranges never masked: HTML tags with their attributes, and URLs (tracked links among
/// them), which a mask would break.
fn protected_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let end = if bytes[i] == b'<' {
            rest.find('>').map(|n| i + n + 1)
        } else if rest.starts_with("http://") || rest.starts_with("https://") {
            let stop = rest
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
                .unwrap_or(rest.len());
            Some(i + stop)
        } else {
            None
        };
        match end {
            Some(end) => {
                spans.push((i, end));
                i = end;
            }
            // `<` and `h` are ASCII, so the next byte starts a character only when this one did.
            None => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use domain::TemplateParam;

    use super::*;

    #[track_caller]
    fn check(list: &str, body: &str, expected: &str, count: u32) {
        let words = SensitiveWords::parse(list).expect("list");
        let (masked, n) = words.mask(&TemplateContent::Text {
            body: body.to_owned(),
        });
        assert_eq!(
            masked,
            TemplateContent::Text {
                body: expected.to_owned()
            }
        );
        assert_eq!(n, count);
    }

    #[test]
    fn words_are_masked_one_star_per_character() {
        check(
            "赌博\n# a comment\n\nfree money  # trailing\n",
            "来赌博吧",
            "来**吧",
            1,
        );
        check(
            "free money",
            "FREE Money now, free money!",
            "********** now, **********!",
            2,
        );
        // Longest match wins; untouched text stays as it was.
        check("cash\ncashback", "cashback offer", "******** offer", 1);
        check("spam", "nothing here", "nothing here", 0);
        // Whole words only, where the word is written in ASCII.
        check("ass", "class assistant, ass!", "class assistant, ***!", 1);
        check("赌", "赌场", "*场", 1);
        // Never inside links or HTML tags.
        check(
            "abc",
            "see https://x.test/c/abc.token and <a href=\"/abc\">abc</a>",
            "see https://x.test/c/abc.token and <a href=\"/abc\">***</a>",
            1,
        );
        check("", "anything", "anything", 0);
    }

    #[test]
    fn every_text_field_is_masked() {
        let words = SensitiveWords::new(["bad"]).expect("list");
        let (masked, n) = words.mask(&TemplateContent::SupplierTemplate {
            template_code: "bad_code".to_owned(),
            sign_name: None,
            params: vec![TemplateParam {
                name: "bad".to_owned(),
                value: "a bad word".to_owned(),
            }],
        });
        assert_eq!(n, 1);
        let TemplateContent::SupplierTemplate {
            template_code,
            params,
            ..
        } = masked
        else {
            panic!("same kind")
        };
        // The supplier's template code and parameter names are identifiers, not content.
        assert_eq!(template_code, "bad_code");
        assert_eq!(params[0].name, "bad");
        assert_eq!(params[0].value, "a *** word");
        assert_eq!(format!("{words:?}"), "SensitiveWords { words: 1 }");
    }
}
