//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): tile paths, hash tile contents and entry
//! bundles.
//!
//! A tile at level `L` and index `N` holds up to 256 hashes of tree nodes at level `8 * L`,
//! namely nodes `N * 256 ..`; a partial tile holds the first `W < 256` of them. Entry tiles
//! (`tile/entries/...`) hold the log entries themselves, in a bundle.

use std::fmt::Write as _;

use crate::tree::NodeSource;

/// Height of a tile in tree levels: a tile at level `L` holds nodes of tree level `8 * L`.
pub const TILE_HEIGHT: u8 = 8;

/// Number of hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// Highest tile level the path syntax allows.
const MAX_LEVEL: u8 = 63;

/// Identifies one tile of the log, full (`width == 256`) or partial (`1..=255`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TilePath {
    /// A hash tile: the hashes of nodes `index * 256 .. index * 256 + width` at tree level
    /// `8 * level`.
    Hashes {
        /// Tile level, `0..=63`.
        level: u8,
        /// Tile index within its level.
        index: u64,
        /// Number of hashes, `1..=256`; 256 is a full tile.
        width: u16,
    },
    /// An entry bundle: entries `index * 256 .. index * 256 + width`.
    Entries {
        /// Bundle index.
        index: u64,
        /// Number of entries, `1..=256`; 256 is a full bundle.
        width: u16,
    },
}

/// Why a string is not a canonical tile path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TilePathError {
    /// The path does not start with `tile/`.
    #[error("tile path must start with \"tile/\"")]
    MissingPrefix,
    /// The level is not a canonical decimal number in `0..=63`.
    #[error("invalid tile level {0:?}")]
    InvalidLevel(String),
    /// The index segments are missing, mis-padded, mis-prefixed or not digits.
    #[error("invalid tile index segment {0:?}")]
    InvalidIndex(String),
    /// The index has leading zero groups (such as `x000/005`).
    #[error("tile index has leading zero groups")]
    NonCanonicalIndex,
    /// The index does not fit in a u64.
    #[error("tile index overflows u64")]
    IndexOverflow,
    /// The partial width is not a canonical decimal number in `1..=255`.
    #[error("invalid partial tile width {0:?}")]
    InvalidWidth(String),
    /// Constructor called with a width outside `1..=256`.
    #[error("tile width {0} is outside 1..=256")]
    WidthOutOfRange(u16),
    /// Constructor called with a level above 63.
    #[error("tile level {0} is above 63")]
    LevelOutOfRange(u8),
}

impl TilePath {
    /// A hash tile path, checking the level and width ranges.
    pub fn hashes(level: u8, index: u64, width: u16) -> Result<Self, TilePathError> {
        if level > MAX_LEVEL {
            return Err(TilePathError::LevelOutOfRange(level));
        }
        check_width(width)?;
        Ok(TilePath::Hashes {
            level,
            index,
            width,
        })
    }

    /// An entry bundle path, checking the width range.
    pub fn entries(index: u64, width: u16) -> Result<Self, TilePathError> {
        check_width(width)?;
        Ok(TilePath::Entries { index, width })
    }

    /// Tile index within its level.
    pub fn index(&self) -> u64 {
        match *self {
            TilePath::Hashes { index, .. } | TilePath::Entries { index, .. } => index,
        }
    }

    /// Number of hashes or entries in the tile.
    pub fn width(&self) -> u16 {
        match *self {
            TilePath::Hashes { width, .. } | TilePath::Entries { width, .. } => width,
        }
    }

    /// Whether everything this tile holds exists in a tree of `tree_size` leaves, i.e.
    /// whether it can be served for that tree. Check this before [`tile_hashes`].
    pub fn is_within(&self, tree_size: u64) -> bool {
        let (level, index, width) = match *self {
            TilePath::Hashes {
                level,
                index,
                width,
            } => (u32::from(level), index, width),
            TilePath::Entries { index, width } => (0, index, width),
        };
        if width == 0 || u64::from(width) > TILE_WIDTH {
            return false;
        }
        let shift = level * u32::from(TILE_HEIGHT);
        // u128 and an explicit level bound keep absurd but well-formed paths from overflowing.
        if shift >= 64 {
            return false;
        }
        let end = (u128::from(index) * u128::from(TILE_WIDTH) + u128::from(width)) << shift;
        end <= u128::from(tree_size)
    }

