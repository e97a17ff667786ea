//! Offline verification of an export: every record is in the log (one multiproof against the
//! signed checkpoint the bundle carries) and, for an unfiltered range, none is missing.

use tally_tlog::note::NoteVerifier;
use tally_tlog::{Checkpoint, Hash};

use crate::bundle::{End, Header, IndexRange, FORMAT_VERSION};

/// Why an export does not verify. Messages name the row (1-based, in file order) and leaf
/// index where it applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The file cannot be read or written.
    #[error("{0}")]
    Io(String),
    /// The bundle is not in a format or version this verifier knows.
    #[error("not a Tally export bundle: {0}")]
    Format(String),
    /// The checkpoint's signature does not verify with the given key, or its text is not a
    /// checkpoint.
    #[error("the bundle's checkpoint does not verify with this log key: {0}")]
    Checkpoint(String),
    /// The checkpoint is another tenant's than the header says.
    #[error("the checkpoint is for {origin:?}, not for tenant {tenant:?}")]
    WrongTenant {
        /// Origin line of the checkpoint.
        origin: String,
        /// Tenant named by the header.
        tenant: String,
    },
    /// The header's range is not inside the checkpoint's tree.
    #[error("range [{from}, {to}) is not inside the checkpoint's tree of {size} records")]
    BadRange {
        /// Range start.
        from: u64,
        /// Range end.
        to: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// A record row is malformed, out of order, outside the range or of another tenant.
    #[error("row {row} (leaf index {index}): {message}")]
    Record {
        /// 1-based row.
        row: u64,
        /// Leaf index the row claims.
        index: u64,
        /// What is wrong.
        message: String,
    },
    /// The end line is missing: the export was cut short.
    #[error("the bundle has no end line: the export was cut short, do not trust it")]
    Truncated,
    /// The end line's row count differs from the rows read.
    #[error("the bundle says {claimed} rows but holds {found}")]
    RowCount {
        /// Rows the end line claims.
        claimed: u64,
        /// Rows read.
        found: u64,
    },
    /// An unfiltered range lacks records.
    #[error("the export claims to be complete for [{from}, {to}) but holds {found} of its {expected} records")]
    Incomplete {
        /// Range start.
        from: u64,
        /// Range end.
        to: u64,
        /// Records the range has.
        expected: u64,
        /// Records found.
        found: u64,
    },
    /// The records are not all in the checkpoint's tree.
    #[error("the records are not all in the signed tree: {0}")]
    Proof(String),
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The tenant.
    pub tenant: String,
    /// Records checked.
    pub rows: u64,
    /// The checkpoint's tree size.
    pub size: u64,
    /// The checkpoint's root.
    pub root: Hash,
    /// The query the exporter says it applied ("" for none).
    pub query: String,
    /// The range looked at.
    pub range: IndexRange,
    /// True when the range was unfiltered and every one of its records was present.
    pub complete: bool,
}

/// Checks a bundle as it is read: [`new`](Self::new) with the header, [`record`](Self::record)
/// per row, [`finish`](Self::finish) with the end line. Memory: 40 bytes per row.
pub struct BundleVerifier {
    header: Header,
    checkpoint: Checkpoint,
    leaves: Vec<(u64, Hash)>,
}

impl BundleVerifier {
    /// Opens the header's checkpoint with the log's key and checks the header against it.
    pub fn new(header: Header, key: &NoteVerifier) -> Result<Self, BundleError> {
        if header.version != FORMAT_VERSION {
            return Err(BundleError::Format(format!(
                "bundle version {} (this verifier reads version {FORMAT_VERSION})",
                header.version
            )));
        }
        let opened = tally_tlog::open(&header.checkpoint, std::slice::from_ref(key))
            .map_err(|e| BundleError::Checkpoint(e.to_string()))?;
        let checkpoint =
            Checkpoint::parse(&opened.text).map_err(|e| BundleError::Checkpoint(e.to_string()))?;
        if checkpoint.origin.rsplit('/').next() != Some(header.tenant.as_str()) {
            return Err(BundleError::WrongTenant {
                origin: checkpoint.origin,
                tenant: header.tenant,
            });
        }
        let IndexRange { from, to } = header.range;
        if from > to || to > checkpoint.size {
            return Err(BundleError::BadRange {
                from,
                to,
                size: checkpoint.size,
            });
        }
        Ok(BundleVerifier {
            header,
            checkpoint,
            leaves: Vec::new(),
        })
    }

    /// The header being verified.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Checks one row: in order, in range, a record of this tenant; remembers its leaf hash.
    pub fn record(&mut self, index: u64, record: &[u8]) -> Result<(), BundleError> {
        let row = self.leaves.len() as u64 + 1;
        let fail = |message: String| BundleError::Record {
            row,
            index,
            message,
        };
        let IndexRange { from, to } = self.header.range;
        if index < from || index >= to {
            return Err(fail(format!("outside the exported range [{from}, {to})")));
        }
        if let Some(&(last, _)) = self.leaves.last() {
            if index <= last {
                return Err(fail(format!(
                    "leaf indexes must increase (previous row was {last})"
                )));
            }
        }
        let parsed = tally_event::Record::parse(record)
            .map_err(|e| fail(format!("not a stored record: {e}")))?;
        if parsed.tenant != self.header.tenant {
            return Err(fail(format!(
                "a record of tenant {:?} in an export of {:?}",
                parsed.tenant, self.header.tenant
            )));
        }
        self.leaves.push((index, tally_tlog::leaf_hash(record)));
        Ok(())
    }

    /// Rows checked so far.
    pub fn rows(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Checks the row count, completeness (unfiltered ranges) and the multiproof.
    pub fn finish(self, end: &End) -> Result<Verified, BundleError> {
        let found = self.leaves.len() as u64;
        if end.rows != found {
            return Err(BundleError::RowCount {
                claimed: end.rows,
                found,
            });
        }
        let IndexRange { from, to } = self.header.range;
        if self.header.complete && found != to - from {
            // Rows are strictly increasing and inside the range, so the count decides.
            return Err(BundleError::Incomplete {
                from,
                to,
                expected: to - from,
                found,
            });
        }
        let proof = end
            .proof
            .iter()
            .map(|n| {
                n.to_range_hash().ok_or_else(|| {
                    BundleError::Proof(format!(
                        "hash of [{}, {}) is not 32 bytes of base64",
                        n.start, n.end
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        tally_tlog::verify_multi_inclusion(
            &self.leaves,
            self.checkpoint.size,
            &proof,
            &self.checkpoint.root,
        )
        .map_err(|e| BundleError::Proof(e.to_string()))?;
        Ok(Verified {
            tenant: self.header.tenant,
            rows: found,
            size: self.checkpoint.size,
            root: self.checkpoint.root,
            query: self.header.query,
            range: self.header.range,
            complete: self.header.complete,
        })
    }
}
