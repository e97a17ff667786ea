//! Translation of a [`tally_query::Query`] into a tantivy query (semantics: see
//! [`EventIndex`](crate::EventIndex)).

use std::net::{IpAddr, Ipv6Addr};
use std::ops::Bound;

use tally_event::fields::FieldType;
use tally_query::{Field as QField, Query, TermKind, Value};
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, EnableScoring, Explanation, Occur, PhraseQuery,
    Query as TQuery, RangeQuery, Scorer, TermQuery, Weight,
};
use tantivy::schema::{IndexRecordOption, Term};
use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::{DocId, DocSet, Score, SeekDangerResult, SegmentReader, TERMINATED};

use super::range::AdaptiveRange;
use super::schema::{identifiers, ip_to_v6, Fields, NOT_FAST};

/// Builds the tantivy query of `query` at time `now_ms`, without its top-level time bounds:
/// the caller applies [`time_window`] itself, from the zone maps and the time column (tantivy's
/// fast-field range scans from the start of a segment each time a scorer is created, which a
/// newest-first search does once per window).
pub(crate) fn build(
    fields: &Fields,
    analyzer: &mut TextAnalyzer,
    query: &Query,
    now_ms: i64,
) -> Box<dyn TQuery> {
    let mut clauses: Vec<(Occur, Box<dyn TQuery>)> = Vec::with_capacity(query.terms.len() + 1);
    for term in &query.terms {
        if !term.negated && matches!(term.kind, TermKind::After(_) | TermKind::Before(_)) {
            continue;
        }
        let q = term_query(fields, analyzer, &term.kind, now_ms);
        if term.negated {
            clauses.push((Occur::MustNot, Box::new(SafeExclusion(q))));
        } else {
            clauses.push((Occur::Must, q));
        }
    }
    if !clauses.iter().any(|(o, _)| *o == Occur::Must) {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    if clauses.len() == 1 {
        return clauses.pop().expect("one clause").1;
    }
    Box::new(BooleanQuery::new(clauses))
}

/// The event-time window `[from, to)` every match lies in, from the query's top-level
/// (non-negated) time bounds; unbounded sides are `i64::MIN` / `i64::MAX`.
pub(crate) fn time_window(query: &Query, now_ms: i64) -> (i64, i64) {
    let (mut from, mut to) = (i64::MIN, i64::MAX);
    for term in query.terms.iter().filter(|t| !t.negated) {
        match &term.kind {
            TermKind::After(b) => from = from.max(b.resolve(now_ms)),
            TermKind::Before(b) => to = to.min(b.resolve(now_ms)),
            _ => {}
        }
    }
    (from, to)
}

fn term_query(
    fields: &Fields,
    analyzer: &mut TextAnalyzer,
    kind: &TermKind,
    now_ms: i64,
) -> Box<dyn TQuery> {
    match kind {
        TermKind::Field { field, values } => {
            let mut alternatives: Vec<Box<dyn TQuery>> = values
                .iter()
                .map(|v| value_query(fields, *field, v))
                .collect();
            match alternatives.len() {
                0 => Box::new(EmptyQuery),
                1 => alternatives.pop().expect("one alternative"),
                _ => Box::new(BooleanQuery::new(
                    alternatives
                        .into_iter()
                        .map(|q| (Occur::Should, q))
                        .collect(),
                )),
            }
        }
        TermKind::Text { text, phrase } => text_query(fields, analyzer, text, *phrase),
        TermKind::After(b) => Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_i64(fields.time, b.resolve(now_ms))),
            Bound::Unbounded,
        )),
        TermKind::Before(b) => Box::new(RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_i64(fields.time, b.resolve(now_ms))),
        )),
    }
}

