//! Where two copies of one log part ways: a backup, a replica or a monitor's mirror against
//! the live directory.
//!
//! A checkpoint held elsewhere exposes a rewritten history but, being one root, cannot say
//! where it was rewritten: the best it bounds is a range. A second copy of the leaves can: the
//! first leaf whose hash differs is exactly where the histories fork, even when each copy is
//! consistent with checkpoints signed by the same key. Both copies must have been verified
//! first (their leaf hashes recomputed from their records and checked against their signed
//! checkpoints); this module only walks the two sequences of leaf hashes side by side.

use std::fs::File;
use std::io::{BufReader, Read};

use tally_tlog::Hash;

use crate::frame::{LeafEntry, LEAF_ENTRY};
use crate::layout::DataDir;
use crate::StoreError;

/// A tenant's leaf hashes in order, read from its `leaves` file.
pub struct LeafHashes {
    path: std::path::PathBuf,
    reader: Option<BufReader<File>>,
}

impl LeafHashes {
    /// Opens `tenant`'s leaves file in `dir` (a tenant with no leaves file yields nothing).
    pub fn open(dir: &DataDir, tenant: &str) -> Result<Self, StoreError> {
        let path = dir.tenant(tenant).leaves_path();
        let reader = match File::open(&path) {
            Ok(f) => Some(BufReader::with_capacity(1 << 20, f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        Ok(LeafHashes { path, reader })
    }
}

impl Iterator for LeafHashes {
    type Item = Result<Hash, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.reader.as_mut()?;
        let mut buf = [0u8; LEAF_ENTRY];
        let mut n = 0;
        while n < LEAF_ENTRY {
            match reader.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    self.reader = None;
                    return Some(Err(StoreError::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
            }
        }
        if n < LEAF_ENTRY {
            // A partial last entry is an unsynced tail, not a leaf.
            self.reader = None;
            return None;
        }
        Some(Ok(LeafEntry::decode(&buf).hash))
    }
}

/// How two sequences of leaf hashes relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Every leaf both hold is the same: one is a prefix of the other (or they are equal).
    Consistent {
        /// Leaves in the first sequence.
        first_len: u64,
        /// Leaves in the second sequence.
        second_len: u64,
    },
    /// The sequences differ first at this leaf index: the histories fork there.
    DivergeAt(u64),
}

/// Walks two leaf-hash sequences side by side and returns where they first differ. Stops at
/// the first difference, so a fork early in a long log is found without reading the rest.
pub fn compare_leaves<E>(
    first: impl IntoIterator<Item = Result<Hash, E>>,
    second: impl IntoIterator<Item = Result<Hash, E>>,
) -> Result<Relation, E> {
    let mut first = first.into_iter();
    let mut second = second.into_iter();
    let mut index = 0u64;
    loop {
        match (first.next().transpose()?, second.next().transpose()?) {
            (Some(a), Some(b)) if a == b => index += 1,
            (Some(_), Some(_)) => return Ok(Relation::DivergeAt(index)),
            (Some(_), None) => {
                let rest = first.try_fold(0u64, |n, h| h.map(|_| n + 1))?;
                return Ok(Relation::Consistent {
                    first_len: index + 1 + rest,
                    second_len: index,
                });
            }
            (None, Some(_)) => {
                let rest = second.try_fold(0u64, |n, h| h.map(|_| n + 1))?;
                return Ok(Relation::Consistent {
                    first_len: index,
                    second_len: index + 1 + rest,
                });
            }
            (None, None) => {
                return Ok(Relation::Consistent {
                    first_len: index,
                    second_len: index,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(v: &[u8]) -> Vec<Result<Hash, ()>> {
        v.iter().map(|b| Ok([*b; 32])).collect()
    }

    #[test]
    fn names_the_first_differing_leaf() {
        assert_eq!(
            compare_leaves(hashes(&[1, 2, 3, 4]), hashes(&[1, 2, 9, 4])),
            Ok(Relation::DivergeAt(2))
        );
        assert_eq!(
            compare_leaves(hashes(&[1, 2]), hashes(&[1, 2, 3])),
            Ok(Relation::Consistent {
                first_len: 2,
                second_len: 3
            })
        );
        assert_eq!(
            compare_leaves(hashes(&[5]), hashes(&[])),
            Ok(Relation::Consistent {
                first_len: 1,
                second_len: 0
            })
        );
    }

    proptest! {
        #[test]
        fn a_fork_is_found_exactly_where_it_is(
            common in proptest::collection::vec(any::<u8>(), 0..300),
            a in proptest::collection::vec(any::<u8>(), 1..20),
            b in proptest::collection::vec(any::<u8>(), 1..20),
        ) {
            prop_assume!(a[0] != b[0]);
            let first = [common.clone(), a].concat();
            let second = [common.clone(), b].concat();
            prop_assert_eq!(
                compare_leaves(hashes(&first), hashes(&second)),
                Ok(Relation::DivergeAt(common.len() as u64))
            );
        }
    }
}
