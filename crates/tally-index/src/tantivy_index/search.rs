//! Pages of matches ordered by leaf index, segment by segment.
//!
//! Every segment is sorted by leaf index (the index is created with `sort_by_field = index`,
//! and merges keep the order), so inside a segment doc ids and leaf indexes grow together. A
//! page is then found without visiting every match:
//!
//! - the leaf range `[lo, hi)` becomes a doc-id range by binary search on the index column;
//! - the query's time bounds narrow it further with the segment's *zone map* (min and max event
//!   time of every block of [`ZONE`] docs: event time roughly follows receipt order, so a time
//!   window maps to a few blocks);
//! - oldest first: seek the query's scorer to the first doc of the range and stop after `want`
//!   matches;
//! - newest first: scorers cannot go backwards, so scan windows of doc ids from the end of the
//!   range backwards, the first window sized from the query's estimated density, each next one
//!   four times larger, until `want` matches are found.
//!
//! Segments are visited from the one holding the newest (or oldest) index, and skipped once
//! `want` matches are found that all beat the segment's extreme index. A segment that is not
//! sorted (never expected; checked once per segment) is scanned whole.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tantivy::columnar::{Cardinality, Column};
use tantivy::index::SegmentId;
use tantivy::query::Weight;
use tantivy::{DocId, DocSet, Searcher, SegmentReader, TERMINATED};

use super::schema::{INDEX, TIME};
use crate::Order;

/// Docs per zone-map block.
pub(crate) const ZONE: u32 = 1024;

/// What is computed once per (immutable) segment.
pub(crate) struct SegmentInfo {
    /// The index column grows strictly with the doc id.
    sorted: bool,
    /// Min and max event time of each block of [`ZONE`] docs; empty if unknown.
    zones: Vec<(i64, i64)>,
    /// Lowest and highest leaf index in the segment.
    indexes: (u64, u64),
}

/// Cache of [`SegmentInfo`] by segment.
pub(crate) type SegmentInfos = Mutex<HashMap<SegmentId, Arc<SegmentInfo>>>;

impl SegmentInfo {
    fn build(reader: &SegmentReader) -> tantivy::Result<SegmentInfo> {
        let index = reader.fast_fields().u64(INDEX)?;
        let sorted = index.get_cardinality() == Cardinality::Full && is_sorted(&index);
        if !sorted {
            tracing::warn!(
                segment = %reader.segment_id().short_uuid_string(),
                "search index segment not sorted by leaf index; it will be scanned whole"
            );
        }
        let time = reader.fast_fields().i64(TIME)?;
        let mut zones = Vec::new();
        if time.get_cardinality() == Cardinality::Full {
            let n = time.values.num_vals();
            let mut buf = vec![0i64; ZONE as usize];
            let mut start = 0u32;
            while start < n {
                let len = ZONE.min(n - start) as usize;
                time.values.get_range(u64::from(start), &mut buf[..len]);
                let block = &buf[..len];
                let min = block.iter().copied().min().unwrap_or(i64::MIN);
                let max = block.iter().copied().max().unwrap_or(i64::MAX);
                zones.push((min, max));
                start += len as u32;
            }
        }
        Ok(SegmentInfo {
            sorted,
            zones,
            indexes: (index.min_value(), index.max_value()),
        })
    }

    /// The doc range that can hold event times in `[lo, hi)`: from the first to the last block
    /// whose times overlap it. The whole segment when the zone map is unknown.
    pub(crate) fn doc_range(&self, lo: i64, hi: i64, max_doc: DocId) -> (DocId, DocId) {
        if self.zones.is_empty() || (lo == i64::MIN && hi == i64::MAX) {
            return (0, max_doc);
        }
        let hit = |&(min, max): &(i64, i64)| max >= lo && min < hi;
        match (
            self.zones.iter().position(hit),
            self.zones.iter().rposition(hit),
        ) {
            (Some(first), Some(last)) => (
                (first as u32).saturating_mul(ZONE),
                ((last as u32 + 1).saturating_mul(ZONE)).min(max_doc),
            ),
            _ => (0, 0),
        }
    }
}

/// The segment's info, computed on first use.
pub(crate) fn segment_info(
    cache: &SegmentInfos,
    reader: &SegmentReader,
) -> tantivy::Result<Arc<SegmentInfo>> {
    let id = reader.segment_id();
    if let Some(info) = cache.lock().get(&id) {
        return Ok(info.clone());
    }
    let info = Arc::new(SegmentInfo::build(reader)?);
    cache.lock().insert(id, info.clone());
    Ok(info)
}

