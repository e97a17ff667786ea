//! The parser: query text, or query parameters, to a [`Query`].
//!
//! The grammar is documented in the crate documentation. The parser works on the input as
//! `&str`, splits only at ASCII delimiters or at `char` boundaries, and never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

use crate::ast::{Field, Query, Span, Term, TermKind, TimeBound, Value};

/// The longest query text accepted, in bytes (also the longest value of one query parameter).
pub const MAX_QUERY_BYTES: usize = 4096;
/// The most terms in one query (or parameters in one [`parse_field_params`] call).
pub const MAX_TERMS: usize = 64;
/// The most comma-separated values in one term.
pub const MAX_VALUES_PER_TERM: usize = 64;

/// The outcomes an `outcome:` value may name (after upper-casing): the schema's.
pub const OUTCOMES: [&str; 4] = tally_event::Outcome::NAMES;
/// The actor types an `actor.type:` value may name (after lower-casing): the schema's.
pub const ACTOR_TYPES: [&str; 3] = tally_event::ActorType::NAMES;

/// The earliest instant a time bound may name: 0000-01-01T00:00:00Z, in Unix milliseconds.
pub const MIN_TIME_MS: i64 = -62_167_219_200_000;
/// The latest instant a time bound may name: 9999-12-31T23:59:59.999Z, in Unix milliseconds.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;

/// Why a query (or a query parameter) was rejected: where, and what was expected there.
///
/// `position` is always `span.start`. For [`parse`], positions are in the query text; for
/// [`parse_field_params`], in the offending parameter's value (and the message names the
/// parameter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// Byte offset of the first problem (a `char` boundary).
    pub position: usize,
    /// The same place as a 1-based column counted in `char`s.
    pub column: usize,
    /// What is wrong and what was expected instead.
    pub message: String,
    /// The offending text; empty (`start == end`) when something is missing at `position`.
    pub span: Span,
}

impl ParseError {
    fn new(src: &str, span: Span, message: impl Into<String>) -> ParseError {
        let mut position = span.start.min(src.len());
        while !src.is_char_boundary(position) {
            position -= 1;
        }
        let mut end = span.end.clamp(position, src.len());
        while !src.is_char_boundary(end) {
            end += 1;
        }
        ParseError {
            position,
            column: src[..position].chars().count() + 1,
            message: message.into(),
            span: Span {
                start: position,
                end,
            },
        }
    }
}

/// Parses query text into a [`Query`]; see the crate documentation for the grammar.
///
/// The empty query (or one of only whitespace) is the query with no terms, which matches
/// every event.
pub fn parse(input: &str) -> Result<Query, ParseError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(ParseError::new(
            input,
            span(MAX_QUERY_BYTES, input.len()),
            format!(
                "the query is too long ({} bytes); the limit is {MAX_QUERY_BYTES} bytes",
                input.len()
            ),
        ));
    }
    let mut p = Cursor { src: input, pos: 0 };
    let mut terms = Vec::new();
    loop {
        p.skip_whitespace();
        if p.at_end() {
            break;
        }
        if terms.len() == MAX_TERMS {
            let end = p.run_end(|c| !c.is_whitespace());
            return Err(p.error(
                span(p.pos, end),
                format!("too many terms; the limit is {MAX_TERMS} terms per query"),
            ));
        }
        terms.push(p.term()?);
    }
    Ok(Query { terms })
}

