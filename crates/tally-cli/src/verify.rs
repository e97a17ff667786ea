//! `tally verify`: recompute every tree from storage (a data directory, or a running server's
//! tiles) and check it against the signed checkpoints.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tally_store::DataDir;
use tally_tlog::note::NoteVerifier;
use tally_tlog::Hash;

use crate::client::ApiClient;
use crate::commands::{open_checkpoint, parse_verifier, KeyArg};
use crate::ServerArgs;
use tally_server::wire::{ConsistencyProof, TenantInfo};

/// Check that a log is intact: every record, every tree, every signed checkpoint.
///
/// Offline (DATA_DIR): reads the directory read-only, recomputes each record's leaf hash and
/// each tenant's tree, checks every stored checkpoint's signature and that each one's root
/// matches the recomputed tree (so consecutive checkpoints are consistent), and names the first
/// bad tenant and index if any byte was changed, a record removed, inserted, reordered or
/// truncated, or a checkpoint forged.
///
/// Online (--url): downloads every entry bundle and every hash tile of the tlog-tiles layout,
/// checks the entries against the server's signed checkpoint and every tile byte for byte
/// against the tree the entries imply, and names the first bad tile and leaf index.
///
/// --since FILE: a checkpoint saved earlier (tally checkpoint --out FILE); proves the log still
/// contains that tree and only grew since (catches rollback and forks).
///
/// --since s3://BUCKET/PREFIX: every checkpoint `tally serve --anchor` wrote there (credentials
/// from AWS_ACCESS_KEY_ID etc., as for serve); the log must contain each of those trees, which
/// catches a history rewritten and re-signed with the log's own key.
///
/// --compare OTHER: another copy of the log (a backup or replica directory, or a server URL
/// read with the same --token) is verified too, and the first leaf where the two histories
/// differ is named exactly: a fork re-signed with the log's own key shows up there even when
/// no checkpoint was saved elsewhere. A copy that is only behind is fine.
///
/// --export FILE: check an export bundle (tally export) offline instead: every record is in
/// the signed tree the file carries, and an unfiltered range holds every record
/// (--require-complete: fail unless the export proves it is complete).
///
/// Exit status: 0 intact, 1 a problem was found (or the check could not run), 2 usage error.
///
/// Examples: tally verify ./data --key ./data/log.pub
///           tally verify --url http://127.0.0.1:7700 --key "$(cat log.pub)" --since saved.checkpoint
///           tally verify ./data --key log.pub --compare /backup/tally-data
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Data directory to check offline; without it, the server at --url is checked.
    data: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    key: KeyArg,
    /// Only this tenant.
    #[arg(long, short = 't')]
    tenant: Option<String>,
    /// A saved checkpoint the log must still extend (FILE), or the anchor bucket whose every
    /// checkpoint it must contain (s3://BUCKET/PREFIX).
    #[arg(long, value_name = "FILE|S3_URL")]
    since: Option<crate::anchor::SinceSource>,
    /// Check an export file (from `tally export`) instead of a log: every record is in the
    /// signed tree it carries, and an unfiltered range is complete. Needs --key.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data", "since", "tenant"])]
    export: Option<PathBuf>,
    /// With --export: fail (exit 1) unless the export proves it holds every record of its
    /// range, i.e. it is an unfiltered range export. For scripts that must not accept a
    /// filtered export in place of a complete one.
    #[arg(long, requires = "export")]
    require_complete: bool,
    /// Another copy of the log to compare with: a data directory (a backup or replica) or a
    /// server URL (read with --token). Both are verified, and the first record where their
    /// histories differ is named.
    #[arg(long, value_name = "DIR|URL", conflicts_with = "export")]
    compare: Option<crate::verify_compare::Other>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// With a data directory encrypted at rest: the key-encryption key, to check every
    /// encrypted record's content too (without it, the structure is checked: every frame,
    /// leaf hash, tree and checkpoint, but not what the encrypted records hold).
    #[command(flatten)]
    kek: crate::kek::KekArgs,
    /// With --url: each tenant's checkpoint must carry cosignatures from --witness-quorum of
    /// these witnesses (see `tally checkpoint --help`).
    #[command(flatten)]
    witnesses: crate::witness::QuorumArgs,
}