    /// The canonical path, such as `tile/0/x001/x234/067.p/8` or `tile/entries/005`.
    ///
    /// Values built other than through [`TilePath::hashes`], [`TilePath::entries`] or
    /// [`TilePath::parse`] with an out-of-range level or width yield a path that
    /// [`TilePath::parse`] rejects.
    pub fn to_path(&self) -> String {
        let mut out = String::with_capacity(40);
        out.push_str("tile/");
        match *self {
            TilePath::Hashes { level, .. } => {
                let _ = write!(out, "{level}/");
            }
            TilePath::Entries { .. } => out.push_str("entries/"),
        }
        push_index(&mut out, self.index());
        let width = self.width();
        if u64::from(width) != TILE_WIDTH {
            let _ = write!(out, ".p/{width}");
        }
        out
    }

    /// Parses a canonical tile path; every other spelling of the same tile is rejected so
    /// that each tile has exactly one URL (and one cache entry).
    pub fn parse(path: &str) -> Result<TilePath, TilePathError> {
        let rest = path
            .strip_prefix("tile/")
            .ok_or(TilePathError::MissingPrefix)?;
        let (kind, rest) = rest
            .split_once('/')
            .ok_or_else(|| TilePathError::InvalidIndex(String::new()))?;
        let level = if kind == "entries" {
            None
        } else {
            let level = parse_canonical_decimal(kind)
                .filter(|&l| l <= u64::from(MAX_LEVEL))
                .ok_or_else(|| TilePathError::InvalidLevel(kind.to_owned()))?;
            Some(level as u8)
        };

        let segments: Vec<&str> = rest.split('/').collect();
        let (groups, width) = match segments.as_slice() {
            [groups @ .., last_group, w] if last_group.ends_with(".p") => {
                let width = parse_canonical_decimal(w)
                    .filter(|&w| (1..TILE_WIDTH).contains(&w))
                    .ok_or_else(|| TilePathError::InvalidWidth((*w).to_owned()))?;
                let mut all: Vec<&str> = groups.to_vec();
                all.push(&last_group[..last_group.len() - 2]);
                (all, width as u16)
            }
            _ => (segments, TILE_WIDTH as u16),
        };
        let index = parse_index(&groups)?;
        Ok(match level {
            Some(level) => TilePath::Hashes {
                level,
                index,
                width,
            },
            None => TilePath::Entries { index, width },
        })
    }
}

impl std::fmt::Display for TilePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_path())
    }
}

impl std::str::FromStr for TilePath {
    type Err = TilePathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TilePath::parse(s)
    }
}

fn check_width(width: u16) -> Result<(), TilePathError> {
    if width == 0 || u64::from(width) > TILE_WIDTH {
        return Err(TilePathError::WidthOutOfRange(width));
    }
    Ok(())
}

