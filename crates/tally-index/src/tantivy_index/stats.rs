//! Counting matches, grouped by a field's value and/or a time bucket, from the fast columns.
//!
//! Per segment the group keys are column-local (term ordinals, addresses); they become strings
//! once per distinct key when the segments' counts are merged.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::sync::Arc;

use tantivy::columnar::{Column, StrColumn};
use tantivy::index::InvertedIndexReader;
use tantivy::query::Weight;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, Searcher, SegmentReader};

use super::schema::{field_name, ip_display, string_field_name, NOT_FAST, TIME};
use super::search::{segment_info, Filter, SegmentInfos};
use crate::{StatsBucket, StatsRequest, StatsResult};

/// A group before it is ordered: key (missing field = `None`) and bucket start.
type Group = (Option<String>, Option<i64>);

pub(crate) fn stats(
    searcher: &Searcher,
    weight: &dyn Weight,
    time: (i64, i64),
    req: &StatsRequest,
    infos: &SegmentInfos,
) -> tantivy::Result<StatsResult> {
    if let Some(i) = req.interval_ms {
        if i <= 0 {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "interval must be positive, got {i} ms"
            )));
        }
    }
    let mut total = 0u64;
    let mut groups: HashMap<Group, u64> = HashMap::new();
    for reader in searcher.segment_readers() {
        if reader.num_docs() == 0 || time.0 >= time.1 {
            continue;
        }
        let docs = segment_info(infos, reader)?.doc_range(time.0, time.1, reader.max_doc());
        if docs.0 >= docs.1 {
            continue;
        }
        let filter = Filter::new(reader, time)?;
        if req.by.is_none()
            && req.interval_ms.is_none()
            && docs == (0, reader.max_doc())
            && filter.is_empty()
        {
            total += u64::from(weight.count(reader)?);
            continue;
        }
        total += segment(reader, weight, &filter, docs, req, &mut groups)?;
    }
    Ok(StatsResult {
        total,
        buckets: order_groups(groups, req),
    })
}

enum KeyColumn {
    None,
    Str(StrColumn),
    Ip(Column<Ipv6Addr>),
    /// A field without a fast column: each doc's term ordinal (`u32::MAX`: none), read from
    /// the inverted index, which also turns ordinals back into terms.
    Terms(Vec<u32>, Arc<InvertedIndexReader>),
}

/// Doc → term ordinal of a field without a fast column: one pass over its term dictionary
/// and postings (time linear in the segment, whatever the query matches).
fn term_ordinals(reader: &SegmentReader, field: Field) -> tantivy::Result<KeyColumn> {
    let inverted = reader.inverted_index(field)?;
    let mut ords = vec![u32::MAX; reader.max_doc() as usize];
    let mut terms = inverted.terms().stream()?;
    while terms.advance() {
        let ord = u32::try_from(terms.term_ord()).unwrap_or(u32::MAX - 1);
        let mut postings =
            inverted.read_block_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)?;
        loop {
            let docs = postings.docs();
            if docs.is_empty() {
                break;
            }
            for &doc in docs {
                if let Some(slot) = ords.get_mut(doc as usize) {
                    *slot = ord;
                }
            }
            postings.advance();
        }
    }
    Ok(KeyColumn::Terms(ords, inverted))
}