/// Parses filters given as query parameters, such as `?actor=alice&outcome=FAILURE,DENIED`.
///
/// Each `(name, value)` pair is one term, parsed exactly like `name:value` in query text
/// (same field names and aliases, case-insensitive; same values: commas, quotes, prefixes,
/// normalisation, `after`/`before`), except that the value must be a single term: whitespace
/// is allowed only inside double quotes. A name starting with `not.` negates the term
/// (`not.actor=alice` is `-actor:alice`). The full-text parameter (`q`) and paging
/// parameters are not handled here: the caller removes them (and parses `q` with
/// [`parse`]); any other name is an error.
///
/// Errors name the parameter in the message; their positions are byte offsets in that
/// parameter's value (0 with an empty span for problems with the name). The terms' spans
/// point into the query's canonical text, so `parse(&q.to_string())` gives back the same
/// query.
pub fn parse_field_params(params: &[(&str, &str)]) -> Result<Query, ParseError> {
    let mut terms = Vec::with_capacity(params.len());
    for (index, &(name, value)) in params.iter().enumerate() {
        let param_error = |src: &str, sp: Span, msg: String| {
            ParseError::new(src, sp, format!("parameter `{name}`: {msg}"))
        };
        if index == MAX_TERMS {
            return Err(param_error(
                value,
                span(0, 0),
                format!("too many parameters; the limit is {MAX_TERMS}"),
            ));
        }
        let (negated, bare_name) = match name.get(..4) {
            Some(head) if head.eq_ignore_ascii_case("not.") => (true, &name[4..]),
            _ => (false, name),
        };
        let Some(key) = Key::from_name(bare_name) else {
            return Err(param_error(
                value,
                span(0, 0),
                format!(
                    "unknown parameter{}; known parameters: {} (prefix a name with `not.` to \
                     negate it; the text query `q` is parsed separately)",
                    suggestion(bare_name),
                    known_names()
                ),
            ));
        };
        if value.len() > MAX_QUERY_BYTES {
            return Err(param_error(
                value,
                span(MAX_QUERY_BYTES, value.len()),
                format!(
                    "the value is too long ({} bytes); the limit is {MAX_QUERY_BYTES} bytes",
                    value.len()
                ),
            ));
        }
        let mut p = Cursor { src: value, pos: 0 };
        let label = format!("{name}=");
        let kind = (|| {
            if negated {
                p.check_negatable(key, bare_name, span(0, 0))?;
            }
            let values = p.value_list(&label)?;
            if !p.at_end() {
                return Err(p.error(
                    span(p.pos, p.pos),
                    "unexpected whitespace: a parameter holds one term; put values containing \
                     spaces in double quotes",
                ));
            }
            p.field_kind(key, bare_name, values)
        })()
        .map_err(|e| param_error(value, e.span, e.message))?;
        terms.push(Term {
            negated,
            kind,
            span: span(0, 0),
        });
    }
    Ok(Query { terms }.with_canonical_spans())
}

fn span(start: usize, end: usize) -> Span {
    Span { start, end }
}

/// What a name before `:` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Field(Field),
    After,
    Before,
}

impl Key {
    fn from_name(name: &str) -> Option<Key> {
        if name.eq_ignore_ascii_case("after") {
            Some(Key::After)
        } else if name.eq_ignore_ascii_case("before") {
            Some(Key::Before)
        } else {
            Field::from_name(name).map(Key::Field)
        }
    }
}

/// Every accepted name, comma-separated, for error messages.
fn known_names() -> String {
    let mut names: Vec<&str> = Field::ALL.iter().flat_map(|f| f.names()).collect();
    names.extend(["after", "before"]);
    names.join(", ")
}

/// `` `name` (did you mean `x`?)``-style text for an unknown name, with a leading space.
fn suggestion(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let best = Field::ALL
        .iter()
        .flat_map(|f| f.names())
        .chain(["after", "before"])
        .map(|known| (edit_distance(&lower, known), known))
        .min();
    match best {
        Some((d, known)) if d <= 2 && d < lower.chars().count() => {
            format!(" `{name}` (did you mean `{known}`?)")
        }
        _ => format!(" `{name}`"),
    }
}

