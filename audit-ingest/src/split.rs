//! Splitting a byte stream into JSON records without parsing it, so memory stays bounded by the
//! largest record, not the file, and one bad record does not lose its neighbours.
//!
//! Accepted shapes: CloudTrail's delivery `{"Records": [ ... ]}`, a JSON array of records, one
//! object, and JSON Lines (or any concatenation of objects). A record is found by matching
//! braces outside strings; what it contains is the parser's business.

use std::io::{BufRead, ErrorKind};

use crate::reject::Reason;

/// The largest single record accepted; larger ones are quarantined unread.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// How far ahead the first line is looked at to tell JSON Lines from pretty-printed objects.
const LINE_PROBE_BYTES: usize = 64 * 1024;

/// One record's bytes and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// 1-based position of the record in its source.
    pub number: u64,
    pub bytes: Vec<u8>,
}

/// What kind of thing went wrong with a stretch of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitErrorKind {
    /// The input ends inside a record, or inside the record array.
    Truncated,
    /// One record is larger than [`MAX_RECORD_BYTES`]; the records after it are still read.
    TooLarge,
    /// The input cannot be read (an IO error).
    Unreadable,
    /// Something other than a JSON object where a record belongs.
    NotAnObject,
}

impl SplitErrorKind {
    /// The quarantine reason of such a stretch.
    pub fn reason(self) -> Reason {
        match self {
            Self::Truncated => Reason::TruncatedInput,
            Self::TooLarge => Reason::RecordTooLarge,
            Self::Unreadable => Reason::UnreadableInput,
            Self::NotAnObject => Reason::WrongShape,
        }
    }
}

/// A kind and what to tell a person.
type Fault = (SplitErrorKind, String);

/// What went wrong with a stretch of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError {
    pub number: u64,
    pub kind: SplitErrorKind,
    /// For people: what went wrong, and where in the record it was noticed.
    pub message: String,
    /// The raw bytes concerned (possibly cut short), for quarantine.
    pub raw: Vec<u8>,
    /// After this error nothing more can be read from the source.
    pub fatal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the first value: the shape is not known yet.
    Start,
    /// Inside an array of records (top-level, or the `Records` member).
    Array,
    /// Top-level objects one after another, matched by braces (pretty-printed or concatenated).
    Objects,
    /// JSON Lines: one record per line, so a broken line stays one bad record.
    Lines,
    Done,
}

/// Brace matching outside strings, fed a buffer at a time.
#[derive(Debug, Default, Clone, Copy)]
struct Braces {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Braces {
    /// Takes the next bytes; the index of the byte that closes the value opened first, if it is
    /// among them (the bytes after it are not taken). Inside strings, which are most of a
    /// record, it jumps from quote or backslash to the next with `memchr`.
    fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < buf.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                let j = i + memchr::memchr2(b'"', b'\\', &buf[i..])?;
                if buf[j] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                }
                i = j + 1;
                continue;
            }
            match buf[i] {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        None
    }
}

/// A `BufRead` that can look further ahead than its inner reader's buffer happens to hold, so
/// a shape is decided on enough bytes even at a buffer boundary.
struct Lookahead<R> {
    front: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: BufRead> Lookahead<R> {
    /// Up to `n` bytes from the current position (fewer only at the end of the input).
    fn peek_n(&mut self, n: usize) -> std::io::Result<&[u8]> {
        if self.pos > 0 {
            self.front.drain(..self.pos);
            self.pos = 0;
        }
        while self.front.len() < n {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                break;
            }
            let k = (n - self.front.len()).min(buf.len());
            self.front.extend_from_slice(&buf[..k]);
            self.inner.consume(k);
        }
        Ok(&self.front[..n.min(self.front.len())])
    }
}

impl<R: BufRead> std::io::Read for Lookahead<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Lookahead<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos < self.front.len() {
            return Ok(&self.front[self.pos..]);
        }
        self.front.clear();
        self.pos = 0;
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if self.pos < self.front.len() {
            self.pos = (self.pos + amt).min(self.front.len());
        } else {
            self.inner.consume(amt);
        }
    }
}

