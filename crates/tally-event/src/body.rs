//! Parsing request bodies (one JSON object, a JSON array of objects, or NDJSON) into
//! [`EventInput`]s.
//!
//! Bodies are parsed with plain `serde_json` first. Only when that fails with a shape error is
//! the failing part parsed a second time through `serde_path_to_error`, which is what turns
//! "invalid type" into "invalid type at `actor.ip`"; valid bodies never pay for path tracking.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_path_to_error::{Path, Segment, Track};

use crate::input::{self, EventInput};

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyFormat {
    /// One JSON object, or a JSON array of objects.
    Json,
    /// Newline-delimited JSON: one object per line; blank lines are ignored.
    Ndjson,
}

impl BodyFormat {
    /// The format for a `Content-Type` header value, or `None` if it is not one Tally accepts.
    ///
    /// The media type is matched case-insensitively and parameters such as `charset` are
    /// ignored. `application/json` is [`BodyFormat::Json`]; `application/x-ndjson`,
    /// `application/ndjson`, `application/jsonl` and `application/x-jsonlines` are
    /// [`BodyFormat::Ndjson`].
    ///
    /// ```
    /// use tally_event::BodyFormat;
    /// assert_eq!(BodyFormat::from_content_type("Application/JSON; charset=utf-8"), Some(BodyFormat::Json));
    /// assert_eq!(BodyFormat::from_content_type("application/x-ndjson"), Some(BodyFormat::Ndjson));
    /// assert_eq!(BodyFormat::from_content_type("text/plain"), None);
    /// ```
    pub fn from_content_type(ct: &str) -> Option<BodyFormat> {
        let media_type = ct.split(';').next().unwrap_or_default().trim();
        let is = |name: &str| media_type.eq_ignore_ascii_case(name);
        if is("application/json") {
            Some(BodyFormat::Json)
        } else if is("application/x-ndjson")
            || is("application/ndjson")
            || is("application/jsonl")
            || is("application/x-jsonlines")
        {
            Some(BodyFormat::Ndjson)
        } else {
            None
        }
    }
}

/// Why a request body could not be turned into events. Each variant has an HTTP status
/// ([`BodyError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body holds no event (empty, only whitespace, `[]`, or only blank lines).
    #[error("the body contains no event")]
    Empty,
    /// The body holds more than `max` events; parsing stopped at the first one too many.
    #[error("the body contains more than {max} events")]
    TooManyEvents {
        /// The limit that was exceeded.
        max: usize,
    },
    /// The body is not valid JSON (or a line of NDJSON is not).
    #[error("{}syntax error at line {line} column {column}: {message}", event_prefix(*.event))]
    Syntax {
        /// Zero-based index of the event being parsed, if the error is inside one.
        event: Option<usize>,
        /// One-based line within the whole body.
        line: usize,
        /// One-based column (in bytes) within that line.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The body is JSON but an event does not have the expected shape: an unknown field, a
    /// value of the wrong type, a duplicate field.
    #[error("event {event}: field `{field}`: {message}")]
    Schema {
        /// Zero-based index of the offending event.
        event: usize,
        /// Dotted path of the field, such as `actor.ip` (array elements as `[i]`); empty when
        /// the event (or the body) itself has the wrong type.
        field: String,
        /// What is wrong, such as ``invalid type: integer `5`, expected a string``.
        message: String,
    },
}

fn event_prefix(event: Option<usize>) -> String {
    event.map(|e| format!("event {e}: ")).unwrap_or_default()
}

impl BodyError {
    /// The HTTP status this error should be answered with: 400 for an empty or syntactically
    /// invalid body, 413 for too many events, 422 for well-formed JSON of the wrong shape.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::Empty | BodyError::Syntax { .. } => 400,
            BodyError::TooManyEvents { .. } => 413,
            BodyError::Schema { .. } => 422,
        }
    }
}