/// Levenshtein distance in `char`s (inputs here are short: at most one query word).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A field value as written, before the field's normalisation.
#[derive(Debug)]
struct RawValue {
    /// The text, unquoted and unescaped, without the prefix `*`.
    text: String,
    /// Written `text*`.
    prefix: bool,
    /// Where it was written (quotes and `*` included).
    span: Span,
}

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn skip_whitespace(&mut self) {
        self.pos = self.run_end(char::is_whitespace);
    }

    /// Where the run of characters satisfying `keep`, starting at the cursor, ends.
    fn run_end(&self, keep: impl Fn(char) -> bool) -> usize {
        self.src[self.pos..]
            .char_indices()
            .find(|&(_, c)| !keep(c))
            .map_or(self.src.len(), |(i, _)| self.pos + i)
    }

    fn error(&self, sp: Span, message: impl Into<String>) -> ParseError {
        ParseError::new(self.src, sp, message)
    }

    /// One term, starting at a non-whitespace character; ends at whitespace or the end.
    fn term(&mut self) -> Result<Term, ParseError> {
        let start = self.pos;
        let negated = self.peek() == Some('-');
        if negated {
            self.bump();
            match self.peek() {
                None => {
                    return Err(self.error(
                        span(start, self.pos),
                        "expected a term after `-` (a lone `-` negates nothing)",
                    ))
                }
                Some(c) if c.is_whitespace() => {
                    return Err(self.error(
                        span(start, self.pos),
                        "expected a term directly after `-` (a lone `-` negates nothing; \
                         remove the space)",
                    ))
                }
                Some('-') => {
                    return Err(self.error(
                        span(self.pos, self.pos + 1),
                        "expected a term after `-`, found another `-`; to search for text \
                         starting with `-`, put it in double quotes",
                    ))
                }
                _ => {}
            }
        }
        let body = self.pos;
        let kind =
            if self.peek() == Some('"') {
                let text = self.quoted()?;
                if text.is_empty() {
                    return Err(self.error(
                        span(body, self.pos),
                        "expected text between the double quotes (an empty phrase matches nothing)",
                    ));
                }
                self.expect_term_end("after the closing `\"`")?;
                TermKind::Text { text, phrase: true }
            } else {
                let end = self.run_end(|c| !(c.is_whitespace() || c == ':' || c == '"'));
                let word = &self.src[body..end];
                self.pos = end;
                match self.peek() {
                    Some(':') => {
                        self.bump();
                        self.field_term(word, body, negated, start)?
                    }
                    Some('"') => return Err(self.error(
                        span(self.pos, self.pos + 1),
                        "unexpected `\"` inside a word; put whitespace before a quoted phrase, \
                         or quote the whole word",
                    )),
                    _ => TermKind::Text {
                        text: word.to_owned(),
                        phrase: false,
                    },
                }
            };
        Ok(Term {
            negated,
            kind,
            span: span(start, self.pos),
        })
    }

    /// After a term: whitespace or the end must follow.
    fn expect_term_end(&self, after: &str) -> Result<(), ParseError> {
        match self.peek() {
            None => Ok(()),
            Some(c) if c.is_whitespace() => Ok(()),
            Some(c) => Err(self.error(
                span(self.pos, self.pos + c.len_utf8()),
                format!("expected whitespace or the end of the query {after}, found `{c}`"),
            )),
        }
    }

    /// The rest of `name:…`, the cursor just after the `:`.
    fn field_term(
        &mut self,
        name: &str,
        name_start: usize,
        negated: bool,
        term_start: usize,
    ) -> Result<TermKind, ParseError> {
        let name_span = span(name_start, name_start + name.len());
        if name.is_empty() {
            return Err(self.error(
                span(name_start, name_start + 1),
                "expected a field name before `:`; to search for text containing `:`, put it \
                 in double quotes",
            ));
        }
        let Some(key) = Key::from_name(name) else {
            let whole = &self.src[name_start..self.run_end(|c| !c.is_whitespace())];
            return Err(self.error(
                name_span,
                format!(
                    "unknown field{}; known fields: {}; to search for text containing `:`, put \
                     it in double quotes: {}",
                    suggestion(name),
                    known_names(),
                    quote(whole)
                ),
            ));
        };
        if negated {
            self.check_negatable(key, name, span(term_start, term_start + 1))?;
        }
        let values = self.value_list(&format!("{name}:"))?;
        self.field_kind(key, name, values)
    }

    /// Time bounds cannot be negated: say what to write instead.
    fn check_negatable(&self, key: Key, name: &str, sp: Span) -> Result<(), ParseError> {
        let instead = match key {
            Key::Field(_) => return Ok(()),
            Key::After => "before",
            Key::Before => "after",
        };
        Err(self.error(
            sp,
            format!("`{name}` cannot be negated; use `{instead}` with the same value instead"),
        ))
    }

    /// The typed term from the raw values of `name` (`key`).
    fn field_kind(
        &self,
        key: Key,
        name: &str,
        values: Vec<RawValue>,
    ) -> Result<TermKind, ParseError> {
        match key {
            Key::After | Key::Before => {
                if let Some(second) = values.get(1) {
                    return Err(self.error(
                        second.span,
                        format!(
                            "`{name}` takes a single value (a date, a date-time or a relative \
                             time), not a list"
                        ),
                    ));
                }
                let value = &values[0];
                if value.prefix {
                    return Err(self.error(
                        value.span,
                        format!("`{name}` takes a time, not a prefix: remove the `*`"),
                    ));
                }
                let bound = parse_time(&value.text)
                    .map_err(|msg| self.error(value.span, format!("`{name}`: {msg}")))?;
                Ok(match key {
                    Key::After => TermKind::After(bound),
                    _ => TermKind::Before(bound),
                })
            }
            Key::Field(field) => {
                let values = values
                    .into_iter()
                    .map(|v| normalise(field, name, &v).map_err(|msg| self.error(v.span, msg)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(TermKind::Field { field, values })
            }
        }
    }

    /// `v1,v2,…` up to whitespace or the end; `label` is what the first value follows
    /// (`actor:`), for messages.
    fn value_list(&mut self, label: &str) -> Result<Vec<RawValue>, ParseError> {
        let mut values = Vec::new();
        let mut after = format!("`{label}`");
        loop {
            if values.len() == MAX_VALUES_PER_TERM {
                let end = self.run_end(|c| !(c.is_whitespace() || c == ','));
                return Err(self.error(
                    span(self.pos, end),
                    format!(
                        "too many values in one term; the limit is {MAX_VALUES_PER_TERM} \
                         comma-separated values"
                    ),
                ));
            }
            let start = self.pos;
            let value = match self.peek() {
                Some('"') => {
                    let text = self.quoted()?;
                    let prefix = self.peek() == Some('*');
                    if prefix {
                        self.bump();
                    }
                    if text.is_empty() {
                        return Err(self.error(
                            span(start, self.pos),
                            format!("expected a value between the double quotes after {after}"),
                        ));
                    }
                    RawValue {
                        text,
                        prefix,
                        span: span(start, self.pos),
                    }
                }
                Some(c) if !(c.is_whitespace() || c == ',') => {
                    let end = self.run_end(|c| !(c.is_whitespace() || c == ',' || c == '"'));
                    let run = &self.src[start..end];
                    self.pos = end;
                    let mut text = run;
                    let mut prefix = false;
                    if let Some(star) = run.find('*') {
                        if star + 1 < run.len() {
                            return Err(self.error(
                                span(start + star, start + star + 1),
                                "`*` is allowed only at the end of a value (a prefix \
                                 wildcard); to search for a literal `*`, put the value in \
                                 double quotes",
                            ));
                        }
                        if star == 0 {
                            return Err(self.error(
                                span(start, end),
                                format!(
                                    "expected text before `*` after {after} (a prefix cannot \
                                     be empty)"
                                ),
                            ));
                        }
                        text = &run[..star];
                        prefix = true;
                    }
                    RawValue {
                        text: text.to_owned(),
                        prefix,
                        span: span(start, end),
                    }
                }
                _ => {
                    return Err(self.error(
                        span(start, start),
                        format!("expected a value after {after}"),
                    ))
                }
            };
            values.push(value);
            match self.peek() {
                Some(',') => {
                    self.bump();
                    after = "`,`".to_owned();
                }
                None => return Ok(values),
                Some(c) if c.is_whitespace() => return Ok(values),
                Some('"') => {
                    return Err(self.error(
                        span(self.pos, self.pos + 1),
                        "unexpected `\"` inside a value; put the whole value in double quotes",
                    ))
                }
                Some(c) => {
                    return Err(self.error(
                        span(self.pos, self.pos + c.len_utf8()),
                        format!("expected `,`, whitespace or the end after a value, found `{c}`"),
                    ))
                }
            }
        }
    }

    /// A double-quoted string, the cursor on the opening `"`; returns the unescaped text.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        self.bump();
        let unterminated = |p: &Self| {
            p.error(
                span(open, p.src.len()),
                "unterminated quoted string: expected a closing `\"`",
            )
        };
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated(self)),
                Some('"') => return Ok(text),
                Some('\\') => {
                    let backslash = self.pos - 1;
                    match self.bump() {
                        Some(c @ ('"' | '\\')) => text.push(c),
                        None => return Err(unterminated(self)),
                        Some(c) => {
                            return Err(self.error(
                                span(backslash, self.pos),
                                format!(
                                    "unknown escape `\\{c}` in a quoted string; the only \
                                     escapes are `\\\"` and `\\\\`"
                                ),
                            ))
                        }
                    }
                }
                Some(c) => text.push(c),
            }
        }
    }
}

