//! The tree half of `tally verify --url`: download every entry bundle and every hash tile of a
//! tenant's tree at a signed size, and check both against the signed root.
//!
//! Standard tlog-tiles clients (Go's `sumdb/tlog`, witnesses, monitors) read the hash tiles,
//! not the entries, so a server or proxy that serves altered tiles misleads them even when the
//! entries are right. The check therefore recomputes every tile of the tree from the entries
//! and compares it byte for byte with what is served: each level-0 tile with the leaf hashes
//! of its entry bundle, each level-k tile with the roots of the 256 level-(k-1) tiles below it,
//! full tiles and the partial tiles of the right edge alike, every level.
//!
//! It streams: besides the downloads in flight it keeps one [`Frontier`] for the root and, per
//! tile level, the at most 255 computed hashes still waiting for their tile, so memory does not
//! grow with the log.
//!
//! Which side is wrong when a tile and the entries disagree is only known at the end, when the
//! entries' root is compared with the signed one: if they hash to it, they are authentic and
//! the first tile that differs is the bad one; if not, the first level-0 tile that differs names
//! the first bad entry.

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use tally_tlog::tile::{decode_entry_bundle, TilePath, TILE_HEIGHT, TILE_WIDTH};
use tally_tlog::{leaf_hash, Frontier, Hash, HASH_SIZE};

use crate::client::ApiClient;

/// Entry bundles (with their level-0 tiles) downloaded ahead of the one being checked.
const PREFETCH: usize = 4;

/// The first place where a served hash tile and the tree computed from the entries differ.
struct Mismatch {
    /// The tile's path, e.g. `tile/1/000`.
    tile: String,
    /// Tile level.
    level: u8,
    /// First leaf index under the differing hash.
    first_leaf: u64,
    /// What differs.
    detail: String,
}

/// Per tile level `k >= 1`: the hashes of tree level `8k` computed so far whose tile has not
/// been compared yet, and that tile's index.
#[derive(Default)]
struct Level {
    pending: Vec<Hash>,
    tile_index: u64,
}

/// Checks `tenant`'s tree at `size` leaves against the signed `root`: every entry bundle and
/// every hash tile, byte for byte. The error names the first bad tile (or entry bundle) and
/// leaf index, prefixed with `VERIFICATION FAILED`.
pub async fn check_tree(
    client: &ApiClient,
    tenant: &str,
    size: u64,
    root: &Hash,
    pb: &ProgressBar,
) -> Result<()> {
    let mut frontier = Frontier::new();
    let mut levels: Vec<Level> = Vec::new();
    let mut first: Option<Mismatch> = None;
    let note = |m: Option<Mismatch>, first: &mut Option<Mismatch>| {
        if first.is_none() {
            *first = m;
        }
    };

    let bundles = size.div_ceil(TILE_WIDTH);
    let mut downloads = std::pin::pin!(stream::iter(0..bundles)
        .map(move |n| async move {
            let width = (size - n * TILE_WIDTH).min(TILE_WIDTH) as u16;
            let entries_path = TilePath::entries(n, width)?.to_path();
            let tile_path = TilePath::hashes(0, n, width)?.to_path();
            let (entries, tile) = tokio::try_join!(
                fetch(client, tenant, &entries_path),
                fetch(client, tenant, &tile_path)
            )?;
            Ok::<_, anyhow::Error>((n, width, entries_path, entries, tile_path, tile))
        })
        .buffered(PREFETCH));
    while let Some((n, width, entries_path, entries, tile_path, tile)) =
        downloads.try_next().await?
    {
        let entries = decode_entry_bundle(&entries).map_err(|e| {
            anyhow!(
                "VERIFICATION FAILED: tenant {tenant}: {entries_path} (leaf index {}) is malformed: {e}",
                n * TILE_WIDTH
            )
        })?;
        if entries.len() != usize::from(width) {
            bail!(
                "VERIFICATION FAILED: tenant {tenant}: {entries_path} holds {} entries, expected {width} (leaf index {})",
                entries.len(),
                n * TILE_WIDTH + entries.len().min(usize::from(width)) as u64
            );
        }
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        for h in &leaves {
            frontier.push(*h, |_, _, _| {});
        }
        note(compare(&tile_path, 0, n, &leaves, &tile), &mut first);
        if u64::from(width) == TILE_WIDTH {
            climb(
                client,
                tenant,
                &mut levels,
                1,
                subtree_root(&leaves),
                &mut first,
            )
            .await?;
        }
        pb.inc(u64::from(width));
    }
    // The right edge: what is left at each level is exactly that level's partial tile.
    for k in 1..=levels.len() {
        let level = &levels[k - 1];
        if level.pending.is_empty() {
            continue;
        }
        let path =
            TilePath::hashes(k as u8, level.tile_index, level.pending.len() as u16)?.to_path();
        let tile = fetch(client, tenant, &path).await?;
        note(
            compare(&path, k as u8, level.tile_index, &level.pending, &tile),
            &mut first,
        );
    }

    if frontier.root() != *root {
        let located = match &first {
            Some(m) if m.level == 0 => format!(
                "; the first entry whose hash differs from the served hash tiles is index {} (in {})",
                m.first_leaf,
                bundle_of(m.first_leaf, size)
            ),
            Some(m) => format!(
                "; the entries and level-0 tiles agree, but {} differs from them at leaf index {} ({})",
                m.tile, m.first_leaf, m.detail
            ),
            None => "; the hash tiles agree with the entries, so the whole tree served differs \
                     from the signed one"
                .to_string(),
        };
        bail!(
            "VERIFICATION FAILED: tenant {tenant}: the entries served do not hash to the signed checkpoint (size {size}){located}"
        );
    }
    if let Some(m) = first {
        bail!(
            "VERIFICATION FAILED: tenant {tenant}: hash tile {} does not match the signed entries at leaf index {}: {}",
            m.tile,
            m.first_leaf,
            m.detail
        );
    }
    Ok(())
}