/// Parses a request body into events, without validating their contents (see
/// [`validate`](crate::validate)).
///
/// At most `max_events` events are accepted; parsing stops as soon as another one starts, so
/// an oversized batch costs no more than the allowed part.
///
/// ```
/// use tally_event::{parse_body, BodyError, BodyFormat};
///
/// let body = b"{\"action\":\"a\"}\n\n{\"action\":\"b\"}\n";
/// let events = parse_body(body, BodyFormat::Ndjson, 10).unwrap();
/// assert_eq!(events[1].action.as_deref(), Some("b"));
///
/// let err = parse_body(br#"[{"actor":{"ip":5}}]"#, BodyFormat::Json, 10).unwrap_err();
/// assert_eq!(err.status(), 422);
/// assert!(matches!(err, BodyError::Schema { event: 0, ref field, .. } if field == "actor.ip"));
/// ```
pub fn parse_body(
    body: &[u8],
    format: BodyFormat,
    max_events: usize,
) -> Result<Vec<EventInput>, BodyError> {
    let events = match format {
        BodyFormat::Json => parse_json(body, max_events)?,
        BodyFormat::Ndjson => parse_ndjson(body, max_events)?,
    };
    if events.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(events)
}

fn parse_json(body: &[u8], max_events: usize) -> Result<Vec<EventInput>, BodyError> {
    if body.iter().all(|b| is_json_whitespace(*b)) {
        return Err(BodyError::Empty);
    }
    let progress = Progress::default();
    let top = TopLevel {
        progress: &progress,
        max_events,
        capacity: capacity_hint(body.len(), max_events),
    };
    // Validating UTF-8 once for the whole body lets serde_json skip validating every string it
    // reads, which is most of its work on audit events. Invalid bodies take the byte path, so
    // that the error names the position serde_json finds.
    let result = match std::str::from_utf8(body) {
        Ok(text) => deserialize_json(serde_json::Deserializer::from_str(text), top),
        Err(_) => deserialize_json(serde_json::Deserializer::from_slice(body), top),
    };
    result.map_err(|err| {
        if progress.too_many.get() {
            return BodyError::TooManyEvents { max: max_events };
        }
        let event = progress.current.get();
        if err.is_data() {
            let (field, message) =
                locate_json(body, max_events).unwrap_or_else(|| (String::new(), message_of(&err)));
            BodyError::Schema {
                event: event.unwrap_or(0),
                field,
                message,
            }
        } else {
            BodyError::Syntax {
                event,
                line: err.line(),
                column: err.column(),
                message: message_of(&err),
            }
        }
    })
}

fn deserialize_json<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    top: TopLevel<'_>,
) -> serde_json::Result<Vec<EventInput>> {
    let events = top.deserialize(&mut de)?;
    de.end()?;
    Ok(events)
}

/// Parses the body again, tracking the path, to find where a shape error is.
fn locate_json(body: &[u8], max_events: usize) -> Option<(String, String)> {
    let progress = Progress::default();
    let top = TopLevel {
        progress: &progress,
        max_events,
        capacity: 0,
    };
    let mut track = Track::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let err = top
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .err()?;
    // In an array the first segment is the event index, which `Schema::event` already holds.
    let in_array = progress.in_array.get();
    Some((dotted_path(&track.path(), in_array), message_of(&err)))
}

fn parse_ndjson(body: &[u8], max_events: usize) -> Result<Vec<EventInput>, BodyError> {
    // As for JSON bodies: validate UTF-8 once, then let serde_json trust it. Splitting valid
    // UTF-8 at '\n' (ASCII) yields valid UTF-8 lines.
    let lines: Box<dyn Iterator<Item = Line<'_>>> = match std::str::from_utf8(body) {
        Ok(text) => Box::new(text.split('\n').map(Line::Text)),
        Err(_) => Box::new(body.split(|b| *b == b'\n').map(Line::Bytes)),
    };
    let mut events = Vec::with_capacity(capacity_hint(body.len(), max_events));
    for (line_index, line) in lines.enumerate() {
        if line.bytes().iter().all(|b| is_json_whitespace(*b)) {
            continue;
        }
        let event = events.len();
        if event == max_events {
            return Err(BodyError::TooManyEvents { max: max_events });
        }
        let parsed = match line {
            Line::Text(text) => deserialize_line(serde_json::Deserializer::from_str(text)),
            Line::Bytes(bytes) => deserialize_line(serde_json::Deserializer::from_slice(bytes)),
        };
        match parsed {
            Ok(input) => events.push(input),
            Err(err) if err.is_data() => {
                let (field, message) =
                    locate_line(line.bytes()).unwrap_or_else(|| (String::new(), message_of(&err)));
                return Err(BodyError::Schema {
                    event,
                    field,
                    message,
                });
            }
            Err(err) => {
                return Err(BodyError::Syntax {
                    event: Some(event),
                    // A line holds no '\n', so serde_json's line is always 1.
                    line: line_index + err.line(),
                    column: err.column(),
                    message: message_of(&err),
                });
            }
        }
    }
    Ok(events)
}