/// Adds one segment's groups; returns its number of matches.
fn segment(
    reader: &SegmentReader,
    weight: &dyn Weight,
    filter: &Filter<'_>,
    docs: (DocId, DocId),
    req: &StatsRequest,
    groups: &mut HashMap<Group, u64>,
) -> tantivy::Result<u64> {
    if req.by.is_none() && req.interval_ms.is_none() {
        let mut count = 0u64;
        for_each_in(reader, weight, docs, &mut |block| {
            count += block.iter().filter(|&&d| filter.keeps(d)).count() as u64;
        })?;
        return Ok(count);
    }
    let key_column = match req.by {
        None => KeyColumn::None,
        Some(f) if !f.is_string() => {
            match reader
                .fast_fields()
                .column_opt::<Ipv6Addr>(&field_name(f.spec()))?
            {
                Some(c) => KeyColumn::Ip(c),
                None => KeyColumn::None,
            }
        }
        Some(f) if NOT_FAST.contains(&f) => {
            let field = reader
                .schema()
                .get_field(&string_field_name(f).expect("a string field"))?;
            term_ordinals(reader, field)?
        }
        Some(f) => {
            let name = string_field_name(f).expect("every field but the address is a string");
            match reader.fast_fields().str(&name)? {
                Some(c) => KeyColumn::Str(c),
                None => KeyColumn::None,
            }
        }
    };
    let time = match req.interval_ms {
        Some(_) => Some(reader.fast_fields().i64(TIME)?),
        None => None,
    };
    let interval = req.interval_ms.unwrap_or(1);

    // Column-local key: term ordinal or address bits; `None` = field missing.
    let mut local: HashMap<(Option<u128>, Option<i64>), u64> = HashMap::new();
    let mut matches = 0u64;
    let mut live: Vec<DocId> = Vec::new();
    let mut keys: Vec<Option<u128>> = Vec::new();
    let mut ords: Vec<Option<u64>> = Vec::new();
    let mut ips: Vec<Option<Ipv6Addr>> = Vec::new();
    let mut times: Vec<Option<i64>> = Vec::new();
    for_each_in(reader, weight, docs, &mut |docs: &[DocId]| {
        live.clear();
        live.extend(docs.iter().copied().filter(|&d| filter.keeps(d)));
        matches += live.len() as u64;
        keys.clear();
        match &key_column {
            KeyColumn::None => keys.resize(live.len(), None),
            KeyColumn::Str(c) => {
                ords.clear();
                ords.resize(live.len(), None);
                c.ords().first_vals(&live, &mut ords);
                keys.extend(ords.iter().map(|o| o.map(u128::from)));
            }
            KeyColumn::Ip(c) => {
                ips.clear();
                ips.resize(live.len(), None);
                c.first_vals(&live, &mut ips);
                keys.extend(ips.iter().map(|ip| ip.map(u128::from)));
            }
            KeyColumn::Terms(ords, _) => keys.extend(live.iter().map(|&d| {
                ords.get(d as usize)
                    .copied()
                    .filter(|&o| o != u32::MAX)
                    .map(u128::from)
            })),
        }
        times.clear();
        times.resize(live.len(), None);
        if let Some(t) = &time {
            t.first_vals(&live, &mut times);
        }
        for (key, t) in keys.iter().zip(&times) {
            let bucket = t.map(|t| t.div_euclid(interval).saturating_mul(interval));
            *local.entry((*key, bucket)).or_default() += 1;
        }
    })?;

    // Term ordinals → strings: one ordered pass over the dictionary when there are many
    // (a lookup by ordinal decodes a whole dictionary block each time).
    let mut wanted: Vec<u64> = local
        .keys()
        .filter_map(|(k, _)| k.map(|k| k as u64))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let names: HashMap<u64, String> = match &key_column {
        KeyColumn::Str(c) => ord_names(
            &wanted,
            c.dictionary().stream()?,
            |s| s.term_ord(),
            |s, out| out.extend_from_slice(s.key()),
            |s| s.advance(),
        ),
        KeyColumn::Terms(_, inverted) => ord_names(
            &wanted,
            inverted.terms().stream()?,
            |s| s.term_ord(),
            |s, out| out.extend_from_slice(s.key()),
            |s| s.advance(),
        ),
        KeyColumn::None | KeyColumn::Ip(_) => HashMap::new(),
    };
    for ((key, bucket), count) in local {
        let key = match (&key_column, key) {
            (_, None) | (KeyColumn::None, _) => None,
            (KeyColumn::Ip(_), Some(bits)) => Some(ip_display(Ipv6Addr::from(bits))),
            (KeyColumn::Str(_) | KeyColumn::Terms(..), Some(ord)) => {
                names.get(&(ord as u64)).cloned()
            }
        };
        *groups.entry((key, bucket)).or_default() += count;
    }
    Ok(matches)
}

