//! Pages of matches ordered by leaf index, segment by segment.
//!
//! Every segment is sorted by leaf index (the index is created with `sort_by_field = index`,
//! and merges keep the order), so inside a segment doc ids and leaf indexes grow together. A
//! page is then found without visiting every match:
//!
//! - the leaf range `[lo, hi)` becomes a doc-id range by binary search on the index column;
//! - oldest first: seek the query's scorer to the first doc of the range and stop after `want`
//!   matches;
//! - newest first: scorers cannot go backwards, so scan windows of doc ids from the end of the
//!   range backwards, the first window sized from the query's estimated density, each next one
//!   four times larger, until `want` matches are found.
//!
//! Segments are visited from the one holding the newest (or oldest) index, and skipped once
//! `want` matches are found that all beat the segment's extreme index. A segment that is not
//! sorted (never expected; checked once per segment and cached) is scanned whole.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use parking_lot::Mutex;
use tantivy::columnar::{Cardinality, Column};
use tantivy::index::SegmentId;
use tantivy::query::Weight;
use tantivy::{DocId, DocSet, Searcher, SegmentReader, TERMINATED};

use super::schema::INDEX;
use crate::Order;

/// Up to `want` leaf indexes in `[lo, hi)` matching `weight`, in `order`.
pub(crate) fn page(
    searcher: &Searcher,
    weight: &dyn Weight,
    lo: u64,
    hi: u64,
    order: Order,
    want: usize,
    sorted_cache: &Mutex<HashMap<SegmentId, bool>>,
) -> tantivy::Result<Vec<u64>> {
    let mut segments = Vec::new();
    for reader in searcher.segment_readers() {
        if reader.num_docs() == 0 {
            continue;
        }
        let column = reader.fast_fields().u64(INDEX)?;
        let (min, max) = (column.min_value(), column.max_value());
        if max < lo || min >= hi {
            continue;
        }
        segments.push((reader, column, min, max));
    }
    match order {
        Order::NewestFirst => segments.sort_by_key(|s| Reverse(s.3)),
        Order::OldestFirst => segments.sort_by_key(|s| s.2),
    }
    let mut best: Vec<u64> = Vec::new();
    for (reader, column, min, max) in segments {
        if best.len() >= want {
            let worst = best[want - 1];
            let hopeless = match order {
                Order::NewestFirst => max < worst,
                Order::OldestFirst => min > worst,
            };
            if hopeless {
                break;
            }
        }
        let sorted = column.get_cardinality() == Cardinality::Full
            && {
                let id = reader.segment_id();
                let cached = sorted_cache.lock().get(&id).copied();
                match cached {
                    Some(sorted) => sorted,
                    None => {
                        let sorted = is_sorted(&column);
                        if !sorted {
                            tracing::warn!(segment = %id.short_uuid_string(), "search index segment not sorted by leaf index; scanning it whole");
                        }
                        sorted_cache.lock().insert(id, sorted);
                        sorted
                    }
                }
            };
        let found = if sorted {
            sorted_segment(reader, &column, weight, lo, hi, order, want)?
        } else {
            unsorted_segment(reader, &column, weight, lo, hi, order, want)?
        };
        best.extend(found);
        match order {
            Order::NewestFirst => best.sort_unstable_by(|a, b| b.cmp(a)),
            Order::OldestFirst => best.sort_unstable(),
        }
        best.truncate(want);
    }
    Ok(best)
}

fn is_sorted(column: &Column<u64>) -> bool {
    const CHUNK: usize = 4096;
    let n = column.values.num_vals() as usize;
    let mut buf = vec![0u64; CHUNK];
    let mut prev = None;
    let mut start = 0;
    while start < n {
        let len = CHUNK.min(n - start);
        column.values.get_range(start as u64, &mut buf[..len]);
        for &v in &buf[..len] {
            if prev.is_some_and(|p| p >= v) {
                return false;
            }
            prev = Some(v);
        }
        start += len;
    }
    true
}