/// A saved or anchored checkpoint: its tenant (from the origin), tree, and where it is from.
struct Since {
    tenant: String,
    size: u64,
    root: Hash,
    source: String,
}

/// The trusted checkpoints `--since` names: one saved file, or everything anchored.
async fn load_since_source(
    since: Option<&crate::anchor::SinceSource>,
    verifier: &NoteVerifier,
    tenant: Option<&str>,
) -> Result<Vec<Since>> {
    use crate::anchor::SinceSource;
    match since {
        None => Ok(Vec::new()),
        Some(SinceSource::File(path)) => Ok(vec![load_since(path, verifier)?]),
        Some(SinceSource::Anchor(location)) => {
            Ok(crate::anchor::load_anchored(location, verifier, tenant)
                .await?
                .into_iter()
                .map(|a| Since {
                    tenant: a.tenant,
                    size: a.size,
                    root: a.root,
                    source: a.source,
                })
                .collect())
        }
    }
}

fn load_since(path: &PathBuf, verifier: &NoteVerifier) -> Result<Since> {
    let note =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cp = open_checkpoint(&note, verifier).with_context(|| format!("{}", path.display()))?;
    let tenant = cp
        .origin
        .rsplit('/')
        .next()
        .filter(|t| tally_event::is_valid_tenant(t))
        .ok_or_else(|| anyhow!("{}: origin {:?} names no tenant", path.display(), cp.origin))?
        .to_string();
    Ok(Since {
        tenant,
        size: cp.size,
        root: cp.root,
        source: "the saved checkpoint".into(),
    })
}

/// A saved checkpoint names its tenant; checking it against another tenant's log is a
/// mistake in the command line, not a finding about the log.
fn check_since_tenant(tenant: Option<&str>, since: &[Since]) -> Result<()> {
    if let (Some(t), Some(s)) = (tenant, since.first()) {
        if since.iter().all(|s| s.tenant != t) {
            return Err(crate::UsageError(format!(
                "the saved checkpoint (--since) is of tenant {}, but --tenant {t} was given: \
                 pass --tenant {} or a checkpoint saved from tenant {t}",
                s.tenant, s.tenant
            ))
            .into());
        }
    }
    Ok(())
}

fn bar(quiet: bool, total: u64, unit: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let template = if unit == "bytes" {
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} entries ({per_sec}) {msg}"
    };
    ProgressBar::new(total)
        .with_style(ProgressStyle::with_template(template).expect("valid template"))
}

pub async fn run(args: VerifyArgs) -> Result<()> {
    if let Some(file) = args.export.clone() {
        return tokio::task::spawn_blocking(move || {
            crate::export::verify_export(&file, &args.key, args.quiet, args.require_complete)
        })
        .await?;
    }
    if args.witnesses.is_set() && args.data.is_some() {
        bail!("--witness checks the checkpoints a server serves (--url); for a saved checkpoint use tally checkpoint --file FILE --witness ...");
    }
    use crate::verify_compare::Other;
    match (args.data.clone(), args.compare.clone()) {
        (Some(dir), _) => tokio::task::spawn_blocking(move || offline(&args, dir)).await?,
        // A server compared with a directory: the directory is the local side, the server
        // the other copy; both are checked in full either way.
        (None, Some(Other::Dir(dir))) => {
            let mut args = args;
            args.compare = Some(Other::Url(args.server.url.clone()));
            tokio::task::spawn_blocking(move || offline(&args, dir)).await?
        }
        (None, Some(Other::Url(_))) => Err(crate::UsageError(
            "--compare URL needs a data directory to compare the server with (tally verify DIR --compare URL); \
             to compare two servers, verify each with --url and --since a checkpoint saved from the other"
                .into(),
        )
        .into()),
        (None, None) => online(&args).await,
    }
}

