//! The persisted tree state (`tenants/<tenant>/tree-state`): the tile-boundary levels of a
//! tenant's tree at the size of a signed checkpoint, so that start-up replays only the leaves
//! after it instead of the whole `leaves` file.
//!
//! ```text
//! "tally-tree-state 1\n"            19 bytes
//! size:   u64 LE                    a size some signed checkpoint had
//! root:   [u8; 32]                  the tree's root at `size`
//! levels: u32 LE                    number of levels k = 0, 1, … with size >> 8(k+1) > 0
//! per level k: size >> 8(k+1) hashes of 32 bytes (the tlog-tiles level k+1 hashes)
//! crc:    u32 LE                    CRC-32C of everything before it
//! ```
//!
//! Derived data, written by the checkpointer (atomically: temporary file, fsync, rename,
//! fsync of the directory) and never trusted as is: [`TreeState::check`] requires every level
//! to fold into the next and, with the leaf entries of the last partial tiles, into the stored
//! root; recovery then replays the leaves after it and requires the root at the last signed
//! checkpoint's size to be the signed one. Anything else and recovery replays the whole
//! `leaves` file, as a log without this file does.

use tally_tlog::{Frontier, Hash, NodeSource};

/// The first bytes of the file.
const MAGIC: &[u8] = b"tally-tree-state 1\n";

/// The tile-boundary levels of a tree at some size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeState {
    pub(crate) size: u64,
    pub(crate) root: Hash,
    /// `upper[k]`: the hashes of tlog-tiles level `k + 1` (tree level `8 (k + 1)`).
    pub(crate) upper: Vec<Vec<Hash>>,
}

/// How many hashes level `k` of `upper` has at `size`.
pub(crate) fn level_len(size: u64, k: usize) -> u64 {
    let shift = 8 * (k as u32 + 1);
    if shift >= 64 {
        0
    } else {
        size >> shift
    }
}

impl TreeState {
    /// The file's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let hashes: usize = self.upper.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 48 + 32 * hashes);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&(self.upper.len() as u32).to_le_bytes());
        for level in &self.upper {
            for h in level {
                out.extend_from_slice(h);
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the file's bytes: magic, checksum and level lengths (not yet the hashes).
    pub(crate) fn decode(bytes: &[u8]) -> Result<TreeState, String> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or("shorter than its checksum")?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("checksum mismatch".into());
        }
        let rest = body.strip_prefix(MAGIC).ok_or("not a tree-state file")?;
        if rest.len() < 44 {
            return Err("truncated header".into());
        }
        let size = u64::from_le_bytes(rest[0..8].try_into().expect("8 bytes"));
        let root: Hash = rest[8..40].try_into().expect("32 bytes");
        let levels = u32::from_le_bytes(rest[40..44].try_into().expect("4 bytes")) as usize;
        let expected_levels = (0..8).take_while(|&k| level_len(size, k) > 0).count();
        if levels != expected_levels {
            return Err(format!(
                "{levels} levels for a tree of size {size} (expected {expected_levels})"
            ));
        }
        let mut hashes = &rest[44..];
        let mut upper = Vec::with_capacity(levels);
        for k in 0..levels {
            let n = level_len(size, k) as usize;
            if hashes.len() < 32 * n {
                return Err(format!("level {k} is truncated"));
            }
            let (level, more) = hashes.split_at(32 * n);
            upper.push(
                level
                    .chunks_exact(32)
                    .map(|h| h.try_into().expect("32 bytes"))
                    .collect(),
            );
            hashes = more;
        }
        if !hashes.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(TreeState { size, root, upper })
    }