/// `s` in double quotes, with `"` and `\` escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The field's normalisation and validation of one value; the message on error.
fn normalise(field: Field, name: &str, raw: &RawValue) -> Result<Value, String> {
    let wrap = |text: String| {
        if raw.prefix {
            Value::Prefix(text)
        } else {
            Value::Exact(text)
        }
    };
    let shown = if raw.prefix {
        format!("{}*", raw.text)
    } else {
        raw.text.clone()
    };
    if raw.text.starts_with(tally_event::MASKING_TOKEN_PREFIX) {
        return if !field.spec().personal {
            Err(format!(
                "`{name}` holds no personal data, so it has no masking tokens (found `{shown}`)"
            ))
        } else if raw.prefix {
            Err(format!(
                "a masking token is matched whole: no `*` (found `{shown}`)"
            ))
        } else {
            Ok(Value::Token(raw.text.clone()))
        };
    }
    match field {
        Field::ActorIp => {
            if raw.prefix {
                return Err(format!(
                    "`{name}` does not take a prefix `*`; use a CIDR block such as \
                     10.0.0.0/8 or 2001:db8::/32"
                ));
            }
            parse_cidr(&raw.text).map_err(|msg| format!("`{name}`: {msg}"))
        }
        Field::Outcome => {
            let upper = raw.text.to_ascii_uppercase();
            let ok = if raw.prefix {
                OUTCOMES.iter().any(|o| o.starts_with(&upper))
            } else {
                OUTCOMES.contains(&upper.as_str())
            };
            if ok {
                Ok(wrap(upper))
            } else {
                Err(format!(
                    "`{name}` must be one of {} (found `{shown}`)",
                    OUTCOMES.join(", ")
                ))
            }
        }
        Field::ActorType => {
            let lower = raw.text.to_ascii_lowercase();
            let ok = if raw.prefix {
                ACTOR_TYPES.iter().any(|t| t.starts_with(&lower))
            } else {
                ACTOR_TYPES.contains(&lower.as_str())
            };
            if ok {
                Ok(wrap(lower))
            } else {
                Err(format!(
                    "`{name}` must be one of {} (found `{shown}`)",
                    ACTOR_TYPES.join(", ")
                ))
            }
        }
        Field::Category => {
            let upper = raw.text.to_ascii_uppercase();
            if is_category(&upper) {
                Ok(wrap(upper))
            } else {
                Err(format!(
                    "`{name}` must be a category name matching ^[A-Z][A-Z0-9_]{{0,31}}$ (a \
                     letter, then up to 31 letters, digits or `_`), such as LOGIN or \
                     VIEW_PII (found `{shown}`)"
                ))
            }
        }
        Field::Id => {
            let lower = raw.text.to_ascii_lowercase();
            let shape_ok = lower.len() <= 36
                && lower.bytes().enumerate().all(|(i, b)| match i {
                    8 | 13 | 18 | 23 => b == b'-',
                    _ => b.is_ascii_hexdigit(),
                });
            if shape_ok && (raw.prefix || lower.len() == 36) {
                Ok(wrap(lower))
            } else {
                Err(format!(
                    "`{name}` must be a UUID in hyphenated form, such as \
                     0190c3a2-7b1e-7c4d-9a2f-3e5b6c7d8e9f{} (found `{shown}`)",
                    if raw.prefix {
                        ", or the start of one followed by `*`"
                    } else {
                        ""
                    }
                ))
            }
        }
        Field::ActorId
        | Field::SessionId
        | Field::Action
        | Field::ResourceType
        | Field::ResourceId
        | Field::ResourceName
        | Field::RequestId
        | Field::TraceId
        | Field::CorrelationId
        | Field::KeyId => Ok(wrap(raw.text.clone())),
    }
}

