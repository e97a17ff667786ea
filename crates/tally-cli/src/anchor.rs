//! Checkpoint anchoring in the CLI: the `--anchor*` options of `tally serve`, and reading
//! anchored checkpoints for `tally verify --since s3://…`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tally_anchor::s3::S3Client;
use tally_anchor::uploader::AnchorSettings;
use tally_anchor::AnchorLocation;
use tally_tlog::note::NoteVerifier;
use tally_tlog::Hash;

/// Options of `tally serve` that copy every signed checkpoint to write-once storage.
#[derive(Debug, Args)]
pub struct AnchorArgs {
    /// Also write every signed checkpoint to this S3 bucket (s3://BUCKET/PREFIX), locked in
    /// COMPLIANCE mode so that nobody can delete or change it before --anchor-retention
    /// ends. The bucket must have Object Lock enabled. Credentials, region and endpoint come
    /// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION and
    /// AWS_ENDPOINT_URL (for S3-compatible stores).
    #[arg(
        long,
        env = "TALLY_ANCHOR",
        value_name = "S3_URL",
        requires = "anchor_retention"
    )]
    anchor: Option<AnchorLocation>,
    /// How long each anchored checkpoint stays locked, e.g. 90d, 7y (cannot be shortened).
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    anchor_retention: Option<Duration>,
    /// Anchor at most one checkpoint per tenant per interval (the newest), e.g. 1m; 0 anchors
    /// every checkpoint.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    anchor_interval: Duration,
    /// Most checkpoints waiting for upload while S3 is slow or down; the oldest are dropped
    /// first (the newest always stays, and it pins everything before it).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    anchor_backlog: u64,
}

fn parse_retention(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 90d, 7y)"))?;
    if d.is_zero() {
        return Err("the retention must be longer than 0".into());
    }
    Ok(d)
}

/// The anchoring `tally serve` runs with --anchor (none without it); the bucket is checked
/// when the server starts.
pub fn settings(args: &AnchorArgs) -> Result<Option<tally_server::app::AnchorSettings>> {
    let Some(location) = args.anchor.clone() else {
        return Ok(None);
    };
    let retention = args
        .anchor_retention
        .context("--anchor needs --anchor-retention")?;
    let client = S3Client::from_env()?;
    let mut settings = AnchorSettings::new(location, retention);
    settings.interval = args.anchor_interval;
    settings.backlog = usize::try_from(args.anchor_backlog).unwrap_or(usize::MAX);
    Ok(Some(tally_server::app::AnchorSettings { settings, client }))
}

/// Where `tally verify --since` takes trusted checkpoints from.
#[derive(Debug, Clone)]
pub enum SinceSource {
    /// A checkpoint saved with `tally checkpoint --out FILE`.
    File(PathBuf),
    /// Every checkpoint anchored under `s3://BUCKET/PREFIX`.
    Anchor(AnchorLocation),
}

impl FromStr for SinceSource {
    type Err = tally_anchor::AnchorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("s3://") {
            s.parse().map(SinceSource::Anchor)
        } else {
            Ok(SinceSource::File(PathBuf::from(s)))
        }
    }
}

/// An anchored checkpoint, signature and origin checked.
pub struct Anchored {
    /// Its tenant.
    pub tenant: String,
    /// Tree size.
    pub size: u64,
    /// Root at that size.
    pub root: Hash,
    /// For messages: where it was read.
    pub source: String,
}

/// Downloads every anchored checkpoint under `location` (of `tenant` only, if given) and
/// checks each one's signature and origin with `verifier`.
pub async fn load_anchored(
    location: &AnchorLocation,
    verifier: &NoteVerifier,
    tenant: Option<&str>,
) -> Result<Vec<Anchored>> {
    let client = S3Client::from_env()?;
    let found = tally_anchor::fetch::fetch_anchored(&client, location, verifier, tenant)
        .await
        .map_err(|e| match e {
            e @ tally_anchor::AnchorError::Invalid { .. } => {
                anyhow::anyhow!("VERIFICATION FAILED: {e}")
            }
            e => anyhow::Error::new(e)
                .context(format!("reading the checkpoints anchored at {location}")),
        })?;
    if found.is_empty() {
        anyhow::bail!(
            "no anchored checkpoints under {location}{}: check the location (and that the server runs with --anchor)",
            tenant.map(|t| format!(" for tenant {t}")).unwrap_or_default()
        );
    }
    eprintln!("read {} anchored checkpoints from {location}", found.len());
    Ok(found
        .into_iter()
        .map(|a| Anchored {
            tenant: a.tenant,
            size: a.size,
            root: a.root,
            source: format!("the checkpoint anchored at {}", a.source),
        })
        .collect())
}
