//! A range query that picks, per segment, the cheaper of tantivy's two range strategies.
//!
//! tantivy's `RangeQuery` always scans the fast column when the field has one: lazy and cheap
//! per document, but it visits every document of the scanned doc range, which is slow for a
//! selective range (an IP block, a rare prefix) over millions of events. The inverted index
//! instead visits only the matching documents but collects them all up front. This query
//! counts the matching documents in the term dictionary first (stopping at a cap) and takes the
//! inverted index below the cap, the fast column above it.

use std::ops::Bound;

use tantivy::postings::TermInfo;
use tantivy::query::{
    BitSetDocSet, ConstScorer, EnableScoring, Explanation, FastFieldRangeWeight, Query, Scorer,
    Weight,
};
use tantivy::schema::{Field, IndexRecordOption, Term};
use tantivy::{BitSet, DocId, DocSet, Score, SegmentReader, TantivyError};

/// Terms of `field` within `[lo, hi]` (as bounded).
#[derive(Clone, Debug)]
pub(crate) struct AdaptiveRange {
    field: Field,
    lo: Bound<Term>,
    hi: Bound<Term>,
    /// Whether the field has a fast column to fall back to.
    fast: bool,
}

impl AdaptiveRange {
    pub(crate) fn new(field: Field, lo: Bound<Term>, hi: Bound<Term>, fast: bool) -> Self {
        AdaptiveRange {
            field,
            lo,
            hi,
            fast,
        }
    }
}

impl Query for AdaptiveRange {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for AdaptiveRange {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let max_doc = reader.max_doc();
        // Collecting up to 1/32 of the segment into a bitset costs about what scanning the
        // column costs; beyond that the lazy scan wins (and can stop early).
        let cap = if self.fast {
            u64::from((max_doc / 32).max(4096))
        } else {
            u64::MAX
        };
        let inverted = reader.inverted_index(self.field)?;
        let mut builder = inverted.terms().range().without_keys();
        builder = match &self.lo {
            Bound::Included(t) => builder.ge(t.serialized_value_bytes()),
            Bound::Excluded(t) => builder.gt(t.serialized_value_bytes()),
            Bound::Unbounded => builder,
        };
        builder = match &self.hi {
            Bound::Included(t) => builder.le(t.serialized_value_bytes()),
            Bound::Excluded(t) => builder.lt(t.serialized_value_bytes()),
            Bound::Unbounded => builder,
        };
        let mut terms = builder.into_stream()?;
        let mut infos: Vec<TermInfo> = Vec::new();
        let mut docs = 0u64;
        while terms.advance() {
            let info = terms.value();
            docs += u64::from(info.doc_freq);
            if docs > cap {
                let bounds = tantivy::query::BoundsRange::new(self.lo.clone(), self.hi.clone());
                return FastFieldRangeWeight::new(bounds).scorer(reader, boost);
            }
            infos.push(info.clone());
        }
        let mut bitset = BitSet::with_max_value(max_doc.max(1));
        for info in &infos {
            let mut postings =
                inverted.read_block_postings_from_terminfo(info, IndexRecordOption::Basic)?;
            loop {
                let block = postings.docs();
                if block.is_empty() {
                    break;
                }
                for &doc in block {
                    bitset.insert(doc);
                }
                postings.advance();
            }
        }
        Ok(Box::new(ConstScorer::new(
            BitSetDocSet::from(bitset),
            boost,
        )))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.doc() > doc || scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        Ok(Explanation::new("AdaptiveRange", 1.0))
    }
}
