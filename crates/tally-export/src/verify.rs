//! Offline verification of an export: every record is in the log (one multiproof against the
//! signed checkpoint the bundle carries) and, for an unfiltered range, none is missing.
//!
//! Only the checkpoint is signed; the rest of the header is the exporter's word. So every
//! header field the verdict ([`Verified`]) rests on is checked against something signed or
//! against the rows themselves: the tenant against the checkpoint's origin and every record,
//! the range against the checkpoint's size and every row's index, completeness against the
//! query (a query with no terms over `[from, to)` must hold all `to - from` records; a header
//! that calls such an export incomplete is refused), the row counts against the rows. What cannot be
//! checked (which query a filtered export applied) is reported as a claim, never as proven.

use tally_tlog::note::NoteVerifier;
use tally_tlog::{Checkpoint, Hash};

use crate::bundle::{End, Header, IndexRange, FORMAT_VERSION, VIEWS_FORMAT_VERSION};

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
    /// A header field is malformed or contradicts another (the header is not signed, so
    /// this is what an edit of it looks like).
    #[error("header field {field}: {message}")]
    Header {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
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
    /// The tenant (bound to the checkpoint's origin and to every record).
    pub tenant: String,
    /// Records checked: each is in the signed tree at the leaf index it claims.
    pub rows: u64,
    /// The checkpoint's tree size.
    pub size: u64,
    /// The checkpoint's root.
    pub root: Hash,
    /// The query the exporter says it applied ("" for none). Not signed: for a filtered
    /// export it is a claim, and nothing proves which records match it.
    pub query: String,
    /// The range looked at; inside the checkpoint's tree, and every row lies in it.
    pub range: IndexRange,
    /// True when the export holds every record of `range`: it was unfiltered and all
    /// `range.to - range.from` rows are present and proven. Never true for a filtered export.
    pub complete: bool,
    /// Version 2: how the exporter saw personal values (`clear` or `masked`).
    pub view: Option<String>,
    /// Personal values shown in the clear, each opened with its disclosed key and equal to
    /// the value sealed in the record hashed.
    pub opened: u64,
    /// Personal values shown as masking tokens (only their form can be checked).
    pub masked: u64,
    /// Personal values shown as erased or unavailable.
    pub erased: u64,
}

impl Verified {
    /// Whether the range is the whole signed tree, `[0, size)`.
    pub fn whole_tree(&self) -> bool {
        self.range.from == 0 && self.range.to == self.size
    }
}

/// Checks a bundle as it is read: [`new`](Self::new) with the header, [`record`](Self::record)
/// per row, [`finish`](Self::finish) with the end line. Memory: 40 bytes per row.
pub struct BundleVerifier {
    header: Header,
    checkpoint: Checkpoint,
    leaves: Vec<(u64, Hash)>,
    shown: tally_privacy::record::ShownCheck,
}

