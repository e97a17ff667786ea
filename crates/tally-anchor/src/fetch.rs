//! Reading anchored checkpoints back: what `tally verify --since s3://…` checks the log
//! against.

use futures_util::{StreamExt, TryStreamExt};
use tally_tlog::checkpoint::Checkpoint;
use tally_tlog::note::NoteVerifier;
use tally_tlog::Hash;

use crate::s3::S3Client;
use crate::{layout, AnchorError, AnchorLocation};

/// Requests in flight while downloading checkpoints.
const PARALLEL_DOWNLOADS: usize = 16;

/// A checkpoint read from the anchor bucket, its signature and origin checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredCheckpoint {
    /// The tenant (from the key, and matching the checkpoint's origin).
    pub tenant: String,
    /// Tree size.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// Where it was read: `s3://bucket/key` and the object version.
    pub source: String,
}

/// Downloads every version of every anchored checkpoint under `location` (of `tenant` only,
/// if given), checks that each is signed by `verifier`, names the origin
/// `<key name>/<tenant>` of the tenant in its key, and has the size in its key. Sorted by
/// tenant and size; versions with the same tree are reported once.
///
/// Every version is read, not only the newest: a version written later (or a delete marker)
/// can hide an object from a plain listing, but cannot remove a locked version.
pub async fn fetch_anchored(
    client: &S3Client,
    location: &AnchorLocation,
    verifier: &NoteVerifier,
    tenant: Option<&str>,
) -> Result<Vec<AnchoredCheckpoint>, AnchorError> {
    let mut prefix = layout::key_root(location);
    if let Some(t) = tenant {
        prefix.push_str(t);
        prefix.push('/');
    }
    let versions = client
        .list_object_versions(&location.bucket, &prefix)
        .await?;
    let wanted: Vec<_> = versions
        .into_iter()
        .filter(|v| !v.delete_marker)
        .filter_map(|v| {
            let (t, size) = layout::parse_checkpoint_key(location, &v.key)?;
            (tenant.is_none_or(|want| want == t)).then_some((t, size, v))
        })
        .collect();
    let bucket = &location.bucket;
    let mut out: Vec<AnchoredCheckpoint> = futures_util::stream::iter(wanted)
        .map(|(t, size, v)| async move {
            let source = format!("s3://{bucket}/{} (version {})", v.key, v.version_id);
            let bytes = client
                .get_object(bucket, &v.key, Some(&v.version_id))
                .await?
                .ok_or_else(|| AnchorError::Invalid {
                    key: source.clone(),
                    detail: "listed but not readable".into(),
                })?;
            let root =
                check(&bytes, verifier, &t, size).map_err(|detail| AnchorError::Invalid {
                    key: source.clone(),
                    detail,
                })?;
            Ok::<_, AnchorError>(AnchoredCheckpoint {
                tenant: t,
                size,
                root,
                source,
            })
        })
        .buffer_unordered(PARALLEL_DOWNLOADS)
        .try_collect()
        .await?;
    out.sort_by(|a, b| {
        (&a.tenant, a.size, a.root, &a.source).cmp(&(&b.tenant, b.size, b.root, &b.source))
    });
    out.dedup_by(|b, a| a.tenant == b.tenant && a.size == b.size && a.root == b.root);
    Ok(out)
}

/// Checks one anchored note; returns its root.
fn check(bytes: &[u8], verifier: &NoteVerifier, tenant: &str, size: u64) -> Result<Hash, String> {
    let note = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let opened = tally_tlog::note::open(note, std::slice::from_ref(verifier))
        .map_err(|e| format!("signature: {e}"))?;
    let cp = Checkpoint::parse(&opened.text).map_err(|e| format!("checkpoint: {e}"))?;
    let origin = tally_store::tenant_origin(verifier.name(), tenant);
    if cp.origin != origin {
        return Err(format!(
            "its origin is {:?}, but a checkpoint of tenant {tenant} must have origin {origin:?}",
            cp.origin
        ));
    }
    if cp.size != size {
        return Err(format!(
            "it commits to size {} but its key says {size}",
            cp.size
        ));
    }
    Ok(cp.root)
}
