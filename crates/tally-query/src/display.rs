//! Rendering a [`Query`] back to canonical query text.
//!
//! For every query [`parse`](crate::parse) returns, `parse(&q.to_string())` gives back `q`
//! with its spans moved to the canonical text (see [`Query::with_canonical_spans`]); a query
//! already in canonical form (as `parse(&q.to_string())` returns it) comes back unchanged.
//! Hand-built queries round-trip too as long as they hold only what the parser can produce
//! (non-empty values, normalised as the parser normalises them); anything else is rendered as
//! closely as the syntax allows.

use std::fmt::{self, Display, Formatter, Write as _};
use std::net::IpAddr;

use time::OffsetDateTime;

use crate::ast::{Field, Query, Span, Term, TermKind, TimeBound, Value};
use crate::parse::{quote, MAX_TIME_MS, MIN_TIME_MS};

impl Display for Query {
    /// The terms in canonical form, separated by single spaces; empty for the empty query.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            Display::fmt(term, f)?;
        }
        Ok(())
    }
}

impl Query {
    /// The same query with every term's span set to where the term is in the canonical
    /// text, `self.to_string()`.
    pub fn with_canonical_spans(mut self) -> Query {
        let mut offset = 0;
        for term in &mut self.terms {
            let len = term.to_string().len();
            term.span = Span {
                start: offset,
                end: offset + len,
            };
            offset += len + 1;
        }
        self
    }
}

impl Display for Term {
    /// `-` when negated, then the term's kind.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_char('-')?;
        }
        Display::fmt(&self.kind, f)
    }
}

impl Display for TermKind {
    /// `field:v1,v2`, `after:…`, `before:…`, a bare word, or a quoted phrase. A word that
    /// cannot be written bare (it contains whitespace, `"` or `:`, or starts with `-`) is
    /// quoted, which makes it a phrase when parsed.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            TermKind::Field { field, values } => {
                write!(f, "{field}:")?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    Display::fmt(value, f)?;
                }
                Ok(())
            }
            TermKind::Text { text, phrase } => {
                if !phrase && is_bare_word(text) {
                    f.write_str(text)
                } else {
                    f.write_str(&quote(text))
                }
            }
            TermKind::After(bound) => write!(f, "after:{bound}"),
            TermKind::Before(bound) => write!(f, "before:{bound}"),
        }
    }
}

impl Display for Field {
    /// The canonical name ([`Field::name`]).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Display for Value {
    /// `text` (quoted when it is empty or contains whitespace, `,`, `"` or `*`), `text*` (a
    /// prefix; `"text"*` when the text needs quotes), or `address` / `network/len` (the
    /// length is left out for a single address).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Value::Exact(text) | Value::Token(text) => write_value(f, text),
            Value::Prefix(text) => {
                write_value(f, text)?;
                f.write_char('*')
            }
            Value::Cidr {
                network,
                prefix_len,
            } => {
                let full = match network {
                    IpAddr::V4(_) => 32,
                    IpAddr::V6(_) => 128,
                };
                if *prefix_len == full {
                    write!(f, "{network}")
                } else {
                    write!(f, "{network}/{prefix_len}")
                }
            }
        }
    }
}

impl Display for TimeBound {
    /// An instant as `YYYY-MM-DD` when it is midnight UTC, else as
    /// `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (clamped to years 0000–9999); a relative time in the
    /// largest of w, d, h, m that divides it exactly (rounded up to whole minutes).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match *self {
            TimeBound::At(ms) => {
                let ms = ms.clamp(MIN_TIME_MS, MAX_TIME_MS);
                let Ok(dt) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                else {
                    return f.write_str("0000-01-01");
                };
                write!(
                    f,
                    "{:04}-{:02}-{:02}",
                    dt.year(),
                    u8::from(dt.month()),
                    dt.day()
                )?;
                let (h, m, s, milli) = (dt.hour(), dt.minute(), dt.second(), dt.millisecond());
                if (h, m, s, milli) == (0, 0, 0, 0) {
                    return Ok(());
                }
                write!(f, "T{h:02}:{m:02}:{s:02}")?;
                if milli != 0 {
                    write!(f, ".{milli:03}")?;
                }
                f.write_char('Z')
            }
            TimeBound::Ago(ms) => {
                const UNITS: [(i64, char); 4] = [
                    (7 * 86_400_000, 'w'),
                    (86_400_000, 'd'),
                    (3_600_000, 'h'),
                    (60_000, 'm'),
                ];
                if ms > 0 {
                    if let Some(&(unit, name)) = UNITS.iter().find(|(unit, _)| ms % unit == 0) {
                        return write!(f, "{}{name}", ms / unit);
                    }
                }
                let minutes = ms.max(1).div_euclid(60_000) + i64::from(ms.max(1) % 60_000 != 0);
                write!(f, "{minutes}m")
            }
        }
    }
}

/// Whether a free-text word can be written without quotes and still parse as that word.
fn is_bare_word(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('-')
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == ':')
}

/// A field value's text, bare when it parses back as itself, else quoted.
fn write_value(f: &mut Formatter<'_>, text: &str) -> fmt::Result {
    let bare = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ',' | '"' | '*'));
    if bare {
        f.write_str(text)
    } else {
        f.write_str(&quote(text))
    }
}