impl BundleVerifier {
    /// Opens the header's checkpoint with the log's key and checks the header against it.
    pub fn new(header: Header, key: &NoteVerifier) -> Result<Self, BundleError> {
        if !(FORMAT_VERSION..=VIEWS_FORMAT_VERSION).contains(&header.version) {
            return Err(BundleError::Format(format!(
                "bundle version {} (this verifier reads versions {FORMAT_VERSION} to \
                 {VIEWS_FORMAT_VERSION})",
                header.version
            )));
        }
        match (header.version, header.view.as_deref()) {
            (FORMAT_VERSION, None) | (VIEWS_FORMAT_VERSION, Some("clear" | "masked")) => {}
            (_, view) => {
                return Err(BundleError::Header {
                    field: "view",
                    message: format!(
                        "{view:?} in a version {} bundle (version 1 has none; version 2 says \
                         clear or masked)",
                        header.version
                    ),
                })
            }
        }
        let opened = tally_tlog::open(&header.checkpoint, std::slice::from_ref(key))
            .map_err(|e| BundleError::Checkpoint(e.to_string()))?;
        let checkpoint =
            Checkpoint::parse(&opened.text).map_err(|e| BundleError::Checkpoint(e.to_string()))?;
        if !tally_event::is_valid_tenant(&header.tenant) {
            return Err(BundleError::Header {
                field: "tenant",
                message: format!("{:?} is not a tenant name", header.tenant),
            });
        }
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
        let unfiltered = is_unfiltered(&header.query)?;
        if header.complete != unfiltered {
            return Err(BundleError::Header {
                field: "complete",
                message: if unfiltered {
                    "false, but the query is empty: an unfiltered range must hold every one of \
                     its records, so the header was altered"
                        .into()
                } else {
                    format!(
                        "true, but the export is filtered by {:?}: nothing signed can prove a \
                         filtered export complete",
                        header.query
                    )
                },
            });
        }
        Ok(BundleVerifier {
            header,
            checkpoint,
            leaves: Vec::new(),
            shown: Default::default(),
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

    /// [`record`](Self::record), then (version 2) the record as `shown` to the exporter
    /// against the record hashed, opening values shown in the clear with the event keys of
    /// `keys` (a JSON object: base64url key id to base64url event key).
    pub fn record_shown(
        &mut self,
        index: u64,
        record: &[u8],
        shown: Option<&[u8]>,
        keys: Option<&[u8]>,
    ) -> Result<(), BundleError> {
        let row = self.leaves.len() as u64 + 1;
        let fail = |message: String| BundleError::Record {
            row,
            index,
            message,
        };
        let Some(shown) = shown else {
            if keys.is_some() {
                return Err(fail("keys without the record as shown".into()));
            }
            return self.record(index, record);
        };
        if self.header.version == FORMAT_VERSION {
            return Err(fail("a record as shown in a version 1 bundle".into()));
        }
        if keys.is_some() && self.header.view.as_deref() != Some("clear") {
            return Err(fail("keys disclosed in a masked export".into()));
        }
        self.record(index, record)?;
        let keys = parse_keys(keys.unwrap_or(b"{}")).map_err(fail)?;
        let check = tally_privacy::record::check_shown(record, shown, &keys).map_err(fail)?;
        self.shown.opened += check.opened;
        self.shown.masked += check.masked;
        self.shown.erased += check.erased;
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
        // `new` made sure that `complete` is set exactly when the query is empty.
        if self.header.complete && found != to - from {
            // Rows are strictly increasing and inside the range, so the count decides.
            return Err(BundleError::Incomplete {
                from,
                to,
                expected: to - from,
                found,
            });
        }
        if let Some(expected) = self
            .header
            .expected_rows
            .filter(|&n| self.header.complete && n != to - from)
        {
            return Err(BundleError::Header {
                field: "expected_rows",
                message: format!(
                    "{expected}, but the unfiltered range [{from}, {to}) has {} records",
                    to - from
                ),
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
            view: self.header.view,
            opened: self.shown.opened as u64,
            masked: self.shown.masked as u64,
            erased: self.shown.erased as u64,
        })
    }
}

/// A record line's disclosed keys: a JSON object of base64url key id to base64url event key.
fn parse_keys(
    json: &[u8],
) -> Result<Vec<(tally_privacy::seal::KeyId, tally_privacy::seal::EventKey)>, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(json).map_err(|e| format!("keys: {e}"))?;
    map.into_iter()
        .map(|(kid, key)| {
            let kid: [u8; 16] = b64
                .decode(&kid)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("keys: {kid:?} is not a key id"))?;
            let key: [u8; 32] = b64
                .decode(&key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    format!(
                        "keys: the key of {kid:?} is not 32 bytes of base64url",
                        kid = b64.encode(kid)
                    )
                })?;
            Ok((
                tally_privacy::seal::KeyId(kid),
                tally_privacy::seal::EventKey::from_bytes(key),
            ))
        })
        .collect()
}

/// The disclosed keys of a sealed record, as a record line carries them.
pub fn keys_json(keys: &[(tally_privacy::seal::KeyId, tally_privacy::seal::EventKey)]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let map: std::collections::BTreeMap<String, String> = keys
        .iter()
        .map(|(kid, key)| (b64.encode(kid.0), b64.encode(key.as_bytes())))
        .collect();
    serde_json::to_string(&map).expect("a map of strings serializes")
}

/// Whether `query` (a header's) filters nothing: it parses to no terms. Whitespace is an empty
/// query too, so it cannot pass for a filter; a query that does not parse is refused.
fn is_unfiltered(query: &str) -> Result<bool, BundleError> {
    let parsed = tally_query::parse(query).map_err(|e| BundleError::Header {
        field: "query",
        message: format!("{query:?} is not a query: {e}"),
    })?;
    Ok(parsed.terms.is_empty())
}