/// Adds `hash`, the root of a full tile of level `k - 1`, to level `k`; when that level holds
/// 256 hashes, compares them with their (full) tile and carries the tile's root upward.
async fn climb(
    client: &ApiClient,
    tenant: &str,
    levels: &mut Vec<Level>,
    mut k: usize,
    mut hash: Hash,
    first: &mut Option<Mismatch>,
) -> Result<()> {
    loop {
        if levels.len() < k {
            levels.push(Level::default());
        }
        let level = &mut levels[k - 1];
        level.pending.push(hash);
        if level.pending.len() as u64 != TILE_WIDTH {
            return Ok(());
        }
        let path = TilePath::hashes(k as u8, level.tile_index, TILE_WIDTH as u16)?.to_path();
        let tile = fetch(client, tenant, &path).await?;
        if first.is_none() {
            *first = compare(&path, k as u8, level.tile_index, &level.pending, &tile);
        }
        hash = subtree_root(&level.pending);
        level.pending.clear();
        level.tile_index += 1;
        k += 1;
    }
}

/// Root of the perfect subtree over 256 node hashes (a full tile's hashes).
fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for h in hashes {
        f.push(*h, |_, _, _| {});
    }
    f.root()
}

/// Compares a served tile with the hashes it must hold; `None` when they are equal.
fn compare(
    path: &str,
    level: u8,
    index: u64,
    expected: &[Hash],
    served: &[u8],
) -> Option<Mismatch> {
    let shift = u32::from(level) * u32::from(TILE_HEIGHT);
    let leaf_of = |i: usize| (index * TILE_WIDTH + i as u64) << shift;
    let differing = expected
        .iter()
        .enumerate()
        .find(|(i, h)| served.get(i * HASH_SIZE..(i + 1) * HASH_SIZE) != Some(&h[..]));
    let (i, detail) = match differing {
        Some((i, _)) => (
            i,
            format!(
                "hash {i} of the tile (leaves [{}, {})) differs",
                leaf_of(i),
                leaf_of(i + 1)
            ),
        ),
        None if served.len() != expected.len() * HASH_SIZE => (
            expected.len(),
            format!(
                "the tile is {} bytes, expected {}",
                served.len(),
                expected.len() * HASH_SIZE
            ),
        ),
        None => return None,
    };
    Some(Mismatch {
        tile: path.to_string(),
        level,
        first_leaf: leaf_of(i),
        detail,
    })
}

async fn fetch(client: &ApiClient, tenant: &str, path: &str) -> Result<Bytes> {
    client
        .get(&format!("/logs/{tenant}/{path}"), &[])
        .await
        .with_context(|| format!("VERIFICATION FAILED: tenant {tenant}: cannot get {path}"))?
        .bytes()
        .await
        .with_context(|| format!("VERIFICATION FAILED: tenant {tenant}: reading {path}"))
}

/// The path of the entry bundle holding leaf `index` in a tree of `size` leaves.
fn bundle_of(index: u64, size: u64) -> String {
    let n = index / TILE_WIDTH;
    let width = (size - n * TILE_WIDTH).min(TILE_WIDTH) as u16;
    TilePath::entries(n, width)
        .map(|p| p.to_path())
        .unwrap_or_default()
}