fn offline(args: &VerifyArgs, path: PathBuf) -> Result<()> {
    let dir = DataDir::open_existing(&path)?;
    let verifier = match args.key.given()? {
        Some(v) => v,
        None => {
            let pubkey = dir.verifier_key_path();
            eprintln!(
                "warning: no --key given: using {} from the directory itself; pass --key with a copy you trust",
                pubkey.display()
            );
            let text = std::fs::read_to_string(&pubkey)
                .with_context(|| format!("reading {}", pubkey.display()))?;
            parse_verifier(&text).with_context(|| pubkey.display().to_string())?
        }
    };
    let since = tokio::runtime::Handle::current().block_on(load_since_source(
        args.since.as_ref(),
        &verifier,
        args.tenant.as_deref(),
    ))?;
    check_since_tenant(args.tenant.as_deref(), &since)?;
    let mut tenants = dir.list_tenants()?;
    if let Some(t) = &args.tenant {
        if !tenants.contains(t) {
            bail!("tenant {t} has no log in {}", path.display());
        }
        tenants = vec![t.clone()];
    }
    for s in &since {
        if !tenants.contains(&s.tenant) {
            bail!(
                "VERIFICATION FAILED: {} (size {}) is of tenant {}, which has no log here: the log was removed",
                s.source,
                s.size,
                s.tenant
            );
        }
    }
    let at_rest = args.kek.at_rest(&dir)?;
    let total = tally_store::verify::total_record_bytes(&dir, &tenants);
    let pb = bar(args.quiet, total, "bytes");
    let mut records = 0u64;
    let mut unchecked = 0u64;
    for tenant in &tenants {
        pb.set_message(tenant.clone());
        let trusted = since
            .iter()
            .filter(|s| &s.tenant == tenant)
            .map(|s| tally_store::verify::TrustedCheckpoint {
                size: s.size,
                root: s.root,
                source: s.source.clone(),
            })
            .collect::<Vec<_>>();
        let report = tally_store::verify::verify_tenant_with_key(
            &dir,
            tenant,
            &verifier,
            &trusted,
            at_rest.as_deref(),
            &mut |n| pb.inc(n),
        )
        .map_err(|f| {
            pb.abandon();
            anyhow!("VERIFICATION FAILED: {f}")
        })?;
        records += report.records;
        unchecked += report.contents_unchecked;
        if let Some(other) = &args.compare {
            pb.suspend(|| {
                tokio::runtime::Handle::current().block_on(crate::verify_compare::compare_tenant(
                    crate::verify_compare::Local {
                        dir: &dir,
                        tenant,
                        records: report.records,
                        signed: report.latest.map_or(0, |l| l.0),
                    },
                    other,
                    args.server.token.clone(),
                    &verifier,
                ))
            })
            .inspect_err(|_| pb.abandon())?;
        }
        for torn in &report.torn_writes {
            pb.suspend(|| {
                eprintln!(
                    "warning: tenant {}: a torn write of {} bytes at the end of {} (after {} complete {}), \
                     outside the signed history: what a crash or a full disk leaves; the server cuts it at its next start",
                    report.tenant,
                    torn.bytes,
                    torn.file,
                    torn.after_records,
                    if torn.file.ends_with("checkpoints") { "checkpoints" } else { "records" },
                )
            });
        }
        pb.suspend(|| {
            println!(
                "tenant {}: {} records, {} signed checkpoints OK{}{}",
                report.tenant,
                report.records,
                report.checkpoints,
                match (report.encrypted, report.contents_unchecked) {
                    (0, _) => String::new(),
                    (n, 0) => format!(" ({n} encrypted at rest, each decrypted and checked)"),
                    (n, _) => format!(" ({n} encrypted at rest: their content is not checked)"),
                },
                if report.unsigned_tail > 0 {
                    format!(
                        " ({} records after the last checkpoint are intact but not yet signed)",
                        report.unsigned_tail
                    )
                } else {
                    String::new()
                }
            )
        });
    }
    pb.finish_and_clear();
    match since.as_slice() {
        [] => {}
        [s] => println!(
            "the log still contains {} (tenant {}, size {}): no rollback or fork",
            s.source, s.tenant, s.size
        ),
        all => println!(
            "the log still contains all {} anchored checkpoints: no rollback or fork",
            all.len()
        ),
    }
    println!(
        "verified {records} records in {} tenants: intact",
        tenants.len()
    );
    if unchecked > 0 {
        println!(
            "{unchecked} records are encrypted at rest: their frames, leaf hashes and place in \
             every tree and checkpoint were checked, their content was not; give the \
             key-encryption key (--kek-file, --kek-env or --kek-command) to check it too"
        );
    }
    Ok(())
}

