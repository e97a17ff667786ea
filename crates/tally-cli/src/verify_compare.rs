//! `tally verify --compare OTHER`: find where this copy of the log and another one (a backup,
//! a replica, or a running server) part ways.
//!
//! Both copies are verified first, each against its own signed checkpoints; then their leaf
//! hashes are walked side by side. Two copies that each verify but hold different leaves at
//! the same index are a fork signed with the same key, and the first differing leaf is
//! exactly where one of them was rewritten. A copy that is a prefix of the other is fine: it
//! is only behind.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use tally_store::compare::{compare_leaves, LeafHashes, Relation};
use tally_store::DataDir;
use tally_tlog::note::NoteVerifier;
use tally_tlog::tile::{TilePath, TILE_WIDTH};
use tally_tlog::{Hash, HASH_SIZE};

use crate::client::ApiClient;
use crate::commands::open_checkpoint;
use crate::ServerArgs;

/// The other copy `--compare` names.
#[derive(Debug, Clone)]
pub enum Other {
    /// Another data directory (read-only).
    Dir(PathBuf),
    /// A running server, read through its tiles with the same `--token`.
    Url(String),
}

impl std::str::FromStr for Other {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s.starts_with("http://") || s.starts_with("https://") {
            Other::Url(s.to_string())
        } else {
            Other::Dir(PathBuf::from(s))
        })
    }
}

impl std::fmt::Display for Other {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Other::Dir(p) => write!(f, "{}", p.display()),
            Other::Url(u) => f.write_str(u),
        }
    }
}

/// One verified tenant of the local data directory to compare.
pub struct Local<'a> {
    /// The directory.
    pub dir: &'a DataDir,
    /// The tenant.
    pub tenant: &'a str,
    /// Records verified in it.
    pub records: u64,
    /// Size of its latest signed checkpoint.
    pub signed: u64,
}

/// Verifies `tenant` in `other` and compares its leaves with `local`'s. Prints the verdict
/// when the histories agree; fails with `VERIFICATION FAILED` naming the first differing
/// index when they fork.
pub async fn compare_tenant(
    local: Local<'_>,
    other: &Other,
    token: Option<String>,
    verifier: &NoteVerifier,
) -> Result<()> {
    let tenant = local.tenant;
    let here = LeafHashes::open(local.dir, tenant)?.take(local.records as usize);
    let (relation, other_signed) = match other {
        Other::Dir(path) => {
            let dir = DataDir::open_existing(path)?;
            if !dir.list_tenants()?.iter().any(|t| t == tenant) {
                bail!("tenant {tenant} has no log in {other}: nothing to compare with");
            }
            let report =
                tally_store::verify::verify_tenant(&dir, tenant, verifier, &[], &mut |_| {})
                    .map_err(|f| {
                        anyhow!("VERIFICATION FAILED: the other copy {other} fails on its own: {f}")
                    })?;
            let there = LeafHashes::open(&dir, tenant)?.take(report.records as usize);
            let relation = compare_leaves(here, there)?;
            (relation, report.latest.map_or(0, |l| l.0))
        }
        Other::Url(url) => {
            let client = ApiClient::new(&ServerArgs {
                url: url.clone(),
                token,
                ca_cert: std::env::var_os("TALLY_CA_CERT").map(Into::into),
            })?;
            let note = client
                .get(&format!("/logs/{tenant}/checkpoint"), &[])
                .await?
                .text()
                .await?;
            let cp = open_checkpoint(&note, verifier)
                .map_err(|e| anyhow!("{other}: tenant {tenant}: {e:#}"))?;
            crate::verify_url::check_tree(
                &client,
                tenant,
                cp.size,
                &cp.root,
                &indicatif::ProgressBar::hidden(),
            )
            .await
            .map_err(|e| anyhow!("the other copy {other} fails on its own: {e:#}"))?;
            (
                compare_with_tiles(here, &client, tenant, cp.size).await?,
                cp.size,
            )
        }
    };
    match relation {
        Relation::Consistent {
            first_len,
            second_len,
        } => {
            println!(
                "tenant {tenant}: {other} holds the same history ({first_len} records here, {second_len} there{}): no fork",
                match first_len.cmp(&second_len) {
                    std::cmp::Ordering::Less => "; this copy is behind",
                    std::cmp::Ordering::Greater => "; the other copy is behind",
                    std::cmp::Ordering::Equal => "",
                }
            );
            Ok(())
        }
        Relation::DivergeAt(index) => {
            let signed_in_both = index < local.signed && index < other_signed;
            bail!(
                "VERIFICATION FAILED: tenant {tenant}: this log and {other} fork at index {index}: \
                 record {index} differs while every record before it is the same{}",
                if signed_in_both {
                    format!(
                        ", and each copy agrees with checkpoints signed by the log's key (here up to size {}, there up to size {other_signed}): \
                         the history was rewritten and re-signed in one of them from index {index} on",
                        local.signed
                    )
                } else {
                    format!(
                        "; the difference is not yet signed in both (signed here up to size {}, there up to size {other_signed})",
                        local.signed
                    )
                }
            )
        }
    }
}

/// Compares local leaf hashes with the server's level-0 hash tiles of a tree of `size`
/// leaves (already checked against its signed root), one tile at a time.
async fn compare_with_tiles(
    mut here: impl Iterator<Item = Result<Hash, tally_store::StoreError>>,
    client: &ApiClient,
    tenant: &str,
    size: u64,
) -> Result<Relation> {
    let mut index = 0u64;
    for n in 0..size.div_ceil(TILE_WIDTH) {
        let width = (size - n * TILE_WIDTH).min(TILE_WIDTH) as u16;
        let path = TilePath::hashes(0, n, width)?.to_path();
        let tile = client
            .get(&format!("/logs/{tenant}/{path}"), &[])
            .await?
            .bytes()
            .await?;
        if tile.len() != width as usize * HASH_SIZE {
            bail!("{path}: {} bytes where {width} hashes belong", tile.len());
        }
        for there in tile.chunks_exact(HASH_SIZE) {
            match here.next().transpose()? {
                Some(h) if h[..] == *there => index += 1,
                Some(_) => return Ok(Relation::DivergeAt(index)),
                None => {
                    return Ok(Relation::Consistent {
                        first_len: index,
                        second_len: size,
                    })
                }
            }
        }
    }
    let rest = here.try_fold(0u64, |n, h| h.map(|_| n + 1))?;
    Ok(Relation::Consistent {
        first_len: index + rest,
        second_len: size,
    })
}