fn value_query(fields: &Fields, field: QField, value: &Value) -> Box<dyn TQuery> {
    if let Value::Token(token) = value {
        return Box::new(TermQuery::new(
            Term::from_field_text(
                fields.personal,
                &super::schema::token_term(field.spec().name, token),
            ),
            IndexRecordOption::Basic,
        ));
    }
    if !field.is_string() {
        return match value {
            Value::Exact(s) => match s.parse::<IpAddr>() {
                Ok(ip) => Box::new(TermQuery::new(
                    Term::from_field_ip_addr(fields.actor_ip, ip_to_v6(ip)),
                    IndexRecordOption::Basic,
                )),
                Err(_) => Box::new(EmptyQuery),
            },
            Value::Cidr {
                network,
                prefix_len,
            } => {
                let (lo, hi) = cidr_range(*network, *prefix_len);
                Box::new(AdaptiveRange::new(
                    fields.actor_ip,
                    Bound::Included(Term::from_field_ip_addr(fields.actor_ip, lo)),
                    Bound::Included(Term::from_field_ip_addr(fields.actor_ip, hi)),
                    true,
                ))
            }
            Value::Prefix(_) | Value::Token(_) => Box::new(EmptyQuery),
        };
    }
    let Some(f) = fields.string(field) else {
        return Box::new(EmptyQuery);
    };
    match value {
        Value::Exact(s) => Box::new(TermQuery::new(
            Term::from_field_text(f, s),
            IndexRecordOption::Basic,
        )),
        Value::Prefix(p) => {
            let lower = Bound::Included(Term::from_field_text(f, p));
            let upper = match prefix_successor(p.as_bytes()) {
                Some(bytes) => {
                    let mut t = Term::from_field_text(f, "");
                    t.set_bytes(&bytes);
                    Bound::Excluded(t)
                }
                None => Bound::Unbounded,
            };
            Box::new(AdaptiveRange::new(
                f,
                lower,
                upper,
                !NOT_FAST.contains(&field),
            ))
        }
        Value::Cidr { .. } | Value::Token(_) => Box::new(EmptyQuery),
    }
}

/// The smallest byte string greater than every string starting with `prefix`; `None` when
/// there is none (empty prefix, or only 0xFF bytes, which UTF-8 never contains).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = prefix.to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xFF {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

/// First and last address of a block, in the IPv6 (IPv4-mapped) space tantivy stores.
pub(crate) fn cidr_range(network: IpAddr, prefix_len: u8) -> (Ipv6Addr, Ipv6Addr) {
    let (addr, len) = match network {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped(), u32::from(prefix_len.min(32)) + 96),
        IpAddr::V6(v6) => (v6, u32::from(prefix_len.min(128))),
    };
    let bits = u128::from(addr);
    let host_mask = if len >= 128 { 0 } else { u128::MAX >> len };
    (
        Ipv6Addr::from(bits & !host_mask),
        Ipv6Addr::from(bits | host_mask),
    )
}

/// Free text. Each word (or the phrase) holds when its tokens occur in the text field, or when
/// it equals, whole, one of the identifier fields (which the text field leaves out).
fn text_query(
    fields: &Fields,
    analyzer: &mut TextAnalyzer,
    text: &str,
    phrase: bool,
) -> Box<dyn TQuery> {
    if phrase {
        return with_identifiers(
            fields,
            text.trim(),
            tokens_query(fields, analyzer, text, true),
        );
    }
    let mut words: Vec<Box<dyn TQuery>> = text
        .split_whitespace()
        .map(|w| with_identifiers(fields, w, tokens_query(fields, analyzer, w, false)))
        .collect();
    match words.len() {
        0 => Box::new(AllQuery),
        1 => words.pop().expect("one word"),
        _ => Box::new(BooleanQuery::new(
            words.into_iter().map(|q| (Occur::Must, q)).collect(),
        )),
    }
}

/// The tokens of `text` in the text field: all of them, or as a phrase; `None` without tokens.
fn tokens_query(
    fields: &Fields,
    analyzer: &mut TextAnalyzer,
    text: &str,
    phrase: bool,
) -> Option<Box<dyn TQuery>> {
    let mut terms = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        terms.push(Term::from_field_text(fields.text, &token.text));
    }
    Some(match terms.len() {
        0 => return None,
        1 => Box::new(TermQuery::new(
            terms.pop().expect("one term"),
            IndexRecordOption::Basic,
        )),
        _ if phrase => Box::new(PhraseQuery::new(terms)),
        _ => Box::new(BooleanQuery::new(
            terms
                .into_iter()
                .map(|t| {
                    let q: Box<dyn TQuery> = Box::new(TermQuery::new(t, IndexRecordOption::Basic));
                    (Occur::Must, q)
                })
                .collect(),
        )),
    })
}