/// One NDJSON line, known to be UTF-8 or not.
#[derive(Clone, Copy)]
enum Line<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> Line<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            Line::Text(text) => text.as_bytes(),
            Line::Bytes(bytes) => bytes,
        }
    }
}

fn deserialize_line<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> serde_json::Result<EventInput> {
    let input = input::deserialize_event(&mut de)?;
    de.end()?;
    Ok(input)
}

/// Parses an NDJSON line again, tracking the path, to find where a shape error is.
fn locate_line(line: &[u8]) -> Option<(String, String)> {
    let mut track = Track::new();
    let mut de = serde_json::Deserializer::from_slice(line);
    let err = input::deserialize_event(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .err()?;
    Some((dotted_path(&track.path(), false), message_of(&err)))
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A first guess at the number of events, so the `Vec` rarely reallocates (an `EventInput` is
/// several hundred bytes to move). A typical event is a few hundred bytes of JSON; the cap
/// keeps a huge body of huge events from reserving memory it will not use.
fn capacity_hint(body_len: usize, max_events: usize) -> usize {
    (body_len / 256 + 1).min(max_events).min(4096)
}

/// serde_json's message without its " at line L column C" suffix, which `BodyError` reports in
/// its own fields (relative to the whole body, not to one NDJSON line).
fn message_of(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match full.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => full,
    }
}

/// Renders a serde path as `actor.ip`, with sequence indexes as `[i]`. With `skip_first_index`
/// a leading index (the event's position in a batch) is left out.
pub(crate) fn dotted_path(path: &Path, skip_first_index: bool) -> String {
    let mut out = String::new();
    for (i, segment) in path.iter().enumerate() {
        match segment {
            Segment::Seq { .. } if i == 0 && skip_first_index => {}
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// Where parsing got to, shared with the serde visitors so an error can be attributed to an
/// event. `Cell` because serde hands the seeds out by value.
#[derive(Default)]
struct Progress {
    /// The event being parsed; `None` between events (where array punctuation is parsed).
    current: Cell<Option<usize>>,
    /// Set when an event beyond the limit starts; the error serde reports then is ours.
    too_many: Cell<bool>,
    /// Whether the body is an array (so error paths start with the event index).
    in_array: Cell<bool>,
}

/// Deserialises the top level of a JSON body: one event object, or an array of them.
struct TopLevel<'p> {
    progress: &'p Progress,
    max_events: usize,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Vec<EventInput>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Vec<EventInput>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audit event object or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let seed = OneEvent {
            progress: self.progress,
            index: 0,
            max_events: self.max_events,
        };
        let event = seed.deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(vec![event])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.progress.in_array.set(true);
        let mut events = Vec::with_capacity(self.capacity);
        loop {
            let seed = OneEvent {
                progress: self.progress,
                index: events.len(),
                max_events: self.max_events,
            };
            match seq.next_element_seed(seed)? {
                Some(event) => events.push(event),
                None => return Ok(events),
            }
        }
    }
}

/// Deserialises one event, recording which one is in progress.
struct OneEvent<'p> {
    progress: &'p Progress,
    index: usize,
    max_events: usize,
}

impl<'de> DeserializeSeed<'de> for OneEvent<'_> {
    type Value = EventInput;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<EventInput, D::Error> {
        if self.index >= self.max_events {
            // Stop before reading the event: the rest of the body is never parsed.
            self.progress.too_many.set(true);
            return Err(de::Error::custom("too many events"));
        }
        self.progress.current.set(Some(self.index));
        let event = input::deserialize_event(deserializer)?;
        self.progress.current.set(None);
        Ok(event)
    }
}