pub struct Splitter<R> {
    reader: Lookahead<R>,
    mode: Mode,
    /// The current array is the `Records` member of a delivery wrapper, whose `}` follows it.
    wrapped: bool,
    number: u64,
    failed: bool,
}

impl<R: BufRead> Splitter<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader: Lookahead {
                front: Vec::new(),
                pos: 0,
                inner: reader,
            },
            mode: Mode::Start,
            wrapped: false,
            number: 0,
            failed: false,
        }
    }

    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            return Ok(buf.first().copied());
        }
    }

    fn bump(&mut self) {
        self.reader.consume(1);
    }

    /// Skips whitespace (and a UTF-8 byte order mark) and returns the next byte, not consumed.
    fn skip_ws(&mut self) -> std::io::Result<Option<u8>> {
        loop {
            match self.peek()? {
                Some(b' ' | b'\n' | b'\r' | b'\t') => self.bump(),
                Some(0xEF) => {
                    // A byte order mark is three bytes; skip them all.
                    self.bump();
                    for _ in 0..2 {
                        if matches!(self.peek()?, Some(0xBB | 0xBF)) {
                            self.bump();
                        }
                    }
                }
                other => return Ok(other),
            }
        }
    }

    /// Reads one balanced JSON value starting at the current `{` or `[`.
    fn read_value(&mut self) -> Result<Vec<u8>, (Fault, Vec<u8>, bool)> {
        let mut out = Vec::with_capacity(2048);
        let mut braces = Braces::default();
        loop {
            let buf = match fill(&mut self.reader) {
                Ok(b) => b,
                Err(f) => return Err((f, out, true)),
            };
            if buf.is_empty() {
                return Err((
                    (
                        SplitErrorKind::Truncated,
                        "the input ends inside a record (truncated)".into(),
                    ),
                    out,
                    true,
                ));
            }
            let (used, done) = match braces.scan(buf) {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            out.extend_from_slice(&buf[..used]);
            self.reader.consume(used);
            if done {
                return Ok(out);
            }
            if out.len() > MAX_RECORD_BYTES {
                // Skip the rest of this record so the following ones can still be read.
                out.truncate(4096);
                return Err(match self.skip_rest(braces) {
                    Ok(()) => (too_large(), out, false),
                    Err(e) => (unreadable(&e), out, true),
                });
            }
        }
    }

    fn skip_rest(&mut self, mut braces: Braces) -> std::io::Result<()> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            match braces.scan(buf) {
                Some(i) => {
                    self.reader.consume(i + 1);
                    return Ok(());
                }
                None => {
                    let n = buf.len();
                    self.reader.consume(n);
                }
            }
        }
    }

    /// Reads one line (without its newline), bounded by [`MAX_RECORD_BYTES`].
    fn read_line(&mut self) -> Result<Option<Vec<u8>>, (Fault, Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut too_big = false;
        loop {
            let buf = match fill(&mut self.reader) {
                Ok(b) => b,
                Err(f) => return Err((f, out, true)),
            };
            if buf.is_empty() {
                return Ok((!out.is_empty()).then_some(out));
            }
            let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            let n = chunk.len();
            if !too_big {
                out.extend_from_slice(chunk);
                if out.len() > MAX_RECORD_BYTES {
                    too_big = true;
                    out.truncate(4096);
                }
            }
            self.reader.consume(n);
            if done {
                if too_big {
                    return Err((too_large(), out, false));
                }
                return Ok(Some(out));
            }
        }
    }

    /// Reads a scalar or unexpected token up to the next separator, for quarantine.
    fn read_junk(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = self.peek()? {
            if matches!(b, b',' | b'\n' | b'{' | b'[' | b']') || out.len() > 4096 {
                break;
            }
            out.push(b);
            self.bump();
        }
        Ok(out)
    }

    fn element(&mut self) -> Option<Result<Element, SplitError>> {
        self.number += 1;
        let number = self.number;
        Some(match self.read_value() {
            Ok(bytes) => Ok(Element { number, bytes }),
            Err(((kind, message), raw, fatal)) => {
                self.failed = fatal;
                Err(SplitError {
                    number,
                    kind,
                    message,
                    raw,
                    fatal,
                })
            }
        })
    }

    fn io_error(&mut self, e: std::io::Error) -> Option<Result<Element, SplitError>> {
        self.failed = true;
        let (kind, message) = unreadable(&e);
        Some(Err(SplitError {
            number: self.number + 1,
            kind,
            message,
            raw: Vec::new(),
            fatal: true,
        }))
    }

    /// Reads past the rest of a delivery wrapper after its `Records` array: its `}`, and any
    /// other members it has (which are not records).
    fn close_wrapper(&mut self) -> std::io::Result<()> {
        match self.skip_ws()? {
            Some(b'}') => {
                self.bump();
                Ok(())
            }
            Some(b',') => self.skip_rest(Braces {
                depth: 1,
                ..Braces::default()
            }),
            _ => Ok(()),
        }
    }

    /// Decides the shape from the first value.
    fn start(&mut self) -> std::io::Result<()> {
        match self.skip_ws()? {
            None => self.mode = Mode::Done,
            Some(b'[') => {
                self.bump();
                self.wrapped = false;
                self.mode = Mode::Array;
            }
            Some(b'{') => {
                // `{"Records": [` is the delivery wrapper; anything else is a record.
                let head = self.reader.peek_n(64)?.to_vec();
                let text = String::from_utf8_lossy(&head);
                let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                if compact.starts_with("{\"Records\":[") {
                    let skip = head.iter().position(|b| *b == b'[').map_or(0, |i| i + 1);
                    self.reader.consume(skip);
                    self.wrapped = true;
                    self.mode = Mode::Array;
                } else {
                    // A first line that is a whole object on its own means JSON Lines.
                    let buf = self.reader.peek_n(LINE_PROBE_BYTES)?;
                    let line = buf.split(|b| *b == b'\n').next().unwrap_or(buf);
                    let complete_line = line.len() < buf.len();
                    let trimmed = line.trim_ascii();
                    self.mode =
                        if complete_line && trimmed.starts_with(b"{") && trimmed.ends_with(b"}") {
                            Mode::Lines
                        } else {
                            Mode::Objects
                        };
                }
            }
            Some(_) => self.mode = Mode::Objects,
        }
        Ok(())
    }
}