/// `^[A-Z][A-Z0-9_]{0,31}$`
fn is_category(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// An address (a /32 or /128) or `addr/len`, host bits masked to zero.
fn parse_cidr(text: &str) -> Result<Value, String> {
    const EXPECTED: &str =
        "expected an IP address or a CIDR block, such as 203.0.113.7, 203.0.113.0/24 or \
         2001:db8::/32";
    let (addr_text, len_text) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| format!("{EXPECTED} (found `{text}`)"))?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len_text {
        None => max,
        Some(l) => {
            let len = if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) {
                l.parse::<u16>().ok()
            } else {
                None
            };
            match len {
                Some(n) if n <= u16::from(max) => n as u8,
                _ => {
                    return Err(format!(
                        "expected a prefix length from 0 to {max} after `/` for an IPv{} \
                         address (found `{l}`)",
                        if max == 32 { 4 } else { 6 }
                    ))
                }
            }
        }
    };
    let network = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    };
    Ok(Value::Cidr {
        network,
        prefix_len,
    })
}

/// A time bound's value: `YYYY-MM-DD`, RFC 3339 with zone, or `<n>m|h|d|w`.
fn parse_time(text: &str) -> Result<TimeBound, String> {
    const EXPECTED: &str = "expected a date (2026-01-31), an RFC 3339 date-time with a zone \
                            (2026-01-31T12:00:00Z) or a relative time (30m, 12h, 7d, 2w)";
    let bytes = text.as_bytes();
    // Relative: optional `-`, digits, one ASCII letter.
    if let Some((&unit, rest)) = bytes.split_last() {
        let digits = rest.strip_prefix(b"-").unwrap_or(rest);
        if unit.is_ascii_alphabetic() && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        {
            let unit_ms = match unit {
                b'm' => MINUTE_MS,
                b'h' => HOUR_MS,
                b'd' => DAY_MS,
                b'w' => WEEK_MS,
                _ => {
                    return Err(format!(
                        "unknown unit `{}` in `{text}`; expected m (minutes), h (hours), d \
                         (days) or w (weeks)",
                        unit as char
                    ))
                }
            };
            if rest.first() == Some(&b'-') {
                return Err(format!(
                    "a relative time must be positive, such as 30d (found `{text}`)"
                ));
            }
            let n = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse::<i64>().ok());
            return match n.and_then(|n| n.checked_mul(unit_ms)) {
                Some(0) => Err(format!(
                    "a relative time must be positive, such as 30d (found `{text}`)"
                )),
                Some(ms) => Ok(TimeBound::Ago(ms)),
                None => Err(format!("the relative time `{text}` is too large")),
            };
        }
    }
    // Date.
    if bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
    {
        let num = |r: std::ops::Range<usize>| -> u32 {
            bytes[r]
                .iter()
                .fold(0, |acc, b| acc * 10 + u32::from(b - b'0'))
        };
        let date = Month::try_from(num(5..7) as u8)
            .ok()
            .and_then(|m| Date::from_calendar_date(num(0..4) as i32, m, num(8..10) as u8).ok())
            .ok_or_else(|| format!("`{text}` is not a calendar date"))?;
        let ms = date.midnight().assume_utc().unix_timestamp() * 1000;
        return Ok(TimeBound::At(ms));
    }
    // RFC 3339 date-time.
    let Ok(dt) = OffsetDateTime::parse(text, &Rfc3339) else {
        return Err(format!("{EXPECTED} (found `{text}`)"));
    };
    let ms = dt.unix_timestamp_nanos().div_euclid(1_000_000);
    if !(i128::from(MIN_TIME_MS)..=i128::from(MAX_TIME_MS)).contains(&ms) {
        return Err(format!(
            "`{text}` is out of range: expected an instant from 0000-01-01T00:00:00Z to \
             9999-12-31T23:59:59.999Z"
        ));
    }
    Ok(TimeBound::At(ms as i64))
}
