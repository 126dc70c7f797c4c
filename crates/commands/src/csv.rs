//! CSV as Herald reads it (crowd-send audiences, supplier bills): one record per line, fields
//! separated by commas and optionally in double quotes, a quote inside quotes written twice.
//! A quoted field may not span lines, so a broken quote spoils only its own line, and a file can
//! be read (and a read resumed) a line at a time from any line's start.

/// The fields of one CSV line: separated by commas, optionally in double quotes, a quote inside
/// quotes written twice. A quoted field may not span lines.
pub fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(
                            "a quoted field is not closed (fields may not span lines)".to_owned()
                        );
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("{c:?} after a closing quote; expected a comma")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_owned());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(
                            "a quote inside an unquoted field; quote the whole field".to_owned()
                        );
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_owned());
        }
    }
}

/// One line of a file read a piece at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1 for the first line.
    pub number: u64,
    /// The text without its line ending; `Err` when it is not UTF-8 or too long.
    pub text: Result<String, String>,
    /// The byte offset just after the line (and its line ending) in the file.
    pub end: u64,
}

/// Splits bytes arriving in chunks into lines, holding at most one line and one chunk.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    /// The file offset just after the last byte pushed.
    offset: u64,
    number: u64,
    /// The longest line kept; a longer one is reported as an error and its bytes dropped.
    max_line: usize,
    overlong: bool,
}

impl LineSplitter {
    /// Starts at byte `offset` of the file, which is line `first_line`'s start.
    pub fn new(offset: u64, first_line: u64, max_line: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            offset,
            number: first_line.saturating_sub(1),
            max_line,
            overlong: false,
        }
    }

    /// Adds a chunk and returns the lines it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Line> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            let (piece, ends_line) = match rest.iter().position(|b| *b == b'\n') {
                Some(at) => (&rest[..=at], true),
                None => (rest, false),
            };
            rest = &rest[piece.len()..];
            self.offset += piece.len() as u64;
            if !self.overlong {
                self.pending.extend_from_slice(piece);
                if self.pending.len() > self.max_line + 2 {
                    self.overlong = true;
                    self.pending = Vec::new();
                }
            }
            if ends_line {
                lines.push(self.take());
            }
        }
        lines
    }

    /// The last line, when the file does not end with a line break.
    pub fn finish(&mut self) -> Option<Line> {
        (!self.pending.is_empty() || self.overlong).then(|| self.take())
    }

    fn take(&mut self) -> Line {
        self.number += 1;
        let bytes = std::mem::take(&mut self.pending);
        let text = if std::mem::take(&mut self.overlong) {
            Err(format!("the line is longer than {} bytes", self.max_line))
        } else {
            let mut end = bytes.len();
            while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            String::from_utf8(bytes[..end].to_vec()).map_err(|_| "the line is not UTF-8".to_owned())
        };
        Line {
            number: self.number,
            text,
            end: self.offset,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fields_quoted_and_not() {
        assert_eq!(
            fields("a, b ,\"c,d\",\"e\"\"f\"").unwrap(),
            ["a", "b", "c,d", "e\"f"]
        );
        assert!(fields("\"open").unwrap_err().contains("not closed"));
        assert!(fields("a\"b").unwrap_err().contains("quote inside"));
    }

    #[test]
    fn lines_across_chunks_with_their_numbers_and_ends() {
        let text = b"receiver,name\r\n+8613800000001,Ann\n\n+8613800000002,Bob";
        for size in [1, 3, 7, 100] {
            let mut splitter = LineSplitter::new(0, 1, 1000);
            let mut lines = Vec::new();
            for chunk in text.chunks(size) {
                lines.extend(splitter.push(chunk));
            }
            lines.extend(splitter.finish());
            let got: Vec<(u64, String, u64)> = lines
                .into_iter()
                .map(|l| (l.number, l.text.unwrap(), l.end))
                .collect();
            assert_eq!(
                got,
                [
                    (1, "receiver,name".to_owned(), 15),
                    (2, "+8613800000001,Ann".to_owned(), 34),
                    (3, String::new(), 35),
                    (4, "+8613800000002,Bob".to_owned(), 53),
                ],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_resumed_read_counts_from_where_it_starts_and_long_lines_are_errors() {
        let mut splitter = LineSplitter::new(15, 2, 10);
        let lines = splitter.push(b"short\nthis line is far too long\nok\n");
        assert_eq!(lines[0].number, 2);
        assert_eq!(lines[0].end, 21);
        assert!(
            lines[1]
                .text
                .as_ref()
                .unwrap_err()
                .contains("longer than 10")
        );
        assert_eq!(
            (lines[2].number, lines[2].text.clone()),
            (4, Ok("ok".to_owned()))
        );
        assert!(splitter.finish().is_none());
    }
}