async fn online(args: &VerifyArgs) -> Result<()> {
    let client = ApiClient::new(&args.server)?;
    let verifier = args.key.load(Some(&client)).await?;
    let since = load_since_source(args.since.as_ref(), &verifier, args.tenant.as_deref()).await?;
    check_since_tenant(args.tenant.as_deref(), &since)?;
    let tenants: Vec<String> = match (&args.tenant, &args.since) {
        (Some(t), _) => vec![t.clone()],
        (None, Some(crate::anchor::SinceSource::File(_))) => {
            since.iter().map(|s| s.tenant.clone()).collect()
        }
        (None, _) => {
            let tenants: Vec<TenantInfo> = client.get("/v1/tenants", &[]).await?.json().await?;
            tenants.into_iter().map(|t| t.tenant.name).collect()
        }
    };
    if let Some(s) = since.iter().find(|s| !tenants.contains(&s.tenant)) {
        bail!(
            "VERIFICATION FAILED: {} (size {}) is of tenant {}, which has no log on the server: the log was removed",
            s.source,
            s.size,
            s.tenant
        );
    }
    let mut total_records = 0;
    for tenant in &tenants {
        let note = client
            .get(&format!("/logs/{tenant}/checkpoint"), &[])
            .await?
            .text()
            .await?;
        let cp = open_checkpoint(&note, &verifier).with_context(|| format!("tenant {tenant}"))?;
        if let Some(summary) = args
            .witnesses
            .require(&note)
            .with_context(|| format!("tenant {tenant}"))?
        {
            println!("tenant {tenant}: {summary}");
        }
        let pb = bar(args.quiet, cp.size, "entries");
        pb.set_message(tenant.clone());
        let checked = crate::verify_url::check_tree(&client, tenant, cp.size, &cp.root, &pb).await;
        pb.finish_and_clear();
        checked?;
        for s in since.iter().filter(|s| &s.tenant == tenant) {
            if s.size > cp.size {
                bail!("VERIFICATION FAILED: tenant {tenant}: the log shrank from {} to {} since {}: rollback", s.size, cp.size, s.source);
            }
            if s.size == cp.size {
                if s.root != cp.root {
                    bail!("VERIFICATION FAILED: tenant {tenant}: same size {} as {} but a different root: fork", s.size, s.source);
                }
            } else {
                let v: ConsistencyProof = client
                    .get(
                        "/v1/proof/consistency",
                        &[
                            ("tenant", tenant.clone()),
                            ("from", s.size.to_string()),
                            ("to", cp.size.to_string()),
                        ],
                    )
                    .await?
                    .json()
                    .await?;
                let proof: Vec<Hash> = v
                    .proof
                    .iter()
                    .map(|h| decode_hash(h))
                    .collect::<Result<_>>()?;
                tally_tlog::verify_consistency(s.size, cp.size, &proof, &s.root, &cp.root).map_err(|e| {
                    anyhow!("VERIFICATION FAILED: tenant {tenant}: the current tree does not extend {} (size {}): {e}", s.source, s.size)
                })?;
            }
            println!(
                "tenant {tenant}: consistent with {} (size {} -> {})",
                s.source, s.size, cp.size
            );
        }
        println!(
            "tenant {tenant}: {} entries and every hash tile match the signed checkpoint",
            cp.size
        );
        total_records += cp.size;
    }
    println!(
        "verified {total_records} records in {} tenants: intact",
        tenants.len()
    );
    Ok(())
}

fn decode_hash(s: &str) -> Result<Hash> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("malformed hash {s:?}"))
}
