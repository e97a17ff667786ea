//! A walker over the members of a JSON record that reports where each value's bytes are.
//!
//! Sealing and opening replace values in place, byte for byte around them, so that opening a
//! sealed record gives back exactly the bytes that were sealed. A parser into a tree would
//! re-encode everything else too; this only finds spans. Records are canonical (no
//! whitespace), but the walker accepts JSON whitespace anyway, and any malformed input is an
//! error, never a panic.

use std::borrow::Cow;

/// A byte range of the input.
pub type Span = std::ops::Range<usize>;

/// What to do after visiting a member's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Visit its members too, if it is an object.
    Enter,
    /// Do not look inside it.
    Skip,
}

/// The input is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a JSON object (at byte {0})")]
pub struct MalformedJson(pub usize);

/// The member names from the top of the record to a value; a name is borrowed from the input
/// unless it had escapes.
pub type Path<'a> = [Cow<'a, str>];

/// Calls `visit(path, span)` for the value of every member of the top-level object, in order,
/// and for the members of an object value when `visit` returns [`Step::Enter`]. Array elements
/// are never visited: an array is one value. The input must be UTF-8, as JSON is.
pub fn walk<'a>(
    bytes: &'a [u8],
    visit: &mut dyn FnMut(&Path<'a>, Span) -> Step,
) -> Result<(), MalformedJson> {
    // Checked once here, so that each member name is a slice of it rather than a copy.
    let text = std::str::from_utf8(bytes).map_err(|e| MalformedJson(e.valid_up_to()))?;
    let mut w = Walker {
        bytes,
        text,
        at: 0,
        path: Vec::new(),
    };
    w.ws();
    w.object(visit)?;
    w.ws();
    if w.at != bytes.len() {
        return Err(MalformedJson(w.at));
    }
    Ok(())
}

/// Where the JSON value starting at byte `start` ends (one past its last byte), or `None` if
/// no whole value starts there.
pub fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut w = Walker {
        bytes,
        text: "",
        at: start,
        path: Vec::new(),
    };
    w.skip_value().ok()?;
    Some(w.at)
}

/// The text of a string value (`"…"` span), unescaped; `None` if the span is not a string.
pub fn string_at(bytes: &[u8], span: Span) -> Option<String> {
    let raw = bytes.get(span)?;
    if raw.first() != Some(&b'"') {
        return None;
    }
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(&raw[1..raw.len() - 1])
            .ok()
            .map(str::to_string);
    }
    serde_json::from_slice(raw).ok()
}

struct Walker<'a> {
    bytes: &'a [u8],
    /// `bytes` as text (empty when only skipping values).
    text: &'a str,
    at: usize,
    path: Vec<Cow<'a, str>>,
}

/// Nesting deeper than this is refused rather than risking the stack; records are at most
/// 64 KiB, and validated ones far shallower.
const MAX_DEPTH: usize = 128;

impl<'a> Walker<'a> {
    fn err<T>(&self) -> Result<T, MalformedJson> {
        Err(MalformedJson(self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), MalformedJson> {
        self.ws();
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            self.err()
        }
    }

    fn object(
        &mut self,
        visit: &mut dyn FnMut(&Path<'a>, Span) -> Step,
    ) -> Result<(), MalformedJson> {
        if self.path.len() > MAX_DEPTH {
            return self.err();
        }
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key_start = self.at;
            self.string()?;
            let raw = &self.bytes[key_start + 1..self.at - 1];
            let name = match self.text.get(key_start + 1..self.at - 1) {
                Some(plain) if !raw.contains(&b'\\') => Cow::Borrowed(plain),
                _ => match string_at(self.bytes, key_start..self.at) {
                    Some(unescaped) => Cow::Owned(unescaped),
                    None => return Err(MalformedJson(key_start)),
                },
            };
            self.expect(b':')?;
            self.ws();
            let start = self.at;
            let is_object = self.peek() == Some(b'{');
            self.path.push(name);
            // Find the value's end first, so the visitor sees the whole span; entering an
            // object walks it a second time, which only objects on a personal path pay.
            self.skip_value()?;
            let span = start..self.at;
            if visit(&self.path, span.clone()) == Step::Enter && is_object {
                let end = self.at;
                self.at = start;
                self.object(visit)?;
                debug_assert_eq!(self.at, end);
            }
            self.path.pop();
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.err(),
            }
        }
    }

    fn string(&mut self) -> Result<(), MalformedJson> {
        if self.peek() != Some(b'"') {
            return self.err();
        }
        self.at += 1;
        loop {
            // Jump to the next quote or backslash rather than looking at every byte.
            let Some(i) = memchr::memchr2(b'"', b'\\', self.bytes.get(self.at..).unwrap_or(&[]))
            else {
                self.at = self.bytes.len();
                return self.err();
            };
            self.at += i;
            if self.bytes[self.at] == b'"' {
                self.at += 1;
                return Ok(());
            }
            self.at += 2;
        }
    }

    fn skip_value(&mut self) -> Result<(), MalformedJson> {
        let mut depth = 0usize;
        loop {
            self.ws();
            match self.peek() {
                None => return self.err(),
                Some(b'"') => self.string()?,
                Some(b'{' | b'[') => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return self.err();
                    }
                    self.at += 1;
                    continue;
                }
                Some(b'}' | b']') => {
                    if depth == 0 {
                        return self.err();
                    }
                    depth -= 1;
                    self.at += 1;
                }
                Some(b',' | b':') if depth > 0 => {
                    self.at += 1;
                    continue;
                }
                Some(_) => {
                    let start = self.at;
                    while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                    {
                        self.at += 1;
                    }
                    if self.at == start {
                        return self.err();
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(json: &str, enter: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        walk(json.as_bytes(), &mut |path, span| {
            let p = path.join(".");
            out.push((p.clone(), json[span].to_string()));
            if enter.contains(&p.as_str()) {
                Step::Enter
            } else {
                Step::Skip
            }
        })
        .unwrap();
        out
    }

    #[test]
    fn reports_member_values_and_enters_on_request() {
        let json = r#"{"a":1,"b":{"c":"x\"y","d":[1,{"e":2}]},"f":{"g":null}}"#;
        assert_eq!(
            spans(json, &["b"]),
            [
                ("a".into(), "1".into()),
                ("b".into(), r#"{"c":"x\"y","d":[1,{"e":2}]}"#.into()),
                ("b.c".into(), r#""x\"y""#.into()),
                ("b.d".into(), r#"[1,{"e":2}]"#.into()),
                ("f".into(), r#"{"g":null}"#.into()),
            ]
        );
        let ws = "{ \"a\" : { \"b\" : -1.5e3 } }";
        assert_eq!(spans(ws, &["a"])[1], ("a.b".into(), "-1.5e3".into()));
    }

    #[test]
    fn escaped_member_names_are_unescaped() {
        let json = r#"{"a\u0041":"v"}"#;
        assert_eq!(spans(json, &[])[0].0, "aA");
        assert_eq!(string_at(br#""x\ny""#, 0..6).unwrap(), "x\ny");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "[]",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1}x",
            "{\"a\":[1}",
            "{\"a\":\"x}",
            "{\"a\":]}",
            "{\"a\":{\"b\":1}",
        ] {
            assert!(
                walk(bad.as_bytes(), &mut |_, _| Step::Enter).is_err(),
                "{bad:?}"
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(500), "]".repeat(500));
        assert!(walk(deep.as_bytes(), &mut |_, _| Step::Enter).is_err());
    }
}