/// Up to `want` leaf indexes in `[lo, hi)` matching `weight`, in `order`; `time` is a bound
/// `[from, to)` on event time the query implies (used only to skip docs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn page(
    searcher: &Searcher,
    weight: &dyn Weight,
    lo: u64,
    hi: u64,
    time: (i64, i64),
    order: Order,
    want: usize,
    infos: &SegmentInfos,
) -> tantivy::Result<Vec<u64>> {
    if time.0 >= time.1 {
        return Ok(Vec::new());
    }
    let mut segments = Vec::new();
    for reader in searcher.segment_readers() {
        if reader.num_docs() == 0 {
            continue;
        }
        let info = segment_info(infos, reader)?;
        let (min, max) = info.indexes;
        if max < lo || min >= hi {
            continue;
        }
        segments.push((reader, info, min, max));
    }
    match order {
        Order::NewestFirst => segments.sort_by_key(|s| Reverse(s.3)),
        Order::OldestFirst => segments.sort_by_key(|s| s.2),
    }
    let mut best: Vec<u64> = Vec::new();
    for (reader, info, min, max) in segments {
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
        let docs = info.doc_range(time.0, time.1, reader.max_doc());
        if docs.0 >= docs.1 {
            continue;
        }
        let column = reader.fast_fields().u64(INDEX)?;
        let filter = Filter::new(reader, time)?;
        let found = if info.sorted {
            sorted_segment(
                reader,
                &column,
                &filter,
                weight,
                (lo, hi),
                docs,
                order,
                want,
            )?
        } else {
            unsorted_segment(
                reader,
                &column,
                &filter,
                weight,
                (lo, hi),
                docs,
                order,
                want,
            )?
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

/// What every match must also satisfy, checked per doc: alive, and its event time within the
/// query's time window.
pub(crate) struct Filter<'a> {
    alive: Option<&'a tantivy::fastfield::AliveBitSet>,
    time: Option<(Column<i64>, i64, i64)>,
}

impl<'a> Filter<'a> {
    pub(crate) fn new(reader: &'a SegmentReader, time: (i64, i64)) -> tantivy::Result<Self> {
        let time = if time == (i64::MIN, i64::MAX) {
            None
        } else {
            Some((reader.fast_fields().i64(TIME)?, time.0, time.1))
        };
        Ok(Filter {
            alive: reader.alive_bitset(),
            time,
        })
    }

    /// Whether nothing is filtered.
    pub(crate) fn is_empty(&self) -> bool {
        self.alive.is_none() && self.time.is_none()
    }

    #[inline]
    pub(crate) fn keeps(&self, doc: DocId) -> bool {
        self.alive.is_none_or(|a| a.is_alive(doc))
            && self.time.as_ref().is_none_or(|(column, from, to)| {
                column.first(doc).is_some_and(|t| *from <= t && t < *to)
            })
    }
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

#[allow(clippy::too_many_arguments)]
fn sorted_segment(
    reader: &SegmentReader,
    column: &Column<u64>,
    filter: &Filter<'_>,
    weight: &dyn Weight,
    (lo, hi): (u64, u64),
    docs: (DocId, DocId),
    order: Order,
    want: usize,
) -> tantivy::Result<Vec<u64>> {
    let dlo = lower_bound(column, lo).max(docs.0);
    let dhi = lower_bound(column, hi).min(docs.1);
    let is_alive = |doc: DocId| filter.keeps(doc);
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
            // The first window comes from the matches per doc the scorer estimates. Estimates of
            // conjunctions and phrases assume independent words and can be far too low (a
            // window costs all its matches), so the first window is capped; after an empty
            // window the estimate is trusted, otherwise each window is four times the last.
            let density = (f64::from(scorer.size_hint()) / f64::from(reader.max_doc().max(1)))
                .clamp(1e-7, 1.0);
            let span = u64::from(dhi - dlo);
            let estimated = ((want as f64 / density) * 1.5).ceil() as u64;
            let mut window = estimated.min(want as u64 * 32).max(64).min(span);
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
                window = if window_docs.is_empty() {
                    window.saturating_mul(4).max(estimated)
                } else {
                    window.saturating_mul(4)
                };
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn unsorted_segment(
    reader: &SegmentReader,
    column: &Column<u64>,
    filter: &Filter<'_>,
    weight: &dyn Weight,
    (lo, hi): (u64, u64),
    docs: (DocId, DocId),
    order: Order,
    want: usize,
) -> tantivy::Result<Vec<u64>> {
    let mut scorer = weight.scorer(reader, 1.0)?;
    let mut newest: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
    let mut oldest: BinaryHeap<u64> = BinaryHeap::new();
    let mut doc = scorer.doc();
    if doc < docs.0 {
        doc = scorer.seek(docs.0);
    }
    while doc != TERMINATED && doc < docs.1 {
        if filter.keeps(doc) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ranges() {
        let info = SegmentInfo {
            sorted: true,
            zones: vec![(0, 10), (5, 20), (21, 30), (31, 40)],
            indexes: (0, 0),
        };
        let n = 4 * ZONE - 7;
        assert_eq!(info.doc_range(i64::MIN, i64::MAX, n), (0, n));
        assert_eq!(info.doc_range(11, 21, n), (ZONE, 2 * ZONE));
        assert_eq!(info.doc_range(11, 22, n), (ZONE, 3 * ZONE));
        assert_eq!(info.doc_range(35, i64::MAX, n), (3 * ZONE, n));
        assert_eq!(info.doc_range(41, i64::MAX, n), (0, 0));
        assert_eq!(info.doc_range(i64::MIN, 0, n), (0, 0));
        assert_eq!(info.doc_range(i64::MIN, 1, n), (0, ZONE));
        let unknown = SegmentInfo {
            sorted: true,
            zones: Vec::new(),
            indexes: (0, 0),
        };
        assert_eq!(unknown.doc_range(5, 6, n), (0, n));
    }
}