/// The terms of the ordinals `wanted` (sorted), read by streaming the dictionary in order.
fn ord_names<S>(
    wanted: &[u64],
    mut stream: S,
    ord: impl Fn(&S) -> u64,
    key: impl Fn(&S, &mut Vec<u8>),
    advance: impl Fn(&mut S) -> bool,
) -> HashMap<u64, String> {
    let mut names = HashMap::with_capacity(wanted.len());
    let mut want = wanted.iter().copied().peekable();
    let mut bytes = Vec::new();
    while want.peek().is_some() && advance(&mut stream) {
        let current = ord(&stream);
        while want.peek().is_some_and(|&w| w < current) {
            want.next();
        }
        if want.peek() == Some(&current) {
            bytes.clear();
            key(&stream, &mut bytes);
            names.insert(current, String::from_utf8_lossy(&bytes).into_owned());
            want.next();
        }
    }
    names
}

/// Calls `f` with the matches of `weight` in the doc range `docs`, in blocks.
fn for_each_in(
    reader: &SegmentReader,
    weight: &dyn Weight,
    docs: (DocId, DocId),
    f: &mut dyn FnMut(&[DocId]),
) -> tantivy::Result<()> {
    if docs == (0, reader.max_doc()) {
        return weight.for_each_no_score(reader, f);
    }
    let mut scorer = weight.scorer(reader, 1.0)?;
    let mut doc = scorer.doc();
    if doc < docs.0 {
        doc = scorer.seek(docs.0);
    }
    let mut block = Vec::with_capacity(1024);
    while doc < docs.1 {
        block.push(doc);
        if block.len() == 1024 {
            f(&block);
            block.clear();
        }
        doc = scorer.advance();
    }
    if !block.is_empty() {
        f(&block);
    }
    Ok(())
}

/// Orders and limits the groups as [`EventIndex::stats`](crate::EventIndex::stats) documents.
fn order_groups(groups: HashMap<Group, u64>, req: &StatsRequest) -> Vec<StatsBucket> {
    let bucket = |(key, start_ms): Group, count| StatsBucket {
        key,
        start_ms,
        count,
    };
    match (req.by.is_some(), req.interval_ms.is_some()) {
        (false, false) => Vec::new(),
        (true, false) => {
            let mut all: Vec<(Group, u64)> = groups.into_iter().collect();
            all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            all.truncate(req.limit);
            all.into_iter().map(|(g, c)| bucket(g, c)).collect()
        }
        (false, true) => {
            let mut all: Vec<(Group, u64)> = groups.into_iter().collect();
            all.sort_by_key(|(g, _)| Reverse(g.1));
            all.truncate(req.limit);
            all.reverse();
            all.into_iter().map(|(g, c)| bucket(g, c)).collect()
        }
        (true, true) => {
            let latest: BTreeSet<i64> = {
                let starts: BTreeSet<i64> = groups.keys().filter_map(|g| g.1).collect();
                starts.into_iter().rev().take(req.limit).collect()
            };
            let mut per_key: HashMap<Option<String>, KeyTotals> = HashMap::new();
            for ((key, start), count) in groups {
                let entry = per_key.entry(key).or_default();
                entry.0 += count;
                if let Some(start) = start.filter(|s| latest.contains(s)) {
                    entry.1.push((start, count));
                }
            }
            let mut keys: Vec<(Option<String>, KeyTotals)> = per_key.into_iter().collect();
            keys.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
            keys.truncate(req.limit);
            let mut out = Vec::new();
            for (key, (_, mut buckets)) in keys {
                buckets.sort_unstable();
                out.extend(buckets.into_iter().map(|(start, count)| StatsBucket {
                    key: key.clone(),
                    start_ms: Some(start),
                    count,
                }));
            }
            out
        }
    }
}

/// A key's total count and its per-bucket counts `(bucket start ms, count)`.
type KeyTotals = (u64, Vec<(i64, u64)>);