/// `tokens` OR `whole` equal to an identifier field (a UUID in any case matches `id`).
fn with_identifiers(
    fields: &Fields,
    whole: &str,
    tokens: Option<Box<dyn TQuery>>,
) -> Box<dyn TQuery> {
    // A word without tokens (only punctuation) constrains nothing.
    let Some(tokens) = tokens else {
        return Box::new(AllQuery);
    };
    let mut alternatives = vec![(Occur::Should, tokens)];
    for field in identifiers() {
        let Some(f) = fields.string(field) else {
            continue;
        };
        // Stored UUIDs are lower-case hyphenated; a word that is no UUID cannot match one.
        let value = match field.spec().ty {
            FieldType::Uuid => match uuid::Uuid::try_parse(whole) {
                Ok(id) => id.hyphenated().to_string(),
                Err(_) => continue,
            },
            _ => whole.to_owned(),
        };
        let q: Box<dyn TQuery> = Box::new(TermQuery::new(
            Term::from_field_text(f, &value),
            IndexRecordOption::Basic,
        ));
        alternatives.push((Occur::Should, q));
    }
    Box::new(BooleanQuery::new(alternatives))
}

/// Wraps the query of a negated term. tantivy's `Exclude` probes its exclusion set with
/// `seek_danger(candidate)` starting from the first candidate, even when the exclusion scorer
/// already stands past it; `PhraseScorer` asserts against that (tantivy 0.27, debug builds).
/// This scorer answers such probes itself and only ever seeks its inner scorer forward.
#[derive(Debug)]
struct SafeExclusion(Box<dyn TQuery>);

impl Clone for SafeExclusion {
    fn clone(&self) -> Self {
        SafeExclusion(self.0.box_clone())
    }
}

impl TQuery for SafeExclusion {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(SafeExclusionWeight(
            self.0.weight(enable_scoring)?,
        )))
    }
}

struct SafeExclusionWeight(Box<dyn Weight>);

impl Weight for SafeExclusionWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(SafeExclusionScorer(self.0.scorer(reader, boost)?)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

struct SafeExclusionScorer(Box<dyn Scorer>);

impl DocSet for SafeExclusionScorer {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let doc = self.0.doc();
        if doc >= target {
            doc
        } else {
            self.0.seek(target)
        }
    }

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        if target >= TERMINATED {
            return SeekDangerResult::SeekLowerBound(TERMINATED);
        }
        let doc = self.seek(target);
        if doc == target {
            SeekDangerResult::Found
        } else {
            SeekDangerResult::SeekLowerBound(doc)
        }
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }

    fn cost(&self) -> u64 {
        self.0.cost()
    }
}

impl Scorer for SafeExclusionScorer {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_ranges() {
        let (lo, hi) = cidr_range("203.0.113.7".parse().unwrap(), 24);
        assert_eq!(lo, "::ffff:203.0.113.0".parse::<Ipv6Addr>().unwrap());
        assert_eq!(hi, "::ffff:203.0.113.255".parse::<Ipv6Addr>().unwrap());
        let (lo, hi) = cidr_range("2001:db8::".parse().unwrap(), 32);
        assert_eq!(lo, "2001:db8::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            hi,
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        let (lo, hi) = cidr_range("10.1.2.3".parse().unwrap(), 32);
        assert_eq!(lo, hi);
        let (lo, hi) = cidr_range("::".parse().unwrap(), 0);
        assert_eq!((u128::from(lo), u128::from(hi)), (0, u128::MAX));
        let (lo, hi) = cidr_range("0.0.0.0".parse().unwrap(), 0);
        assert_eq!(lo, "::ffff:0.0.0.0".parse::<Ipv6Addr>().unwrap());
        assert_eq!(hi, "::ffff:255.255.255.255".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn prefix_successors() {
        assert_eq!(prefix_successor(b"user."), Some(b"user/".to_vec()));
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(&[b'a', 0xFF]), Some(vec![b'b']));
    }
}