/// First doc whose index is `>= value` (the column is full and sorted).
fn lower_bound(column: &Column<u64>, value: u64) -> DocId {
    let (mut a, mut b) = (0u32, column.values.num_vals());
    while a < b {
        let mid = a + (b - a) / 2;
        if column.values.get_val(mid) < value {
            a = mid + 1;
        } else {
            b = mid;
        }
    }
    a
}

fn sorted_segment(
    reader: &SegmentReader,
    column: &Column<u64>,
    weight: &dyn Weight,
    lo: u64,
    hi: u64,
    order: Order,
    want: usize,
) -> tantivy::Result<Vec<u64>> {
    let (dlo, dhi) = (lower_bound(column, lo), lower_bound(column, hi));
    let alive = reader.alive_bitset();
    let is_alive = |doc: DocId| alive.is_none_or(|a| a.is_alive(doc));
    let mut out = Vec::with_capacity(want.min(4096));
    if dlo >= dhi {
        return Ok(out);
    }
    let mut scorer = weight.scorer(reader, 1.0)?;
    match order {
        Order::OldestFirst => {
            let mut doc = scorer.doc();
            if doc < dlo {
                doc = scorer.seek(dlo);
            }
            while doc < dhi && out.len() < want {
                if is_alive(doc) {
                    out.push(column.values.get_val(doc));
                }
                doc = scorer.advance();
            }
        }
        Order::NewestFirst => {
            // Matches per doc, as the scorer estimates it (an over-estimate for conjunctions,
            // which only makes the first window too small).
            let density = (f64::from(scorer.size_hint()) / f64::from(reader.max_doc().max(1)))
                .clamp(1e-7, 1.0);
            let span = u64::from(dhi - dlo);
            let mut window = (((want as f64 / density) * 1.5).ceil() as u64)
                .max(64)
                .min(span);
            let mut end = dhi;
            let mut window_docs = Vec::new();
            let mut first = true;
            loop {
                let start = u64::from(end).saturating_sub(window).max(u64::from(dlo)) as DocId;
                if !first {
                    scorer = weight.scorer(reader, 1.0)?;
                }
                first = false;
                window_docs.clear();
                let mut doc = scorer.doc();
                if doc < start {
                    doc = scorer.seek(start);
                }
                while doc < end {
                    if is_alive(doc) {
                        window_docs.push(doc);
                    }
                    doc = scorer.advance();
                }
                for &d in window_docs.iter().rev() {
                    if out.len() >= want {
                        break;
                    }
                    out.push(column.values.get_val(d));
                }
                if out.len() >= want || start <= dlo {
                    break;
                }
                end = start;
                window = window.saturating_mul(4);
            }
        }
    }
    Ok(out)
}

fn unsorted_segment(
    reader: &SegmentReader,
    column: &Column<u64>,
    weight: &dyn Weight,
    lo: u64,
    hi: u64,
    order: Order,
    want: usize,
) -> tantivy::Result<Vec<u64>> {
    let alive = reader.alive_bitset();
    let mut scorer = weight.scorer(reader, 1.0)?;
    let mut newest: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
    let mut oldest: BinaryHeap<u64> = BinaryHeap::new();
    let mut doc = scorer.doc();
    while doc != TERMINATED {
        if alive.is_none_or(|a| a.is_alive(doc)) {
            if let Some(v) = column.first(doc).filter(|v| (lo..hi).contains(v)) {
                match order {
                    Order::NewestFirst => {
                        newest.push(Reverse(v));
                        if newest.len() > want {
                            newest.pop();
                        }
                    }
                    Order::OldestFirst => {
                        oldest.push(v);
                        if oldest.len() > want {
                            oldest.pop();
                        }
                    }
                }
            }
        }
        doc = scorer.advance();
    }
    Ok(match order {
        Order::NewestFirst => newest.into_iter().map(|Reverse(v)| v).collect(),
        Order::OldestFirst => oldest.into_vec(),
    })
}