/// The reader's next buffer; retried when interrupted.
fn fill<R: BufRead>(reader: &mut R) -> Result<&[u8], Fault> {
    loop {
        match reader.fill_buf() {
            // The end of the input: not read again (an interactive stdin would wait).
            Ok([]) => return Ok(&[]),
            // Re-borrowed below, from the buffer without reading: the borrow checker does not
            // let a loop return this borrow.
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return Err((
                    SplitErrorKind::Truncated,
                    format!("the input ends inside a record (truncated: {e})"),
                ));
            }
            Err(e) => return Err(unreadable(&e)),
        }
    }
    reader.fill_buf().map_err(|e| unreadable(&e))
}

fn unreadable(e: &std::io::Error) -> Fault {
    (
        SplitErrorKind::Unreadable,
        format!("the input cannot be read: {e}"),
    )
}

fn too_large() -> Fault {
    (
        SplitErrorKind::TooLarge,
        format!("the record is larger than {MAX_RECORD_BYTES} bytes"),
    )
}

impl<R: BufRead> Iterator for Splitter<R> {
    type Item = Result<Element, SplitError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.mode {
                Mode::Done => return None,
                Mode::Start => {
                    if let Err(e) = self.start() {
                        return self.io_error(e);
                    }
                }
                Mode::Array => {
                    let next = match self.skip_ws() {
                        Ok(b) => b,
                        Err(e) => return self.io_error(e),
                    };
                    match next {
                        Some(b',') => self.bump(),
                        Some(b']') => {
                            // The end of the records. A wrapper's object closes next; then
                            // more may follow (concatenated or multi-member gzip deliveries).
                            self.bump();
                            if std::mem::take(&mut self.wrapped)
                                && let Err(e) = self.close_wrapper()
                            {
                                return self.io_error(e);
                            }
                            self.mode = Mode::Start;
                        }
                        Some(b'{' | b'[') => return self.element(),
                        Some(_) => {
                            self.number += 1;
                            let raw = self.read_junk().unwrap_or_default();
                            return Some(Err(SplitError {
                                number: self.number,
                                kind: SplitErrorKind::NotAnObject,
                                message: "an array item is not a JSON object".into(),
                                raw,
                                fatal: false,
                            }));
                        }
                        None => {
                            self.failed = true;
                            return Some(Err(SplitError {
                                number: self.number + 1,
                                kind: SplitErrorKind::Truncated,
                                message: "the input ends inside the record array (truncated)"
                                    .into(),
                                raw: Vec::new(),
                                fatal: true,
                            }));
                        }
                    }
                }
                Mode::Lines => {
                    let line = match self.read_line() {
                        Ok(Some(l)) => l,
                        Ok(None) => {
                            self.mode = Mode::Done;
                            return None;
                        }
                        Err(((kind, message), raw, fatal)) => {
                            self.number += 1;
                            self.failed = fatal;
                            return Some(Err(SplitError {
                                number: self.number,
                                kind,
                                message,
                                raw,
                                fatal,
                            }));
                        }
                    };
                    let trimmed = line.trim_ascii();
                    if trimmed.is_empty() {
                        continue;
                    }
                    self.number += 1;
                    return Some(Ok(Element {
                        number: self.number,
                        bytes: trimmed.to_vec(),
                    }));
                }
                Mode::Objects => {
                    let next = match self.skip_ws() {
                        Ok(b) => b,
                        Err(e) => return self.io_error(e),
                    };
                    match next {
                        None => {
                            self.mode = Mode::Done;
                            return None;
                        }
                        Some(b'{' | b'[') => return self.element(),
                        Some(_) => {
                            self.number += 1;
                            let raw = match self.read_junk() {
                                Ok(r) => r,
                                Err(e) => return self.io_error(e),
                            };
                            if raw.is_empty() {
                                // A stray separator: skip it.
                                self.number -= 1;
                                self.bump();
                                continue;
                            }
                            return Some(Err(SplitError {
                                number: self.number,
                                kind: SplitErrorKind::NotAnObject,
                                message: "not a JSON object".into(),
                                raw,
                                fatal: false,
                            }));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `split` through a reader whose buffer holds `cap` bytes at a time.
    fn split_buffered(text: &str, cap: usize) -> Vec<Result<String, String>> {
        Splitter::new(std::io::BufReader::with_capacity(cap, text.as_bytes()))
            .map(|r| {
                r.map(|e| String::from_utf8(e.bytes).unwrap())
                    .map_err(|e| e.message)
            })
            .collect()
    }

    fn split(text: &str) -> Vec<Result<String, String>> {
        Splitter::new(std::io::Cursor::new(text.as_bytes().to_vec()))
            .map(|r| {
                r.map(|e| String::from_utf8(e.bytes).unwrap())
                    .map_err(|e| e.message)
            })
            .collect()
    }

    #[test]
    fn all_shapes() {
        let want = vec![Ok(r#"{"a":1}"#.to_string()), Ok(r#"{"b":"}"}"#.to_string())];
        assert_eq!(split(r#"{"Records":[{"a":1},{"b":"}"}]}"#), want);
        assert_eq!(
            split(" {\"Records\" : [ {\"a\":1},\n {\"b\":\"}\"} ] }\n"),
            want
        );
        assert_eq!(split(r#"[{"a":1}, {"b":"}"}]"#), want);
        assert_eq!(split("{\"a\":1}\n{\"b\":\"}\"}\n"), want);
        assert_eq!(split(r#"{"a":1}"#), vec![Ok(r#"{"a":1}"#.to_string())]);
        assert_eq!(split(""), vec![]);
        assert_eq!(split("[]"), vec![]);
    }

    #[test]
    fn concatenated_deliveries_are_all_read() {
        // `zcat *.json.gz`, or a multi-member gzip: one wrapper after another.
        let text = "{\"Records\":[{\"a\":1}]}\n{\"Records\": [{\"b\":2},{\"c\":3}], \"x\": {\"y\": [1]}}[{\"d\":4}]{\"e\":5}";
        let want: Vec<Result<String, String>> = [
            r#"{"a":1}"#,
            r#"{"b":2}"#,
            r#"{"c":3}"#,
            r#"{"d":4}"#,
            r#"{"e":5}"#,
        ]
        .iter()
        .map(|s| Ok(s.to_string()))
        .collect();
        assert_eq!(split(text), want);
        // The same through a reader whose buffer holds only a few bytes at a time.
        for cap in [1, 3, 7, 64] {
            let got = split_buffered(text, cap);
            assert_eq!(got, want, "buffer of {cap} bytes");
        }
        // Something after the last wrapper that is not a record is reported, not ignored.
        let got = split("{\"Records\":[{\"a\":1}]} trailing");
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err(), "{got:?}");
    }

    #[test]
    fn escapes_split_anywhere() {
        // Escaped quotes and backslashes, braces inside strings, cut at every buffer size.
        let text = r#"[{"s":"a\"}b\\","t":"{[x]}\\\"","n":{"k":[1,{"y":"\\"}]}},{"z":"}"}]"#;
        let want = vec![
            Ok(r#"{"s":"a\"}b\\","t":"{[x]}\\\"","n":{"k":[1,{"y":"\\"}]}}"#.to_string()),
            Ok(r#"{"z":"}"}"#.to_string()),
        ];
        for v in &want {
            let Ok(v) = v else { continue };
            assert!(serde_json::from_str::<serde_json::Value>(v).is_ok(), "{v}");
        }
        for cap in 1..=9 {
            let got = split_buffered(text, cap);
            assert_eq!(got, want, "buffer of {cap} bytes");
        }
    }

    #[test]
    fn escapes_and_nesting() {
        let got = split(r#"[{"s":"a\"}b","n":{"x":[1,{"y":2}]}}]"#);
        assert_eq!(
            got,
            vec![Ok(r#"{"s":"a\"}b","n":{"x":[1,{"y":2}]}}"#.to_string())]
        );
    }

    #[test]
    fn a_truncated_input_keeps_what_came_before() {
        let got = split(r#"{"Records":[{"a":1},{"b":2},{"c":"#);
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok() && got[1].is_ok());
        assert!(got[2].as_ref().unwrap_err().contains("truncated"));
        let kinds: Vec<_> = Splitter::new(std::io::Cursor::new(
            br#"{"Records":[{"a":1},{"c":"#.to_vec(),
        ))
        .filter_map(|r| r.err().map(|e| e.kind))
        .collect();
        assert_eq!(kinds, vec![SplitErrorKind::Truncated]);
    }

    #[test]
    fn a_broken_json_line_is_one_bad_record() {
        let got = split("{\"a\":1}\n{\"b\": \n{\"c\":3}\n\n{not json\n");
        assert_eq!(got[0], Ok(r#"{"a":1}"#.to_string()));
        assert_eq!(got[1], Ok(r#"{"b":"#.to_string()));
        assert_eq!(got[2], Ok(r#"{"c":3}"#.to_string()));
        assert_eq!(got[3], Ok("{not json".to_string()));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn junk_between_records_is_reported_not_fatal() {
        let got = split("[{\"a\":1}, 7, {\"b\":2}]");
        assert!(got[0].is_ok());
        assert!(got[1].is_err());
        assert_eq!(got[2], Ok(r#"{"b":2}"#.to_string()));
        // In JSON Lines the junk line is handed on whole; the parser rejects it.
        let got = split("{\"a\":1}\nnot json\n{\"b\":2}\n");
        assert_eq!(got[1], Ok("not json".to_string()));
    }
}