/// Writes `n` as 3-digit groups, all but the last prefixed with `x`.
fn push_index(out: &mut String, mut n: u64) {
    // u64::MAX has 20 digits: at most 7 groups.
    let mut groups = [0u16; 7];
    let mut count = 0;
    loop {
        groups[count] = (n % 1000) as u16;
        count += 1;
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    for (i, g) in groups[..count].iter().rev().enumerate() {
        if i + 1 < count {
            let _ = write!(out, "x{g:03}/");
        } else {
            let _ = write!(out, "{g:03}");
        }
    }
}

fn parse_index(groups: &[&str]) -> Result<u64, TilePathError> {
    let Some((last, leading)) = groups.split_last() else {
        return Err(TilePathError::InvalidIndex(String::new()));
    };
    let mut n: u64 = 0;
    for (i, seg) in leading.iter().enumerate() {
        let digits = seg
            .strip_prefix('x')
            .filter(|d| is_three_digits(d))
            .ok_or_else(|| TilePathError::InvalidIndex((*seg).to_owned()))?;
        let g = digits.parse::<u64>().expect("three ASCII digits");
        if i == 0 && g == 0 {
            return Err(TilePathError::NonCanonicalIndex);
        }
        n = push_group(n, g)?;
    }
    if !is_three_digits(last) {
        return Err(TilePathError::InvalidIndex((*last).to_owned()));
    }
    push_group(n, last.parse::<u64>().expect("three ASCII digits"))
}

/// `n * 1000 + group`; seven groups can spell numbers beyond u64.
fn push_group(n: u64, group: u64) -> Result<u64, TilePathError> {
    n.checked_mul(1000)
        .and_then(|n| n.checked_add(group))
        .ok_or(TilePathError::IndexOverflow)
}

fn is_three_digits(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal number with no sign, no leading zeros (other than "0" itself) and no overflow.
fn parse_canonical_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Contents of hash tile (`level`, `index`) of the given `width`: the concatenated hashes of
/// nodes `index * 256 + i` at tree level `8 * level`, for `i < width`.
///
/// Each node asked for sits at a tile boundary level, which a tiled store holds directly.
///
/// # Panics
///
/// If `width` exceeds 256, or if the tile cannot exist in any tree of at most `u64::MAX`
/// leaves (level above 7 or an index whose nodes overflow u64). A [`TilePath`] that passes
/// [`TilePath::is_within`] rules all of these out.
pub fn tile_hashes<S: NodeSource>(
    level: u8,
    index: u64,
    width: u16,
    src: &S,
) -> Result<Vec<u8>, S::Error> {
    let node_level = u32::from(level) * u32::from(TILE_HEIGHT);
    assert!(
        node_level < 64,
        "tile level {level} lies above any u64 tree"
    );
    assert!(
        u64::from(width) <= TILE_WIDTH,
        "tile width {width} above 256"
    );
    let first = index
        .checked_mul(TILE_WIDTH)
        .filter(|first| first.checked_add(u64::from(width)).is_some())
        .expect("tile index overflows u64");
    let mut out = Vec::with_capacity(usize::from(width) * crate::HASH_SIZE);
    for i in 0..u64::from(width) {
        out.extend_from_slice(&src.node(node_level as u8, first + i)?);
    }
    Ok(out)
}

/// Error encoding or decoding an entry bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// An entry is longer than the 16-bit length prefix can express.
    #[error("entry {index} is {len} bytes, more than 65535")]
    EntryTooLarge {
        /// Position of the entry in the bundle.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// A bundle holds at most 256 entries.
    #[error("bundle has more than 256 entries")]
    TooManyEntries,
    /// The data ends inside a length prefix or an entry.
    #[error("bundle is truncated at byte {offset}")]
    Truncated {
        /// Offset of the entry whose prefix or body is cut short.
        offset: usize,
    },
}

/// Encodes entries as a tlog-tiles entry bundle: each entry as a big-endian `u16` length
/// followed by its bytes. An empty iterator yields an empty bundle.
pub fn encode_entry_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        if index as u64 >= TILE_WIDTH {
            return Err(BundleError::TooManyEntries);
        }
        let len = u16::try_from(entry.len()).map_err(|_| BundleError::EntryTooLarge {
            index,
            len: entry.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries, borrowing from `data`.
pub fn decode_entry_bundle(data: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        if entries.len() as u64 == TILE_WIDTH {
            return Err(BundleError::TooManyEntries);
        }
        let body = offset + 2;
        let prefix = data
            .get(offset..body)
            .ok_or(BundleError::Truncated { offset })?;
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        let entry = data
            .get(body..body + len)
            .ok_or(BundleError::Truncated { offset })?;
        entries.push(entry);
        offset = body + len;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let t = TilePath::Hashes {
            level: 0,
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(t.to_path(), "tile/0/x001/x234/067");
        assert_eq!(TilePath::parse("tile/0/x001/x234/067"), Ok(t));
        let e = TilePath::Entries { index: 5, width: 8 };
        assert_eq!(e.to_path(), "tile/entries/005.p/8");
        assert_eq!(TilePath::parse("tile/entries/005.p/8"), Ok(e));
        let m = TilePath::Hashes {
            level: 63,
            index: u64::MAX,
            width: 255,
        };
        assert_eq!(
            m.to_path(),
            "tile/63/x018/x446/x744/x073/x709/x551/615.p/255"
        );
        assert_eq!(TilePath::parse(&m.to_path()), Ok(m));
    }

    #[test]
    fn non_canonical_paths_are_rejected() {
        for bad in [
            "",
            "tile",
            "tile/",
            "/tile/0/000",
            "tiles/0/000",
            "tile/0",
            "tile/0/",
            "tile/0/5",
            "tile/0/05",
            "tile/0/0005",
            "tile/0/x005",
            "tile/0/000/",
            "tile/0/x000/005",
            "tile/0/001/002",
            "tile/0/x001/x002",
            "tile/0/xx01/002",
            "tile/0/X001/002",
            "tile/0/x00a/002",
            "tile/0/+01",
            "tile/0/-01",
            "tile/0/ 01",
            "tile/0/000.p/256",
            "tile/0/000.p/0",
            "tile/0/000.p/08",
            "tile/0/000.p/",
            "tile/0/000.p",
            "tile/0/000.p/8/9",
            "tile/0/000.p/8/",
            "tile/0/000/.p/8",
            "tile/0/x001.p/002",
            "tile/0/x001.p/8/002",
            "tile/0/000.q/8",
            "tile/00/000",
            "tile/01/000",
            "tile/64/000",
            "tile/256/000",
            "tile/-1/000",
            "tile/+1/000",
            "tile//000",
            "tile/entries",
            "tile/entries/",
            "tile/entries/1",
            "tile/entries/000.p/256",
            "tile/entry/000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x999/x999/x999/x999/x999/x999/x999/999",
            "tile/0/x000/x018/x446/x744/x073/x709/x551/615",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn is_within_bounds() {
        let full = TilePath::hashes(1, 0, 256).unwrap();
        assert!(full.is_within(65536));
        assert!(!full.is_within(65535));
        let partial = TilePath::hashes(1, 0, 3).unwrap();
        assert!(partial.is_within(3 * 256));
        assert!(!partial.is_within(3 * 256 - 1));
        assert!(!TilePath::hashes(8, 0, 1).unwrap().is_within(u64::MAX));
        assert!(TilePath::entries(0, 1).unwrap().is_within(1));
        assert!(!TilePath::entries(u64::MAX, 256)
            .unwrap()
            .is_within(u64::MAX));
        assert!(TilePath::hashes(64, 0, 1).is_err());
        assert!(TilePath::entries(0, 0).is_err());
        assert!(TilePath::entries(0, 257).is_err());
    }

    #[test]
    fn bundle_errors() {
        let big = vec![0u8; 65536];
        assert_eq!(
            encode_entry_bundle([&b"ok"[..], &big[..]]),
            Err(BundleError::EntryTooLarge {
                index: 1,
                len: 65536
            })
        );
        let max = vec![7u8; 65535];
        let enc = encode_entry_bundle([&max[..]]).unwrap();
        assert_eq!(decode_entry_bundle(&enc).unwrap(), vec![&max[..]]);
        assert_eq!(
            decode_entry_bundle(&[0, 2, 1]),
            Err(BundleError::Truncated { offset: 0 })
        );
        assert_eq!(
            decode_entry_bundle(&[0, 0, 0]),
            Err(BundleError::Truncated { offset: 2 })
        );
        let many = vec![&[][..]; 257];
        assert_eq!(encode_entry_bundle(many), Err(BundleError::TooManyEntries));
        assert_eq!(
            decode_entry_bundle(&[0u8; 2 * 257]),
            Err(BundleError::TooManyEntries)
        );
        assert_eq!(decode_entry_bundle(&[0u8; 2 * 256]).unwrap().len(), 256);
        assert_eq!(decode_entry_bundle(&[]).unwrap(), Vec::<&[u8]>::new());
    }
}