    /// Checks that the levels are one tree whose root at `size` is `root`: each level folds
    /// (256 hashes at a time) into the next, and the frontier built from the levels and the
    /// leaf hashes `leaves` serves (the last partial tiles) has the stored root. Then every
    /// stored hash is bound to the root, which recovery compares with a signed checkpoint.
    pub(crate) fn check<S: NodeSource>(&self, leaves: &S) -> Result<Frontier, String>
    where
        S::Error: std::fmt::Display,
    {
        for k in 1..self.upper.len() {
            for (j, parent) in self.upper[k].iter().enumerate() {
                let children = &self.upper[k - 1][256 * j..256 * (j + 1)];
                if fold(children) != *parent {
                    return Err(format!(
                        "level {k} hash {j} does not fold from level {}",
                        k - 1
                    ));
                }
            }
        }
        let nodes = StateNodes {
            upper: &self.upper,
            leaves,
        };
        let frontier =
            Frontier::from_source(self.size, &nodes).map_err(|e| format!("frontier: {e}"))?;
        if frontier.root() != self.root {
            return Err("its levels do not fold into its root".into());
        }
        Ok(frontier)
    }
}

/// The root of a complete subtree of `hashes` (a power of two of them).
fn fold(hashes: &[Hash]) -> Hash {
    let mut level = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| tally_tlog::node_hash(&p[0], &p[1]))
            .collect();
    }
    level[0]
}

/// Complete subtrees from the stored levels, or from leaf hashes below level 8.
struct StateNodes<'a, S> {
    upper: &'a [Vec<Hash>],
    leaves: &'a S,
}

impl<S: NodeSource> NodeSource for StateNodes<'_, S>
where
    S::Error: std::fmt::Display,
{
    type Error = String;

    fn node(&self, level: u8, index: u64) -> Result<Hash, String> {
        let height = tally_tlog::tile::TILE_HEIGHT;
        if level < height {
            return self.leaves.node(level, index).map_err(|e| e.to_string());
        }
        let base = level - level % height;
        let rise = u32::from(level - base);
        let k = usize::from(base / height) - 1;
        let first = (index << rise) as usize;
        let hashes = self
            .upper
            .get(k)
            .and_then(|l| l.get(first..first + (1usize << rise)))
            .ok_or_else(|| format!("node {level}/{index} is not in the stored levels"))?;
        Ok(fold(hashes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Leaves(Vec<Hash>);
    impl NodeSource for Leaves {
        type Error = String;
        fn node(&self, level: u8, index: u64) -> Result<Hash, String> {
            let n = 1usize << level;
            let first = index as usize * n;
            Ok(fold(&self.0[first..first + n]))
        }
    }

    fn state(size: u64) -> (TreeState, Leaves) {
        let leaves: Vec<Hash> = (0..size)
            .map(|i| tally_tlog::leaf_hash(&i.to_le_bytes()))
            .collect();
        let mut frontier = Frontier::new();
        let mut upper = Vec::new();
        for h in &leaves {
            crate::tenant::push_leaf(&mut frontier, &mut upper, *h);
        }
        (
            TreeState {
                size,
                root: frontier.root(),
                upper,
            },
            Leaves(leaves),
        )
    }

    #[test]
    fn round_trips_and_checks() {
        for size in [0, 1, 255, 256, 257, 65_535, 65_536, 70_001] {
            let (s, leaves) = state(size);
            let back = TreeState::decode(&s.encode()).unwrap();
            assert_eq!(back, s);
            let frontier = back.check(&leaves).unwrap();
            assert_eq!(frontier.size(), size);
            assert_eq!(frontier.root(), s.root);
        }
    }

    #[test]
    fn any_changed_hash_is_refused() {
        let (s, leaves) = state(70_001);
        for (k, level) in s.upper.iter().enumerate() {
            for j in [0, level.len() / 2, level.len() - 1] {
                let mut bad = s.clone();
                bad.upper[k][j][3] ^= 1;
                assert!(bad.check(&leaves).is_err(), "level {k} hash {j}");
                // Re-encoded (valid checksum) it still fails the check.
                let decoded = TreeState::decode(&bad.encode()).unwrap();
                assert!(decoded.check(&leaves).is_err());
            }
        }
        let mut bad = s.encode();
        bad[40] ^= 1;
        assert!(TreeState::decode(&bad).is_err());
        assert!(TreeState::decode(&s.encode()[..100]).is_err());
    }
}
